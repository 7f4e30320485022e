"""The packet histogram lab: XDP (built with ebpfmaps.asm) fills a histogram from real veth traffic."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "lab_packet_histogram.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lab_packet_histogram", EXAMPLE)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_histogram_matches_the_traffic_sent() -> None:
    pytest.importorskip("pyroute2")
    lab = load_example()
    counts = lab.run(packets=120, port=9876, seed=7)
    expected = [0] * lab.SLOTS
    for size in lab.payload_sizes(120, seed=7):
        frame = 14 + 20 + 8 + size  # Ethernet + IPv4 + UDP headers
        expected[frame.bit_length() - 1] += 1
    assert counts == expected


def test_log2_histogram_rendering() -> None:
    lab = load_example()
    text = lab.log2_histogram([0, 0, 0, 0, 0, 4, 0, 2] + [0] * 24, width=8)
    assert text.splitlines() == [
        "                bytes : count     distribution",
        "        32 -> 63        : 4         |********|",
        "        64 -> 127       : 0         |        |",
        "       128 -> 255       : 2         |****    |",
    ]
    assert lab.log2_histogram([0] * 32) == "(no bytes counted)"


def test_runs_as_a_script() -> None:
    pytest.importorskip("pyroute2")
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--packets", "50"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "bytes : count     distribution" in proc.stdout
    assert proc.stdout.strip().endswith("total: 50 frames")
