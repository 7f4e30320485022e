"""ebpfmaps.btf on the real kernel, and BPF_F_LOCK on hash and array maps whose value holds a bpf_spin_lock.

bpftool reads the map back and formats values from the BTF we loaded, which
checks our type section independently of our own code.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ebpfmaps
from ebpfmaps import BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST, InvalidFlags, KeyExists
from ebpfmaps.btf import Btf, BtfBuilder, SpinLockBtf, spin_lock_value_btf
from ebpfmaps.errors import InvalidArgument, MapClosed
from tests.conftest import bpftool_json

VALUE = struct.Struct("=IIQ")  # lock word, padding, counter: the C layout of {bpf_spin_lock; __u64}


class LockedValue(ctypes.Structure):
    _fields_ = [("lock", ctypes.c_uint32), ("_pad", ctypes.c_uint32), ("counter", ctypes.c_uint64)]


@pytest.fixture
def lock_btf() -> Iterator[SpinLockBtf]:
    r = spin_lock_value_btf()
    yield r
    r.btf.close()


def _locked_map(kind: str, r: SpinLockBtf, **kw: Any) -> ebpfmaps.Map:
    return ebpfmaps.create(kind, key_size=4, value_size=r.value_size, max_entries=16, btf=r.btf,
                           btf_key_type_id=r.key_type_id, btf_value_type_id=r.value_type_id, **kw)


def test_encoding_header_and_ids() -> None:
    b = BtfBuilder()
    u32 = b.add_int("__u32", 4)
    s64 = b.add_int("__s64", 8, signed=True)
    st = b.add_struct("pair", 16, [("a", u32, 0), ("b", s64, 8)])
    assert (u32, s64, st) == (1, 2, 3)
    blob = b.encode()
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("=HBBIIIII", blob)
    assert (magic, version, flags, hdr_len) == (0xEB9F, 1, 0, 24)
    # INT: 12 + 4 bytes each; STRUCT: 12 + 2 members * 12.
    assert type_off == 0 and type_len == 16 + 16 + 36
    assert str_off == type_len and len(blob) == 24 + type_len + str_len
    strings = blob[24 + str_off:]
    assert strings.startswith(b"\0") and strings.split(b"\0")[1:5] == [b"__u32", b"__s64", b"pair", b"a"]
    with b.load() as btf:
        assert btf.fd >= 0 and btf.type_id("pair") == 3


def test_builder_refuses_bad_layouts_before_loading() -> None:
    b = BtfBuilder()
    u32 = b.add_int("__u32", 4)
    with pytest.raises(InvalidArgument, match="past the struct's size"):
        b.add_struct("s", 4, [("a", u32, 2)])
    with pytest.raises(InvalidArgument, match="overlaps"):
        b.add_struct("s", 8, [("a", u32, 0), ("b", u32, 2)])
    with pytest.raises(InvalidArgument, match="unknown type id"):
        b.add_struct("s", 8, [("a", 77, 0)])
    with pytest.raises(InvalidArgument, match="size must be"):
        b.add_int("odd", 3)
    with pytest.raises(InvalidArgument, match="no BTF type"):
        b.type_id("missing")


def test_kernel_refusal_carries_the_verifier_log() -> None:
    b = BtfBuilder()
    b.add_int("__u32", 4)
    # The builder cannot produce an invalid kind, so corrupt its one record: kind 0x63 in the info word.
    record = bytearray(b._types[0])
    record[7] = 0x63
    b._types[0] = bytes(record)
    with pytest.raises(InvalidArgument) as err:
        b.load()
    assert err.value.errno is not None and "kernel log" in str(err.value) and "btf_info" in str(err.value)


def test_btf_close_is_idempotent_and_fd_is_released() -> None:
    r = spin_lock_value_btf()
    fd = r.btf.fd
    assert os.path.exists(f"/proc/self/fd/{fd}")
    r.btf.close()
    r.btf.close()
    assert r.btf.closed
    with pytest.raises(MapClosed):
        _ = r.btf.fd
    assert not os.path.exists(f"/proc/self/fd/{fd}") or os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:btf"


@pytest.mark.parametrize("kind", ["hash", "array"])
def test_lock_update_lookup(kind: str, lock_btf: SpinLockBtf) -> None:
    with _locked_map(kind, lock_btf, key_type=ctypes.c_uint32, value_type=LockedValue) as m:
        info = m.info()
        assert info.btf_id > 0 and info.btf_value_type_id == lock_btf.value_type_id
        key = 3
        m.update(key, LockedValue(0, 0, 41), flags=BPF_F_LOCK)
        got = m.lookup(key, flags=BPF_F_LOCK)
        assert got.counter == 41 and got.lock == 0
        # The kernel never copies the lock word from user space: 0xffffffff written there reads back as 0.
        m.update(key, LockedValue(0xFFFFFFFF, 0, 42), flags=BPF_F_LOCK | BPF_EXIST)
        got = m.lookup(key, flags=BPF_F_LOCK)
        assert (got.lock, got.counter) == (0, 42)
        # Plain lookup/update still work on such a map.
        m.update(key, LockedValue(0, 0, 43))
        assert m.lookup(key).counter == 43


def test_lock_flag_combines_with_noexist_on_hash(lock_btf: SpinLockBtf) -> None:
    with _locked_map("hash", lock_btf) as m:
        k = b"\1\0\0\0"
        m.update(k, VALUE.pack(0, 0, 1), flags=BPF_F_LOCK | BPF_NOEXIST)
        with pytest.raises(KeyExists):
            m.update(k, VALUE.pack(0, 0, 2), flags=BPF_F_LOCK | BPF_NOEXIST)
        assert VALUE.unpack(m.lookup(k, flags=BPF_F_LOCK))[2] == 1


def test_lock_map_seen_by_bpftool_with_btf(lock_btf: SpinLockBtf, pin_path: Path) -> None:
    with _locked_map("hash", lock_btf, name="locked") as m:
        for i in range(5):
            m.update(struct.pack("=I", i), VALUE.pack(0, 0, i * 1000 + 7), flags=BPF_F_LOCK)
        m.pin(pin_path)
        dump = bpftool_json("map", "dump", "pinned", str(pin_path))
        assert isinstance(dump, list)
        formatted = {e["formatted"]["key"]: e["formatted"]["value"] for e in dump}
        assert formatted == {i: {"lock": {"val": 0}, "counter": i * 1000 + 7} for i in range(5)}
        m.unpin()


def test_lock_flag_without_btf_is_refused_before_syscall() -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=16, max_entries=4) as m:
        k = b"\1\0\0\0"
        m.update(k, bytes(16))
        with pytest.raises(InvalidFlags) as err:
            m.update(k, b"\1" * 16, flags=BPF_F_LOCK)
        assert err.value.errno is None  # no syscall was made
        with pytest.raises(InvalidFlags) as err:
            m.lookup(k, flags=BPF_F_LOCK)
        assert err.value.errno is None
        with pytest.raises(InvalidFlags):
            m.update_batch([k], [b"\2" * 16], flags=BPF_F_LOCK)
        assert m.lookup(k) == bytes(16)


def test_lock_map_reopened_keeps_lock_support(lock_btf: SpinLockBtf, pin_path: Path) -> None:
    # A pinned lock map opened elsewhere learns its BTF value type from the kernel, so BPF_F_LOCK is allowed.
    with _locked_map("array", lock_btf) as m:
        m.pin(pin_path)
        with ebpfmaps.open_pinned(pin_path) as again:
            again.update(2, VALUE.pack(0, 0, 9), flags=BPF_F_LOCK)
            assert VALUE.unpack(m.lookup(2, flags=BPF_F_LOCK))[2] == 9
        m.unpin()


def test_map_keeps_btf_alive_after_user_closes_it(lock_btf: SpinLockBtf) -> None:
    m = _locked_map("hash", lock_btf)
    lock_btf.btf.close()  # the kernel map holds its own reference to the BTF object
    m.update(b"\0\0\0\0", VALUE.pack(0, 0, 5), flags=BPF_F_LOCK)
    assert VALUE.unpack(m.lookup(b"\0\0\0\0", flags=BPF_F_LOCK))[2] == 5
    m.close()


def test_btf_object_type_is_exported() -> None:
    assert isinstance(spin_lock_value_btf().btf, Btf)
