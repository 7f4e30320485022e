"""Histogram maps printed as bcc prints them: compared with bcc's own print_log2_hist/print_linear_hist.

bcc (Debian's python3-bpfcc) creates the histogram maps from its BPF_HISTOGRAM declarations, fills
them through its own table API, and prints them; ebpfmaps opens the same kernel maps by id and
must print the same text. The plain-formatting tests compare with bcc's module-level printers
on the same lists of counts.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import ebpfmaps
from ebpfmaps import hist
from ebpfmaps.errors import InvalidArgument
from ebpfmaps.map import map_info_from_fd
from tests.test_bcc import bcc_mod  # noqa: F401 -- the fixture: bcc ready to compile, or a named skip/CI failure

EBPFMAPS = [sys.executable, "-m", "ebpfmaps.cli"]

HIST_SOURCE = rb"""
typedef struct { u64 bucket; u64 slot; } dist_key_t;
typedef struct { char comm[16]; u64 slot; } comm_key_t;
BPF_HISTOGRAM(dist);
BPF_HISTOGRAM(sect, dist_key_t);
BPF_HISTOGRAM(bycomm, comm_key_t);
BPF_HISTOGRAM(lin, int, 200);
"""


def bcc_text(print_fn: Callable[..., None], *args: Any, **kw: Any) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_fn(*args, **kw)
    return out.getvalue()


@pytest.fixture(scope="module")
def bcc_hists(bcc_mod: Any) -> Iterator[Any]:  # noqa: F811 -- the imported fixture
    b = bcc_mod.BPF(text=HIST_SOURCE)
    yield b
    b.cleanup()


def same_map(table: Any) -> ebpfmaps.Map:
    return ebpfmaps.open_by_id(map_info_from_fd(table.map_fd).id, readonly=True)


def random_counts(rng: random.Random, n: int, top: int) -> dict[int, int]:
    return {rng.randrange(top): rng.choice([1, 7, rng.randrange(1, 10**rng.randint(1, 12))]) for _ in range(n)}


@pytest.mark.parametrize("seed", range(4))
def test_log2_histogram_text_equals_bccs(bcc_hists: Any, seed: int) -> None:
    rng = random.Random(seed)
    table = bcc_hists[b"dist"]
    table.clear()
    for slot, count in random_counts(rng, 12, 40 if seed % 2 else 20).items():
        table[ctypes.c_int(slot)] = ctypes.c_ulonglong(count)
    with same_map(table) as m:
        for label in ("value", "usecs", "a much longer label"):
            expected = bcc_text(table.print_log2_hist, label)
            assert hist.format_map_hist(m, label) == expected
            assert hist.format_map_hist(m, label, strip_leading_zero=True) == bcc_text(
                table.print_log2_hist, label, strip_leading_zero=True)


def test_sectioned_log2_histogram_text_equals_bccs(bcc_hists: Any) -> None:
    rng = random.Random(7)
    table = bcc_hists[b"sect"]
    table.clear()
    for bucket in (3, 1, 1000):
        for slot, count in random_counts(rng, 6, 30).items():
            table[table.Key(bucket, slot)] = ctypes.c_ulonglong(count)
    with same_map(table) as m:
        expected = bcc_text(table.print_log2_hist, "kbytes", "disk", bucket_sort_fn=sorted)
        assert hist.format_map_hist(m, "kbytes", section_header="disk") == expected
        assert expected.count("disk = ") == 3


def test_char_array_sections_print_like_bccs(bcc_hists: Any) -> None:
    table = bcc_hists[b"bycomm"]
    table.clear()
    for comm, slot, count in ((b"bash", 3, 10), (b"sshd", 5, 2), (b"bash", 4, 1)):
        table[table.Key(comm, slot)] = ctypes.c_ulonglong(count)
    with same_map(table) as m:
        expected = bcc_text(table.print_log2_hist, "usecs", "comm", bucket_sort_fn=sorted)
        assert hist.format_map_hist(m, "usecs", section_header="comm") == expected
        assert "comm = b'bash'" in expected


def test_linear_histogram_text_equals_bccs(bcc_hists: Any) -> None:
    table = bcc_hists[b"lin"]
    table.clear()
    for slot, count in random_counts(random.Random(3), 15, 120).items():
        table[ctypes.c_int(slot)] = ctypes.c_ulonglong(count)
    with same_map(table) as m:
        assert hist.format_map_hist(m, "ms", linear=True) == bcc_text(table.print_linear_hist, "ms")


def test_cli_hist_prints_the_library_text(bcc_hists: Any) -> None:
    table = bcc_hists[b"dist"]
    table.clear()
    for slot, count in ((1, 5), (4, 50), (9, 3)):
        table[ctypes.c_int(slot)] = ctypes.c_ulonglong(count)
    with same_map(table) as m:
        proc = subprocess.run([*EBPFMAPS, "hist", f"id:{m.id}", "--label", "usecs"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == bcc_text(table.print_log2_hist, "usecs")


@pytest.mark.parametrize("seed", range(30))
def test_formatting_equals_bccs_printers_on_the_same_counts(bcc_mod: Any, seed: int) -> None:  # noqa: F811
    rng = random.Random(seed)
    n = rng.choice([3, 20, 33, 40, 65])
    vals = [rng.choice([0, 0, 1, rng.randrange(10 ** rng.randint(1, 15))]) for _ in range(n)] + [0] * (65 - n)
    for strip in (False, True):
        assert hist.format_log2_hist(vals, "nsecs", strip) == bcc_text(bcc_mod.table._print_log2_hist, vals, "nsecs",
                                                                       strip)
        assert hist.format_linear_hist(vals, "x", strip) == bcc_text(bcc_mod.table._print_linear_hist, vals, "x",
                                                                     strip)


def test_per_cpu_counts_are_summed() -> None:
    with ebpfmaps.create("percpu_array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64,
                         max_entries=65) as m:
        ncpu = ebpfmaps.possible_cpus()
        m[3] = [2] * ncpu
        m[5] = list(range(ncpu))
        (h,) = hist.read_histograms(m)
        assert h.section is None
        assert h.counts[3] == 2 * ncpu and h.counts[5] == sum(range(ncpu))
        assert sum(h.counts) == 2 * ncpu + sum(range(ncpu))


def test_a_slot_past_the_histogram_is_refused_with_a_hint() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=8) as m:
        m[70] = 1
        with pytest.raises(InvalidArgument, match=r"slot 70 .*--linear"):
            hist.read_histograms(m)
        assert hist.read_histograms(m, linear=True)[0].counts[70] == 1
    with ebpfmaps.create("hash", key_size=4, value_size=16, max_entries=8) as m, \
            pytest.raises(InvalidArgument, match="16-byte value"):
        hist.read_histograms(m)
