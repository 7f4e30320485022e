"""Writing BTF: a builder for type information the kernel loads (spin-lock values, maps made in Python).

BPF_F_LOCK only works on maps created with BTF that describes the value as a
struct with a ``struct bpf_spin_lock`` member; the kernel finds the lock through
that description. This module writes the BTF blob by hand (no compiler needed)
and loads it with ``bpf_btf_load``:

>>> from ebpfmaps.btf import BtfBuilder
>>> b = BtfBuilder()
>>> u32 = b.add_int("__u32", 4)
>>> u64 = b.add_int("__u64", 8)
>>> lock = b.add_spin_lock(u32)
>>> val = b.add_struct("counter", 16, [("lock", lock, 0), ("counter", u64, 8)])
>>> btf = b.load()   # btf.fd, btf.type_id("counter") == val

The format is the kernel's (Documentation/bpf/btf.rst, include/uapi/linux/btf.h):
a 24-byte header, a type section of ``struct btf_type`` records (each followed by
kind-specific data) whose ids count from 1 in order, and a string section that
starts with the empty string.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ebpfmaps import errors
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps._libbpf.fd import FD

__all__ = ["BTF_KIND_INT", "BTF_KIND_STRUCT", "Btf", "BtfBuilder", "SpinLockBtf", "load_blob", "read_raw",
           "spin_lock_value_btf"]

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
_HEADER = struct.Struct("=HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_TYPE = struct.Struct("=III")  # name_off, info, size (or type)
_MEMBER = struct.Struct("=III")  # name_off, type, bit offset

BTF_KIND_INT = 1
BTF_KIND_PTR = 2
BTF_KIND_ARRAY = 3
BTF_KIND_STRUCT = 4
BTF_KIND_UNION = 5
BTF_KIND_FLOAT = 16
BTF_INT_SIGNED = 1 << 0
BTF_INT_CHAR = 1 << 1
BTF_INT_BOOL = 1 << 2

# The verifier log is only asked for when loading failed (a second attempt), so
# a successful load costs no log copying. 64 KiB holds any log of these tiny blobs.
_LOG_SIZE = 64 * 1024


@dataclass(frozen=True)
class _Member:
    name: str
    type_id: int
    byte_offset: int


class BtfBuilder:
    """Collects INT and STRUCT types and encodes them as a BTF blob."""

    def __init__(self) -> None:
        self._types: list[bytes] = []
        self._names: dict[str, int] = {}  # type name -> id
        self._sizes: dict[int, int] = {}  # type id -> byte size, to check struct layouts
        self._strings = bytearray(b"\0")  # offset 0 is the empty name
        self._string_offsets: dict[str, int] = {"": 0}

    def _string(self, text: str) -> int:
        off = self._string_offsets.get(text)
        if off is None:
            if "\0" in text:
                raise errors.InvalidArgument(f"BTF names cannot contain NUL: {text!r}", op="btf")
            off = len(self._strings)
            self._strings += text.encode() + b"\0"
            self._string_offsets[text] = off
        return off

    def _add(self, name: str, record: bytes, size: int) -> int:
        self._types.append(record)
        type_id = len(self._types)  # id 0 is "void"; ours count from 1 in insertion order
        if name:
            self._names[name] = type_id
        self._sizes[type_id] = size
        return type_id

    def add_int(self, name: str, size: int, *, signed: bool = False, bool_: bool = False, char: bool = False) -> int:
        """An integer type of ``size`` bytes (1, 2, 4, 8 or 16); returns its type id."""
        if size not in (1, 2, 4, 8, 16):
            raise errors.InvalidArgument(f"BTF int {name!r}: size must be 1, 2, 4, 8 or 16 bytes, not {size}", op="btf")
        if not name:
            raise errors.InvalidArgument("BTF int types need a name", op="btf")
        encoding = (BTF_INT_SIGNED if signed else 0) | (BTF_INT_BOOL if bool_ else 0) | (BTF_INT_CHAR if char else 0)
        info = BTF_KIND_INT << 24
        # The u32 after an INT: encoding in bits 24-27, bit offset in 16-23, bit count in 0-7.
        int_data = (encoding << 24) | (size * 8)
        record = _TYPE.pack(self._string(name), info, size) + struct.pack("=I", int_data)
        return self._add(name, record, size)

    def add_struct(self, name: str, size: int, members: Sequence[tuple[str, int, int]]) -> int:
        """A struct of ``size`` bytes with ``(name, type_id, byte_offset)`` members; returns its type id.

        Members must lie inside the struct and must not overlap, so the kernel's
        checks cannot be what first reports a mistake.
        """
        parsed = [_Member(n, t, off) for n, t, off in members]
        if len(parsed) > 0xFFFF:
            raise errors.InvalidArgument(f"BTF struct {name!r} has too many members", op="btf")
        end = 0
        for m in sorted(parsed, key=lambda m: m.byte_offset):
            msize = self._sizes.get(m.type_id)
            if msize is None:
                raise errors.InvalidArgument(f"BTF struct {name!r}: member {m.name!r} has unknown type id {m.type_id}",
                                             op="btf")
            if m.byte_offset < end:
                raise errors.InvalidArgument(f"BTF struct {name!r}: member {m.name!r} overlaps the one before it",
                                             op="btf")
            end = m.byte_offset + msize
            if end > size:
                raise errors.InvalidArgument(f"BTF struct {name!r}: member {m.name!r} ends at byte {end}, "
                                             f"past the struct's size {size}", op="btf")
        info = (BTF_KIND_STRUCT << 24) | len(parsed)
        record = bytearray(_TYPE.pack(self._string(name), info, size))
        for m in parsed:
            record += _MEMBER.pack(self._string(m.name), m.type_id, m.byte_offset * 8)
        return self._add(name, bytes(record), size)

    def add_array(self, elem_type_id: int, nelems: int) -> int:
        """An array of ``nelems`` elements of ``elem_type_id``; returns its type id."""
        esize = self._sizes.get(elem_type_id)
        if esize is None:
            raise errors.InvalidArgument(f"BTF array: unknown element type id {elem_type_id}", op="btf")
        index = self._names.get("__ARRAY_SIZE_TYPE__") or self.add_int("__ARRAY_SIZE_TYPE__", 4)
        record = _TYPE.pack(0, BTF_KIND_ARRAY << 24, 0) + struct.pack("=III", elem_type_id, index, nelems)
        return self._add("", record, esize * nelems)

    def add_float(self, name: str, size: int) -> int:
        """A floating-point type of ``size`` bytes (kernels from 5.13 know the kind)."""
        if size not in (2, 4, 8, 12, 16):
            raise errors.InvalidArgument(f"BTF float {name!r}: size must be 2, 4, 8, 12 or 16 bytes", op="btf")
        return self._add(name, _TYPE.pack(self._string(name), BTF_KIND_FLOAT << 24, size), size)

    def add_composite(self, name: str, size: int, members: Sequence[tuple[str, int, int, int]], *,
                      union: bool = False) -> int:
        """A struct (or union) of ``size`` bytes with ``(name, type_id, bit_offset, bitfield_size)`` members.

        Bitfields (a non-zero ``bitfield_size``) use the kind flag encoding. Members must lie inside
        the type; a struct's must not overlap.
        """
        if len(members) > 0xFFFF:
            raise errors.InvalidArgument(f"BTF struct {name!r} has too many members", op="btf")
        bitfields = any(bits for _, _, _, bits in members)
        end = 0
        for mname, tid, bit_off, bits in sorted(members, key=lambda m: m[2]):
            msize = self._sizes.get(tid)
            if msize is None:
                raise errors.InvalidArgument(f"BTF struct {name!r}: member {mname!r} has unknown type id {tid}",
                                             op="btf")
            width = bits or msize * 8
            if not union and bit_off < end:
                raise errors.InvalidArgument(f"BTF struct {name!r}: member {mname!r} overlaps the one before it",
                                             op="btf")
            end = bit_off + width
            if end > size * 8 or (bits and (bits > 255 or bit_off >= 1 << 24)):
                raise errors.InvalidArgument(f"BTF struct {name!r}: member {mname!r} does not fit", op="btf")
        kind = BTF_KIND_UNION if union else BTF_KIND_STRUCT
        info = (kind << 24) | len(members) | (1 << 31 if bitfields else 0)
        record = bytearray(_TYPE.pack(self._string(name), info, size))
        for mname, tid, bit_off, bits in members:
            record += _MEMBER.pack(self._string(mname), tid, (bits << 24) | bit_off if bitfields else bit_off)
        return self._add(name, bytes(record), size)

    def add_spin_lock(self, u32_type_id: int | None = None) -> int:
        """``struct bpf_spin_lock { __u32 val; }``, which the kernel recognises by name and size."""
        if u32_type_id is None:
            u32_type_id = self._names.get("__u32") or self.add_int("__u32", 4)
        if self._sizes.get(u32_type_id) != 4:
            raise errors.InvalidArgument("bpf_spin_lock's member must be a 4-byte int type", op="btf")
        return self.add_struct("bpf_spin_lock", 4, [("val", u32_type_id, 0)])

    def type_id(self, name: str) -> int:
        try:
            return self._names[name]
        except KeyError:
            raise errors.InvalidArgument(f"no BTF type named {name!r} was added", op="btf") from None

    def encode(self) -> bytes:
        """The BTF blob: header, type section, string section."""
        type_section = b"".join(self._types)
        header = _HEADER.pack(BTF_MAGIC, BTF_VERSION, 0, _HEADER.size, 0, len(type_section),
                              len(type_section), len(self._strings))
        return header + type_section + bytes(self._strings)

    def load(self) -> Btf:
        """Load the blob into the kernel (BPF_BTF_LOAD); the verifier's log is in the error when it refuses."""
        return load_blob(self.encode(), self._names)


