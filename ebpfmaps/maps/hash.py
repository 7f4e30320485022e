"""The hash family: HASH, LRU_HASH, PERCPU_HASH, LRU_PERCPU_HASH."""

from __future__ import annotations

from ebpfmaps.map import Map, map_class
from ebpfmaps.maptypes import (
    BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_F_WRONLY_PROG,
    BPF_F_ZERO_SEED,
    MapType,
)
from ebpfmaps.resizable import Resizable

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import ClassVar

# Flags the kernel's htab_map_alloc_check accepts (kernel/bpf/hashtab.c, HTAB_CREATE_FLAG_MASK).
HASH_FLAGS = (
    BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY
    | BPF_F_ZERO_SEED | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG
)


class _HashBase(Map):
    resize = Resizable()  # m.resize(n): cloud profile only (ebpfmaps.resize)
    allowed_flags: ClassVar[int] = HASH_FLAGS & ~BPF_F_NO_COMMON_LRU
    kernel_batch: ClassVar[bool | None] = True


@map_class
class HashMap(_HashBase):
    """BPF_MAP_TYPE_HASH: arbitrary keys, O(1) average operations, preallocated unless NO_PREALLOC."""

    map_type = MapType.HASH


@map_class
class LruHashMap(_HashBase):
    """BPF_MAP_TYPE_LRU_HASH: a full map evicts the least recently used entry instead of failing.

    Eviction works on per-CPU free lists, so entries may be evicted before
    max_entries is reached (see the kernel's bpf_lru_list.c).
    """

    map_type = MapType.LRU_HASH
    allowed_flags: ClassVar[int] = HASH_FLAGS & ~BPF_F_NO_PREALLOC


@map_class
class PerCpuHashMap(_HashBase):
    """BPF_MAP_TYPE_PERCPU_HASH: one value per possible CPU for each key."""

    map_type = MapType.PERCPU_HASH
    per_cpu = True
    # htab_map_alloc_check refuses a NUMA node for per-CPU values (EINVAL).
    allowed_flags: ClassVar[int] = HASH_FLAGS & ~(BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE)


@map_class
class LruPerCpuHashMap(_HashBase):
    """BPF_MAP_TYPE_LRU_PERCPU_HASH: per-CPU values with LRU eviction."""

    map_type = MapType.LRU_PERCPU_HASH
    per_cpu = True
    allowed_flags: ClassVar[int] = HASH_FLAGS & ~(BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE)
