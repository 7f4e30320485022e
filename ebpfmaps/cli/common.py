"""What every command shares: exit codes, opening a map from its selector, keys and values in each
type's natural syntax, and the one JSON schema.

Only the core (``import ebpfmaps``) is imported here, so a one-shot ``get`` starts fast.
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, islice

import ebpfmaps
from ebpfmaps._lazy import lazy_module
from ebpfmaps.cli import progress
from ebpfmaps.codecs import Codec, IndexCodec, PerCpuCodec, PerCpuValues, StructCodec
from ebpfmaps.errors import (
    IncompatibleMap,
    InvalidArgument,
    KeyNotFound,
    MapError,
    NotOnBpffs,
    PinNotFound,
)
from ebpfmaps.map import Map
from ebpfmaps.maptypes import flag_names
from ebpfmaps.spec import MapInfo

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    import json
    from typing import Any, TextIO
else:
    json = lazy_module("json")  # loaded by --json output and JSON values only

# Documented exit codes (``ebpfmaps --help`` lists them).
EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2
EXIT_KERNEL = 3

INT_TYPES = {
    "u8": "=B", "u16": "=H", "u32": "=I", "u64": "=Q",
    "i8": "=b", "i16": "=h", "i32": "=i", "i64": "=q",
    "be16": ">H", "be32": ">I", "be64": ">Q",
}
_WIDTH_SAMPLE = 256  # rows that set a streamed table's column widths
_NATIVE_INT = {1: "=B", 2: "=H", 4: "=I", 8: "=Q"}

SYNTAX_HELP = """\
map selectors:
  /sys/fs/bpf/PATH   a pin on a bpffs
  id:N               the map with kernel id N (as `ebpfmaps list` shows)
  name:NAME          the one map named NAME (an error when several share it)