def load_blob(blob: bytes, type_ids: dict[str, int] | None = None, *, what: str = "the BTF blob") -> Btf:
    """Load an encoded BTF blob into the kernel; ``type_ids`` names the ids of its types for :meth:`Btf.type_id`.

    The verifier's log is in the error when the kernel refuses it.
    """
    h, err, _ = _maps.btf_load(blob)
    if h is None:
        exc = errors.from_errno(err, "btf_load", f"the kernel refused {what}", call="bpf_btf_load")
        log = _load_log(blob)
        if log:
            exc.message += "\nkernel log:\n" + log
        raise exc
    return Btf(h, dict(type_ids or {}))


def read_raw(btf_id: int) -> bytes | None:
    """The raw BTF of kernel BTF object ``btf_id``; ``None`` when it is gone or this process may not read it."""
    try:
        h = _maps.btf_get_fd_by_id(btf_id)
    except (errors.KeyNotFound, errors.PermissionDenied):
        return None
    try:
        return _maps.btf_info_blob(h)
    finally:
        h.close()


def _load_log(blob: bytes) -> str:
    """Load again with a log buffer, to explain why the kernel refused ``blob``."""
    h, _, log = _maps.btf_load(blob, log_size=_LOG_SIZE)
    if h is not None:  # it loaded this time; nothing to explain
        h.close()
        return ""
    return log


