"""Mmapable arrays: views coherent with syscalls both ways, numpy, lifetime after close, freeze, read-only."""

from __future__ import annotations

import ctypes
import gc
import time
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps.errors import InvalidFlags, KeyNotFound, NotSupported
from tests.conftest import run_python
from tests.types_support import bpftool, hex_bytes


def _wait_gone(map_id: int) -> bool:
    """Whether the kernel freed map ``map_id`` within a second (freeing is deferred by RCU)."""
    for _ in range(100):
        try:
            ebpfmaps.open_by_id(map_id).close()
        except KeyNotFound:
            return True
        time.sleep(0.01)
    return False


def test_views_and_syscalls_are_coherent_both_ways() -> None:
    with ebpfmaps.ArrayMap(value_type=ctypes.c_uint64, max_entries=1000, mmapable=True) as m:
        assert m.info().flags & ebpfmaps.BPF_F_MMAPABLE and m.stride == 8
        arr = m.numpy()
        assert arr.shape == (1000,) and arr.dtype.itemsize == 8 and arr.flags.writeable
        m[3] = 33  # syscall write -> visible in the mapping
        assert arr[3] == 33
        arr[4] = 44  # plain memory write -> visible to the syscall
        assert m[4] == 44
        arr[:] = range(1000)
        assert m.lookup_batch() == {i: i for i in range(1000)}
        m.update_batch(range(10), [7] * 10)
        assert list(arr[:10]) == [7] * 10
        view = m.values_view()
        assert len(view) == 8000 and not view.readonly
        assert bytes(m.value_view(999)) == (999).to_bytes(8, "little")


def test_padded_values_use_the_kernel_stride() -> None:
    with ebpfmaps.ArrayMap(value_size=12, max_entries=5, mmapable=True) as m:
        assert m.stride == 16  # round_up(value_size, 8)
        m[2] = b"abcdefghijkl"
        assert bytes(m.value_view(2)) == b"abcdefghijkl"
        raw = m.numpy()
        assert raw.shape == (5, 12)
        raw[3, :] = 1
        assert m[3] == b"\x01" * 12
        words = m.numpy(dtype="<u4")
        assert words.shape == (5, 3) and words[2, 0] == int.from_bytes(b"abcd", "little")
        with pytest.raises(ebpfmaps.errors.InvalidArgument):
            m.numpy(dtype="<u8")  # 8 does not divide 12
        with pytest.raises(ebpfmaps.errors.IndexOutOfRange):
            m.value_view(5)


def test_structured_values_as_a_numpy_record_array() -> None:
    class Pair(ctypes.Structure):
        _fields_ = [("packets", ctypes.c_uint32), ("bytes", ctypes.c_uint64)]

    with ebpfmaps.ArrayMap(value_type=Pair, max_entries=4, mmapable=True) as m:
        arr = m.numpy()
        arr["packets"][1] = 3
        arr["bytes"][1] = 1500
        got = m[1]
        assert (got.packets, got.bytes) == (3, 1500)


def test_closing_the_map_with_live_views_is_safe() -> None:
    m = ebpfmaps.ArrayMap(value_type=ctypes.c_uint32, max_entries=64, mmapable=True)
    arr = m.numpy()
    view = m.value_view(1)
    m[0] = 5
    map_id = m.id
    m.close()
    del m
    gc.collect()
    # The mapping holds the kernel map: the memory stays valid and shared until the views go,
    # and the map still exists (another fd sees what the orphaned views wrote).
    assert arr[0] == 5
    arr[0] = 6
    view[0] = 9
    assert arr[1] == 9
    still = ebpfmaps.open_by_id(map_id)
    assert still.lookup_bytes(0) == (6).to_bytes(4, "little")
    still.close()
    del arr, view
    gc.collect()
    assert _wait_gone(map_id), "releasing the last view must unmap and free the map"


def test_close_without_views_unmaps_at_once() -> None:
    m = ebpfmaps.ArrayMap(value_size=4, max_entries=8, mmapable=True)
    bytes(m.values_view()[:4])  # map it, keep no view
    map_id = m.id
    m.close()
    gc.collect()
    assert _wait_gone(map_id)
    with pytest.raises(ebpfmaps.MapClosed):
        m.values_view()


def test_freeze_and_read_only_mappings(pin_path: Path) -> None:
    with ebpfmaps.ArrayMap(value_type=ctypes.c_uint32, max_entries=4, mmapable=True) as m:
        m[1] = 11
        view = m.values_view()
        with pytest.raises(ebpfmaps.errors.MapBusy):
            m.freeze()  # the kernel refuses while a writable mapping exists
        view.release()
        m.freeze()
        ro = m.values_view()
        assert ro.readonly and ro[m.stride] == 11  # element 1 starts one stride in (8 bytes for a u32)
        m.pin(pin_path)
    other = ebpfmaps.open_pinned(pin_path)  # frozen: mapped read-only even through a writable fd
    assert isinstance(other, ebpfmaps.ArrayMap)
    assert other.numpy(dtype="<u4")[1] == 11 and not other.numpy().flags.writeable
    other.close()
    readonly = ebpfmaps.open_pinned(pin_path, readonly=True)
    assert isinstance(readonly, ebpfmaps.ArrayMap)
    with pytest.raises(NotSupported, match="read-only"):
        readonly.numpy()  # the kernel cannot map a read-only fd (do_mmap drops VM_SHARED)
    readonly.close()


def test_refusals() -> None:
    with ebpfmaps.ArrayMap(value_size=4, max_entries=4) as plain:
        with pytest.raises(NotSupported, match="mmapable"):
            plain.values_view()
    with pytest.raises(InvalidFlags):
        ebpfmaps.PerCpuArrayMap(value_size=4, max_entries=4, flags=ebpfmaps.BPF_F_MMAPABLE)


def test_another_process_and_bpftool_see_mapped_writes(pin_path: Path) -> None:
    with ebpfmaps.ArrayMap(value_type=ctypes.c_uint32, max_entries=8, mmapable=True) as m:
        m.pin(pin_path)
        m.numpy()[2] = 0xABCD
        dump = bpftool("map", "lookup", "pinned", str(pin_path), "key", "2", "0", "0", "0")
        assert int.from_bytes(hex_bytes(dump["value"]), "little") == 0xABCD
        run_python("import sys, ebpfmaps\n"
                   "m = ebpfmaps.open_pinned(sys.argv[1])\n"
                   "m.numpy(dtype='<u4')[5] = 77\n", str(pin_path))
        assert m[5] == 77
