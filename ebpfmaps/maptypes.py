"""Map type ids and flag constants of the kernel's uapi (``linux/bpf.h``)."""

from __future__ import annotations

import enum

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


EXTENSIBLE_MIN = 4096

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
    from ebpfmaps.errors import InvalidArgument

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
