"""How an extensible map remembers what it is: BTF attached to its kernel base map.

A pinned extensible map must come back, in any process, with its custom type id,
the user's value size and its options. We record them in the base map itself:
the map is created with a small BTF object (loaded with BPF_BTF_LOAD) whose value
type is ``struct ebpfmaps_shim_value { __u8 stored[N]; }`` and which also holds

    enum ebpfmaps_shim_meta {
        EBPFMAPS_SHIM_FORMAT = 1, EBPFMAPS_SHIM_TYPE = <custom id>,
        EBPFMAPS_SHIM_VALUE_SIZE = <user value size>, EBPFMAPS_SHIM_OPT_<name> = <value>, ...
    };

The kernel keeps the BTF as long as the map lives, so the record travels with
the map: through pins, renames of pins and ``open_by_id``, with nothing to keep
in sync and nothing to clean up. ``bpftool map show`` prints the map's ``btf_id``
and ``bpftool btf dump id N`` shows the record (the tests check it that way).

The blob format is the kernel's (Documentation/bpf/btf.rst, include/uapi/linux/btf.h).
"""

from __future__ import annotations

import re
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from ebpfmaps import errors
from ebpfmaps.btf import Btf, load_blob, read_raw
from ebpfmaps.extension import EXTENSIBLE_VALUE_PREFIX
from ebpfmaps.maptypes import MapType
from ebpfmaps.spec import MapInfo

__all__ = ["META_ENUM", "VALUE_STRUCT", "ShimMeta", "build_btf", "read_meta"]

