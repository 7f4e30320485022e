"""pytest plugin loaded only inside the VM guests (``-p pytest_vm_plugin``, see vm/guest-run.sh).

The guests run under QEMU's TCG when KVM is unusable, about 14x slower than the host, so hypothesis' per-example
deadline (200 ms by default) would fail tests for the emulator's speed rather than for the kernel's behaviour.
The deadline is lifted here, before any conftest loads, so a project profile chosen later still wins.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    try:
        from hypothesis import settings
    except ImportError:  # hypothesis is part of the [dev] extra; without it there is nothing to relax
        return
    settings.register_profile("ebpfmaps-vm", deadline=None, print_blob=True)
    settings.load_profile("ebpfmaps-vm")


# Tests of the host, not of the kernel, left to the host run:
# - the documentation site: the host builds it and looks at it with Chromium, which the guest root does not carry;
# - the VM tooling: it checks the machine that boots the guests (its packages own the binaries the runner calls,
#   through dpkg, about 10 minutes under TCG), and a guest boots nothing.
HOST_ONLY_TESTS = frozenset({"test_docs_site.py", "test_vm_scripts.py"})


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    return True if collection_path.name in HOST_ONLY_TESTS else None


def pytest_report_header(config: pytest.Config) -> str:
    accel = os.environ.get("EBPFMAPS_VM_ACCEL", "unknown")
    return f"ebpfmaps VM guest: kernel {platform.release()}, accelerator {accel}"
