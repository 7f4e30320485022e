"""User-space symbols: ELF symbol tables (pyelftools) and process mappings (/proc/PID/maps).

- :func:`symbol_file_offset`: where a function lives in its file, the offset a uprobe takes.
- :func:`resolve_user`: a user address of a process as ``symbol+0xoff [binary]``, like bcc's ``BPF.sym``.

A binary's table is read once per build id (``.note.gnu.build-id``), so the same library mapped by
many processes, or a binary replaced by an identical copy, is parsed once; files without a build id
are cached by (device, inode, size, mtime). pyelftools is an optional dependency (the ``[elf]`` extra).
"""

from __future__ import annotations

import bisect
import importlib
import os
import threading
from dataclasses import dataclass
from typing import Any

from ebpfmaps.errors import InvalidArgument, KeyNotFound, NotSupported

# pyelftools, imported on first use: ``import ebpfmaps`` (which defines the stack trace map) stays light.
_elftools: tuple[Any, tuple[type[BaseException], ...]] | None = None
_elftools_lock = threading.Lock()


def _pyelftools() -> tuple[Any, tuple[type[BaseException], ...]]:
    """(``ELFFile``, the exceptions it raises on a bad file), or (None, ()) without pyelftools."""
    global _elftools
    with _elftools_lock:
        if _elftools is None:
            try:
                elffile = importlib.import_module("elftools.elf.elffile")
                exceptions = importlib.import_module("elftools.common.exceptions")
                _elftools = (elffile.ELFFile, (exceptions.ELFError,))
            except ImportError:  # the [elf] extra is not installed: require_pyelftools says so
                _elftools = (None, ())
        return _elftools


def elf_errors() -> tuple[type[BaseException], ...]:
    """What pyelftools raises on a file it cannot parse (empty without pyelftools)."""
    return _pyelftools()[1]


__all__ = [
    "ElfSymbols", "Mapping", "UserSymbol", "by_build_id", "cached_build_ids", "clear_cache", "elf_errors", "elf_symbols",
    "load_process_binaries", "process_maps", "require_pyelftools", "resolve_user", "symbol_file_offset",
]

_FUNC_TYPES = frozenset({"STT_FUNC", "STT_GNU_IFUNC"})
# A symbol without a size (``_init``, ``_fini``, assembly labels) covers at most this much after it: a
# stripped library's far-away code is then "address [library]" rather than a wrong ``_fini+0x20f99c``.
UNSIZED_SYMBOL_SPAN = 0x1000


def require_pyelftools(op: str, what: str = "reading ELF symbol tables") -> Any:
    """pyelftools' ``ELFFile`` class, or NotSupported saying ``what`` needs it."""
    elf_file = _pyelftools()[0]
    if elf_file is None:
        raise NotSupported(f"{what} needs pyelftools (pip install 'ebpfmaps[elf]')", op=op)
    return elf_file


@dataclass(frozen=True)
class UserSymbol:
    """A resolved user address: ``name+offset [binary]`` (``name`` is None when no symbol covers it)."""

    address: int
    name: str | None
    offset: int
    binary: str

    def __str__(self) -> str:
        base = os.path.basename(self.binary)
        if self.name is None:
            return f"{self.address:#x} [{base}]"
        return f"{self.name}+{self.offset:#x} [{base}]"


