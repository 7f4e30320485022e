"""RingBufReader against records that a real BPF program writes (tests/bpf/rb_producer.bpf.c via test_run)."""

from __future__ import annotations

import asyncio
import ctypes
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps.errors import InvalidArgument, MapClosed
from ebpfmaps.readers import RingBufReader
from ebpfmaps.readers.ringbuf import record_span
from tests.kernel_features import require_atomic_fetch, require_helper
from tests.readers_support import load_programs

RB_MAGIC = 0xEB9F0A11
REC = struct.Struct("<QII")  # struct rb_rec: seq, size, magic
MODE_OUTPUT, MODE_RESERVE, MODE_DISCARD, MODE_ODD_DISCARDED = range(4)
BPF_RB_NO_WAKEUP, BPF_RB_FORCE_WAKEUP = 1, 2
PAGE = 4096


class Producer:
    """A ring buffer map, the producer program sharing it, and a way to run the program."""

    def __init__(self, bpffs: Path, ring_size: int) -> None:
        self.rb = ebpfmaps.create("ringbuf", key_size=0, value_size=0, max_entries=ring_size, name="rb")
        self.state = ebpfmaps.create("array", key_size=4, value_size=8, max_entries=2, name="rb_state",
                                     key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
        self.loaded = load_programs("rb_producer", bpffs, {"rb": self.rb, "rb_state": self.state})
        self.prog = self.loaded["rb_produce"]

    def run(self, count: int, mode: int = MODE_OUTPUT, size: int = 32, flags: int = 0, repeat: int = 1) -> None:
        packet = struct.pack("<IIII", mode, count, size, flags).ljust(64, b"\0")
        result = self.prog.test_run(data=packet, repeat=repeat)
        assert result.retval == 1, result  # XDP_DROP: the program found its config and ran the loop

    @property
    def produced(self) -> int:
        return int(self.state[0])

    @property
    def drops(self) -> int:
        return int(self.state[1])

    def close(self) -> None:
        self.loaded.close()
        self.rb.close()
        self.state.close()


@pytest.fixture
def producer(bpffs: Path) -> Iterator[Callable[[int], Producer]]:
    require_helper("loop")  # rb_producer.bpf.c writes its records in a bpf_loop
    require_atomic_fetch()  # and numbers them with an atomic fetch-add
    made: list[Producer] = []

    def make(ring_size: int = 4 * PAGE) -> Producer:
        p = Producer(bpffs, ring_size)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def check_record(rec: bytes, seq: int, size: int) -> None:
    assert len(rec) == size
    got_seq, got_size, magic = REC.unpack_from(rec)
    assert (got_seq, got_size, magic) == (seq, size, RB_MAGIC)
    assert rec[REC.size:] == bytes(size - REC.size)


def test_reads_records_a_program_wrote(producer: Callable[[int], Producer]) -> None:
    p = producer(4 * PAGE)
    with RingBufReader(p.rb) as reader:
        assert reader.available() == 0
        p.run(10, size=40)
        assert reader.available() == 10 * record_span(40)
        records = reader.read()
        assert len(records) == 10
        for i, rec in enumerate(records):
            check_record(rec, i, 40)
        assert reader.available() == 0
        assert reader.consumer_pos == reader.producer_pos == 10 * record_span(40)
        assert p.produced == 10 and p.drops == 0


def test_reserve_submit_and_iteration(producer: Callable[[int], Producer]) -> None:
    p = producer(4 * PAGE)
    with RingBufReader(p.rb) as reader:
        p.run(5, mode=MODE_RESERVE)
        seqs = [REC.unpack_from(rec)[0] for rec in reader]
        assert seqs == [0, 1, 2, 3, 4]
        assert list(reader) == []


def test_discarded_records_are_skipped(producer: Callable[[int], Producer]) -> None:
    p = producer(4 * PAGE)
    with RingBufReader(p.rb) as reader:
        p.run(6, mode=MODE_DISCARD)
        assert reader.available() == 6 * record_span(64)  # the discarded records occupy the ring...
        assert reader.read() == []
        assert reader.available() == 0  # ...and reading released them
        p.run(10, mode=MODE_ODD_DISCARDED)
        seqs = [REC.unpack_from(rec)[0] for rec in reader.read()]
        assert seqs == [6, 8, 10, 12, 14]


def test_wrap_around_with_variable_sizes(producer: Callable[[int], Producer]) -> None:
    """A one-page ring, 2000 records of changing sizes: records wrap over the end many times."""
    p = producer(PAGE)
    seq = 0
    wrapped = 0
    with RingBufReader(p.rb) as reader:
        for round_no in range(100):
            size = 16 + (round_no * 37) % 180
            span = record_span(size)
            fits = PAGE // span
            count = min(20, fits)
            start = reader.consumer_pos
            p.run(count, size=size)
            for k in range(count):
                off = (start + k * span) % PAGE
                wrapped += off + span > PAGE
            records = reader.read()
            assert len(records) == count, (round_no, size)
            for rec in records:
                check_record(rec, seq, size)
                seq += 1
        assert p.drops == 0
        assert wrapped >= 10  # the double mapping made each of those contiguous
        assert reader.producer_pos == reader.consumer_pos > 50 * PAGE


def test_full_ring_drops_are_counted_by_the_program(producer: Callable[[int], Producer]) -> None:
    p = producer(PAGE)
    with RingBufReader(p.rb) as reader:
        p.run(200, size=64)  # 200 * 72 bytes never fit in 4096
        got = reader.read()
        assert len(got) == PAGE // record_span(64)
        assert len(got) + p.drops == 200
        p.run(3, size=64)  # space is back once consumed
        assert len(reader.read()) == 3


def test_poll_timeout_and_wakeup(producer: Callable[[int], Producer]) -> None:
    p = producer(4 * PAGE)
    with RingBufReader(p.rb) as reader:
        seen: list[bytes] = []
        t0 = time.monotonic()
        assert reader.poll(timeout=0, callback=seen.append) == 0
        assert time.monotonic() - t0 < 0.1
        t0 = time.monotonic()
        assert reader.poll(timeout=0.2, callback=seen.append) == 0
        waited = time.monotonic() - t0
        assert 0.19 <= waited < 2.0
        # A record produced while poll() waits wakes it long before its timeout.
        timer = threading.Timer(0.1, p.run, args=(3,))
        timer.start()
        t0 = time.monotonic()
        n = reader.poll(timeout=10, callback=seen.append)
        woke = time.monotonic() - t0
        timer.join()
        got = n + reader.consume(seen.append)
        assert got == 3 and len(seen) == 3
        assert woke < 5.0
        with pytest.raises(InvalidArgument):
            reader.poll(timeout=-1, callback=seen.append)


def test_no_wakeup_flag_still_delivers_on_poll_timeout(producer: Callable[[int], Producer]) -> None:
    p = producer(4 * PAGE)
    with RingBufReader(p.rb) as reader:
        p.run(2, flags=BPF_RB_NO_WAKEUP)
        assert reader.wait(timeout=0)  # data is there even without a notification
        assert len(reader.read()) == 2


def test_callback_errors_consume_the_record(producer: Callable[[int], Producer]) -> None:
    p = producer(4 * PAGE)
    with RingBufReader(p.rb) as reader:
        p.run(3)

        def boom(rec: bytes) -> None:
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            reader.consume(boom)
        seqs = [REC.unpack_from(r)[0] for r in reader.read()]
        assert seqs == [1, 2]


def test_zero_copy_views_are_released(producer: Callable[[int], Producer]) -> None:
    p = producer(4 * PAGE)
    with RingBufReader(p.rb) as reader:
        p.run(4, size=48)
        kept: list[memoryview] = []
        seqs: list[int] = []

        def look(view: memoryview) -> None:
            assert view.readonly and len(view) == 48
            seqs.append(REC.unpack_from(view)[0])
            kept.append(view)

        assert reader.consume(look, zero_copy=True, limit=2) == 2
        assert seqs == [0, 1]
        with pytest.raises(ValueError):
            bytes(kept[0])  # released: it would read space the kernel may reuse
        for view in reader.views():
            seqs.append(REC.unpack_from(view)[0])
        assert seqs == [0, 1, 2, 3]
        assert reader.available() == 0


def test_read_array_batch_decoding(producer: Callable[[int], Producer]) -> None:
    np = pytest.importorskip("numpy")  # in the [dev] extra; CI has it
    p = producer(16 * PAGE)
    dtype = np.dtype([("seq", "<u8"), ("size", "<u4"), ("magic", "<u4"), ("rest", "u1", 48)])
    with RingBufReader(p.rb) as reader:
        p.run(100, mode=MODE_RESERVE)
        arr = reader.read_array(64, dtype)
        assert arr["seq"].tolist() == list(range(100))
        assert (arr["magic"] == RB_MAGIC).all()
        p.run(10, mode=MODE_ODD_DISCARDED)
        arr = reader.read_array(64, dtype)
        assert arr["seq"].tolist() == [100, 102, 104, 106, 108]
        # A record of another size stops the batch; consume() takes it from there.
        p.run(2, mode=MODE_RESERVE)
        p.run(1, size=24)
        p.run(1, mode=MODE_RESERVE)
        raw = reader.read_array(64)
        assert raw.shape == (2, 64)
        rest = reader.read()
        assert [len(r) for r in rest] == [24, 64]
        with pytest.raises(InvalidArgument):
            reader.read_array(64, np.dtype("<u8"))


def test_concurrent_producers_lose_nothing(producer: Callable[[int], Producer]) -> None:
    """Two threads run the producer (ctypes drops the GIL, so on two CPUs) while the reader consumes.

    Reservations from two CPUs interleave, so the reader meets records that are still busy.
    """
    p = producer(16 * PAGE)
    got: list[int] = []
    stop = threading.Event()
    rounds = 200

    def produce() -> None:
        for _ in range(rounds):
            p.run(20, mode=MODE_RESERVE)

    with RingBufReader(p.rb) as reader:
        threads = [threading.Thread(target=produce) for _ in range(2)]

        def on_record(rec: bytes) -> None:
            got.append(REC.unpack_from(rec)[0])

        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while (any(t.is_alive() for t in threads) or reader.available()) and time.monotonic() < deadline:
            reader.poll(timeout=0.05, callback=on_record)
        stop.set()
        for t in threads:
            t.join()
        reader.consume(on_record)
    produced = p.produced
    assert produced == 2 * rounds * 20
    assert len(got) + p.drops == produced
    assert len(set(got)) == len(got)


def test_asyncio_integration(producer: Callable[[int], Producer]) -> None:
    p = producer(4 * PAGE)

    async def main(reader: RingBufReader) -> list[int]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, p.run, 3)
        first = await asyncio.wait_for(reader.read_async(), 5)
        seqs = [REC.unpack_from(r)[0] for r in first]
        loop.call_later(0.05, p.run, 2)
        stream = reader.__aiter__()
        while len(seqs) < 5:
            seqs.append(REC.unpack_from(await asyncio.wait_for(stream.__anext__(), 5))[0])
        # Nothing more: waiting times out instead of blocking the loop.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(reader.read_async(), 0.1)
        return seqs

    with RingBufReader(p.rb) as reader:
        assert asyncio.run(main(reader)) == [0, 1, 2, 3, 4]


