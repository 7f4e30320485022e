"""The VM runner's own pieces, checked on the host in seconds (the VM runs themselves are `make vm-test`)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

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


def _selfcheck_table() -> list[tuple[str, str, str]]:
    out = subprocess.run(["bash", str(VM / "selfcheck.sh")], env=dict(os.environ, SELFCHECK_PRINT_TABLE="1"),
                         capture_output=True, text=True, check=True, timeout=30).stdout
    rows = [tuple(line.split()) for line in out.splitlines() if line.strip()]
    return [(r[0], r[1], r[2]) for r in rows]


def _dpkg(*args: str) -> str:
    return subprocess.run(["dpkg-query", *args], capture_output=True, text=True, timeout=30).stdout


def _owners(binary: str) -> set[str]:
    """The Debian packages owning a binary's path (as found on PATH, and resolved; merged /usr tried both ways)."""
    import shutil

    found = shutil.which(binary)
    if found is None:
        return set()
    paths = {found, os.path.realpath(found)}
    paths |= {p.removeprefix("/usr") for p in paths if p.startswith("/usr/")}
    owners: set[str] = set()
    for p in paths:
        out = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True, timeout=30).stdout
        owners |= {pkg.split(":")[0].strip() for line in out.splitlines() for pkg in line.split(":", 1)[0].split(",")}
    return owners


def _depends(package: str) -> set[str]:
    raw = _dpkg("-W", "-f=${Depends},${Pre-Depends}", package)
    return {alt.split()[0].split(":")[0] for dep in raw.split(",") for alt in dep.split("|") if alt.strip()}


def test_selfcheck_names_every_binary_the_runner_and_suite_call() -> None:
    table = _selfcheck_table()
    binaries = {b for _, b, _ in table}
    # The binaries virtme-ng and the scripts are known to call, which a fresh machine may lack.
    for needed in ("modprobe", "depmod", "qemu-system-x86_64", "debootstrap", "file", "bpftool", "clang"):
        assert needed in binaries


# Debian 12's Essential and Priority: required packages: every Debian system (and debootstrap's minbase) has them.
BASE_SYSTEM = frozenset({"apt", "bash", "coreutils", "dpkg", "grep", "mawk", "mount", "sed", "tar", "util-linux"})


def test_selfcheck_packages_are_installed_by_the_makefile() -> None:
    installed_by_make = set(_make_var("DEB_PACKAGES")) | set(_make_var("VM_DEB_PACKAGES")) | \
        set(_make_var("DOCS_DEB_PACKAGES"))
    for _, binary, package in _selfcheck_table():
        assert package in BASE_SYSTEM or package in installed_by_make, \
            f"{binary}: package {package} is not installed by the Makefile"


def test_selfcheck_packages_own_their_binaries() -> None:
    # Each binary present here really comes from the package the table names (or from one it depends on:
    # gcc -> gcc-12, llvm -> llvm-14, python3 -> python3-minimal).
    for _, binary, package in _selfcheck_table():
        owners = _owners(binary)
        if not owners:
            continue  # not installed on this host (the VM packages): the names were checked above
        assert package in owners or owners & _depends(package), f"{binary} is from {owners}, the table says {package}"


def test_selfcheck_reports_a_missing_binary_with_its_package(tmp_path: Path) -> None:
    # With PATH holding only bash's folder, nearly everything is "missing": the message names packages to install.
    bash = Path(subprocess.run(["bash", "-c", "command -v bash"], capture_output=True, text=True).stdout.strip())
    proc = subprocess.run(["/bin/bash", str(VM / "selfcheck.sh"), "vm"], env={"PATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=30)
    assert bash.exists()
    assert proc.returncode == 1
    assert "modprobe (kmod)" in proc.stderr and "apt-get install" in proc.stderr


def test_guest_venv_requirements_hold_the_build_backend() -> None:
    """The guest installs the project editable without build isolation, so its venv needs what
    ``[build-system] requires`` names (a setuptools new enough for the SPDX license field)."""
    script = (VM / "build-root.sh").read_text()
    program = script.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    out = subprocess.run([sys.executable, "-", str(VM.parent / "pyproject.toml")], input=program, text=True,
                         capture_output=True, check=True).stdout.split("\n")
    with open(VM.parent / "pyproject.toml", "rb") as f:
        pyproject = tomllib.load(f)
    for requirement in pyproject["build-system"]["requires"] + pyproject["project"]["optional-dependencies"]["dev"]:
        assert requirement in out
