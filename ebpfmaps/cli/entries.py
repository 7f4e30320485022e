"""Entry commands: dump, get, set, del, getnext, push, pop, peek.

``dump`` streams: entries are read in kernel batches and written chunk by chunk (a JSON array, JSON Lines
or table rows), so memory stays constant however large the map is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from itertools import chain, islice

import ebpfmaps
from ebpfmaps._lazy import lazy_module
from ebpfmaps.cli import progress
from ebpfmaps.cli.common import (
    NotFound,
    UsageError,
    add_json,
    add_types,
    has_keys,
    is_of_maps,
    jsonable,
    of_class,
    open_target,
    parse_key,
    parse_value,
    print_json,
    print_rows,
    stdout_is_terminal,
    text_of,
)
from ebpfmaps.codecs import Codec, IndexCodec, StructCodec
from ebpfmaps.errors import KeyNotFound
from ebpfmaps.map import Map

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    import json
    from typing import Any

    from ebpfmaps.btf import formatted as btf_formatted
    from ebpfmaps.btf.formatted import MapFormatter
    from ebpfmaps.maps import bloom, queue, ringbuf
    from ebpfmaps.maps.queue import KeylessMap
else:
    # Loaded when a command meets such a map: a get on a hash map loads no other family, nor BTF's formatter
    # unless the map is typed by its BTF.
    btf_formatted = lazy_module("ebpfmaps.btf.formatted")
    json = lazy_module("json")  # loaded by --json output and JSON values only
    bloom = lazy_module("ebpfmaps.maps.bloom")
    queue = lazy_module("ebpfmaps.maps.queue")
    ringbuf = lazy_module("ebpfmaps.maps.ringbuf")

DUMP_BATCH = 16384
# A terminal shows a rich table up to this many rows; longer dumps stream as plain rows.
RICH_TABLE_ROWS = 2000
_UPDATE_MODES = {"any": ebpfmaps.BPF_ANY, "noexist": ebpfmaps.BPF_NOEXIST, "exist": ebpfmaps.BPF_EXIST}


# ------------------------------------------------------------------ reading in chunks
def raw_entry_chunks(m: Map, batch_size: int = DUMP_BATCH) -> Iterator[tuple[bytes, bytes, int]]:
    """Packed ``(keys, values, count)`` chunks of the whole map, one kernel batch each (or a get-next-key
    walk where the kernel has no batch operations for the type)."""
    return m.raw_chunks(values=True, batch_size=batch_size)


def entry_chunks(m: Map, batch_size: int = DUMP_BATCH) -> Iterator[tuple[list[Any], list[Any]]]:
    """Decoded ``(keys, values)`` chunks of the whole map."""
    if _own_reading(m):
        # A family with its own reading (sockets, programs, storage...): its items, chunked.
        it = iter(m.items())
        while chunk := list(islice(it, batch_size)):
            yield [k for k, _ in chunk], [v for _, v in chunk]
        return
    kdm, vdm = m.key_codec.decode_many, m.value_codec.decode_many
    for kb, vb, count in raw_entry_chunks(m, batch_size):
        yield kdm(kb, count), vdm(vb, count)


def _own_reading(m: Map) -> bool:
    return type(m).items is not Map.items


JsonEncoder = Callable[[bytes, int], list[str]]


def _json_encoder(codec: Codec) -> tuple[JsonEncoder, str]:
    """How packed keys or values of a chunk become JSON: a function giving each one's text, and the template
    that text goes in. The plain forms stay in C loops: raw bytes are one hex string of the whole chunk cut at
    every element, integers are decoded in one unpack."""
    if type(codec) is Codec:
        size = codec.size
        if size == 0:
            return (lambda buf, count: [""] * count), '"0x{}"'
        return (lambda buf, count: buf.hex(" ", size).split(" ") if count else []), '"0x{}"'
    decode_many = codec.decode_many
    if isinstance(codec, IndexCodec) or (isinstance(codec, StructCodec) and codec.scalar):
        return (lambda buf, count: list(map(str, decode_many(buf, count)))), "{}"
    dumps = json.dumps
    return (lambda buf, count: [dumps(jsonable(x)) for x in decode_many(buf, count)]), "{}"


def _decoded_encoder(codec: Codec) -> Callable[[list[Any]], list[str]]:
    dumps = json.dumps
    return lambda xs: [dumps(jsonable(x)) for x in xs]


def _refuse_unreadable(m: Map, command: str) -> None:
    if of_class(m, "ebpfmaps.maps.queue", "QueueMap", "StackMap"):
        raise UsageError(f"{command}: a {m.info().type_name} map is read by taking elements: use `ebpfmaps peek` "
                         "(the next element) or `ebpfmaps pop` (take it)")
    if of_class(m, "ebpfmaps.maps.ringbuf", "RingBufMap", "UserRingBufMap"):
        raise UsageError(f"{command}: a ring buffer holds records, not entries: stream them with `ebpfmaps events`")
    if of_class(m, "ebpfmaps.maps.perf", "PerfEventArray") and command in ("dump", "get"):
        raise UsageError(f"{command}: a perf event array holds perf event fds, which user space cannot read back: "
                         "stream its samples with `ebpfmaps events`")
    if of_class(m, "ebpfmaps.maps.queue", "KeylessMap"):
        raise UsageError(f"{command}: a {m.info().type_name} map has no entries to list; test an element with "
                         "`ebpfmaps peek PATH VALUE`")


def cmd_dump(args: argparse.Namespace) -> int:
    with open_target(args.target, readonly=True, key_type=args.key_type, value_type=args.value_type) as m:
        _refuse_unreadable(m, "dump")
        out = sys.stdout
        fmtr = btf_formatter(m, args)
        with progress.bar("dumping", total=None) as advance:
            if args.jsonl or getattr(args, "json", False):
                n = _dump_json(m, out, advance, lines=args.jsonl, fmtr=fmtr)
            else:
                n = _dump_table(m, out, advance, btf_formatted.render_value if fmtr is not None else text_of)
        if not (args.jsonl or getattr(args, "json", False)):
            print(f"{n} entr{'y' if n == 1 else 'ies'}")
    return 0


def btf_formatter(m: Map, args: argparse.Namespace) -> MapFormatter | None:
    """The map's BTF formatter (bpftool's ``formatted`` JSON, field names in tables), unless -k/-v ask for
    other types."""
    if args.key_type or args.value_type:
        return None
    return btf_formatted.map_formatter(m.info(), per_cpu=m.per_cpu)


def _json_chunks(m: Map, fmtr: MapFormatter | None = None) -> Iterator[list[str]]:
    """Each chunk of the map as JSON objects ``{"key": ..., "value": ...}``."""
    if fmtr is not None and not _own_reading(m):
        for kb, vb, count in raw_entry_chunks(m):
            yield fmtr.json_items(kb, vb, count)
        return
    if _own_reading(m):
        kd, vd = _decoded_encoder(m.key_codec), _decoded_encoder(m.value_codec)
        for keys, values in entry_chunks(m):
            yield [f'{{"key": {k}, "value": {v}}}' for k, v in zip(kd(keys), vd(values))]
        return
    (kenc, kform), (venc, vform) = _json_encoder(m.key_codec), _json_encoder(m.value_codec)
    item = ('{{"key": ' + kform + ', "value": ' + vform + "}}").format
    for kb, vb, count in raw_entry_chunks(m):
        yield list(map(item, kenc(kb, count), venc(vb, count)))


def _dump_json(m: Map, out: Any, advance: Callable[[int], None], *, lines: bool,
               fmtr: MapFormatter | None = None) -> int:
    write = out.write
    n = 0
    chunks = _json_chunks(m, fmtr)
    # The first read comes before any output: a map that cannot be read leaves only the JSON error object.
    first = next(chunks, None)
    if not lines:
        write("[")
    for items in chain([] if first is None else [first], chunks):
        if lines:
            write("\n".join(items) + "\n")
        else:
            write(("\n" if n == 0 else ",\n") + ",\n".join(items))
        n += len(items)
        advance(len(items))
    if not lines:
        write("\n]\n" if n else "]\n")
    return n


def _dump_table(m: Map, out: Any, advance: Callable[[int], None], render: Callable[[Any], str]) -> int:
    headers = ["key", "value"]

    def rows() -> Iterator[list[str]]:
        for keys, values in entry_chunks(m):
            advance(len(keys))
            for k, v in zip(keys, values):
                yield [render(k), render(v)]

    if stdout_is_terminal():
        it = rows()
        first = list(islice(it, RICH_TABLE_ROWS + 1))
        if len(first) <= RICH_TABLE_ROWS and progress.print_rich_table(headers, first):
            return len(first)
        return print_rows(headers, chain(first, it), out)
    return print_rows(headers, rows(), out)


# ------------------------------------------------------------------ one entry
def _entry(key: Any, value: Any) -> dict[str, Any]:
    return {"key": jsonable(key), "value": jsonable(value)}


def cmd_get(args: argparse.Namespace) -> int:
    with open_target(args.target, readonly=True, key_type=args.key_type, value_type=args.value_type) as m:
        _refuse_unreadable(m, "get")
        key = parse_key(m, args.key)
        if is_of_maps(m):
            value: Any = m.inner_id(key)  # type: ignore[attr-defined]
        else:
            value = m.lookup(key)
        if value is None:
            raise KeyNotFound(f"get: key {args.key} not found", op="lookup")
        fmtr = None if is_of_maps(m) else btf_formatter(m, args)
        as_json = getattr(args, "json", False)
        if fmtr is not None:
            raw_key = m.key_codec.encode(key)
            raw_value = m.lookup_bytes(raw_key)
            if as_json and raw_value is not None:
                print_json(fmtr.entry(raw_key, raw_value))  # bpftool's formatted key and value
            else:
                print(btf_formatted.render_value(value))  # field names, enums by name, char arrays as text
        elif as_json:
            print_json(_entry(m.key_codec.decode(m.key_codec.encode(key)), value))
        else:
            print(text_of(value))
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    with open_target(args.target, key_type=args.key_type, value_type=args.value_type) as m:
        _refuse_unreadable(m, "set")
        key, value = parse_key(m, args.key), parse_value(m, args.value)
        try:
            m.update(key, value, _UPDATE_MODES[args.mode])
        finally:
            if isinstance(value, Map):
                value.close()
        if getattr(args, "json", False):
            shown = m.inner_id(key) if is_of_maps(m) else m.lookup(key)  # type: ignore[attr-defined]
            print_json(_entry(m.key_codec.decode(m.key_codec.encode(key)), shown))
    return 0


def cmd_del(args: argparse.Namespace) -> int:
    with open_target(args.target, key_type=args.key_type) as m:
        _refuse_unreadable(m, "del")
        key = parse_key(m, args.key)
        m.delete(key)
        if getattr(args, "json", False):
            print_json({"key": jsonable(m.key_codec.decode(m.key_codec.encode(key)))})
    return 0


def cmd_getnext(args: argparse.Namespace) -> int:
    with open_target(args.target, readonly=True, key_type=args.key_type) as m:
        _refuse_unreadable(m, "getnext")
        key = None if args.key is None else parse_key(m, args.key)
        nxt = m.next_key(key)
        if nxt is None:
            raise NotFound("no next key: the map is empty" if key is None else f"{args.key} is the last key")
        shown_key = None if key is None else jsonable(m.key_codec.decode(m.key_codec.encode(key)))
        if getattr(args, "json", False):
            print_json({"key": shown_key, "next_key": jsonable(nxt)})
        else:
            print(text_of(nxt))
    return 0


# ------------------------------------------------------------------ queues, stacks and bloom filters
def _keyless(m: Map, command: str) -> KeylessMap:
    if has_keys(m) or not isinstance(m, queue.KeylessMap):
        raise UsageError(f"{command}: a {m.info().type_name} map has keys: use get/set/del")
    if isinstance(m, (ringbuf.RingBufMap, ringbuf.UserRingBufMap)):
        raise UsageError(f"{command}: a ring buffer is read with `ebpfmaps events`")
    return m


def cmd_push(args: argparse.Namespace) -> int:
    with open_target(args.target, value_type=args.value_type) as m:
        km = _keyless(m, "push")
        value = parse_value(km, args.value)
        if isinstance(km, (queue.QueueMap, queue.StackMap)):
            km.push(value, overwrite=args.overwrite)
        elif isinstance(km, bloom.BloomFilterMap):
            km.add(value)
        else:
            raise UsageError(f"push: a {km.info().type_name} map takes no elements from user space")
        if getattr(args, "json", False):
            print_json({"value": jsonable(km.value_codec.decode(km.value_codec.encode(value)))})
    return 0


def cmd_pop(args: argparse.Namespace) -> int:
    with open_target(args.target, value_type=args.value_type) as m:
        km = _keyless(m, "pop")
        if not isinstance(km, (queue.QueueMap, queue.StackMap)):
            raise UsageError(f"pop: elements cannot be taken from a {km.info().type_name} map")
        taken = []
        limit = None if args.all else args.count
        for value in km.drain(limit):
            taken.append(value)
        if not taken:
            raise NotFound(f"the {km.info().type_name} is empty")
        if getattr(args, "json", False):
            print_json([{"value": jsonable(v)} for v in taken])
        else:
            for v in taken:
                print(text_of(v))
    return 0


def cmd_peek(args: argparse.Namespace) -> int:
    with open_target(args.target, readonly=True, value_type=args.value_type) as m:
        km = _keyless(m, "peek")
        if isinstance(km, (queue.QueueMap, queue.StackMap)):
            if args.value is not None:
                raise UsageError("peek on a queue or stack takes no value: it shows the next element")
            value = km.peek()
            if value is None:
                raise NotFound(f"the {km.info().type_name} is empty")
        else:
            if args.value is None:
                raise UsageError("peek on a bloom filter tests one VALUE: ebpfmaps peek PATH VALUE")
            probe = parse_value(km, args.value)
            if probe not in km:
                raise NotFound(f"{args.value} is not in the bloom filter")
            value = probe
        if getattr(args, "json", False):
            print_json({"value": jsonable(value)})
        else:
            print(text_of(value))
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("dump", help="every entry (streamed)", formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Print every entry, streamed in kernel batches: a table, a JSON array (--json) "
                                   "or JSON Lines (--jsonl).",
                       epilog="examples:\n  ebpfmaps dump /sys/fs/bpf/counts -k u32 -v u64\n"
                              "  ebpfmaps dump id:42 --json > entries.json\n"
                              "  ebpfmaps dump name:flows --jsonl | jq .value")
    s.add_argument("target", help="pin path, id:N or name:NAME")
    add_json(s)
    s.add_argument("--jsonl", action="store_true", help="one JSON object per line")
    add_types(s)
    s.set_defaults(fn=cmd_dump)

    for name in ("get", "lookup"):
        s = sub.add_parser(name, help="look up one key" + (" (as get)" if name == "lookup" else ""),
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="examples:\n  ebpfmaps get /sys/fs/bpf/counts 5 -k u32 -v u64\n"
                                  "  ebpfmaps get /sys/fs/bpf/routes 10.0.0.0/8\n"
                                  "  ebpfmaps get id:42 0x0a000001 --json")
        s.add_argument("target", help="pin path, id:N or name:NAME")
        s.add_argument("key")
        add_json(s)
        add_types(s)
        s.set_defaults(fn=cmd_get)

    for name in ("set", "update"):
        s = sub.add_parser(name, help="write one entry" + (" (as set)" if name == "update" else ""),
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="examples:\n  ebpfmaps set /sys/fs/bpf/counts 1 100\n"
                                  "  ebpfmaps set /sys/fs/bpf/routes 10.0.0.0/8 0x01000000\n"
                                  "  ebpfmaps set /sys/fs/bpf/outer 0 id:57    # map-of-maps: the inner map\n"
                                  "  ebpfmaps set /sys/fs/bpf/pcpu 3 1,2,3,4   # per-CPU: one value per CPU")
        s.add_argument("target", help="pin path, id:N or name:NAME")
        s.add_argument("key")
        s.add_argument("value")
        s.add_argument("--mode", choices=sorted(_UPDATE_MODES), default="any",
                       help="any (default), noexist (create only) or exist (replace only)")
        add_json(s)
        add_types(s)
        s.set_defaults(fn=cmd_set)

    for name in ("del", "delete"):
        s = sub.add_parser(name, help="delete one key" + (" (as del)" if name == "delete" else ""),
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="example:\n  ebpfmaps del /sys/fs/bpf/counts 5")
        s.add_argument("target", help="pin path, id:N or name:NAME")
        s.add_argument("key")
        add_json(s)
        add_types(s, value=False)
        s.set_defaults(fn=cmd_del)

    s = sub.add_parser("getnext", help="the key after KEY (the first key without KEY)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  ebpfmaps getnext /sys/fs/bpf/counts\n  ebpfmaps getnext id:42 5 -k u32")
    s.add_argument("target", help="pin path, id:N or name:NAME")
    s.add_argument("key", nargs="?")
    add_json(s)
    add_types(s, value=False)
    s.set_defaults(fn=cmd_getnext)

    s = sub.add_parser("push", help="push a value onto a queue or stack (or add it to a bloom filter)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  ebpfmaps push /sys/fs/bpf/jobs 7 -v u32\n"
                              "  ebpfmaps push /sys/fs/bpf/jobs 8 --overwrite   # full: drop the oldest")
    s.add_argument("target", help="pin path, id:N or name:NAME")
    s.add_argument("value")
    s.add_argument("--overwrite", action="store_true", help="when full, replace the oldest element")
    add_json(s)
    add_types(s, key=False)
    s.set_defaults(fn=cmd_push)

    s = sub.add_parser("pop", help="take elements from a queue or stack",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  ebpfmaps pop /sys/fs/bpf/jobs\n  ebpfmaps pop /sys/fs/bpf/jobs --all --json")
    s.add_argument("target", help="pin path, id:N or name:NAME")
    group = s.add_mutually_exclusive_group()
    group.add_argument("-n", "--count", type=int, default=1, help="take up to this many (default 1)")
    group.add_argument("--all", action="store_true", help="take every element")
    add_json(s)
    add_types(s, key=False)
    s.set_defaults(fn=cmd_pop)

    s = sub.add_parser("peek", help="the next element of a queue or stack; or test a bloom filter",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  ebpfmaps peek /sys/fs/bpf/jobs -v u32\n"
                              "  ebpfmaps peek /sys/fs/bpf/seen 0x0a000001   # bloom filter: exit 1 if absent")
    s.add_argument("target", help="pin path, id:N or name:NAME")
    s.add_argument("value", nargs="?", help="bloom filters: the element to test")
    add_json(s)
    add_types(s, key=False)
    s.set_defaults(fn=cmd_peek)
