"""Batch operations over 100,000 entries, ENOSPC growth, and failures that leave the map as it was."""

from __future__ import annotations

import ctypes
import errno
import random

import pytest

import ebpfmaps
from ebpfmaps import BPF_EXIST, BPF_NOEXIST, InvalidKeySize, InvalidValueSize, KeyExists, KeyNotFound
from ebpfmaps._libbpf import lib, new_opts, structs
from ebpfmaps.errors import BatchError, IndexOutOfRange, InvalidArgument, OutOfMemory

N = 100_000


@pytest.fixture(scope="module")
def big_expected() -> dict[int, int]:
    rng = random.Random(2)
    keys = rng.sample(range(1 << 31), N)
    return {k: (k * 2654435761) & 0xFFFFFFFFFFFFFFFF for k in keys}


def test_hash_batches_over_100k(big_expected: dict[int, int]) -> None:
    keys, values = list(big_expected), list(big_expected.values())
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=N) as m:
        assert m.update_batch(keys, values) == N
        assert m.lookup_batch() == big_expected
        # Spot-check through single lookups that the batch wrote what it said.
        for k in keys[:: N // 100]:
            assert m[k] == big_expected[k]
        # delete_batch: half the keys plus keys that were never there (skipped, not an error).
        doomed = keys[: N // 2]
        absent = [k for k in range(1 << 31, (1 << 31) + 1000)]
        mixed = doomed[:1000] + absent[:500] + doomed[1000:] + absent[500:]
        assert m.delete_batch(mixed) == len(doomed)
        survivors = {k: big_expected[k] for k in keys[N // 2 :]}
        assert m.lookup_batch() == survivors
        # lookup_and_delete_batch drains the map and returns what it held.
        assert m.lookup_and_delete_batch() == survivors
        assert list(m.keys()) == []
        assert m.lookup_and_delete_batch() == {}


def test_array_batches_over_100k() -> None:
    with ebpfmaps.create("array", value_type=ctypes.c_uint64, max_entries=N) as a:
        idx = list(range(N))
        vals = [i * 7 for i in idx]
        assert a.update_batch(idx, vals) == N
        got = a.lookup_batch()
        assert got == dict(zip(idx, vals))
        assert a[N - 1] == (N - 1) * 7
        with pytest.raises(IndexOutOfRange) as err:
            a.update_batch([0, N], [1, 2])
        assert err.value.errno is None
        assert a[0] == 0


def test_packed_buffers_are_accepted() -> None:
    # update_batch takes packed bytes too (numpy/struct users); lookups agree with single reads.
    keys = b"".join(i.to_bytes(4, "little") for i in range(1000))
    vals = b"".join((i * 3).to_bytes(8, "little") for i in range(1000))
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=1000) as m:
        assert m.update_batch(keys, vals) == 1000
        assert m[(999).to_bytes(4, "little")] == (2997).to_bytes(8, "little")
        chunks = list(m.iter_batches_raw(batch_size=256))
        assert sum(c for _, _, c in chunks) == 1000
        assert all(len(kb) == 4 * c and len(vb) == 8 * c for kb, vb, c in chunks)


def _kernel_gives_enospc(fd: int, key_size: int, value_size: int) -> bool:
    """Walk the map with raw one-entry batches; True when some bucket held more than one key."""
    cursor_in = (ctypes.c_char * 8)()
    cursor_out = (ctypes.c_char * 8)()
    keys = (ctypes.c_char * key_size)()
    vals = (ctypes.c_char * value_size)()
    count = ctypes.c_uint32()
    opts = new_opts(structs.BpfMapBatchOpts)
    first = True
    for _ in range(100_000):
        count.value = 1
        ret = lib.bpf_map_lookup_batch(fd, None if first else ctypes.addressof(cursor_in), ctypes.addressof(cursor_out),
                                       ctypes.addressof(keys), ctypes.addressof(vals), ctypes.byref(count),
                                       ctypes.byref(opts))
        if ret == -errno.ENOSPC:
            return True
        if ret == -errno.ENOENT:
            return False
        assert ret == 0
        ctypes.memmove(cursor_in, cursor_out, 8)
        first = False
    return False


def test_enospc_grows_the_batch() -> None:
    n = 2000  # in 2048 buckets, several buckets hold two or more keys
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=n) as m:
        m.update_batch(list(range(n)), [k ^ 0x5A5A for k in range(n)])
        assert _kernel_gives_enospc(m.fd, 4, 4), "no bucket held two keys: the test would prove nothing"
        seen: list[int] = []
        sizes = set()
        for chunk in m.iter_batches(batch_size=1):
            sizes.add(len(chunk))
            for k, v in chunk:
                assert v == k ^ 0x5A5A
                seen.append(k)
        assert sorted(seen) == list(range(n))
        assert max(sizes) >= 2  # a chunk bigger than the batch asked for: the batch grew
        assert m.lookup_batch(batch_size=1) == {k: k ^ 0x5A5A for k in range(n)}
        assert m.lookup_and_delete_batch(batch_size=1) == {k: k ^ 0x5A5A for k in range(n)}
        assert list(m.keys()) == []


def test_update_batch_noexist_failing_part_way_leaves_map_as_it_was() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=1000) as m:
        before = {k: k + 1 for k in range(0, 100, 10)}
        m.update_batch(list(before), list(before.values()))
        new_keys = [*range(500, 550), 30, *range(600, 650)]  # 30 already exists
        with pytest.raises(KeyExists) as err:
            m.update_batch(new_keys, [9] * len(new_keys), flags=BPF_NOEXIST)
        assert err.value.errno == errno.EEXIST
        assert m.lookup_batch() == before


def test_update_batch_any_failing_part_way_says_how_far_it_got() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=10) as m:
        with pytest.raises(BatchError) as err:
            m.update_batch(list(range(20)), list(range(20)))
        assert err.value.done == 10 and isinstance(err.value.cause, OutOfMemory)
        assert m.lookup_batch() == {k: k for k in range(10)}


