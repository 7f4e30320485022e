"""Memory of whole-map reads: peak RSS while iterating 1,000,000 entries with items(), and what the
lookup_batch() dict costs against the objects it holds.

Each measurement runs in a fresh child process (so nothing else this run allocated counts): it
fills a typed hash map (u32 -> u64), resets the kernel's peak-RSS mark (``/proc/self/clear_refs``
with 5), does the read, and reports VmRSS before and VmHWM (the peak) after, from
``/proc/self/status``. items() is lazy, so its peak should stay near one kernel batch of objects;
lookup_batch() builds one dict, so its peak should be the dict and its keys and values, with no
second copy of them (no list of all pairs next to the dict).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import Result

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import ctypes, gc, json, struct, sys
sys.path.insert(0, sys.argv[3])
import ebpfmaps

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)

n, mode = int(sys.argv[1]), sys.argv[2]
m = ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=n, name="bench_mem")
m.update_batch(struct.pack(f"={n}I", *range(n)), struct.pack(f"={n}Q", *range(1 << 32, (1 << 32) + n)))
gc.collect()
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
out = {"rss_before": before}
if mode == "items":
    count = 0
    for k, v in m.items():
        count += 1
    out["count"] = count
else:
    d = m.lookup_batch()
    out["count"] = len(d)
    # What the dict holds: the table itself, and one key and one value object per entry (keys
    # above 256 and values above 2**32 are never shared small ints).
    out["dict_bytes"] = sys.getsizeof(d) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in d.items())
out["peak"] = status("VmHWM")
out["rss_after"] = status("VmRSS")
print(json.dumps(out))
"""


def _child(n: int, mode: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(n), mode, str(ROOT)], capture_output=True, text=True,
                          check=True, timeout=600)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool) -> list[Result]:
    return []  # no timed rows: the numbers are in extra()


def extra(quick: bool) -> dict[str, Any]:
    n = 50_000 if quick else 1_000_000
    items = _child(n, "items")
    batch = _child(n, "lookup_batch")
    mib = 1 << 20
    report = {
        "entries": n,
        "items_peak_growth_mib": round((items["peak"] - items["rss_before"]) / mib, 1),
        "lookup_batch_peak_growth_mib": round((batch["peak"] - batch["rss_before"]) / mib, 1),
        "lookup_batch_dict_and_objects_mib": round(batch["dict_bytes"] / mib, 1),
        "lookup_batch_peak_over_dict": round((batch["peak"] - batch["rss_before"]) / batch["dict_bytes"], 2),
        "raw": {"items": items, "lookup_batch": batch},
    }
    print(f"memory, {n:,} entries: items() peak RSS growth {report['items_peak_growth_mib']} MiB; "
          f"lookup_batch() peak growth {report['lookup_batch_peak_growth_mib']} MiB for a dict of "
          f"{report['lookup_batch_dict_and_objects_mib']} MiB (dict + keys + values), "
          f"ratio {report['lookup_batch_peak_over_dict']}", flush=True)
    return report
