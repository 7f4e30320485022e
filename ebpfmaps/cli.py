"""The ``ebpfmaps`` command: inspect and edit kernel maps from a shell.

    ebpfmaps list                              every map in the system
    ebpfmaps show  /sys/fs/bpf/counts          a map's info (a pin path or id:N)
    ebpfmaps dump  /sys/fs/bpf/counts -k u32 -v u64
    ebpfmaps get   PATH KEY   |  set PATH KEY VALUE  |  del PATH KEY
    ebpfmaps create hash /sys/fs/bpf/x --key-size 4 --value-size 8 --max-entries 64
    ebpfmaps unpin PATH       |  mount [DIR]   |  demo
    ebpfmaps btf PATH|--id N|OBJECT.o            the BTF types as C
    ebpfmaps gen-types OBJECT.o|--map PATH|--id N > types.py

Keys and values are given as integers with ``-k``/``-v`` types (u8..u64, i8..i64) or as
hex bytes (``0x0100000a`` or ``01:00:00:0a``) when no type is given. A map with BTF is shown
with its field names (``--json``: bpftool's ``formatted`` values), and takes keys and values as
JSON (``'{"pid": 7}'``).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from collections.abc import Sequence
from typing import Any

import ebpfmaps
from ebpfmaps import cli_operator
from ebpfmaps.codecs import PerCpuValues
from ebpfmaps.errors import MapError
from ebpfmaps.map import Map
from ebpfmaps.maptypes import flag_names, parse_map_type, type_name

INT_TYPES = {
    "u8": "=B", "u16": "=H", "u32": "=I", "u64": "=Q",
    "i8": "=b", "i16": "=h", "i32": "=i", "i64": "=q",
    "be16": ">H", "be32": ">I", "be64": ">Q",
}


def parse_hex(text: str) -> bytes:
    cleaned = text.lower().removeprefix("0x").replace(":", "").replace(" ", "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise SystemExit(f"ebpfmaps: {text!r} is not hex bytes (use -k/-v for integers)") from None


def open_target(target: str, *, readonly: bool = False, key_type: str | None = None,
                value_type: str | None = None) -> Map:
    kt = INT_TYPES[key_type] if key_type else None
    vt = INT_TYPES[value_type] if value_type else None
    if target.startswith("id:"):
        return ebpfmaps.open_by_id(int(target[3:]), readonly=readonly, key_type=kt, value_type=vt)
    return ebpfmaps.open_pinned(target, readonly=readonly, key_type=kt, value_type=vt)


def fmt(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return value.hex(" ") if value else "(empty)"
    if isinstance(value, PerCpuValues):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)


def jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    return value


def encode_arg(m: Map, text: str, role: str) -> Any:
    codec = m.key_codec if role == "key" else m.value_codec
    from ebpfmaps.btf import BtfCodec
    from ebpfmaps.codecs import Codec, PerCpuCodec, StructCodec

    if isinstance(codec, PerCpuCodec):
        codec = codec.elem
    if isinstance(codec, BtfCodec):
        try:
            return json.loads(text)  # a record as a JSON object, an enum by name ("RED"), a number
        except ValueError:
            return parse_hex(text)
    if isinstance(codec, StructCodec) and codec.scalar:
        return int(text, 0)
    if type(codec) is Codec:
        return parse_hex(text)
    try:
        return int(text, 0)  # IndexCodec and friends accept ints
    except ValueError:
        return parse_hex(text)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is optional: plain columns without it
        widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
        print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
        for r in rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
        return
    table = Table(*headers)
    for r in rows:
        table.add_row(*(str(c) for c in r))
    Console().print(table)


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for info in ebpfmaps.list_maps():
        if args.type and info.type != parse_map_type(args.type):
            continue
        rows.append((info.id, info.type_name, info.name, info.key_size, info.value_size, info.max_entries,
                     ",".join(flag_names(info.flags)) or "-", info.memlock if info.memlock is not None else "?"))
    if args.json:
        keys = ("id", "type", "name", "key_size", "value_size", "max_entries", "flags", "memlock")
        print(json.dumps([dict(zip(keys, r)) for r in rows], indent=1))
    else:
        print_table(["id", "type", "name", "key", "value", "max", "flags", "memlock"], rows)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with open_target(args.target, readonly=True) as m:
        info = m.info()
        data = {
            "id": info.id, "name": info.name, "type": info.type_name, "type_id": info.type,
            "key_size": info.key_size, "value_size": info.value_size, "max_entries": info.max_entries,
            "flags": flag_names(info.flags), "map_extra": info.map_extra, "memlock": info.memlock,
            "frozen": info.frozen, "btf_id": info.btf_id, "class": type(m).__name__,
        }
        if args.json:
            print(json.dumps(data, indent=1))
        else:
            for k, v in data.items():
                print(f"{k:12s} {v}")
    return 0


def btf_formatter(m: Map, args: argparse.Namespace) -> Any:
    """The map's BTF formatter, unless -k/-v ask for other types."""
    from ebpfmaps.btf import map_formatter

    if args.key_type or args.value_type:
        return None
    return map_formatter(m.info(), per_cpu=m.per_cpu)


