"""Kernel addresses to symbols through /proc/kallsyms.

The table is read once (cached; :func:`refresh` re-reads it after modules or BPF
programs come and go), sorted by address, and searched with :mod:`bisect`: an
address resolves to the nearest symbol at or below it, plus an offset. BPF
programs appear there too (``bpf_prog_<tag>_<name> [bpf]``), so stacks through a
program resolve to it.

Without CAP_SYSLOG (and with kernel.kptr_restrict set) the kernel shows every
address as 0; reading the table then raises :class:`PermissionDenied`.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

from ebpfmaps.errors import PermissionDenied

KALLSYMS = "/proc/kallsyms"
# Symbol types that are code: text (t/T) and weak (w/W) symbols.
TEXT_TYPES = frozenset("tTwW")
# kallsyms has no symbol sizes; beyond the last symbol an address is only credited to it this far.
LAST_SYMBOL_SPAN = 1 << 20


@dataclass(frozen=True)
class KernelSymbol:
    """One line of /proc/kallsyms."""

    address: int
    name: str
    kind: str
    module: str | None = None

    def __str__(self) -> str:
        return f"{self.name} [{self.module}]" if self.module else self.name


@dataclass(frozen=True)
class ResolvedAddress:
    """An address as ``symbol+offset``."""

    address: int
    symbol: KernelSymbol
    offset: int

    @property
    def name(self) -> str:
        return self.symbol.name

    @property
    def module(self) -> str | None:
        return self.symbol.module

    def __str__(self) -> str:
        where = f"{self.symbol.name}+{self.offset:#x}"
        return f"{where} [{self.symbol.module}]" if self.symbol.module else where


class Kallsyms:
    """A sorted table of kernel symbols with address → symbol lookups."""

    def __init__(self, path: str = KALLSYMS, *, text_only: bool = True) -> None:
        symbols: list[KernelSymbol] = []
        nonzero = False
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                kind = parts[1]
                if text_only and kind not in TEXT_TYPES:
                    continue
                addr = int(parts[0], 16)
                if addr:
                    nonzero = True
                module = parts[3].strip("[]") if len(parts) > 3 else None
                symbols.append(KernelSymbol(addr, parts[2], kind, module))
        if symbols and not nonzero:
            raise PermissionDenied(
                f"{path} shows every address as 0: reading kernel addresses needs CAP_SYSLOG "
                "(or kernel.kptr_restrict=0)", op="kallsyms")
        # Aliases share an address: keep one per address, preferring a global (upper-case) symbol.
        symbols.sort(key=lambda s: (s.address, s.kind.islower()))
        table: list[KernelSymbol] = []
        for s in symbols:
            if table and table[-1].address == s.address:
                continue
            table.append(s)
        self.symbols = table
        self.addresses = [s.address for s in table]
        self._by_name: dict[str, KernelSymbol] | None = None

    def __len__(self) -> int:
        return len(self.symbols)

    def resolve(self, address: int) -> ResolvedAddress | None:
        """The symbol containing ``address`` (the nearest at or below it), or ``None`` below the first symbol."""
        i = bisect.bisect_right(self.addresses, address) - 1
        if i < 0:
            return None
        sym = self.symbols[i]
        offset = address - sym.address
        if i == len(self.symbols) - 1 and offset > LAST_SYMBOL_SPAN:
            return None  # past the end of the last symbol we know (kallsyms gives no sizes)
        return ResolvedAddress(address, sym, offset)

    def format(self, address: int) -> str:
        """``name+0xoff [module]``, or the hex address when nothing resolves."""
        r = self.resolve(address)
        return str(r) if r is not None else f"{address:#x}"

    def address_of(self, name: str) -> int | None:
        """The address of the text symbol ``name`` (``None`` when absent)."""
        if self._by_name is None:
            self._by_name = {}
            for s in self.symbols:
                self._by_name.setdefault(s.name, s)
        found = self._by_name.get(name)
        return None if found is None else found.address


_cache: Kallsyms | None = None
_cache_lock = threading.Lock()


def kallsyms() -> Kallsyms:
    """The process-wide table (read on first use)."""
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = Kallsyms()
        return _cache


def refresh() -> Kallsyms:
    """Re-read /proc/kallsyms (after modules or BPF programs were loaded)."""
    global _cache
    with _cache_lock:
        _cache = Kallsyms()
        return _cache


def resolve(address: int) -> ResolvedAddress | None:
    """Resolve with the process-wide table."""
    return kallsyms().resolve(address)


def format_address(address: int) -> str:
    return kallsyms().format(address)


__all__ = ["Kallsyms", "KernelSymbol", "ResolvedAddress", "format_address", "kallsyms", "refresh", "resolve"]
