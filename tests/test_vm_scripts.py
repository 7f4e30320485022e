"""The VM runner's own pieces, checked on the host in seconds (the VM runs themselves are `make vm-test`)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

VM = ROOT / "vm"
SCRIPTS = sorted(VM.glob("*.sh"))

pytestmark = pytest.mark.no_kernel


def _make_var(name: str) -> list[str]:
    """A variable of the Makefile (with mk/*.mk included), as make expands it."""
    out = subprocess.run(["make", "-s", "-C", str(ROOT), "--eval", f"print-var: ; @echo $({name})", "print-var"],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.split()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)


def test_guest_gets_the_suites_packages_but_its_own_kernel_headers() -> None:
    host = _make_var("DEB_PACKAGES")
    guest = _make_var("VM_GUEST_DEB_PACKAGES")
    assert guest == [p for p in host if p != "linux-headers-amd64"]
    assert "linux-headers-amd64" in host  # the host's 6.1 headers would not match a guest's kernel


def test_vm_test_target_runs_the_runner_for_the_chosen_kernel() -> None:
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "vm-test", "KERNEL=6.12", "VM_PYTEST_ARGS=tests/test_smoke.py"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    runner = [shlex.split(line) for line in out.splitlines() if "vm/run-tests.sh" in line]
    assert runner and runner[-1][-3:] == ["vm/run-tests.sh", "6.12", "tests/test_smoke.py"]


def test_guest_plugin_lifts_the_hypothesis_deadline(tmp_path: Path) -> None:
    # TCG is ~14x slower than the host: hypothesis' 200 ms per-example deadline would fail tests for the emulator.
    (tmp_path / "test_deadline.py").write_text(
        "from hypothesis import settings\n\ndef test_deadline():\n    assert settings().deadline is None\n"
    )
    env = dict(os.environ, PYTHONPATH=str(VM))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "pytest_vm_plugin", "-p", "no:cacheprovider",
                           "-o", "addopts=", str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert "ebpfmaps VM guest: kernel" in proc.stdout  # the report header names the guest's kernel
