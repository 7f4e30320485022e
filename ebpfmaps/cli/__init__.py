"""The ``ebpfmaps`` command: inspect and edit kernel maps from a shell (``ebpfmaps --help``).

Commands live in groups (one module each, listed in :mod:`ebpfmaps.cli.registry`).
"""

from __future__ import annotations

from ebpfmaps.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
