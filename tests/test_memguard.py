"""Maps too large for the machine are refused before the kernel tries to allocate them.

The sizes come from this host's own figures (MemTotal, MemAvailable), so the same
tests hold on a small VM and on a large server. Nothing here allocates gigabytes:
refused maps never reach the kernel, and the opt-out uses a plain array larger than
all RAM, which the kernel's vmalloc refuses at once (ENOMEM) without reclaiming.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import memguard
from ebpfmaps.errors import OutOfMemory
from ebpfmaps.map import Map
from ebpfmaps.maptypes import MapType
from ebpfmaps.spec import MapSpec
from tests.profile_helpers import python_env, unique_name

MIB = 1 << 20
VALUE = MIB  # a plain array's values may be up to KMALLOC_MAX_SIZE (4 MiB or more)


def _mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


def _entries_beyond_ram() -> int:
    """Entries of ``VALUE`` bytes for an array twice the size of all RAM (so beyond MemAvailable too)."""
    return 2 * _mem_total() // VALUE + 1


def _new_maps_named(before: set[int], name: str) -> list[int]:
    out = []
    for map_id in set(ebpfmaps.map_ids()) - before:
        try:
            with ebpfmaps.open_by_id(map_id) as m:
                if m.name == name:
                    out.append(map_id)
        except ebpfmaps.MapError:
            pass  # another process's map, gone meanwhile
    return out


def test_map_beyond_mem_available_is_refused_before_the_syscall() -> None:
    name = unique_name("mg")
    n = _entries_beyond_ram()
    estimate = MapType.ARRAY.memlock_estimate(4, VALUE, n, 0, ebpfmaps.possible_cpus())
    before = set(ebpfmaps.map_ids())
    with pytest.raises(OutOfMemory) as info:
        ebpfmaps.ArrayMap(value_size=VALUE, max_entries=n, name=name)
    msg = str(info.value)
    # Other processes create maps meanwhile: only a map of ours would count.
    assert _new_maps_named(before, name) == []
    assert info.value.errno is None  # ours, not the kernel's ENOMEM
    assert memguard.format_bytes(estimate) in msg and "GiB" in msg
    assert "available" in msg and "MemAvailable" in msg and "allow_overcommit=True" in msg
    assert f"{n} entries" in msg


def test_per_cpu_values_count_for_every_possible_cpu() -> None:
    """The map that took a VM down: 32 KiB per-CPU values, a million entries."""
    spec = MapSpec(type=int(MapType.PERCPU_ARRAY), key_size=4, value_size=32 * 1024, max_entries=1 << 20)
    need = memguard.estimate(spec)
    assert need >= (1 << 20) * 32 * 1024 * ebpfmaps.possible_cpus()
    room = memguard.available()
    assert room is not None
    if need <= room.bytes:
        pytest.skip(f"this host has {room.bytes} bytes available, more than the {need} the map needs")
    name = unique_name("mg")
    before = set(ebpfmaps.map_ids())
    with pytest.raises(OutOfMemory, match=r"possible CPUs.*GiB.*available") as info:
        ebpfmaps.create("percpu-array", value_size=32 * 1024, max_entries=1 << 20, name=name)
    assert _new_maps_named(before, name) == []
    assert info.value.errno is None


def test_opt_out_goes_to_the_kernel() -> None:
    """allow_overcommit=True skips the check: the kernel itself answers (here: vmalloc refuses more than all RAM)."""
    n = _entries_beyond_ram()
    with pytest.raises(OutOfMemory) as info:
        ebpfmaps.ArrayMap(value_size=VALUE, max_entries=n, allow_overcommit=True)
    assert info.value.errno == errno.ENOMEM and "estimate" not in str(info.value)
    with pytest.raises(OutOfMemory) as info:
        ebpfmaps.create("array", value_size=VALUE, max_entries=n, allow_overcommit=True)
    assert info.value.errno == errno.ENOMEM
    spec = MapSpec(type=int(MapType.ARRAY), key_size=4, value_size=VALUE, max_entries=n)
    with pytest.raises(OutOfMemory) as info:
        Map.from_spec(spec)
    assert info.value.errno is None  # checked
    with pytest.raises(OutOfMemory) as info:
        Map.from_spec(spec.replace(allow_overcommit=True))
    assert info.value.errno == errno.ENOMEM
    assert spec.replace(allow_overcommit=True) == spec  # an option of creation, not part of what the map is


def test_maps_that_fit_are_created() -> None:
    # 4 MiB: large enough to be checked (memguard.MIN_CHECKED), far below what any test host has.
    with ebpfmaps.ArrayMap(value_type=ctypes.c_uint64, max_entries=512 * 1024) as a:
        a[7] = 7
        assert a[7] == 7
    with ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=16, allow_overcommit=True) as h:
        h[b"abcd"] = b"12345678"
        assert h.spec.allow_overcommit


# ---------------------------------------------------------------------- cgroups

def _mount(fstype: str, options: str, target: Path) -> bool:
    target.mkdir()
    args = ["mount", "-t", fstype] + (["-o", options] if options else []) + ["none", str(target)]
    if subprocess.run(args, capture_output=True).returncode == 0:
        return True
    target.rmdir()
    return False


def _own_cgroup(controller: str) -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, controllers, path = line.rstrip("\n").split(":", 2)
            if (controller == "" and hid == "0") or controller in controllers.split(","):
                return path
    raise AssertionError(f"no {controller or 'unified'} cgroup in /proc/self/cgroup")


@contextlib.contextmanager
def _limited_cgroup(tmp_path: Path, limit: int) -> Iterator[tuple[str, Path]]:
    """A new memory cgroup limited to ``limit`` bytes, on a private mount: ``(version, directory)``.

    cgroup v2 when its hierarchy offers the memory controller (a private cgroup2 mount, child of
    its root); else the v1 memory hierarchy (a private mount of it, child of this process's own
    memory cgroup), as on hosts where v1 holds the controller.
    """
    mnt = tmp_path / "cgroup2"
    version = ""
    if _mount("cgroup2", "", mnt):
        if "memory" in (mnt / "cgroup.controllers").read_text().split():
            version = "v2"
            if "memory" not in (mnt / "cgroup.subtree_control").read_text().split():
                (mnt / "cgroup.subtree_control").write_text("+memory")
            parent = mnt
        else:
            subprocess.run(["umount", str(mnt)], check=True)
            mnt.rmdir()
    if not version:
        mnt = tmp_path / "cgroup1"
        if not _mount("cgroup", "memory", mnt):
            pytest.skip("no memory cgroup controller to mount (neither v2 nor v1)")
        version = "v1"
        parent = mnt / _own_cgroup("memory").lstrip("/")
    child = parent / f"ebpfmaps-test-{uuid.uuid4().hex[:8]}"
    try:
        child.mkdir()
        (child / ("memory.max" if version == "v2" else "memory.limit_in_bytes")).write_text(str(limit))
        yield version, child
    finally:
        with contextlib.suppress(OSError):
            child.rmdir()
        subprocess.run(["umount", str(mnt)], check=False)
        with contextlib.suppress(OSError):
            mnt.rmdir()


_IN_CGROUP = r"""
import json, sys
import ebpfmaps
from ebpfmaps import memguard
big, small = int(sys.argv[1]), int(sys.argv[2])
out = {"cgroup": open("/proc/self/cgroup").read(), "room": memguard.cgroup_available().source}
try:
    ebpfmaps.ArrayMap(value_size=4096, max_entries=big)
    out["big"] = "created"
