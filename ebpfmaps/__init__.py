"""ebpfmaps: every Linux kernel BPF map as a fast, safe Python object.

>>> import ebpfmaps, ctypes
>>> m = ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=1024)
>>> m[1] = 10; m[1]
10
"""

from __future__ import annotations

import errno as _errno
import importlib

from ebpfmaps import errors
from ebpfmaps.codecs import Codec, CtypesCodec, PerCpuValues, StructCodec
from ebpfmaps.cpus import possible_cpus
from ebpfmaps.errors import (
    AssemblerError,
    IncompatibleMap,
    InvalidFlags,
    InvalidKeySize,
    InvalidValueSize,
    KeyExists,
    KeyNotFound,
    MapClosed,
    MapError,
    NotSupported,
    OutOfMemory,
    PermissionDenied,
    ProgramLoadError,
)
from ebpfmaps.extension import unpin
from ebpfmaps.factory import (
    class_for,
    create,
    iter_maps,
    iter_pins,
    list_maps,
    map_ids,
    open_by_id,
    open_pinned,
    pins_by_map_id,
)
from ebpfmaps.map import Map, set_family_loader
from ebpfmaps.maptypes import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_F_MMAPABLE,
    BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_F_WRONLY_PROG,
    BPF_F_ZERO_SEED,
    BPF_NOEXIST,
    MapType,
)
from ebpfmaps.pinning import is_bpffs, mount_bpffs
from ebpfmaps.spec import MapInfo, MapSpec

__version__ = "0.2.0"

__all__ = [
    "BPF_ANY",
    "BPF_EXIST",
    "BPF_F_LOCK",
    "BPF_F_MMAPABLE",
    "BPF_F_NO_COMMON_LRU",
    "BPF_F_NO_PREALLOC",
    "BPF_F_NUMA_NODE",
    "BPF_F_RDONLY",
    "BPF_F_RDONLY_PROG",
    "BPF_F_WRONLY",
    "BPF_F_WRONLY_PROG",
    "BPF_F_ZERO_SEED",
    "BPF_NOEXIST",
    "ArrayMap",
    "Codec",
    "CtypesCodec",
    "HashMap",
    "IncompatibleMap",
    "InvalidFlags",
    "InvalidKeySize",
    "InvalidValueSize",
    "KeyExists",
    "KeyNotFound",
    "LruHashMap",
    "LruPerCpuHashMap",
    "Map",
    "MapClosed",
    "MapError",
    "MapInfo",
    "MapSpec",
    "MapType",
    "NotSupported",
    "OutOfMemory",
    "PerCpuArrayMap",
    "PerCpuHashMap",
    "PerCpuValues",
    "PermissionDenied",
    "ResizeResult",
    "ResizeWarning",
    "StaticPool",
    "StructCodec",
    "btf",
    "class_for",
    "create",
    "errors",
    "is_bpffs",
    "iter_maps",
    "iter_pins",
    "list_maps",
    "map_ids",
    "mount_bpffs",
    "open_by_id",
    "open_pinned",
    "pins_by_map_id",
    "possible_cpus",
    "profile",
    "unpin",
]

# Every other kernel map type.
__all__ += [
    "ArenaMap", "ArrayOfMaps", "BloomFilterMap", "CgroupArray", "CgroupStorage", "CgrpStorage", "CpuMap", "DevMap",
    "DevMapHash", "HashOfMaps", "InodeStorage", "LpmTrieMap", "PerCpuCgroupStorage", "PerfEventArray", "ProgArray",
    "QueueMap", "ReuseportSockArray", "RingBufMap", "SkStorage", "SockHash", "SockMap", "StackMap", "StackTraceMap",
    "StructOpsMap", "TaskStorage", "UserRingBufMap", "XskMap",
]

# BPF programs that share maps with Python: the assembler and the programs package.
__all__ += ["AssemblerError", "BpfObject", "Link", "Program", "ProgramLoadError", "ProgramType", "TestRun", "asm",
            "programs"]

# Streaming maps read and written through their shared memory, and XDP attachment.
__all__ += ["PerfEventReader", "PerfSample", "RingBufReader", "UserRingBufWriter", "readers", "xdp"]
__all__ += ["features", "resize"]

# Everything below loads on first use: ``import ebpfmaps`` brings in only the maps and the syscall layer, so a
# one-shot command starts fast. The assembler, BTF, programs, readers (asyncio), XDP, feature probes and resize
# are imported when a name from them is first read (PEP 562).
_LAZY_MODULES = frozenset({"asm", "btf", "features", "profile", "programs", "readers", "resize", "xdp"})
_LAZY_NAMES = {
    "BpfObject": "ebpfmaps.programs", "Link": "ebpfmaps.programs", "Program": "ebpfmaps.programs",
    "ProgramType": "ebpfmaps.programs", "TestRun": "ebpfmaps.programs",
    "PerfEventReader": "ebpfmaps.readers", "PerfSample": "ebpfmaps.readers", "RingBufReader": "ebpfmaps.readers",
    "UserRingBufWriter": "ebpfmaps.readers",
    "ResizeResult": "ebpfmaps.resize", "ResizeWarning": "ebpfmaps.resize",
    "StaticPool": "ebpfmaps.pool",
}

