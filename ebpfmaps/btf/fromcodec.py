"""BTF for maps made in Python: key and value types described from their codecs.

A ctypes ``Structure``/``Union``/``Array`` or scalar, or a little-endian/native :mod:`struct` format,
becomes the BTF type a C compiler would have written for it, so bpftool and other tools show the
map's entries with field names. Raw byte keys or values become ``unsigned char[n]``. Codecs with
floating-point fields get no BTF: bpftool's JSON dump fails on a map whose BTF has a float.
"""

from __future__ import annotations

import ctypes
import re
import struct
import sys
from dataclasses import dataclass
from typing import Any

from ebpfmaps import errors
from ebpfmaps.btf.writer import Btf, BtfBuilder
from ebpfmaps.codecs import Codec, CtypesCodec, IndexCodec, StructCodec

__all__ = ["CodecBtf", "btf_for_codecs", "describe_codec"]

# ctypes scalar -> (C name, size, signed, kind) where kind is "int", "char", "bool" or "float".
_CTYPES: dict[type, tuple[str, str]] = {
    ctypes.c_int8: ("signed char", "int"), ctypes.c_uint8: ("unsigned char", "int"),
    ctypes.c_int16: ("short", "int"), ctypes.c_uint16: ("unsigned short", "int"),
    ctypes.c_int32: ("int", "int"), ctypes.c_uint32: ("unsigned int", "int"),
    ctypes.c_int64: ("long long", "int"), ctypes.c_uint64: ("unsigned long long", "int"),
    ctypes.c_long: ("long", "int"), ctypes.c_ulong: ("unsigned long", "int"),
    ctypes.c_char: ("char", "char"), ctypes.c_bool: ("_Bool", "bool"),
    ctypes.c_float: ("float", "float"), ctypes.c_double: ("double", "float"),
    ctypes.c_void_p: ("unsigned long", "int"), ctypes.c_char_p: ("unsigned long", "int"),
}

# struct format code -> (C name, kind); the sizes come from struct itself.
_STRUCT_CODES: dict[str, tuple[str, str]] = {
    "b": ("signed char", "int"), "B": ("unsigned char", "int"), "h": ("short", "int"),
    "H": ("unsigned short", "int"), "i": ("int", "int"), "I": ("unsigned int", "int"), "l": ("long", "int"),
    "L": ("unsigned long", "int"), "q": ("long long", "int"), "Q": ("unsigned long long", "int"),
    "n": ("long", "int"), "N": ("unsigned long", "int"), "P": ("unsigned long", "int"), "c": ("char", "char"),
    "?": ("_Bool", "bool"), "f": ("float", "float"), "d": ("double", "float"),
}

_SIGNED_NAMES = {"signed char", "short", "int", "long", "long long", "char"}


class _Undescribable(Exception):
    """The codec has no C equivalent BTF can carry (big-endian fields, half floats, a user codec)."""


def _ident(name: str) -> str:
    """A C identifier (the kernel refuses other names)."""
    out = re.sub(r"\W", "_", name)
    return out if out and not out[0].isdigit() else f"_{out}"


