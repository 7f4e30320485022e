"""Profile differences: the same code under the cloud and the embedded profile.

Run it twice::

    EBPFMAPS_PROFILE=cloud    python examples/profile_differences.py
    EBPFMAPS_PROFILE=embedded python examples/profile_differences.py

Cloud: the array grows with ``resize`` (a migration to a new kernel map) and
an LRU map evicts when full. Embedded: there is no ``resize`` attribute, LRU
maps are refused, and every map is charged to a 64 KiB pool.
"""

from __future__ import annotations

import ctypes

import ebpfmaps
from ebpfmaps.errors import NotSupported, OutOfMemory


def cloud_map_example() -> None:
    arr = ebpfmaps.ArrayMap.with_entries(value_type=ctypes.c_uint64, max_entries=1000)
    arr[999] = 42
    result = arr.resize(10000)  # can grow dynamically
    print(f"resized {result.old_max_entries} -> {arr.max_entries}, arr[999] = {arr[999]}")
    assert arr.max_entries == 10000 and arr[999] == 42

    lru = ebpfmaps.LruHashMap(key_type=ctypes.c_uint32, value_size=64, max_entries=1000)
    lru.update_batch(range(1100), [bytes(64)] * 1100)  # when full, least recently used entries go
    print(f"LRU map of 1000 after 1100 inserts holds {len(lru)} entries")
    assert len(lru) <= 1000
    arr.close()
    lru.close()


def embedded_map_example() -> None:
    arr = ebpfmaps.ArrayMap.with_entries(value_size=8, max_entries=100)  # must fit in the static pool
    print(f"array charged {arr.info().memlock} bytes; hasattr(arr, 'resize') = {hasattr(arr, 'resize')}")
    assert not hasattr(arr, "resize")
    try:
        ebpfmaps.LruHashMap(key_size=16, value_size=64, max_entries=1000)
    except NotSupported as exc:
        print(f"LRU refused: {exc}")
    try:
        ebpfmaps.ArrayMap.with_entries(value_size=8, max_entries=10000)
    except OutOfMemory as exc:
        print(f"too big for the pool: {exc}")
    print(f"pool: {ebpfmaps.StaticPool.remaining()} of {ebpfmaps.StaticPool.total_size()} bytes remain")
    arr.close()


def main() -> None:
    active = ebpfmaps.profile.active()
    print(f"profile: {active}")
    if active == "cloud":
        cloud_map_example()
    else:
        embedded_map_example()


if __name__ == "__main__":
    main()
