"""The members of a map key's BTF type, read from the kernel, as label fields.

A map created by a compiled BPF object (or with BTF given at creation) records the BTF type of
its key. This flattens that type (read with :class:`ebpfmaps.btf.BtfTypes`) into byte fields:
integers and enums become ``int`` fields, char arrays ``string`` fields, pointers 8-byte ``int``
fields, nested structs their members with a ``parent_`` prefix, anything else ``hex``. Bitfields
are not byte fields and are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from ebpfmaps import btf
from ebpfmaps.btf.reader import BtfTypes, Kind
from ebpfmaps.errors import InvalidArgument, NotSupported


@dataclass(frozen=True)
class KeyMember:
    """A byte field of the key: label name, decoder, offset and size in bytes."""

    name: str
    decode: str
    offset: int
    size: int
    signed: bool = False


def _flatten(types: BtfTypes, tid: int, offset: int, prefix: str, out: list[KeyMember]) -> None:
    t = types.resolve(tid)
    if t.kind in (Kind.STRUCT, Kind.UNION):
        for i, member in enumerate(t.members):
            if member.bitfield_size:
                raise NotSupported(f"key member at bit {member.bit_offset} is a bitfield: "
                                   "describe the key's labels by hand")
            name = member.name or f"field{i}"
            if member.bit_offset % 8:
                raise NotSupported(f"key member {name!r} does not start on a byte")
            _flatten(types, member.type_id, offset + member.bit_offset // 8, f"{prefix}{name}_", out)
            if t.kind is Kind.UNION:
                break  # a union's first member names its bytes
        return
    label = prefix.rstrip("_")
    size = types.size_of(tid)
    if t.kind is Kind.INT:
        out.append(KeyMember(label, "int" if size in (1, 2, 4, 8) else "hex", offset, size, t.signed))
    elif t.kind in (Kind.ENUM, Kind.ENUM64):
        out.append(KeyMember(label, "int", offset, size, t.signed))
    elif t.kind is Kind.PTR:
        out.append(KeyMember(label, "int", offset, 8))
    elif t.kind is Kind.ARRAY:
        out.append(KeyMember(label, "string" if types.resolve(t.ref).is_char else "hex", offset, size))
    else:
        out.append(KeyMember(label, "hex", offset, size))


def members_from_blob(blob: bytes, type_id: int) -> list[KeyMember]:
    """The byte fields of type ``type_id`` in the raw BTF ``blob``; a scalar key is one field with an empty name."""
    types = BtfTypes.from_bytes(blob)
    if not 0 < type_id < len(types):
        raise InvalidArgument(f"BTF type id {type_id} is not in the map's BTF ({len(types) - 1} types)")
    out: list[KeyMember] = []
    _flatten(types, type_id, 0, "", out)
    return out


def key_members(btf_id: int, key_type_id: int) -> list[KeyMember] | None:
    """The key's byte fields from kernel BTF object ``btf_id``; None when that BTF cannot be read."""
    blob = btf.read_raw(btf_id)
    if blob is None:
        return None
    return members_from_blob(blob, key_type_id)


__all__ = ["KeyMember", "key_members", "members_from_blob"]
