"""Map lifecycle: create (maps of maps included), freeze, pin, unpin, mount, and the demo."""

from __future__ import annotations

import argparse
import sys
import warnings

import ebpfmaps
from ebpfmaps.cli import progress
from ebpfmaps.cli.common import UsageError, add_json, map_object, open_target, print_json
from ebpfmaps.map import Map
from ebpfmaps.maptypes import FLAG_NAMES

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any

_FLAGS_BY_NAME = {name.lower(): bit for bit, name in FLAG_NAMES.items()}


def parse_flags(names: list[str] | None) -> int:
    flags = 0
    for text in names or []:
        for name in text.split(","):
            key = name.strip().lower().removeprefix("bpf_f_")
            if key not in _FLAGS_BY_NAME:
                raise UsageError(f"unknown map flag {name!r}; known flags: {', '.join(sorted(_FLAGS_BY_NAME))}")
            flags |= _FLAGS_BY_NAME[key]
    return flags


def _report(m: Map, pinned: list[str], as_json: bool, verb: str) -> None:
    info = m.info()
    if as_json:
        print_json(map_object(info, pinned))
    else:
        where = f", pinned at {' '.join(pinned)}" if pinned else ""
        print(f"{verb} {info.type_name} map id {info.id}{where}")


def cmd_create(args: argparse.Namespace) -> int:
    kwargs: dict[str, Any] = {"flags": parse_flags(args.flag), "name": args.name or ""}
    for field in ("key_size", "value_size", "max_entries", "map_extra"):
        if getattr(args, field) is not None:
            kwargs[field] = getattr(args, field)
    inner: Map | None = None
    if args.inner_map is not None:
        inner = open_target(args.inner_map, readonly=True, typed=False)
        kwargs["inner_map"] = inner
    try:
        map_type: str | int = int(args.type) if args.type.isdigit() else args.type
        with ebpfmaps.create(map_type, **kwargs) as m:
            m.pin(args.path)
            _report(m, [args.path], getattr(args, "json", False), "created")
    finally:
        if inner is not None:
            inner.close()
    return 0


def cmd_freeze(args: argparse.Namespace) -> int:
    with open_target(args.target, typed=False) as m:
        m.freeze()
        _report(m, [], getattr(args, "json", False), "froze")
    return 0


def cmd_resize(args: argparse.Namespace) -> int:
    if args.max_entries <= 0:
        raise UsageError(f"max_entries must be positive, not {args.max_entries}")
    with open_target(args.target) as m:
        resize = getattr(m, "resize", None)
        if resize is None:
            raise UsageError(f"{m.info().type_name} maps cannot be resized (or the embedded profile is active)")
        with progress.bar("resize: copying entries", None, streams_data=False) as advance:
            copied_so_far = 0

            def report(done: int, total: int) -> None:
                nonlocal copied_so_far
                advance(done - copied_so_far)
                copied_so_far = done

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = resize(args.max_entries, progress=report)
        for warning in caught:  # a ResizeWarning: what did not fit, or a freeze the kernel refused
            print(f"ebpfmaps: warning: {warning.message}", file=sys.stderr)
        if getattr(args, "json", False):
            print_json({"old_id": result.old_id, "new_id": result.new_id, "old_max_entries": result.old_max_entries,
                        "max_entries": result.new_max_entries, "copied": result.copied,
                        "dropped": len(result.dropped), "repinned": result.repinned,
                        "lost_after_copy": result.lost_after_copy})
        else:
            where = f", re-pinned at {result.repinned}" if result.repinned else ""
            print(f"resized map id {result.old_id} -> {result.new_id}: max_entries {result.old_max_entries} -> "
                  f"{result.new_max_entries}, {result.copied} copied, {len(result.dropped)} dropped{where}")
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    with open_target(args.target, readonly=True, typed=False) as m:
        m.pin(args.path)
        _report(m, [args.path], getattr(args, "json", False), "pinned")
    return 0


def cmd_unpin(args: argparse.Namespace) -> int:
    ebpfmaps.unpin(args.path)
    if getattr(args, "json", False):
        print_json({"unpinned": args.path})
    return 0


def cmd_mount(args: argparse.Namespace) -> int:
    where = ebpfmaps.mount_bpffs(args.dir)
    if getattr(args, "json", False):
        print_json({"mounted": where})
    else:
        print(where)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ebpfmaps import demo

    return demo.main()


def register(sub: Any) -> None:
    s = sub.add_parser("create", help="create a map and pin it", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n"
                              "  ebpfmaps create hash /sys/fs/bpf/counts --key-size 4 --value-size 8 --max-entries 1024\n"
                              "  ebpfmaps create lpm_trie /sys/fs/bpf/routes --key-size 8 --value-size 4 "
                              "--max-entries 256 --flag no_prealloc\n"
                              "  ebpfmaps create array /sys/fs/bpf/inner --value-size 8 --max-entries 4\n"
                              "  ebpfmaps create array_of_maps /sys/fs/bpf/outer --max-entries 8 "
                              "--inner-map /sys/fs/bpf/inner")
    s.add_argument("type", help="hash, array, lru_hash, lpm_trie, queue, ringbuf, ... or a numeric id")
    s.add_argument("path", help="pin path on a bpffs")
    s.add_argument("--key-size", type=int)
    s.add_argument("--value-size", type=int)
    s.add_argument("--max-entries", type=int)
    s.add_argument("--map-extra", type=int, help="bloom filters: the number of hash functions")
    s.add_argument("--name", help="the kernel's name for the map (15 characters)")
    s.add_argument("--flag", action="append",
                   help=f"creation flag, repeatable or comma-separated: {', '.join(sorted(_FLAGS_BY_NAME))}")
    s.add_argument("--inner-map", metavar="MAP", help="maps of maps: a template inner map (pin path, id:N, name:N)")
    add_json(s)
    s.set_defaults(fn=cmd_create)

    s = sub.add_parser("freeze", help="make a map read-only for user space, for good",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  ebpfmaps freeze /sys/fs/bpf/config")
    s.add_argument("target", help="pin path, id:N or name:NAME")
    add_json(s)
    s.set_defaults(fn=cmd_freeze)

    s = sub.add_parser("resize", help="give a map a new max_entries (migrated to a new map, re-pinned)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  ebpfmaps resize /sys/fs/bpf/flows 1048576   # writers need not pause")
    s.add_argument("target", help="pin path, id:N or name:NAME")
    s.add_argument("max_entries", type=int)
    add_json(s)
    s.set_defaults(fn=cmd_resize)

    s = sub.add_parser("pin", help="pin a map (by id or name) at a path",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  ebpfmaps pin id:42 /sys/fs/bpf/counts")
    s.add_argument("target", help="id:N, name:NAME or another pin path")
    s.add_argument("path", help="the new pin path on a bpffs")
    add_json(s)
    s.set_defaults(fn=cmd_pin)

    s = sub.add_parser("unpin", help="remove a pin", epilog="example: ebpfmaps unpin /sys/fs/bpf/counts")
    s.add_argument("path")
    add_json(s)
    s.set_defaults(fn=cmd_unpin)

    s = sub.add_parser("mount", help="mount a bpffs (default /sys/fs/bpf)", epilog="example: ebpfmaps mount")
    s.add_argument("dir", nargs="?", default="/sys/fs/bpf")
    add_json(s)
    s.set_defaults(fn=cmd_mount)

    s = sub.add_parser("demo", help="the library at work on the real kernel (text only)")
    s.set_defaults(fn=cmd_demo)
