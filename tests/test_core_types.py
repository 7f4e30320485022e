"""The six core map types on the real kernel: creation spellings, CRUD, update flags, names, creation flags, LRU.

Where the library refuses something before the syscall, the error's ``errno`` is
None (the library raised it, not the kernel). Where we claim the kernel would
refuse a flag, raw libbpf is called without our checks to confirm it does.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

import pytest

import ebpfmaps
from ebpfmaps import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_MMAPABLE,
    BPF_F_NO_COMMON_LRU,
    BPF_F_NO_PREALLOC,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_F_WRONLY_PROG,
    BPF_F_ZERO_SEED,
    BPF_NOEXIST,
    InvalidFlags,
    KeyExists,
    KeyNotFound,
    MapType,
    NotSupported,
    OutOfMemory,
    PermissionDenied,
)
from ebpfmaps._libbpf import lib, new_opts, structs
from ebpfmaps.errors import ENOTSUPP, IndexOutOfRange, InvalidArgument
from ebpfmaps.maptypes import BPF_F_INNER_MAP, BPF_F_PRESERVE_ELEMS
from tests.core_helpers import (
    HASH_KINDS,
    KIND_IDS,
    KINDS,
    U32,
    Kind,
    bpftool_show,
    expected_value,
    key_for,
    make,
    open_fds,
    unique_name,
    value_for,
)

# ---------------------------------------------------------------------------------------------- creation


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_create_by_maptype_keyword_and_int(kind: Kind) -> None:
    spellings: list[MapType | str | int] = [
        kind.map_type,
        kind.keyword,
        kind.keyword.replace("-", "_"),
        kind.keyword.upper().replace("-", "_"),
        int(kind.map_type),
    ]
    for spelling in spellings:
        with ebpfmaps.create(spelling, key_size=4, value_size=8, max_entries=4) as m:
            assert type(m) is kind.cls
            info = m.info()
            assert info.type == kind.map_type and m.spec.type == kind.map_type
            assert (info.key_size, info.value_size, info.max_entries) == (4, 8, 4)
    # The class itself creates the same kind of map.
    with kind.cls(key_size=4, value_size=8, max_entries=4) as m:
        assert m.info().type == kind.map_type


def test_create_refuses_unknown_types_before_syscall() -> None:
    with pytest.raises(InvalidArgument) as err:
        ebpfmaps.create("no-such-map", key_size=4, value_size=8, max_entries=4)
    assert err.value.errno is None
    with pytest.raises(InvalidArgument, match="creates hash maps"):
        ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=4, map_type="array")


def test_array_defaults_from_with_entries_spelling() -> None:
    with ebpfmaps.ArrayMap.with_entries(value_size=4, max_entries=100) as a:
        assert (a.key_size, a.value_size, a.max_entries) == (4, 4, 100)
        a.update(5, (42).to_bytes(4, "little"))
        assert a.lookup(5) == (42).to_bytes(4, "little")
        assert len(a) == 100


# ---------------------------------------------------------------------------------------------- CRUD


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_crud_and_dict_protocol(kind: Kind) -> None:
    with make(kind, max_entries=16) as m:
        k1, k2, k_absent = key_for(kind, 1), key_for(kind, 2), key_for(kind, 9)
        v1, v2, v3 = value_for(kind, 11), value_for(kind, 22), value_for(kind, 33)
        if kind.is_array:
            # Array elements always exist, zero-initialised.
            assert m.lookup(k_absent) == expected_value(kind, m, bytes(8))
        else:
            assert m.lookup(k_absent) is None
            assert k_absent not in m
            assert m.get(k_absent, "dflt") == "dflt"
            with pytest.raises(KeyNotFound):
                m[k_absent]
            with pytest.raises(KeyError):  # KeyNotFound is a KeyError for dict-style code
                m[k_absent]
        m.update(k1, v1)
        m[k2] = v2
        assert m.lookup(k1) == expected_value(kind, m, v1)
        assert m[k2] == expected_value(kind, m, v2)
        assert k1 in m
        m[k1] = v3  # replace
        assert m[k1] == expected_value(kind, m, v3)
        assert m.lookup(k2) == expected_value(kind, m, v2)  # untouched
        if kind.is_array:
            with pytest.raises(NotSupported) as err:
                m.delete(k1)
            assert err.value.errno is None
            with pytest.raises(NotSupported):
                del m[k1]
            assert m[k1] == expected_value(kind, m, v3)
        else:
            m.delete(k1)
            assert m.lookup(k1) is None and k1 not in m
            del m[k2]
            assert m.lookup(k2) is None
            with pytest.raises(KeyNotFound) as missing:
                m.delete(k1)
            assert missing.value.errno == errno.ENOENT


def test_array_delete_is_refused_by_kernel_too() -> None:
    # Our NotSupported mirrors the kernel: array_map_delete_elem returns EINVAL.
    with ebpfmaps.create("array", value_size=8, max_entries=4) as a:
        assert lib.bpf_map_delete_elem(a.fd, U32.pack(1)) == -errno.EINVAL


@pytest.mark.parametrize("kind", HASH_KINDS, ids=[k.keyword for k in HASH_KINDS])
def test_update_flags_on_hash_kinds(kind: Kind) -> None:
    with make(kind, max_entries=16) as m:
        k, other = key_for(kind, 1), key_for(kind, 2)
        v1, v2 = value_for(kind, 1), value_for(kind, 2)
        # BPF_EXIST on an absent key: KeyNotFound, nothing inserted.
        with pytest.raises(KeyNotFound) as nf:
            m.update(k, v1, BPF_EXIST)
        assert nf.value.errno == errno.ENOENT
        assert m.lookup(k) is None
        # BPF_NOEXIST inserts a new key...
        m.update(k, v1, BPF_NOEXIST)
        assert m[k] == expected_value(kind, m, v1)
        # ...and refuses an existing one, leaving the old value.
        with pytest.raises(KeyExists) as ke:
            m.update(k, v2, BPF_NOEXIST)
        assert ke.value.errno == errno.EEXIST
        assert m[k] == expected_value(kind, m, v1)
        # BPF_EXIST replaces an existing key; BPF_ANY inserts or replaces.
        m.update(k, v2, BPF_EXIST)
        assert m[k] == expected_value(kind, m, v2)
        m.update(other, v1, BPF_ANY)
        m.update(other, v2, BPF_ANY)
        assert m[other] == expected_value(kind, m, v2)


@pytest.mark.parametrize("kind", [k for k in KINDS if k.is_array], ids=["array", "percpu-array"])
def test_update_flags_on_array_kinds(kind: Kind) -> None:
    with make(kind, max_entries=4) as m:
        # Every index exists: NOEXIST always fails, EXIST always works (kernel arraymap.c).
        with pytest.raises(KeyExists):
            m.update(0, value_for(kind, 1), BPF_NOEXIST)
        assert m[0] == expected_value(kind, m, bytes(8))
        m.update(3, value_for(kind, 3), BPF_EXIST)
        assert m[3] == expected_value(kind, m, value_for(kind, 3))


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_bad_update_flags_refused_before_syscall(kind: Kind) -> None:
    with make(kind) as m:
        k = key_for(kind, 1)
        for flags in (BPF_NOEXIST | BPF_EXIST, 8, 1 << 40):
            with pytest.raises(InvalidFlags) as err:
                m.update(k, value_for(kind, 1), flags)
            assert err.value.errno is None
        assert m.lookup(k) in (None, expected_value(kind, m, bytes(8)))


@pytest.mark.parametrize("kind", [k for k in KINDS if k.is_array], ids=["array", "percpu-array"])
def test_array_index_out_of_range(kind: Kind) -> None:
    with make(kind, max_entries=4) as m:
        for bad in (4, 1000, -1):
            with pytest.raises(IndexOutOfRange) as err:
                m.update(bad, value_for(kind, 1))
            assert err.value.errno is None
            assert isinstance(err.value, IndexError)
        with pytest.raises(IndexOutOfRange):
            m.update(U32.pack(4), value_for(kind, 1))  # raw key bytes are checked as well
        assert m.lookup(4) is None
        with pytest.raises(KeyNotFound):
            m[4]
        # The kernel's own answer for the same write, without our check: E2BIG.
        assert lib.bpf_map_update_elem(m.fd, U32.pack(4), bytes(m.value_codec.size), 0) == -errno.E2BIG


def test_hash_full_raises_out_of_memory_and_keeps_contents() -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=4) as m:
        for i in range(4):
            m[U32.pack(i)] = value_for(KINDS[0], i)
        with pytest.raises(OutOfMemory) as err:
            m[U32.pack(99)] = bytes(8)
        assert err.value.errno == errno.E2BIG
        assert sorted(m.keys()) == [U32.pack(i) for i in range(4)]
        m[U32.pack(2)] = b"replaced"  # replacing an existing key still works in a full map
        assert m[U32.pack(2)] == b"replaced"


# ---------------------------------------------------------------------------------------------- names


def test_names_valid_and_visible_to_bpftool() -> None:
    name = unique_name("ok.")
    assert len(name) == 15  # the longest the kernel takes (BPF_OBJ_NAME_LEN - 1)
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=4, name=name) as m:
        assert m.name == name and m.info().name == name
        assert bpftool_show(m.info().id)["name"] == name


@pytest.mark.parametrize("bad", ["a" * 16, "has-dash", "sp ace", "ünï", "slash/x"])
def test_bad_names_refused_before_syscall(bad: str) -> None:
    before = open_fds()
    with pytest.raises(InvalidArgument) as err:
        ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=4, name=bad)
    assert err.value.errno is None
    assert repr(bad) in str(err.value)
    assert open_fds() == before


def test_kernel_agrees_about_bad_name_chars() -> None:
    # Without our check, the kernel refuses the same name (bpf_obj_name_cpy: EINVAL).
    opts = new_opts(structs.BpfMapCreateOpts)
    fd = lib.bpf_map_create(int(MapType.HASH), b"has-dash", 4, 8, 4, ctypes.byref(opts))
    if fd >= 0:
        os.close(fd)
    assert fd == -errno.EINVAL


# ---------------------------------------------------------------------------------------------- creation flags

# What the kernel accepts, per type (kernel/bpf/hashtab.c htab_map_alloc_check and
# kernel/bpf/arraymap.c array_map_alloc_check); every other candidate flag is refused.
CANDIDATE_FLAGS = {
    "NO_PREALLOC": BPF_F_NO_PREALLOC,
    "NO_COMMON_LRU": BPF_F_NO_COMMON_LRU,
    "NUMA_NODE": BPF_F_NUMA_NODE,
    "RDONLY": BPF_F_RDONLY,
    "WRONLY": BPF_F_WRONLY,
    "ZERO_SEED": BPF_F_ZERO_SEED,
    "RDONLY_PROG": BPF_F_RDONLY_PROG,
    "WRONLY_PROG": BPF_F_WRONLY_PROG,
    "MMAPABLE": BPF_F_MMAPABLE,
    "PRESERVE_ELEMS": BPF_F_PRESERVE_ELEMS,
    "INNER_MAP": BPF_F_INNER_MAP,
}
_COMMON = {"RDONLY", "WRONLY", "RDONLY_PROG", "WRONLY_PROG"}
ACCEPTED = {
    "hash": _COMMON | {"NO_PREALLOC", "NUMA_NODE", "ZERO_SEED"},
    "array": _COMMON | {"NUMA_NODE", "MMAPABLE", "INNER_MAP"},
    "percpu-hash": _COMMON | {"NO_PREALLOC", "ZERO_SEED"},
    "percpu-array": set(_COMMON),
    "lru-hash": _COMMON | {"NUMA_NODE", "ZERO_SEED", "NO_COMMON_LRU"},
    "lru-percpu-hash": _COMMON | {"ZERO_SEED", "NO_COMMON_LRU"},
}
# RDONLY/WRONLY belong to the creating fd, not the map: the kernel drops them from map_flags
# (bpf_map_flags_retain_permanent), so info() cannot show them.
_FD_ONLY = {"RDONLY", "WRONLY"}

_ACCEPT_CASES = [(k, f) for k in KINDS for f in sorted(ACCEPTED[k.keyword])]
_REFUSE_CASES = [(k, f) for k in KINDS for f in sorted(set(CANDIDATE_FLAGS) - ACCEPTED[k.keyword])]


def _flag_kwargs(flag: str) -> dict[str, int]:
    return {"numa_node": 0} if flag == "NUMA_NODE" else {}


@pytest.mark.parametrize("kind,flag", _ACCEPT_CASES, ids=[f"{k}-{f}" for k, f in _ACCEPT_CASES])
def test_accepted_creation_flag(kind: Kind, flag: str) -> None:
    bit = CANDIDATE_FLAGS[flag]
    with make(kind, flags=bit, **_flag_kwargs(flag)) as m:
        assert m.spec.flags & bit
        reported = m.info().flags
        if flag in _FD_ONLY:
            assert not reported & bit
        else:
            assert reported & bit
            assert bpftool_show(m.info().id)["flags"] == reported


@pytest.mark.parametrize("kind,flag", _REFUSE_CASES, ids=[f"{k}-{f}" for k, f in _REFUSE_CASES])
def test_refused_creation_flag(kind: Kind, flag: str) -> None:
    bit = CANDIDATE_FLAGS[flag]
    before = open_fds()
    with pytest.raises(InvalidFlags) as err:
        make(kind, flags=bit, **_flag_kwargs(flag))
    assert err.value.errno is None and flag in str(err.value)
    assert open_fds() == before
    # The kernel refuses it as well (so our check is not stricter than the kernel).
    opts = new_opts(structs.BpfMapCreateOpts, map_flags=bit)
    fd = lib.bpf_map_create(int(kind.map_type), None, 4, 8, 16, ctypes.byref(opts))
    if fd >= 0:
        os.close(fd)
    # htab_map_alloc_check answers ENOTSUPP (524) for an LRU without preallocation, EINVAL otherwise.
    assert fd in (-errno.EINVAL, -ENOTSUPP)


@pytest.mark.parametrize("pair", [BPF_F_RDONLY | BPF_F_WRONLY, BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG])
def test_exclusive_access_flags(pair: int) -> None:
    with pytest.raises(InvalidFlags) as err:
        ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=4, flags=pair)
    assert err.value.errno is None
    opts = new_opts(structs.BpfMapCreateOpts, map_flags=pair)
    fd = lib.bpf_map_create(int(MapType.HASH), None, 4, 8, 4, ctypes.byref(opts))
    if fd >= 0:
        os.close(fd)
    assert fd == -errno.EINVAL


def test_numa_node_needs_a_node_and_numa_node_sets_the_flag() -> None:
    with pytest.raises(InvalidArgument) as err:
        ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=4, flags=BPF_F_NUMA_NODE)
    assert err.value.errno is None
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=4, numa_node=0) as m:
        assert m.info().flags & BPF_F_NUMA_NODE
    with pytest.raises(InvalidFlags):  # per-CPU values have no single NUMA node
        ebpfmaps.create("percpu-hash", key_size=4, value_size=8, max_entries=4, numa_node=0)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_rdonly_map_refuses_syscall_writes(kind: Kind) -> None:
    with make(kind, flags=BPF_F_RDONLY) as m:
        k = key_for(kind, 1)
        assert not m.writable
        with pytest.raises(PermissionDenied, match="read-only"):
            m.update(k, value_for(kind, 1))
        if not kind.is_array:
            with pytest.raises(PermissionDenied):
                m.delete(k)
            assert m.lookup(k) is None  # reads work
        else:
            assert m.lookup(k) == expected_value(kind, m, bytes(8))
        # The kernel itself refuses (not only our flag check): EPERM from the raw call.
        assert lib.bpf_map_update_elem(m.fd, U32.pack(1), bytes(m.value_codec.size), 0) == -errno.EPERM


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_wronly_map_refuses_syscall_reads(kind: Kind) -> None:
    with make(kind, flags=BPF_F_WRONLY) as m:
        k = key_for(kind, 1)
        m.update(k, value_for(kind, 1))  # writes work
        with pytest.raises(PermissionDenied, match="WRONLY") as err:
            m.lookup(k)
        assert err.value.errno == errno.EPERM
        with pytest.raises(PermissionDenied):
            list(m.keys())


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("flag", [BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG], ids=["RDONLY_PROG", "WRONLY_PROG"])
def test_prog_side_flags_leave_syscall_access_alone(kind: Kind, flag: int) -> None:
    # These restrict BPF programs only; user space keeps reading and writing.
    with make(kind, flags=flag) as m:
        k = key_for(kind, 2)
        m[k] = value_for(kind, 5)
        assert m[k] == expected_value(kind, m, value_for(kind, 5))
        assert m.info().flags & flag


def test_no_prealloc_charges_less_memory_up_front() -> None:
    # A preallocated hash pays for every element at creation; NO_PREALLOC pays per insert.
    from ebpfmaps.features import memlock_tracks_usage

    if not memlock_tracks_usage():
        pytest.skip("the running kernel reports memlock as a size formula, not live usage (probe)")
    with ebpfmaps.create("hash", key_size=4, value_size=64, max_entries=4096) as pre, \
            ebpfmaps.create("hash", key_size=4, value_size=64, max_entries=4096, flags=BPF_F_NO_PREALLOC) as lazy:
        pre_mem, lazy_mem = pre.info().memlock, lazy.info().memlock
        assert pre_mem is not None and lazy_mem is not None
        assert lazy_mem < pre_mem
        for i in range(100):
            lazy[U32.pack(i)] = bytes(64)
        assert len(lazy) == 100


def test_zero_seed_hash_works() -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=64, flags=BPF_F_ZERO_SEED) as m:
        for i in range(64):
            m[U32.pack(i)] = value_for(KINDS[0], i)
        assert {k: m[k] for k in m.keys()} == {U32.pack(i): value_for(KINDS[0], i) for i in range(64)}


def test_mmapable_array_is_shared_memory() -> None:
    with ebpfmaps.create("array", value_size=8, max_entries=512, flags=BPF_F_MMAPABLE) as a:
        a.update(3, (0xDEADBEEF).to_bytes(8, "little"))
        length = mmap.PAGESIZE  # 512 * 8 bytes = one page
        mem = mmap.mmap(a.fd, length, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            assert mem[24:32] == (0xDEADBEEF).to_bytes(8, "little")
            mem[40:48] = (77).to_bytes(8, "little")  # written through memory, read through the syscall
            assert a.lookup(5) == (77).to_bytes(8, "little")
        finally:
            mem.close()
    with ebpfmaps.create("array", value_size=8, max_entries=8) as plain:
        with pytest.raises(OSError):
            mmap.mmap(plain.fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ)


# ---------------------------------------------------------------------------------------------- LRU


@pytest.mark.parametrize("kind", [k for k in KINDS if k.lru], ids=["lru-hash", "lru-percpu-hash"])
@pytest.mark.parametrize("flags", [0, BPF_F_NO_COMMON_LRU], ids=["common-lru", "no-common-lru"])
def test_lru_evicts_and_stays_within_max_entries(kind: Kind, flags: int) -> None:
    max_entries = 256
    with make(kind, max_entries=max_entries, flags=flags) as m:
        inserted = 4 * max_entries
        for i in range(inserted):
            m.update(U32.pack(i), value_for(kind, i))  # never "map full": LRU evicts instead
            if i % 128 == 0:
                assert len(m) <= max_entries
        keys = list(m.keys())
        # LRU evicts from per-CPU free lists before max_entries is reached, so no exact count.
        assert 0 < len(keys) <= max_entries
        assert len(set(keys)) == len(keys)
        assert U32.pack(inserted - 1) in m  # the newest entry survived
        # What survived holds the values written for those keys.
        for kb in keys:
            assert m[kb] == expected_value(kind, m, value_for(kind, U32.unpack(kb)[0]))
