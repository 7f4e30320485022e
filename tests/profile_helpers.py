"""Helpers for the profile tests: profile switching, independent fdinfo reads, map lookups by name."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ebpfmaps
from ebpfmaps import StaticPool, profile
from ebpfmaps.pool import DEFAULT_POOL_SIZE

ROOT = Path(__file__).resolve().parent.parent


def unique_name(prefix: str = "pf") -> str:
    """A map name no other test (or helper) will use: up to 15 characters."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"[:15]


def fdinfo_memlock(fd: int) -> int:
    """memlock read straight from /proc/self/fdinfo, independently of ebpfmaps.fdinfo."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("memlock:"):
                return int(line.split()[1])
    raise AssertionError(f"fd {fd} has no memlock line")


def maps_named(name: str) -> list[ebpfmaps.MapInfo]:
    return [i for i in ebpfmaps.list_maps() if i.name == name]


@contextmanager
def embedded_pool(size: int = DEFAULT_POOL_SIZE) -> Iterator[None]:
    """The embedded profile with an empty pool of ``size`` bytes; restores the profile and pool afterwards."""
    before_total = StaticPool.total_size()
    StaticPool.reset()
    StaticPool.configure(size)
    try:
        with profile.using("embedded"):
            yield
    finally:
        StaticPool.reset()
        StaticPool.configure(before_total)


def python_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for key in ("EBPFMAPS_PROFILE", "EBPFMAPS_POOL_SIZE"):
        env.pop(key, None)
    env.update(extra)
    return env


def run(args: list[str], timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a Python program (``[script, ...]`` or ``["-c", code]``) in a fresh interpreter with ``env`` set."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env=python_env(**env), cwd=str(ROOT))


def retry_until(check: Any, attempts: int = 20, pause: float = 0.05) -> bool:
    """True as soon as ``check()`` is; other processes' maps can change global counts meanwhile."""
    for _ in range(attempts):
        if check():
            return True
        time.sleep(pause)
    return False
