"""Codecs built from BTF: map values as records with field names, enums as ``IntEnum`` members.

A struct or union decodes to a :class:`Record`: the value's bytes with an attribute per member,
decoded when read (``to_dict()``, ``_replace()``, ``_text(field)`` for char arrays). A member that
is an enum reads as a member of a generated ``IntEnum`` (an int when no enumerator has the value);
a ``char`` (or other byte) array as ``bytes`` (:func:`cstr` reads it as text); other arrays as
tuples; bitfields as ints; pointers as their address. Writing takes the same objects, or dicts
naming a subset of the members (the others are zero), nested as deep as the type.

Records cost one copy of their bytes to make, so lookups and whole-map walks stay close to raw
bytes; scalar and array types get generated decoders and encoders built on precompiled
``struct.Struct`` objects.
"""

from __future__ import annotations

import enum
import functools
import keyword
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from itertools import chain
from typing import Any

from ebpfmaps.btf.reader import BtfTypes, Kind, Type
from ebpfmaps.codecs import Codec, Role, StructCodec, _splitter, as_items
from ebpfmaps.errors import InvalidArgument, InvalidKeySize, InvalidValueSize

__all__ = ["BtfCodec", "Record", "UnsupportedType", "codec_for", "cstr"]

_new = tuple.__new__
# Larger than any map value the kernel allows (KMALLOC_MAX_SIZE is far below): a damaged blob's sizes stop here.
_MAX_SIZE = 1 << 26
# What a generated encoder raises for a value that is not in the canonical form (the slow path converts it).
_ENC_ERRORS = (struct.error, TypeError, AttributeError, IndexError, KeyError, ValueError, OverflowError)


class UnsupportedType(InvalidArgument):
    """A BTF type that cannot be a map key or value (a function, a forward declaration, void)."""


def cstr(data: bytes) -> str:
    """A C string from a char array: the bytes up to the first NUL, decoded as UTF-8 (bad bytes replaced)."""
    end = data.find(b"\0")
    return (data if end < 0 else data[:end]).decode(errors="replace")


class Record(bytes):
    """Base of the records that BTF structs and unions decode to: the value's bytes, with an attribute per member.

    Members are decoded when read (a record costs one copy of its bytes to make), so a walk over a
    large map stays cheap. ``Cls(field=..., ...)`` or ``Cls({"field": ...})`` builds one (members not
    named are zero); ``Cls(raw_bytes)`` wraps bytes of exactly the type's size.
    """

    __slots__ = ()
    #: Python names of the members (valid identifiers; C's anonymous members are ``anonN``).
    _fields: tuple[str, ...] = ()
    #: The C name of each member.
    _c_names: tuple[str, ...] = ()
    #: The C type, e.g. ``struct event``.
    _c_type: str = ""
    _size: int = 0
    _build: Callable[[Any, bytes | None], Record]

    def __new__(cls, data: Any = None, /, **fields: Any) -> Record:
        if data is not None and not fields and isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
            if len(raw) != cls._size:
                raise InvalidValueSize(f"{cls._c_type} is {cls._size} bytes, not {len(raw)}", op="encode")
            return bytes.__new__(cls, raw)
        if data is not None:
            if fields or not isinstance(data, Mapping):
                raise InvalidArgument(f"{cls._c_type} takes bytes, a dict or keyword arguments", op="encode")
            fields = dict(data)
        return cls._build(fields, None)

    def to_dict(self) -> dict[str, Any]:
        """The members as a dict (nested records and arrays converted too)."""
        return {name: _plain(getattr(self, name)) for name in self._fields}

    _asdict = to_dict

    def _replace(self, **fields: Any) -> Record:
        """A copy with the named members changed (for a union: written over the others, as in C)."""
        return self._build(fields, bytes(self))

    def _text(self, field: str) -> str:
        """A char-array member as text (up to its first NUL): ``event._text("comm")``."""
        v = getattr(self, field)
        if not isinstance(v, bytes) or isinstance(v, Record):
            raise InvalidArgument(f"{self._c_type}.{field} is not a char array", op="btf")
        return cstr(v)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({inner})"


def _record_at(cls: type[Record], size: int, buf: Any, off: int) -> Record:
    return bytes.__new__(cls, bytes(buf[off : off + size]))


def _member_getter(decode: Callable[[Any, int], Any], off: int) -> Callable[[Record], Any]:
    def get(record: Record) -> Any:
        return decode(record, off)
    return get


def _bits_getter(byte: int, shift: int, nbits: int, signed: bool) -> Callable[[Record], int]:
    def get(record: Record) -> int:
        return _bits_get(record, byte, shift, nbits, signed)
    return get


def _anonymous_getter(outer: str, inner: str) -> Callable[[Record], Any]:
    def get(record: Record) -> Any:
        return getattr(getattr(record, outer), inner)
    return get


