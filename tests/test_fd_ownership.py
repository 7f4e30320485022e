"""A closed map never reaches an fd number that now belongs to another map.

The kernel hands a closed descriptor's number to the next object opened. Anything that kept the
old map (a lazy iterator, another thread, a copy) must then get MapClosed, and the new map must
be left exactly as it was.
"""

from __future__ import annotations

import copy
import ctypes
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import pytest

import ebpfmaps
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.codecs import Codec
from ebpfmaps.errors import InvalidKeySize, MapClosed
from tests.conftest import ROOT


def _u32_map(n: int = 64) -> ebpfmaps.Map:
    return ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=max(n, 1))


def _victim_on_same_number(old_number: int) -> ebpfmaps.Map:
    """A new map that got ``old_number`` (the lowest free number is handed out first)."""
    victim = _u32_map(256)
    assert victim.fd == old_number, "the kernel did not reuse the closed number: the test cannot show anything"
    return victim


def test_every_operation_on_a_closed_map_raises_and_leaves_the_reused_number_alone() -> None:
    m = _u32_map()
    m.update_batch(range(10), range(10))
    number = m.fd
    m.close()
    victim = _victim_on_same_number(number)
    try:
        victim.update_batch(range(100, 110), range(10))
        before = victim.to_dict()
        for op in (lambda: m.lookup(100), lambda: m.update(100, 1), lambda: m.delete(100), lambda: 100 in m,
                   lambda: m.lookup_and_delete(100), lambda: list(m.items()), lambda: len(m), lambda: m.clear(),
                   lambda: m.lookup_batch(), lambda: m.update_batch([100], [7]), lambda: m.delete_batch([100]),
                   lambda: m.lookup_and_delete_batch(), m.info, m.freeze, lambda: m.fd):
            with pytest.raises(MapClosed):
                op()
        assert victim.to_dict() == before
        assert not victim.info().frozen
    finally:
        victim.close()


@pytest.mark.parametrize("walk", ["items", "keys", "iter_batches", "walk"])
def test_a_lazy_iterator_stops_at_close_instead_of_draining_another_map(walk: str) -> None:
    m = _u32_map(10_000)  # more than one kernel batch of items() (ebpfmaps.map.ITER_BATCH)
    m.update_batch(range(10_000), range(10_000))
    if walk == "items":
        it = iter(m.items())
    elif walk == "keys":
        it = iter(m.keys())
    elif walk == "iter_batches":
        it = iter(m.iter_batches(batch_size=16, delete=True))
    else:
        m._batch_ok = False  # the get_next_key walk that types without kernel batches use
        it = iter(m.items())
    next(it)
    number = m.fd
    m.close()
    victim = _victim_on_same_number(number)
    try:
        victim.update_batch(range(5000, 5100), range(100))
        with pytest.raises(MapClosed):
            for _ in it:
                pass
        assert len(victim) == 100
        assert victim[5000] == 0
    finally:
        victim.close()


def test_threads_racing_close_never_write_into_the_next_map() -> None:
    # Writers hammer a map that is closed under them; a new map takes the number at once. Every
    # write either lands in the old map (before the close took effect) or raises MapClosed.
    stray = 0
    for _ in range(20):
        m = _u32_map()
        number = m.fd
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer(target: ebpfmaps.Map = m, stop: threading.Event = stop,
                   errors: list[BaseException] = errors) -> None:
            i = 0
            while not stop.is_set():
                try:
                    target.update(i % 64, 0xBAD)
                except MapClosed:
                    return
                except BaseException as exc:  # anything else is a failure of the test
                    errors.append(exc)
                    return
                i += 1

        threads = [threading.Thread(target=writer) for _ in range(3)]
        for t in threads:
            t.start()
        m.close()
        victim = _u32_map()
        try:
            stop.set()
            for t in threads:
                t.join()
            assert not errors, errors
            if victim.fd == number:
                stray += sum(1 for v in victim.values() if v == 0xBAD)
        finally:
            victim.close()
    assert stray == 0


def test_copy_gets_its_own_descriptor_and_outlives_the_original() -> None:
    m = _u32_map()
    m[1] = 11
    for dup in (copy.copy(m), copy.deepcopy(m)):
        assert dup.fd != m.fd
        assert dup.info().id == m.info().id
        assert dup[1] == 11
        assert type(dup) is type(m)
        assert dup.key_codec is m.key_codec
    c = copy.copy(m)
    m.close()
    c[2] = 22
    assert c[1] == 11 and c[2] == 22
    c.close()


def test_a_map_cannot_be_pickled() -> None:
    with _u32_map() as m, pytest.raises(TypeError, match="pin"):
        pickle.dumps(m)


def test_close_waits_for_calls_in_flight_before_releasing_the_number() -> None:
    with _u32_map() as m:
        h = m.handle
        number = h.enter("test")  # a call in flight
        m.close()
        assert m.closed
        # The number is still ours while the call is in flight: the kernel cannot hand it out.
        assert os.fstat(number) is not None
        probe = os.dup(0)
        assert probe != number
        os.close(probe)
        h.leave()  # the last call out releases it
        with pytest.raises(OSError):
            os.fstat(number)


def test_fd_handle_closes_once_under_concurrent_closes() -> None:
    for _ in range(200):
        num = os.open("/dev/null", os.O_RDONLY)
        h = FD(num, "test")
        threads = [threading.Thread(target=h.close) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        other = os.open("/dev/null", os.O_RDONLY)  # may reuse num: a second close would close it
        try:
            os.fstat(other)
        finally:
            os.close(other)


def test_lookup_and_delete_checks_the_key_codecs_output() -> None:
    class Short(Codec):
        def encode(self, value: object) -> bytes:
            return b"\x01\x00"  # 2 bytes for a 4-byte key

    with ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=4) as raw:
        raw.update(b"\x01\x00\x00\x00", bytes(8))
        m = ebpfmaps.open_by_id(raw.info().id, key_type=Short(4, "key"))
        for op in (lambda: m.lookup_and_delete(1), lambda: m.lookup(1), lambda: m.update(1, bytes(8)),
                   lambda: m.delete(1), lambda: 1 in m):
            with pytest.raises(InvalidKeySize):
                op()
        m.close()
        assert raw.lookup(b"\x01\x00\x00\x00") == bytes(8)  # still there: nothing reached the kernel


def test_a_finalizer_run_inside_the_close_lock_does_not_deadlock() -> None:
    """The garbage collector may run in the middle of a handle's critical section (any allocation there) and
    finalize an unreachable handle, whose ``close()`` takes the same lock in the same thread."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import gc, os
        from ebpfmaps._libbpf.fd import FD

        class Cycle:
            pass

        live = FD(os.open("/dev/null", os.O_RDONLY))
        for i in range(3000):
            gc.set_threshold(2 + i % 7)  # collections land on varying allocations, some inside hold()
            c = Cycle(); c.me = c; c.fd = FD(os.open("/dev/null", os.O_RDONLY)); del c
            live.hold("test"); live.release()
        print("done")
    """)], capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr
