"""Pinning: pin/unpin, open_pinned as the right class, clear errors, spec checks listing every
difference, read-only opens, another process on the same pin, and bpftool reading what we wrote."""

from __future__ import annotations

import ctypes
import errno
import json
import os
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import BPF_F_NO_PREALLOC, BPF_F_RDONLY, IncompatibleMap, MapSpec, MapType, PermissionDenied
from ebpfmaps._libbpf import lib
from ebpfmaps.errors import NotOnBpffs, PinNotFound
from tests.conftest import run_python
from tests.core_helpers import KIND_IDS, KINDS, U32, U64, Kind, bpftool_raw, key_for, make, value_for


def test_pin_and_unpin(pin_path: Path) -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=4) as m:
        m[1] = 2
        m.pin(pin_path)
        assert pin_path.exists() and ebpfmaps.is_bpffs(pin_path)
        assert m.pin_path == str(pin_path)
        with ebpfmaps.open_pinned(pin_path) as again:
            assert again.info().id == m.info().id
        m.unpin()
        assert not pin_path.exists() and m.pin_path is None
        assert m[1] == 2  # the map lives on while an fd holds it
        with pytest.raises(PinNotFound):
            ebpfmaps.unpin(pin_path)
        m.pin(pin_path)
        ebpfmaps.unpin(pin_path)  # the module-level spelling
        assert not pin_path.exists()


def test_pin_twice_at_one_path_is_refused(pin_path: Path) -> None:
    with ebpfmaps.create("array", value_size=4, max_entries=2) as a, \
            ebpfmaps.create("array", value_size=4, max_entries=2) as b:
        a.pin(pin_path)
        with pytest.raises(ebpfmaps.MapError) as err:
            b.pin(pin_path)
        assert err.value.errno == errno.EEXIST
        with ebpfmaps.open_pinned(pin_path) as opened:
            assert opened.info().id == a.info().id  # the first pin is untouched
        a.unpin()


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_open_pinned_returns_the_right_class(kind: Kind, pin_path: Path) -> None:
    with make(kind, max_entries=8) as m:
        m[key_for(kind, 3)] = value_for(kind, 3)
        m.pin(pin_path)
        with ebpfmaps.open_pinned(pin_path) as opened:
            assert type(opened) is kind.cls
            assert opened.spec.type == kind.map_type
            assert opened[key_for(kind, 3)] == m[key_for(kind, 3)]
        m.unpin()


def test_path_not_on_bpffs(tmp_path: Path) -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=1) as m:
        target = tmp_path / "pin"
        with pytest.raises(NotOnBpffs, match="not on a bpf filesystem") as err:
            m.pin(target)
        assert str(target) in str(err.value)
        assert not target.exists()
    ordinary = tmp_path / "file"
    ordinary.write_text("not a map")
    with pytest.raises(NotOnBpffs, match="not on a bpf filesystem"):
        ebpfmaps.open_pinned(ordinary)
    with ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=1) as m2:
        with pytest.raises(NotOnBpffs, match="does not exist"):
            m2.pin(tmp_path / "no" / "such" / "pin")


def test_nothing_pinned(bpffs: Path) -> None:
    with pytest.raises(PinNotFound) as err:
        ebpfmaps.open_pinned(bpffs / "nothing_here")
    assert isinstance(err.value, FileNotFoundError) and "nothing is pinned" in str(err.value)


def test_spec_mismatch_lists_every_difference(pin_path: Path) -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=16) as m:
        m.pin(pin_path)
        want = MapSpec(type=int(MapType.HASH), key_size=8, value_size=8, max_entries=32, flags=BPF_F_NO_PREALLOC)
        with pytest.raises(IncompatibleMap) as err:
            ebpfmaps.open_pinned(pin_path, spec=want)
        diffs = err.value.differences
        assert len(diffs) == 3
        assert any(d.startswith("key_size") for d in diffs)
        assert any(d.startswith("max_entries") for d in diffs)
        assert any(d.startswith("flags") for d in diffs)
        for needle in ("key_size", "max_entries", "flags", "want 8, have 4", "want 32, have 16", "NO_PREALLOC"):
            assert needle in str(err.value)
        # Type and value size too, when they differ.
        other = MapSpec(type=int(MapType.ARRAY), key_size=4, value_size=16, max_entries=16)
        with pytest.raises(IncompatibleMap) as err2:
            ebpfmaps.open_pinned(pin_path, spec=other)
        assert {d.split(":")[0] for d in err2.value.differences} == {"type", "value_size"}
        # The map's own spec matches, and failed opens left no fd behind.
        with ebpfmaps.open_pinned(pin_path, spec=m.spec) as ok:
            assert ok.info().id == m.info().id
        m.unpin()