except ebpfmaps.OutOfMemory as exc:
    out["big"] = str(exc)
    out["big_errno"] = exc.errno
with ebpfmaps.ArrayMap(value_size=4096, max_entries=small) as m:
    m[1] = b"x" * 4096
    out["small"] = m.info().max_entries
print(json.dumps(out))
"""


def test_cgroup_limit_lower_than_mem_available_is_honoured(tmp_path: Path) -> None:
    limit = 192 * MIB
    big, small = 512 * MIB // 4096, 2 * MIB // 4096  # a 512 MiB array is refused, a 2 MiB one fits
    mem = memguard.mem_available()
    assert mem is not None and mem > 2 * 512 * MIB, "the host must have room for the map outside the cgroup"
    with _limited_cgroup(tmp_path, limit) as (version, child):
        procs = child / "cgroup.procs"

        def enter_cgroup() -> None:  # runs in the child between fork and exec
            procs.write_text(str(os.getpid()))

        proc = subprocess.run([sys.executable, "-c", _IN_CGROUP, str(big), str(small)], capture_output=True,
                              text=True, timeout=120, env=python_env(), preexec_fn=enter_cgroup)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert child.name in out["cgroup"]
    limit_file = "memory.max" if version == "v2" else "memory.limit_in_bytes"
    assert limit_file in out["room"]
    msg = out["big"]
    assert out["big_errno"] is None, msg  # refused by the check, not by the kernel
    assert f"cgroup {version}" in msg and limit_file in msg and "192.0 MiB" in msg and "512.0 MiB" in msg
    assert out["small"] == small
