"""PerfEventReader against bpf_perf_event_output from a real program (tests/bpf/perf_producer.bpf.c)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import select
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps.cpus import online_cpus
from ebpfmaps.errors import InvalidArgument, MapClosed
from ebpfmaps.readers import PerfEventReader, PerfSample
from tests.readers_support import load_programs

PERF_MAGIC = 0x9E4F0B55
REC = struct.Struct("<QII")


def raw_len(size: int) -> int:
    """Bytes the reader hands over for a ``size``-byte output: the kernel pads u32 size + data to 8."""
    return ((size + 4 + 7) & ~7) - 4


@contextmanager
def on_cpu(cpu: int) -> Iterator[None]:
    """Run the enclosed test_run calls on ``cpu`` (BPF_F_CURRENT_CPU then means that CPU's ring)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class PerfProducer:
    def __init__(self, bpffs: Path) -> None:
        self.events = ebpfmaps.create("perf_event_array", key_size=4, value_size=4,
                                      max_entries=ebpfmaps.possible_cpus(), name="events")
        self.state = ebpfmaps.create("array", key_size=4, value_size=8, max_entries=2, name="perf_state",
                                     key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
        self.loaded = load_programs("perf_producer", bpffs, {"events": self.events, "perf_state": self.state})
        self.prog = self.loaded["perf_produce"]

    def run(self, count: int, size: int = 32) -> None:
        result = self.prog.test_run(data=struct.pack("<I", size).ljust(64, b"\0"), repeat=count)
        assert result.retval == 1  # XDP_DROP

    @property
    def errors(self) -> int:
        return int(self.state[1])

    def close(self) -> None:
        self.loaded.close()
        self.events.close()
        self.state.close()


@pytest.fixture
def producer(bpffs: Path) -> Iterator[PerfProducer]:
    p = PerfProducer(bpffs)
    yield p
    p.close()


def seqs_of(samples: list[PerfSample]) -> list[int]:
    return [REC.unpack_from(s.data)[0] for s in samples]


def test_samples_from_each_cpu(producer: PerfProducer) -> None:
    with PerfEventReader(producer.events) as reader:
        assert reader.cpus == online_cpus()
        for cpu in reader.cpus:
            with on_cpu(cpu):
                producer.run(5, size=21)
        samples = reader.read()
        assert producer.errors == 0
        assert len(samples) == 5 * len(reader.cpus)
        for cpu in reader.cpus:
            mine = [s for s in samples if s.cpu == cpu]
            assert len(mine) == 5
            for s in mine:
                assert len(s.data) == raw_len(21) == 28
                _seq, size, magic = REC.unpack_from(s.data)
                assert (size, magic) == (21, PERF_MAGIC)
                assert s.data[21:] == bytes(7)  # the kernel's alignment padding
        assert sorted(seqs_of(samples)) == list(range(5 * len(reader.cpus)))
        assert reader.pending() == 0 and reader.read() == []


def test_samples_of_mixed_sizes_in_one_read(producer: PerfProducer) -> None:
    # Same-size runs are cut out in one go; a ring holding several sizes takes the per-record path.
    cpu = online_cpus()[0]
    with PerfEventReader(producer.events, cpus=[cpu]) as reader:
        with on_cpu(cpu):
            producer.run(40, size=21)
            producer.run(3, size=100)
            producer.run(40, size=21)
        samples = reader.read()
    assert [len(s.data) for s in samples] == [raw_len(21)] * 40 + [raw_len(100)] * 3 + [raw_len(21)] * 40
    assert seqs_of(samples) == list(range(83))
    assert [REC.unpack_from(s.data)[1:] for s in samples] == (
        [(21, PERF_MAGIC)] * 40 + [(100, PERF_MAGIC)] * 3 + [(21, PERF_MAGIC)] * 40)


def test_wrap_around_one_page_ring(producer: PerfProducer) -> None:
    cpu = online_cpus()[0]
    with PerfEventReader(producer.events, pages=1, cpus=[cpu]) as reader:
        got: list[int] = []
        with on_cpu(cpu):
            for _round in range(25):
                producer.run(30, size=100)  # 30 * 112 bytes: most of the 4096-byte ring each round
                got += seqs_of(reader.read())
        assert got == list(range(750))
        assert reader.lost == {}


def test_lost_samples_are_counted(producer: PerfProducer) -> None:
    cpu = online_cpus()[0]
    reports: list[tuple[int, int]] = []
    with PerfEventReader(producer.events, lost_callback=lambda c, n: reports.append((c, n)),
                         pages=1, cpus=[cpu]) as reader, on_cpu(cpu):
        producer.run(100, size=200)  # 216 bytes each: only ~18 fit in one page
        first = reader.read()
        assert 0 < len(first) < 100
        # The kernel writes the PERF_RECORD_LOST report with the next sample that fits.
        producer.run(1, size=200)
        second = reader.read()
        assert len(second) == 1
        assert reports and reports[0][0] == cpu
        lost = sum(n for _c, n in reports)
        assert reader.lost == {cpu: lost}
        assert len(first) + lost == 100
        assert seqs_of(second) == [100]


def test_poll_timeout_wakeup_and_watermark(producer: PerfProducer) -> None:
    cpu = online_cpus()[0]
    with PerfEventReader(producer.events, wakeup_events=5, cpus=[cpu]) as reader, on_cpu(cpu):
        seen: list[bytes] = []
        t0 = time.monotonic()
        assert reader.poll(timeout=0.2, callback=lambda c, d: seen.append(d)) == 0
        assert 0.19 <= time.monotonic() - t0 < 2
        producer.run(3)
        # Fewer than wakeup_events samples: no wakeup yet, but the records are readable.
        assert select.select([reader], [], [], 0.2)[0] == []
        producer.run(2)
        assert select.select([reader], [], [], 2)[0] == [reader]
        assert reader.consume(lambda c, d: seen.append(d)) == 5
        timer = threading.Timer(0.1, producer.run, args=(5,))
        timer.start()
        try:
            assert reader.poll(timeout=10, callback=lambda c, d: seen.append(d)) == 5
        finally:
            timer.join()
        assert len(seen) == 10


def test_asyncio(producer: PerfProducer) -> None:
    async def main(reader: PerfEventReader) -> list[int]:
        asyncio.get_running_loop().call_later(0.05, producer.run, 4)
        samples = await asyncio.wait_for(reader.read_async(), 5)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read_async(), 0.1)
        return seqs_of(samples)

    with PerfEventReader(producer.events) as reader:
        assert asyncio.run(main(reader)) == [0, 1, 2, 3]


def test_close_empties_the_map(producer: PerfProducer) -> None:
    reader = PerfEventReader(producer.events)
    producer.run(1)
    assert len(reader.read()) == 1 and producer.errors == 0
    reader.close()
    producer.run(1)  # no perf event in the slot any more: the helper fails (ENOENT), the program counts it
    assert producer.errors == 1
    with pytest.raises(MapClosed):
        reader.read()


def test_bad_input(producer: PerfProducer) -> None:
    with pytest.raises(InvalidArgument):
        PerfEventReader(producer.state)
    with pytest.raises(InvalidArgument):
        PerfEventReader(producer.events, pages=3)
    with pytest.raises(InvalidArgument):
        PerfEventReader(producer.events, wakeup_events=0)
    if len(online_cpus()) > 1:
        with ebpfmaps.create("perf_event_array", key_size=4, value_size=4, max_entries=1) as small, \
                pytest.raises(InvalidArgument, match="entries"):
            PerfEventReader(small)
    reader = PerfEventReader(producer.events)
    with pytest.raises(InvalidArgument):
        reader.consume()
    reader.close()


def test_a_callback_may_close_the_reader(producer: PerfProducer) -> None:
    """Closing from inside a callback unmaps the rings; the drain stops there instead of touching them."""
    reader = PerfEventReader(producer.events)
    with on_cpu(online_cpus()[0]):
        producer.run(3)
    got: list[bytes] = []

    def first_then_close(cpu: int, data: bytes) -> None:
        got.append(data)
        reader.close()

    assert reader.consume(first_then_close) == 1
    assert len(got) == 1 and REC.unpack_from(got[0])[0] == 0
    with pytest.raises(MapClosed):
        reader.read()


def test_a_raising_callback_leaves_the_later_samples_in_the_ring(producer: PerfProducer) -> None:
    cpu = online_cpus()[0]
    with PerfEventReader(producer.events, cpus=[cpu]) as reader:
        with on_cpu(cpu):
            producer.run(5)
        calls: list[int] = []

        def second_fails(cpu: int, data: bytes) -> None:
            calls.append(REC.unpack_from(data)[0])
            if len(calls) == 2:
                raise RuntimeError("second")

        with pytest.raises(RuntimeError, match="second"):
            reader.consume(second_fails)
        assert calls == [0, 1]
        # The sample whose callback raised is read; the three after it are still pending.
        assert reader.pending() == 3 * (8 + 4 + raw_len(32))
        samples = reader.read()
        assert seqs_of(samples) == [2, 3, 4]
        assert all(type(s) is PerfSample and s.cpu == cpu and len(s.data) == raw_len(32) for s in samples)
