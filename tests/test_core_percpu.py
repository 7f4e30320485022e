"""Per-CPU maps: one value per *possible* CPU, each slot padded to 8 bytes, checked against the raw
syscall buffer and against bpftool's per-CPU dump."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import InvalidValueSize, PerCpuValues
from ebpfmaps._libbpf import lib
from ebpfmaps.cpus import parse_cpu_list
from ebpfmaps.errors import InvalidArgument
from tests.core_helpers import PERCPU_KINDS, U32, Kind, bpftool_raw, key_for

PERCPU_IDS = [k.keyword for k in PERCPU_KINDS]


def _possible_from_sysfs() -> int:
    with open("/sys/devices/system/cpu/possible") as f:
        return len(parse_cpu_list(f.read()))


NCPUS = _possible_from_sysfs()


def _round8(n: int) -> int:
    return (n + 7) // 8 * 8


def test_possible_cpus_matches_sysfs() -> None:
    assert ebpfmaps.possible_cpus() == NCPUS


@pytest.mark.parametrize("kind", PERCPU_KINDS, ids=PERCPU_IDS)
@pytest.mark.parametrize("value_size", [4, 8, 12])
def test_layout_one_padded_slot_per_possible_cpu(kind: Kind, value_size: int, pin_path: Path) -> None:
    with ebpfmaps.create(kind.keyword, key_size=4, value_size=value_size, max_entries=8) as m:
        # The map's value size stays what the user asked; the syscall buffer is ncpus padded slots.
        assert m.value_size == value_size and m.info().value_size == value_size
        assert m.value_codec.size == NCPUS * _round8(value_size)
        per_cpu = [bytes([cpu + 1]) * value_size for cpu in range(NCPUS)]
        k = key_for(kind, 1)
        m.update(k, per_cpu)
        got = m.lookup(k)
        assert isinstance(got, PerCpuValues) and list(got) == per_cpu
        # Read the same element with a raw syscall into a buffer of exactly the kernel's size.
        raw = (ctypes.c_char * (NCPUS * _round8(value_size)))()
        assert lib.bpf_map_lookup_elem(m.fd, U32.pack(1), raw) == 0
        stride = _round8(value_size)
        for cpu in range(NCPUS):
            slot = raw.raw[cpu * stride : (cpu + 1) * stride]
            assert slot[:value_size] == per_cpu[cpu]
            assert slot[value_size:] == bytes(stride - value_size)  # padding is zero
        # bpftool prints each CPU's value separately.
        m.pin(pin_path)
        dumped = bpftool_raw(pin_path)[U32.pack(1)]
        assert dumped == per_cpu
        m.unpin()


@pytest.mark.parametrize("kind", PERCPU_KINDS, ids=PERCPU_IDS)
def test_single_value_goes_to_every_cpu(kind: Kind) -> None:
    with ebpfmaps.create(kind.keyword, key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=8) as m:
        m[2] = 7
        assert m[2] == [7] * NCPUS
        assert m[2].sum() == 7 * NCPUS
        m[2] = list(range(10, 10 + NCPUS))
        assert m[2] == list(range(10, 10 + NCPUS))
        assert m[2].sum() == sum(range(10, 10 + NCPUS))
        assert m[2].max() == 10 + NCPUS - 1 and m[2].min() == 10


@pytest.mark.parametrize("kind", PERCPU_KINDS, ids=PERCPU_IDS)
@pytest.mark.parametrize("delta", [-1, 1, 5])
def test_wrong_list_length_refused_and_map_unchanged(kind: Kind, delta: int) -> None:
    if NCPUS + delta < 0:
        pytest.skip("cannot build a negative-length list")
    with ebpfmaps.create(kind.keyword, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=8) as m:
        m[1] = 5
        with pytest.raises(InvalidValueSize) as err:
            m[1] = [9] * (NCPUS + delta)
        assert err.value.errno is None and str(NCPUS) in str(err.value)
        assert m[1] == [5] * NCPUS
        with pytest.raises(InvalidValueSize):
            m.update_batch([1], [[9] * (NCPUS + delta)])
        assert m[1] == [5] * NCPUS


def test_wrong_element_size_in_raw_per_cpu_list() -> None:
    with ebpfmaps.create("percpu-hash", key_size=4, value_size=8, max_entries=4) as m:
        with pytest.raises(InvalidValueSize) as err:
            m.update(b"kkkk", [b"1234567"] * NCPUS)  # each CPU's value must be value_size bytes, unpadded
        assert err.value.errno is None
        assert m.lookup(b"kkkk") is None


def test_sum_of_struct_tuples() -> None:
    with ebpfmaps.create("percpu-array", value_type="=IHH", max_entries=4) as m:
        assert m.value_size == 8
        rows = [(cpu, 2 * cpu, 3) for cpu in range(NCPUS)]
        m[0] = rows
        got = m[0]
        assert got == rows
        assert got.sum() == (sum(r[0] for r in rows), sum(r[1] for r in rows), 3 * NCPUS)


class Counters(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint32)]


def test_sum_of_ctypes_structures() -> None:
    with ebpfmaps.create("lru-percpu-hash", key_type=ctypes.c_uint32, value_type=Counters, max_entries=4) as m:
        assert m.value_size == ctypes.sizeof(Counters) == 16
        m[9] = [Counters(cpu + 1, 100 * (cpu + 1)) for cpu in range(NCPUS)]
        total = m[9].sum()
        assert isinstance(total, Counters)
        assert total.packets == sum(range(1, NCPUS + 1))
        assert total.bytes == 100 * sum(range(1, NCPUS + 1))


def test_sum_refuses_values_it_cannot_add() -> None:
    with ebpfmaps.create("percpu-hash", key_size=4, value_size=4, max_entries=4) as m:
        m[b"abcd"] = b"\1\2\3\4"
        with pytest.raises(InvalidArgument):
            m[b"abcd"].sum()  # raw bytes have no meaningful sum
    assert PerCpuValues().sum() == 0


@pytest.mark.parametrize("kind", PERCPU_KINDS, ids=PERCPU_IDS)
def test_per_cpu_batches_and_iteration(kind: Kind, pin_path: Path) -> None:
    n = 200
    with ebpfmaps.create(kind.keyword, key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=n) as m:
        keys = list(range(n))
        values = [[k * 10 + cpu for cpu in range(NCPUS)] for k in keys]
        assert m.update_batch(keys, values) == n
        got = m.lookup_batch()
        if kind.lru:
            # An LRU map may have evicted some of a full map's entries; what is left must be right.
            assert got and all(got[k] == values[k] for k in got)
        else:
            assert got == dict(zip(keys, values))
        assert dict(m.items()) == got
        m.pin(pin_path)
        dumped = bpftool_raw(pin_path)
        as_ints = {}
        for kb, per_cpu in dumped.items():
            assert isinstance(per_cpu, list)
            as_ints[U32.unpack(kb)[0]] = [U32.unpack(v)[0] for v in per_cpu]
        assert as_ints == got
        m.unpin()
