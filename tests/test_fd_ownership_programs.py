"""Programs, links, BPF objects and readers own their descriptors: once closed they never reach a number
the kernel has handed to another object, copies get their own descriptor (or are refused), and a close
from another thread waits for the call in flight. Real kernel objects throughout."""

from __future__ import annotations

import copy
import os
import pickle
import threading
import time
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import asm
from ebpfmaps.asm import R0
from ebpfmaps.errors import KeyNotFound, MapClosed
from ebpfmaps.fdinfo import read_fdinfo
from ebpfmaps.maptypes import MapType
from ebpfmaps.programs import BpfObject, Program
from ebpfmaps.readers import PerfEventReader, RingBufReader, UserRingBufWriter
from tests.bpfbuild import bpf_object
from tests.kernel_features import require_map_type

PAGE = os.sysconf("SC_PAGE_SIZE")


def _returning(value: int, name: str = "") -> Program:
    return Program.load("socket_filter", [asm.mov64(R0, value), asm.exit_()], name=name)


def _fd_open(num: int) -> bool:
    return os.path.exists(f"/proc/self/fdinfo/{num}")


def _perf_array() -> ebpfmaps.Map:
    return ebpfmaps.create("perf_event_array", key_size=4, value_size=4, max_entries=ebpfmaps.possible_cpus())


# ------------------------------------------------------------------------------------ programs


def test_a_closed_program_never_acts_on_its_reused_number(bpffs: Path) -> None:
    old = _returning(7, "ebpfm_old")
    num = old.fd
    old_id = old.info().id
    old.close()
    with _returning(9, "ebpfm_new") as new:
        assert new.fd == num  # the kernel handed the number straight to the new program
        for call in (lambda: old.test_run(data=b"\0" * 16), old.info, lambda: old.pin(bpffs / "old"), old.dup,
                     lambda: old.fd, lambda: copy.copy(old)):
            with pytest.raises(MapClosed):
                call()
        assert not (bpffs / "old").exists()
        # the new program is untouched: same identity, same behaviour
        info = new.info()
        assert info.name == "ebpfm_new" and info.id != old_id
        assert new.test_run(data=b"\0" * 16).retval == 9
    old.close()  # idempotent, and still nothing happens to the number
    assert old.closed and repr(old).endswith("closed>")


def test_close_while_a_call_is_in_flight_keeps_the_number_until_it_leaves() -> None:
    prog = _returning(3)
    num = prog.handle.enter("test")  # what every syscall on the program does around the call
    try:
        prog.close()
        assert prog.closed
        with pytest.raises(MapClosed):
            prog.test_run(data=b"\0" * 16)
        # the number still refers to our program, so a program loaded now gets another one
        assert "prog_type" in read_fdinfo(num)
        with _returning(4) as other:
            assert other.fd != num
            assert other.test_run(data=b"\0" * 16).retval == 4
    finally:
        prog.handle.leave()
    assert not _fd_open(num)  # released by the last call out


def test_close_from_another_thread_during_test_run_is_safe() -> None:
    prog = _returning(5)
    num = prog.fd
    results: list[object] = []

    def run() -> None:
        try:
            results.append(prog.test_run(data=b"\0" * 64, repeat=3_000_000).retval)
        except Exception as exc:  # pragma: no cover - reported below
            results.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10
    while not prog.handle.users and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0)
    in_flight = bool(prog.handle.users)
    prog.close()
    if in_flight:
        assert _fd_open(num) and "prog_type" in read_fdinfo(num)  # not released under the running call
    worker.join(30)
    assert in_flight, "test_run finished before close(); raise repeat"
    assert results == [5]  # the call in flight finished on its own program
    assert not _fd_open(num)
    with pytest.raises(MapClosed):
        prog.test_run(data=b"\0" * 64)


def test_program_copies_own_a_duplicate_and_pickling_is_refused() -> None:
    with _returning(11, "ebpfm_copy") as prog:
        shallow, deep = copy.copy(prog), copy.deepcopy(prog)
        assert len({prog.fd, shallow.fd, deep.fd}) == 3
        assert prog.info().id == shallow.info().id == deep.info().id
        with pytest.raises(TypeError, match="pickled"):
            pickle.dumps(prog)
    with shallow, deep:
        assert shallow.test_run(data=b"\0" * 16).retval == 11 and deep.info().name == "ebpfm_copy"


# ------------------------------------------------------------------------------------ links


