"""Map type ids and flag constants of the kernel's uapi (``linux/bpf.h``)."""

from __future__ import annotations

import enum
import os
import struct

from ebpfmaps.errors import InvalidArgument

# Element operation flags (bpf_map_update_elem / lookup_elem_flags).
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# Map creation flags (map_flags).
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_CLONE = 1 << 9
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12
BPF_F_LINK = 1 << 13  # struct_ops maps usable as links (6.4)
BPF_F_PATH_FD = 1 << 14  # obj ops
# Arena maps (uapi bpf.h, 6.9): bits 17 and 18; the kernel accepts them with MMAPABLE (measured on 6.18).
BPF_F_SEGV_ON_FAULT = 1 << 17
BPF_F_NO_USER_CONV = 1 << 18
BPF_F_TOKEN_FD = 1 << 16

FLAG_NAMES: dict[int, str] = {
    BPF_F_NO_PREALLOC: "NO_PREALLOC",
    BPF_F_NO_COMMON_LRU: "NO_COMMON_LRU",
    BPF_F_NUMA_NODE: "NUMA_NODE",
    BPF_F_RDONLY: "RDONLY",
    BPF_F_WRONLY: "WRONLY",
    BPF_F_STACK_BUILD_ID: "STACK_BUILD_ID",
    BPF_F_ZERO_SEED: "ZERO_SEED",
    BPF_F_RDONLY_PROG: "RDONLY_PROG",
    BPF_F_WRONLY_PROG: "WRONLY_PROG",
    BPF_F_CLONE: "CLONE",
    BPF_F_MMAPABLE: "MMAPABLE",
    BPF_F_PRESERVE_ELEMS: "PRESERVE_ELEMS",
    BPF_F_INNER_MAP: "INNER_MAP",
    1 << 13: "LINK",
    1 << 14: "PATH_FD",
    BPF_F_SEGV_ON_FAULT: "SEGV_ON_FAULT",
    BPF_F_NO_USER_CONV: "NO_USER_CONV",
}


def flag_names(flags: int) -> list[str]:
    """Names of the bits set in ``flags`` (unknown bits as hex)."""
    out = []
    for bit in range(32):
        value = 1 << bit
        if flags & value:
            out.append(FLAG_NAMES.get(value, hex(value)))
    return out