class _Describer:
    def __init__(self) -> None:
        self.b = BtfBuilder()
        self._scalars: dict[str, int] = {}
        self._composites: dict[type, int] = {}

    def scalar(self, cname: str, size: int, kind: str) -> int:
        key = f"{cname}/{size}"
        tid = self._scalars.get(key)
        if tid is None:
            if kind == "float":
                # bpftool prints no JSON at all for a map whose BTF holds a float: better no BTF.
                raise _Undescribable("floating-point fields")
            else:
                tid = self.b.add_int(cname, size, signed=cname in _SIGNED_NAMES, bool_=kind == "bool")
            self._scalars[key] = tid
        return tid

    def raw(self, size: int) -> int:
        return self.b.add_array(self.scalar("unsigned char", 1, "int"), size)

    def ctype(self, ct: Any) -> int:
        if ct in _CTYPES:
            cname, kind = _CTYPES[ct]
            return self.scalar(cname, ctypes.sizeof(ct), kind)
        for base, (cname, kind) in _CTYPES.items():
            if isinstance(ct, type) and issubclass(ct, base) and ct.__mro__[1] is base:
                return self.scalar(cname, ctypes.sizeof(base), kind)
        if isinstance(ct, type) and issubclass(ct, ctypes.Array):
            length = int(ct._length_)  # type: ignore[call-overload]
            return self.b.add_array(self.ctype(ct._type_), length)
        if isinstance(ct, type) and issubclass(ct, (ctypes.Structure, ctypes.Union)):
            return self.composite(ct)
        raise _Undescribable(f"{ct!r}")

    def composite(self, ct: type[ctypes.Structure] | type[ctypes.Union]) -> int:
        found = self._composites.get(ct)
        if found is not None:
            return found
        union = issubclass(ct, ctypes.Union)
        other_order = ctypes.BigEndianStructure if sys.byteorder == "little" else ctypes.LittleEndianStructure
        if issubclass(ct, other_order) or getattr(ct, "_swappedbytes_", None) is not None:
            raise _Undescribable("byte-swapped structure")
        members: list[tuple[str, int, int, int]] = []
        for spec in getattr(ct, "_fields_", ()):
            name, ftype = spec[0], spec[1]
            desc = getattr(ct, name)
            tid = self.ctype(ftype)
            if len(spec) > 2:  # a bitfield: ctypes packs (bit count << 16) | bit offset into the size
                bits, bit_in_unit = desc.size >> 16, desc.size & 0xFFFF
                if sys.byteorder != "little":
                    raise _Undescribable("big-endian bitfields")
                members.append((_ident(name), tid, desc.offset * 8 + bit_in_unit, bits))
            else:
                members.append((_ident(name), tid, desc.offset * 8, 0))
        tid = self.b.add_composite(_ident(ct.__name__), ctypes.sizeof(ct), members, union=union)
        self._composites[ct] = tid
        return tid

    def struct_format(self, codec: StructCodec, name: str) -> int:
        fmt = codec.struct.format
        order = fmt[0] if fmt[:1] in "@=<>!" else "@"
        if (order in ">!" and sys.byteorder == "little") or (order == "<" and sys.byteorder == "big"):
            raise _Undescribable("a format in the other byte order")
        body = fmt[1:] if fmt[:1] in "@=<>!" else fmt
        fields: list[tuple[int, int]] = []  # (byte offset, type id)
        prefix = order
        for count_text, code in re.findall(r"(\d*)([a-zA-Z?])", body):
            count = int(count_text) if count_text else 1
            if code == "x":
                prefix += f"{count}x"
                continue
            if code in "sp":
                elem = self.scalar("char", 1, "int")
                off = struct.calcsize(prefix + "c") - 1
                fields.append((off, self.b.add_array(elem, count)))
                prefix += f"{count}{code}"
                continue
            if code not in _STRUCT_CODES:
                raise _Undescribable(f"struct code {code!r}")
            cname, kind = _STRUCT_CODES[code]
            size = struct.calcsize(order + code)
            for _ in range(count):
                off = struct.calcsize(prefix + code) - size
                fields.append((off, self.scalar(cname, size, kind)))
                prefix += code
        if len(fields) == 1 and codec.scalar:
            return fields[0][1]
        members = [(f"f{i}", tid, off * 8, 0) for i, (off, tid) in enumerate(fields)]
        return self.b.add_composite(name, codec.size, members)

    def codec(self, codec: Codec, name: str) -> int:
        t = type(codec)
        if t is IndexCodec:
            return self.scalar("unsigned int", 4, "int")
        if t is Codec:
            return self.raw(codec.size)
        if t is CtypesCodec:
            assert isinstance(codec, CtypesCodec)
            return self.ctype(codec.ctype)
        if t is StructCodec:
            assert isinstance(codec, StructCodec)
            return self.struct_format(codec, name)
        raise _Undescribable(f"{codec!r}")


def describe_codec(codec: Codec, name: str = "value") -> BtfBuilder | None:
    """A builder holding the BTF type of ``codec`` (its id is the last added), or None when it has no C equivalent."""
    d = _Describer()
    try:
        d.codec(codec, name)
    except (_Undescribable, errors.InvalidArgument):
        return None
    return d.b


@dataclass(frozen=True)
class CodecBtf:
    """BTF loaded for a map's key and value codecs: create the map with these ids."""

    btf: Btf
    key_type_id: int
    value_type_id: int


def btf_for_codecs(key: Codec, value: Codec, name: str = "", *, index_key: bool = False) -> CodecBtf | None:
    """BTF describing ``key`` and ``value``, loaded into the kernel; None when there is nothing to describe
    (both raw bytes or integer indices) or the codecs have no C equivalent, or the kernel refuses it
    (an older kernel without float types). ``index_key``: the key is an array index, a ``__u32``
    whatever its codec (the kernel accepts nothing else for arrays)."""
    if (index_key or type(key) in (Codec, IndexCodec)) and type(value) is Codec:
        return None
    if key.size == 0 or value.size == 0:
        return None
    d = _Describer()
    base = _ident(name) if name else "map"
    try:
        kid = d.scalar("unsigned int", 4, "int") if index_key else d.codec(key, f"{base}_key")
        vid = d.codec(value, f"{base}_value")
    except (_Undescribable, errors.InvalidArgument):
        return None
    try:
        btf = d.b.load()
    except errors.MapError:
        return None
    return CodecBtf(btf, kid, vid)
