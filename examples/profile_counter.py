"""A counter map: ``increment`` with a retry loop, used from several threads.

Runs unchanged in both profiles (EBPFMAPS_PROFILE=cloud or embedded): a small
array fits the embedded pool.

``increment`` reads, adds one, and writes back, retrying on
KeyExists. The bpf() syscall has no compare-and-swap, so that read-modify-write
is not atomic between threads or processes: two threads incrementing one index
at once can lose an update. To avoid hot keys, each
thread here owns its own counter index, and a shared total is guarded by a lock.
"""

from __future__ import annotations

import ctypes
import threading

import ebpfmaps
from ebpfmaps import BPF_ANY, KeyExists

THREADS = 4
ROUNDS = 250


def increment(counters: ebpfmaps.ArrayMap, index: int) -> int:
    """increment: look up the old value (0 when absent), write old + 1, retry on KeyExists."""
    while True:
        old = counters.lookup(index)
        new = (old or 0) + 1
        try:
            counters.update(index, new, BPF_ANY)
        except KeyExists:
            continue  # another writer inserted first: read again (only reachable with BPF_NOEXIST maps)
        return int(new)


def main() -> None:
    print(f"profile: {ebpfmaps.profile.active()}")
    # ArrayMap::with_entries(8, 10): 10 counters of 8 bytes, read as u64.
    counters = ebpfmaps.ArrayMap.with_entries(value_type=ctypes.c_uint64, max_entries=10, name="counters")
    total_index = THREADS
    total_lock = threading.Lock()

    def work(index: int) -> None:
        for _ in range(ROUNDS):
            increment(counters, index)  # this thread's own key: no lost updates
            with total_lock:  # the shared hot key needs a lock
                increment(counters, total_index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    per_thread = [counters[i] for i in range(THREADS)]
    print(f"per-thread counters: {per_thread}, total: {counters[total_index]}")
    assert per_thread == [ROUNDS] * THREADS, per_thread
    assert counters[total_index] == ROUNDS * THREADS
    if ebpfmaps.profile.active() == "embedded":
        print(f"pool: {ebpfmaps.StaticPool.used()} of {ebpfmaps.StaticPool.total_size()} bytes used")
    counters.close()


if __name__ == "__main__":
    main()
