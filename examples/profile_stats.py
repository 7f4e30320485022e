"""A statistics map: one ``Stats`` record per interface (256 entries).

Runs unchanged in both profiles: 256 x 24 bytes plus the array's header is
about 6.3 KiB, inside the embedded profile's 64 KiB pool.
"""

from __future__ import annotations

import ctypes

import ebpfmaps


class Stats(ctypes.Structure):
    """``#[repr(C)] struct Stats { packets: u64, bytes: u64, errors: u64 }``."""

    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64), ("errors", ctypes.c_uint64)]


def main() -> None:
    print(f"profile: {ebpfmaps.profile.active()}")
    stats_map = ebpfmaps.ArrayMap.with_entries(value_type=Stats, max_entries=256, name="stats")

    # Something (a BPF program in real life) records traffic on a few interfaces.
    for ifindex, (packets, nbytes) in {1: (10, 840), 5: (1200, 1_500_000), 7: (3, 180)}.items():
        stats_map[ifindex] = Stats(packets=packets, bytes=nbytes, errors=ifindex % 2)

    # Read stats for interface 5
    data = stats_map.lookup(5)
    if data is not None:
        print(f"Packets: {data.packets}, Bytes: {data.bytes}")
    assert data is not None and (data.packets, data.bytes, data.errors) == (1200, 1_500_000, 1)

    # Every interface at once, in kernel batches; untouched entries read as zeros.
    active = {i: s.packets for i, s in stats_map.items() if s.packets}
    print(f"interfaces with traffic: {active}")
    assert active == {1: 10, 5: 1200, 7: 3}
    if ebpfmaps.profile.active() == "embedded":
        memlock = stats_map.info().memlock
        print(f"pool: this map holds {memlock} bytes of kernel memory; "
              f"{ebpfmaps.StaticPool.remaining()} of {ebpfmaps.StaticPool.total_size()} remain")
    stats_map.close()


if __name__ == "__main__":
    main()
