"""The members of a map key's BTF type, read from the kernel, as label fields.

A map created by a compiled BPF object (or with BTF given at creation) records the BTF type of
its key. This reads that BTF object's raw encoding (the format of ``include/uapi/linux/btf.h``)
and flattens the key type into byte fields: integers and enums become ``int`` fields, char
arrays ``string`` fields, pointers 8-byte ``int`` fields, nested structs their members with a
``parent_`` prefix, anything else ``hex``. Bitfields are not byte fields and are refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ebpfmaps import btf
from ebpfmaps.errors import InvalidArgument, NotSupported

BTF_MAGIC = 0xEB9F
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 8, 9, 10, 11
KIND_TYPE_TAG, KIND_ENUM64, KIND_FLOAT = 18, 19, 16
INT_SIGNED = 1
# Bytes that follow the 12-byte common header of each kind: fixed, and per member (vlen).
_EXTRA = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8), 14: (4, 0), 15: (0, 12),
          17: (4, 0), 19: (0, 12)}
_QUALIFIERS = frozenset({KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG})


@dataclass(frozen=True)
class KeyMember:
    """A byte field of the key: label name, decoder, offset and size in bytes."""

    name: str
    decode: str
    offset: int
    size: int
    signed: bool = False


@dataclass(frozen=True)
class _Type:
    kind: int
    name: str
    size_or_type: int
    vlen: int
    kflag: bool
    extra: bytes


def parse_types(blob: bytes) -> dict[int, _Type]:
    """Every type of a raw BTF object by id (ids start at 1)."""
    if len(blob) < 24:
        raise InvalidArgument("BTF blob shorter than its header")
    magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
    if magic != BTF_MAGIC:
        raise InvalidArgument(f"not BTF (magic {magic:#x})")
    type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
    strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
    pos, end = hdr_len + type_off, hdr_len + type_off + type_len
    types: dict[int, _Type] = {}
    next_id = 1
    while pos < end:
        name_off, info, size_or_type = struct.unpack_from("<III", blob, pos)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
        fixed, per = _EXTRA.get(kind, (0, 0))
        extra_len = fixed + per * vlen
        extra = blob[pos + 12 : pos + 12 + extra_len]
        name = strings[name_off : strings.index(b"\0", name_off)].decode() if name_off < len(strings) else ""
        types[next_id] = _Type(kind, name, size_or_type, vlen, kflag, extra)
        next_id += 1
        pos += 12 + extra_len
    types[0] = _Type(0, "void", 0, 0, False, b"")
    return types


def _strings_of(blob: bytes) -> bytes:
    hdr_len = struct.unpack_from("<I", blob, 4)[0]
    _type_off, _type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
    return blob[hdr_len + str_off : hdr_len + str_off + str_len]


def _size_of(types: dict[int, _Type], tid: int) -> int:
    t = types[tid]
    while t.kind in _QUALIFIERS:
        t = types[t.size_or_type]
    if t.kind == KIND_ARRAY:
        elem, _index, nelems = struct.unpack("<III", t.extra)
        return _size_of(types, elem) * int(nelems)
    if t.kind == KIND_PTR:
        return 8
    return t.size_or_type


def _flatten(types: dict[int, _Type], strings: bytes, tid: int, offset: int, prefix: str, out: list[KeyMember]) -> None:
    t = types[tid]
    while t.kind in _QUALIFIERS:
        t = types[t.size_or_type]
    if t.kind in (KIND_STRUCT, KIND_UNION):
        for i in range(t.vlen):
            name_off, mtype, moff = struct.unpack_from("<III", t.extra, i * 12)
            bits = moff & 0xFFFFFF if t.kflag else moff
            if t.kflag and moff >> 24:
                raise NotSupported(f"key member at bit {bits} is a bitfield: describe the key's labels by hand")
            name = strings[name_off : strings.index(b"\0", name_off)].decode() or f"field{i}"
            if bits % 8:
                raise NotSupported(f"key member {name!r} does not start on a byte")
            _flatten(types, strings, mtype, offset + bits // 8, f"{prefix}{name}_", out)
            if t.kind == KIND_UNION:
                break  # a union's first member names its bytes
        return
    label = prefix.rstrip("_")
    if t.kind == KIND_INT:
        encoding = struct.unpack("<I", t.extra)[0] >> 24
        size = t.size_or_type
        out.append(KeyMember(label, "int" if size in (1, 2, 4, 8) else "hex", offset, size, bool(encoding & INT_SIGNED)))
    elif t.kind in (KIND_ENUM, KIND_ENUM64):
        out.append(KeyMember(label, "int", offset, t.size_or_type, bool(t.kflag)))
    elif t.kind == KIND_PTR:
        out.append(KeyMember(label, "int", offset, 8))
    elif t.kind == KIND_ARRAY:
        elem = struct.unpack("<III", t.extra)[0]
        size = _size_of(types, tid)
        et = types[elem]
        while et.kind in _QUALIFIERS:
            et = types[et.size_or_type]
        is_char = et.kind == KIND_INT and et.size_or_type == 1
        out.append(KeyMember(label, "string" if is_char else "hex", offset, size))
    else:
        out.append(KeyMember(label, "hex", offset, _size_of(types, tid)))


def members_from_blob(blob: bytes, type_id: int) -> list[KeyMember]:
    """The byte fields of type ``type_id`` in the raw BTF ``blob``; a scalar key is one field with an empty name."""
    types = parse_types(blob)
    if type_id not in types:
        raise InvalidArgument(f"BTF type id {type_id} is not in the map's BTF ({len(types) - 1} types)")
    out: list[KeyMember] = []
    _flatten(types, _strings_of(blob), type_id, 0, "", out)
    return out


def key_members(btf_id: int, key_type_id: int) -> list[KeyMember] | None:
    """The key's byte fields from kernel BTF object ``btf_id``; None when that BTF cannot be read."""
    blob = btf.read_raw(btf_id)
    if blob is None:
        return None
    return members_from_blob(blob, key_type_id)


__all__ = ["KeyMember", "key_members", "members_from_blob", "parse_types"]