BTF_MAGIC = 0xEB9F
_HEADER = struct.Struct("=HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_TYPE = struct.Struct("=III")  # name_off, info (vlen 0-15, kind 24-28, kind_flag 31), size or type
_U32 = struct.Struct("=I")
_ARRAY = struct.Struct("=III")  # elem type, index type, nelems
_MEMBER = struct.Struct("=III")  # name_off, type, bit offset
_ENUM_VAL = struct.Struct("=II")  # name_off, val

KIND_INT, KIND_ARRAY, KIND_STRUCT, KIND_ENUM = 1, 3, 4, 6
# Bytes that follow the 12-byte btf_type record, per kind (include/uapi/linux/btf.h): a fixed part and a
# per-member part times vlen. Needed to walk BTF written by anyone (a clang-built object's maps have BTF too).
_KIND_EXTRA: dict[int, tuple[int, int]] = {
    1: (4, 0), 2: (0, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 7: (0, 0), 8: (0, 0), 9: (0, 0),
    10: (0, 0), 11: (0, 0), 12: (0, 0), 13: (0, 8), 14: (4, 0), 15: (0, 12), 16: (0, 0), 17: (4, 0), 18: (0, 0),
    19: (0, 12),
}

VALUE_STRUCT = EXTENSIBLE_VALUE_PREFIX + "shim_value"  # the core consults extensions only for such names
META_ENUM = "ebpfmaps_shim_meta"
FORMAT = 1
_PREFIX = "EBPFMAPS_SHIM_"
_OPT_PREFIX = _PREFIX + "OPT_"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_OPTION = 0xFFFFFFFF  # enum values are 32-bit


@dataclass(frozen=True)
class ShimMeta:
    """What the BTF record says about an extensible map."""

    custom_type: int
    user_value_size: int
    stored_value_size: int
    options: Mapping[str, int] = field(default_factory=dict)


def check_option_name(name: str) -> None:
    if not _IDENT.match(name) or len(name) > 64:
        raise errors.InvalidArgument(f"option name {name!r} must be an identifier of at most 64 characters",
                                     op="create")


def build_btf(*, key_size: int, stored_size: int, base_type: int, custom_type: int, user_value_size: int,
              options: Mapping[str, int]) -> tuple[Btf, int, int]:
    """Load the BTF record for a new map; returns it with the key and value type ids to create the map with."""
    strings = bytearray(b"\0")
    offsets: dict[str, int] = {"": 0}

    def s(text: str) -> int:
        if text not in offsets:
            offsets[text] = len(strings)
            strings.extend(text.encode() + b"\0")
        return offsets[text]

    types: list[bytes] = []
    # 1: __u8, 2: __u32 (array index type; also the key of array maps, which the kernel wants as a 32-bit INT)
    types.append(_TYPE.pack(s("__u8"), KIND_INT << 24, 1) + _U32.pack(8))
    types.append(_TYPE.pack(s("__u32"), KIND_INT << 24, 4) + _U32.pack(32))
    # 3: __u8[stored_size]; 4: the value struct
    types.append(_TYPE.pack(0, KIND_ARRAY << 24, 0) + _ARRAY.pack(1, 2, stored_size))
    types.append(_TYPE.pack(s(VALUE_STRUCT), (KIND_STRUCT << 24) | 1, stored_size) + _MEMBER.pack(s("stored"), 3, 0))
    value_id = 4
    if base_type == int(MapType.ARRAY):
        key_id = 2
    else:
        types.append(_TYPE.pack(0, KIND_ARRAY << 24, 0) + _ARRAY.pack(1, 2, key_size))
        key_id = 5
    entries = [("FORMAT", FORMAT), ("TYPE", custom_type), ("VALUE_SIZE", user_value_size)]
    entries += [("OPT_" + name, value) for name, value in sorted(options.items())]
    enum = bytearray(_TYPE.pack(s(META_ENUM), (KIND_ENUM << 24) | len(entries), 4))
    for name, value in entries:
        enum += _ENUM_VAL.pack(s(_PREFIX + name), value)
    types.append(bytes(enum))
    type_section = b"".join(types)
    blob = _HEADER.pack(BTF_MAGIC, 1, 0, _HEADER.size, 0, len(type_section), len(type_section),
                        len(strings)) + type_section + bytes(strings)
    btf = load_blob(blob, {VALUE_STRUCT: value_id}, what="the extensible map's BTF record")
    return btf, key_id, value_id


def _read_btf_blob(btf_id: int) -> bytes | None:
    """The raw BTF of kernel object ``btf_id`` (None when it vanished or we may not read it)."""
    return read_raw(btf_id)


def _parse(blob: bytes, value_type_id: int) -> tuple[str, dict[str, int]] | None:
    """(name of type ``value_type_id``, our enum's entries) from a BTF blob, or None if it is not BTF."""
    if len(blob) < _HEADER.size:
        return None
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(blob)
    if magic != BTF_MAGIC:
        return None
    types = blob[hdr_len + type_off : hdr_len + type_off + type_len]
    strs = blob[hdr_len + str_off : hdr_len + str_off + str_len]

    def name(off: int) -> str:
        end = strs.find(b"\0", off)
        return strs[off : end if end >= 0 else len(strs)].decode(errors="replace")

    pos, type_id = 0, 0
    value_name = ""
    meta: dict[str, int] = {}
    while pos + _TYPE.size <= len(types):
        type_id += 1
        name_off, info, _size = _TYPE.unpack_from(types, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        fixed, per = _KIND_EXTRA.get(kind, (0, 0))
        body = pos + _TYPE.size
        if type_id == value_type_id:
            value_name = name(name_off)
        if kind == KIND_ENUM and name(name_off) == META_ENUM:
            for i in range(vlen):
                eoff, val = _ENUM_VAL.unpack_from(types, body + 8 * i)
                meta[name(eoff)] = val
        pos = body + fixed + per * vlen
    return value_name, meta


_cache: dict[int, ShimMeta | None] = {}
_cache_lock = threading.Lock()


def read_meta(info: MapInfo) -> ShimMeta | None:
    """The record of an extensible map, or None for any other map (no BTF, foreign BTF, unreadable BTF)."""
    if not info.btf_id or not info.btf_value_type_id:
        return None
    # A BTF object is immutable and its id names it until it is freed, so (btf id, value type id) is a safe key.
    key = info.btf_id
    with _cache_lock:
        if key in _cache:
            cached = _cache[key]
            return None if cached is None else _with_stored(cached, info)
    blob = _read_btf_blob(info.btf_id)
    meta: ShimMeta | None = None
    if blob is not None:
        parsed = _parse(blob, info.btf_value_type_id)
        if parsed is not None:
            value_name, entries = parsed
            if value_name == VALUE_STRUCT and entries.get(_PREFIX + "FORMAT") == FORMAT:
                options = {k[len(_OPT_PREFIX):]: v for k, v in entries.items() if k.startswith(_OPT_PREFIX)}
                meta = ShimMeta(custom_type=entries.get(_PREFIX + "TYPE", 0),
                                user_value_size=entries.get(_PREFIX + "VALUE_SIZE", 0),
                                stored_value_size=info.value_size, options=options)
    with _cache_lock:
        if blob is not None:  # an unreadable BTF (EPERM) may be readable later with more privileges
            _cache[key] = meta
    return None if meta is None else _with_stored(meta, info)


def _with_stored(meta: ShimMeta, info: MapInfo) -> ShimMeta:
    if meta.stored_value_size == info.value_size:
        return meta
    return ShimMeta(meta.custom_type, meta.user_value_size, info.value_size, meta.options)
