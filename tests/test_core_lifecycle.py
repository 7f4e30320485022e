"""freeze, info() and memlock, list_maps, open_by_id, close and context managers, and no fd leaks."""

from __future__ import annotations

import ctypes
import gc
import os
import resource

import pytest

import ebpfmaps
from ebpfmaps import MapClosed, PermissionDenied
from ebpfmaps.fdinfo import read_fdinfo
from tests.core_helpers import bpftool_show, open_fds, unique_name


def test_freeze_makes_syscall_writes_fail() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=4) as m:
        m[1] = 10
        assert m.info().frozen is False
        m.freeze()
        info = m.info()
        assert info.frozen is True
        assert read_fdinfo(m.fd)["frozen"] == "1"
        assert bpftool_show(info.id)["frozen"] == 1
        with pytest.raises(PermissionDenied, match="frozen"):
            m[2] = 20
        with pytest.raises(PermissionDenied, match="frozen"):
            del m[1]
        assert m[1] == 10  # reads still work
        assert dict(m.items()) == {1: 10}


def test_freeze_array() -> None:
    with ebpfmaps.create("array", value_type=ctypes.c_uint64, max_entries=4) as a:
        a[0] = 5
        a.freeze()
        with pytest.raises(PermissionDenied, match="frozen"):
            a[0] = 6
        assert a[0] == 5


@pytest.mark.parametrize("kind", ["hash", "array", "percpu-hash", "lru-hash"])
def test_info_and_memlock_match_the_kernel(kind: str) -> None:
    name = unique_name("info")
    with ebpfmaps.create(kind, key_size=4, value_size=24, max_entries=300, name=name) as m:
        info = m.info()
        fdinfo = read_fdinfo(m.fd)
        assert info.memlock == int(fdinfo["memlock"]) > 0
        assert (info.key_size, info.value_size, info.max_entries, info.name) == (4, 24, 300, name)
        assert info.type == int(fdinfo["map_type"]) == m.spec.type
        assert info.id == int(fdinfo["map_id"])
        shown = bpftool_show(info.id)
        assert shown["bytes_memlock"] == info.memlock
        assert (shown["bytes_key"], shown["bytes_value"], shown["max_entries"]) == (4, 24, 300)


def test_list_maps_contains_ours() -> None:
    name = unique_name("lst")
    with ebpfmaps.create("lru-hash", key_size=4, value_size=8, max_entries=7, name=name) as m:
        my_id = m.info().id
        mine = [i for i in ebpfmaps.list_maps() if i.id == my_id]
        assert len(mine) == 1
        assert (mine[0].name, mine[0].max_entries, mine[0].type) == (name, 7, int(ebpfmaps.MapType.LRU_HASH))
        assert [i.id for i in ebpfmaps.list_maps() if i.name == name] == [my_id]
        assert my_id in ebpfmaps.map_ids()
    assert my_id not in {i.id for i in ebpfmaps.list_maps()}


def test_open_by_id_round_trip() -> None:
    with ebpfmaps.create("percpu-array", value_type=ctypes.c_uint32, max_entries=4, name=unique_name("byid")) as m:
        m[1] = [3] * ebpfmaps.possible_cpus()
        with ebpfmaps.open_by_id(m.info().id, value_type=ctypes.c_uint32) as other:
            assert type(other) is ebpfmaps.PerCpuArrayMap
            assert other.info().id == m.info().id and other.fd != m.fd
            assert other[1] == [3] * ebpfmaps.possible_cpus()
            other[2] = 9  # written through one fd, read through the other
        assert m[2] == [9] * ebpfmaps.possible_cpus()
        with ebpfmaps.open_by_id(m.info().id, readonly=True) as ro:
            assert ro.lookup(1) is not None
            with pytest.raises(PermissionDenied):
                ro.update(1, bytes(4))
    with pytest.raises(ebpfmaps.KeyNotFound):
        ebpfmaps.open_by_id(0xFFFFFFF0)


def test_close_and_use_after_close() -> None:
    m = ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=4)
    fd = m.fd
    m[1] = 1
    m.close()
    m.close()  # idempotent
    assert m.closed
    assert not os.path.exists(f"/proc/self/fd/{fd}") or "bpf-map" not in os.readlink(f"/proc/self/fd/{fd}")
    for op in (lambda: m.fd, lambda: m.lookup(1), lambda: m.update(1, 2), lambda: m.delete(1), lambda: m.info(),
               lambda: list(m.keys()), lambda: m.lookup_batch(), lambda: m.update_batch([1], [1]), lambda: m.freeze()):
        with pytest.raises(MapClosed):
            op()


def test_context_manager_closes_even_on_error() -> None:
    with pytest.raises(RuntimeError), ebpfmaps.create("array", value_size=4, max_entries=2) as m:
        fd = m.fd
        raise RuntimeError("boom")
    assert m.closed
    assert not os.path.exists(f"/proc/self/fd/{fd}") or "bpf-map" not in os.readlink(f"/proc/self/fd/{fd}")
    with pytest.raises(MapClosed):
        m[0]


def test_no_fd_leaks_from_forgotten_maps() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = open_fds() + 1100
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
    gc.collect()
    baseline = open_fds()
    maps = [ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=1) for _ in range(1000)]
    assert open_fds() >= baseline + 1000
    del maps
    gc.collect()
    assert open_fds() == baseline
    # Failed creations leak nothing either.
    for _ in range(100):
        with pytest.raises(ebpfmaps.errors.InvalidArgument):
            ebpfmaps.create("hash", key_size=0, value_size=4, max_entries=1)
    assert open_fds() == baseline