class MapType(enum.IntEnum):
    """``enum bpf_map_type``. Ids 1..4095 are the kernel's; 4096 and up are extensible maps."""

    UNSPEC = 0
    HASH = 1
    ARRAY = 2
    PROG_ARRAY = 3
    PERF_EVENT_ARRAY = 4
    PERCPU_HASH = 5
    PERCPU_ARRAY = 6
    STACK_TRACE = 7
    CGROUP_ARRAY = 8
    LRU_HASH = 9
    LRU_PERCPU_HASH = 10
    LPM_TRIE = 11
    ARRAY_OF_MAPS = 12
    HASH_OF_MAPS = 13
    DEVMAP = 14
    SOCKMAP = 15
    CPUMAP = 16
    XSKMAP = 17
    SOCKHASH = 18
    CGROUP_STORAGE = 19
    REUSEPORT_SOCKARRAY = 20
    PERCPU_CGROUP_STORAGE = 21
    QUEUE = 22
    STACK = 23
    SK_STORAGE = 24
    DEVMAP_HASH = 25
    STRUCT_OPS = 26
    RINGBUF = 27
    INODE_STORAGE = 28
    TASK_STORAGE = 29
    BLOOM_FILTER = 30
    USER_RINGBUF = 31
    CGRP_STORAGE = 32
    ARENA = 33

    @property
    def keyword(self) -> str:
        """The keyword spelling: ``LRU_PERCPU_HASH`` -> ``"lru-percpu-hash"``."""
        return self.name.lower().replace("_", "-")

    # Facts about each type, recorded once here (as cilium/ebpf's types.go does) for every layer to ask.
    @property
    def is_lru(self) -> bool:
        """Evicts the least recently used element when full."""
        return self in _LRU

    @property
    def is_per_cpu(self) -> bool:
        """Holds one value per possible CPU for each key."""
        return self in _PER_CPU

    @property
    def is_hash_family(self) -> bool:
        return self in _HASH_FAMILY

    @property
    def is_array_family(self) -> bool:
        return self in _ARRAY_FAMILY

    @property
    def is_resizable(self) -> bool:
        """Can be resized by migration (new map, copy, re-pin): the hash and array families."""
        return self in _HASH_FAMILY or self in _ARRAY_FAMILY

    @property
    def is_index_keyed(self) -> bool:
        """Keys are u32 indices below ``max_entries``; an update past the end is E2BIG (not a full map)."""
        return self in _INDEX_KEYED

    @property
    def has_empty_slots(self) -> bool:
        """Index-keyed, but a slot may hold nothing (fd and socket arrays): ``get_next_key`` lists every
        index, so which ones are occupied takes a lookup of each."""
        return self in _INDEX_KEYED and self not in _ARRAY_FAMILY

    @property
    def allows_zero_entries(self) -> bool:
        """``max_entries`` may be 0: the kernel sizes the map itself (per CPU, per socket, per cgroup...)."""
        return self in _ZERO_ENTRIES

    def memlock_estimate(self, key_size: int, value_size: int, max_entries: int, flags: int, ncpus: int,
                         map_extra: int = 0) -> int:
        """A lower bound of the kernel memory a map of this type allocates at creation (0 when unknown).

        What the kernel allocates up front is counted as its ``map_mem_usage`` callbacks add it up
        (kernel/bpf/arraymap.c ``array_map_mem_usage``, hashtab.c ``htab_map_mem_usage``, stackmap.c,
        devmap.c, cpumap.c, xskmap.c, sock_map.c, reuseport_array.c, bloom_filter.c,
        queue_stack_maps.c, ringbuf.c): element storage, per-CPU copies (``ncpus`` is the number of
        *possible* CPUs), preallocated elements and bucket arrays. Struct headers, element headers
        and locks come on top, so the real ``memlock`` is never smaller. Types that allocate only
        when elements are added (LPM tries, local storages, arenas, hash maps with
        ``BPF_F_NO_PREALLOC`` beyond their buckets) count what they allocate at creation.
        """
        n = max_entries
        if n <= 0:
            return 0
        if self is MapType.ARRAY:
            data = n * _round8(value_size)
            return _page_align(data) if flags & BPF_F_MMAPABLE else data
        if self is MapType.PERCPU_ARRAY:
            return n * (8 + _round8(value_size) * ncpus)
        preallocated = not flags & BPF_F_NO_PREALLOC
        if self in _HASH_FAMILY or self is MapType.HASH_OF_MAPS:
            # struct bucket (a list head and a spinlock) per power-of-two bucket, allocated even without prealloc.
            buckets = _pow2(n) * _HTAB_BUCKET
            if not preallocated:
                return buckets
            if self in _PER_CPU:
                # The element holds a pointer to its per-CPU value copies.
                return buckets + n * (_HTAB_ELEM + _round8(key_size) + _PTR + _round8(value_size) * ncpus)
            return buckets + n * (_HTAB_ELEM + _round8(key_size) + _round8(value_size))
        if self in _POINTER_ARRAYS:
            # One pointer (or an 8-byte element: fd arrays round their 4-byte values up) per entry.
            return n * 8
        if self is MapType.DEVMAP_HASH:
            return _pow2(n) * 8  # hlist heads
        if self is MapType.SOCKHASH:
            return _pow2(n) * _HTAB_BUCKET  # hlist head and spinlock per bucket
        if self is MapType.STACK_TRACE:
            # Bucket pointers, and every element preallocated with its value (stackmap.c prealloc_elems_and_freelist).
            return _pow2(n) * 8 + n * value_size
        if self is MapType.BLOOM_FILTER:
            return _bloom_bytes(n, map_extra)
        if self in (MapType.QUEUE, MapType.STACK):
            return (n + 1) * value_size
        if self is MapType.RINGBUF:
            return n
        return 0


_LRU = frozenset({MapType.LRU_HASH, MapType.LRU_PERCPU_HASH})
_PER_CPU = frozenset({MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH, MapType.PERCPU_ARRAY,
                      MapType.PERCPU_CGROUP_STORAGE})
_HASH_FAMILY = frozenset({MapType.HASH, MapType.LRU_HASH, MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH})
_ARRAY_FAMILY = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY})
# Types whose storage is one pointer (or 8-byte fd slot) per entry, allocated at creation.
_POINTER_ARRAYS = frozenset({MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS,
                             MapType.DEVMAP, MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP,
                             MapType.REUSEPORT_SOCKARRAY})
