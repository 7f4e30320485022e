"""The benchmark harness runs, and its C baseline really works on our maps.

No timing is asserted: timings depend on the machine and on whatever else runs.
What is asserted is that every case produces a ratio against C, and that the C
side (built from benchmarks/cbench.c with -lbpf) reads and writes the very map
ebpfmaps made.
"""

from __future__ import annotations

import importlib
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ebpfmaps

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


@pytest.fixture
def harness() -> Iterator[Any]:
    """benchmarks/harness.py (benchmarks/ is a directory of scripts, not a package)."""
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("harness")
    finally:
        sys.path.remove(str(BENCH))


def test_quick_run_produces_a_ratio_for_every_core_case(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--modules", "bench_core", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    doc = json.loads(out.read_text())
    assert doc["quick"] is True and not doc["failures"]
    names = {r["name"] for r in doc["results"]}
    # Every case the issue asks for: single ops on hash and array (raw and typed), batches, iteration.
    for kind in ("hash", "array"):
        for label in ("bytes", "typed"):
            for op in ("lookup", "update", "lookup_batch", "update_batch"):
                assert f"{kind} {op} ({label})" in names
    assert any(n.startswith("hash items()") for n in names)
    compared = [r for r in doc["results"] if r["group"] != "breakdown"]
    assert {r["group"] for r in doc["results"]} == {"single op", "single op floor", "GIL", "batch", "iteration",
                                                    "iteration floor", "breakdown"}
    # The single-op floor (a bare ctypes call), the whole-map reads and the GIL choice are there too.
    for op in ("lookup", "update", "delete"):
        assert f"hash {op} (bytes) vs bare ctypes call" in names
    assert {"GIL held vs released, 1 thread", "GIL held vs released, 2 threads"} <= names
    assert any(n.startswith("hash to_numpy()") for n in names)
    assert any(n.startswith("hash dict from") for n in names)  # the Python side of lookup_batch() alone
    for r in compared:
        assert r["py_ns"] > 0 and r["c_ns"] > 0, r
        assert r["ratio"] > 0 and r["target"] in ((None,) if r["group"] in ("GIL", "iteration floor") else (1.1, 1.15, 1.3, 1.5)), r
        assert len(r["samples_py"]) == len(r["samples_c"]) == r["rounds"], r
    # The table printed for people has one row per result.
    assert sum(1 for line in proc.stdout.splitlines() if line.startswith("| ") and "ns/elem" not in line
               and not line.startswith("| ---")) == len(doc["results"])


def test_c_baseline_works_on_the_map_ebpfmaps_created(harness: Any) -> None:
    h = harness
    with ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=64, name="bench_smoke") as m:
        cb = h.CBaseline()
        try:
            cb.share(m.fd)
            # C writes value i at key i for 50 keys (cycling over 10: the last write of each key wins).
            total_ns, n = cb.call("update", m.fd, 4, 8, 50, 10)
            assert n == 50 and total_ns > 0
            assert {struct.unpack("=I", k)[0]: struct.unpack("=Q", v)[0] for k, v in m.items()} == {
                i: i for i in range(10)
            }
            # Python writes more; C's batch walk and get_next_key walk both see every entry.
            m.update_batch([struct.pack("=I", i) for i in range(10, 40)], [bytes(8)] * 30)
            assert cb.call("lookup_batch", m.fd, 4, 8, 16)[1] == 40
            assert cb.call("next_key", m.fd, 4, 8)[1] == 40
            assert cb.call("lookup", m.fd, 4, 8, 100, 40)[1] == 100
            # Errors from libbpf come back as errors, not as timings.
            with pytest.raises(h.CBenchError, match="lookup"):
                cb.call("lookup", m.fd, 4, 8, 64, 64)  # key 40 is absent: ENOENT
        finally:
            cb.close()


def test_interleaved_measure_reports_medians(harness: Any) -> None:
    h = harness
    calls: list[str] = []

    def py() -> int:
        calls.append("py")
        return 10

    def c() -> tuple[int, int]:
        calls.append("c")
        return 1000, 10

    py_ns, c_ns, ratio, ps, cs = h.measure(py, c, rounds=4, warmup=1)
    assert len(ps) == len(cs) == 4 and c_ns == 100.0 and py_ns > 0 and ratio == pytest.approx(py_ns / 100, rel=1)
    # Rounds alternate which side goes first.
    assert calls[:4] == ["py", "c", "c", "py"]


def test_cli_benchmark_measures_whole_processes(harness: Any) -> None:
    """bench_cli times whole processes and reads each one's own peak RSS (not the forking parent's)."""
    bench_cli = importlib.import_module("bench_cli")
    big = b"\x01" * (160 * 1024 * 1024)  # this process is now large (touched pages): children must not inherit it
    wall, rss_kib, cpu = bench_cli.run_process(["bpftool", "version"])
    assert wall > 0 and cpu >= 0 and 0 < rss_kib < 64 * 1024
    _, py_rss, _ = bench_cli.run_process([sys.executable, "-c", "x = b'\\x01' * (64 * 1024 * 1024)"])
    assert 64 * 1024 < py_rss < 150 * 1024
    del big
