#!/usr/bin/env python3
"""The ``ebpfmaps`` command against ``bpftool``, whole processes timed from start to exit.

Cases (each round runs both tools back to back; medians over rounds):
* ``import ebpfmaps`` and ``ebpfmaps get``/``show`` against ``python -c pass`` (targets 1.6x, 2.5x, 2.5x);
* ``get``, ``show`` and ``list`` (with 1,000 extra maps in the system) against bpftool's counterparts;
* ``dump --json`` of a 100,000- and a 1,000,000-entry hash against ``bpftool -j map dump`` (target 1.0x
  at 100k), with the peak RSS of both tools (``wait4`` rusage);
* the peak RSS of dumping 1,000,000 entries against dumping 1,000 (target 3x: streaming keeps it flat).

Each Result's ``py_ns``/``c_ns`` hold the whole-process wall time in ns of the ebpfmaps side and of the
reference (bpftool, or ``python -c pass``); ``notes`` carry the peak RSS. The package's bytecode is
compiled first, as an installed package's is. Standalone: ``.venv/bin/python benchmarks/bench_cli.py``.
"""

from __future__ import annotations

import compileall
import ctypes
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

import harness  # noqa: E402

import ebpfmaps  # noqa: E402

PY = sys.executable
TIME = "/usr/bin/time"  # GNU time (Debian package time)
TARGET_IMPORT = 1.6
TARGET_GET_SHOW = 2.5
TARGET_DUMP = 1.0
TARGET_RSS = 3.0


