"""The optimised element and iteration paths keep every behaviour and check of the slow ones.

Map.lookup/update/delete call libbpf without ctypes argument conversion and take
shortcuts for raw and struct codecs; items()/keys()/values() decode whole
batches. These tests pin what must not change: thread safety of the value
buffers, errors raised before the syscall for bad keys/values (including a user
codec that returns the wrong size), 64-bit flags reaching the kernel, and
iteration results that bpftool agrees with, on both the batch and the
get_next_key paths.
"""

from __future__ import annotations

import ctypes
import struct
import threading
from typing import Any

import pytest

import ebpfmaps
from ebpfmaps import BPF_EXIST, BPF_NOEXIST
from ebpfmaps.codecs import Codec
from ebpfmaps.errors import (
    IndexOutOfRange,
    InvalidArgument,
    InvalidKeySize,
    InvalidValueSize,
    KeyExists,
    KeyNotFound,
)
from tests.conftest import bpftool_json


class _Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint32)]


def test_threads_never_share_a_value_buffer() -> None:
    # ctypes drops the GIL during the syscall: a shared output buffer would hand one thread
    # another thread's value. Each thread owns its keys; value == key * 3 everywhere.
    m = ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4096)
    m.update_batch(list(range(4096)), [k * 3 for k in range(4096)])
    bad: list[tuple[int, Any]] = []

    def reader(base: int) -> None:
        for _ in range(20):
            for k in range(base, 4096, 8):
                v = m.lookup(k)
                if v != k * 3:
                    bad.append((k, v))
                if m.lookup_bytes(k) != struct.pack("=Q", k * 3):
                    bad.append((k, "bytes"))

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == []
    m.close()


def test_user_codec_of_the_wrong_size_is_refused_before_the_syscall() -> None:
    class Short(Codec):
        def encode(self, value: Any) -> bytes:
            return b"\x01\x02"  # 2 bytes for an 8-byte value: the kernel would read past it

    class AsBytearray(Codec):
        def encode(self, value: Any) -> bytes:
            return bytearray(value)  # type: ignore[return-value]

    with ebpfmaps.HashMap(key_size=4, value_type=Short(8), max_entries=8) as m:
        with pytest.raises(InvalidValueSize):
            m.update(b"\0\0\0\0", 5)
        assert m.lookup_bytes(b"\0\0\0\0") is None  # nothing was written
    with ebpfmaps.HashMap(key_type=Short(4), value_size=8, max_entries=8) as m:
        with pytest.raises(InvalidKeySize):
            m.lookup(1)
        with pytest.raises(InvalidKeySize):
            m.delete(1)
    with ebpfmaps.HashMap(key_type=AsBytearray(4), value_type=AsBytearray(8), max_entries=8) as m:
        m.update(b"abcd", b"12345678")  # bytes-like output of the right size is fine
        assert m.lookup_bytes(b"abcd") == b"12345678"


def test_bad_typed_values_raise_the_library_errors() -> None:
    with ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=8) as m:
        for bad_key in (-1, 1 << 32, "x", 1.5):
            with pytest.raises(InvalidArgument):
                m.update(bad_key, 1)
        with pytest.raises(InvalidArgument):
            m.update(1, -1)
        with pytest.raises(InvalidKeySize):
            m.lookup(b"\0\0\0")  # raw bytes of the wrong size
        assert m.lookup(b"\x01\0\0\0") is None  # raw bytes of the right size are accepted
        assert list(m.items()) == []


def test_update_flags_reach_the_kernel() -> None:
    # Flags travel as a 64-bit C argument; NOEXIST/EXIST must keep their meaning.
    with ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=8) as m:
        k = b"\x07\0\0\0"
        with pytest.raises(KeyNotFound):
            m.update(k, bytes(8), BPF_EXIST)
        m.update(k, b"A" * 8, BPF_NOEXIST)
        with pytest.raises(KeyExists):
            m.update(k, b"B" * 8, BPF_NOEXIST)
        m.update(k, b"C" * 8, BPF_EXIST)
        assert m[k] == b"C" * 8


def test_array_indices_out_of_range() -> None:
    with ebpfmaps.ArrayMap(value_type=ctypes.c_uint64, max_entries=10) as a:
        assert a.lookup(10) is None and a.get(10, "d") == "d" and 10 not in a
        with pytest.raises(KeyNotFound):
            a[10]
        with pytest.raises(IndexOutOfRange):
            a[10] = 1
        with pytest.raises(IndexOutOfRange):
            a.update_batch([0, 10], [1, 2])
        assert a.lookup(0) == 0  # the failed batch wrote nothing
        a.update_batch(range(10), range(100, 110))
        assert dict(a.items()) == {i: 100 + i for i in range(10)}


