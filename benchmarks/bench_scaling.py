"""Cost per element as the map grows: insert, lookup, iteration and batch read at 1k..1M entries, against C.

One typed hash map (``c_uint32`` keys, ``c_uint64`` values) per size, shared with the C baseline
by fd. Per size and operation, ebpfmaps and C alternate rounds (harness.measure):

* insert: ``m.update(k, v)`` for every key into an emptied map, against C's
  ``bpf_map_update_elem`` loop (the map is emptied, untimed, before every round of either side);
* lookup: ``m.lookup(k)`` for every key, against C's ``bpf_map_lookup_elem`` loop;
* iteration: ``for k, v in m.items()``, against C walking the map with ``bpf_map_lookup_batch``
  in the same batch size items() uses;
* batch read: ``m.lookup_batch()`` into a dict, against the same C walk.

run.py collects these rows into the ``scaling`` section of results.json and draws
benchmarks/plots/scaling.png (log-log) from them.
"""

from __future__ import annotations

import ctypes
import functools
import struct

from harness import Result, c_baseline, make_result

import ebpfmaps
from ebpfmaps import map as map_module

SIZES = [1_000, 10_000, 100_000, 1_000_000]
QUICK_SIZES = [1_000, 10_000]
OPS = ["insert", "lookup", "iteration", "batch read"]


def run(quick: bool) -> list[Result]:
    cb = c_baseline()
    out: list[Result] = []
    for n in QUICK_SIZES if quick else SIZES:
        rounds = 3 if quick or n >= 1_000_000 else 5
        m = ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=n,
                             name="bench_scale")
        keys = list(range(n))
        packed_k = struct.pack(f"={n}I", *keys)
        packed_v = struct.pack(f"={n}Q", *keys)
        cb.share(m.fd)
        fd = m.fd

        def fill(m: ebpfmaps.Map = m, kb: bytes = packed_k, vb: bytes = packed_v) -> None:
            m.update_batch(kb, vb)

        def empty(m: ebpfmaps.Map = m) -> None:
            m.clear()

        def py_insert(m: ebpfmaps.Map = m, keys: list[int] = keys) -> int:
            update = m.update
            for k in keys:
                update(k, k)
            return len(keys)

        def py_lookup(m: ebpfmaps.Map = m, keys: list[int] = keys) -> int:
            lookup = m.lookup
            for k in keys:
                lookup(k)
            return len(keys)

        def py_items(m: ebpfmaps.Map = m) -> int:
            count = 0
            for _k, _v in m.items():
                count += 1
            return count

        def py_batch(m: ebpfmaps.Map = m) -> int:
            return len(m.lookup_batch())

        walk = functools.partial(cb.call, "lookup_batch", fd, 4, 8, map_module.ITER_BATCH)
        batch_walk = functools.partial(cb.call, "lookup_batch", fd, 4, 8, map_module.DEFAULT_BATCH)
        cases = [
            ("insert", py_insert, functools.partial(cb.call, "update", fd, 4, 8, n, n), empty),
            ("lookup", py_lookup, functools.partial(cb.call, "lookup", fd, 4, 8, n, n), None),
            ("iteration", py_items, walk, None),
            ("batch read", py_batch, batch_walk, None),
        ]
        fill()
        for op, py, c, setup in cases:
            out.append(make_result(f"scaling {op} n={n}", "scaling", py, c, rounds=rounds, elements=n, target=None,
                                   setup=setup, notes=f"{n} entries, u32 -> u64 hash"))
            if setup is not None:
                fill()  # the next cases read a full map
        m.close()
    return out
