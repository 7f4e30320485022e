"""Reading BTF: the type section of a blob, from the kernel (a map's ``btf_id``), an ELF ``.BTF`` section or vmlinux.

>>> types = BtfTypes.vmlinux()
>>> t = types.by_name("task_struct")
>>> t.kind is Kind.STRUCT, t.size > 0
(True, True)

Every kind of ``include/uapi/linux/btf.h`` is understood. Type ids count from 1 in the order of the
type section (0 is ``void``); split BTF (a kernel module's, on top of vmlinux) continues the ids and
string offsets of its base.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from ebpfmaps import errors
from ebpfmaps._libbpf import maps as _maps

__all__ = ["VMLINUX", "BtfTypes", "EnumValue", "Kind", "Member", "Param", "SecInfo", "Type"]

VMLINUX = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")

BTF_INT_SIGNED = 1 << 0
BTF_INT_CHAR = 1 << 1
BTF_INT_BOOL = 1 << 2


class Kind(enum.IntEnum):
    """``BTF_KIND_*``."""

    VOID = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


#: Kinds that only qualify or rename another type (the value's layout is the target's).
MODIFIERS = frozenset({Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.TYPE_TAG})


@dataclass(frozen=True)
class Member:
    """A struct or union member: ``bit_offset`` from the start, ``bitfield_size`` 0 for a whole member."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass(frozen=True)
class EnumValue:
    name: str
    value: int


@dataclass(frozen=True)
class Param:
    name: str
    type_id: int


@dataclass(frozen=True)
class SecInfo:
    """A variable of a DATASEC: its VAR type id, byte offset and size."""

    type_id: int
    offset: int
    size: int


@dataclass(frozen=True)
class Type:
    """One BTF type. Fields that do not apply to the kind keep their defaults.

    ``ref`` is the referenced type id of PTR, TYPEDEF, the qualifiers, TYPE_TAG, FUNC, VAR, DECL_TAG,
    and the element type of an ARRAY.
    """

    id: int
    kind: Kind
    name: str = ""
    size: int = 0
    ref: int = 0
    kflag: bool = False
    # INT
    encoding: int = 0
    bits: int = 0
    int_offset: int = 0
    # ARRAY
    index_type: int = 0
    nelems: int = 0
    # STRUCT, UNION, ENUM, ENUM64, FUNC_PROTO, DATASEC
    members: tuple[Member, ...] = field(default=())
    values: tuple[EnumValue, ...] = field(default=())
    params: tuple[Param, ...] = field(default=())
    secinfo: tuple[SecInfo, ...] = field(default=())
    # VAR, FUNC
    linkage: int = 0
    # DECL_TAG: -1 for the type itself, else the member or parameter index
    component_idx: int = -1

    @property
    def signed(self) -> bool:
        """An INT with the signed encoding, or an ENUM/ENUM64 whose values are signed (kflag)."""
        if self.kind is Kind.INT:
            return bool(self.encoding & BTF_INT_SIGNED)
        if self.kind in (Kind.ENUM, Kind.ENUM64):
            return self.kflag
        return False

    @property
    def is_char(self) -> bool:
        """A one-byte INT that C code spells ``char`` (the char encoding, or the name)."""
        return self.kind is Kind.INT and self.size == 1 and (bool(self.encoding & BTF_INT_CHAR) or self.name == "char")

    @property
    def is_bool(self) -> bool:
        return self.kind is Kind.INT and bool(self.encoding & BTF_INT_BOOL)


_VOID = Type(0, Kind.VOID, "void")


