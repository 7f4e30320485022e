"""UserRingBufWriter: Python produces, a real program drains (bpf_user_ringbuf_drain) and echoes each record
into an ordinary ring buffer that RingBufReader reads back (tests/bpf/rb_user_echo.bpf.c)."""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps.errors import InvalidArgument, MapClosed, OutOfMemory
from ebpfmaps.maptypes import MapType
from ebpfmaps.readers import RingBufReader, UserRingBufWriter
from ebpfmaps.readers.ringbuf import record_span
from tests.kernel_features import require_map_type
from tests.readers_support import load_programs

PAGE = 4096


def make_record(seq: int, size: int) -> bytes:
    """A record the echo program understands: u32 total length, then a recognisable body."""
    body = struct.pack("<IQ", size, seq)
    return (body + bytes((seq + i) & 0xFF for i in range(size - len(body))))[:size]


class Echo:
    def __init__(self, bpffs: Path, size: int) -> None:
        require_map_type(MapType.USER_RINGBUF)
        self.urb = ebpfmaps.create("user_ringbuf", key_size=0, value_size=0, max_entries=size, name="urb")
        self.out = ebpfmaps.create("ringbuf", key_size=0, value_size=0, max_entries=16 * PAGE, name="echo_out")
        self.state = ebpfmaps.create("array", key_size=4, value_size=8, max_entries=3, name="echo_state",
                                     key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
        self.loaded = load_programs("rb_user_echo", bpffs,
                                    {"urb": self.urb, "echo_out": self.out, "echo_state": self.state})
        self.prog = self.loaded["urb_echo"]

    def drain(self) -> int:
        """Run the program once; returns what bpf_user_ringbuf_drain returned."""
        assert self.prog.test_run(data=bytes(64)).retval == 1
        return ctypes.c_int64(int(self.state[2])).value

    def close(self) -> None:
        self.loaded.close()
        for m in (self.urb, self.out, self.state):
            m.close()


@pytest.fixture
def echo(bpffs: Path) -> Iterator[Echo]:
    e = Echo(bpffs, PAGE)
    yield e
    e.close()


def test_round_trip_through_a_program(echo: Echo) -> None:
    with UserRingBufWriter(echo.urb) as writer, RingBufReader(echo.out) as reader:
        assert writer.free_space() == PAGE and writer.pending() == 0
        sent = [make_record(i, 12 + i * 7 % 200) for i in range(10)]
        for rec in sent:
            writer.write(rec)
        assert writer.pending() == sum(record_span(len(r)) for r in sent)
        assert echo.drain() == 10
        assert writer.pending() == 0  # the kernel advanced consumer_pos
        assert reader.read() == sent
        assert int(echo.state[0]) == 10 and int(echo.state[1]) == 0


def test_reserve_submit_discard_and_busy(echo: Echo) -> None:
    with UserRingBufWriter(echo.urb) as writer, RingBufReader(echo.out) as reader:
        with writer.reserve(16) as buf:
            buf[:] = make_record(1, 16)
        with pytest.raises(RuntimeError), writer.reserve(16) as buf:
            buf[:] = make_record(2, 16)
            raise RuntimeError("discarded")
        held = writer.reserve(16)
        held.view[:] = make_record(3, 16)
        after = writer.reserve(16)
        after.view[:] = make_record(4, 16)
        after.submit()
        # Draining stops at the record still reserved (busy); the one behind it waits.
        assert echo.drain() == 1
        assert reader.read() == [make_record(1, 16)]
        held.submit()
        assert echo.drain() == 2
        assert reader.read() == [make_record(3, 16), make_record(4, 16)]
        with pytest.raises(InvalidArgument):
            held.submit()


def test_wrap_around_and_full_ring(echo: Echo) -> None:
    with UserRingBufWriter(echo.urb) as writer, RingBufReader(echo.out) as reader:
        seq = 0
        for round_no in range(40):
            size = 8 + 4 + (round_no * 29) % 240
            batch = [make_record(seq + i, size) for i in range(PAGE // record_span(size))]
            assert writer.write_many(batch) == len(batch)  # exactly fills the ring
            assert writer.try_reserve(size) is None
            with pytest.raises(OutOfMemory):
                writer.write(batch[0], timeout=0)
            assert echo.drain() == len(batch)
            assert reader.read() == batch
            seq += len(batch)
        assert int(echo.state[1]) == 0


def test_bad_input(echo: Echo) -> None:
    with pytest.raises(InvalidArgument):
        UserRingBufWriter(echo.out)  # an ordinary ring buffer is the kernel's to write
    writer = UserRingBufWriter(echo.urb)
    with pytest.raises(InvalidArgument):
        writer.reserve(PAGE)  # header + 4096 bytes can never fit in a 4096-byte ring
    with pytest.raises(InvalidArgument):
        writer.reserve(-1)
    assert writer.pending() == 0  # refused before touching the ring
    writer.close()
    with pytest.raises(MapClosed):
        writer.write(b"1234")


def test_close_discards_pending_reservations(echo: Echo) -> None:
    """A reservation left pending at close() is discarded, so the ring is not blocked by a busy record."""
    writer = UserRingBufWriter(echo.urb)
    pending = writer.reserve(16)
    pending.view[:] = make_record(1, 16)
    writer.close()
    with pytest.raises(ValueError):
        pending.view[0] = 1  # released: the space is the kernel's
    with pytest.raises(MapClosed):
        pending.submit()
    with UserRingBufWriter(echo.urb) as again, RingBufReader(echo.out) as reader:
        again.write(make_record(2, 16))
        assert echo.drain() == 1  # the discarded record is skipped, the next one is drained
        assert reader.read() == [make_record(2, 16)]
