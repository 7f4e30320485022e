"""BTF commands: ``btf`` (the types as C, as bpftool prints them) and ``gen-types`` (Python ctypes types)."""

from __future__ import annotations

import argparse
import sys

import ebpfmaps
from ebpfmaps.cli.common import UsageError

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any


def _btf_source(args: argparse.Namespace, python: bool) -> str:
    """C or Python source for the types of an object file, a pinned map or a map id."""
    from ebpfmaps import btf

    target = args.target or args.map
    if args.id is not None:
        with ebpfmaps.open_by_id(args.id, readonly=True, typed=False) as m:
            info = m.info()
        where = f"map id {args.id}"
    elif target and not args.map and _is_elf(target):
        return btf.object_python_source(target) if python else btf.object_c_source(target)
    elif target:
        with ebpfmaps.open_pinned(target, readonly=True, typed=False) as m:
            info = m.info()
        where = target
    else:
        raise UsageError("give an object file, a pinned map (--map PATH) or --id N")
    return btf.map_python_source(info, source=where) if python else btf.map_c_source(info)


def _is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def cmd_btf(args: argparse.Namespace) -> int:
    sys.stdout.write(_btf_source(args, python=False))
    return 0


def cmd_gen_types(args: argparse.Namespace) -> int:
    sys.stdout.write(_btf_source(args, python=True))
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("btf", help="a map's or an object's BTF types as C (bpftool btf dump ... format c)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  ebpfmaps btf /sys/fs/bpf/counts\n  ebpfmaps btf --id 42\n"
                              "  ebpfmaps btf prog.bpf.o")
    s.add_argument("target", nargs="?", help="pinned map path or OBJECT.o")
    s.add_argument("--id", type=int, help="a map id")
    s.set_defaults(fn=cmd_btf, map=None)
    s = sub.add_parser("gen-types", help="Python ctypes types for the maps of an object or a map",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  ebpfmaps gen-types prog.bpf.o > types.py\n"
                              "  ebpfmaps gen-types --map /sys/fs/bpf/counts")
    s.add_argument("target", nargs="?", help="OBJECT.o")
    s.add_argument("--map", help="a pinned map path")
    s.add_argument("--id", type=int, help="a map id")
    s.set_defaults(fn=cmd_gen_types)
