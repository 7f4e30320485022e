"""BLOOM_FILTER maps: set membership with false positives and no false negatives (Linux 5.16+).

There are no keys (key_size 0); the value is the element. ``add(v)`` is an update
with a NULL key, ``v in m`` a lookup with a NULL key and ``v`` in the value
buffer (0: maybe present, ENOENT: certainly absent). Elements cannot be removed
or listed. ``map_extra`` holds the number of hash functions (1..15; 0 means the
kernel's default of 5), exposed here as ``nr_hashes``.
"""

from __future__ import annotations

import errno as E
import math
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from ebpfmaps._libbpf import maps as _maps
from ebpfmaps.errors import InvalidArgument
from ebpfmaps.map import map_class
from ebpfmaps.maps.queue import BPF_F_ACCESS_MASK, KeylessMap
from ebpfmaps.maptypes import BPF_ANY, BPF_F_NUMA_NODE, BPF_F_ZERO_SEED, MapType
from ebpfmaps.spec import MapInfo, MapSpec

# kernel/bpf/bloom_filter.c, BLOOM_CREATE_FLAG_MASK.
BLOOM_FLAGS = BPF_F_NUMA_NODE | BPF_F_ZERO_SEED | BPF_F_ACCESS_MASK
# The low 4 bits of map_extra are the hash count; other bits are refused (EINVAL, measured on 6.18).
MAX_HASHES = 15
DEFAULT_HASHES = 5


def bitset_bits(max_entries: int, nr_hashes: int) -> int:
    """The size in bits of the kernel's bit array for these parameters.

    As bloom_map_alloc in kernel/bpf/bloom_filter.c computes it: n·k/ln 2 bits,
    with 7/5 standing in for 1/ln 2 (integer arithmetic, ``(n*k)/5*7``), at least
    64 bits, rounded up to a power of two; 2^32 bits when that would exceed 2^31.
    """
    k = nr_hashes or DEFAULT_HASHES
    nr_bits = max_entries * k
    if nr_bits >= 1 << 32:  # the u32 multiplication overflows
        return 1 << 32
    nr_bits = (nr_bits // 5) * 7
    if nr_bits > 1 << 31:
        return 1 << 32
    if nr_bits <= 64:
        return 64
    return 1 << (nr_bits - 1).bit_length()


def predicted_false_positive_rate(max_entries: int, nr_hashes: int, inserted: int) -> float:
    """The textbook rate (1 - e^(-k·n/m))^k for the kernel's bit array size m after ``inserted`` adds."""
    k = nr_hashes or DEFAULT_HASHES
    m = bitset_bits(max_entries, k)
    return float((1.0 - math.exp(-k * inserted / m)) ** k)


@map_class
class BloomFilterMap(KeylessMap):
    """BPF_MAP_TYPE_BLOOM_FILTER: ``add(v)`` and ``v in m``; ``nr_hashes`` hash functions (map_extra).

    ``max_entries`` is the expected number of elements: it sizes the bit array
    (see :func:`bitset_bits`) and is not a hard limit.
    """

    map_type = MapType.BLOOM_FILTER
    allowed_flags: ClassVar[int] = BLOOM_FLAGS

    def __init__(self, value_size: int | None = None, max_entries: int | None = None, *,
                 nr_hashes: int | None = None, map_extra: int | None = None, **kwargs: Any) -> None:
        if nr_hashes is not None:
            if isinstance(nr_hashes, bool) or not isinstance(nr_hashes, int) or not 1 <= nr_hashes <= MAX_HASHES:
                raise InvalidArgument(f"nr_hashes must be an int from 1 to {MAX_HASHES}, not {nr_hashes!r}",
                                      op="create")
            if map_extra not in (None, 0, nr_hashes):
                raise InvalidArgument(f"nr_hashes={nr_hashes} and map_extra={map_extra} disagree "
                                      "(a bloom filter's map_extra is its hash count)", op="create")
            map_extra = nr_hashes
        super().__init__(value_size, max_entries, map_extra=map_extra or 0, **kwargs)

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        if spec.map_extra & ~MAX_HASHES:
            raise InvalidArgument(f"a bloom filter's map_extra is its hash count (0..{MAX_HASHES}), "
                                  f"not {spec.map_extra}", op="create")
        return super().prepare_spec(spec)

    def _after_adopt(self, info: MapInfo) -> None:
        self._spec = self._spec.replace(map_extra=info.map_extra)

    def _keyless_ops(self) -> str:
        return "add(value) and `value in m`"

    @property
    def nr_hashes(self) -> int:
        """Hash functions per element (the kernel uses 5 when map_extra is 0)."""
        return (self._spec.map_extra & MAX_HASHES) or DEFAULT_HASHES

    @property
    def bitset_bits(self) -> int:
        """Bits in the kernel's bit array (computed as the kernel does)."""
        return bitset_bits(self._spec.max_entries, self.nr_hashes)

    def false_positive_rate(self, inserted: int | None = None) -> float:
        """The predicted false-positive rate after ``inserted`` distinct adds (default: max_entries)."""
        n = self._spec.max_entries if inserted is None else inserted
        return predicted_false_positive_rate(self._spec.max_entries, self.nr_hashes, n)

    def add(self, value: Any) -> None:
        """Add ``value`` to the set (value size checked before the syscall)."""
        buf = self._value_buffer(value)
        ret = _maps.map_update_elem(self._h, None, buf, BPF_ANY, "add")
        if ret:
            self._check_writable("add")
            raise self._fail(ret, "update")

    def add_many(self, values: Iterable[Any]) -> int:
        """Add each value; returns how many were added."""
        n = 0
        for v in values:
            self.add(v)
            n += 1
        return n

    def __contains__(self, value: Any) -> bool:
        """False: certainly never added. True: probably added (see :meth:`false_positive_rate`)."""
        # The kernel reads the value from this buffer and copies it back, so it must be ours and writable.
        buf = self._value_buffer(value)
        ret = _maps.map_lookup_elem(self._h, None, buf, "lookup")
        if ret == 0:
            return True
        if ret == -E.ENOENT:
            return False
        raise self._fail(ret, "lookup")

    def might_contain(self, value: Any) -> bool:
        """The same as ``value in m``, spelled for readers who forget what a bloom filter promises."""
        return value in self

    def __iter__(self) -> Iterator[Any]:
        self._no_keys("iteration")
