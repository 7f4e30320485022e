"""Model tests of the hash family: hash (preallocated and not), per-CPU hash, LRU hash, LRU per-CPU hash."""

from __future__ import annotations

from ebpfmaps import BPF_F_NO_PREALLOC
from tests.model._keyed import KeyedMachine
from tests.model._settings import model_settings


class HashMachine(KeyedMachine):
    kind = "hash"


class HashNoPreallocMachine(KeyedMachine):
    kind = "hash"
    create_flags = BPF_F_NO_PREALLOC


class PerCpuHashMachine(KeyedMachine):
    kind = "percpu-hash"
    per_cpu = True


class LruHashMachine(KeyedMachine):
    """LRU hash: inserts never fail for lack of room, and any entry may be evicted (even before the map is
    full: the kernel keeps per-CPU free lists); what is there must hold the last value written."""

    kind = "lru-hash"
    lru = True


class LruPerCpuHashMachine(KeyedMachine):
    kind = "lru-percpu-hash"
    lru = True
    per_cpu = True


TestHash = HashMachine.TestCase
TestHash.settings = model_settings()
TestHashNoPrealloc = HashNoPreallocMachine.TestCase
TestHashNoPrealloc.settings = model_settings(examples=10)
TestPerCpuHash = PerCpuHashMachine.TestCase
TestPerCpuHash.settings = model_settings()
TestLruHash = LruHashMachine.TestCase
TestLruHash.settings = model_settings()
TestLruPerCpuHash = LruPerCpuHashMachine.TestCase
TestLruPerCpuHash.settings = model_settings(examples=15)
