"""``watch``: per-second rates between two reads of a real map, top N, per-CPU sums and columns."""

from __future__ import annotations

import ctypes
import io
import subprocess
import sys
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps.errors import InvalidArgument
from ebpfmaps.snapshot import CounterField
from ebpfmaps.watch import Watcher, parse_fields, run

EBPFMAPS = [sys.executable, "-m", "ebpfmaps.cli"]


def test_rates_are_deltas_over_the_time_between_reads() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=64) as m:
        for k in range(10):
            m[k] = 100 * k
        w = Watcher(m, top=3)
        first = w.refresh()
        assert first.entries == 10 and first.interval is None
        assert [r.rates for r in first.rows] == [None] * 3
        assert [r.values[0] for r in first.rows] == [900, 800, 700]  # by value until there are rates
        m[2] += 5000
        m[7] += 10
        m[42] = 300  # new since the last read: counted from zero
        second = w.refresh()
        assert second.interval is not None and second.interval > 0
        by_key = {int.from_bytes(r.key, "little"): r for r in second.rows}
        assert list(by_key) == [2, 42, 7]
        assert by_key[2].rates == pytest.approx((5000 / second.interval,))
        assert by_key[42].rates == pytest.approx((300 / second.interval,))
        assert by_key[7].rates == pytest.approx((10 / second.interval,))


def test_per_cpu_values_are_summed_and_shown_per_cpu() -> None:
    ncpu = ebpfmaps.possible_cpus()
    with ebpfmaps.create("percpu_hash", key_size=4, value_size=16, max_entries=8) as m:
        m[b"\1\0\0\0"] = [(c + 1).to_bytes(8, "little") + (10 * c).to_bytes(8, "little") for c in range(ncpu)]
        w = Watcher(m, fields=parse_fields("packets:0,bytes:8:8"), per_cpu=True, sort="value")
        (row,) = w.refresh().rows
        assert row.values == (sum(range(1, ncpu + 1)), 10 * sum(range(ncpu)))
        assert row.per_cpu == tuple((c + 1, 10 * c) for c in range(ncpu))
        headers, cells = w.table_rows(w.refresh())
        assert headers[:5] == ["key", "packets", "bytes", "packets/s", "bytes/s"]
        assert headers[5:] == [f"cpu{c}" for c in range(ncpu)]
        assert cells[0][0] == "1" and cells[0][3:5] == ["0.0", "0.0"]


def test_bad_arguments_are_refused_before_reading() -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=12, max_entries=8) as m:
        with pytest.raises(InvalidArgument, match="12-byte value"):
            Watcher(m).refresh()
        with pytest.raises(InvalidArgument, match="ends past"):
            Watcher(m, fields=[CounterField("x", 8, 8)]).refresh()
        with pytest.raises(InvalidArgument, match="sort by"):
            Watcher(m, sort="size")
        with pytest.raises(InvalidArgument, match="name:offset"):
            parse_fields("bytes")


def test_plain_output_when_piped() -> None:
    with ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as m:
        m[1] = 7
        out = io.StringIO()
        run(Watcher(m, top=2), interval=0.05, count=2, out=out)
        frames = out.getvalue().strip().split("\n\n")
        assert len(frames) == 2
        assert "4 entries, top 2 by rate" in frames[0]
        assert frames[1].splitlines()[2].split() == ["1", "7", "0.0"]


def test_cli_watch_a_100000_entry_map(pin_path: Path) -> None:
    n = 100_000
    with ebpfmaps.create("percpu_hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=n) as m:
        ncpu = ebpfmaps.possible_cpus()
        m.update_batch(range(n), [[k] * ncpu for k in range(n)])
        m.pin(str(pin_path))
        proc = subprocess.run([*EBPFMAPS, "watch", str(pin_path), "-n", "3", "-c", "2",
                               "-i", "0.1", "--sort", "value"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        last = proc.stdout.strip().split("\n\n")[-1].splitlines()
        assert f"{n} entries, top 3 by value" in last[0]
        assert [line.split()[:2] for line in last[2:]] == [[str(k), str(k * ncpu)] for k in (n - 1, n - 2, n - 3)]


def test_cli_watch_missing_pin_exits_1(pin_path: Path) -> None:
    proc = subprocess.run([*EBPFMAPS, "watch", str(pin_path), "-c", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert str(pin_path) in proc.stderr


def test_live_view_renders_a_rich_table() -> None:
    with ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as m:
        m[2] = 99
        out = io.StringIO()
        run(Watcher(m, top=1), interval=0.05, count=2, out=out, live=True)
        text = out.getvalue()
        assert "value/s" in text and "99" in text and "top 1 by rate" in text
