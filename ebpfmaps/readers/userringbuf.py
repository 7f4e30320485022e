"""Producing into a user ring buffer (``BPF_MAP_TYPE_USER_RINGBUF``): Python writes, a program drains.

The roles of the ordinary ring buffer are swapped (kernel/bpf/ringbuf.c, and libbpf's
``user_ring_buffer__*`` in ringbuf.c which follows the same protocol):

* offset 0, one page, mapped read-only: ``consumer_pos``, advanced by ``bpf_user_ringbuf_drain``;
* offset one page: ``producer_pos`` (ours to write) and then the data area, mapped twice
  back to back, read-write.

Reserving a record writes its header (``len | BUSY``) and then moves ``producer_pos``
past it; submitting clears the busy bit (discarding sets the discard bit instead). The
kernel stops draining at a busy record and skips discarded ones. Ordering relies on
x86-64 TSO as described in :mod:`ebpfmaps.readers.ringbuf`: the header store precedes the
``producer_pos`` store, and the payload stores precede the header store that publishes
the record, all in program order and each as one aligned store.

A ring has one producer: the writer serialises its own threads with a lock, but two
writers (or processes) on one map would corrupt it, exactly as with libbpf.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Iterable
from typing import Any

from ebpfmaps.errors import InvalidArgument, MapClosed, OutOfMemory
from ebpfmaps.maptypes import MapType
from ebpfmaps.readers._shared import (
    Deadline,
    MapLike,
    RingMapping,
    Waiter,
    release_views,
    resolve_map,
)
from ebpfmaps.readers.ringbuf import BUSY_BIT, DISCARD_BIT, HDR_SIZE, LEN_MASK, record_span

# The kernel refuses samples larger than a dynptr can describe (bpf_dynptr_check_size,
# DYNPTR_MAX_SIZE = 2**24 - 1 in kernel/bpf/helpers.c) with E2BIG when draining.
MAX_SAMPLE = (1 << 24) - 1
_FULL_RECHECK = 0.001


class UserRingBufReservation:
    """Space reserved in a user ring buffer: fill :attr:`view`, then :meth:`submit` or :meth:`discard`.

    Usable as a context manager: submitted on normal exit, discarded if the block raises.
    """

    __slots__ = ("_done", "_hdr_index", "_writer", "size", "view")

    def __init__(self, writer: UserRingBufWriter, hdr_index: int, view: memoryview, size: int) -> None:
        self._writer = writer
        self._hdr_index = hdr_index
        self.view = view
        self.size = size
        self._done = False

    def submit(self) -> None:
        """Publish the record to the draining program."""
        self._finish(0)

    def discard(self) -> None:
        """Give the space back; the kernel skips the record."""
        self._finish(DISCARD_BIT)

    def _finish(self, flag: int) -> None:
        self._writer._finish(self, flag)

    def __enter__(self) -> memoryview:
        return self.view

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if not self._done:
            if exc_type is None:
                self.submit()
            else:
                self.discard()


class UserRingBufWriter:
    """Writes records that a BPF program consumes with ``bpf_user_ringbuf_drain``.

    >>> w = UserRingBufWriter(urb)                   # doctest: +SKIP
    >>> w.write(b"hello")                            # doctest: +SKIP
    >>> with w.reserve(16) as buf: buf[:] = bytes(16)   # doctest: +SKIP
    """

    def __init__(self, user_ringbuf: MapLike) -> None:
        ref, info = resolve_map(user_ringbuf, MapType.USER_RINGBUF, "UserRingBufWriter")
        try:
            # Consumer page: the kernel's (read-only here). Producer page + twice the data area: ours to write.
            self._ring = RingMapping(ref.handle, info, python_consumes=False)
            try:
                # The kernel reports EPOLLOUT while the ring has free space (ringbuf_map_poll_user).
                self._waiter = Waiter([ref.handle], select.EPOLLOUT)
            except BaseException:
                self._ring.close()
                raise
        except BaseException:
            ref.release()
            raise
        self._map = ref
        self.map_id = info.id
        self.data_size = self._ring.size
        self._mask = self.data_size - 1
        self._cons, self._prod, self._data, self._hdr = self._ring.cons, self._ring.prod, self._ring.data, self._ring.hdr
        self._lock = threading.Lock()
        self._closed = False
        # Reserved but not yet submitted or discarded: close() discards them, so a forgotten
        # reservation cannot leave a busy record that stops the kernel's draining for good.
        self._outstanding: set[UserRingBufReservation] = set()

    # ------------------------------------------------------------------ state
    def free_space(self) -> int:
        """Bytes not yet drained by the kernel (records need :func:`record_span` bytes each)."""
        self._check_open()
        return int(self.data_size - (self._prod[0] - self._cons[0]))

    def pending(self) -> int:
        """Bytes written (or reserved) that the kernel has not drained yet."""
        self._check_open()
        return int(self._prod[0] - self._cons[0])

    def _check_open(self) -> None:
        if self._closed:
            raise MapClosed("the user ring buffer writer is closed", op="user_ringbuf")
        if self._map.handle.num < 0:
            # The Map was closed under the writer: the writer ends with it, discarding its reservations.
            self.close()
            raise MapClosed("the user ring buffer writer's map is closed", op="user_ringbuf")

    def _check_size(self, size: int) -> int:
        if size < 0 or size > MAX_SAMPLE or size > LEN_MASK:
            raise InvalidArgument(f"a user ring buffer record is 0..{MAX_SAMPLE} bytes, not {size}", op="reserve")
        span = record_span(size)
        if span > self.data_size:
            raise InvalidArgument(
                f"a {size}-byte record needs {span} bytes; the ring holds {self.data_size}", op="reserve"
            )
        return span

    # ------------------------------------------------------------------ producing
    def try_reserve(self, size: int) -> UserRingBufReservation | None:
        """Reserve ``size`` bytes now, or return None when the ring is too full."""
        span = self._check_size(size)
        self._check_open()  # outside the lock: on a closed map it closes the writer, which takes the lock
        with self._lock:
            if self._closed:
                raise MapClosed("the user ring buffer writer is closed", op="user_ringbuf")
            prod = self._prod[0]
            if self.data_size - (prod - self._cons[0]) < span:
                return None
            off = prod & self._mask
            self._hdr[off >> 2] = size | BUSY_BIT  # header (and its pad word) before producer_pos moves
            self._hdr[(off >> 2) + 1] = 0
            self._prod[0] = prod + span  # release: the busy header is visible first
            view = self._data[off + HDR_SIZE:off + HDR_SIZE + size]
            res = UserRingBufReservation(self, off >> 2, view, size)
            self._outstanding.add(res)
        return res

    def reserve(self, size: int, timeout: float | None = 0) -> UserRingBufReservation:
        """Reserve ``size`` bytes, waiting up to ``timeout`` seconds (None: forever) for the kernel to drain.

        Raises :class:`~ebpfmaps.errors.OutOfMemory` when the ring stays too full.
        """
        self._check_size(size)
        deadline = Deadline(timeout)
        while True:
            res = self.try_reserve(size)
            if res is not None:
                return res
            if deadline.expired():
                raise OutOfMemory(
                    f"user ring buffer full: {self.free_space()} bytes free, a {size}-byte record needs "
                    f"{record_span(size)}", errno=28, op="reserve",
                )
            # EPOLLOUT means "some space is free", maybe less than we need: wait at most 1 ms
            # per round so a ring that stays nearly full is re-checked without a busy loop.
            remaining = deadline.remaining()
            pause = _FULL_RECHECK if remaining is None else min(remaining, _FULL_RECHECK)
            if self._waiter.wait(pause):
                time.sleep(pause)

    def _finish(self, res: UserRingBufReservation, flag: int) -> None:
        """Submit (flag 0) or discard (DISCARD_BIT) a reservation of this writer."""
        if not self._closed and self._map.closed:
            self.close()  # the map went first: discard every reservation, this one included
        with self._lock:
            if self._closed:
                raise MapClosed("the user ring buffer writer was closed, which discarded this reservation",
                                op="submit")
            if res._done:
                raise InvalidArgument("this reservation was already submitted or discarded", op="submit")
            res.view.release()  # the bytes belong to the kernel from here on (raises while exported further)
            res._done = True
            self._outstanding.discard(res)
            # One aligned 4-byte store publishes the record (release on x86: the payload stores
            # made through the view happened before it in program order).
            self._hdr[res._hdr_index] = res.size | flag

    def write(self, record: bytes | bytearray | memoryview, timeout: float | None = 0) -> None:
        """Copy ``record`` into the ring and submit it (waits up to ``timeout`` for space)."""
        data = memoryview(record).cast("B")
        res = self.reserve(data.nbytes, timeout)
        res.view[:] = data
        res.submit()

    def write_many(self, records: Iterable[bytes | bytearray | memoryview]) -> int:
        """Write records until one does not fit; returns how many were written (never waits)."""
        written = 0
        for record in records:
            data = memoryview(record).cast("B")
            res = self.try_reserve(data.nbytes)
            if res is None:
                break
            res.view[:] = data
            res.submit()
            written += 1
        return written

    def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until the kernel has drained everything written (True) or ``timeout`` passes (False)."""
        deadline = Deadline(timeout)
        while self.pending():
            if deadline.expired():
                return False
            self._waiter.wait(min(deadline.remaining() or 0.01, 0.01))
        return True

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Unmap the ring (records already submitted stay in it for the kernel). Idempotent; every later
        call, a pending reservation's submit() included, raises :class:`~ebpfmaps.errors.MapClosed`.

        Reservations not yet submitted are discarded (the kernel skips them) and their views released.
        """
        with self._lock:
            if self._closed:
                return
            for res in self._outstanding:
                res._done = True
                release_views([res.view])
                self._hdr[res._hdr_index] = res.size | DISCARD_BIT
            self._outstanding.clear()
            self._closed = True
            self._waiter.close()
            self._ring.close()
            self._map.release()

    def __copy__(self) -> UserRingBufWriter:
        raise TypeError("a UserRingBufWriter cannot be copied: a ring has one producer; share the writer")

    def __deepcopy__(self, memo: dict[int, Any]) -> UserRingBufWriter:
        return self.__copy__()

    def __reduce__(self) -> Any:
        raise TypeError("a UserRingBufWriter cannot be pickled")

    def __enter__(self) -> UserRingBufWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"pending={self.pending()}"
        return f"<UserRingBufWriter map_id={self.map_id} size={self.data_size} {state}>"
