"""ebpfmaps against bcc's table API on one shared kernel map: lookup, update and full iteration.

bcc creates a ``BPF_HASH(u32 -> u64)`` and ebpfmaps opens the very same map by id, both typed
(bcc: ctypes ``c_uint32``/``c_uint64`` keys and leaves, prepared in advance so bcc pays no
key construction; ebpfmaps: ``key_type=c_uint32, value_type=c_uint64``, taking and returning
Python ints). The target is for ebpfmaps to be at least 1.5x faster: here the "C" column holds bcc's
time and the target ratio (ebpfmaps / bcc) is 1/1.5 = 0.67. Iteration is compared with bcc's
``items()`` (get_next_key + lookup per key) and, in its own row, ``items_lookup_batch()``.

bcc needs kernel headers; mk/bcc.mk builds them (make bench depends on it) and
BCC_KERNEL_SOURCE points at them here.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from harness import Result, make_result

import ebpfmaps

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1 / 1.5


def run(quick: bool) -> list[Result]:
    os.environ.setdefault("BCC_KERNEL_SOURCE", str(ROOT / ".cache" / "bcc-headers"))
    from bcc import BPF

    entries = 1_000 if quick else 10_000
    rounds = 3 if quick else 9
    b = BPF(text=f"BPF_HASH(bench, u32, u64, {entries});".encode())
    results: list[Result] = []
    try:
        table = b[b"bench"]
        m = ebpfmaps.open_by_id(_map_id(table.map_fd),
                                key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
        keys = list(range(entries))
        ct_keys = [ctypes.c_uint32(k) for k in keys]
        ct_vals = [ctypes.c_uint64(k * 3) for k in keys]
        for k in keys:
            m[k] = k * 3

        def eb_lookup() -> int:
            for k in keys:
                m[k]
            return entries

        key_t, leaf_t = table.Key, table.Leaf

        def bcc_lookup() -> tuple[int, int]:
            return _timed(lambda: [table[key_t(k)].value for k in keys], entries)

        def bcc_lookup_prebuilt() -> tuple[int, int]:
            return _timed(lambda: [table[k] for k in ct_keys], entries)

        def eb_update() -> int:
            for k in keys:
                m[k] = k
            return entries

        def bcc_update() -> tuple[int, int]:
            def go() -> None:
                for k in keys:
                    table[key_t(k)] = leaf_t(k)
            return _timed(go, entries)

        def bcc_update_prebuilt() -> tuple[int, int]:
            def go() -> None:
                for k, v in zip(ct_keys, ct_vals):
                    table[k] = v
            return _timed(go, entries)

        def eb_items() -> int:
            return sum(1 for _ in m.items())

        def bcc_items() -> tuple[int, int]:
            return _timed(lambda: table.items(), entries)

        def bcc_items_batch() -> tuple[int, int]:
            return _timed(lambda: list(table.items_lookup_batch()), entries)

        note = f"baseline column is bcc's table API (not C); {entries} entries, u32 -> u64"
        # The rows with a target compare like for like: Python ints in, Python ints out on both
        # sides (bcc: table[Key(k)].value). The "prebuilt" rows hand bcc ready-made ctypes keys
        # and leaves and keep its ctypes results: bcc's best case, shown without a target.
        for name, eb, other, target in (
            ("lookup vs bcc table[Key(k)].value", eb_lookup, bcc_lookup, TARGET),
            ("update vs bcc table[Key(k)] = Leaf(v)", eb_update, bcc_update, TARGET),
            ("full iteration vs bcc items()", eb_items, bcc_items, TARGET),
            ("full iteration vs bcc items_lookup_batch()", eb_items, bcc_items_batch, None),
            ("lookup vs bcc, prebuilt ctypes keys", eb_lookup, bcc_lookup_prebuilt, None),
            ("update vs bcc, prebuilt ctypes keys/leaves", eb_update, bcc_update_prebuilt, None),
        ):
            results.append(make_result(name, "bcc", eb, other, rounds=rounds, elements=entries, target=target,
                                       notes=note))
        m.close()
    finally:
        b.cleanup()
    return results


def _map_id(fd: int) -> int:
    """The kernel id of the map behind bcc's fd (so ebpfmaps opens the same map, not a copy)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("map_id:"):
                return int(line.split()[1])
    raise RuntimeError(f"fd {fd} is not a BPF map")


def _timed(fn: object, elements: int) -> tuple[int, int]:
    import time

    assert callable(fn)
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0, elements