def test_bad_input_is_refused(producer: Callable[[int], Producer]) -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=4) as h, pytest.raises(InvalidArgument):
        RingBufReader(h)
    with pytest.raises(InvalidArgument):
        RingBufReader("rb")  # type: ignore[arg-type]
    p = producer(PAGE)
    reader = RingBufReader(p.rb)
    with pytest.raises(InvalidArgument):
        reader.consume()  # no callback anywhere
    with pytest.raises(InvalidArgument):
        reader.read(limit=-1)
    reader.close()
    with pytest.raises(MapClosed):
        reader.read()
    reader.close()  # idempotent


def test_reader_on_a_pinned_map_in_another_process(producer: Callable[[int], Producer], bpffs: Path) -> None:
    """The ring pinned in bpffs is read from a second process; the consumer position is shared state."""
    from tests.conftest import run_python

    p = producer(4 * PAGE)
    pin = bpffs / "shared_rb"
    p.rb.pin(str(pin))
    p.run(7, size=20)
    out = run_python(
        "import sys, ebpfmaps\n"
        "from ebpfmaps.readers import RingBufReader\n"
        "m = ebpfmaps.open_pinned(sys.argv[1])\n"
        "with RingBufReader(m) as r:\n"
        "    recs = r.read(limit=4)\n"
        "print(len(recs), [len(x) for x in recs])\n",
        str(pin),
    )
    assert out.stdout.split("\n")[0] == "4 [20, 20, 20, 20]"
    with RingBufReader(p.rb) as reader:
        seqs = [REC.unpack_from(r)[0] for r in reader.read()]
    assert seqs == [4, 5, 6]


