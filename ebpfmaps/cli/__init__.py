"""The ``ebpfmaps`` command: inspect and edit kernel maps from a shell (``ebpfmaps --help``).

Commands live in groups (one module each, listed in :mod:`ebpfmaps.cli.registry`).
"""

from __future__ import annotations

from ebpfmaps.cli.app import build_parser, main
from ebpfmaps.cli.common import (
    INT_TYPES,
    encode_arg,
    fmt,
    jsonable,
    open_target,
    parse_hex,
    print_table,
    text_of,
)

__all__ = ["INT_TYPES", "build_parser", "encode_arg", "fmt", "jsonable", "main", "open_target", "parse_hex",
           "print_table", "text_of"]
