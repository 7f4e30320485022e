"""The exporter scraped by a real Prometheus server (Debian's prometheus package, installed by ``make setup``).

The test writes values into a pinned map, runs ``ebpfmaps export`` and a private Prometheus on
127.0.0.1 (its own data directory and free ports) that scrapes it every second, and asks
Prometheus' HTTP API for the values: first the one written before the start, then one written
while both run.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ebpfmaps
from tests.conftest import IN_CI

EBPFMAPS = [sys.executable, "-m", "ebpfmaps.cli"]

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
WAIT = 90.0  # seconds for Prometheus to start and scrape; it normally takes a few


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def prometheus_binary() -> str:
    if not os.access(PROMETHEUS, os.X_OK):
        problem = f"{PROMETHEUS} is missing: `make setup` installs Debian's prometheus package"
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)
    return PROMETHEUS


@pytest.fixture
def exporter_proc(tmp_path: Path, pin_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    config = tmp_path / "exporter.yaml"
    config.write_text(
        "metrics:\n"
        "  - name: ebpfmaps_prom_test_bytes_total\n"
        "    type: counter\n"
        "    help: Bytes by interface, written by the test\n"
        f"    map: {{pin: {pin_path}}}\n"
        "    labels: [{name: ifindex, decode: int, size: 4}]\n")
    proc = subprocess.Popen([*EBPFMAPS, "export", "--config", str(config),
                             "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        # The map is pinned after the exporter starts: it warns that the map is missing, then serves.
        seen = ""
        found = None
        while found is None:
            line = proc.stderr.readline()  # "ebpfmaps export: serving 1 metric on http://127.0.0.1:PORT/metrics"
            assert line, f"exporter did not start: {seen}"
            seen += line
            found = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line)
        assert "is not there yet" in seen
        yield proc, int(found.group(1))
    finally:
        stop(proc)


def start_prometheus(binary: str, tmp_path: Path, exporter_port: int) -> tuple[subprocess.Popen[str], int]:
    """A private Prometheus scraping the exporter every second, once its HTTP API answers.

    Its port is picked free just before it starts; another program may take it meanwhile, so a
    server that exits at start is tried again on another port.
    """
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: ebpfmaps\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n")
    failures = []
    for attempt in range(3):
        port = free_port()
        proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / f'data{attempt}'}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + WAIT
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as resp:
                    if resp.status == 200:
                        return proc, port
            except OSError:
                pass
            time.sleep(0.3)
        stop(proc)
        failures.append(proc.stderr.read() if proc.stderr else "")
    raise AssertionError(f"prometheus did not start: {failures}")


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def wait_for_value(port: int, promql: str, want: float, proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WAIT
    last: Any = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, "prometheus exited"
        try:
            last = query(port, promql)
            if last and float(last[0]["value"][1]) == want:
                return last
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"prometheus never saw {promql} == {want}; last answer: {last}")


def test_prometheus_scrapes_a_value_written_into_a_map(prometheus_binary: str, tmp_path: Path, pin_path: Path,
                                                       exporter_proc: tuple[subprocess.Popen[str], int]) -> None:
    with ebpfmaps.create("percpu_hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64,
                         max_entries=16) as m:
        ncpu = ebpfmaps.possible_cpus()
        m[7] = [1000 + c for c in range(ncpu)]
        m.pin(str(pin_path))
        _, exporter_port = exporter_proc
        prom, prom_port = start_prometheus(prometheus_binary, tmp_path, exporter_port)
        try:
            first = sum(1000 + c for c in range(ncpu))
            result = wait_for_value(prom_port, 'ebpfmaps_prom_test_bytes_total{ifindex="7"}', first, prom)
            assert result[0]["metric"]["job"] == "ebpfmaps"
            assert result[0]["metric"]["instance"] == f"127.0.0.1:{exporter_port}"
            m[7] = [5_000_000] * ncpu  # changed while both run: the next scrapes carry it
            wait_for_value(prom_port, 'ebpfmaps_prom_test_bytes_total{ifindex="7"}', 5_000_000 * ncpu, prom)
            assert float(query(prom_port, 'up{job="ebpfmaps"}')[0]["value"][1]) == 1
            missing = query(prom_port, "ebpfmaps_exporter_map_missing")
            assert [float(r["value"][1]) for r in missing] == [0]
        finally:
            stop(prom)