_INDEX_KEYED = frozenset({MapType.ARRAY, MapType.PERCPU_ARRAY, MapType.PROG_ARRAY, MapType.PERF_EVENT_ARRAY,
                          MapType.CGROUP_ARRAY, MapType.ARRAY_OF_MAPS, MapType.DEVMAP, MapType.CPUMAP, MapType.XSKMAP,
                          MapType.SOCKMAP, MapType.REUSEPORT_SOCKARRAY})
_ZERO_ENTRIES = frozenset({MapType.PERF_EVENT_ARRAY, MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE,
                           MapType.SK_STORAGE, MapType.INODE_STORAGE, MapType.TASK_STORAGE, MapType.CGRP_STORAGE})
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _round8(n: int) -> int:
    return (n + 7) & ~7


def _page_align(n: int) -> int:
    return (n + _PAGE - 1) // _PAGE * _PAGE


def _pow2(n: int) -> int:
    """roundup_pow_of_two, as the kernel sizes bucket arrays."""
    return 1 << max(n - 1, 0).bit_length()


_PTR = struct.calcsize("P")
# sizeof(struct htab_elem) before the key: list node, LRU node and hash (48 bytes on 64-bit kernels).
_HTAB_ELEM = 6 * _PTR
# sizeof(struct bucket) in kernel/bpf/hashtab.c (and struct bpf_shtab_bucket): a list head and a spinlock.
_HTAB_BUCKET = 16


def _bloom_bytes(n: int, map_extra: int) -> int:
    """The bit array of a bloom filter (kernel/bpf/bloom_filter.c bloom_map_alloc): n * k * 7/5 bits,
    rounded up to a power of two (at least 64), with k hash functions (map_extra's low 4 bits, default 5)."""
    k = map_extra & 0xF or 5
    bits = n * k // 5 * 7
    if bits > 1 << 31:
        return (1 << 32) // 8
    return max(_pow2(bits), 64) // 8


def map_type_of(type_id: int) -> MapType | None:
    """The :class:`MapType` of a kernel type id, ``None`` for extensible or unknown ids."""
    try:
        return MapType(type_id)
    except ValueError:
        return None


EXTENSIBLE_MIN = 4096

#: Map types whose keys and values are plain data that BTF describes.
TYPED_MAP_TYPES = frozenset(int(t) for t in (
    MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_HASH,
    MapType.LRU_PERCPU_HASH,
))

_ALIASES = {
    "bloom": MapType.BLOOM_FILTER,
    "lpm": MapType.LPM_TRIE,
    "ringbuffer": MapType.RINGBUF,
    "user-ringbuffer": MapType.USER_RINGBUF,
    "perf-event": MapType.PERF_EVENT_ARRAY,
    "perf": MapType.PERF_EVENT_ARRAY,
    "sk-storage": MapType.SK_STORAGE,
    "cgroup-local-storage": MapType.CGRP_STORAGE,
}


def parse_map_type(value: MapType | str | int) -> int:
    """A map type id from a :class:`MapType`, a keyword (``"lru-percpu-hash"``) or an int.

    Ints from 4096 up are extensible types and come back unchanged; an unknown
    keyword or an id in the kernel's range that this library does not know raises
    :class:`~ebpfmaps.errors.InvalidArgument`.
    """
    if isinstance(value, MapType):
        return int(value)
    if isinstance(value, bool):
        raise InvalidArgument(f"map type must be a MapType, keyword or int, not {value!r}", op="create")
    if isinstance(value, int):
        if value >= EXTENSIBLE_MIN:
            return value
        try:
            return int(MapType(value))
        except ValueError:
            raise InvalidArgument(f"unknown map type id {value}", op="create") from None
    if isinstance(value, str):
        key = value.strip().lower().replace("_", "-")
        if key.startswith("bpf-map-type-"):
            key = key[len("bpf-map-type-"):]
        if key in _ALIASES:
            return int(_ALIASES[key])
        for member in MapType:
            if member.keyword == key and member is not MapType.UNSPEC:
                return int(member)
        raise InvalidArgument(f"unknown map type {value!r}", op="create")
    raise InvalidArgument(f"map type must be a MapType, keyword or int, not {type(value).__name__}", op="create")


def type_name(type_id: int) -> str:
    """A readable name for a type id (``"hash"``, ``"extensible(4100)"``, ``"unknown(40)"``)."""
    try:
        return MapType(type_id).keyword
    except ValueError:
        return f"extensible({type_id})" if type_id >= EXTENSIBLE_MIN else f"unknown({type_id})"
