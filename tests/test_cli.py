"""The ebpfmaps command against real pinned maps, cross-checked with bpftool and the library."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import ebpfmaps
from tests.conftest import ROOT, bpftool_json


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "ebpfmaps.cli", *args], capture_output=True, text=True, env=env,
                          timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"ebpfmaps {' '.join(args)} failed: {proc.stdout}\n{proc.stderr}")
    return proc


def test_create_set_get_dump_del(pin_path: Path) -> None:
    out = cli("create", "hash", str(pin_path), "--key-size", "4", "--value-size", "8", "--max-entries", "16",
              "--name", "cli_t", "--flag", "no_prealloc").stdout
    assert "pinned at" in out
    info = json.loads(cli("show", str(pin_path), "--json").stdout)
    assert info["type"] == "hash" and info["name"] == "cli_t" and info["flags"] == ["NO_PREALLOC"]
    assert info["key_size"] == 4 and info["value_size"] == 8 and info["max_entries"] == 16
    cli("set", str(pin_path), "5", "77", "-k", "u32", "-v", "u64")
    cli("set", str(pin_path), "0x06000000", "0x0100000000000000")  # raw hex bytes
    assert cli("get", str(pin_path), "5", "-k", "u32", "-v", "u64").stdout.strip() == "77"
    # The library and bpftool see what the CLI wrote.
    m = ebpfmaps.open_pinned(pin_path, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
    assert dict(m.items()) == {5: 77, 6: 1}
    dump = bpftool_json("map", "dump", "pinned", str(pin_path))
    assert len(dump) == 2
    rows = json.loads(cli("dump", str(pin_path), "--json", "-k", "u32", "-v", "u64").stdout)
    assert {r["key"]: r["value"] for r in rows} == {5: 77, 6: 1}
    refused = cli("set", str(pin_path), "5", "1", "-k", "u32", "-v", "u64", "--mode", "noexist", check=False)
    assert refused.returncode == 2 and "KeyExists" in refused.stderr
    assert m[5] == 77  # the refused write changed nothing
    cli("del", str(pin_path), "5", "-k", "u32")
    assert 5 not in m
    missing = cli("get", str(pin_path), "5", "-k", "u32", check=False)
    assert missing.returncode == 1
    m.close()
    cli("unpin", str(pin_path))
    assert not pin_path.exists()


def test_list_shows_map_and_errors_are_clean(pin_path: Path) -> None:
    m = ebpfmaps.ArrayMap(value_size=4, max_entries=3, name="cli_list_t")
    listed = json.loads(cli("list", "--json", "--type", "array").stdout)
    mine = [r for r in listed if r["id"] == m.info().id]
    assert mine and mine[0]["name"] == "cli_list_t" and mine[0]["max_entries"] == 3
    bad = cli("show", str(pin_path.parent / "nothing-here"), check=False)
    assert bad.returncode == 2 and "PinNotFound" in bad.stderr
    notbpf = cli("show", "/tmp/not-a-pin", check=False)
    assert notbpf.returncode == 2
    m.close()


def test_demo_runs_end_to_end() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")
    proc = subprocess.run([sys.executable, "-m", "ebpfmaps.demo"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "KeyExists" in proc.stdout and "this process now sees m[7] = 777" in proc.stdout
    assert not Path("/sys/fs/bpf/ebpfmaps-demo").exists()