def _plain(v: Any) -> Any:
    if isinstance(v, Record):
        return v.to_dict()
    if type(v) is tuple:
        return [_plain(x) for x in v]
    return v


def _int_code(size: int, signed: bool) -> str:
    code = {1: "b", 2: "h", 4: "i", 8: "q"}[size]
    return code if signed else code.upper()


def _py_names(names: list[str]) -> list[str]:
    """Valid, distinct Python identifiers for C member names (anonymous members become ``_anonN``)."""
    out: list[str] = []
    seen: set[str] = set()
    for i, n in enumerate(names):
        p = n or f"anon{i}"
        if not p.isidentifier():
            p = re.sub(r"\W", "_", p)
            p = p if p.isidentifier() else f"f{i}"
        if keyword.iskeyword(p) or p.startswith("_") or p == "to_dict":
            p = f"{p.lstrip('_') or 'f'}_"
        while p in seen or keyword.iskeyword(p):
            p += "_"
        seen.add(p)
        out.append(p)
    return out


def _bits_get(buf: Any, byte: int, shift: int, nbits: int, signed: bool) -> int:
    nbytes = (shift + nbits + 7) // 8
    v = (int.from_bytes(bytes(buf[byte : byte + nbytes]), "little") >> shift) & ((1 << nbits) - 1)
    if signed and v >> (nbits - 1):
        v -= 1 << nbits
    return v


def _bits_set(ba: bytearray, byte: int, shift: int, nbits: int, value: int) -> None:
    if not isinstance(value, int):
        raise TypeError(f"a bitfield takes an int, not {type(value).__name__}")
    lo, hi = -(1 << (nbits - 1)), (1 << nbits) - 1
    if not lo <= value <= hi:
        raise OverflowError(f"{value} does not fit in a {nbits}-bit field")
    nbytes = (shift + nbits + 7) // 8
    mask = ((1 << nbits) - 1) << shift
    old = int.from_bytes(ba[byte : byte + nbytes], "little")
    new = (old & ~mask) | ((value << shift) & mask)
    ba[byte : byte + nbytes] = new.to_bytes(nbytes, "little")


def _i128(data: bytes, signed: bool) -> int:
    return int.from_bytes(data, "little", signed=signed)


def _i128_bytes(v: int, signed: bool) -> bytes:
    return int(v).to_bytes(16, "little", signed=signed)