def run_process(argv: list[str]) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (user + system) of one whole process; its output is
    discarded.

    GNU time reports the peak RSS: a child forked from this (large) Python process would otherwise
    inherit the parent's peak in its rusage. The CPU time is wait4's, which counts GNU time's child too.
    """
    with tempfile.NamedTemporaryFile("r") as rss, open(os.devnull, "wb") as sink:
        t0 = time.perf_counter()
        proc = subprocess.Popen([TIME, "-f", "%M", "-o", rss.name, *argv], stdout=sink, stderr=subprocess.PIPE)
        err = proc.stderr.read() if proc.stderr else b""
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if proc.stderr:
            proc.stderr.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {err.decode(errors='replace')}")
        return wall, int(rss.read().split()[-1]), usage.ru_utime + usage.ru_stime


def _cli() -> list[str]:
    script = Path(PY).with_name("ebpfmaps")
    return [str(script)] if script.exists() else [PY, "-m", "ebpfmaps.cli"]


def compare(name: str, ours: list[str], theirs: list[str], rounds: int, target: float | None,
            group: str = "cli") -> tuple[harness.Result, list[int], list[int]]:
    """Median wall time of each side over ``rounds`` back-to-back pairs, and the ratio of medians."""
    mine, ref, rss_mine, rss_ref, ratios, cpu_ratios = [], [], [], [], [], []
    run_process(ours)  # warm the page cache and the bytecode
    run_process(theirs)
    for _ in range(rounds):
        a, ra, ca = run_process(ours)
        b, rb, cb = run_process(theirs)
        cpu_ratios.append(ca / cb if cb > 0 else float("nan"))
        mine.append(a * 1e9)
        ref.append(b * 1e9)
        rss_mine.append(ra)
        rss_ref.append(rb)
        ratios.append(a / b)
    py_ns, c_ns = statistics.median(mine), statistics.median(ref)
    notes = (f"peak RSS {statistics.median(rss_mine) / 1024:.1f} MiB vs {statistics.median(rss_ref) / 1024:.1f} MiB; "
             f"ratio of medians {py_ns / c_ns:.2f}; CPU time (user+sys) ratio {statistics.median(cpu_ratios):.2f}")
    result = harness.Result(name=name, group=group, py_ns=py_ns, c_ns=c_ns, ratio=statistics.median(ratios),
                            target=target, elements=1, rounds=rounds, notes=notes, samples_py=mine, samples_c=ref)
    return result, rss_mine, rss_ref


def _filled_hash(path: str, entries: int) -> None:
    m = ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=entries,
                         name="bench_cli")
    try:
        step = 65536
        for start in range(0, entries, step):
            keys = list(range(start, min(start + step, entries)))
            m.update_batch(keys, [k * 3 for k in keys])
        m.pin(path)
    finally:
        m.close()


def run(quick: bool) -> list[harness.Result]:
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        raise RuntimeError("bpftool is not installed (make setup installs it)")
    compileall.compile_dir(str(HERE.parent / "ebpfmaps"), quiet=1)
    rounds = 3 if quick else 9
    big_rounds = 1 if quick else 3
    sizes = (2_000, 10_000) if quick else (100_000, 1_000_000)
    small = 1_000
    n_maps = 20 if quick else 1_000
    cli = _cli()
    results: list[harness.Result] = []
    workdir = tempfile.mkdtemp(prefix="bench-cli-", dir="/sys/fs/bpf")
    extra: list[ebpfmaps.Map] = []
    try:
        one = f"{workdir}/one"
        _filled_hash(one, 16)
        pass_cmd = [PY, "-c", "pass"]
        r, _, _ = compare("import ebpfmaps vs python -c pass", [PY, "-c", "import ebpfmaps"], pass_cmd, rounds,
                          TARGET_IMPORT, group="startup")
        results.append(r)
        get_cmd = [*cli, "get", one, "5", "-k", "u32", "-v", "u64"]
        show_cmd = [*cli, "show", one]
        for label, cmd in (("get", get_cmd), ("show", show_cmd)):
            r, _, _ = compare(f"ebpfmaps {label} vs python -c pass", cmd, pass_cmd, rounds, TARGET_GET_SHOW,
                              group="startup")
            results.append(r)
        r, _, _ = compare("get vs bpftool map lookup", get_cmd,
                          [bpftool, "map", "lookup", "pinned", one, "key", "5", "0", "0", "0"], rounds, None)
        results.append(r)
        r, _, _ = compare("show vs bpftool map show", show_cmd, [bpftool, "map", "show", "pinned", one], rounds, None)
        results.append(r)
        for _ in range(n_maps):
            extra.append(ebpfmaps.ArrayMap(value_size=8, max_entries=1, name="bench_cli_n"))
        r, _, _ = compare(f"list ({n_maps} extra maps) vs bpftool map show", [*cli, "list"],
                          [bpftool, "map", "show"], rounds, None)
        results.append(r)
        r, _, _ = compare(f"list --json ({n_maps} extra maps) vs bpftool -j map show", [*cli, "list", "--json"],
                          [bpftool, "-j", "map", "show"], rounds, None)
        results.append(r)
        for m in extra:
            m.close()
        extra.clear()

        rss_by_size: dict[int, int] = {}
        for entries in (small, *sizes):
            path = f"{workdir}/h{entries}"
            _filled_hash(path, entries)
            r, rss_mine, _ = compare(f"dump --json {entries} entries vs bpftool -j map dump",
                                     [*cli, "dump", path, "--json"], [bpftool, "-j", "map", "dump", "pinned", path],
                                     big_rounds if entries > 100_000 else rounds,
                                     TARGET_DUMP if entries == sizes[0] else None)
            results.append(r)
            rss_by_size[entries] = int(statistics.median(rss_mine))
            os.unlink(path)
        big = sizes[-1]
        rss_ratio = rss_by_size[big] / rss_by_size[small]
        results.append(harness.Result(
            name=f"dump --json peak RSS, {big} vs {small} entries", group="memory",
            py_ns=float(rss_by_size[big]), c_ns=float(rss_by_size[small]), ratio=rss_ratio, target=TARGET_RSS,
            elements=big, rounds=big_rounds,
            notes=f"py_ns/c_ns hold peak RSS in KiB here: {rss_by_size[big] / 1024:.1f} MiB vs "
                  f"{rss_by_size[small] / 1024:.1f} MiB"))
    finally:
        for m in extra:
            m.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


if __name__ == "__main__":
    for res in run("--quick" in sys.argv):
        print(f"{res.name:55s} {res.py_ns / 1e6:9.1f} ms {(res.c_ns or 0) / 1e6:9.1f} ms "
              f"ratio {res.ratio or 0:.2f} target {res.target} {res.notes}")