def print_btf_entries(m: Map, fmtr: Any, as_json: bool) -> None:
    """Every entry as bpftool formats it (``--json``), or as a table of typed values with field names."""
    from ebpfmaps.btf import render_value

    if as_json:
        print(json.dumps([fmtr.entry(k, v) for k, v in m.raw_pairs()], indent=1))
        return
    rows = [(render_value(k), render_value(v)) for k, v in m.items()]
    print_table(["key", "value"], rows)
    print(f"{len(rows)} entries")


def cmd_dump(args: argparse.Namespace) -> int:
    with open_target(args.target, readonly=True, key_type=args.key_type, value_type=args.value_type) as m:
        fmtr = btf_formatter(m, args)
        if fmtr is not None:
            print_btf_entries(m, fmtr, args.json)
            return 0
        rows = [(k, v) for k, v in m.items()]
        if args.json:
            print(json.dumps([{"key": jsonable(k), "value": jsonable(v)} for k, v in rows], indent=1))
        else:
            print_table(["key", "value"], [(fmt(k), fmt(v)) for k, v in rows])
            print(f"{len(rows)} entries")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with open_target(args.target, readonly=True, key_type=args.key_type, value_type=args.value_type) as m:
        value = m.lookup(encode_arg(m, args.key, "key"))
        if value is None:
            print("not found", file=sys.stderr)
            return 1
        if btf_formatter(m, args) is not None:
            from ebpfmaps.btf import render_value

            print(render_value(value))  # field names, enums by name, char arrays as text
            return 0
        print(fmt(value))
    return 0


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
        raise SystemExit("ebpfmaps: give an object file, a pinned map (--map PATH) or --id N")
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


def cmd_set(args: argparse.Namespace) -> int:
    flags = {"any": ebpfmaps.BPF_ANY, "noexist": ebpfmaps.BPF_NOEXIST, "exist": ebpfmaps.BPF_EXIST}[args.mode]
    with open_target(args.target, key_type=args.key_type, value_type=args.value_type) as m:
        m.update(encode_arg(m, args.key, "key"), encode_arg(m, args.value, "value"), flags)
    return 0


def cmd_del(args: argparse.Namespace) -> int:
    with open_target(args.target, key_type=args.key_type) as m:
        m.delete(encode_arg(m, args.key, "key"))
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    flags = 0
    for name in args.flag or []:
        flags |= getattr(ebpfmaps.maptypes, f"BPF_F_{name.upper()}")
    kwargs: dict[str, Any] = {"flags": flags, "name": args.name or ""}
    for field in ("key_size", "value_size", "max_entries"):
        if getattr(args, field) is not None:
            kwargs[field] = getattr(args, field)
    with ebpfmaps.create(args.type, **kwargs) as m:
        m.pin(args.path)
        print(f"created {type_name(m.type)} map id {m.info().id}, pinned at {args.path}")
    return 0


