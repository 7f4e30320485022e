"""Pieces shared by the ring buffer and perf readers: map resolution, epoll waits, asyncio waits."""

from __future__ import annotations

import asyncio
import errno as E
import math
import mmap
import os
import select
import time
from typing import Any, Union

from ebpfmaps._libbpf.fd import FD
from ebpfmaps.errors import InvalidArgument, MapClosed, from_errno, out_of_descriptors
from ebpfmaps.map import Map, map_info_from_fd
from ebpfmaps.maptypes import type_name
from ebpfmaps.spec import MapInfo

PAGE_SIZE = mmap.PAGESIZE

#: What the readers accept as "the map": a live :class:`~ebpfmaps.Map` (kept alive by the
#: reader, which stops working when the map is closed) or a raw map fd, which the reader
#: duplicates at once (the caller may close its own number whenever it likes).
MapLike = Union[Map, int]


class MapRef:
    """The map a reader works on: the handle of its descriptor, which every syscall, epoll
    registration and mmap enters, and whether the reader owns that handle (a raw fd it duplicated)
    or borrows the Map's own (closing the Map then closes it for the reader too)."""

    __slots__ = ("handle", "map", "owned")

    def __init__(self, handle: FD, owner: Map | None) -> None:
        self.handle = handle
        self.map = owner  # keeps the Map (and so its descriptor) alive while the reader is
        self.owned = owner is None

    @property
    def closed(self) -> bool:
        return self.handle.closed

    def release(self) -> None:
        """The reader is done with the map: close the handle if it is ours, drop the Map otherwise."""
        if self.owned:
            self.handle.close()
        self.map = None


def resolve_map(target: MapLike, expected_type: int, role: str) -> tuple[MapRef, MapInfo]:
    """The map of ``target`` and its kernel info, checked to be a map of ``expected_type``.

    Sizes always come from the kernel's own view of the map (BPF_OBJ_GET_INFO_BY_FD),
    never from what the caller believes, so the mmap lengths match what the kernel maps.
    """
    if isinstance(target, Map):
        ref = MapRef(target.handle, target)
    elif isinstance(target, int) and not isinstance(target, bool):
        if target < 0:
            raise InvalidArgument(f"{role} needs a map fd, not {target}", op=role)
        try:
            num = os.dup(target)  # our own reference: the caller's number may be closed and reused later
        except OSError as exc:
            if exc.errno in (E.EMFILE, E.ENFILE):
                raise out_of_descriptors(exc.errno, role, f"duplicating fd {target}", call="dup") from None
            raise MapClosed(f"{role}: fd {target} is not open ({exc.strerror})", errno=exc.errno, op=role) from None
        ref = MapRef(FD(num, "map"), None)
    else:
        raise InvalidArgument(f"{role} needs an ebpfmaps Map or a map fd, not {type(target).__name__}", op=role)
    try:
        with ref.handle.pinned(role) as fd:
            info = map_info_from_fd(fd)
        if info.type != expected_type:
            raise InvalidArgument(
                f"{role} needs a {type_name(expected_type)} map; map id {info.id} is a {type_name(info.type)} map",
                op=role,
            )
    except BaseException:
        ref.release()
        raise
    return ref, info


# epoll_wait takes an int of milliseconds; longer waits are made of several (the callers loop on a Deadline).
_MAX_WAIT_MS = 2**31 - 1


def check_timeout(timeout: float | None, op: str = "poll") -> float | None:
    """``timeout`` in seconds, or None to wait forever (``None`` or ``math.inf``).

    Anything else that is not a real number of seconds >= 0 (a negative number, NaN, a string,
    a bool) is :class:`InvalidArgument`, before any wait.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidArgument(f"{op}: timeout must be a number of seconds or None, not {type(timeout).__name__}",
                              op=op)
    if math.isnan(timeout) or timeout < 0:
        raise InvalidArgument(f"{op}: timeout must be >= 0 seconds, math.inf or None, not {timeout}", op=op)
    if math.isinf(timeout):
        return None
    return float(timeout)


def timeout_ms(timeout: float | None) -> int:
    """epoll's timeout argument: None (or inf) waits forever (-1); bad timeouts are refused (see check_timeout).

    Waits longer than epoll takes are cut to its maximum; the callers' deadlines wait again.
    """
    t = check_timeout(timeout)
    if t is None:
        return -1
    # Round up so that a tiny positive timeout still waits instead of degrading to a busy poll.
    return min(max(int(min(t * 1000 + 0.999, _MAX_WAIT_MS)), 1 if t > 0 else 0), _MAX_WAIT_MS)


class Deadline:
    """Remaining time of a timeout (None or inf: forever) across several waits."""

    __slots__ = ("end",)

    def __init__(self, timeout: float | None) -> None:
        t = check_timeout(timeout)
        self.end = None if t is None else time.monotonic() + t

    def remaining(self) -> float | None:
        if self.end is None:
            return None
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


class EpollFD(FD):
    """An epoll instance owned like any other descriptor: :meth:`close` invalidates it at once and
    the epoll object is closed when the last call in flight (a thread blocked in poll) has left."""

    __slots__ = ("ep",)

    def __init__(self) -> None:
        try:
            ep = select.epoll()
        except OSError as exc:
            raise from_errno(exc.errno or E.EIO, "epoll_create", call="epoll_create1") from None
        super().__init__(ep.fileno(), "reader")
        self.ep = ep

    def _release(self) -> None:
        try:
            self._pending.pop()  # atomic: exactly one caller closes it
        except IndexError:
            return
        self.ep.close()  # the epoll object owns the number; it closes it once

    def dup(self) -> EpollFD:
        raise TypeError("an epoll set is not duplicated")


class Waiter:
    """An epoll set over one or more descriptors, usable from blocking code, select() and asyncio.

    Each descriptor is registered while its handle is entered, so a closed one is never registered
    through a number that has been reused.
    """

    def __init__(self, handles: list[FD], events: int) -> None:
        self._h = EpollFD()
        try:
            for h in handles:
                with h.pinned("epoll_ctl") as fd:
                    self._h.ep.register(fd, events)
        except BaseException:
            self._h.close()
            raise

    def fileno(self) -> int:
        num = self._h.num
        if num < 0:
            raise MapClosed("the reader is closed", op="fileno")
        return num

    def wait(self, timeout: float | None) -> list[tuple[int, int]]:
        """Block until an fd is ready or ``timeout`` seconds pass; returns the (fd, events) ready."""
        ms = timeout_ms(timeout)
        h = self._h
        h.enter("poll")
        try:
            # select.epoll.poll takes seconds; PEP 475 makes it retry on EINTR with the remaining time.
            return h.ep.poll(-1 if ms < 0 else ms / 1000.0)
        finally:
            h.leave()

    async def wait_async(self) -> None:
        """Wait in the running asyncio loop until the epoll set reports readiness."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        h = self._h
        fd = h.enter("poll")  # held while the loop watches the number, so close() cannot free it meanwhile

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        try:
            loop.add_reader(fd, ready)
            try:
                await fut
            finally:
                loop.remove_reader(fd)
        finally:
            h.leave()

    def close(self) -> None:
        self._h.close()