keys and values (each type's natural syntax):
  123, -5            an integer, stored in host byte order in the key's or value's size (1, 2, 4 or 8 bytes)
  0x0100000a         raw bytes in memory order, as hex (also 01:00:00:0a or "01 00 00 0a"); the length must
                     match the key or value size exactly
  -k u32 / -v be16   read KEY / VALUE as that integer type (u8..u64, i8..i64, be16..be64)
  10.0.0.0/8, fe80::1/64, 10.1.2.3
                     LPM trie keys: a CIDR network or one address (a /32 or /128)
  id:N or PATH       map-of-maps values: the inner map, by id or pin
  1,2,3,4            per-CPU values: one value per possible CPU (a single value is copied to every CPU)

exit codes:
  0 ok, 1 not found (key, map, pin, empty queue), 2 usage (bad arguments or syntax),
  3 kernel or permission error (the kernel refused the operation)
"""


class UsageError(Exception):
    """Bad arguments or key/value syntax: exit code 2."""


class NotFound(Exception):
    """A key, map or element that is not there: exit code 1."""


def exit_code_of(exc: BaseException) -> int:
    """The documented exit code of an error: the library's refusals made before any syscall (bad sizes,
    flags, syntax; no errno) are usage errors, and what the kernel refused is a kernel error."""
    if isinstance(exc, (NotFound, KeyNotFound, PinNotFound)):
        return EXIT_NOT_FOUND
    if isinstance(exc, (UsageError, struct.error)):
        return EXIT_USAGE
    if isinstance(exc, (InvalidArgument, NotOnBpffs, IncompatibleMap)) and exc.errno is None:
        return EXIT_USAGE
    return EXIT_KERNEL


# ------------------------------------------------------------------ selecting a map
def _map_id_by_name(name: str) -> int:
    found = [info.id for info in ebpfmaps.list_maps() if info.name == name]
    if not found:
        raise NotFound(f"no map is named {name!r}")
    if len(found) > 1:
        raise UsageError(f"{len(found)} maps are named {name!r} (ids {', '.join(map(str, found))}): select one "
                         "with id:N")
    return found[0]


def parse_id(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise UsageError(f"{text!r} is not a map id (id:N takes a number)") from None
    if value <= 0:
        raise UsageError(f"map ids are positive, not {value}")
    return value


def open_target(target: str, *, readonly: bool = False, key_type: str | None = None,
                value_type: str | None = None, typed: bool = True) -> Map:
    """The map a selector names: a pin path, ``id:N`` or ``name:NAME``; ``typed=False`` for a command that
    reads no entries (its BTF types are then not read)."""
    kt = INT_TYPES[key_type] if key_type else None
    vt = INT_TYPES[value_type] if value_type else None
    if target.startswith(("id:", "name:")):
        map_id = parse_id(target[3:]) if target.startswith("id:") else _map_id_by_name(target[5:])
        try:
            return ebpfmaps.open_by_id(map_id, readonly=readonly, key_type=kt, value_type=vt, typed=typed)
        except (KeyNotFound, FileNotFoundError):
            raise NotFound(f"no map has id {map_id}") from None
        except MapError as exc:
            if exc.errno == 2:  # ENOENT: the id is not (or no longer) in use
                raise NotFound(f"no map has id {map_id}") from None
            raise
    return ebpfmaps.open_pinned(target, readonly=readonly, key_type=kt, value_type=vt, typed=typed)


# ------------------------------------------------------------------ keys and values in
def _is_decimal(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isdigit()


def parse_hex(text: str) -> bytes:
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "").replace(" ", "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise UsageError(f"{text!r} is neither an integer nor hex bytes (see `ebpfmaps --help` for the syntax)") \
            from None


def _raw_bytes(text: str, size: int, what: str) -> bytes:
    """An integer in host order of ``size`` bytes, or hex bytes in memory order."""
    if _is_decimal(text):
        number = int(text)
        fmt = _NATIVE_INT.get(size)
        if fmt is None:
            raise UsageError(f"the {what} is {size} bytes: give it as hex bytes, not the integer {text}")
        if number < 0:
            fmt = fmt.lower()
        try:
            return struct.pack(fmt, number)
        except struct.error:
            raise UsageError(f"{text} does not fit the {size}-byte {what}") from None
    data = parse_hex(text)
    if len(data) != size:
        raise UsageError(f"{text!r} is {len(data)} bytes; the {what} is {size} bytes")
    return data


def _scalar(codec: Codec, text: str, what: str) -> Any:
    if isinstance(codec, StructCodec) and codec.scalar:
        if _is_decimal(text) or text.lower().startswith(("0x", "-0x")):
            try:
                return int(text, 0)
            except ValueError:
                pass
        raise UsageError(f"the {what} is an integer, not {text!r}")
    if isinstance(codec, IndexCodec):
        try:
            return int(text, 0)
        except ValueError:
            raise UsageError(f"the {what} is an index (an integer), not {text!r}") from None
    if of_class(codec, "ebpfmaps.maps.lpm", "LpmKeyCodec"):
        if text.lower().startswith("0x"):
            return _raw_bytes(text, codec.size, what)
        return text  # a CIDR or an address: the codec parses and checks it
    if of_class(codec, "ebpfmaps.maps.of_maps", "InnerMapCodec"):
        return _inner_map(text)
    if type(codec) is Codec:
        return _raw_bytes(text, codec.size, what)
    if of_class(codec, "ebpfmaps.btf.codec", "BtfCodec"):
        try:
            return json.loads(text)  # a record as a JSON object, an enum by name ("RED"), a number
        except ValueError:
            return _raw_bytes(text, codec.size, what)
    # Any other codec (BTF or ctypes structures): JSON for structured values, else raw bytes.
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            raise UsageError(f"the {what} {text!r} is not valid JSON") from None
    return _raw_bytes(text, codec.size, what)


def _inner_map(text: str) -> Map:
    if text.startswith(("id:", "name:")) or os.sep in text:
        return open_target(text)
    if _is_decimal(text):
        return open_target(f"id:{text}")
    raise UsageError(f"a map-of-maps value is an inner map (id:N or a pin path), not {text!r}")


def parse_key(m: Map, text: str) -> Any:
    return _scalar(m.key_codec, text, "key")


def parse_value(m: Map, text: str) -> Any:
    codec = m.value_codec
    if isinstance(codec, PerCpuCodec):
        parts = [p for p in text.split(",") if p.strip()] if "," in text else [text]
        values = [_scalar(codec.elem, p.strip(), "value") for p in parts]
        if len(values) == 1:
            return values[0]
        return values
    return _scalar(codec, text, "value")


# ------------------------------------------------------------------ values out
def jsonable(value: Any) -> Any:
    """The one JSON form of a key or value: ints as numbers, raw bytes as a ``0x`` hex string, LPM keys as
    CIDR strings, per-CPU values as lists (one per possible CPU), structures as objects or lists."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Map):
        return value.id
    return str(value)