class _Compiler:
    """Generates and caches, per type id, a decoder ``(buf, off) -> value`` and an encoder ``value -> bytes``."""

    def __init__(self, types: BtfTypes) -> None:
        self.types = types
        self.decoders: dict[int, Callable[[Any, int], Any]] = {}
        self.encoders: dict[int, Callable[[Any], bytes]] = {}
        self.records: dict[int, type[Record]] = {}
        self.enums: dict[int, dict[int, Any]] = {}
        self.enum_classes: dict[int, type[enum.IntEnum]] = {}
        self._counter = 0

    # ------------------------------------------------------------------ shared pieces
    def check_layout(self, t: Type) -> None:
        """Every member of a struct or union inside it, as the kernel checks (a damaged blob fails here)."""
        for m in t.members:
            width = m.bitfield_size or self.types.size_of(m.type_id) * 8
            if m.bit_offset + width > t.size * 8:
                raise UnsupportedType(f"member {m.name!r} of {self.types.c_name(t.id)} lies past its {t.size} bytes",
                                      op="btf")
            if m.bitfield_size and self.types.resolve(m.type_id).kind not in (Kind.INT, Kind.ENUM, Kind.ENUM64):
                raise UnsupportedType(f"bitfield {m.name!r} of {self.types.c_name(t.id)} is not an integer",
                                      op="btf")

    def record_class(self, tid: int) -> type[Record]:
        cls = self.records.get(tid)
        if cls is not None:
            return cls
        t = self.types.resolve(tid)
        self.check_layout(t)
        c_names = [m.name for m in t.members]
        names = _py_names(c_names)
        type_name = t.name if t.name.isidentifier() and not keyword.iskeyword(t.name) else ""
        ns: dict[str, Any] = {"__slots__": (), "_fields": tuple(names), "_c_names": tuple(c_names),
                              "_c_type": self.types.c_name(t.id), "_size": t.size}
        cls = type(type_name or f"anon_{t.kind.name.lower()}_{t.id}", (Record,), ns)
        self.records[tid] = cls
        coercer = _Coercer(self)
        cls._build = staticmethod(partial(coercer.build_record, t))
        for m, name in zip(t.members, names):
            byte, bit = divmod(m.bit_offset, 8)
            mt = self.types.resolve(m.type_id)
            if m.bitfield_size:
                getter: Callable[[Record], Any] = _bits_getter(byte, bit, m.bitfield_size, mt.signed)
            elif bit:  # an old-style int bitfield: the bits are the int type's
                getter = _bits_getter(byte + mt.int_offset // 8, bit + mt.int_offset % 8, mt.bits, mt.signed)
            else:
                getter = _member_getter(self.decoder(m.type_id), byte)
            setattr(cls, name, property(getter))
        # The members of an anonymous struct or union member read as the outer record's own, as in C.
        for m, name in zip(t.members, names):
            inner = self.types.resolve(m.type_id)
            if m.name or inner.kind not in (Kind.STRUCT, Kind.UNION):
                continue
            for fname in self.record_class(inner.id)._fields:
                if not hasattr(cls, fname):
                    setattr(cls, fname, property(_anonymous_getter(name, fname)))
        return cls

    def enum_map(self, t: Type) -> dict[int, Any]:
        found = self.enums.get(t.id)
        if found is not None:
            return found
        members = [(v.name, v.value) for v in t.values]
        out: dict[int, Any] = {}
        try:
            cls = enum.IntEnum(t.name or f"anon_enum_{t.id}", members)  # type: ignore[misc]
        except (ValueError, TypeError):  # names Python's enum refuses (_sunder_...): plain ints
            pass
        else:
            self.enum_classes[t.id] = cls
            for member in cls:
                out.setdefault(int(member), member)
        self.enums[t.id] = out
        return out

    def zero(self, tid: int) -> Any:
        return self.decoder(tid)(bytes(self.types.size_of(tid)), 0)

    def _name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    # ------------------------------------------------------------------ decoding
    def decoder(self, tid: int) -> Callable[[Any, int], Any]:
        found = self.decoders.get(tid)
        if found is not None:
            return found
        t = self.types.resolve(tid)
        if t.kind in (Kind.STRUCT, Kind.UNION):
            if t.size > _MAX_SIZE:
                raise UnsupportedType(f"{self.types.c_name(tid)} is {t.size} bytes, more than a map value can be",
                                      op="btf")
            self.decoders[tid] = _unsupported_decoder  # a type that contains itself stops here
            try:
                record: Callable[[Any, int], Any] = partial(_record_at, self.record_class(t.id), t.size)
            except BaseException:
                del self.decoders[tid]
                raise
            self.decoders[tid] = record
            return record
        # A placeholder first: a struct that holds a union of itself is impossible, but a bad blob must not recurse forever.
        self.decoders[tid] = _unsupported_decoder
        try:
            fn = _DecoderGen(self, tid).build()
        except BaseException:
            del self.decoders[tid]
            raise
        self.decoders[tid] = fn
        return fn

    def encoder(self, tid: int) -> Callable[[Any], bytes]:
        found = self.encoders.get(tid)
        if found is not None:
            return found
        t = self.types.resolve(tid)
        if t.kind in (Kind.STRUCT, Kind.UNION):
            record = _record_encoder(self.record_class(t.id))
            self.encoders[tid] = record
            return record
        fn = _EncoderGen(self, tid).build()
        self.encoders[tid] = fn
        return fn


def _record_encoder(cls: type[Record]) -> Callable[[Any], bytes]:
    def enc(v: Any) -> bytes:
        if type(v) is not cls:
            raise TypeError("not a record of this type")
        return bytes(v)
    return enc


def _unsupported_decoder(buf: Any, off: int) -> Any:
    raise UnsupportedType("a BTF type that contains itself", op="btf")


class _DecoderGen:
    """One decoder: ``t = S.unpack_from(buf, off)`` for the plain leaves, then one expression."""

    def __init__(self, comp: _Compiler, tid: int) -> None:
        self.comp = comp
        self.types = comp.types
        self.tid = tid
        self.fmt: list[str] = ["<"]
        self.nleaves = 0
        self.end = 0
        self.ns: dict[str, Any] = {"_new": _new, "_bits": _bits_get, "_i128": _i128, "_struct": struct}
        self.flat = True  # no expression needs buf: decode_many can iterate over whole-struct tuples
        self.depth = 0

    def bind(self, obj: Any, prefix: str = "_o") -> str:
        name = self.comp._name(prefix)
        self.ns[name] = obj
        return name

    def leaf(self, rel: int, code: str, size: int, count: int = 0) -> str:
        """The expression reading one field (``count`` 0) or a tuple of ``count`` fields at ``rel``."""
        if rel >= self.end:
            if rel > self.end:
                self.fmt.append(f"{rel - self.end}x")
            self.fmt.append(code)
            i = self.nleaves
            self.nleaves += max(count, 1)
            self.end = rel + size
            return f"t[{i}]" if not count else f"t[{i}:{i + count}]"
        # Overlaps what is already read (members out of order): a struct of its own.
        self.flat = False
        s = self.bind(struct.Struct("<" + code), "_s")
        return f"{s}.unpack_from(buf, off + {rel})[0]" if not count else f"{s}.unpack_from(buf, off + {rel})"

    def sub(self, tid: int, rel: int) -> str:
        self.flat = False
        fn = self.bind(self.comp.decoder(tid), "_d")
        return f"{fn}(buf, off + {rel})"

    def expr(self, tid: int, rel: int) -> str:
        self.depth += 1
        if self.depth > 256:
            raise UnsupportedType(f"BTF type {tid} nests too deep (a type that contains itself?)", op="btf")
        try:
            return self._expr(tid, rel)
        finally:
            self.depth -= 1

    def _expr(self, tid: int, rel: int) -> str:
        t = self.types.resolve(tid)
        k = t.kind
        if k is Kind.INT:
            if t.int_offset + t.bits > t.size * 8 or not t.bits:
                raise UnsupportedType(f"BTF int {t.name!r}: {t.bits} bits at {t.int_offset} in {t.size} bytes",
                                      op="btf")
            if t.int_offset or t.bits != t.size * 8:
                self.flat = False
                return f"_bits(buf, off + {rel + t.int_offset // 8}, {t.int_offset % 8}, {t.bits}, {t.signed})"
            if t.is_bool and t.size == 1:
                return self.leaf(rel, "?", 1)
            if t.size in (1, 2, 4, 8):
                return self.leaf(rel, _int_code(t.size, t.signed), t.size)
            return f"_i128({self.leaf(rel, f'{t.size}s', t.size)}, {t.signed})"
        if k in (Kind.ENUM, Kind.ENUM64):
            if t.size not in (1, 2, 4, 8):
                raise UnsupportedType(f"enum {t.name!r} of {t.size} bytes", op="btf")
            x = self.leaf(rel, _int_code(t.size, t.signed), t.size)
            emap = self.bind(self.comp.enum_map(t), "_e")
            return f"{emap}.get({x}, {x})"
        if k is Kind.PTR:
            return self.leaf(rel, "Q", 8)
        if k is Kind.FLOAT:
            if t.size in (4, 8):
                return self.leaf(rel, "f" if t.size == 4 else "d", t.size)
            return self.leaf(rel, f"{t.size}s", t.size)
        if k is Kind.ARRAY:
            elem = self.types.resolve(t.ref)
            n = t.nelems
            es = self.types.size_of(t.ref)
            if n == 0:
                return "()"
            if elem.kind is Kind.INT and elem.size == 1 and not elem.is_bool and (elem.is_char or not elem.signed):
                return self.leaf(rel, f"{n}s", n)
            code = _scalar_code(elem)
            if code is not None:
                return self.leaf(rel, f"{n}{code}", n * es, n)
            if n <= 16:
                return "(" + "".join(self.expr(elem.id, rel + j * es) + ", " for j in range(n)) + ")"
            fn = self.bind(self.comp.decoder(elem.id), "_d")
            self.flat = False
            return f"tuple([{fn}(buf, off + {rel} + _j * {es}) for _j in range({n})])"
        if k in (Kind.STRUCT, Kind.UNION):
            return self.sub(t.id, rel)
        if k is Kind.VAR:
            return self.expr(t.ref, rel)
        raise UnsupportedType(f"BTF {k.name} type {t.name!r} cannot be decoded as a map key or value", op="btf")

    def build(self) -> Callable[[Any, int], Any]:
        size = self.types.size_of(self.tid)
        if size > _MAX_SIZE:
            raise UnsupportedType(f"{self.types.c_name(self.tid)} is {size} bytes, more than a map value can be",
                                  op="btf")
        body = self.expr(self.tid, 0)
        if self.end > size:
            raise UnsupportedType(f"the members of {self.types.c_name(self.tid)} lie past its {size} bytes",
                                  op="btf")
        if size > self.end:
            self.fmt.append(f"{size - self.end}x")
        self.ns["_S"] = struct.Struct("".join(self.fmt))
        src = "def dec(buf, off=0):\n"
        if self.nleaves:
            src += "    t = _S.unpack_from(buf, off)\n"
        src += f"    return {body}\n"
        if self.flat and self.nleaves:
            src += f"def from_t(t):\n    return {body}\n"
        exec(compile(src, f"<btf decoder {self.types.c_name(self.tid)}>", "exec"), self.ns)
        fn: Callable[[Any, int], Any] = self.ns["dec"]
        fn.whole = self.ns["_S"]  # type: ignore[attr-defined]
        fn.from_tuple = self.ns.get("from_t")  # type: ignore[attr-defined]
        return fn


_BLOCK = 256


@functools.lru_cache(maxsize=32)
def _batch_struct(fmt: str, count: int) -> struct.Struct:
    """A struct reading ``count`` consecutive values of format ``fmt`` (its byte-order prefix once)."""
    return struct.Struct(fmt[0] + fmt[1:] * count)


def _scalar_code(t: Type) -> str | None:
    """The struct code of a type read as one plain field, or None."""
    if t.kind is Kind.INT and not t.int_offset and t.bits == t.size * 8 and t.size in (1, 2, 4, 8):
        return "?" if t.is_bool and t.size == 1 else _int_code(t.size, t.signed)
    if t.kind is Kind.PTR:
        return "Q"
    if t.kind is Kind.FLOAT and t.size in (4, 8):
        return "f" if t.size == 4 else "d"
    return None


class _EncoderGen:
    """One encoder for values in canonical form (what decoding gives); anything else raises and is converted first."""

    def __init__(self, comp: _Compiler, tid: int) -> None:
        self.comp = comp
        self.types = comp.types
        self.tid = tid
        self.fmt: list[str] = ["<"]
        self.args: list[str] = []
        self.checks: list[str] = []
        self.patches: list[str] = []
        self.end = 0
        self.ns: dict[str, Any] = {"_bits": _bits_set, "_i128": _i128_bytes, "_join": b"".join}
        self.depth = 0

    def bind(self, obj: Any, prefix: str = "_o") -> str:
        name = self.comp._name(prefix)
        self.ns[name] = obj
        return name

    def leaf(self, rel: int, code: str, size: int, arg: str) -> None:
        if rel >= self.end:
            if rel > self.end:
                self.fmt.append(f"{rel - self.end}x")
            self.fmt.append(code)
            self.args.append(arg)
            self.end = rel + size
            return
        s = self.bind(struct.Struct("<" + code), "_s")
        self.patches.append(f"ba[{rel}:{rel + size}] = {s}.pack({arg})")

    def emit(self, tid: int, rel: int, v: str) -> None:
        self.depth += 1
        if self.depth > 256:
            raise UnsupportedType(f"BTF type {tid} nests too deep (a type that contains itself?)", op="btf")
        try:
            self._emit(tid, rel, v)
        finally:
            self.depth -= 1

    def _emit(self, tid: int, rel: int, v: str) -> None:
        t = self.types.resolve(tid)
        k = t.kind
        if k is Kind.INT:
            if t.int_offset or t.bits != t.size * 8:
                self.patches.append(f"_bits(ba, {rel + t.int_offset // 8}, {t.int_offset % 8}, {t.bits}, {v})")
                return
            if t.is_bool and t.size == 1:
                self.checks.append(f"type({v}) is bool")
                self.leaf(rel, "?", 1, v)
            elif t.size in (1, 2, 4, 8):
                self.leaf(rel, _int_code(t.size, t.signed), t.size, v)
            else:
                self.leaf(rel, f"{t.size}s", t.size, f"_i128({v}, {t.signed})")
            return
        if k in (Kind.ENUM, Kind.ENUM64):
            self.leaf(rel, _int_code(t.size, t.signed), t.size, v)
            return
        if k is Kind.PTR:
            self.leaf(rel, "Q", 8, v)
            return
        if k is Kind.FLOAT:
            if t.size in (4, 8):
                self.leaf(rel, "f" if t.size == 4 else "d", t.size, v)
            else:
                self.checks.append(f"type({v}) is bytes and len({v}) == {t.size}")
                self.leaf(rel, f"{t.size}s", t.size, v)
            return
        if k is Kind.ARRAY:
            elem = self.types.resolve(t.ref)
            n = t.nelems
            es = self.types.size_of(t.ref)
            if n == 0:
                return
            if elem.kind is Kind.INT and elem.size == 1 and not elem.is_bool and (elem.is_char or not elem.signed):
                self.checks.append(f"type({v}) is bytes and len({v}) == {n}")
                self.leaf(rel, f"{n}s", n, v)
                return
            self.checks.append(f"len({v}) == {n}")
            code = _scalar_code(elem)
            if code is not None:
                self.leaf(rel, f"{n}{code}", n * es, f"*{v}")
            elif n <= 16:
                for j in range(n):
                    self.emit(elem.id, rel + j * es, f"{v}[{j}]")
            else:
                fn = self.bind(self.comp.encoder(elem.id), "_c")
                self.leaf(rel, f"{n * es}s", n * es, f"_join(map({fn}, {v}))")
            return
        if k in (Kind.STRUCT, Kind.UNION):
            cls = self.bind(self.comp.record_class(t.id), "_r")
            self.checks.append(f"type({v}) is {cls}")
            self.leaf(rel, f"{t.size}s", t.size, v)
            return
        if k is Kind.VAR:
            self.emit(t.ref, rel, v)
            return
        raise UnsupportedType(f"BTF {k.name} type {t.name!r} cannot be encoded as a map key or value", op="btf")

    def build(self) -> Callable[[Any], bytes]:
        self.emit(self.tid, 0, "v")
        size = self.types.size_of(self.tid)
        if self.end > size:
            raise UnsupportedType(f"the members of {self.types.c_name(self.tid)} lie past its {size} bytes",
                                  op="btf")
        if size > self.end:
            self.fmt.append(f"{size - self.end}x")
        self.ns["_S"] = struct.Struct("".join(self.fmt))
        self.ns["_Bad"] = TypeError
        lines = ["def enc(v):"]
        if self.checks:
            lines.append(f"    if not ({' and '.join(self.checks)}):")
            lines.append("        raise _Bad('not in canonical form')")
        lines.append(f"    b = _S.pack({', '.join(self.args)})")
        if self.patches:
            lines.append("    ba = bytearray(b)")
            lines += [f"    {p}" for p in self.patches]
            lines.append("    b = bytes(ba)")
        lines.append("    return b")
        exec(compile("\n".join(lines) + "\n", f"<btf encoder {self.types.c_name(self.tid)}>", "exec"), self.ns)
        fn: Callable[[Any], bytes] = self.ns["enc"]
        return fn


class _Coercer:
    """The slow path: any accepted spelling of a value (dicts, lists, names, str) to its canonical form."""

    def __init__(self, comp: _Compiler) -> None:
        self.comp = comp
        self.types = comp.types

    def __call__(self, tid: int, x: Any, path: str) -> Any:
        t = self.types.resolve(tid)
        k = t.kind
        if k is Kind.INT:
            if t.is_bool:
                return bool(x)
            return self._int(x, t.bits, t.signed, path)
        if k in (Kind.ENUM, Kind.ENUM64):
            values = self.comp.enum_map(t)
            if isinstance(x, str):
                for v in t.values:
                    if v.name == x:
                        return values.get(v.value, v.value)
                raise InvalidArgument(f"{path}: {x!r} is not an enumerator of {self.types.c_name(t.id)}", op="encode")
            n = self._int(x, t.size * 8, t.signed, path)
            return values.get(n, n)
        if k is Kind.PTR:
            return self._int(x, 64, False, path)
        if k is Kind.FLOAT:
            if t.size in (4, 8):
                if isinstance(x, (int, float)) and not isinstance(x, bool):
                    return float(x)
                raise InvalidArgument(f"{path}: a float, not {type(x).__name__}", op="encode")
            return self._bytes(x, t.size, path, exact=True)
        if k is Kind.ARRAY:
            elem = self.types.resolve(t.ref)
            n = t.nelems
            if elem.kind is Kind.INT and elem.size == 1 and not elem.is_bool and (elem.is_char or not elem.signed):
                return self._bytes(x, n, path)
            if isinstance(x, (str, bytes, Mapping)) or not isinstance(x, Iterable):
                raise InvalidArgument(f"{path}: an array of {n} takes a list or tuple, not {type(x).__name__}",
                                      op="encode")
            items = list(x)
            if len(items) > n:
                raise InvalidArgument(f"{path}: {len(items)} elements for an array of {n}", op="encode")
            out = [self(elem.id, e, f"{path}[{j}]") for j, e in enumerate(items)]
            if len(out) < n:
                zero = self.comp.zero(elem.id)
                out += [zero] * (n - len(out))
            return tuple(out)
        if k in (Kind.STRUCT, Kind.UNION):
            return self._record(t, x, path)
        if k is Kind.VAR:
            return self(t.ref, x, path)
        raise UnsupportedType(f"{path}: BTF {k.name} cannot be encoded", op="encode")

    @staticmethod
    def _int(x: Any, bits: int, signed: bool, path: str) -> int:
        if isinstance(x, bool) or not hasattr(x, "__index__"):
            raise InvalidArgument(f"{path}: an int, not {type(x).__name__} ({x!r})"[:200], op="encode")
        n: int = x.__index__()
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        if not lo <= n <= hi:
            raise InvalidArgument(f"{path}: {n} is outside {'s' if signed else 'u'}{bits} ({lo}..{hi})", op="encode")
        return n

    @staticmethod
    def _bytes(x: Any, n: int, path: str, exact: bool = False) -> bytes:
        if isinstance(x, str):
            x = x.encode()
        if isinstance(x, (list, tuple)):
            try:
                x = bytes(x)
            except (ValueError, TypeError):
                raise InvalidArgument(f"{path}: a list of byte values (0..255)", op="encode") from None
        if not isinstance(x, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"{path}: bytes or str for a char array of {n}, not {type(x).__name__}",
                                  op="encode")
        data = bytes(x)
        if len(data) > n or (exact and len(data) != n):
            raise InvalidArgument(f"{path}: {len(data)} bytes do not fit in {n}", op="encode")
        return data + bytes(n - len(data))

    def _anonymous_owner(self, t: Type, key: str) -> int | None:
        """The index of the anonymous struct/union member of ``t`` that has a member ``key``."""
        for i, m in enumerate(t.members):
            inner = self.types.resolve(m.type_id)
            if not m.name and inner.kind in (Kind.STRUCT, Kind.UNION):
                cls = self.comp.record_class(inner.id)
                if key in cls._fields or key in cls._c_names:
                    return i
        return None

    def _record(self, t: Type, x: Any, path: str) -> Record:
        cls = self.comp.record_class(t.id)
        if type(x) is cls:
            return x
        if isinstance(x, Record):
            raise InvalidArgument(f"{path}: a {type(x)._c_type} record is not a {cls._c_type}", op="encode")
        if isinstance(x, (tuple, list)):
            if len(x) != len(t.members):
                raise InvalidArgument(f"{path}: {cls._c_type} has {len(t.members)} fields, got {len(x)} values",
                                      op="encode")
            x = dict(zip(cls._fields, x))
        if not isinstance(x, Mapping):
            raise InvalidArgument(f"{path}: {cls._c_type} takes a record or a dict, not {type(x).__name__}",
                                  op="encode")
        return self.build_record(t, x, None, path)

    def build_record(self, t: Type, fields: Mapping[str, Any], base: bytes | None, path: str = "value") -> Record:
        """A record of ``t`` from ``base`` (zeros when None) with the named members written over it, in order."""
        cls = self.comp.record_class(t.id)
        members = t.members
        index = {name: i for i, name in enumerate(cls._fields)}
        index.update({name: i for i, name in enumerate(cls._c_names) if name})
        values: dict[int, Any] = {}
        for key, val in fields.items():
            i = index.get(key) if isinstance(key, str) else None
            if i is None and isinstance(key, str):
                owner = self._anonymous_owner(t, key)
                if owner is not None:  # a member of an anonymous struct or union member, named as in C
                    nested = values.get(owner)
                    nested = dict(nested) if isinstance(nested, Mapping) else {}
                    nested[key] = val
                    values[owner] = nested
                    continue
            if i is None:
                raise InvalidArgument(f"{path}: {cls._c_type} has no field {key!r} (fields: "
                                      f"{', '.join(cls._fields)})", op="encode")
            values[i] = val
        ba = bytearray(base if base is not None else bytes(t.size))
        for i in sorted(values):
            m = members[i]
            sub = f"{path}.{cls._fields[i]}"
            byte, bit = divmod(m.bit_offset, 8)
            mt = self.types.resolve(m.type_id)
            if m.bitfield_size or bit:
                nbits = m.bitfield_size or mt.bits
                if not m.bitfield_size:
                    byte, bit = byte + mt.int_offset // 8, bit + mt.int_offset % 8
                _bits_set(ba, byte, bit, nbits, self._int(values[i], nbits, mt.signed, sub))
                continue
            val = values[i]
            if isinstance(val, Mapping) and mt.kind in (Kind.STRUCT, Kind.UNION) and base is not None:
                # A dict for a nested record changes only what it names (``_replace`` of an outer record).
                val = self.build_record(mt, val, bytes(ba[byte : byte + mt.size]), sub)
            canonical = self(m.type_id, val, sub)
            data = self.comp.encoder(m.type_id)(canonical)
            ba[byte : byte + len(data)] = data
        return bytes.__new__(cls, bytes(ba))


class BtfCodec(Codec):
    """A codec for one BTF type: :meth:`decode` gives records, ints, enums, bytes; :meth:`encode` takes those or dicts."""

    def __init__(self, types: BtfTypes, type_id: int, role: Role = "value", *, _comp: _Compiler | None = None) -> None:
        super().__init__(types.size_of(type_id), role)
        self.types = types
        self.type_id = type_id
        self.type = types.resolve(type_id)
        comp = _comp if _comp is not None else _Compiler(types)
        self._comp = comp
        self._dec = comp.decoder(type_id)
        self._enc = comp.encoder(type_id)
        self._coerce = _Coercer(comp)
        whole = getattr(self._dec, "whole", None)
        self._from_tuple: Callable[[tuple[Any, ...]], Any] | None = getattr(self._dec, "from_tuple", None)
        self._iter_unpack = whole.iter_unpack if whole is not None and whole.size == self.size and self.size else None
        self._whole_format: str = whole.format if whole is not None else ""
        self._nfields = len(whole.unpack(bytes(whole.size))) if whole is not None else 0
        # Records wrap their bytes: a batch is cut into values in C, then each becomes a record.
        self._record_of_bytes: Callable[[bytes], Any] | None = None
        if self.type.kind in (Kind.STRUCT, Kind.UNION):
            self._record_of_bytes = partial(bytes.__new__, comp.record_class(self.type.id))
            # A record is its bytes: decoding is one copy, straight from the kernel-filled buffer (all in C).
            self.decode = self._record_of_bytes  # type: ignore[method-assign]
            self.decode_buffer = self._record_of_bytes  # type: ignore[method-assign]

    def __repr__(self) -> str:
        return f"BtfCodec({self.types.c_name(self.type_id)!r}, size={self.size})"

    @property
    def record_class(self) -> type[Record] | None:
        """The record class values decode to (structs and unions), else None."""
        if self.type.kind in (Kind.STRUCT, Kind.UNION):
            return self._comp.record_class(self.type.id)
        return None

    @property
    def enum_class(self) -> type[enum.IntEnum] | None:
        if self.type.kind in (Kind.ENUM, Kind.ENUM64):
            self._comp.enum_map(self.type)
            return self._comp.enum_classes.get(self.type.id)
        return None

    def decode(self, data: bytes) -> Any:
        return self._dec(data, 0)

    def decode_buffer(self, buf: Any) -> Any:
        """Decode straight from a buffer object (a ctypes array the kernel filled) without copying it first."""
        return self._dec(buf, 0)

    def decode_many(self, data: bytes | memoryview, count: int) -> list[Any]:
        s = self.size
        if self._record_of_bytes is not None:
            return list(map(self._record_of_bytes, _splitter(s, count).unpack_from(data)))
        if self._iter_unpack is not None and count:
            make = self._from_tuple
            if make is not None:
                # The whole batch in one unpack, regrouped by zip (which reuses its tuple once each record has
                # copied it): about half the cost of one tuple per element from iter_unpack.
                # Blocks of a fixed count keep the cached structs few (kernel batches vary in size).
                blocks, rest = divmod(count, _BLOCK)
                block = _batch_struct(self._whole_format, _BLOCK).unpack_from
                step = _BLOCK * s
                parts: list[Iterable[Any]] = [block(data, i * step) for i in range(blocks)]
                if rest:
                    tail = memoryview(data)[blocks * step : count * s]
                    parts.append(chain.from_iterable(self._iter_unpack(tail)))
                flat = chain.from_iterable(parts)
                return list(map(make, zip(*[flat] * self._nfields)))
        dec = self._dec
        return [dec(data, i * s) for i in range(count)]

    def iter_many(self, data: bytes | memoryview, count: int) -> Iterable[Any]:
        """:meth:`decode_many` made lazily, element by element (what a walk over the map uses)."""
        if self._record_of_bytes is not None:
            return map(self._record_of_bytes, _splitter(self.size, count).unpack_from(data))
        return self.decode_many(data, count)

    def coerce(self, value: Any) -> Any:
        """``value`` (a record, dict, list, name...) in the form decoding gives; :class:`InvalidArgument` if it cannot be."""
        return self._coerce(self.type_id, value, self.role)

    def encode(self, value: Any) -> bytes:
        try:
            return self._enc(value)
        except _ENC_ERRORS:
            pass
        if isinstance(value, (bytes, bytearray, memoryview)) and not (
            self.type.kind is Kind.ARRAY or (self.type.kind is Kind.FLOAT and self.type.size > 8)
        ):
            data = bytes(value)
            if len(data) != self.size:
                cls = InvalidKeySize if self.role == "key" else InvalidValueSize
                raise cls(f"{self.role} is {len(data)} bytes, the map's {self.role}_size is {self.size}", op="encode")
            return data
        canonical = self.coerce(value)
        try:
            return self._enc(canonical)
        except _ENC_ERRORS as exc:
            raise InvalidArgument(f"cannot encode {value!r} as {self.types.c_name(self.type_id)}: {exc}"[:300],
                                  op="encode") from None

    def encode_many(self, values: Iterable[Any]) -> tuple[bytes, int]:
        if isinstance(values, (bytes, bytearray, memoryview)):
            return super().encode_many(values)
        items = as_items(values, self.role)
        enc = self.encode
        return b"".join([enc(v) for v in items]), len(items)


def codec_for(types: BtfTypes, type_id: int, role: Role = "value", comp: _Compiler | None = None) -> Codec:
    """The codec for values of ``type_id``: a :class:`BtfCodec`, or a plain struct codec for a bare integer type
    (which the map's fast paths know)."""
    t = types.resolve(type_id)
    code = _scalar_code(t)
    if code is not None and t.kind is not Kind.PTR:
        return StructCodec("<" + code, role)
    return BtfCodec(types, type_id, role, _comp=comp)


def new_compiler(types: BtfTypes) -> _Compiler:
    """A compiler whose records and enums are shared by the codecs made with it (a map's key and value)."""
    return _Compiler(types)
