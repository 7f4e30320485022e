"""Port of the Linux tree's tools/testing/selftests/bpf/test_maps.c (the user-space scenarios).

Each test names its C function. The C main runs most scenarios twice, with map_opts.map_flags 0 and
BPF_F_NO_PREALLOC: those are parametrized over ``MAP_FLAGS``. Where the C calls
``bpf_map_get_next_key`` the walk is kept in a companion ``*_get_next_key`` test (``Map.next_key``),
and the main test checks the same state through the library's iteration.

Sizes: test_maps.c uses MAP_SIZE 32K and 100 forked tasks; from Python (and in the emulated VMs,
~14x slower) that would take minutes, so MAP_SIZE and TASKS are scaled down below, the scenarios kept.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_NO_PREALLOC,
    BPF_F_RDONLY,
    BPF_F_WRONLY,
    BPF_F_ZERO_SEED,
    BPF_NOEXIST,
    MapType,
    features,
)
from ebpfmaps.errors import (
    IndexOutOfRange,
    InvalidArgument,
    InvalidFlags,
    InvalidKeySize,
    KeyExists,
    KeyNotFound,
    MapBusy,
    MapError,
    NotSupported,
    OutOfMemory,
    PermissionDenied,
)
from ebpfmaps.spec import MapSpec
from tests.selftests._support import next_key

# test_maps.c: MAP_SIZE (32 * 1024) and TASKS 100, scaled down (see the module docstring).
MAP_SIZE = 1024
TASKS = 8

MAP_FLAGS = [pytest.param(0, id="prealloc"), pytest.param(BPF_F_NO_PREALLOC, id="no_prealloc")]

i64 = ctypes.c_int64
NR_CPUS = ebpfmaps.possible_cpus()


def hash_map(max_entries: int, flags: int, **kw: object) -> ebpfmaps.HashMap:
    """bpf_map_create(BPF_MAP_TYPE_HASH, NULL, sizeof(long long), sizeof(long long), max_entries, &map_opts)."""
    kw.setdefault("key_type", i64)
    kw.setdefault("value_type", i64)
    return ebpfmaps.HashMap(max_entries=max_entries, flags=flags, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- hash
@functools.cache
def _big_hash_keys() -> bool:
    """Probe: does the running kernel create hash maps with 4 KiB keys? Older kernels refuse keys larger
    than the BPF stack (512 bytes) with E2BIG."""
    try:
        ebpfmaps.HashMap(key_type=BigKey, value_type=ctypes.c_int, max_entries=1).close()
    except InvalidArgument as exc:
        if exc.errno == errno.E2BIG:
            return False
        raise
    return True


def require_big_hash_keys() -> None:
    if not _big_hash_keys():
        pytest.skip("the running kernel refuses hash keys larger than 512 bytes (probe)")


def _take(m: ebpfmaps.Map, key: int) -> object:
    """m.lookup_and_delete(key) where the kernel has it for the type (probe); else the kernel must refuse
    it, and a lookup then a delete stands in."""
    if features.lookup_and_delete_supported(MapType(m.type)):
        return m.lookup_and_delete(key)
    with pytest.raises(NotSupported):
        m.lookup_and_delete(key)
    value = m[key]
    del m[key]
    return value


@pytest.mark.parametrize("flags", MAP_FLAGS)
def test_hashmap(flags: int) -> None:
    """test_maps.c: test_hashmap."""
    with hash_map(2, flags) as m:
        m.update(1, 1234, BPF_ANY)
        # BPF_NOEXIST means add new element if it doesn't exist: key=1 already exists.
        with pytest.raises(KeyExists) as exc:
            m.update(1, 0, BPF_NOEXIST)
        assert exc.value.errno == errno.EEXIST
        # -1 is an invalid flag (the kernel says EINVAL; the library refuses it first).
        with pytest.raises(InvalidFlags):
            m.update(1, 0, -1)
        assert m.lookup(1) == 1234

        m.update(2, 1234, BPF_ANY)
        # Check that key=2 matches the value and delete it (lookup then delete where the kernel has no
        # keyed lookup_and_delete for hash maps: before Linux 5.14, probed).
        assert _take(m, 2) == 1234
        assert m.lookup(2) is None
        # BPF_EXIST means update existing element: key=2 is not there.
        with pytest.raises(KeyNotFound) as exc_nf:
            m.update(2, 1234, BPF_EXIST)
        assert exc_nf.value.errno == errno.ENOENT
        m.update(2, 1234, BPF_NOEXIST)

        # key=1 and key=2 were inserted, key=0 cannot be inserted due to max_entries.
        with pytest.raises(OutOfMemory) as exc_full:
            m.update(0, 1234, BPF_NOEXIST)
        assert exc_full.value.errno == errno.E2BIG
        # Update existing elements, though the map is full.
        m.update(1, 1234, BPF_EXIST)
        m.update(2, 1234, BPF_ANY)
        with pytest.raises(OutOfMemory):
            m.update(3, 1234, BPF_NOEXIST)

        # key=0 doesn't exist.
        with pytest.raises(KeyNotFound):
            m.delete(0)
        # Iterate over two elements (the walk itself: test_hashmap_get_next_key).
        assert sorted(m.keys()) == [1, 2]
        assert dict(m.items()) == {1: 1234, 2: 1234}

        m.delete(1)
        m.delete(2)
        with pytest.raises(KeyNotFound):
            m.delete(2)
        # The map is empty.
        assert list(m.keys()) == [] and len(m) == 0


@pytest.mark.parametrize("flags", MAP_FLAGS)
def test_hashmap_get_next_key(flags: int) -> None:
    """test_maps.c: test_hashmap, its bpf_map_get_next_key walk over two elements and the empty map."""
    with hash_map(2, flags) as m:
        m[1] = 1234
        m[2] = 1234
        first = next_key(m, None)
        assert first in (1, 2)
        # key=0 is not in the map: the walk starts over at the first key.
        assert next_key(m, 0) == first
        second = next_key(m, first)
        assert second in (1, 2) and second != first
        assert next_key(m, second) is None
        del m[1]
        del m[2]
        assert next_key(m, None) is None
        assert next_key(m, 0) is None


@pytest.mark.parametrize("flags", MAP_FLAGS)
def test_hashmap_sizes(flags: int) -> None:
    """test_maps.c: test_hashmap_sizes: every power-of-two key size 1..512 with value size 1..256 KiB."""
    created = 0
    for ks in (1 << i for i in range(10)):
        for vs in (1 << j for j in range(19)):
            try:
                m = ebpfmaps.HashMap(key_size=ks, value_size=vs, max_entries=2, flags=flags)
            except OutOfMemory as exc:  # the C test stops at the first ENOMEM
                assert exc.errno == errno.ENOMEM
                return
            assert (m.key_size, m.value_size, m.max_entries) == (ks, vs, 2)
            m.close()
            created += 1
    assert created == 10 * 19


@pytest.mark.parametrize("flags", MAP_FLAGS)
def test_hashmap_percpu(flags: int) -> None:
    """test_maps.c: test_hashmap_percpu."""
    values = [i + 100 for i in range(NR_CPUS)]
    with ebpfmaps.PerCpuHashMap(key_type=i64, value_type=ctypes.c_long, max_entries=2, flags=flags) as m:
        expected_key_mask = 0
        m.update(1, values, BPF_ANY)
        # Lookup and delete elem key=1 and check value.
        got = _take(m, 1)
        assert list(got) == values and got[0] == 100
        # Insert key=1 element which should not exist.
        m.update(1, values, BPF_NOEXIST)
        expected_key_mask |= 1
        with pytest.raises(KeyExists):
            m.update(1, values, BPF_NOEXIST)
        with pytest.raises(InvalidFlags):
            m.update(1, values, -1)
        # key=1 can be found, with the value of every CPU.
        assert m.lookup(1)[0] == 100

        assert m.lookup(2) is None
        with pytest.raises(KeyNotFound):
            m.update(2, values, BPF_EXIST)
        assert not expected_key_mask & 2
        m.update(2, values, BPF_NOEXIST)
        expected_key_mask |= 2

        # key=1 and key=2 were inserted, key=0 cannot be inserted due to max_entries.
        with pytest.raises(OutOfMemory):
            m.update(0, values, BPF_NOEXIST)
        with pytest.raises(KeyNotFound):
            m.delete(0)

        # Iterate over the two elements: each key once, every CPU's value intact.
        for key, value in m.items():
            assert expected_key_mask & key == key
            expected_key_mask &= ~key
            assert list(value) == values
            assert list(m.lookup(key)) == values
        assert expected_key_mask == 0

        m.update(1, values, BPF_EXIST)
        m.delete(1)
        m.delete(2)
        with pytest.raises(KeyNotFound):
            m.delete(2)
        assert len(m) == 0


def test_hashmap_percpu_get_next_key() -> None:
    """test_maps.c: test_hashmap_percpu, its bpf_map_get_next_key loop (from a missing key: the first key)."""
    values = [i + 100 for i in range(NR_CPUS)]
    with ebpfmaps.PerCpuHashMap(key_type=i64, value_type=ctypes.c_long, max_entries=2) as m:
        m[1] = values
        m[2] = values
        expected_key_mask = 3
        first = next_key(m, None)
        assert expected_key_mask & first == first
        key = 0
        while (nxt := next_key(m, key)) is not None:
            if first:
                assert nxt == first
                first = 0
            assert expected_key_mask & nxt == nxt
            expected_key_mask &= ~nxt
            assert list(m.lookup(nxt)) == values
            key = nxt
        assert expected_key_mask == 0


VALUE_SIZE = 3  # long long value[VALUE_SIZE]
ValueArray = ctypes.c_int64 * VALUE_SIZE


def helper_fill_hashmap(max_entries: int, flags: int) -> ebpfmaps.HashMap:
    """test_maps.c: helper_fill_hashmap: keys 0..max_entries-1, value[0] = key, inserted with BPF_NOEXIST."""
    m = ebpfmaps.HashMap(key_type=i64, value_size=ctypes.sizeof(ValueArray), max_entries=max_entries, flags=flags)
    for i in range(max_entries):
        m.update(i, bytes(ValueArray(i)), BPF_NOEXIST)
    return m


def value0(raw: bytes) -> int:
    return ValueArray.from_buffer_copy(raw)[0]


# test_hashmap_walk uses 10000 entries; scaled (the walk costs two Python syscalls per key).
WALK_ENTRIES = 2000


@pytest.mark.parametrize("flags", MAP_FLAGS)
def test_hashmap_walk(flags: int) -> None:
    """test_maps.c: test_hashmap_walk, with the library's iteration: walk all keys, update every value
    while walking (BPF_EXIST), walk again and find every update."""
    with helper_fill_hashmap(WALK_ENTRIES, flags) as m:
        seen = 0
        for key, raw in m.items():
            assert m.lookup(key) == raw
            seen += 1
        assert seen == WALK_ENTRIES

        seen = 0
        for key, raw in m.items():
            v = ValueArray.from_buffer_copy(raw)
            v[0] += 1
            m.update(key, bytes(v), BPF_EXIST)
            seen += 1
        assert seen == WALK_ENTRIES

        seen = 0
        for key in m.keys():
            assert value0(m[key]) - 1 == key
            seen += 1
        assert seen == WALK_ENTRIES


@pytest.mark.parametrize("flags", MAP_FLAGS)
def test_hashmap_walk_get_next_key(flags: int) -> None:
    """test_maps.c: test_hashmap_walk, key by key with bpf_map_get_next_key."""
    with helper_fill_hashmap(WALK_ENTRIES, flags) as m:
        i, key = 0, None
        while (nxt := next_key(m, key)) is not None:
            key = nxt
            assert m.lookup(key) is not None
            i += 1
        assert i == WALK_ENTRIES

        key = next_key(m, None)
        assert key is not None
        i, next_key_valid = 0, True
        while next_key_valid:
            nxt = next_key(m, key)
            next_key_valid = nxt is not None
            v = ValueArray.from_buffer_copy(m[key])
            v[0] += 1
            m.update(key, bytes(v), BPF_EXIST)
            key = nxt
            i += 1
        assert i == WALK_ENTRIES

        i, key = 0, None
        while (nxt := next_key(m, key)) is not None:
            key = nxt
            assert value0(m[key]) - 1 == key
            i += 1
        assert i == WALK_ENTRIES


def test_hashmap_zero_seed() -> None:
    """test_maps.c: test_hashmap_zero_seed: two maps created with BPF_F_ZERO_SEED hash alike,
    so they are walked in the same order."""
    with helper_fill_hashmap(3, BPF_F_ZERO_SEED) as first, helper_fill_hashmap(3, BPF_F_ZERO_SEED) as second:
        order = list(first.keys())
        assert sorted(order) == [0, 1, 2]
        assert list(second.keys()) == order


def test_hashmap_zero_seed_get_next_key() -> None:
    """test_maps.c: test_hashmap_zero_seed, key by key with bpf_map_get_next_key."""
    with helper_fill_hashmap(3, BPF_F_ZERO_SEED) as first, helper_fill_hashmap(3, BPF_F_ZERO_SEED) as second:
        key, steps = None, 0
        while (next_first := next_key(first, key)) is not None:
            next_second = next_key(second, key)
            assert next_second is not None, "next_key for second map must succeed"
            assert next_first == next_second, f"keys must match at step {steps}"
            key = next_first
            steps += 1
        assert steps == 3


# ---------------------------------------------------------------------------------------------- arrays
def test_arraymap() -> None:
    """test_maps.c: test_arraymap."""
    with ebpfmaps.ArrayMap(value_type=i64, max_entries=2) as m:
        m.update(1, 1234, BPF_ANY)
        with pytest.raises(KeyExists):
            m.update(1, 0, BPF_NOEXIST)
        assert m.lookup(1) == 1234
        # key=0 is also found and zero initialized.
        assert m.lookup(0) == 0
        # key=2 cannot be inserted due to max_entries: the kernel answers E2BIG; the library knows
        # the bounds and raises IndexOutOfRange (a KeyNotFound and IndexError) before the syscall.
        with pytest.raises(IndexOutOfRange):
            m.update(2, 0, BPF_EXIST)
        # key=2 doesn't exist.
        assert m.lookup(2) is None
        # Iterate over two elements, in index order.
        assert list(m.keys()) == [0, 1]
        assert dict(m.items()) == {0: 0, 1: 1234}
        # Delete shouldn't succeed (the kernel: EINVAL; the library refuses first).
        with pytest.raises(NotSupported):
            m.delete(1)
        assert m.lookup(1) == 1234


@pytest.mark.parametrize("cls", [ebpfmaps.ArrayMap, ebpfmaps.PerCpuArrayMap], ids=["array", "percpu_array"])
def test_arraymap_get_next_key(cls: type) -> None:
    """test_maps.c: test_arraymap / test_arraymap_percpu: get_next_key from NULL and from an index past the
    end (both answer index 0), then 0 -> 1 -> ENOENT."""
    with cls(value_type=i64, max_entries=2) as m:
        assert next_key(m, None) == 0
        assert next_key(m, 2) == 0
        assert next_key(m, 0) == 1
        assert next_key(m, 1) is None


def test_arraymap_percpu() -> None:
    """test_maps.c: test_arraymap_percpu."""
    values = [i + 100 for i in range(NR_CPUS)]
    with ebpfmaps.PerCpuArrayMap(value_type=ctypes.c_long, max_entries=2) as m:
        m.update(1, values, BPF_ANY)
        with pytest.raises(KeyExists):
            m.update(1, [0, *values[1:]], BPF_NOEXIST)
        got = m.lookup(1)
        assert got[0] == 100 and list(got) == values
        # key=0 is also found and zero initialized on every CPU.
        zero = m.lookup(0)
        assert zero[0] == 0 and zero[NR_CPUS - 1] == 0
        with pytest.raises(IndexOutOfRange):
            m.update(2, values, BPF_EXIST)
        assert m.lookup(2) is None
        assert list(m.keys()) == [0, 1]
        with pytest.raises(NotSupported):
            m.delete(1)


def test_arraymap_percpu_many_keys() -> None:
    """test_maps.c: test_arraymap_percpu_many_keys: 2000 keys, each with a distinct value per CPU."""
    nr_keys = 2000
    values = [i + 10 for i in range(NR_CPUS)]
    with ebpfmaps.PerCpuArrayMap(value_type=ctypes.c_long, max_entries=nr_keys) as m:
        for key in range(nr_keys):
            m.update(key, values, BPF_ANY)
        for key in range(nr_keys):
            assert list(m.lookup(key)) == values


# ---------------------------------------------------------------------------------------------- devmap
@pytest.mark.parametrize("cls,mtype", [(ebpfmaps.DevMap, MapType.DEVMAP), (ebpfmaps.DevMapHash, MapType.DEVMAP_HASH)],
                         ids=["devmap", "devmap_hash"])
def test_devmap(cls: type, mtype: MapType) -> None:
    """test_maps.c: test_devmap and test_devmap_hash: create only (u32 keys and values, 2 entries)."""
    if not features.map_type_supported(mtype):
        pytest.skip(f"the running kernel lacks {mtype.name} (probe)")
    with cls(key_size=4, value_size=4, max_entries=2) as m:
        info = m.info()
        assert (info.type, info.key_size, info.value_size, info.max_entries) == (mtype, 4, 4, 2)


# ---------------------------------------------------------------------------------------------- queue/stack
QUEUE_SIZE = 32  # MAP_SIZE of test_queuemap/test_stackmap


@pytest.mark.parametrize("flags", MAP_FLAGS)
@pytest.mark.parametrize("kind", ["queue", "stack"])
def test_queuemap_stackmap(kind: str, flags: int) -> None:
    """test_maps.c: test_queuemap and test_stackmap."""
    cls = ebpfmaps.QueueMap if kind == "queue" else ebpfmaps.StackMap
    rng = random.Random(kind)
    vals = [rng.getrandbits(32) for _ in range(QUEUE_SIZE + QUEUE_SIZE // 2)]
    # Invalid key size (EINVAL from the kernel; the library refuses first).
    with pytest.raises(InvalidKeySize):
        cls(key_size=4, value_type=ctypes.c_uint32, max_entries=QUEUE_SIZE, flags=flags)
    if flags & BPF_F_NO_PREALLOC:
        # Queue and stack maps do not support BPF_F_NO_PREALLOC (EINVAL).
        with pytest.raises(InvalidFlags):
            cls(value_type=ctypes.c_uint32, max_entries=QUEUE_SIZE, flags=flags)
        return
    with cls(value_type=ctypes.c_uint32, max_entries=QUEUE_SIZE, flags=flags) as m:
        for v in vals[:QUEUE_SIZE]:
            m.push(v)
        # No element can be pushed beyond max_entries (E2BIG).
        with pytest.raises(OutOfMemory) as exc:
            m.push(0)
        assert exc.value.errno == errno.E2BIG
        # Peek: the oldest for a queue, the newest for a stack.
        assert m.peek() == (vals[0] if kind == "queue" else vals[QUEUE_SIZE - 1])
        # Replace half the elements (BPF_EXIST drops the oldest to make room).
        for v in vals[QUEUE_SIZE:]:
            m.push(v, overwrite=True)
        # Pop all elements.
        expected = vals[QUEUE_SIZE // 2:] if kind == "queue" else vals[QUEUE_SIZE // 2:][::-1]
        assert [m.pop() for _ in range(QUEUE_SIZE)] == expected
        # No element is left (ENOENT).
        assert m.pop() is None and m.peek() is None
        # Unsupported operations: delete (EINVAL from the kernel; NotSupported before it).
        with pytest.raises(NotSupported):
            m.delete(None)


@pytest.mark.parametrize("cls", [ebpfmaps.QueueMap, ebpfmaps.StackMap], ids=["queue", "stack"])
def test_queuemap_stackmap_get_next_key(cls: type) -> None:
    """test_maps.c: test_queuemap/test_stackmap: bpf_map_get_next_key(fd, NULL, NULL) fails with EINVAL."""
    with cls(value_type=ctypes.c_uint32, max_entries=QUEUE_SIZE) as m:
        m.push(1)
        with pytest.raises((NotSupported, InvalidArgument)):
            m.next_key(None)


# ---------------------------------------------------------------------------------------------- sockmap
@pytest.fixture
def tcp_sockets() -> Iterator[list[socket.socket]]:
    """test_sockmap's six TCP sockets: two listeners, two clients connected to them, the two accepted ends.

    The C binds fixed ports 50200/50201; port 0 avoids clashes with parallel runs.
    """
    socks: list[socket.socket] = []
    try:
        listeners = []
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            s.listen(32)
            listeners.append(s)
        socks.extend(listeners)
        for s in listeners:
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.connect(s.getsockname())
            socks.append(c)
        for s in listeners:
            socks.append(s.accept()[0])
        yield socks
    finally:
        for s in socks:
            s.close()


def cookie_of(s: socket.socket) -> int:
    SO_COOKIE = 57
    return int.from_bytes(s.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), "little")


@pytest.mark.parametrize("mtype", [MapType.SOCKMAP, MapType.SOCKHASH], ids=["sockmap", "sockhash"])
def test_sockmap(mtype: MapType, tcp_sockets: list[socket.socket]) -> None:
    """test_maps.c: test_sockmap, the parts without programs: a map of six entries takes a UDP socket
    and the six TCP sockets (listening, connecting and accepted), slots obey BPF_NOEXIST/BPF_EXIST,
    and every element can be deleted. The program attach/detach and send/recv parts need the
    sockmap_*_prog.bpf.o objects and are not ported."""
    if not features.map_type_supported(mtype):
        pytest.skip(f"the running kernel lacks {mtype.name} (probe)")
    cls = ebpfmaps.SockMap if mtype == MapType.SOCKMAP else ebpfmaps.SockHash
    sfd = tcp_sockets
    kw = {} if mtype == MapType.SOCKMAP else {"key_type": ctypes.c_uint32}
    # __u32 key, value: value_size 4, as in the C.
    with cls(value_size=4, max_entries=6, **kw) as m:
        # Update with a UDP socket. The C test (written for 5.7+, where sockmap took UDP) expects an
        # unbound UDP socket to be accepted. 6.18 accepts only hashed (bound or connected) UDP sockets
        # and answers EOPNOTSUPP for an unbound one, while the kernels the C was written for take it:
        # either answer is the kernel's, and a bound UDP socket is accepted by both.
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            try:
                m.update(0, udp, BPF_ANY)
            except NotSupported as exc:
                assert exc.errno == errno.EOPNOTSUPP
            udp.bind(("127.0.0.1", 0))
            m.update(0, udp, BPF_ANY)
        finally:
            udp.close()
        # Update without programs: all six TCP sockets.
        for i in range(6):
            m.update(i, sfd[i], BPF_ANY)
        # Push an fd into the same slot.
        with pytest.raises(KeyExists):
            m.update(2, sfd[2], BPF_NOEXIST)
        m.update(2, sfd[2], BPF_ANY)
        m.update(2, sfd[2], BPF_EXIST)
        # Delete the elements without programs.
        for i in range(2, 6):
            m.delete(i)
        # Deleting an empty slot (not in the C): a sockhash answers ENOENT, a sockmap EINVAL
        # (__sock_map_delete finds no socket in the slot).
        for i in range(2, 6):
            with pytest.raises(KeyNotFound if mtype == MapType.SOCKHASH else InvalidArgument) as exc_del:
                m.delete(i)
            assert exc_del.value.errno == (errno.ENOENT if mtype == MapType.SOCKHASH else errno.EINVAL)
        m.delete(0)
        m.delete(1)
        if mtype == MapType.SOCKHASH:
            assert len(m) == 0
            with pytest.raises(KeyNotFound):
                m.update(9, sfd[4], BPF_EXIST)


@pytest.mark.parametrize("mtype", [MapType.SOCKMAP, MapType.SOCKHASH], ids=["sockmap", "sockhash"])
def test_sockmap_cookies(mtype: MapType, tcp_sockets: list[socket.socket]) -> None:
    """test_maps.c: test_sockmap, with 8-byte values: what the kernel reads back is each socket's cookie
    (sock_map_lookup_sys), and a socket closed by its owner leaves the map."""
    if not features.map_type_supported(mtype):
        pytest.skip(f"the running kernel lacks {mtype.name} (probe)")
    cls = ebpfmaps.SockMap if mtype == MapType.SOCKMAP else ebpfmaps.SockHash
    kw = {} if mtype == MapType.SOCKMAP else {"key_type": ctypes.c_uint32}
    with cls(max_entries=6, **kw) as m:
        for i, s in enumerate(tcp_sockets):
            m[i] = s
        assert {i: m[i] for i in range(6)} == {i: cookie_of(s) for i, s in enumerate(tcp_sockets)}
        tcp_sockets[5].close()  # the kernel unlinks a closed socket from every map holding it
        deadline = time.monotonic() + 5
        while m.lookup(5) is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert m.lookup(5) is None


# ---------------------------------------------------------------------------------------------- map in map
def test_map_in_map() -> None:
    """test_maps.c: test_map_in_map, the user-space parts: a 2-entry int→int hash is the inner map of
    an array of maps and a hash of maps (bpf_map__set_inner_map_fd), and is stored at position 0 of both."""
    with ebpfmaps.HashMap(key_type=ctypes.c_int, value_type=ctypes.c_int, max_entries=2) as inner:
        with ebpfmaps.ArrayOfMaps(max_entries=1, inner_map=inner) as mim_array, \
                ebpfmaps.HashOfMaps(key_type=ctypes.c_int, max_entries=1, inner_map=inner) as mim_hash:
            mim_array.update(0, inner, BPF_ANY)
            mim_hash.update(0, inner, BPF_ANY)
            assert mim_array.inner_id(0) == inner.id == mim_hash.inner_id(0)
            with mim_array[0] as via_array:
                via_array[1] = 7
            assert inner[1] == 7
    # The outer maps hold the inner map: it outlives the fd closed above while they live, then goes.


def test_map_in_map_failed_create_destroys_inner() -> None:
    """test_maps.c: test_map_in_map: "failing bpf_object__create_map() destroys the inner map".

    libbpf creates a temporary template ("mim.inner") for an outer map declared with an inner map
    definition; when the outer map cannot be created, the template must not be left behind. The
    library does the same for ``inner_map=MapSpec(...)``: after a refused outer map (a hash of maps
    whose key size the kernel refuses), no map with the template's name exists.
    """
    name = f"mim_inner_{os.getpid() % 100000}"
    spec = MapSpec(type=MapType.ARRAY, key_size=4, value_size=4, max_entries=1, name=name)
    with pytest.raises(MapError):
        ebpfmaps.HashOfMaps(key_size=4, max_entries=0, inner_map=spec)
    with pytest.raises(MapError):
        # KMALLOC-sized keys: refused by the kernel (E2BIG) after the template was created.
        ebpfmaps.HashOfMaps(key_size=1 << 30, max_entries=1, inner_map=spec)
    with ebpfmaps.ArrayOfMaps(max_entries=1, inner_map=spec):
        pass
    assert [info for info in ebpfmaps.list_maps() if info.name == name] == []


# ---------------------------------------------------------------------------------------------- large
class BigKey(ctypes.Structure):
    """struct bigkey { int a; char b[4096]; long long c; }"""

    _fields_ = [("a", ctypes.c_int), ("b", ctypes.c_char * 4096), ("c", ctypes.c_longlong)]


@pytest.mark.parametrize("flags", MAP_FLAGS)
def test_map_large(flags: int) -> None:
    """test_maps.c: test_map_large: 4 KiB keys, filled to max_entries (MAP_SIZE, scaled)."""
    require_big_hash_keys()
    with ebpfmaps.HashMap(key_type=BigKey, value_type=ctypes.c_int, max_entries=MAP_SIZE, flags=flags) as m:
        for i in range(MAP_SIZE):
            m.update(BigKey(c=i), i, BPF_NOEXIST)
        with pytest.raises(OutOfMemory) as exc:
            m.update(BigKey(c=-1), 0, BPF_NOEXIST)
        assert exc.value.errno == errno.E2BIG
        # Iterate through all elements.
        assert sorted(k.c for k in m.keys()) == list(range(MAP_SIZE))
        assert m.lookup(BigKey(c=0)) == 0
        assert m.lookup(BigKey(a=1, c=0)) is None


def test_map_large_get_next_key() -> None:
    """test_maps.c: test_map_large, its walk: from a key not in the map (c=-1) get_next_key visits
    MAP_SIZE keys, then ENOENT."""
    require_big_hash_keys()
    with ebpfmaps.HashMap(key_type=BigKey, value_type=ctypes.c_int, max_entries=MAP_SIZE) as m:
        for i in range(MAP_SIZE):
            m.update(BigKey(c=i), i, BPF_NOEXIST)
        assert next_key(m, None) is not None
        key = BigKey(c=-1)
        for _ in range(MAP_SIZE):
            key = next_key(m, key)
            assert key is not None
        assert next_key(m, key) is None


# ---------------------------------------------------------------------------------------------- parallel
MAP_RETRIES = 20


def _retry(op: object, *args: object) -> None:
    """map_update_retriable / map_delete_retriable: retry EAGAIN/EBUSY (MapBusy) with a growing delay."""
    delay = random.random() * 0.005
    for attempt in range(MAP_RETRIES + 1):
        try:
            op(*args)  # type: ignore[operator]
            return
        except MapBusy:
            if attempt == MAP_RETRIES:
                raise
            delay = min(delay * 2, 0.05)
            time.sleep(delay)


def _update_delete(task: int, m: ebpfmaps.HashMap, do_update: bool) -> None:
    """test_maps.c: test_update_delete, in a forked child: every TASKS-th key from ``task``."""
    if task & 1:
        # The C runs test_hashmap_walk in odd children too (load on the kernel beside the writers).
        with helper_fill_hashmap(100, 0) as other:
            assert sum(1 for _ in other.items()) == 100
    for i in range(task, MAP_SIZE, TASKS):
        if do_update:
            _retry(m.update, i, i, BPF_NOEXIST)
            _retry(m.update, i, i, BPF_EXIST)
        else:
            _retry(m.delete, i)


def _run_parallel(m: ebpfmaps.HashMap, do_update: bool) -> None:
    """test_maps.c: __run_parallel: fork TASKS children sharing the map fd, each must exit 0."""
    pids = []
    for task in range(TASKS):
        pid = os.fork()
        if pid == 0:  # child: never return into pytest
            code = 1
            try:
                _update_delete(task, m, do_update)
                code = 0
            except BaseException as exc:
                os.write(2, f"task {task}: {exc!r}\n".encode())
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("flags", MAP_FLAGS)
def test_map_parallel(flags: int) -> None:
    """test_maps.c: test_map_parallel: TASKS forked processes insert (then delete) disjoint keys in one
    map through the same fd; the parent checks all of them (scaled: MAP_SIZE, TASKS, 2 rounds instead of 6)."""
    with ebpfmaps.HashMap(key_type=ctypes.c_int, value_type=ctypes.c_int, max_entries=MAP_SIZE, flags=flags) as m:
        for _round in range(2):
            _run_parallel(m, do_update=True)
            # key=0 is already there.
            with pytest.raises(KeyExists):
                m.update(0, 0, BPF_NOEXIST)
            # All elements were inserted.
            assert sorted(m.keys()) == list(range(MAP_SIZE))
            for i in range(MAP_SIZE):
                key = MAP_SIZE - i - 1
                assert m.lookup(key) == key
            # Now delete all elements in parallel.
            _run_parallel(m, do_update=False)
            assert list(m.keys()) == []
            with pytest.raises(KeyNotFound):
                m.delete(0)


# ---------------------------------------------------------------------------------------------- rdonly/wronly
@pytest.mark.parametrize("flags", MAP_FLAGS)
def test_map_rdonly(flags: int) -> None:
    """test_maps.c: test_map_rdonly: a map created BPF_F_RDONLY refuses syscall writes (EPERM)."""
    with ebpfmaps.HashMap(key_type=ctypes.c_int, value_type=ctypes.c_int, max_entries=MAP_SIZE,
                          flags=flags | BPF_F_RDONLY) as m:
        assert not m.writable
        with pytest.raises(PermissionDenied):
            m.update(1, 1234, BPF_ANY)
        # key=1 is not found.
        assert m.lookup(1) is None
        assert list(m.keys()) == []


def test_map_rdonly_get_next_key() -> None:
    """test_maps.c: test_map_rdonly: get_next_key on the empty read-only map answers ENOENT."""
    with ebpfmaps.HashMap(key_type=ctypes.c_int, value_type=ctypes.c_int, max_entries=MAP_SIZE,
                          flags=BPF_F_RDONLY) as m:
        assert next_key(m, 1) is None


@pytest.mark.parametrize("flags", MAP_FLAGS)
def test_map_wronly_hash(flags: int) -> None:
    """test_maps.c: test_map_wronly_hash: a BPF_F_WRONLY map takes writes and refuses reads (EPERM)."""
    with ebpfmaps.HashMap(key_type=ctypes.c_int, value_type=ctypes.c_int, max_entries=MAP_SIZE,
                          flags=flags | BPF_F_WRONLY) as m:
        m.update(1, 1234, BPF_ANY)
        with pytest.raises(PermissionDenied) as exc:
            m.lookup(1)
        assert exc.value.errno == errno.EPERM
        with pytest.raises(PermissionDenied):
            list(m.keys())


def test_map_wronly_hash_get_next_key() -> None:
    """test_maps.c: test_map_wronly_hash: get_next_key is a read: EPERM."""
    with ebpfmaps.HashMap(key_type=ctypes.c_int, value_type=ctypes.c_int, max_entries=MAP_SIZE,
                          flags=BPF_F_WRONLY) as m:
        m[1] = 1234
        with pytest.raises(PermissionDenied):
            m.next_key(1)


@pytest.mark.parametrize("flags", MAP_FLAGS)
@pytest.mark.parametrize("cls", [ebpfmaps.StackMap, ebpfmaps.QueueMap], ids=["stack", "queue"])
def test_map_wronly_stack_or_queue(cls: type, flags: int) -> None:
    """test_maps.c: test_map_wronly_stack_or_queue: push works, peek and pop are reads (EPERM)."""
    if flags & BPF_F_NO_PREALLOC:
        with pytest.raises(InvalidFlags):
            cls(value_type=ctypes.c_int, max_entries=MAP_SIZE, flags=flags | BPF_F_WRONLY)
        return
    with cls(value_type=ctypes.c_int, max_entries=MAP_SIZE, flags=flags | BPF_F_WRONLY) as m:
        m.push(1234)
        with pytest.raises(PermissionDenied) as exc:
            m.peek()
        assert exc.value.errno == errno.EPERM
        with pytest.raises(PermissionDenied):
            m.pop()


def test_map_rdonly_file_flags(pin_path: Path) -> None:
    """test_map_rdonly with file flags: a pinned map opened read-only (BPF_OBJ_GET with BPF_F_RDONLY)
    reads but refuses writes. BPF_F_RDONLY given at creation shapes only the creator's fd: the kernel
    does not keep it in map_flags (bpf_map_flags_retain_permanent), so the same map opened again from
    its pin without file flags is writable."""
    with ebpfmaps.HashMap(key_type=ctypes.c_int, value_type=ctypes.c_int, max_entries=8) as m:
        m[1] = 1234
        m.pin(pin_path)
        with ebpfmaps.open_pinned(pin_path, readonly=True, key_type=ctypes.c_int, value_type=ctypes.c_int) as ro:
            assert not ro.writable
            assert ro[1] == 1234
            with pytest.raises(PermissionDenied):
                ro.update(2, 1, BPF_ANY)
            with pytest.raises(PermissionDenied):
                ro.delete(1)
        m.unpin()
    with ebpfmaps.HashMap(key_type=ctypes.c_int, value_type=ctypes.c_int, max_entries=8, flags=BPF_F_RDONLY) as m:
        m.pin(pin_path)
        with pytest.raises(PermissionDenied):
            m.update(1, 1, BPF_ANY)
        with ebpfmaps.open_pinned(pin_path, key_type=ctypes.c_int, value_type=ctypes.c_int) as again:
            assert again.writable
            again.update(1, 1, BPF_ANY)
            assert m.lookup(1) == 1
        with ebpfmaps.open_pinned(pin_path, readonly=True, key_type=ctypes.c_int, value_type=ctypes.c_int) as ro:
            with pytest.raises(PermissionDenied):
                ro.update(1, 2, BPF_ANY)


def test_map_wronly_file_flags(pin_path: Path) -> None:
    """test_map_wronly with file flags: a pinned map opened write-only takes writes and refuses reads."""
    with ebpfmaps.HashMap(key_type=ctypes.c_int, value_type=ctypes.c_int, max_entries=8) as m:
        m.pin(pin_path)
        with ebpfmaps.open_pinned(pin_path, writeonly=True,
                                  key_type=ctypes.c_int, value_type=ctypes.c_int) as wo:
            wo[1] = 1234
            with pytest.raises(PermissionDenied, match="write-only"):
                wo.lookup(1)
            with pytest.raises(PermissionDenied, match="write-only"):
                list(wo.items())
        assert m[1] == 1234
