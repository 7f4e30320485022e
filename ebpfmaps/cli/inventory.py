"""Which maps exist: ``list`` and ``show`` (selection by pin path, id or name; pin paths with ``--pins``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from itertools import chain, islice

import ebpfmaps
from ebpfmaps._lazy import lazy_module
from ebpfmaps.cli import progress
from ebpfmaps.cli.common import (
    UsageError,
    add_json,
    map_object,
    open_target,
    print_json,
    print_rows,
    stdout_is_terminal,
)
from ebpfmaps.maptypes import parse_map_type
from ebpfmaps.spec import MapInfo

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    import json
    from typing import Any
else:
    json = lazy_module("json")  # loaded by --json output and JSON values only

_HEADERS = ["id", "type", "name", "key", "value", "max", "flags", "memlock", "pinned"]
_RICH_ROWS = 2000


def _row(obj: dict[str, Any]) -> list[str]:
    pinned = obj["pinned"]
    return [str(obj["id"]), obj["type"], obj["name"] or "-", str(obj["key_size"]), str(obj["value_size"]),
            str(obj["max_entries"]), ",".join(obj["flags"]) or "-",
            "?" if obj["memlock"] is None else str(obj["memlock"]),
            "-" if not pinned else " ".join(pinned)]


def _selected(args: argparse.Namespace) -> Iterator[MapInfo]:
    want_type = None
    if args.type:
        try:
            want_type = parse_map_type(args.type)
        except ebpfmaps.MapError as exc:
            raise UsageError(str(exc)) from None
    for info in ebpfmaps.iter_maps():
        if want_type is not None and info.type != want_type:
            continue
        if args.name is not None and info.name != args.name:
            continue
        yield info


def _emit(objects: Iterator[dict[str, Any]], as_json: bool) -> None:
    out = sys.stdout
    if as_json:
        out.write("[")
        n = 0
        for obj in objects:
            out.write(("\n" if n == 0 else ",\n") + json.dumps(obj))
            n += 1
        out.write("\n]\n" if n else "]\n")
        return
    rows = (_row(o) for o in objects)
    if stdout_is_terminal():
        first = list(islice(rows, _RICH_ROWS + 1))
        if len(first) <= _RICH_ROWS and progress.print_rich_table(_HEADERS, first):
            return
        print_rows(_HEADERS, chain(first, rows), out)
        return
    print_rows(_HEADERS, rows, out)


def cmd_list(args: argparse.Namespace) -> int:
    pins = ebpfmaps.pins_by_map_id() if args.pins else None
    objects = (map_object(info, pins.get(info.id, []) if pins is not None else None) for info in _selected(args))
    _emit(objects, getattr(args, "json", False))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    if args.target is None:
        return cmd_list(args)
    with open_target(args.target, readonly=True, typed=False) as m:
        info = m.info()
    pinned: list[str] | None = None
    if args.pins:
        pinned = ebpfmaps.pins_by_map_id().get(info.id, [])
    elif not args.target.startswith(("id:", "name:")):
        pinned = [args.target]
    obj = map_object(info, pinned)
    if getattr(args, "json", False):
        print_json(obj)
    else:
        for key, value in obj.items():
            if isinstance(value, list):
                value = " ".join(value) or "-"
            print(f"{key:12s} {'-' if value is None else value}")
    return 0


def _filters(s: argparse.ArgumentParser) -> None:
    s.add_argument("--type", help="only maps of this type (hash, array, lru_hash, ... or a number)")
    s.add_argument("--name", help="only maps with this name")
    s.add_argument("-f", "--pins", action="store_true",
                   help="look up every map's pin paths on the mounted bpffs (as bpftool -f)")
    add_json(s)


def register(sub: Any) -> None:
    s = sub.add_parser("list", help="every map in the system", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  ebpfmaps list\n  ebpfmaps list --type hash --pins\n"
                              "  ebpfmaps list --json | jq '.[] | select(.max_entries > 1000)'")
    _filters(s)
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("show", help="one map's info (every map without a selector)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  ebpfmaps show /sys/fs/bpf/counts\n  ebpfmaps show id:42 --json\n"
                              "  ebpfmaps show name:flows --pins")
    s.add_argument("target", nargs="?", help="pin path, id:N or name:NAME")
    _filters(s)
    s.set_defaults(fn=cmd_show)
