"""Per-key locks that exclude other threads *and* other processes.

Update and delete callbacks must see each stored value exactly once: an update
reads the old stored value, calls the provider, writes, then notifies the
replacement. Two writers of one key racing through that sequence would both
notify the same old value (doubled) and lose the other's (lost), so writers of a
key are serialized. Keys hash (crc32, the same in every process) to one of
``STRIPES`` stripes per map; a stripe is

* a ``threading.Lock`` for the threads of this process, then
* an open-file-description lock (``F_OFD_SETLKW``) on one byte of a shared lock
  file, at offset ``map_id * STRIPES + stripe``, for other processes. OFD locks
  are owned by the open file, not the process (no surprise release when another
  fd of the file closes, no false deadlock reports between threads) and vanish
  when a process dies, so a crash never leaves a map locked.

Acquisition is re-entrant per thread (a provider callback may call a client
service that locks the same key) and several stripes are always taken in
ascending order, so batches cannot deadlock.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import tempfile
import threading
import zlib
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager

__all__ = ["STRIPES", "key_lock", "local_map_lock", "lock_file_path", "map_lock", "stripe_of", "stripes_lock"]

STRIPES = 64
# F_OFD_SETLKW is 38 on Linux (include/uapi/asm-generic/fcntl.h); Python has it from 3.9.
_F_OFD_SETLKW = getattr(fcntl, "F_OFD_SETLKW", 38)


class _Flock(ctypes.Structure):
    # struct flock as the C library lays it out (ctypes adds the same padding as the compiler).
    _fields_ = [("l_type", ctypes.c_short), ("l_whence", ctypes.c_short), ("l_start", ctypes.c_int64),
                ("l_len", ctypes.c_int64), ("l_pid", ctypes.c_int)]


def lock_file_path() -> str:
    """The lock file every process must agree on (override with ``EBPFMAPS_SHIM_LOCK_FILE``)."""
    env = os.environ.get("EBPFMAPS_SHIM_LOCK_FILE")
    if env:
        return env
    if os.access("/run", os.W_OK):
        return "/run/ebpfmaps-shim.lock"
    return os.path.join(tempfile.gettempdir(), f"ebpfmaps-shim-{os.getuid()}.lock")


_state_lock = threading.Lock()
_file_fd = -1
_thread_locks: dict[tuple[int, int], threading.Lock] = {}
_local = threading.local()


def _lock_fd() -> int:
    global _file_fd
    if _file_fd < 0:
        with _state_lock:
            if _file_fd < 0:
                _file_fd = os.open(lock_file_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return _file_fd


def _after_fork_in_child() -> None:
    # The child inherits the parent's lock-file descriptor, which refers to the parent's open file description:
    # the owner of the parent's OFD locks. Kept open, it would keep the parent's locks alive after the parent
    # dies (a kill -9 would leave the map locked for as long as the child lives), and the child's own locks
    # would not exclude the parent's. So the child closes it, and opens a description of its own when needed.
    global _file_fd, _state_lock
    _state_lock = threading.Lock()
    if _file_fd >= 0:
        try:
            os.close(_file_fd)
        except OSError:
            pass
    _file_fd = -1
    _thread_locks.clear()
    _local.__dict__.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _ofd(lock_type: int, offset: int) -> None:
    fl = _Flock(l_type=lock_type, l_whence=os.SEEK_SET, l_start=offset, l_len=1, l_pid=0)
    fcntl.fcntl(_lock_fd(), _F_OFD_SETLKW, bytes(fl))


def _held() -> dict[tuple[int, int], int]:
    held: dict[tuple[int, int], int] | None = getattr(_local, "held", None)
    if held is None:
        held = {}
        _local.held = held
    return held


def _thread_lock(slot: tuple[int, int]) -> threading.Lock:
    lock = _thread_locks.get(slot)
    if lock is None:
        with _state_lock:
            lock = _thread_locks.setdefault(slot, threading.Lock())
    return lock


def _acquire(map_id: int, stripe: int) -> None:
    held = _held()
    slot = (map_id, stripe)
    depth = held.get(slot, 0)
    if depth:
        held[slot] = depth + 1
        return
    lock = _thread_lock(slot)
    lock.acquire()
    try:
        _ofd(fcntl.F_WRLCK, map_id * STRIPES + stripe)
    except BaseException:
        lock.release()
        raise
    held[slot] = 1


def _release(map_id: int, stripe: int) -> None:
    held = _held()
    slot = (map_id, stripe)
    depth = held[slot] - 1
    if depth:
        held[slot] = depth
        return
    del held[slot]
    try:
        _ofd(fcntl.F_UNLCK, map_id * STRIPES + stripe)
    finally:
        _thread_locks[slot].release()


# ---------------------------------------------------------------------- leases
# Each process that holds an extensible map holds a shared (read) lock on the byte LEASE_BASE + map_id of the
# same lock file, for as long as it holds the map; the kernel drops it when the process dies. A process that
# gets the exclusive lock on that byte (without waiting) knows that no live shim process holds the map.
# Our own shared lock converts to the exclusive one when nobody else holds it (locks of one open file
# description convert, they do not conflict), which is how a closing process asks "am I the last one?".
LEASE_BASE = 1 << 48  # above every stripe byte (map ids are 31-bit: map_id * STRIPES + stripe < 2**37)
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)


def _ofd_try(lock_type: int, offset: int) -> bool:
    fl = _Flock(l_type=lock_type, l_whence=os.SEEK_SET, l_start=offset, l_len=1, l_pid=0)
    try:
        fcntl.fcntl(_lock_fd(), _F_OFD_SETLK, bytes(fl))
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def lease_share(map_id: int) -> None:
    """Hold the shared lease of ``map_id`` (waits while another process finishes the map's cleanup)."""
    _ofd(fcntl.F_RDLCK, LEASE_BASE + map_id)


def lease_try_exclusive(map_id: int) -> bool:
    """Take the exclusive lease of ``map_id`` if no other process holds a lease on it (never waits)."""
    return _ofd_try(fcntl.F_WRLCK, LEASE_BASE + map_id)


def lease_drop(map_id: int) -> None:
    """Release whatever lease of ``map_id`` this process holds."""
    _ofd(fcntl.F_UNLCK, LEASE_BASE + map_id)


def stripe_of(key: bytes) -> int:
    return zlib.crc32(key) % STRIPES


@contextmanager
def stripes_lock(map_id: int, stripes: Iterable[int]) -> Iterator[None]:
    """Hold the given stripes of map ``map_id`` (taken in ascending order)."""
    taken: list[int] = []
    try:
        for stripe in sorted(set(stripes)):
            _acquire(map_id, stripe)
            taken.append(stripe)
        yield
    finally:
        for stripe in reversed(taken):
            _release(map_id, stripe)


@contextmanager
def key_lock(map_id: int, key: bytes) -> Iterator[None]:
    """Hold the stripe of ``key`` in map ``map_id``."""
    stripe = zlib.crc32(key) % STRIPES
    _acquire(map_id, stripe)
    try:
        yield
    finally:
        _release(map_id, stripe)


def map_lock(map_id: int) -> AbstractContextManager[None]:
    """Hold every stripe of map ``map_id``: no writer of any key runs meanwhile, here or elsewhere."""
    return stripes_lock(map_id, range(STRIPES))


@contextmanager
def local_map_lock(map_id: int) -> Iterator[None]:
    """Hold every stripe of map ``map_id`` against the other threads of this process only.

    For work that must not interleave with this process's writers but has no business stopping other
    processes (a reconcile pass reads the whole map). Stripes the calling thread already holds are
    kept as they are; the others are taken in ascending order, like every multi-stripe acquisition.
    """
    held = _held()
    taken: list[threading.Lock] = []
    try:
        for stripe in range(STRIPES):
            if held.get((map_id, stripe)):
                continue
            lock = _thread_lock((map_id, stripe))
            lock.acquire()
            taken.append(lock)
        yield
    finally:
        for lock in reversed(taken):
            lock.release()


def forget_map(map_id: int) -> None:
    """Drop the thread locks of a map this process no longer uses (the ids of dead maps are not reused soon)."""
    with _state_lock:
        for stripe in range(STRIPES):
            lock = _thread_locks.get((map_id, stripe))
            if lock is not None and not lock.locked():
                del _thread_locks[(map_id, stripe)]