def test_close_while_a_zero_copy_view_is_lent(producer: Callable[[int], Producer]) -> None:
    """close() always succeeds: the lent view is released, its record stays in the ring, later use is MapClosed."""
    p = producer(4 * PAGE)
    p.run(3, size=32)
    reader = RingBufReader(p.rb)
    records = reader.views()
    view = next(records)
    kept = view[:8]  # a slice the caller made: it keeps the ring mapped, never dangling
    reader.close()
    with pytest.raises(ValueError):
        bytes(view)
    assert REC.unpack_from(bytes(kept) + bytes(8))[0] == 0
    with pytest.raises(MapClosed):
        next(records)
    del kept
    # Nothing was consumed: a new reader gets all three records.
    with RingBufReader(p.rb) as again:
        assert [REC.unpack_from(r)[0] for r in again.read()] == [0, 1, 2]
        p.run(2, size=32)

        def close_inside(view: memoryview) -> None:
            again.close()

        assert again.consume(close_inside, zero_copy=True) == 1
        with pytest.raises(MapClosed):
            again.read()
    with RingBufReader(p.rb) as third:
        assert [REC.unpack_from(r)[0] for r in third.read()] == [3, 4]  # the record being read stayed


class RbRec(ctypes.Structure):
    _fields_ = [("seq", ctypes.c_uint64), ("size", ctypes.c_uint32), ("magic", ctypes.c_uint32),
                ("rest", ctypes.c_uint8 * 16)]