def cmd_unpin(args: argparse.Namespace) -> int:
    ebpfmaps.unpin(args.path)
    return 0


def cmd_mount(args: argparse.Namespace) -> int:
    print(ebpfmaps.mount_bpffs(args.dir))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ebpfmaps import demo

    return demo.main()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebpfmaps", description="Inspect and edit Linux BPF maps.")
    p.add_argument("--version", action="version", version=f"ebpfmaps {ebpfmaps.__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def typed(sp: argparse.ArgumentParser, value: bool = True) -> None:
        sp.add_argument("-k", "--key-type", choices=sorted(INT_TYPES))
        if value:
            sp.add_argument("-v", "--value-type", choices=sorted(INT_TYPES))

    s = sub.add_parser("list", help="every map in the system")
    s.add_argument("--type", help="only maps of this type (e.g. hash)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_list)
    s = sub.add_parser("show", help="a map's info")
    s.add_argument("target", help="pin path or id:N")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_show)
    s = sub.add_parser("dump", help="every entry")
    s.add_argument("target")
    s.add_argument("--json", action="store_true")
    typed(s)
    s.set_defaults(fn=cmd_dump)
    s = sub.add_parser("get", help="look up one key")
    s.add_argument("target")
    s.add_argument("key")
    typed(s)
    s.set_defaults(fn=cmd_get)
    s = sub.add_parser("set", help="write one entry")
    s.add_argument("target")
    s.add_argument("key")
    s.add_argument("value")
    s.add_argument("--mode", choices=("any", "noexist", "exist"), default="any")
    typed(s)
    s.set_defaults(fn=cmd_set)
    s = sub.add_parser("del", help="delete one key")
    s.add_argument("target")
    s.add_argument("key")
    typed(s, value=False)
    s.set_defaults(fn=cmd_del)
    s = sub.add_parser("create", help="create a map and pin it")
    s.add_argument("type", help="hash, array, lru-hash, ... or a numeric id")
    s.add_argument("path", help="pin path on a bpffs")
    s.add_argument("--key-size", type=int)
    s.add_argument("--value-size", type=int)
    s.add_argument("--max-entries", type=int)
    s.add_argument("--name")
    s.add_argument("--flag", action="append", help="creation flag name, e.g. no_prealloc (repeatable)")
    s.set_defaults(fn=cmd_create)
    s = sub.add_parser("unpin", help="remove a pin")
    s.add_argument("path")
    s.set_defaults(fn=cmd_unpin)
    s = sub.add_parser("mount", help="mount a bpffs (default /sys/fs/bpf)")
    s.add_argument("dir", nargs="?", default="/sys/fs/bpf")
    s.set_defaults(fn=cmd_mount)
    s = sub.add_parser("btf", help="a map's or an object's BTF types as C (bpftool btf dump ... format c)")
    s.add_argument("target", nargs="?", help="pinned map path or OBJECT.o")
    s.add_argument("--id", type=int, help="a map id")
    s.set_defaults(fn=cmd_btf, map=None)
    s = sub.add_parser("gen-types", help="Python ctypes types for the maps of an object or a map")
    s.add_argument("target", nargs="?", help="OBJECT.o")
    s.add_argument("--map", help="a pinned map path")
    s.add_argument("--id", type=int, help="a map id")
    s.set_defaults(fn=cmd_gen_types)
    s = sub.add_parser("demo", help="the library at work on the real kernel")
    s.set_defaults(fn=cmd_demo)
    cli_operator.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except MapError as exc:
        print(f"ebpfmaps: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except (struct.error, ValueError) as exc:
        print(f"ebpfmaps: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["build_parser", "main"]
