"""The embedded profile's static memory pool: a bump allocator charged with real kernel memory.

The pool is 64 KiB by default, a bump allocator: fast, no fragmentation, no
freeing of single allocations, and a reset clears the whole pool. Here the bytes are not Python buffers: each map created under the embedded
profile is charged with the kernel memory it really holds, which the kernel
reports as ``memlock`` in ``/proc/self/fdinfo/<fd>`` (the map type's
``map_mem_usage``). Closing a map does not give its bytes back; only
:meth:`StaticPool.reset` does.

The pool is per process (class-level state, guarded by a lock so that threads
creating maps at once are charged one after the other).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import ClassVar

from ebpfmaps.errors import InvalidArgument, OutOfMemory

#: The default pool size: 64 KiB.
DEFAULT_POOL_SIZE = 64 * 1024
POOL_SIZE_ENV = "EBPFMAPS_POOL_SIZE"

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}


def parse_size(text: str) -> int:
    """``"65536"``, ``"64K"``, ``"64KiB"``, ``"1M"`` as bytes (units are powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise InvalidArgument(f"{POOL_SIZE_ENV}: cannot read {text!r} as a size (e.g. 65536, 64K, 1MiB)", op="pool")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


@dataclass(frozen=True)
class Allocation:
    """One bump of the pool: where it starts, how many bytes, and what it was for."""

    offset: int
    size: int
    label: str
    map_id: int | None = None


class StaticPool:
    """The process-wide pool of the embedded profile. All methods are class methods (``StaticPool.remaining()``)."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _total: ClassVar[int | None] = None  # None: read EBPFMAPS_POOL_SIZE on first use
    _used: ClassVar[int] = 0
    _allocations: ClassVar[list[Allocation]] = []

    @classmethod
    def _total_locked(cls) -> int:
        if cls._total is None:
            env = os.environ.get(POOL_SIZE_ENV, "").strip()
            size = parse_size(env) if env else DEFAULT_POOL_SIZE
            if size <= 0:
                raise InvalidArgument(f"{POOL_SIZE_ENV} must be a positive size, not {env!r}", op="pool")
            cls._total = size
        return cls._total

    @classmethod
    def total_size(cls) -> int:
        """The pool's size in bytes (64 KiB unless ``EBPFMAPS_POOL_SIZE`` or :meth:`configure` says otherwise)."""
        with cls._lock:
            return cls._total_locked()

    @classmethod
    def used(cls) -> int:
        """Bytes handed out since the last :meth:`reset` (closing maps does not lower this)."""
        with cls._lock:
            return cls._used

    @classmethod
    def remaining(cls) -> int:
        """Bytes still available."""
        with cls._lock:
            return cls._total_locked() - cls._used

    @classmethod
    def allocations(cls) -> list[Allocation]:
        """Every allocation since the last :meth:`reset`, oldest first."""
        with cls._lock:
            return list(cls._allocations)

    @classmethod
    def configure(cls, total_size: int) -> None:
        """Set the pool's size. It may not drop below what is already used."""
        if isinstance(total_size, bool) or not isinstance(total_size, int) or total_size <= 0:
            raise InvalidArgument(f"the pool size must be a positive int, not {total_size!r}", op="pool")
        with cls._lock:
            if total_size < cls._used:
                raise InvalidArgument(
                    f"cannot shrink the pool to {total_size} bytes: {cls._used} are in use (reset() first)", op="pool"
                )
            cls._total = total_size

    @classmethod
    def allocate(cls, size: int, label: str = "") -> int | None:
        """Take ``size`` bytes; their offset in the pool, or ``None`` when they do not fit (a bump allocator's API)."""
        try:
            return cls.charge(size, label or f"{size} bytes").offset
        except OutOfMemory:
            return None

    @classmethod
    def charge(cls, size: int, label: str, map_id: int | None = None) -> Allocation:
        """Take ``size`` bytes for ``label`` or raise :class:`OutOfMemory` saying how short the pool is."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidArgument(f"an allocation size must be an int >= 0, not {size!r}", op="pool")
        with cls._lock:
            total = cls._total_locked()
            free = total - cls._used
            if size > free:
                raise OutOfMemory(
                    f"static pool exhausted: {label} needs {size} bytes, {free} of {total} remain "
                    f"(embedded profile; closing maps does not return bytes, StaticPool.reset() does)",
                    op="pool",
                )
            alloc = Allocation(cls._used, size, label, map_id)
            cls._used += size
            cls._allocations.append(alloc)
            return alloc

    @classmethod
    def reset(cls) -> None:
        """Give every byte back (meant for tests). Live maps are not touched."""
        with cls._lock:
            cls._used = 0
            cls._allocations = []