def release_views(views: list[memoryview]) -> None:
    """Release memoryviews into a ring; one the caller exported further (e.g. to numpy) is left to them."""
    for view in views:
        try:
            view.release()
        except BufferError:
            pass  # the caller's export keeps the mapping alive; it is unmapped when that goes


def close_mappings(mappings: list[mmap.mmap]) -> None:
    """Unmap now or, while a caller still holds a view into one, later: a view holds a reference to its
    mmap object, which CPython unmaps only when it is freed, after the last view. Never a dangling view."""
    for mm in mappings:
        try:
            mm.close()
        except BufferError:
            pass


def map_shared(fd: int, length: int, prot: int, offset: int, what: str) -> mmap.mmap:
    """``mmap(MAP_SHARED)`` of ``fd``; a failure is the library's error (mmap also takes a descriptor:
    CPython duplicates ``fd``, so an exhausted descriptor table is :class:`TooManyOpenFiles`)."""
    try:
        return mmap.mmap(fd, length, mmap.MAP_SHARED, prot, offset=offset)
    except OSError as exc:
        raise from_errno(exc.errno or E.EIO, "mmap", f"{what}, {length} bytes", call="mmap") from None


class RingMapping:
    """A BPF ring buffer map's pages mapped into this process (the layout of kernel/bpf/ringbuf.c).

    Offset 0: one page holding ``consumer_pos``; one page further: ``producer_pos``, then the data
    area of ``size`` bytes mapped twice back to back (a record that wraps stays contiguous). The
    side that advances a position maps its page writable: the consumer page for RINGBUF (Python
    consumes), the producer page and data for USER_RINGBUF (Python produces).
    """

    def __init__(self, handle: FD, info: MapInfo, *, python_consumes: bool) -> None:
        size = info.max_entries
        if size <= 0 or size & (size - 1) or size % PAGE_SIZE:
            # The kernel enforces this at creation; checked again so position masks are right.
            raise InvalidArgument(f"ring buffer size {size} is not a power-of-2 multiple of the page size", op="mmap")
        self.size = size
        rw, ro = mmap.PROT_READ | mmap.PROT_WRITE, mmap.PROT_READ
        # The mappings hold their own reference to the map: they stay valid whatever happens to the number.
        with handle.pinned("mmap") as fd:
            self._cons_mm = map_shared(fd, PAGE_SIZE, rw if python_consumes else ro, 0, "ring buffer consumer page")
            try:
                self._prod_mm = map_shared(fd, PAGE_SIZE + 2 * size, ro if python_consumes else rw, PAGE_SIZE,
                                           "ring buffer data")
            except BaseException:
                self._cons_mm.close()
                raise
        self._cons_page = memoryview(self._cons_mm)
        self.cons = self._cons_page[:8].cast("Q")  # consumer_pos
        self._prod_page = memoryview(self._prod_mm)
        self.prod = self._prod_page[:8].cast("Q")  # producer_pos
        self.data = self._prod_page[PAGE_SIZE:]  # the data area, twice
        self.hdr = self.data.cast("I")  # record headers, as u32 words

    def close(self) -> None:
        release_views([self.hdr, self.data, self.prod, self._prod_page, self.cons, self._cons_page])
        close_mappings([self._prod_mm, self._cons_mm])



def handed_out(it: Any, total: int) -> int:
    """How many items a list iterator has given out (``total`` once it is exhausted).

    The readers hand copied records to a callback in a plain ``for`` loop over a list iterator
    and read back where it stopped (its pickle state holds the index) only when a callback
    raised, so the loop itself carries no per-record bookkeeping.
    """
    state = it.__reduce__()
    return int(state[2]) if len(state) > 2 else total
