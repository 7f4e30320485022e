#!/usr/bin/env python3
"""BTF-typed values against hand-written ctypes codecs and raw bytes.

One hash map (``__u32`` key, a 40-byte struct value) created with a ctypes Structure codec, so it
carries BTF; opened again by id it gets codecs from that BTF (records):
* lookup: ``m.lookup(k)`` typed by BTF vs by the ctypes Structure (target <= 1.5x);
* items(): a whole walk of ``entries`` elements, typed by BTF vs bytes (target <= 2x; 1,000,000 in the full run).

``run(quick)`` returns harness.Result rows for benchmarks/run.py: ``py_ns`` is the BTF-typed path,
``ratio`` = typed ns / baseline ns, ``notes`` carries the baseline ns.
Standalone: ``.venv/bin/python benchmarks/bench_btf.py``.
"""

from __future__ import annotations

import ctypes
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

import ebpfmaps  # noqa: E402
from ebpfmaps.btf import BtfCodec  # noqa: E402

LOOKUP_TARGET = 1.5
ITEMS_TARGET = 2.0


class Stat(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64), ("pid", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("comm", ctypes.c_char * 16)]


def _median_ratio(a: Callable[[], object], b: Callable[[], object], n: int, rounds: int) -> tuple[float, float, float]:
    """Median ns/element of a and b, and the median of their per-round ratios (run back to back)."""
    sa, sb, ratios = [], [], []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        a()
        t1 = time.perf_counter_ns()
        b()
        t2 = time.perf_counter_ns()
        sa.append((t1 - t0) / n)
        sb.append((t2 - t1) / n)
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(sa), statistics.median(sb), statistics.median(ratios)


def measure(lookups: int = 20000, entries: int = 1_000_000, rounds: int = 7) -> dict[str, float]:
    with ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=Stat, max_entries=entries, name="bench_btf",
                          allow_overcommit=True) as m:
        step = 65536
        for start in range(0, entries, step):
            ks = range(start, min(start + step, entries))
            m.update_batch(list(ks), [Stat(k, 2 * k, k & 0xFFFF, 1, b"bench") for k in ks])
        typed = ebpfmaps.open_by_id(m.info().id, readonly=True)
        raw = ebpfmaps.open_by_id(m.info().id, readonly=True, typed=False)
        assert isinstance(typed.value_codec, BtfCodec)
        v = typed[7]
        assert (v.packets, v.bytes, v._text("comm")) == (7, 14, "bench")
        keys = list(range(lookups))
        t_lookup, c_lookup = typed.lookup, m.lookup

        def typed_lookups() -> None:
            for k in keys:
                t_lookup(k)

        def ctypes_lookups() -> None:
            for k in keys:
                c_lookup(k)

        lt, lc, lr = _median_ratio(typed_lookups, ctypes_lookups, lookups, rounds)

        def typed_items() -> None:
            for _ in typed.items():
                pass

        def raw_items() -> None:
            for _ in raw.items():
                pass

        it, ib, ir = _median_ratio(typed_items, raw_items, entries, max(3, rounds // 2))
        typed.close()
        raw.close()
    return {"lookup_typed_ns": lt, "lookup_ctypes_ns": lc, "lookup_ratio": lr,
            "items_typed_ns": it, "items_bytes_ns": ib, "items_ratio": ir}


def run(quick: bool = False) -> list[Any]:
    import harness

    lookups, entries, rounds = (2000, 20000, 3) if quick else (20000, 1_000_000, 7)
    r = measure(lookups, entries, rounds)
    return [
        harness.Result(name="hash lookup: BTF record vs ctypes Structure", group="btf", py_ns=r["lookup_typed_ns"],
                       c_ns=None, ratio=r["lookup_ratio"], target=LOOKUP_TARGET, elements=lookups, rounds=rounds,
                       notes=f"ctypes Structure codec {r['lookup_ctypes_ns']:.0f} ns/elem"),
        harness.Result(name=f"hash items() of {entries}: BTF records vs bytes", group="btf",
                       py_ns=r["items_typed_ns"], c_ns=None, ratio=r["items_ratio"], target=ITEMS_TARGET,
                       elements=entries, rounds=max(3, rounds // 2),
                       notes=f"bytes items() {r['items_bytes_ns']:.0f} ns/elem"),
    ]


def main() -> int:
    r = measure()
    print(f"lookup: BTF {r['lookup_typed_ns']:.0f} ns, ctypes {r['lookup_ctypes_ns']:.0f} ns, "
          f"ratio {r['lookup_ratio']:.2f} (target <= {LOOKUP_TARGET})")
    print(f"items(): BTF {r['items_typed_ns']:.0f} ns, bytes {r['items_bytes_ns']:.0f} ns, "
          f"ratio {r['items_ratio']:.2f} (target <= {ITEMS_TARGET})")
    return 0 if r["lookup_ratio"] <= LOOKUP_TARGET and r["items_ratio"] <= ITEMS_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