class BtfTypes:
    """The types of one BTF blob (plus those of its base, for split BTF), indexed by id."""

    def __init__(self, blob: bytes, base: BtfTypes | None = None) -> None:
        if len(blob) < _HEADER.size:
            raise errors.InvalidArgument(f"a BTF blob of {len(blob)} bytes is shorter than the BTF header",
                                         op="btf")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(blob)
        if magic != BTF_MAGIC:
            raise errors.InvalidArgument(f"not a BTF blob (magic {magic:#x}; big-endian BTF is not read)", op="btf")
        if version != 1:
            raise errors.InvalidArgument(f"unsupported BTF version {version}", op="btf")
        if hdr_len + max(type_off + type_len, str_off + str_len) > len(blob):
            raise errors.InvalidArgument("the BTF header describes sections past the end of the blob", op="btf")
        self.base = base
        self.blob = blob
        self._strings = blob[hdr_len + str_off : hdr_len + str_off + str_len]
        self._str_base: int = len(base._strings) + base._str_base if base is not None else 0
        self._types: list[Type] = list(base._types) if base is not None else [_VOID]
        self._first_id = len(self._types)
        self._by_name: dict[str, list[int]] = {}
        if base is not None:
            for name, ids in base._by_name.items():
                self._by_name[name] = list(ids)
        try:
            self._parse(blob[hdr_len + type_off : hdr_len + type_off + type_len])
        except struct.error:
            raise errors.InvalidArgument("a BTF type record is cut short", op="btf") from None

    # ------------------------------------------------------------------ sources
    @classmethod
    def from_bytes(cls, blob: bytes, base: BtfTypes | None = None) -> BtfTypes:
        return cls(blob, base)

    @classmethod
    def from_kernel(cls, btf_id: int) -> BtfTypes:
        """The BTF object ``btf_id`` of the kernel (a map's or program's ``btf_id``).

        A kernel module's BTF is split BTF on top of vmlinux's, which is read as its base.
        """
        h = _maps.btf_get_fd_by_id(btf_id, op="btf")
        try:
            blob = _maps.btf_info_blob(h, op="btf")
        finally:
            h.close()
        base = None
        if _starts_after_base(blob):
            base = cls.vmlinux()
        return cls(blob, base)

    @classmethod
    def from_elf(cls, path: str | os.PathLike[str]) -> BtfTypes:
        """The ``.BTF`` section of an ELF object (a clang-built ``.bpf.o``, a vmlinux image)."""
        with open(path, "rb") as f:
            data = f.read()
        return cls(elf_section(data, ".BTF", os.fspath(path)))

    @classmethod
    def vmlinux(cls, path: str | os.PathLike[str] = VMLINUX) -> BtfTypes:
        """The running kernel's BTF (``/sys/kernel/btf/vmlinux``), or that of another raw BTF file."""
        with open(path, "rb") as f:
            return cls(f.read())

    # ------------------------------------------------------------------ parsing
    def _string(self, off: int) -> str:
        if off < self._str_base:
            assert self.base is not None
            return self.base._string(off)
        off -= self._str_base
        end = self._strings.find(b"\0", off)
        if off >= len(self._strings) or end < 0:
            raise errors.InvalidArgument(f"BTF string offset {off} is outside the string section", op="btf")
        return self._strings[off:end].decode(errors="replace")

    def _parse(self, data: bytes) -> None:
        pos = 0
        n = len(data)
        u32 = struct.Struct("<I").unpack_from
        i32 = struct.Struct("<i").unpack_from
        trip = struct.Struct("<III").unpack_from
        pair = struct.Struct("<II").unpack_from
        enum_pair = struct.Struct("<Ii").unpack_from
        while pos < n:
            if pos + 12 > n:
                raise errors.InvalidArgument("a BTF type record is cut short", op="btf")
            name_off, info, size_or_type = _TYPE.unpack_from(data, pos)
            pos += 12
            try:
                kind = Kind((info >> 24) & 0x1F)
            except ValueError:
                raise errors.InvalidArgument(f"unknown BTF kind {(info >> 24) & 0x1F}", op="btf") from None
            vlen = info & 0xFFFF
            kflag = bool(info >> 31)
            tid = len(self._types)
            name = self._string(name_off)
            t: Type
            if kind is Kind.INT:
                (word,) = u32(data, pos)
                pos += 4
                t = Type(tid, kind, name, size_or_type, encoding=(word >> 24) & 0xF, int_offset=(word >> 16) & 0xFF,
                         bits=word & 0xFF)
            elif kind is Kind.ARRAY:
                elem, index, nelems = trip(data, pos)
                pos += 12
                t = Type(tid, kind, name, ref=elem, index_type=index, nelems=nelems)
            elif kind in (Kind.STRUCT, Kind.UNION):
                members = []
                for _ in range(vlen):
                    m_name, m_type, m_off = trip(data, pos)
                    pos += 12
                    if kflag:
                        members.append(Member(self._string(m_name), m_type, m_off & 0xFFFFFF, m_off >> 24))
                    else:
                        members.append(Member(self._string(m_name), m_type, m_off))
                t = Type(tid, kind, name, size_or_type, kflag=kflag, members=tuple(members))
            elif kind is Kind.ENUM:
                values = []
                for _ in range(vlen):
                    v_name, v_val = enum_pair(data, pos)
                    pos += 8
                    values.append(EnumValue(self._string(v_name), v_val if kflag else v_val & 0xFFFFFFFF))
                t = Type(tid, kind, name, size_or_type, kflag=kflag, values=tuple(values))
            elif kind is Kind.ENUM64:
                values = []
                for _ in range(vlen):
                    v_name, lo, hi = trip(data, pos)
                    pos += 12
                    v = (hi << 32) | lo
                    if kflag and v >= 1 << 63:
                        v -= 1 << 64
                    values.append(EnumValue(self._string(v_name), v))
                t = Type(tid, kind, name, size_or_type, kflag=kflag, values=tuple(values))
            elif kind is Kind.FUNC_PROTO:
                params = []
                for _ in range(vlen):
                    p_name, p_type = pair(data, pos)
                    pos += 8
                    params.append(Param(self._string(p_name), p_type))
                t = Type(tid, kind, name, ref=size_or_type, params=tuple(params))
            elif kind is Kind.VAR:
                (linkage,) = u32(data, pos)
                pos += 4
                t = Type(tid, kind, name, ref=size_or_type, linkage=linkage)
            elif kind is Kind.DATASEC:
                secs = []
                for _ in range(vlen):
                    s_type, s_off, s_size = trip(data, pos)
                    pos += 12
                    secs.append(SecInfo(s_type, s_off, s_size))
                t = Type(tid, kind, name, size_or_type, secinfo=tuple(secs))
            elif kind is Kind.DECL_TAG:
                (component,) = i32(data, pos)
                pos += 4
                t = Type(tid, kind, name, ref=size_or_type, component_idx=component)
            elif kind is Kind.FLOAT:
                t = Type(tid, kind, name, size_or_type)
            elif kind is Kind.FWD:
                t = Type(tid, kind, name, kflag=kflag)  # kflag: a union, else a struct
            elif kind is Kind.FUNC:
                t = Type(tid, kind, name, ref=size_or_type, linkage=vlen)
            else:  # PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
                t = Type(tid, kind, name, ref=size_or_type)
            if pos > n:
                raise errors.InvalidArgument(f"BTF type {tid} ({kind.name}) is cut short", op="btf")
            self._types.append(t)
            if name:
                self._by_name.setdefault(name, []).append(tid)

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        """The number of type ids, ``void`` included."""
        return len(self._types)

    def __iter__(self) -> Iterator[Type]:
        """This blob's own types (not its base's), in id order."""
        return iter(self._types[self._first_id :])

    def __getitem__(self, type_id: int) -> Type:
        if not 0 <= type_id < len(self._types):
            raise errors.InvalidArgument(f"no BTF type id {type_id} (the BTF has {len(self._types) - 1})", op="btf")
        return self._types[type_id]

    def by_name(self, name: str, kind: Kind | None = None) -> Type:
        """The first type named ``name`` (of ``kind``, when given)."""
        for tid in self._by_name.get(name, ()):
            t = self._types[tid]
            if kind is None or t.kind is kind:
                return t
        raise errors.InvalidArgument(f"no BTF type named {name!r}" + (f" of kind {kind.name}" if kind else ""),
                                     op="btf")

    def resolve(self, type_id: int) -> Type:
        """The type behind typedefs, qualifiers and type tags."""
        t = self[type_id]
        seen = 0
        while t.kind in MODIFIERS:
            t = self[t.ref]
            seen += 1
            if seen > 64:
                raise errors.InvalidArgument(f"BTF type {type_id} refers to itself in a loop", op="btf")
        return t

    def size_of(self, type_id: int, _depth: int = 0) -> int:
        """The size in bytes of a value of ``type_id`` (arrays: every element; pointers: 8)."""
        if _depth > 64:
            raise errors.InvalidArgument(f"BTF type {type_id} is nested more than 64 deep (a loop?)", op="btf")
        t = self.resolve(type_id)
        if t.kind in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FLOAT, Kind.DATASEC):
            return t.size
        if t.kind is Kind.PTR:
            return struct.calcsize("P")
        if t.kind is Kind.ARRAY:
            return t.nelems * self.size_of(t.ref, _depth + 1)
        if t.kind is Kind.VAR:
            return self.size_of(t.ref, _depth + 1)
        raise errors.InvalidArgument(f"BTF type {type_id} ({t.kind.name} {t.name!r}) has no size", op="btf")

    def c_name(self, type_id: int, _depth: int = 0) -> str:
        """The type as C spells it in a declaration without a declarator (``struct s``, ``int[4]``, ``char *``)."""
        t = self[type_id]
        if _depth > 64:
            return "..."
        k = t.kind
        if k is Kind.VOID:
            return "void"
        if k in (Kind.STRUCT, Kind.UNION):
            return f"{k.name.lower()} {t.name or '(anon)'}"
        if k in (Kind.ENUM, Kind.ENUM64):
            return f"enum {t.name or '(anon)'}"
        if k is Kind.FWD:
            return f"{'union' if t.kflag else 'struct'} {t.name}"
        if k is Kind.PTR:
            return self.c_name(t.ref, _depth + 1) + " *"
        if k in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT):
            return f"{k.name.lower()} {self.c_name(t.ref, _depth + 1)}"
        if k is Kind.TYPE_TAG:
            return f"{self.c_name(t.ref, _depth + 1)} __attribute__((btf_type_tag(\"{t.name}\")))"
        if k is Kind.ARRAY:
            return f"{self.c_name(t.ref, _depth + 1)}[{t.nelems}]"
        if k is Kind.FUNC_PROTO:
            args = ", ".join(self.c_name(p.type_id, _depth + 1) for p in t.params) or "void"
            return f"{self.c_name(t.ref, _depth + 1)} (*)({args})"
        return t.name

    def decl_tags(self, type_id: int) -> list[Type]:
        """The DECL_TAGs attached to ``type_id`` (to the type itself or to one of its members)."""
        return [t for t in self._types if t.kind is Kind.DECL_TAG and t.ref == type_id]