def test_runs_of_records_keep_order_limits_and_sizes(producer: Callable[[int], Producer]) -> None:
    # Runs of one size, then another, then the first again: every record once, in order.
    p = producer(16 * PAGE)
    with RingBufReader(p.rb) as reader:
        p.run(5, size=32)
        p.run(3, size=48)
        p.run(4, size=32)
        first = reader.read(limit=2)
        rest = reader.read()
        got = first + rest
        assert [REC.unpack_from(r)[0] for r in got] == list(range(12))
        assert [len(r) for r in got] == [32] * 5 + [48] * 3 + [32] * 4
        for i, r in enumerate(got):
            check_record(r, i, len(r))
        assert reader.available() == 0


def test_record_type_decodes_records_of_its_size(producer: Callable[[int], Producer]) -> None:
    p = producer(16 * PAGE)
    with RingBufReader(p.rb, record_type="<QII16x") as reader:
        p.run(3, size=32)
        p.run(1, size=48)  # another size: handed out as bytes
        p.run(2, size=32)
        got = reader.read()
        assert got[:3] == [(0, 32, RB_MAGIC), (1, 32, RB_MAGIC), (2, 32, RB_MAGIC)]
        assert isinstance(got[3], bytes)
        check_record(got[3], 3, 48)
        assert got[4:] == [(4, 32, RB_MAGIC), (5, 32, RB_MAGIC)]
    with RingBufReader(p.rb, record_type=RbRec) as reader:
        p.run(4, size=32)
        seen: list[RbRec] = []
        assert reader.consume(seen.append) == 4
        assert [(r.seq, r.size, r.magic) for r in seen] == [(6 + i, 32, RB_MAGIC) for i in range(4)]
        assert bytes(seen[0].rest) == bytes(16)
    with RingBufReader(p.rb, record_type=ctypes.c_uint64) as reader:  # shorter than the records: bytes
        p.run(1, size=32)
        (rec,) = reader.read()
        check_record(rec, 10, 32)


def test_callback_raising_mid_run_leaves_the_rest_in_the_ring(producer: Callable[[int], Producer]) -> None:
    p = producer(4 * PAGE)
    with RingBufReader(p.rb) as reader:
        p.run(6)
        calls: list[int] = []

        def third_fails(rec: bytes) -> None:
            calls.append(REC.unpack_from(rec)[0])
            if len(calls) == 3:
                raise RuntimeError("third")

        with pytest.raises(RuntimeError, match="third"):
            reader.consume(third_fails)
        assert calls == [0, 1, 2]
        # The failing record counts as consumed; the others are still in the ring.
        assert reader.available() == 3 * record_span(32)
        assert [REC.unpack_from(r)[0] for r in reader.read()] == [3, 4, 5]


def test_callback_closing_the_reader_mid_run_stops_the_run(producer: Callable[[int], Producer]) -> None:
    p = producer(4 * PAGE)
    reader = RingBufReader(p.rb)
    p.run(6)
    seen: list[int] = []

    def close_on_second(rec: bytes) -> None:
        seen.append(REC.unpack_from(rec)[0])
        if len(seen) == 2:
            reader.close()

    assert reader.consume(close_on_second) == 2
    assert seen == [0, 1]
    with pytest.raises(MapClosed):
        reader.read()
    # The records handed out are consumed, the others are still in the ring for the next reader.
    with RingBufReader(p.rb) as again:
        assert [REC.unpack_from(r)[0] for r in again.read()] == [2, 3, 4, 5]
