"""Shared fixtures: real kernel, real bpffs, no mocks.

Under CI=true a missing bpf() syscall or bpffs fails the whole run instead of
skipping. Outside CI the kernel tests are skipped with the probe's reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

_probe_error: str | None = None


def _probe_kernel() -> str | None:
    """None when bpf() and bpffs work here, else why not."""
    try:
        import ebpfmaps
    except Exception as exc:  # libbpf missing, etc.
        return f"cannot import ebpfmaps: {exc}"
    try:
        with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=1):
            pass
    except Exception as exc:
        return f"bpf() map creation failed: {exc}"
    d = tempfile.mkdtemp(prefix="ebpfmaps-probe-")
    try:
        ebpfmaps.mount_bpffs(d)
        from ebpfmaps.pinning import umount

        umount(d)
    except Exception as exc:
        return f"cannot mount bpffs: {exc}"
    finally:
        os.rmdir(d)
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _probe_error
    _probe_error = _probe_kernel()
    if _probe_error and IN_CI:
        pytest.exit(f"CI=true and the kernel tests cannot run: {_probe_error}", returncode=1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _probe_error:
        skip = pytest.mark.skip(reason=f"no usable bpf()/bpffs here: {_probe_error}")
        for item in items:
            if "no_kernel" not in item.keywords:
                item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_kernel: test does not need bpf() or bpffs")


@pytest.fixture
def bpffs() -> Iterator[Path]:
    """A private bpf filesystem mounted for this test, unmounted (with its pins) afterwards."""
    import ebpfmaps
    from ebpfmaps.pinning import umount

    d = Path(tempfile.mkdtemp(prefix="ebpfmaps-bpffs-"))
    ebpfmaps.mount_bpffs(d)
    try:
        yield d
    finally:
        umount(d)
        d.rmdir()


@pytest.fixture
def pin_path(bpffs: Path) -> Path:
    """A fresh path inside a private bpffs."""
    return bpffs / f"m_{uuid.uuid4().hex[:8]}"


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (another process) with ebpfmaps importable; raises on failure."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"subprocess failed ({proc.returncode}):\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def bpftool_json(*args: str) -> object:
    """``bpftool -j ARGS`` parsed; bpftool is an independent reader of what we wrote."""
    exe = shutil.which("bpftool") or "/usr/sbin/bpftool"
    out = subprocess.run([exe, "-j", *args], capture_output=True, text=True, check=True, timeout=60)
    # bpftool may print a warning object ({"warning": ...} or {"error": ...}) before its answer on some
    # kernels: take every JSON value it printed, and the answer is the one that is not such a notice.
    decoder = json.JSONDecoder()
    values: list[object] = []
    text, pos = out.stdout, 0
    while True:
        while pos < len(text) and (text[pos].isspace() or text[pos] == ","):
            pos += 1
        if pos >= len(text):
            break
        value, pos = decoder.raw_decode(text, pos)
        values.append(value)
    answers = [v for v in values if not (isinstance(v, dict) and set(v) <= {"warning", "error"})]
    assert len(answers) == 1, f"bpftool -j {' '.join(args)} printed {values!r} (stderr: {out.stderr!r})"
    return answers[0]