class ElfSymbols:
    """One ELF file's function symbols (sorted by address) and its loadable segments."""

    def __init__(self, path: str) -> None:
        elf_file = require_pyelftools("elf_symbols")
        self.path = path
        self.build_id: bytes | None = None
        self.segments: list[tuple[int, int, int]] = []  # (p_vaddr, p_offset, p_filesz) of each PT_LOAD
        self.is_shared = False
        funcs: dict[int, tuple[int, str]] = {}
        self._by_name: dict[str, int] = {}
        try:
            with open(path, "rb") as f:
                elf = elf_file(f)
                self.is_shared = elf.header["e_type"] == "ET_DYN"
                for seg in elf.iter_segments():
                    if seg["p_type"] == "PT_LOAD":
                        self.segments.append((seg["p_vaddr"], seg["p_offset"], seg["p_filesz"]))
                for sec in elf.iter_sections():
                    if sec["sh_type"] == "SHT_NOTE":
                        for note in sec.iter_notes():
                            if note["n_type"] == "NT_GNU_BUILD_ID":
                                # pyelftools gives a hex string, or raw bytes for a descriptor it cannot parse.
                                desc = note["n_desc"]
                                self.build_id = bytes.fromhex(desc) if isinstance(desc, str) else bytes(desc)
                for name in (".symtab", ".dynsym"):
                    table = elf.get_section_by_name(name)
                    if table is None or not hasattr(table, "iter_symbols"):
                        continue
                    for sym in table.iter_symbols():
                        if (sym["st_info"]["type"] not in _FUNC_TYPES or not sym["st_value"]
                                or sym["st_shndx"] == "SHN_UNDEF" or not sym.name):
                            continue
                        addr = sym["st_value"]
                        self._by_name.setdefault(sym.name, addr)
                        if addr not in funcs or (sym["st_info"]["bind"] == "STB_GLOBAL"):
                            funcs[addr] = (sym["st_size"], sym.name)
        except (OSError, *elf_errors()) as exc:  # type: ignore[misc]  # a tuple built at import
            raise InvalidArgument(f"cannot read ELF symbols of {path}: {exc}", op="elf_symbols") from None
        order = sorted(funcs)
        self.addresses = order
        self.entries = [funcs[a] for a in order]

    def address_of(self, name: str) -> int:
        """The virtual address (st_value) of function ``name``; KeyNotFound when the file has none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyNotFound(f"no function {name!r} in the symbol tables of {self.path}", op="elf_symbols") from None

    def vaddr_to_offset(self, vaddr: int) -> int:
        """The file offset of virtual address ``vaddr`` (through the PT_LOAD segment holding it)."""
        for p_vaddr, p_offset, p_filesz in self.segments:
            if p_vaddr <= vaddr < p_vaddr + p_filesz:
                return vaddr - p_vaddr + p_offset
        return vaddr  # objects without program headers (relocatable files): addresses are offsets

    def offset_to_vaddr(self, offset: int) -> int:
        for p_vaddr, p_offset, p_filesz in self.segments:
            if p_offset <= offset < p_offset + p_filesz:
                return offset - p_offset + p_vaddr
        return offset

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        """(function, offset into it) for the virtual address ``vaddr``, or None outside every function."""
        i = bisect.bisect_right(self.addresses, vaddr) - 1
        if i < 0:
            return None
        start = self.addresses[i]
        size, name = self.entries[i]
        off = vaddr - start
        if (size and off >= size) or (not size and off >= UNSIZED_SYMBOL_SPAN):
            return None
        return name, off


_cache_lock = threading.Lock()
_by_build_id: dict[bytes, ElfSymbols] = {}
_by_file: dict[tuple[int, int, int, int], ElfSymbols] = {}


# The kernel reports build ids in 20-byte fields (BPF_BUILD_ID_SIZE), zero-padded when shorter.
BUILD_ID_SIZE = 20


def _build_id_key(build_id: bytes) -> bytes:
    return build_id[:BUILD_ID_SIZE].ljust(BUILD_ID_SIZE, b"\0")


def elf_symbols(path: str) -> ElfSymbols:
    """The symbols of ``path``, cached by build id (or, without one, by the file's identity)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}", errno=exc.errno, op="elf_symbols") from None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _cache_lock:
        found = _by_file.get(key)
    if found is not None:
        return found
    table = ElfSymbols(path)
    with _cache_lock:
        if table.build_id is not None:
            table = _by_build_id.setdefault(_build_id_key(table.build_id), table)
        _by_file[key] = table
    return table


def by_build_id(build_id: bytes) -> ElfSymbols | None:
    """The cached symbols of the binary with ``build_id`` (None when no file read so far has it)."""
    with _cache_lock:
        return _by_build_id.get(_build_id_key(bytes(build_id)))


def load_process_binaries(pid: int) -> None:
    """Read (into the cache) the symbols of every file process ``pid`` maps, so build-id frames resolve."""
    require_pyelftools("elf_symbols")
    seen: set[str] = set()
    for m in process_maps(pid):
        if m.path in seen:
            continue
        seen.add(m.path)
        for candidate in (f"/proc/{pid}/map_files/{m.start:x}-{m.end:x}", m.path):
            try:
                elf_symbols(candidate)
                break
            except InvalidArgument:
                continue


def clear_cache() -> None:
    with _cache_lock:
        _by_build_id.clear()
        _by_file.clear()


def cached_build_ids() -> list[bytes]:
    """The build ids whose symbol tables are cached (for tools and tests)."""
    with _cache_lock:
        return list(_by_build_id)


def symbol_file_offset(path: str, name: str) -> int:
    """The file offset of function ``name`` in ``path`` (what a uprobe on it is given)."""
    table = elf_symbols(path)
    return table.vaddr_to_offset(table.address_of(name))


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    offset: int
    path: str


def process_maps(pid: int) -> list[Mapping]:
    """The file-backed mappings of process ``pid``."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise InvalidArgument(f"pid must be a positive int, not {pid!r}", op="process_maps")
    try:
        with open(f"/proc/{pid}/maps") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise KeyNotFound(f"no process {pid}", op="process_maps") from None
    out = []
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        lo, _, hi = parts[0].partition("-")
        out.append(Mapping(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), parts[5]))
    return out


def resolve_user(pid: int, address: int, maps: list[Mapping] | None = None) -> UserSymbol | None:
    """Address ``address`` of process ``pid`` as a symbol of the file mapped there (None if no file is)."""
    for m in maps if maps is not None else process_maps(pid):
        if m.start <= address < m.end:
            break
    else:
        return None
    path = m.path.removesuffix(" (deleted)")
    # The process's own view of the file (another mount namespace, or a binary since replaced).
    candidates = [f"/proc/{pid}/map_files/{m.start:x}-{m.end:x}", f"/proc/{pid}/root{path}", path]
    table = None
    for candidate in candidates:
        try:
            table = elf_symbols(candidate)
            break
        except InvalidArgument:
            continue
    if table is None:
        return UserSymbol(address, None, 0, path)
    vaddr = table.offset_to_vaddr(address - m.start + m.offset)
    found = table.lookup(vaddr)
    if found is None:
        return UserSymbol(address, None, 0, path)
    return UserSymbol(address, found[0], found[1], path)
