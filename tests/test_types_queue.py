"""QUEUE, STACK and BLOOM_FILTER maps on the real kernel, cross-checked with bpftool."""

from __future__ import annotations

import ctypes
import math
import random
import subprocess
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps.errors import InvalidArgument, InvalidFlags, InvalidKeySize, InvalidValueSize, NotSupported, OutOfMemory
from ebpfmaps.maps.bloom import bitset_bits, predicted_false_positive_rate
from ebpfmaps.maps.queue import LengthUnknown
from ebpfmaps.maptypes import MapType
from tests.kernel_features import require_map_type
from tests.types_support import bpftool, bpftool_hex_args, hex_bytes


def test_queue_is_fifo_and_stack_is_lifo() -> None:
    with ebpfmaps.QueueMap(value_type=ctypes.c_uint32, max_entries=8) as q, \
            ebpfmaps.StackMap(value_type=ctypes.c_uint32, max_entries=8) as s:
        for i in range(5):
            q.push(i)
            s.push(i)
        assert q.peek() == 0 and s.peek() == 4  # peek leaves the element in place
        assert [q.pop() for _ in range(5)] == [0, 1, 2, 3, 4]
        assert [s.pop() for _ in range(5)] == [4, 3, 2, 1, 0]
        assert q.pop() is None and s.peek("empty") == "empty"
        assert q.is_empty()


def test_full_push_fails_and_overwrite_drops_the_oldest() -> None:
    with ebpfmaps.QueueMap(value_type=ctypes.c_uint32, max_entries=3) as q, \
            ebpfmaps.StackMap(value_type=ctypes.c_uint32, max_entries=3) as s:
        for m in (q, s):
            m.push_many([1, 2, 3])
            with pytest.raises(OutOfMemory):
                m.push(4)
            m.push(4, overwrite=True)  # BPF_EXIST
        assert list(q) == [2, 3, 4]  # the oldest (1) made room
        assert list(s) == [4, 3, 2]  # a stack loses its bottom (oldest) element too
        assert list(q) == []  # iteration consumed it


def test_drain_limit_and_consuming_iteration() -> None:
    with ebpfmaps.QueueMap(value_size=2, max_entries=10) as q:
        q.push_many([b"%02d" % i for i in range(6)])
        assert list(q.drain(limit=2)) == [b"00", b"01"]
        assert q.pop() == b"02"
        assert list(q) == [b"03", b"04", b"05"]


def test_keyed_operations_are_refused_before_the_syscall() -> None:
    with ebpfmaps.QueueMap(value_size=4, max_entries=2) as q:
        for op in (lambda: q[0], lambda: q.update(0, b"abcd"), lambda: q.delete(0), lambda: q.keys(),
                   lambda: q.items(), lambda: 0 in q, lambda: q.lookup_batch(), lambda: q.clear()):
            with pytest.raises(NotSupported, match="no keys"):
                op()
        with pytest.raises(LengthUnknown):
            len(q)
        with pytest.raises(TypeError):  # LengthUnknown is also a TypeError, so len() users get what they expect
            len(q)
        with pytest.raises(InvalidValueSize):
            q.push(b"abc")  # checked against value_size before the syscall
        assert q.is_empty()


def test_creation_checks() -> None:
    with pytest.raises(InvalidKeySize):
        ebpfmaps.QueueMap(value_size=4, max_entries=2, key_size=4)
    with pytest.raises(InvalidValueSize):
        ebpfmaps.StackMap(value_size=0, max_entries=2)
    with pytest.raises(InvalidFlags):
        ebpfmaps.QueueMap(value_size=4, max_entries=2, flags=ebpfmaps.BPF_F_NO_PREALLOC)
    m = ebpfmaps.create("queue", value_size=8, max_entries=4)
    assert isinstance(m, ebpfmaps.QueueMap) and m.key_size == 0
    m.close()