def _starts_after_base(blob: bytes) -> bool:
    """Whether a kernel BTF blob is split BTF: its first string is not the empty string at offset 0.

    Split BTF's string section continues its base's, so its own section does not begin with NUL.
    """
    if len(blob) < _HEADER.size:
        return False
    _m, _v, _f, hdr_len, _to, _tl, str_off, str_len = _HEADER.unpack_from(blob)
    return bool(str_len > 0 and blob[hdr_len + str_off] != 0)


def elf_section(data: bytes, name: str, where: str = "the ELF file") -> bytes:
    """The contents of section ``name`` of a little-endian 64-bit ELF image (what clang and the kernel build)."""
    if data[:4] != b"\x7fELF":
        raise errors.InvalidArgument(f"{where} is not an ELF file", op="btf")
    if data[4] != 2 or data[5] != 1:
        raise errors.InvalidArgument(f"{where} is not a little-endian 64-bit ELF file", op="btf")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = []
    for i in range(shnum):
        sh_name, _type, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        sections.append((sh_name, off, size))
    _n, str_off, str_size = sections[shstrndx]
    names = data[str_off : str_off + str_size]
    want = name.encode()
    for sh_name, off, size in sections:
        end = names.find(b"\0", sh_name)
        if names[sh_name:end] == want:
            return data[off : off + size]
    raise errors.InvalidArgument(f"{where} has no {name} section (built without -g?)", op="btf")
