"""Legacy BPF objects: maps declared as ``struct bpf_map_def`` in a ``SEC("maps")`` section.

bcc- and iproute2-era objects declare their maps that way; libbpf 1.x refuses them ("legacy map
definitions in 'maps' section are not supported"). :class:`LegacyObject` loads them itself: it reads
the ELF (pyelftools), creates each map from its definition as an ebpfmaps :class:`~ebpfmaps.Map`,
patches every ``ld_imm64`` the relocations point at a map into a map-fd load (``BPF_PSEUDO_MAP_FD``),
and loads each program with the type its section names. The objects then behave as a
:class:`~ebpfmaps.programs.BpfObject`'s: ``maps``, ``programs``, ``attach``, ``attach_all``.

A definition is ``struct bpf_map_def`` (type, key_size, value_size, max_entries, map_flags; 20 bytes)
or iproute2's longer ``struct bpf_elf_map``, whose first five fields are the same; the definition's
size is the section's size divided by its map symbols. Objects whose programs call functions in
``.text`` or read global data are refused with :class:`~ebpfmaps.errors.NotSupported`: legacy
objects inline everything.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ebpfmaps.elfsyms import elf_errors, require_pyelftools
from ebpfmaps.errors import IncompatibleMap, InvalidArgument, MapClosed, NotSupported, ProgramLoadError
from ebpfmaps.factory import create
from ebpfmaps.map import Map
from ebpfmaps.maptypes import type_name
from ebpfmaps.programs.autoattach import attach_programs
from ebpfmaps.programs.objects import BpfObject
from ebpfmaps.programs.program import Program
from ebpfmaps.programs.tracing import Link
from ebpfmaps.programs.types import AttachType, ProgramType

__all__ = ["LegacyMapDef", "LegacyObject", "has_legacy_maps", "open_object", "section_program_type"]

_MAP_DEF = struct.Struct("<5I")
_BPF_LD_IMM64 = 0x18
_BPF_PSEUDO_MAP_FD = 1
_R_BPF_64_64 = 1
_SHF_EXECINSTR = 0x4

# Section prefixes as libbpf reads them: (program type, expected attach type).
_SECTION_TYPES: list[tuple[str, ProgramType, AttachType | None]] = [
    ("socket", ProgramType.SOCKET_FILTER, None),
    ("kprobe/", ProgramType.KPROBE, None), ("kretprobe/", ProgramType.KPROBE, None),
    ("uprobe", ProgramType.KPROBE, None), ("uretprobe", ProgramType.KPROBE, None),
    ("tracepoint/", ProgramType.TRACEPOINT, None), ("tp/", ProgramType.TRACEPOINT, None),
    ("raw_tracepoint/", ProgramType.RAW_TRACEPOINT, None), ("raw_tp/", ProgramType.RAW_TRACEPOINT, None),
    ("xdp", ProgramType.XDP, None), ("perf_event", ProgramType.PERF_EVENT, None),
    ("classifier", ProgramType.SCHED_CLS, None), ("tc", ProgramType.SCHED_CLS, None),
    ("action", ProgramType.SCHED_ACT, None),
    ("cgroup/skb", ProgramType.CGROUP_SKB, None),
    ("cgroup_skb/ingress", ProgramType.CGROUP_SKB, AttachType.CGROUP_INET_INGRESS),
    ("cgroup_skb/egress", ProgramType.CGROUP_SKB, AttachType.CGROUP_INET_EGRESS),
    ("cgroup/sock_create", ProgramType.CGROUP_SOCK, AttachType.CGROUP_INET_SOCK_CREATE),
    ("cgroup/sock", ProgramType.CGROUP_SOCK, AttachType.CGROUP_INET_SOCK_CREATE),
    ("cgroup/bind4", ProgramType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_BIND),
    ("cgroup/bind6", ProgramType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET6_BIND),
    ("cgroup/connect4", ProgramType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET4_CONNECT),
    ("cgroup/connect6", ProgramType.CGROUP_SOCK_ADDR, AttachType.CGROUP_INET6_CONNECT),
    ("cgroup/sysctl", ProgramType.CGROUP_SYSCTL, AttachType.CGROUP_SYSCTL),
    ("cgroup/dev", ProgramType.CGROUP_DEVICE, AttachType.CGROUP_DEVICE),
    ("sockops", ProgramType.SOCK_OPS, AttachType.CGROUP_SOCK_OPS),
    ("sk_skb/stream_parser", ProgramType.SK_SKB, AttachType.SK_SKB_STREAM_PARSER),
    ("sk_skb/stream_verdict", ProgramType.SK_SKB, AttachType.SK_SKB_STREAM_VERDICT),
    ("sk_skb", ProgramType.SK_SKB, None), ("sk_msg", ProgramType.SK_MSG, AttachType.SK_MSG_VERDICT),
    ("lwt_in", ProgramType.LWT_IN, None), ("lwt_out", ProgramType.LWT_OUT, None),
    ("lwt_xmit", ProgramType.LWT_XMIT, None), ("flow_dissector", ProgramType.FLOW_DISSECTOR, None),
]


def section_program_type(section: str) -> tuple[ProgramType, AttachType | None] | None:
    """The program type (and expected attach type) a legacy object's section name stands for."""
    for prefix, ptype, eat in _SECTION_TYPES:
        base = prefix.rstrip("/")
        if section == base or section.startswith(base + "/"):
            return ptype, eat
    return None