def test_bpftool_sees_our_pushes_and_we_pop_its_pushes(pin_path: Path) -> None:
    with ebpfmaps.QueueMap(value_type=ctypes.c_uint32, max_entries=4, name="q_types") as q:
        q.pin(pin_path)
        q.push(0x11223344)
        peek = bpftool("map", "peek", "pinned", str(pin_path))
        assert int.from_bytes(hex_bytes(peek["value"]), "little") == 0x11223344
        subprocess.run(["bpftool", "map", "push", "pinned", str(pin_path), "value",
                        *bpftool_hex_args((7).to_bytes(4, "little"))], check=True)
        assert list(q) == [0x11223344, 7]
        show = bpftool("map", "show", "pinned", str(pin_path))
        assert show["type"] == "queue" and show["bytes_key"] == 0 and show["bytes_value"] == 4


def test_bloom_membership_and_hash_count(pin_path: Path) -> None:
    require_map_type(MapType.BLOOM_FILTER)
    with ebpfmaps.BloomFilterMap(value_type=ctypes.c_uint64, max_entries=100, nr_hashes=3) as b:
        assert b.info().map_extra == 3 and b.nr_hashes == 3
        b.add_many(range(0, 200, 2))
        assert all(v in b for v in range(0, 200, 2))  # no false negatives, ever
        with pytest.raises(NotSupported):
            b.delete(0)
        with pytest.raises(NotSupported):
            list(b)
        with pytest.raises(InvalidValueSize):
            b.add(b"short")
        b.pin(pin_path)
        show = bpftool("map", "show", "pinned", str(pin_path))
        assert show["type"] == "bloom_filter" and show["bytes_value"] == 8
        again = ebpfmaps.open_pinned(pin_path)
        assert isinstance(again, ebpfmaps.BloomFilterMap) and again.nr_hashes == 3
        assert again.value_size == 8 and (4).to_bytes(8, "little") in again
        again.close()
    with ebpfmaps.BloomFilterMap(value_size=4, max_entries=10) as default:
        assert default.nr_hashes == 5  # map_extra 0: the kernel's default
    for bad in (0, 16, -1, True):
        with pytest.raises(InvalidArgument):
            ebpfmaps.BloomFilterMap(value_size=4, max_entries=10, nr_hashes=bad)
    with pytest.raises(InvalidArgument):
        ebpfmaps.BloomFilterMap(value_size=4, max_entries=10, nr_hashes=2, map_extra=3)


def test_bitset_size_follows_the_kernel_formula() -> None:
    # bloom_map_alloc: (n*k)/5*7 bits, >= 64, rounded up to a power of two.
    assert bitset_bits(1000, 3) == 8192  # 3000/5*7 = 4200 -> 8192
    assert bitset_bits(1, 1) == 64
    assert bitset_bits(1000, 0) == bitset_bits(1000, 5)
    assert bitset_bits(1 << 31, 15) == 1 << 32


@pytest.mark.parametrize("nr_hashes", [1, 3])
def test_bloom_false_positive_rate_matches_the_prediction(nr_hashes: int) -> None:
    """Insert max_entries distinct values, probe values never added: the rate is within the binomial
    noise (6 standard deviations) of (1 - e^(-kn/m))^k for the kernel's m."""
    require_map_type(MapType.BLOOM_FILTER)
    n, probes = 1000, 20000
    rng = random.Random(1234 + nr_hashes)
    added = set(rng.sample(range(1 << 40), n))
    with ebpfmaps.BloomFilterMap(value_type=ctypes.c_uint64, max_entries=n, nr_hashes=nr_hashes) as b:
        b.add_many(added)
        others = [v for v in rng.sample(range(1 << 40, 1 << 41), probes)]
        fp = sum(1 for v in others if v in b)
        p = predicted_false_positive_rate(n, nr_hashes, n)
        assert p == pytest.approx(b.false_positive_rate())
        sigma = math.sqrt(p * (1 - p) / probes)
        observed = fp / probes
        assert abs(observed - p) < 6 * sigma + 0.002, (observed, p)