def test_update_batch_exist_needs_every_key() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=10) as m:
        m.update_batch([1, 2], [1, 2])
        assert m.update_batch([1, 2], [10, 20], flags=BPF_EXIST) == 2
        assert m.lookup_batch() == {1: 10, 2: 20}


def test_batch_input_errors_before_the_syscall() -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=10) as m:
        m[b"keep"] = b"original"
        with pytest.raises(InvalidArgument) as err:
            m.update_batch([b"aaaa", b"bbbb"], [bytes(8)])
        assert err.value.errno is None and "2 keys but 1 values" in str(err.value)
        with pytest.raises(InvalidValueSize) as verr:
            m.update_batch([b"aaaa", b"keep"], [bytes(8), bytes(7)])
        assert verr.value.errno is None
        with pytest.raises(InvalidKeySize) as kerr:
            m.update_batch([b"aaaa", b"kee"], [bytes(8), bytes(8)])
        assert kerr.value.errno is None
        with pytest.raises(InvalidKeySize):
            m.update_batch(b"12345", bytes(8))  # a packed key buffer that is not whole keys
        with pytest.raises(InvalidKeySize):
            m.delete_batch([b"keep", b"x"])
        assert m.to_dict() == {b"keep": b"original"}
        assert m.update_batch([], []) == 0


def test_lookup_batch_with_keys_leaves_out_absent_ones() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=10) as m:
        m.update_batch([1, 2, 3], [4, 5, 6])
        assert m.lookup_batch(keys=[1, 3, 9]) == {1: 4, 3: 6}


def test_update_batch_exist_failing_part_way_restores_old_values() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=10) as m:
        m.update_batch([1, 2, 3], [10, 20, 30])
        with pytest.raises(KeyNotFound):
            m.update_batch([1, 2, 7, 3], [11, 21, 71, 31], flags=BPF_EXIST)  # 7 is absent
        assert m.lookup_batch() == {1: 10, 2: 20, 3: 30}


def test_update_batch_noexist_never_deletes_existing_keys() -> None:
    # Regression: a refused flagged batch was once "rolled back" by deleting every key in it.
    with ebpfmaps.create("percpu-hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=10) as m:
        m[5] = 50
        with pytest.raises(KeyExists):
            m.update_batch([5], [1], flags=BPF_NOEXIST)
        with pytest.raises(KeyExists):
            m.update_batch([6, 5], [1, 1], flags=BPF_NOEXIST)
        assert m.to_dict() == {5: [50] * ebpfmaps.possible_cpus()}
        assert m.update_batch([6, 7], [60, 70], flags=BPF_NOEXIST) == 2
        assert sorted(m.keys()) == [5, 6, 7]