@pytest.mark.parametrize("batched", [True, False], ids=["batch", "get_next_key"])
def test_iteration_decodes_what_bpftool_sees(batched: bool) -> None:
    n = 5000
    with ebpfmaps.HashMap(key_size=4, value_type=_Pair, max_entries=n, name="hot_iter") as m:
        m.update_batch([struct.pack("=I", i) for i in range(n)], [_Pair(i, i * 2) for i in range(n)])
        if not batched:
            m._batch_ok = False  # force the get_next_key walk (types without kernel batches use it)
        items = {struct.unpack("=I", k)[0]: (v.a, v.b) for k, v in m.items()}
        assert items == {i: (i, i * 2) for i in range(n)}
        assert sorted(struct.unpack("=I", k)[0] for k in m.keys()) == list(range(n))
        assert sorted(v.b for v in m.values()) == [i * 2 for i in range(n)]
        assert len(m) == n
        dump = bpftool_json("map", "dump", "id", str(m.info().id))
        assert isinstance(dump, list)
        seen = {int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little"):
                int.from_bytes(bytes(int(b, 16) for b in e["value"][4:]), "little") for e in dump}
        assert seen == {k: b for k, (_, b) in items.items()}


def test_items_is_lazy_and_survives_deletes_meanwhile() -> None:
    n = 20000
    with ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=n) as m:
        m.update_batch(range(n), range(n))
        it = m.items()
        first = next(it)  # one kernel batch read so far
        m.delete_batch(range(0, n, 2))  # delete half of the map behind the iterator's back
        rest = list(it)
        got = dict([first, *rest])
        assert all(k == v for k, v in got.items())
        assert {k for k in range(1, n, 2)} <= set(got)  # every survivor was seen
        assert len(got) < n  # and later batches did not bring back deleted keys


@pytest.mark.parametrize("value_type", [ctypes.c_uint64, ctypes.c_uint32, ctypes.c_int16, "<d", "<IH"])
def test_per_cpu_batches_round_trip_with_padding(value_type: Any) -> None:
    # The batch codecs read and write every CPU's 8-byte slot in one struct call; the padding
    # after a short value must be zeros and must never leak into the decoded values.
    ncpu = ebpfmaps.possible_cpus()
    vals: list[Any]
    if value_type == "<IH":
        vals = [(i, i + 1) for i in range(50)]
    elif value_type == "<d":
        vals = [i + 0.25 for i in range(50)]
    else:
        vals = [i - 20 if value_type is ctypes.c_int16 else i for i in range(50)]
    with ebpfmaps.PerCpuHashMap(key_type=ctypes.c_uint32, value_type=value_type, max_entries=64) as m:
        m.update_batch(range(50), vals)
        per_cpu = [vals[3]] * (ncpu - 1) + [vals[4]]
        m.update_batch([60, 61], [vals[1], per_cpu])  # a scalar and a per-CPU list in one batch
        got = m.lookup_batch()
        assert {k: list(v) for k, v in got.items()} == {
            **{i: [vals[i]] * ncpu for i in range(50)}, 60: [vals[1]] * ncpu, 61: per_cpu
        }
        assert dict(m.items()) == got and list(m.lookup(61)) == per_cpu
        size = m.value_codec.elem.size  # type: ignore[attr-defined]
        raw = m.lookup_bytes(7)
        assert raw is not None and len(raw) == 8 * ncpu
        for cpu in range(ncpu):
            assert raw[cpu * 8 + size : cpu * 8 + 8] == bytes(8 - size)  # zero padding
        if value_type is ctypes.c_uint32:
            dump = bpftool_json("map", "lookup", "id", str(m.info().id), "key", "7", "0", "0", "0")
            assert isinstance(dump, dict)
            assert [int.from_bytes(bytes(int(b, 16) for b in v["value"]), "little") for v in dump["values"]] == [7] * ncpu


def test_batch_writes_refuse_a_short_packed_buffer_from_a_user_codec() -> None:
    class ShortMany(Codec):
        def encode_many(self, values: Any) -> tuple[bytes, int]:
            items = list(values)
            return b"\0" * (self.size * len(items) - 1), len(items)  # one byte short

    with ebpfmaps.HashMap(key_type=ShortMany(4), value_size=8, max_entries=8) as m:
        with pytest.raises(InvalidKeySize):
            m.update_batch([b"a"], [bytes(8)])
        with pytest.raises(InvalidKeySize):
            m.delete_batch([b"a"])
    with ebpfmaps.HashMap(key_size=4, value_type=ShortMany(8), max_entries=8) as m:
        with pytest.raises(InvalidValueSize):
            m.update_batch([b"abcd"], [b"x"])
        assert list(m.items()) == []


def test_dict_spellings_follow_a_subclass_that_overrides_the_element_ops() -> None:
    """m[k], m[k] = v and del m[k] are Map's hot paths, except where a subclass has its own
    lookup/update/delete: there they call the subclass's methods."""
    calls: list[str] = []

    class Audited(ebpfmaps.HashMap):
        def lookup(self, key: Any, flags: int = 0) -> Any:
            calls.append("lookup")
            return super().lookup(key, flags)

        def update(self, key: Any, value: Any, flags: int = 0) -> None:
            calls.append("update")
            super().update(key, value, flags)

        def delete(self, key: Any) -> None:
            calls.append("delete")
            super().delete(key)

    with Audited(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as m:
        m[1] = 10
        assert m[1] == 10
        del m[1]
        with pytest.raises(KeyNotFound):
            m[1]
        assert calls == ["update", "lookup", "delete", "lookup"]
    with ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as plain:
        plain[2] = 20
        assert plain[2] == 20 and plain.lookup(3) is None
        with pytest.raises(KeyNotFound):
            plain[3]
        with pytest.raises(InvalidArgument):
            plain["two"]
        del plain[2]
        with pytest.raises(KeyNotFound):
            del plain[2]
