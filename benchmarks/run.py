#!/usr/bin/env python3
"""Run the ebpfmaps benchmarks against a C libbpf baseline built in the same run.

    .venv/bin/python benchmarks/run.py             # full run (make bench), writes benchmarks/results.json
    .venv/bin/python benchmarks/run.py --quick     # a few seconds: tiny maps, few rounds (the smoke test)
    .venv/bin/python benchmarks/run.py --only hash --cpu 1

Adding a benchmark: put ``bench_<name>.py`` in this directory with a function
``run(quick: bool) -> list[harness.Result]`` and add its module name to MODULES. A module may
also have ``extra(quick: bool) -> dict``: numbers that are not timings (memory...), stored
under ``extra`` in the results.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
# Run from a checkout without an installed package too.
if str(HERE.parent) not in sys.path:
    sys.path.insert(1, str(HERE.parent))

import harness  # noqa: E402

# One line per benchmark module; each exposes run(quick: bool) -> list[harness.Result].
MODULES: list[str] = [
    "bench_core",
    "bench_ringbuf",  # RingBufReader vs libbpf ring_buffer__consume
    "bench_bcc",  # ebpfmaps vs bcc table API
    "bench_mmap",  # mmapable array reads vs syscall lookups (target >= 20x)
    "bench_shim",  # extensible maps: reconcile (the observer) per entry vs a C batch read
    "bench_scaling",  # per-element cost at 1k..1M entries vs C (results.json "scaling", plots/scaling.png)
    "bench_memory",  # peak RSS of whole-map reads (results.json "extra")
    "bench_btf",  # BTF-typed lookups and items() vs ctypes codecs and bytes
    "bench_exporter",  # a Prometheus scrape and a watch refresh of a 100,000-entry map vs a C batch walk
    "bench_cli",  # the ebpfmaps command vs bpftool, whole processes (wall time and peak RSS)
]
PLOTS = HERE / "plots"


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def table(results: list[harness.Result]) -> str:
    """A plain-text table (also valid Markdown) of every result."""
    head = ["case", "group", "ebpfmaps ns/elem", "C ns/elem", "ratio", "target", "met"]
    rows = [head, ["---"] * len(head)]
    for r in results:
        met = r.met
        rows.append([
            r.name, r.group, _fmt(r.py_ns, ".0f"), _fmt(r.c_ns, ".0f"), _fmt(r.ratio, ".2f"),
            _fmt(r.target, ".2f"), "-" if met is None else ("yes" if met else "NO"),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for row in rows:
        if row[0] == "---":
            row = ["-" * w for w in widths]
        lines.append("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |")
    return "\n".join(lines)


def scaling_table(results: list[harness.Result]) -> dict[str, dict[str, dict[str, float | None]]]:
    """The scaling rows as ``{operation: {entries: {"ebpfmaps_ns": ..., "c_ns": ..., "ratio": ...}}}``."""
    table: dict[str, dict[str, dict[str, float | None]]] = {}
    for r in results:
        if r.group != "scaling":
            continue
        op, _, size = r.name.removeprefix("scaling ").rpartition(" n=")
        table.setdefault(op, {})[size] = {"ebpfmaps_ns": round(r.py_ns, 1),
                                          "c_ns": None if r.c_ns is None else round(r.c_ns, 1),
                                          "ratio": None if r.ratio is None else round(r.ratio, 3)}
    return table


def plot_scaling(table: dict[str, dict[str, dict[str, float | None]]], path: Path, env: dict[str, Any]) -> Path:
    """A log-log plot of ns per element against entries: ebpfmaps solid, C dashed, one colour per operation."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for i, (op, by_size) in enumerate(sorted(table.items())):
        sizes = sorted(by_size, key=int)
        xs = [int(s) for s in sizes]
        colour = f"C{i}"
        ax.plot(xs, [by_size[s]["ebpfmaps_ns"] for s in sizes], "o-", color=colour, label=f"{op}: ebpfmaps")
        c_points = [(x, by_size[s]["c_ns"]) for x, s in zip(xs, sizes) if by_size[s]["c_ns"]]
        if c_points:
            ax.plot([x for x, _ in c_points], [y for _, y in c_points], "s--", color=colour, alpha=0.7,
                    label=f"{op}: C libbpf")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("entries in the map")
    ax.set_ylabel("ns per element (median of rounds)")
    ax.set_title(f"ebpfmaps vs C, u32 -> u64 hash (kernel {env['kernel']}, load {env['loadavg_at_start'][0]:.1f})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def environment(cpu: int) -> dict[str, Any]:
    import ebpfmaps
    from ebpfmaps import _libbpf

    load1, load5, _ = os.getloadavg()
    return {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "libbpf": "{}.{}".format(*_libbpf.version()),
        "ebpfmaps": ebpfmaps.__version__,
        "cpu": cpu,
        "cpus_online": os.cpu_count(),
        "loadavg_at_start": [load1, load5],
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few rounds (for tests)")
    ap.add_argument("--json", default=str(HERE / "results.json"), help="where to write results (default: %(default)s)")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin both sides to (default: the highest allowed)")
    ap.add_argument("--only", default=None, help="keep results whose name contains this text")
    ap.add_argument("--modules", default=None, help="comma-separated subset of: " + ", ".join(MODULES))
    args = ap.parse_args(argv)

    cpu = harness.pin_cpu(args.cpu)
    modules = args.modules.split(",") if args.modules else MODULES
    env = environment(cpu)
    print(f"ebpfmaps benchmarks: python {env['python']}, kernel {env['kernel']}, libbpf {env['libbpf']}, "
          f"pinned to CPU {cpu}, load {env['loadavg_at_start'][0]:.2f}{' (quick)' if args.quick else ''}", flush=True)
    results: list[harness.Result] = []
    failures: dict[str, str] = {}
    extras: dict[str, Any] = {}
    t0 = time.monotonic()
    try:
        for name in modules:
            started = time.monotonic()
            try:
                mod = importlib.import_module(name)
                got = mod.run(args.quick)
            except Exception:
                failures[name] = traceback.format_exc()
                print(f"{name}: FAILED\n{failures[name]}", file=sys.stderr, flush=True)
                continue
            if args.only:
                got = [r for r in got if args.only in r.name]
            results.extend(got)
            if hasattr(mod, "extra") and not args.only:
                extras[name] = mod.extra(args.quick)
            print(f"{name}: {len(got)} results in {time.monotonic() - started:.1f} s", flush=True)
    finally:
        harness.close_baseline()
    print()
    print(table(results))
    doc = {
        "quick": args.quick,
        "environment": env,
        "seconds": round(time.monotonic() - t0, 1),
        "results": [r.to_json() for r in results],
        "failures": failures,
        "extra": extras,
        "scaling": scaling_table(results),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    if doc["scaling"] and not args.quick:
        try:
            print(f"wrote {plot_scaling(doc['scaling'], PLOTS / 'scaling.png', env)}")
        except ImportError as exc:  # matplotlib: the bench extra (make setup installs it)
            print(f"no scaling plot: {exc}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
