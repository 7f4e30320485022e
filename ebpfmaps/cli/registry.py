"""The command groups of the ``ebpfmaps`` command.

A group is a module with ``register(subparsers)``, which adds its subcommands, each with
``set_defaults(fn=handler)``; a handler takes the parsed arguments and returns the exit code (or raises: the
main loop turns errors into the documented exit codes). Adding a group is one import and one entry below.
Groups import heavy modules inside their handlers, so every command starts fast.
"""

from __future__ import annotations

from typing import Any, Protocol

from ebpfmaps.cli import entries, events, inventory, manage


class CommandGroup(Protocol):
    def register(self, sub: Any) -> None: ...


COMMAND_GROUPS: tuple[CommandGroup, ...] = (inventory, entries, manage, events)


def register_all(sub: Any) -> None:
    for group in COMMAND_GROUPS:
        group.register(sub)
