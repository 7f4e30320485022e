"""Bulk helpers (lookup_many, update_many) and the numpy export (to_numpy), against real kernel maps."""

from __future__ import annotations

import ctypes
import uuid
from pathlib import Path

import numpy as np
import pytest

import ebpfmaps
from ebpfmaps import BPF_NOEXIST
from ebpfmaps import map as map_module
from ebpfmaps.errors import BatchError, InvalidArgument, KeyExists, OutOfMemory
from tests.core_helpers import bpftool_raw


class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint16), ("c", ctypes.c_uint16)]


def test_lookup_many_matches_single_lookups() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=5000) as m:
        m.update_batch(list(range(0, 5000, 2)), [k * 7 for k in range(0, 5000, 2)])
        keys = list(range(100, 1100))  # half present, half absent
        got = m.lookup_many(keys)
        assert got == [m.lookup(k) for k in keys]
        assert got[:4] == [700, None, 714, None]
        assert m.lookup_many(range(0, 10, 2)) == [0, 14, 28, 42, 56]
        assert m.lookup_many([]) == []
        with pytest.raises(InvalidArgument):
            m.lookup_many(["not an int"])


def test_lookup_many_raw_and_struct_values() -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=16) as raw:
        raw[b"abcd"] = b"12345678"
        assert raw.lookup_many([b"abcd", b"zzzz", b"abcd"]) == [b"12345678", None, b"12345678"]
    with ebpfmaps.create("array", value_type=Pair, max_entries=8) as arr:
        arr[3] = Pair(1, 2, 3)
        got = arr.lookup_many([3, 0])
        assert [(p.a, p.b, p.c) for p in got] == [(1, 2, 3), (0, 0, 0)]


def test_update_many_writes_like_update() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=3000) as m:
        assert m.update_many(range(3000), [k + 1 for k in range(3000)]) == 3000
        assert m.lookup_batch() == {k: k + 1 for k in range(3000)}
        assert m.update_many([], []) == 0
        with pytest.raises(InvalidArgument):
            m.update_many([1, 2], [1])


def test_update_many_stops_at_the_first_refusal() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=3) as m:
        with pytest.raises(BatchError) as info:
            m.update_many([10, 11, 12, 13, 14], [1, 2, 3, 4, 5])
        assert info.value.done == 3
        assert isinstance(info.value.cause, OutOfMemory)
        assert m.lookup_batch() == {10: 1, 11: 2, 12: 3}
        # Refused at the first element: the error itself, nothing written.
        with pytest.raises(OutOfMemory):
            m.update_many([20], [1])
        assert len(m) == 3


def test_update_many_noexist_failure_leaves_the_map_as_it_was() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=10) as m:
        m[2] = 99
        with pytest.raises(KeyExists):
            m.update_many([0, 1, 2, 3], [5, 6, 7, 8], BPF_NOEXIST)
        assert m.lookup_batch() == {2: 99}


def test_update_many_agrees_with_bpftool(bpffs: Path) -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=64) as m:
        keys = [i.to_bytes(4, "little") for i in range(64)]
        values = [(i * 3).to_bytes(4, "little") for i in range(64)]
        assert m.update_many(keys, values) == 64
        pin = bpffs / f"bulk_{uuid.uuid4().hex[:12]}"
        m.pin(pin)
        try:
            assert bpftool_raw(pin) == dict(zip(keys, values))
        finally:
            m.unpin()


def test_to_numpy_typed_raw_struct_and_per_cpu(bpffs: Path) -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=70_000) as m:
        m.update_batch(list(range(70_000)), [k * 5 for k in range(70_000)])  # more than the first allocation
        a = m.to_numpy()
        assert a.dtype.names == ("key", "value") and a["key"].dtype == np.uint32 and a["value"].dtype == np.uint64
        assert len(a) == 70_000
        assert dict(zip(a["key"].tolist(), a["value"].tolist())) == m.lookup_batch()
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=16) as raw:
        raw[b"abcd"] = b"12345678"
        r = raw.to_numpy()
        assert r["key"].tobytes() == b"abcd" and r["value"].tobytes() == b"12345678"
        pin = bpffs / f"bulk_np_{uuid.uuid4().hex[:12]}"
        raw.pin(pin)
        try:
            assert bpftool_raw(pin) == {r["key"][0].tobytes(): r["value"][0].tobytes()}
        finally:
            raw.unpin()
    with ebpfmaps.create("array", value_type=Pair, max_entries=4) as arr:
        arr[1] = Pair(7, 8, 9)
        s = arr.to_numpy()
        assert s["key"].tolist() == [0, 1, 2, 3]
        assert (int(s["value"]["a"][1]), int(s["value"]["b"][1]), int(s["value"]["c"][1])) == (7, 8, 9)
    with ebpfmaps.create("percpu_hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as pc:
        pc[5] = 11
        p = pc.to_numpy()
        assert p["key"].tolist() == [5]
        assert p["value"][0].tolist() == [11] * ebpfmaps.possible_cpus()
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as empty:
        assert len(empty.to_numpy()) == 0


def test_to_numpy_grows_past_its_first_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    # The array is sized for the map up to a byte cap; a map past the cap grows it batch by batch.
    monkeypatch.setattr(map_module, "_NUMPY_PREALLOC", 1024)
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=10_000) as m:
        m.update_batch(list(range(9_000)), [k * 3 for k in range(9_000)])
        a = m.to_numpy(batch_size=512)
        assert len(a) == 9_000
        assert dict(zip(a["key"].tolist(), a["value"].tolist())) == {k: k * 3 for k in range(9_000)}


def test_iter_numpy_streams_the_map_in_batches() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=5_000) as m:
        m.update_batch(list(range(5_000)), [k + 1 for k in range(5_000)])
        parts = list(m.iter_numpy(batch_size=1_000))
        assert len(parts) >= 5 and all(0 < len(p) <= 1_000 for p in parts)
        assert all(p.dtype == m.to_numpy().dtype for p in parts)
        joined = np.concatenate(parts)
        assert dict(zip(joined["key"].tolist(), joined["value"].tolist())) == m.lookup_batch()
        with pytest.raises(InvalidArgument):
            m.iter_numpy(batch_size=0)  # at the call, before any read
    # A type without kernel batches streams the get_next_key walk's chunks instead.
    with ebpfmaps.create("lpm_trie", key_size=8, value_size=4, max_entries=100, flags=ebpfmaps.BPF_F_NO_PREALLOC) as t:
        for i in range(70):
            t[(32).to_bytes(4, "little") + bytes([10, 0, 0, i])] = i.to_bytes(4, "little")
        rows = np.concatenate(list(t.iter_numpy()))
        assert len(rows) == 70
        assert sorted(int.from_bytes(v.tobytes(), "little") for v in rows["value"]) == list(range(70))
        assert len(t.to_numpy()) == 70
