"""Shared machinery of the ebpfmaps benchmarks: results, CPU pinning, interleaved timing, the C baseline.

A benchmark module (``bench_*.py`` in this directory, registered in ``run.py``)
exposes ``run(quick: bool) -> list[Result]``. This file gives it:

* :class:`Result`, one row of the table and of ``results.json``;
* :func:`measure`, which times a Python function and its C counterpart in
  alternating rounds on the same CPU and reports medians (alternation spreads
  the noise of a busy machine over both sides instead of biasing one);
* :func:`c_baseline`, the C program (``cbench.c``, linked with ``-lbpf``) built
  into ``benchmarks/build/`` and kept running as a child that inherits the map fds.
"""

from __future__ import annotations

import gc
import os
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
CBENCH_SRC = HERE / "cbench.c"
CBENCH_BIN = BUILD / "cbench"


@dataclass
class Result:
    """One measured case: ns per element for ebpfmaps and for C, and their ratio."""

    name: str  # e.g. "hash lookup (bytes)"
    group: str  # "single op", "batch", "iteration", or a module's own group
    py_ns: float  # median ns per element, ebpfmaps
    c_ns: float | None  # median ns per element, C through libbpf (None: no C counterpart)
    ratio: float | None  # median over rounds of py/c measured back to back
    target: float | None  # the ratio the issue asks for, if any
    elements: int  # elements per round
    rounds: int
    notes: str = ""
    samples_py: list[float] = field(default_factory=list)
    samples_c: list[float] = field(default_factory=list)

    @property
    def met(self) -> bool | None:
        if self.ratio is None or self.target is None:
            return None
        return self.ratio <= self.target

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["met"] = self.met
        return d


# ----------------------------------------------------------------------------- CPU
def pin_cpu(cpu: int | None = None) -> int:
    """Pin this process (and the children it starts later) to one CPU; returns it.

    By default the highest CPU we may run on: CPU 0 tends to take more interrupts.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if cpu is None:
        cpu = allowed[-1]
    os.sched_setaffinity(0, {cpu})
    return cpu


# ----------------------------------------------------------------------------- timing
def measure(
    py: Callable[[], int],
    c: Callable[[], tuple[int, int]] | None,
    *,
    rounds: int,
    warmup: int = 1,
    setup: Callable[[], None] | None = None,
) -> tuple[float, float | None, float | None, list[float], list[float]]:
    """Time ``py`` and ``c`` in alternating rounds; medians of ns per element.

    ``py()`` does one round and returns how many elements it handled (timed here
    with ``perf_counter_ns`` around the call). ``c()`` does one round in C and
    returns ``(total_ns, elements)`` timed inside the C program, so the pipe to it
    is not counted. ``setup`` runs untimed before every round of either side (to
    refill a map, say). The garbage collector is off while timing, as ``timeit``
    does, so one side does not pay for the other's garbage.

    Returns (median py ns, median c ns, median of per-round ratios, py samples, c samples).
    """
    py_samples: list[float] = []
    c_samples: list[float] = []
    ratios: list[float] = []
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for i in range(warmup + rounds):
            # Alternate which side goes first so neither always runs on a cache warmed by the other.
            order = (0, 1) if i % 2 == 0 else (1, 0)
            p_ns = c_ns = 0.0
            for side in order:
                if side == 1 and c is None:
                    continue
                if setup is not None:
                    setup()
                if side == 0:
                    t0 = time.perf_counter_ns()
                    n = py()
                    p_ns = (time.perf_counter_ns() - t0) / max(n, 1)
                else:
                    assert c is not None
                    total, n = c()
                    c_ns = total / max(n, 1)
            if i < warmup:
                continue
            py_samples.append(p_ns)
            if c is not None:
                c_samples.append(c_ns)
                ratios.append(p_ns / c_ns if c_ns else float("inf"))
    finally:
        if gc_was_enabled:
            gc.enable()
    py_med = statistics.median(py_samples)
    if c is None:
        return py_med, None, None, py_samples, c_samples
    return py_med, statistics.median(c_samples), statistics.median(ratios), py_samples, c_samples


def make_result(
    name: str,
    group: str,
    py: Callable[[], int],
    c: Callable[[], tuple[int, int]] | None,
    *,
    rounds: int,
    elements: int,
    target: float | None,
    warmup: int = 1,
    setup: Callable[[], None] | None = None,
    notes: str = "",
) -> Result:
    py_ns, c_ns, ratio, ps, cs = measure(py, c, rounds=rounds, warmup=warmup, setup=setup)
    return Result(name=name, group=group, py_ns=py_ns, c_ns=c_ns, ratio=ratio, target=target, elements=elements,
                  rounds=rounds, notes=notes, samples_py=ps, samples_c=cs)


# ----------------------------------------------------------------------------- C baseline
class CBenchError(RuntimeError):
    pass


def build_cbench() -> Path:
    """Compile cbench.c with -lbpf into benchmarks/build/ (again only when the source is newer)."""
    if CBENCH_BIN.exists() and CBENCH_BIN.stat().st_mtime >= CBENCH_SRC.stat().st_mtime:
        return CBENCH_BIN
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise CBenchError("no C compiler (gcc) found; `make setup` installs it")
    BUILD.mkdir(parents=True, exist_ok=True)
    # A private temporary name, then an atomic rename: two runs building at once never mix outputs.
    tmp = CBENCH_BIN.with_name(f".cbench.{os.getpid()}.tmp")
    proc = subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), str(CBENCH_SRC), "-lbpf"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise CBenchError(f"building {CBENCH_SRC.name} failed:\n{proc.stderr}")
    tmp.replace(CBENCH_BIN)
    return CBENCH_BIN


class CBaseline:
    """The running C baseline; commands go over a pipe, maps are shared by fd inheritance."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self._fds: tuple[int, ...] = ()

    def _start(self, fds: Sequence[int]) -> subprocess.Popen[str]:
        self.close()
        # Started after pin_cpu(), so the child inherits the same single-CPU affinity.
        self._proc = subprocess.Popen([str(build_cbench())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, pass_fds=tuple(fds), bufsize=1)
        self._fds = tuple(fds)
        return self._proc

    def share(self, *fds: int) -> None:
        """Make these map fds (and only these) visible to the C side.

        The child is restarted every time: an fd number the child inherited earlier
        may since have been closed here and reused for another map.
        """
        self._start(sorted(set(fds)))

    def call(self, *words: object) -> tuple[int, int]:
        """Send one command; returns (total_ns, elements)."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise CBenchError("the C baseline is not running; call share(fd) first")
        proc.stdin.write(" ".join(str(w) for w in words) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline().split()
        if not line:
            raise CBenchError(f"the C baseline died on {words!r} (exit {proc.poll()})")
        if line[0] != "ok":
            raise CBenchError(f"C baseline {words!r}: {' '.join(line[1:])}")
        return int(line[1]), int(line[2])

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


_baseline: CBaseline | None = None


def c_baseline() -> CBaseline:
    """The process-wide C baseline (built on first use)."""
    global _baseline
    if _baseline is None:
        build_cbench()
        _baseline = CBaseline()
    return _baseline


def close_baseline() -> None:
    global _baseline
    if _baseline is not None:
        _baseline.close()
        _baseline = None
