#!/usr/bin/env python3
"""Mmapable array reads against syscall lookups (the target is at least 20x faster per element).

Both sides read every element of the same ARRAY map once per round, from Python:
* syscall: ``m.lookup(i)`` (one bpf(BPF_MAP_LOOKUP_ELEM) per element through libbpf);
* mmap:    ``view[i]`` on the memoryview of the mapped values cast to u64 (no syscall);
* numpy:   ``arr.sum()`` over the mapped values (per element, vectorised).

``run(quick)`` returns harness.Result rows for benchmarks/run.py: ``py_ns`` is the mmap path,
``ratio`` = mmap ns / syscall ns (target <= 0.05, i.e. >= 20x), ``notes`` carries the syscall ns.
Standalone: ``.venv/bin/python benchmarks/bench_mmap.py``.
"""

from __future__ import annotations

import ctypes
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

import ebpfmaps  # noqa: E402

TARGET_SPEEDUP = 20.0


def _per_element_ns(fn: object, n: int, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter_ns() - t0) / n)
    return out


def measure(n: int = 10000, rounds: int = 7) -> dict[str, float]:
    """Median ns per element for the three paths, and the speedups."""
    with ebpfmaps.ArrayMap(value_type=ctypes.c_uint64, max_entries=n, mmapable=True, name="bench_mmap") as m:
        m.update_batch(range(n), range(n))
        view = m.values_view().cast("Q")  # stride 8 == value_size: one u64 per element
        arr = m.numpy()
        lookup = m.lookup
        indices = range(n)

        def by_syscall() -> int:
            total = 0
            for i in indices:
                total += lookup(i)
            return total

        def by_mmap() -> int:
            total = 0
            for i in indices:
                total += view[i]
            return total

        def by_numpy() -> int:
            return int(arr.sum())

        want = n * (n - 1) // 2
        assert by_syscall() == by_mmap() == by_numpy() == want  # same data, three ways
        sys_ns = statistics.median(_per_element_ns(by_syscall, n, rounds))
        mm_ns = statistics.median(_per_element_ns(by_mmap, n, rounds))
        np_ns = statistics.median(_per_element_ns(by_numpy, n, rounds))
        view.release()
    return {"syscall_ns": sys_ns, "mmap_ns": mm_ns, "numpy_ns": np_ns,
            "mmap_speedup": sys_ns / mm_ns, "numpy_speedup": sys_ns / np_ns}


def run(quick: bool = False) -> list[Any]:
    import harness

    n, rounds = (2000, 3) if quick else (20000, 9)
    r = measure(n, rounds)
    rows = []
    for name, key in (("array element read: mmap view vs lookup", "mmap_ns"),
                      ("array element read: numpy sum vs lookup", "numpy_ns")):
        rows.append(harness.Result(
            name=name, group="mmap", py_ns=r[key], c_ns=None, ratio=r[key] / r["syscall_ns"],
            target=1 / TARGET_SPEEDUP, elements=n, rounds=rounds,
            notes=f"syscall lookup {r['syscall_ns']:.0f} ns/elem; speedup {r['syscall_ns'] / r[key]:.0f}x",
        ))
    return rows


def main() -> int:
    r = measure()
    print(f"syscall lookup  {r['syscall_ns']:8.1f} ns/element")
    print(f"mmap view read  {r['mmap_ns']:8.1f} ns/element  ({r['mmap_speedup']:.0f}x faster)")
    print(f"numpy sum       {r['numpy_ns']:8.2f} ns/element  ({r['numpy_speedup']:.0f}x faster)")
    ok = r["mmap_speedup"] >= TARGET_SPEEDUP
    print(f"target >= {TARGET_SPEEDUP:.0f}x per element: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