def test_a_detached_link_never_touches_the_link_that_reused_its_number(bpffs: Path) -> None:
    prog = Program.load("raw_tracepoint", [asm.mov64(R0, 0), asm.exit_()])
    with prog:
        old = prog.attach_raw_tracepoint("sys_enter")
        num = old.fd
        old.detach()
        with prog.attach_raw_tracepoint("sys_enter") as new:
            assert new.fd == num
            with pytest.raises(MapClosed):
                old.pin(bpffs / "old_link")
            with pytest.raises(MapClosed):
                old.fd  # noqa: B018
            old.detach()
            old.close()
            assert not old.attached and new.attached
            assert "link_type" in read_fdinfo(num)  # the new link is still there, under its number
            new.pin(bpffs / "new_link")
            assert (bpffs / "new_link").exists()
            os.unlink(bpffs / "new_link")
        assert not _fd_open(num)
    with pytest.raises(MapClosed):
        prog.attach_raw_tracepoint("sys_enter")  # a closed program attaches nothing


def test_links_refuse_copies_and_pickling() -> None:
    with Program.load("raw_tracepoint", [asm.mov64(R0, 0), asm.exit_()]) as prog, \
            prog.attach_raw_tracepoint("sys_enter") as link:
        for make in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError):
                make(link)
        assert link.attached


# ------------------------------------------------------------------------------------ BPF objects


def test_a_closed_bpf_object_refuses_calls_and_copies(bpffs: Path) -> None:
    obj = BpfObject.open(bpf_object("prog_share"), pin_root=bpffs)
    with pytest.raises(TypeError):
        copy.copy(obj)
    with pytest.raises(TypeError):
        pickle.dumps(obj)
    obj.load()
    prog = obj.programs["bump"]
    obj.close()
    assert obj.closed
    for call in (obj.program_names, obj.map_names, obj.program_types, lambda: obj.map("shared")):
        with pytest.raises(MapClosed):
            call()
    with prog:
        assert prog.test_run(data=b"\0" * 32).retval == 2  # XDP_PASS: taken programs own their descriptor


# ------------------------------------------------------------------------------------ readers


def test_ring_buffer_reader_ends_with_its_map_and_never_reads_the_reused_number() -> None:
    rb = ebpfmaps.create("ringbuf", max_entries=PAGE)
    reader = RingBufReader(rb)
    num = rb.fd
    rb.close()
    with ebpfmaps.create("ringbuf", max_entries=4 * PAGE) as other:
        assert other.fd == num
        for call in (reader.read, reader.available, lambda: reader.consume(print), lambda: reader.wait(0)):
            with pytest.raises(MapClosed):
                call()
        reader.close()
        with RingBufReader(other) as fresh:
            assert fresh.data_size == 4 * PAGE and fresh.read() == []
        assert other.info().max_entries == 4 * PAGE


def test_ring_buffer_reader_of_a_raw_fd_keeps_its_own_reference() -> None:
    rb = ebpfmaps.create("ringbuf", max_entries=PAGE)
    map_id = rb.id
    reader = RingBufReader(rb.fd)
    rb.close()  # the caller's number goes; the reader holds a duplicate
    with reader:
        assert reader.map_id == map_id and reader.read() == [] and reader.available() == 0
    with pytest.raises(TypeError):
        copy.copy(reader)
    with pytest.raises(TypeError):
        pickle.dumps(reader)


def test_user_ring_buffer_writer_ends_with_its_map() -> None:
    require_map_type(MapType.USER_RINGBUF)
    urb = ebpfmaps.create("user_ringbuf", max_entries=PAGE)
    writer = UserRingBufWriter(urb)
    res = writer.reserve(8)
    urb.close()
    with pytest.raises(MapClosed):
        writer.write(b"12345678")
    with pytest.raises(MapClosed):
        res.submit()  # discarded with the writer
    writer.close()
    with pytest.raises(TypeError):
        copy.deepcopy(writer)


def test_perf_reader_closed_after_its_map_leaves_the_reused_number_alone() -> None:
    events = _perf_array()
    reader = PerfEventReader(events)
    cpus = reader.cpus
    num = events.fd
    events.close()
    with _perf_array() as other, PerfEventReader(other) as other_reader:
        assert other.fd == num
        with pytest.raises(MapClosed):
            reader.read()
        reader.close()  # must not empty the slots of the map that now has the number
        assert other_reader.cpus == cpus
        for cpu in cpus:
            other.delete(cpu)  # still filled: succeeds
        with pytest.raises(KeyNotFound):
            other.delete(cpus[0])


def test_perf_reader_of_a_raw_fd_empties_only_its_own_map() -> None:
    events = _perf_array()
    reader = PerfEventReader(events.fd)
    events.close()
    with _perf_array() as other, PerfEventReader(other) as other_reader:
        reader.close()  # empties the slots of its own (duplicated) map
        for cpu in other_reader.cpus:
            other.delete(cpu)
    with pytest.raises(TypeError):
        copy.copy(reader)