class Btf:
    """A BTF object loaded into the kernel: ``fd`` plus the ids of its named types.

    Pass it as ``btf=`` when creating a map; the map keeps it alive as long as it
    needs it. Closing it only drops this process's fd: maps created with it hold
    their own reference in the kernel.
    """

    def __init__(self, fd: FD | int, type_ids: dict[str, int]) -> None:
        # A number is taken over: the handle closes it.
        self._h = fd if isinstance(fd, FD) else FD(fd, "btf")
        self.type_ids = type_ids

    @property
    def fd(self) -> int:
        """The descriptor number now; hand it on at once (a map creation takes its own reference)."""
        if self._h.closed:
            raise errors.MapClosed("the BTF object is closed", op="btf")
        return self._h.num

    @property
    def handle(self) -> FD:
        """The :class:`~ebpfmaps._libbpf.fd.FD` that owns the descriptor."""
        return self._h

    @property
    def closed(self) -> bool:
        return self._h.closed

    def type_id(self, name: str) -> int:
        try:
            return self.type_ids[name]
        except KeyError:
            raise errors.InvalidArgument(f"this BTF has no type named {name!r}", op="btf") from None

    def close(self) -> None:
        self._h.close()

    def __enter__(self) -> Btf:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # A forgotten Btf must not leak its fd; close() is idempotent.
        h = getattr(self, "_h", None)
        if h is not None:
            h.close()

    def __repr__(self) -> str:
        state = "closed" if self._h.closed else f"fd={self._h.num}"
        return f"<Btf {state} types={self.type_ids}>"


@dataclass(frozen=True)
class SpinLockBtf:
    """What :func:`spin_lock_value_btf` returns: the loaded BTF and the ids to create a map with."""

    btf: Btf
    key_type_id: int
    value_type_id: int
    value_size: int


def spin_lock_value_btf(key_size: int = 4, counter_size: int = 8, name: str = "locked_value") -> SpinLockBtf:
    """BTF for ``struct name { struct bpf_spin_lock lock; __uN counter; }`` with an unsigned int key.

    The counter follows the lock at its natural alignment, as a C compiler lays it out.
    Create the map with ``btf=r.btf, btf_key_type_id=r.key_type_id, btf_value_type_id=r.value_type_id``.
    """
    if counter_size not in (4, 8):
        raise errors.InvalidArgument(f"counter_size must be 4 or 8, not {counter_size}", op="btf")
    b = BtfBuilder()
    u32 = b.add_int("__u32", 4)
    key = u32 if key_size == 4 else b.add_int(f"__u{key_size * 8}", key_size)
    counter_type = u32 if counter_size == 4 else b.add_int(f"__u{counter_size * 8}", counter_size)
    lock = b.add_spin_lock(u32)
    counter_off = counter_size  # after the 4-byte lock, at the counter's natural alignment
    size = counter_off + counter_size
    value = b.add_struct(name, size, [("lock", lock, 0), ("counter", counter_type, counter_off)])
    return SpinLockBtf(b.load(), key, value, size)