# The map families: each module loads the first time one of its classes is named (``ebpfmaps.HashMap``) or a map
# of one of its types is created or opened (``ebpfmaps.map.class_for``), so opening a hash map loads no other
# family. tests/test_import_cost.py checks these tables against the classes the modules register.
_FAMILIES: dict[str, tuple[tuple[str, ...], tuple[MapType, ...]]] = {
    "ebpfmaps.maps.array": (("ArrayMap", "PerCpuArrayMap"), (MapType.ARRAY, MapType.PERCPU_ARRAY)),
    "ebpfmaps.maps.bloom": (("BloomFilterMap",), (MapType.BLOOM_FILTER,)),
    "ebpfmaps.maps.hash": (("HashMap", "LruHashMap", "LruPerCpuHashMap", "PerCpuHashMap"),
                           (MapType.HASH, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH, MapType.PERCPU_HASH)),
    "ebpfmaps.maps.lpm": (("LpmTrieMap",), (MapType.LPM_TRIE,)),
    "ebpfmaps.maps.of_maps": (("ArrayOfMaps", "HashOfMaps"), (MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)),
    "ebpfmaps.maps.perf": (("PerfEventArray",), (MapType.PERF_EVENT_ARRAY,)),
    "ebpfmaps.maps.queue": (("QueueMap", "StackMap"), (MapType.QUEUE, MapType.STACK)),
    "ebpfmaps.maps.ringbuf": (("RingBufMap", "UserRingBufMap"), (MapType.RINGBUF, MapType.USER_RINGBUF)),
    "ebpfmaps.maps.special": (
        ("ArenaMap", "CgroupArray", "CgroupStorage", "CgrpStorage", "CpuMap", "DevMap", "DevMapHash", "InodeStorage",
         "PerCpuCgroupStorage", "ProgArray", "ReuseportSockArray", "SkStorage", "SockHash", "SockMap",
         "StructOpsMap", "TaskStorage", "XskMap"),
        (MapType.ARENA, MapType.CGROUP_ARRAY, MapType.CGROUP_STORAGE, MapType.CGRP_STORAGE, MapType.CPUMAP,
         MapType.DEVMAP, MapType.DEVMAP_HASH, MapType.INODE_STORAGE, MapType.PERCPU_CGROUP_STORAGE,
         MapType.PROG_ARRAY, MapType.REUSEPORT_SOCKARRAY, MapType.SK_STORAGE, MapType.SOCKHASH, MapType.SOCKMAP,
         MapType.STRUCT_OPS, MapType.TASK_STORAGE, MapType.XSKMAP)),
    "ebpfmaps.maps.stacktrace": (("StackTraceMap",), (MapType.STACK_TRACE,)),
}
_FAMILY_OF_TYPE = {int(t): module for module, (_, types) in _FAMILIES.items() for t in types}
_LAZY_NAMES.update({name: module for module, (names, _) in _FAMILIES.items() for name in names})


def _load_family(type_id: int) -> None:
    module = _FAMILY_OF_TYPE.get(type_id)
    if module is None:
        return
    try:
        importlib.import_module(module)
    except OSError as exc:
        # Reading the module's file takes a descriptor: opening a map with none left says so as the rest does.
        if exc.errno in (_errno.EMFILE, _errno.ENFILE):
            raise errors.out_of_descriptors(exc.errno, "open", f"loading {module}", call="open") from None
        raise


set_family_loader(_load_family)

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any

    from ebpfmaps import asm, btf, features, profile, programs, readers, resize, xdp
    from ebpfmaps.maps.array import ArrayMap, PerCpuArrayMap
    from ebpfmaps.maps.bloom import BloomFilterMap
    from ebpfmaps.maps.hash import HashMap, LruHashMap, LruPerCpuHashMap, PerCpuHashMap
    from ebpfmaps.maps.lpm import LpmTrieMap
    from ebpfmaps.maps.of_maps import ArrayOfMaps, HashOfMaps
    from ebpfmaps.maps.perf import PerfEventArray
    from ebpfmaps.maps.queue import QueueMap, StackMap
    from ebpfmaps.maps.ringbuf import RingBufMap, UserRingBufMap
    from ebpfmaps.maps.special import (
        ArenaMap,
        CgroupArray,
        CgroupStorage,
        CgrpStorage,
        CpuMap,
        DevMap,
        DevMapHash,
        InodeStorage,
        PerCpuCgroupStorage,
        ProgArray,
        ReuseportSockArray,
        SkStorage,
        SockHash,
        SockMap,
        StructOpsMap,
        TaskStorage,
        XskMap,
    )
    from ebpfmaps.maps.stacktrace import StackTraceMap
    from ebpfmaps.pool import StaticPool
    from ebpfmaps.programs import BpfObject, Link, Program, ProgramType, TestRun
    from ebpfmaps.readers import PerfEventReader, PerfSample, RingBufReader, UserRingBufWriter
    from ebpfmaps.resize import ResizeResult, ResizeWarning


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        module = importlib.import_module(f"ebpfmaps.{name}")
        globals()[name] = module
        return module
    source = _LAZY_NAMES.get(name)
    if source is None:
        raise AttributeError(f"module 'ebpfmaps' has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