def test_spec_of_a_map_created_rdonly_matches_itself(pin_path: Path) -> None:
    # RDONLY belongs to the creating fd, not the map: the kernel does not report it, and it must
    # not count as a difference.
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=4, flags=BPF_F_RDONLY) as m:
        m.pin(pin_path)
        with ebpfmaps.open_pinned(pin_path, spec=m.spec) as opened:
            assert opened.info().id == m.info().id
        m.unpin()


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_readonly_open(kind: Kind, pin_path: Path) -> None:
    with make(kind, max_entries=8) as m:
        k = key_for(kind, 1)
        m[k] = value_for(kind, 7)
        m.pin(pin_path)
        with ebpfmaps.open_pinned(pin_path, readonly=True) as ro:
            assert not ro.writable
            assert ro[k] == m[k]
            assert list(ro.keys()) == list(m.keys())
            with pytest.raises(PermissionDenied):
                ro[k] = value_for(kind, 8)
            if not kind.is_array:
                with pytest.raises(PermissionDenied):
                    del ro[k]
            with pytest.raises(PermissionDenied):
                ro.update_batch([k], [value_for(kind, 8)])
            # The fd itself is read-only in the kernel: a raw write fails with EPERM.
            raw_value = bytes(ro.value_codec.size)
            assert lib.bpf_map_update_elem(ro.fd, U32.pack(1), raw_value, 0) == -errno.EPERM
        assert m[k] == [value_for(kind, 7)] * ebpfmaps.possible_cpus() if kind.per_cpu else m[k] == value_for(kind, 7)
        m.unpin()


_CHILD_CREATES = """
import sys, ctypes, ebpfmaps
m = ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=1000, name="xproc")
m.update_batch(list(range(500)), [k * k for k in range(500)])
m.pin(sys.argv[1])
"""

_CHILD_READS = """
import sys, ctypes, json, ebpfmaps
m = ebpfmaps.open_pinned(sys.argv[1], key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
print(json.dumps(sorted(m.items())))
"""


def test_pin_in_one_process_open_in_another(pin_path: Path) -> None:
    run_python(_CHILD_CREATES, str(pin_path))  # that process has exited; the pin keeps the map
    with ebpfmaps.open_pinned(pin_path, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64) as m:
        assert m.name == "xproc"
        assert m.to_dict() == {k: k * k for k in range(500)}
        m.delete_batch(list(range(0, 500, 2)))
        m.update_batch(list(range(500, 600)), [1] * 100)
        expected = {k: k * k for k in range(1, 500, 2)} | {k: 1 for k in range(500, 600)}
        assert m.to_dict() == expected
        out = run_python(_CHILD_READS, str(pin_path)).stdout
        assert {k: v for k, v in json.loads(out)} == expected
    ebpfmaps.unpin(pin_path)


def test_bpftool_dump_shows_what_we_wrote_hash(pin_path: Path) -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=12, max_entries=64) as m:
        written = {U32.pack(i * 7919): bytes([i]) * 12 for i in range(40)}
        m.update_batch(list(written), list(written.values()))
        m[U32.pack(7919)] = b"overwritten!"
        written[U32.pack(7919)] = b"overwritten!"
        del m[U32.pack(0)]
        del written[U32.pack(0)]
        m.pin(pin_path)
        assert bpftool_raw(pin_path) == written
        m.unpin()


def test_bpftool_dump_shows_what_we_wrote_array(pin_path: Path) -> None:
    with ebpfmaps.create("array", value_type=ctypes.c_uint64, max_entries=10) as a:
        for i in range(0, 10, 3):
            a[i] = (1 << 60) + i
        a.pin(pin_path)
        expected = {U32.pack(i): U64.pack((1 << 60) + i if i % 3 == 0 else 0) for i in range(10)}
        assert bpftool_raw(pin_path) == expected
        a.unpin()


@pytest.mark.parametrize("kind", ["percpu-hash", "percpu-array", "lru-percpu-hash"])
def test_bpftool_dump_shows_what_we_wrote_per_cpu(kind: str, pin_path: Path) -> None:
    ncpus = ebpfmaps.possible_cpus()
    with ebpfmaps.create(kind, key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=4) as m:
        written = {k: [k * 100 + cpu for cpu in range(ncpus)] for k in range(4)}
        for k, v in written.items():
            m[k] = v
        m.pin(pin_path)
        dumped = bpftool_raw(pin_path)
        assert dumped == {U32.pack(k): [U32.pack(x) for x in v] for k, v in written.items()}
        m.unpin()


def test_open_pinned_refuses_a_non_map_pin(bpffs: Path) -> None:
    # A fresh bpffs holds only our pins; a directory is not a map.
    d = bpffs / "subdir"
    os.mkdir(d)
    with pytest.raises(ebpfmaps.MapError):
        ebpfmaps.open_pinned(d)


def test_pinning_over_an_existing_pin_is_pin_exists(bpffs: Path) -> None:
    with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=1) as m:
        m.pin(bpffs / "taken")
        with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=1) as other:
            with pytest.raises(ebpfmaps.errors.PinExists) as exc:
                other.pin(bpffs / "taken")
            assert isinstance(exc.value, FileExistsError) and exc.value.call == "bpf_obj_pin"
