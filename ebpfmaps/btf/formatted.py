"""Map entries as bpftool formats them: the ``formatted`` objects of ``bpftool -j map dump``.

Read straight from the bytes and the BTF, the way bpftool's BTF dumper reads them: structs and
unions as objects of every member, enums by enumerator name (the number when none matches),
char arrays holding a printable NUL-terminated string as that string, 128-bit integers and
bitfields as hex strings, ``bool`` as true/false, pointers as unsigned numbers.
"""

from __future__ import annotations

import enum
import json
import struct
from typing import Any

from ebpfmaps.btf.codec import Record
from ebpfmaps.btf.maps import type_refs
from ebpfmaps.btf.reader import BTF_INT_BOOL, BTF_INT_CHAR, BTF_INT_SIGNED, MODIFIERS, BtfTypes, Kind
from ebpfmaps.codecs import round8
from ebpfmaps.errors import InvalidArgument
from ebpfmaps.spec import MapInfo

__all__ = ["MapFormatter", "bpftool_value", "format_entry", "map_formatter", "render_text", "render_value"]


def _hex(v: int) -> str:
    return f"0x{v:x}"


def _bitfield(data: bytes, byte: int, bit: int, nbits: int) -> str:
    nbytes = (bit + nbits + 7) // 8
    v = (int.from_bytes(data[byte : byte + nbytes], "little") >> bit) & ((1 << nbits) - 1)
    return _hex(v)


