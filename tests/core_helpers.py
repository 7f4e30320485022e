"""Helpers shared by the core's tests (tests/test_core_*.py): map kinds, bpftool dumps, fd counts."""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass
from typing import Any

import ebpfmaps
from ebpfmaps import MapType
from tests.conftest import bpftool_json


@dataclass(frozen=True)
class Kind:
    """One of the six core map types, with what a test needs to know about it."""

    keyword: str  # create()'s keyword spelling
    map_type: MapType
    cls: type[ebpfmaps.Map]
    per_cpu: bool
    is_array: bool
    lru: bool

    def __str__(self) -> str:
        return self.keyword


KINDS = [
    Kind("hash", MapType.HASH, ebpfmaps.HashMap, False, False, False),
    Kind("array", MapType.ARRAY, ebpfmaps.ArrayMap, False, True, False),
    Kind("percpu-hash", MapType.PERCPU_HASH, ebpfmaps.PerCpuHashMap, True, False, False),
    Kind("percpu-array", MapType.PERCPU_ARRAY, ebpfmaps.PerCpuArrayMap, True, True, False),
    Kind("lru-hash", MapType.LRU_HASH, ebpfmaps.LruHashMap, False, False, True),
    Kind("lru-percpu-hash", MapType.LRU_PERCPU_HASH, ebpfmaps.LruPerCpuHashMap, True, False, True),
]
KIND_IDS = [k.keyword for k in KINDS]
HASH_KINDS = [k for k in KINDS if not k.is_array]
PERCPU_KINDS = [k for k in KINDS if k.per_cpu]

U32 = struct.Struct("=I")
U64 = struct.Struct("=Q")


def unique_name(prefix: str = "t") -> str:
    """A map name (<= 15 chars) no other test or helper process will use."""
    return (prefix + "_" + uuid.uuid4().hex)[:15]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def hexbytes(values: list[str]) -> bytes:
    """bpftool -j prints bytes as ["0x01", "0x00", ...]."""
    return bytes(int(b, 16) for b in values)


def bpftool_dump(path: os.PathLike[str] | str) -> list[dict[str, Any]]:
    """``bpftool -j map dump pinned PATH`` as a list of entries."""
    dump = bpftool_json("map", "dump", "pinned", os.fspath(path))
    assert isinstance(dump, list)
    return dump


def bpftool_raw(path: os.PathLike[str] | str) -> dict[bytes, bytes | list[bytes]]:
    """Key bytes -> value bytes (or per-CPU list of value bytes, in CPU order) as bpftool reads them."""
    out: dict[bytes, bytes | list[bytes]] = {}
    for entry in bpftool_dump(path):
        key = hexbytes(entry["key"])
        if "values" in entry:
            per_cpu = sorted(entry["values"], key=lambda v: int(v["cpu"]))
            out[key] = [hexbytes(v["value"]) for v in per_cpu]
        else:
            out[key] = hexbytes(entry["value"])
    return out


def bpftool_show(map_id: int) -> dict[str, Any]:
    info = bpftool_json("map", "show", "id", str(map_id))
    assert isinstance(info, dict)
    return info


def value_for(kind: Kind, n: int, size: int = 8) -> bytes:
    """A distinct raw value of ``size`` bytes for test number ``n``."""
    return (n.to_bytes(8, "little") * (size // 8 + 1))[:size]


def key_for(kind: Kind, n: int) -> Any:
    """Array kinds take int indices; hash kinds here use raw 4-byte keys."""
    return n if kind.is_array else U32.pack(n)


def make(kind: Kind, max_entries: int = 16, value_size: int = 8, **kw: Any) -> ebpfmaps.Map:
    return ebpfmaps.create(kind.keyword, key_size=4, value_size=value_size, max_entries=max_entries, **kw)


def expected_value(kind: Kind, m: ebpfmaps.Map, raw: bytes) -> Any:
    """What lookup returns after writing the single raw value ``raw``."""
    return [raw] * ebpfmaps.possible_cpus() if kind.per_cpu else raw
