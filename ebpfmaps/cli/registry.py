"""The command groups of the ``ebpfmaps`` command.

A group is a module with ``register(subparsers)``, which adds its subcommands, each with
``set_defaults(fn=handler)``; a handler takes the parsed arguments and returns the exit code (or raises: the
main loop turns errors into the documented exit codes). Adding a group is one import and one entry below.
Groups import heavy modules inside their handlers, so every command starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ebpfmaps.cli import btf_cmds, entries, events, inventory, manage

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any, Protocol

    class CommandGroup(Protocol):
        def register(self, sub: Any) -> None: ...


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, computed the same way without importing shutil (which brings
    zlib, bz2 and lzma): ``COLUMNS``, else the terminal of stdout, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


_SIZED: dict[type[argparse.HelpFormatter], type[argparse.HelpFormatter]] = {}


def sized(formatter: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """``formatter`` with argparse's default width (the terminal's, less 2) found without shutil: argparse
    makes a formatter for every argument it adds, and its own default imports shutil."""
    cached = _SIZED.get(formatter)
    if cached is None:
        def __init__(self: argparse.HelpFormatter, prog: str, indent_increment: int = 2,
                     max_help_position: int = 24, width: int | None = None) -> None:
            formatter.__init__(self, prog, indent_increment, max_help_position,
                               _terminal_columns() - 2 if width is None else width)

        cached = _SIZED[formatter] = type(formatter.__name__, (formatter,), {"__init__": __init__})
    return cached


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
        kwargs["formatter_class"] = sized(kwargs.get("formatter_class", argparse.HelpFormatter))
        return self._sub.add_parser(name, **kwargs)


def register_all(sub: Any, only: str | None = None) -> None:
    """Every group's commands; with ``only``, just that command's parser (when some group has it)."""
    target = sub if only is None else _OnlyCommand(sub, only)
    for group in COMMAND_GROUPS:
        group.register(target)
    if only is not None and only not in sub.choices:
        for group in COMMAND_GROUPS:  # not a command after all: the whole parser, for argparse's message
            group.register(sub)