def bpftool_value(types: BtfTypes, type_id: int, data: bytes, bit_offset: int = 0) -> Any:
    """The JSON value bpftool prints for ``data`` of BTF type ``type_id``."""
    t = types[type_id]
    k = t.kind
    if k in MODIFIERS and k is not Kind.TYPE_TAG:
        return bpftool_value(types, types.resolve(type_id).id, data, bit_offset)
    if k is Kind.INT:
        nbits = t.bits
        if bit_offset or t.int_offset or nbits % 8:
            total = bit_offset + t.int_offset
            return _bitfield(data, total // 8, total % 8, nbits)
        if nbits == 128:
            return _hex(int.from_bytes(data[:16], "little"))
        enc = t.encoding
        if enc == 0 or enc == BTF_INT_SIGNED:
            if nbits not in (8, 16, 32, 64):
                return _bitfield(data, 0, 0, nbits)
            return int.from_bytes(data[: nbits // 8], "little", signed=enc == BTF_INT_SIGNED)
        if enc == BTF_INT_CHAR:
            return chr(data[0])  # printable as itself, else as a \u00XX escape: the same string once parsed
        if enc == BTF_INT_BOOL:
            return data[0] != 0
        raise InvalidArgument(f"BTF int {t.name!r} has an unknown encoding {enc}", op="format")
    if k in (Kind.STRUCT, Kind.UNION):
        out: dict[str, Any] = {}
        for m in t.members:
            byte, bit = divmod(m.bit_offset, 8)
            if m.bitfield_size:
                out[m.name] = _bitfield(data, byte, bit, m.bitfield_size)
            else:
                out[m.name] = bpftool_value(types, m.type_id, data[byte:], bit)
        return out
    if k is Kind.ARRAY:
        elem_id = t.ref
        e = types[elem_id]
        while e.kind in (Kind.CONST, Kind.VOLATILE, Kind.RESTRICT, Kind.TYPE_TAG):
            e = types[e.ref]
        if t.nelems and e.kind is Kind.INT and e.size == 1 and (e.encoding == BTF_INT_CHAR or e.name == "char"):
            raw = data[: t.nelems]
            nul = raw.find(b"\0")
            if nul >= 0 and all(0x20 <= c < 0x7F for c in raw[:nul]):
                return raw[:nul].decode("ascii")
        es = types.size_of(elem_id)
        return [bpftool_value(types, elem_id, data[i * es :]) for i in range(t.nelems)]
    if k is Kind.ENUM:
        fmt = {8: "<q", 4: "<i", 2: "<h", 1: "<b"}.get(t.size)
        if fmt is None:
            raise InvalidArgument(f"enum {t.name!r} of {t.size} bytes", op="format")
        v = struct.unpack_from(fmt, data)[0]
        for ev in t.values:
            # bpftool compares the sign-extended value with the enumerator's s32.
            ev32 = ev.value - (1 << 32) if ev.value >= 1 << 31 else ev.value
            if v == ev32:
                return ev.name
        return v
    if k is Kind.ENUM64:
        u = struct.unpack_from("<Q", data)[0]
        for ev in t.values:
            if ev.value & ((1 << 64) - 1) == u:
                return ev.name
        return u - (1 << 64) if u >= 1 << 63 else u
    if k is Kind.PTR:
        return struct.unpack_from("<Q", data)[0]
    if k is Kind.VAR:
        return {t.name: bpftool_value(types, t.ref, data, bit_offset)}
    if k is Kind.DATASEC:
        return {t.name: [bpftool_value(types, s.type_id, data[s.offset :]) for s in t.secinfo]}
    raise InvalidArgument(f"bpftool cannot format BTF {k.name} values", op="format")


def format_entry(types: BtfTypes, key_type_id: int, value_type_id: int, key: bytes, value: bytes | list[bytes],
                 ) -> dict[str, Any]:
    """``{"key": ..., "value": ...}`` as bpftool's ``formatted`` (``value`` is a list for per-CPU maps, one per CPU)."""
    k = bpftool_value(types, key_type_id, key) if key_type_id else None
    if isinstance(value, list):
        return {"key": k, "value": [bpftool_value(types, value_type_id, v) for v in value]}
    return {"key": k, "value": bpftool_value(types, value_type_id, value)}


def render_text(v: Any) -> str:
    """A formatted value as one line of text with its field names: ``{pid=7, comm="bash", flags=[1, 2]}``."""
    if isinstance(v, dict):
        return "{" + ", ".join(f"{name or '(anon)'}={render_text(x)}" for name, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(render_text(x) for x in v) + "]"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def render_value(v: Any) -> str:
    """A decoded value (records, enums, char arrays...) as one line of text with field names:
    ``{pid=7, comm="bash", state=RUNNING, path=[1, 2]}``."""
    if isinstance(v, Record):
        return "{" + ", ".join(f"{name}={render_value(getattr(v, name))}" for name in v._fields) + "}"
    if isinstance(v, enum.Enum):
        return v.name
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (bytes, bytearray)):
        nul = v.find(b"\0")
        if nul > 0 and all(0x20 <= c < 0x7F for c in v[:nul]) and not any(v[nul:]):
            return '"' + v[:nul].decode("ascii").replace("\\", "\\\\").replace('"', '\\"') + '"'
        return v.hex(" ") if v else '""'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(render_value(x) for x in v) + "]"
    return str(v)


class MapFormatter:
    """A map's raw entries as bpftool's ``formatted`` JSON values, from the map's BTF.

    Per-CPU values are one formatted value per possible CPU, in CPU order (bpftool's ``values``).
    """

    def __init__(self, types: BtfTypes, key_type_id: int, value_type_id: int, *, value_size: int,
                 per_cpu: bool) -> None:
        self.types = types
        self.key_type_id = key_type_id
        self.value_type_id = value_type_id
        self.value_size = value_size
        self.per_cpu = per_cpu
        self._stride = round8(value_size)
        # Plain integer keys and values (the common counter map) are formatted a whole chunk at a time.
        kc, vc = self._int_char(key_type_id), self._int_char(value_type_id)
        self._packed_ints = (kc, vc) if kc and vc and not per_cpu else None

    def _int_char(self, type_id: int) -> str | None:
        """The little-endian struct format char of ``type_id`` when bpftool prints it as a JSON number read
        from whole bytes (an int of 1, 2, 4 or 8 bytes, not char or bool; a pointer), else None."""
        if not type_id:
            return None
        t = self.types[type_id]
        while t.kind in MODIFIERS and t.kind is not Kind.TYPE_TAG:  # as bpftool_value follows them
            t = self.types[t.ref]
        if t.kind is Kind.PTR:
            return "Q"
        if t.kind is not Kind.INT or t.int_offset or t.bits not in (8, 16, 32, 64) or t.bits != 8 * t.size:
            return None
        if t.encoding not in (0, BTF_INT_SIGNED):
            return None
        char = {8: "b", 16: "h", 32: "i", 64: "q"}[t.bits]
        return char if t.encoding == BTF_INT_SIGNED else char.upper()

    def json_items(self, keys: bytes, values: bytes, count: int) -> list[str]:
        """``count`` packed entries as the JSON texts of their :meth:`entry` objects."""
        if not count:
            return []
        if self._packed_ints is not None:
            kc, vc = self._packed_ints
            return list(map(_JSON_ENTRY, struct.unpack_from(f"<{count}{kc}", keys),
                            struct.unpack_from(f"<{count}{vc}", values)))
        ks, vs = len(keys) // count, len(values) // count
        dumps, entry = json.dumps, self.entry
        return [dumps(entry(keys[i * ks : (i + 1) * ks], values[i * vs : (i + 1) * vs])) for i in range(count)]

    def key(self, data: bytes) -> Any:
        return bpftool_value(self.types, self.key_type_id, data) if self.key_type_id else data.hex(" ")

    def value(self, data: bytes) -> Any:
        if not self.value_type_id:
            return data.hex(" ")
        if self.per_cpu:
            s, n = self._stride, self.value_size
            return [bpftool_value(self.types, self.value_type_id, data[i : i + n]) for i in range(0, len(data), s)]
        return bpftool_value(self.types, self.value_type_id, data)

    def entry(self, key: bytes, value: bytes) -> dict[str, Any]:
        """``{"key": ..., "value": ...}`` equal to bpftool's ``formatted.key`` and ``formatted.value``
        (for per-CPU maps, ``value`` is the list of bpftool's ``formatted.values[i].value``)."""
        return {"key": self.key(key), "value": self.value(value)}


# json.dumps({"key": k, "value": v}) for two ints, without building the dict.
_JSON_ENTRY = '{{"key": {}, "value": {}}}'.format


def map_formatter(info: MapInfo, *, per_cpu: bool) -> MapFormatter | None:
    """A :class:`MapFormatter` for a map with BTF key or value types, else None."""
    key, value = type_refs(info)
    ref = key or value
    if ref is None:
        return None
    return MapFormatter(ref.types, info.btf_key_type_id if key else 0, info.btf_value_type_id if value else 0,
                        value_size=info.value_size, per_cpu=per_cpu)