def text_of(value: Any) -> str:
    """A key or value for a table or plain output."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex(" ") if value else "(empty)"
    if isinstance(value, PerCpuValues):
        return "[" + ", ".join(text_of(v) for v in value) + "]"
    if isinstance(value, Map):
        return f"map id {value.id}"
    return str(value)


def map_object(info: MapInfo, pinned: list[str] | None) -> dict[str, Any]:
    """A map in the one JSON schema of ``list``, ``show``, ``create``, ``pin`` and ``freeze``.

    ``pinned`` is the list of pin paths found, or null when pins were not looked for (``--pins``).
    """
    return {
        "id": info.id, "name": info.name, "type": info.type_name, "type_id": info.type,
        "key_size": info.key_size, "value_size": info.value_size, "max_entries": info.max_entries,
        "flags": flag_names(info.flags), "map_extra": info.map_extra, "memlock": info.memlock,
        "frozen": info.frozen, "btf_id": info.btf_id, "pinned": pinned,
    }


def print_json(obj: Any, out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    stream.write(json.dumps(obj, indent=1))
    stream.write("\n")


def of_class(obj: object, module: str, *names: str) -> bool:
    """``isinstance(obj, (module.name, ...))`` without importing ``module``: until something loads it, no
    instance of its classes can exist (a one-shot command on a hash map loads no other map family)."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(obj, tuple(getattr(loaded, name) for name in names))


def has_keys(m: Map) -> bool:
    """Whether entries have keys (queues, stacks, bloom filters and rings have none)."""
    return m.key_size > 0


def is_of_maps(m: Map) -> bool:
    return of_class(m, "ebpfmaps.maps.of_maps", "ArrayOfMaps", "HashOfMaps")


def print_rows(headers: list[str], rows: Iterator[list[str]], out: TextIO | None = None) -> int:
    """Plain aligned columns, written row by row: the widths come from the first rows (a long cell later
    widens its column from there on), so nothing but those first rows is held. Returns the number of rows."""
    stream = out or sys.stdout
    first = list(islice(rows, _WIDTH_SAMPLE))
    widths = [max([len(h), *(len(r[i]) for r in first)]) for i, h in enumerate(headers)]
    stream.write("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip() + "\n")
    n = 0
    for row in chain(first, rows):
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
        stream.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
        n += 1
    return n


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-j", "--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output (the schema is in the README)")


def add_types(parser: argparse.ArgumentParser, *, key: bool = True, value: bool = True) -> None:
    if key:
        parser.add_argument("-k", "--key-type", choices=sorted(INT_TYPES), metavar="TYPE",
                            help="read keys as this integer type: " + ", ".join(sorted(INT_TYPES)))
    if value:
        parser.add_argument("-v", "--value-type", choices=sorted(INT_TYPES), metavar="TYPE",
                            help="read values as this integer type")


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def encode_arg(m: Map, text: str, role: str) -> Any:
    """A key (``role="key"``) or value given on the command line, in the map's natural syntax."""
    return parse_key(m, text) if role == "key" else parse_value(m, text)


fmt = text_of  # the name command modules written against the single-module CLI use


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Rows for people: a rich table on a terminal (when rich is installed), else plain columns streamed."""
    texts: Iterator[list[str]] = ([str(c) for c in row] for row in rows)
    if stdout_is_terminal():
        held = list(texts)
        if progress.print_rich_table(list(headers), held):
            return
        texts = iter(held)
    print_rows(list(headers), texts)
