"""Python source for BTF types: ctypes Structures, Unions and IntEnums that repeat the C definitions exactly.

Every struct gets ``_pack_ = 1`` and explicit padding, so its layout is BTF's byte for byte whatever
ctypes' own rules; a run of bitfields is kept as the bytes that hold it, with a property per field.
The module checks each size when imported, and is ``mypy --strict`` clean.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping, Sequence

from ebpfmaps.btf.reader import MODIFIERS, BtfTypes, Kind, Type

__all__ = ["MapTypes", "generate_module", "object_map_types"]

#: A map's name -> (key type id, value type id); 0 where the BTF does not say.
MapTypes = Mapping[str, tuple[int, int]]

_INTS = {(1, False): "ctypes.c_uint8", (1, True): "ctypes.c_int8", (2, False): "ctypes.c_uint16",
         (2, True): "ctypes.c_int16", (4, False): "ctypes.c_uint32", (4, True): "ctypes.c_int32",
         (8, False): "ctypes.c_uint64", (8, True): "ctypes.c_int64"}

_HELPERS = '''

def _get_bits(data: "ctypes.Array[ctypes.c_uint8]", shift: int, nbits: int, signed: bool) -> int:
    v = (int.from_bytes(bytes(data), "little") >> shift) & ((1 << nbits) - 1)
    return v - (1 << nbits) if signed and v >> (nbits - 1) else v


def _set_bits(data: "ctypes.Array[ctypes.c_uint8]", shift: int, nbits: int, value: int) -> None:
    mask = ((1 << nbits) - 1) << shift
    old = int.from_bytes(bytes(data), "little")
    new = ((old & ~mask) | ((value << shift) & mask)).to_bytes(len(data), "little")
    ctypes.memmove(data, new, len(data))
'''


def object_map_types(types: BtfTypes) -> dict[str, tuple[int, int]]:
    """The key and value type ids of each map a clang-built object declares in its ``.maps`` section."""
    out: dict[str, tuple[int, int]] = {}
    for t in types:
        if t.kind is not Kind.DATASEC or t.name != ".maps":
            continue
        for sec in t.secinfo:
            var = types[sec.type_id]
            if var.kind is not Kind.VAR:
                continue
            st = types.resolve(var.ref)
            ids = {"key": 0, "value": 0}
            for m in st.members:
                if m.name in ids:
                    mt = types.resolve(m.type_id)
                    if mt.kind is Kind.PTR:
                        ids[m.name] = mt.ref
            out[var.name] = (ids["key"], ids["value"])
    return out


def _ident(name: str) -> str:
    p = re.sub(r"\W", "_", name)
    if p.startswith("__"):  # Python would mangle it inside class bodies
        p = p.lstrip("_") + "_"
    if not p or p[0].isdigit():
        p = "_" + p
    if keyword.iskeyword(p) or p in ("ctypes", "enum", "Any", "MAPS"):
        p += "_"
    return p


class _Gen:
    def __init__(self, types: BtfTypes) -> None:
        self.types = types
        self.names: dict[int, str] = {}  # emitted struct/union/enum/typedef id -> Python name
        self.used: set[str] = {"_get_bits", "_set_bits"}
        self.blocks: list[str] = []
        self.pending: set[int] = set()
        self.needs_bits = False

    def name_for(self, t: Type) -> str:
        base = _ident(t.name) if t.name else f"anon_{t.kind.name.lower()}_{t.id}"
        p = base
        if p in self.used:
            p = f"{base}_{t.kind.name.lower()}"
        while p in self.used:
            p += "_"
        self.used.add(p)
        return p

    def ref(self, tid: int) -> str:
        """A Python expression for the ctypes type of ``tid`` (emitting its definition first)."""
        t = self.types[tid]
        k = t.kind
        if k is Kind.INT:
            if t.is_bool and t.size == 1:
                return "ctypes.c_bool"
            if t.size == 1 and t.is_char:
                return "ctypes.c_char"
            if (t.size, t.signed) in _INTS:
                return _INTS[(t.size, t.signed)]
            return f"(ctypes.c_uint8 * {t.size})"
        if k is Kind.FLOAT:
            return {4: "ctypes.c_float", 8: "ctypes.c_double"}.get(t.size, f"(ctypes.c_uint8 * {t.size})")
        if k is Kind.PTR:
            return "ctypes.c_uint64"
        if k in (Kind.ENUM, Kind.ENUM64):
            self.emit(tid)
            return _INTS[(t.size, t.signed)] if (t.size, t.signed) in _INTS else f"(ctypes.c_uint8 * {t.size})"
        if k is Kind.ARRAY:
            return f"({self.ref(t.ref)} * {t.nelems})"
        if k in (Kind.STRUCT, Kind.UNION, Kind.TYPEDEF):
            self.emit(tid)
            return self.names[tid]
        if k in MODIFIERS:
            return self.ref(t.ref)
        if k is Kind.VAR:
            return self.ref(t.ref)
        return f"(ctypes.c_uint8 * {self.types.size_of(tid)})"

    def emit(self, tid: int) -> None:
        if tid in self.names:
            return
        t = self.types[tid]
        if tid in self.pending:
            return
        self.pending.add(tid)
        if t.kind is Kind.TYPEDEF:
            target = self.ref(t.ref)
            name = self.name_for(t)
            self.names[tid] = name
            self.blocks.append(f"{name} = {target}\n")
        elif t.kind in (Kind.ENUM, Kind.ENUM64):
            name = self.name_for(t)
            self.names[tid] = name
            lines = [f"class {name}(enum.IntEnum):"]
            seen: set[str] = set()
            for v in t.values:
                vn = _ident(v.name)
                if vn in seen or (vn.startswith("_") and vn.endswith("_")):
                    continue
                seen.add(vn)
                lines.append(f"    {vn} = {v.value}")
            if len(lines) == 1:
                lines.append("    pass")
            self.blocks.append("\n".join(lines) + "\n")
        elif t.kind in (Kind.STRUCT, Kind.UNION):
            self.emit_record(t)

    def emit_record(self, t: Type) -> None:
        fields: list[str] = []
        props: list[str] = []
        anon: list[str] = []
        pos = 0  # bytes laid out so far
        members = list(t.members)
        i = 0
        pad = 0
        union = t.kind is Kind.UNION
        while i < len(members):
            m = members[i]
            byte = m.bit_offset // 8
            if m.bitfield_size or m.bit_offset % 8:
                # A run of bitfields: the bytes that hold it, and a property per field.
                run = [m]
                j = i + 1
                while not union and j < len(members) and (members[j].bitfield_size or members[j].bit_offset % 8):
                    run.append(members[j])
                    j += 1
                start = byte
                end = max((r.bit_offset + (r.bitfield_size or self.types.size_of(r.type_id) * 8) + 7) // 8
                          for r in run)
                if not union and start > pos:
                    fields.append(f'        ("_pad{pad}", ctypes.c_uint8 * {start - pos}),')
                    pad += 1
                store = f"_bits{pad}"
                pad += 1
                fields.append(f'        ("{store}", ctypes.c_uint8 * {end - start}),')
                for r in run:
                    nbits = r.bitfield_size or self.types.resolve(r.type_id).bits
                    shift = r.bit_offset - start * 8
                    signed = self.types.resolve(r.type_id).signed
                    pname = _ident(r.name) if r.name else f"anon{members.index(r)}"
                    props.append(
                        f"    @property\n    def {pname}(self) -> int:\n"
                        f"        return _get_bits(self.{store}, {shift}, {nbits}, {signed})\n\n"
                        f"    @{pname}.setter\n    def {pname}(self, value: int) -> None:\n"
                        f"        _set_bits(self.{store}, {shift}, {nbits}, value)\n")
                self.needs_bits = True
                pos = max(pos, end)
                i = j
                continue
            if not union and byte > pos:
                fields.append(f'        ("_pad{pad}", ctypes.c_uint8 * {byte - pos}),')
                pad += 1
            fname = _ident(m.name) if m.name else f"anon{i}"
            if not m.name:
                anon.append(fname)
            fields.append(f'        ("{fname}", {self.ref(m.type_id)}),')
            pos = max(pos, byte + self.types.size_of(m.type_id))
            i += 1
        if not union and t.size > pos:
            fields.append(f'        ("_pad{pad}", ctypes.c_uint8 * {t.size - pos}),')
        name = self.name_for(t)
        self.names[t.id] = name
        base = "ctypes.Union" if union else "ctypes.Structure"
        lines = [f"class {name}({base}):", f'    """``{self.types.c_name(t.id)}``, {t.size} bytes."""', "",
                 "    _pack_ = 1"]
        if anon:
            lines.append(f"    _anonymous_ = {tuple(anon)!r}")
        lines.append("    _fields_ = [")
        lines += fields
        lines.append("    ]")
        if props:
            lines.append("")
            lines += [p.rstrip("\n") + "\n" for p in props]
        self.blocks.append("\n".join(lines).rstrip("\n") + "\n")
        self.blocks.append(f"assert ctypes.sizeof({name}) == {t.size}\n")


def generate_module(types: BtfTypes, maps: MapTypes, *, source: str = "", named: bool = True,
                    type_ids: Sequence[int] = ()) -> str:
    """A Python module with a ctypes definition of each map's key and value type (and, with ``named``,
    of every named struct, union, enum and typedef of the BTF), plus ``MAPS``: name -> (key, value)."""
    g = _Gen(types)
    for k, v in maps.values():
        for tid in (k, v):
            if tid:
                g.ref(tid)
    for tid in type_ids:
        g.ref(tid)
    if named:
        for t in types:
            if t.name and t.kind in (Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.TYPEDEF):
                g.ref(t.id)
    head = [f'"""Types generated by ebpfmaps gen-types{" from " + source if source else ""}; do not edit."""', "",
            "from __future__ import annotations", "", "import ctypes", "import enum", "from typing import Any", ""]
    if g.needs_bits:
        head.append(_HELPERS)
    body = "\n\n".join(g.blocks)
    entries = []
    for name, (k, v) in sorted(maps.items()):
        kt = g.ref(k) if k else "None"
        vt = g.ref(v) if v else "None"
        entries.append(f"    {name!r}: ({kt}, {vt}),")
    tail = ["", "", "#: Each map's (key type, value type); None where its BTF does not say.",
            "MAPS: dict[str, tuple[Any, Any]] = {", *entries, "}", ""]
    text = "\n".join(head) + "\n\n" + body + "\n".join(tail)
    return re.sub(r"\n{4,}", "\n\n\n", text)
