"""The command groups of the ``ebpfmaps`` command.

A group is a module with ``register(subparsers)``, which adds its subcommands, each with
``set_defaults(fn=handler)``; a handler takes the parsed arguments and returns the exit code (or raises: the
main loop turns errors into the documented exit codes). Adding a group is one import and one entry below.
Groups import heavy modules inside their handlers, so every command starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from ebpfmaps.cli import btf_cmds, entries, events, inventory, manage


class CommandGroup(Protocol):
    def register(self, sub: Any) -> None: ...


class _LazyGroup:
    """A group imported only when one of its commands runs or the whole parser is built: its module (and
    what that imports) then costs the other one-shot commands nothing."""

    def __init__(self, module: str, commands: tuple[str, ...]) -> None:
        self.module = module
        self.commands = commands

    def register(self, sub: Any) -> None:
        if isinstance(sub, _OnlyCommand) and sub.command not in self.commands:
            return
        importlib.import_module(self.module).register(sub)


COMMAND_GROUPS: tuple[CommandGroup, ...] = (
    inventory, entries, manage, events, btf_cmds,
    _LazyGroup("ebpfmaps.cli_operator", ("watch", "hist", "export")),
)


class _Skipped:
    """Stands for the parser of a command not being run: takes every call and does nothing."""

    def __getattr__(self, name: str) -> Any:
        return self._ignore

    def _ignore(self, *args: Any, **kwargs: Any) -> _Skipped:
        return self


class _OnlyCommand:
    """Subparsers that build the parser of one command only: a one-shot command starts faster without
    building twenty parsers it will not use."""

    def __init__(self, sub: Any, command: str) -> None:
        self._sub = sub
        self.command = command

    def add_parser(self, name: str, **kwargs: Any) -> Any:
        if name != self.command:
            return _Skipped()
        return self._sub.add_parser(name, **kwargs)


def register_all(sub: Any, only: str | None = None) -> None:
    """Every group's commands; with ``only``, just that command's parser (when some group has it)."""
    target = sub if only is None else _OnlyCommand(sub, only)
    for group in COMMAND_GROUPS:
        group.register(target)
    if only is not None and only not in sub.choices:
        for group in COMMAND_GROUPS:  # not a command after all: the whole parser, for argparse's message
            group.register(sub)