@dataclass(frozen=True)
class LegacyMapDef:
    """One ``struct bpf_map_def`` as the object declares it."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int


def has_legacy_maps(path: str | os.PathLike[str]) -> bool:
    """Whether the ELF object at ``path`` declares maps in a ``maps`` section (False without pyelftools)."""
    try:
        elf_file = require_pyelftools("object_open")
    except NotSupported:
        return False
    try:
        with open(path, "rb") as f:
            return elf_file(f).get_section_by_name("maps") is not None
    except (OSError, *elf_errors()):  # type: ignore[misc]  # a tuple built at import
        return False


class _Names(Mapping[str, Any]):
    def __init__(self, kind: str, items: dict[str, Any]) -> None:
        self._kind = kind
        self._items = items

    def __getitem__(self, name: str) -> Any:
        if name not in self._items:
            raise KeyError(f"no {self._kind} named {name!r}; the object has: {', '.join(self._items) or 'none'}")
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class _ProgramCode:
    name: str
    section: str
    code: bytearray
    map_slots: list[tuple[int, str]]  # (instruction index, map name)


class LegacyObject:
    """A legacy ``SEC("maps")`` object: read with :meth:`open`, created and loaded with :meth:`load`."""

    def __init__(self, path: str, map_defs: dict[str, LegacyMapDef], programs: list[_ProgramCode], license: str,
                 kern_version: int, reuse: Mapping[str, Map]) -> None:
        self.path = path
        self.map_defs = map_defs
        self._code = programs
        self.license = license
        self.kern_version = kern_version
        self._reuse = dict(reuse)
        self._maps: dict[str, Map] = {}
        self._programs: dict[str, Program] = {}
        self.loaded = False
        self._closed = False

    # ------------------------------------------------------------------ reading the ELF
    @classmethod
    def open(cls, path: str | os.PathLike[str], *, reuse: Mapping[str, Map] | None = None) -> LegacyObject:
        """Read ``path``'s map definitions, programs and relocations (nothing reaches the kernel yet).

        ``reuse={"name": map}`` uses a live Map instead of creating that map (its type and sizes must match).
        """
        elf_file = require_pyelftools("object_open", "reading legacy SEC(\"maps\") objects")
        fspath = os.fspath(path)
        if not os.path.isfile(fspath):
            raise InvalidArgument(f"no BPF object file at {fspath!r}", op="object_open")
        try:
            with open(fspath, "rb") as f:
                elf = elf_file(f)
                if elf["e_machine"] != "EM_BPF":
                    raise InvalidArgument(f"{fspath} is not a BPF object (machine {elf['e_machine']})",
                                          op="object_open")
                obj = cls._read(elf, fspath, reuse or {})
        except elf_errors() as exc:
            raise InvalidArgument(f"{fspath} is not a readable ELF object: {exc}", op="object_open") from None
        for name, m in obj._reuse.items():
            obj._check_reuse(name, m)
        return obj

    @classmethod
    def _read(cls, elf: Any, path: str, reuse: Mapping[str, Map]) -> LegacyObject:
        maps_sec = elf.get_section_by_name("maps")
        if maps_sec is None:
            raise InvalidArgument(f"{path} has no SEC(\"maps\") section: open it with BpfObject.open",
                                  op="object_open")
        maps_index = elf.get_section_index("maps")
        symtab = elf.get_section_by_name(".symtab")
        if symtab is None:
            raise InvalidArgument(f"{path} has no symbol table", op="object_open")
        symbols = list(symtab.iter_symbols())
        map_syms = sorted((s["st_value"], s.name) for s in symbols if s["st_shndx"] == maps_index and s.name)
        if not map_syms:
            raise InvalidArgument(f"{path}: the maps section names no maps", op="object_open")
        data = maps_sec.data()
        def_size = len(data) // len(map_syms)
        if def_size < _MAP_DEF.size or len(data) % len(map_syms):
            raise InvalidArgument(f"{path}: {len(data)} bytes of map definitions do not divide into "
                                  f"{len(map_syms)} maps of at least {_MAP_DEF.size} bytes", op="object_open")
        map_defs: dict[str, LegacyMapDef] = {}
        by_offset: dict[int, str] = {}
        for offset, name in map_syms:
            mtype, key_size, value_size, max_entries, flags = _MAP_DEF.unpack_from(data, offset)
            map_defs[name] = LegacyMapDef(name, mtype, key_size, value_size, max_entries, flags)
            by_offset[offset] = name
        unknown = set(reuse) - set(map_defs)
        if unknown:
            raise KeyError(f"{path} has no map named {', '.join(sorted(unknown))}")

        license = "GPL"
        lic = elf.get_section_by_name("license")
        if lic is not None:
            license = lic.data().split(b"\0", 1)[0].decode(errors="replace")
        kern_version = 0
        ver = elf.get_section_by_name("version")
        if ver is not None and ver.data_size >= 4:
            kern_version = struct.unpack_from("<I", ver.data())[0]

        programs: list[_ProgramCode] = []
        for index, sec in enumerate(elf.iter_sections()):
            if not sec["sh_flags"] & _SHF_EXECINSTR or not sec.data_size:
                continue
            if sec.name == ".text":
                raise NotSupported(f"{path}: code in .text (functions called from programs) is not supported in "
                                   "legacy objects; mark them __always_inline", op="object_open")
            if section_program_type(sec.name) is None:
                raise NotSupported(f"{path}: section {sec.name!r} names no program type ebpfmaps knows",
                                   op="object_open")
            code = bytearray(sec.data())
            slots = cls._relocations(elf, symbols, index, sec.name, by_offset, maps_index, path)
            funcs = sorted((s["st_value"], s["st_size"], s.name) for s in symbols
                           if s["st_shndx"] == index and s["st_info"]["type"] == "STT_FUNC" and s.name)
            if not funcs:
                funcs = [(0, len(code), sec.name.replace("/", "_"))]
            for start, size, name in funcs:
                end = start + (size or len(code) - start)
                own = [(off // 8 - start // 8, m) for off, m in slots if start <= off < end]
                programs.append(_ProgramCode(name, sec.name, code[start:end], own))
        return cls(path, map_defs, programs, license, kern_version, reuse)

    @staticmethod
    def _relocations(elf: Any, symbols: list[Any], sec_index: int, sec_name: str, by_offset: dict[int, str],
                     maps_index: int, path: str) -> list[tuple[int, str]]:
        """(byte offset of the ld_imm64, map name) for every map relocation of the program section."""
        out: list[tuple[int, str]] = []
        for rel in elf.iter_sections():
            if rel["sh_type"] not in ("SHT_REL", "SHT_RELA") or rel["sh_info"] != sec_index:
                continue
            for entry in rel.iter_relocations():
                sym = symbols[entry["r_info_sym"]]
                if sym["st_shndx"] != maps_index:
                    target = sym.name or f"section {sym['st_shndx']}"
                    raise NotSupported(f"{path}: {sec_name} refers to {target!r}, which is not a map of the maps "
                                       "section (global data and calls are not supported in legacy objects)",
                                       op="object_open")
                if entry["r_info_type"] != _R_BPF_64_64:
                    raise NotSupported(f"{path}: relocation type {entry['r_info_type']} in {sec_name}",
                                       op="object_open")
                name = by_offset.get(sym["st_value"])
                if name is None:
                    raise InvalidArgument(f"{path}: {sec_name} points into the maps section at {sym['st_value']}, "
                                          "where no map starts", op="object_open")
                out.append((entry["r_offset"], name))
        return out

    def _check_reuse(self, name: str, m: Map) -> None:
        if not isinstance(m, Map):
            raise InvalidArgument(f"reuse[{name!r}] must be an ebpfmaps Map, not {m!r}", op="object_open")
        d = self.map_defs[name]
        info = m.info()
        diffs = [f"{field}: map has {have}, the object declares {want}" for field, have, want in (
            ("type", type_name(info.type), type_name(d.type)), ("key_size", info.key_size, d.key_size),
            ("value_size", info.value_size, d.value_size)) if have != want]
        if diffs:
            raise IncompatibleMap(f"cannot reuse {m!r} as {name!r} in {self.path}: " + "; ".join(diffs), diffs,
                                  op="object_open")

    # ------------------------------------------------------------------ loading
    def load(self) -> LegacyObject:
        """Create the maps (or take the reused ones), patch the programs' map loads, load the programs."""
        self._check_open()
        if self.loaded:
            raise InvalidArgument("the object is already loaded", op="object_load")
        made: list[Map] = []
        loaded: list[Program] = []
        try:
            maps: dict[str, Map] = {}
            for name, d in self.map_defs.items():
                if name in self._reuse:
                    maps[name] = self._reuse[name]
                    continue
                m = create(d.type, key_size=d.key_size, value_size=d.value_size, max_entries=d.max_entries,
                           flags=d.flags, name=name[:15])
                made.append(m)
                maps[name] = m
            for prog in self._code:
                code = bytearray(prog.code)
                for insn, map_name in prog.map_slots:
                    off = insn * 8
                    if code[off] != _BPF_LD_IMM64:
                        raise ProgramLoadError(f"{self.path}: {prog.section} relocates instruction {insn} to map "
                                               f"{map_name!r}, but it is not a 64-bit immediate load",
                                               op="object_load")
                    code[off + 1] = (code[off + 1] & 0x0F) | (_BPF_PSEUDO_MAP_FD << 4)
                    struct.pack_into("<i", code, off + 4, maps[map_name].fd)
                kind = section_program_type(prog.section)
                assert kind is not None  # checked at open
                ptype, eat = kind
                loaded_prog = Program.load(ptype, bytes(code), license=self.license, name=_prog_name(prog.name),
                                           expected_attach_type=eat, kern_version=self.kern_version)
                loaded_prog.name = prog.name
                loaded_prog.section = prog.section
                loaded.append(loaded_prog)
                self._programs[prog.name] = loaded_prog
        except BaseException:
            for p in loaded:
                p.close()
            for m in made:
                m.close()
            self._programs.clear()
            raise
        self._maps = maps
        self.loaded = True
        return self

    # ------------------------------------------------------------------ maps, programs, attaching
    def _check_open(self) -> None:
        if self._closed:
            raise MapClosed("the legacy object is closed", op="object")

    def _require_loaded(self, what: str) -> None:
        self._check_open()
        if not self.loaded:
            raise InvalidArgument(f"{what} exist in the kernel only after load()", op="object")

    def map_names(self) -> list[str]:
        return list(self.map_defs)

    def program_names(self) -> list[str]:
        return [p.name for p in self._code]

    @property
    def maps(self) -> Mapping[str, Map]:
        """The object's maps by name (the handed-over Map itself for ``reuse``)."""
        self._require_loaded("maps")
        return _Names("map", self._maps)

    def map(self, name: str, *, key_type: Any = None, value_type: Any = None) -> Map:
        """A new Map object (its own fd) on the object's map ``name``, with optional codecs."""
        m = self.maps[name]
        with m.handle.pinned("object_map") as num:
            own = os.dup(num)
        # adopt_fd owns ``own`` from here on, closing it if it fails.
        return type(m).adopt_fd(own, key_type=key_type, value_type=value_type)

    @property
    def programs(self) -> Mapping[str, Program]:
        self._require_loaded("programs")
        return _Names("program", self._programs)

    def attach(self, name: str, target: Any = None) -> Link:
        """Attach program ``name`` by its section (see :meth:`BpfObject.attach`)."""
        return self.programs[name].attach(target)

    def attach_all(self, targets: Mapping[str, Any] | None = None) -> dict[str, Link]:
        """Attach every program whose section says where, and those ``targets`` names (see
        :meth:`BpfObject.attach_all`)."""
        self._require_loaded("programs")
        return attach_programs(self._programs, targets, self.path)

    # ------------------------------------------------------------------ lifecycle
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the object's own references (idempotent). Maps and Programs taken from it stay usable,
        and reused maps are the caller's."""
        if self._closed:
            return
        self._closed = True

    def __enter__(self) -> LegacyObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("loaded" if self.loaded else "opened")
        return f"<LegacyObject {self.path!r} {state}>"


def _prog_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "_." else "_" for c in name)
    return cleaned[:15]



def open_object(path: str | os.PathLike[str], **options: Any) -> BpfObject | LegacyObject:
    """Open a BPF object: a :class:`LegacyObject` when it declares its maps in ``SEC("maps")`` (only
    ``reuse`` applies there), a :class:`BpfObject` (libbpf) otherwise."""
    if has_legacy_maps(path):
        unsupported = set(options) - {"reuse"}
        if unsupported:
            raise InvalidArgument(f"a legacy SEC(\"maps\") object takes only reuse=, not {', '.join(sorted(unsupported))}",
                                  op="object_open")
        return LegacyObject.open(path, **options)
    return BpfObject.open(path, **options)
