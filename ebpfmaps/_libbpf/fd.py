"""`FD`: the one owner of a kernel file descriptor (a map, program, link or BTF object).

A bare fd number is dangerous to keep: once closed, the kernel hands the same number to the next
object opened, and anything still holding the old number (a lazy iterator, another thread, a copy
of the object) would then read, write or delete in an unrelated map. So nothing outside this
module keeps a number across calls. Each syscall *enters* the handle, which counts it as in flight
and returns the number, and *leaves* it afterwards. :meth:`FD.close` invalidates the handle at
once (every later :meth:`enter` raises :class:`~ebpfmaps.errors.MapClosed`), but the number is
released to the kernel only when the last in-flight call has left, so a call that raced with
close() still runs on the object it was meant for and no other.

The bookkeeping is lock-free on the hot path: ``list.append``/``list.pop`` are atomic under the
GIL, and the order of the steps (a user appends *then* reads the number; close clears the number
*then* looks for users) guarantees that either the user sees the handle closed or close sees the
user in flight. Closing itself takes a lock, so two concurrent closes release the number once.

A handle can also be *held* (:meth:`FD.hold`): the number is hidden (``num`` reads ``-1``) until
:meth:`FD.release`, the calls in flight are waited for, and every new call waits for the release
instead of failing, then runs on whatever object the number refers to by then. That is the gate a
map resize passes its writers through: the old map is quiet while its last entries are copied,
and the next call uses the new map (:meth:`FD.replace` on a held handle swaps the held number).
The waiting is off the hot path: a caller only looks for a hold after it found ``num < 0``.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import time
from collections.abc import Iterator

from ebpfmaps.errors import InvalidArgument, MapClosed

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    import threading
    from typing import Any, TypeVar

    _F = TypeVar("_F", bound="FD")

# Reentrant: an allocation inside a critical section may run the garbage collector, whose finalizer of an
# unreachable handle (``__del__`` -> ``close``) takes this lock again in the same thread. A plain Lock
# deadlocks there; every section touches only its own handle's state, so reentry for another handle is safe.
_close_lock = _thread.RLock()  # threading's, without importing threading for every one-shot command


class FD:
    """An owned file descriptor, valid until :meth:`close`.

    ``num`` is the descriptor while the handle is open and ``-1`` after close; read it only
    between :meth:`enter` and :meth:`leave` (or use :meth:`call`). ``users`` is the list of
    in-flight calls; hot paths may append to and pop from it directly instead of calling
    :meth:`enter`/:meth:`leave` (the same steps without two method calls).
    """

    __slots__ = ("__weakref__", "_close_on_release", "_gate", "_held", "_pending", "kind", "num", "users")

    def __init__(self, num: int, kind: str = "map") -> None:
        if type(num) is not int or num < 0:
            raise InvalidArgument(f"not a file descriptor: {num!r}", op="fd")
        self.num = num
        self.kind = kind
        self.users: list[None] = []
        self._pending: list[int] = []  # the number between close() and the last in-flight call leaving
        self._gate: threading.Event | None = None  # set while held: callers wait on it
        self._held = -1  # the number while held
        self._close_on_release = False

    @classmethod
    def closed_handle(cls: type[_F], kind: str = "map") -> _F:
        """A handle that was never open (for objects that describe a map already gone)."""
        self = cls.__new__(cls)
        self.num = -1
        self.kind = kind
        self.users = []
        self._pending = []
        self._gate = None
        self._held = -1
        self._close_on_release = False
        return self

    # ------------------------------------------------------------------ use
    def enter(self, op: str = "fd") -> int:
        """Count one call in flight and return the number (after a hold, if any); :class:`MapClosed` once closed."""
        self.users.append(None)
        num = self.num
        if num < 0:
            try:
                return self.reenter(op)
            except BaseException:
                self.leave()
                raise
        return num

    def reenter(self, op: str = "fd") -> int:
        """For a caller counted in flight that found ``num < 0``: wait out a hold and return the number.

        Raises :class:`MapClosed` when the handle is closed; the caller is still counted in flight
        then (its own ``leave``/``users.pop`` ends the call, as on the hot paths).
        """
        while True:
            gate = self._gate
            if gate is None:
                num = self.num
                if num >= 0:
                    return num
                raise self.closed_error(op)
            # Not in flight while waiting: the holder waits for the calls in flight to finish.
            self.users.pop()
            gate.wait()
            self.users.append(None)
            num = self.num
            if num >= 0:
                return num

    def leave(self) -> None:
        """End a call begun with :meth:`enter`; the last one out after a close releases the number."""
        self.users.pop()
        if self.num < 0 and not self.users:
            self._release()

    def settle(self) -> None:
        """After a bare ``users.pop()`` on a closed handle: release the number if no call is left."""
        if not self.users:
            self._release()

    @contextlib.contextmanager
    def pinned(self, op: str = "fd") -> Iterator[int]:
        """``with h.pinned("op") as num:`` the number, valid (and ours) for the whole block."""
        num = self.enter(op)
        try:
            yield num
        finally:
            self.leave()

    def closed_error(self, op: str) -> MapClosed:
        return MapClosed(f"{op}: the {self.kind} is closed", op=op)

    @property
    def closed(self) -> bool:
        """Closed (a held handle is not, unless close() came during the hold)."""
        return self.num < 0 and (self._gate is None or self._close_on_release)

    # ------------------------------------------------------------------ holds
    def hold(self, op: str = "hold", timeout: float = 30.0) -> None:
        """Hold the handle: new calls wait until :meth:`release`; returns once no call is in flight.

        Raises :class:`MapClosed` when the handle is closed or already held, and
        :class:`InvalidArgument` (after releasing the hold) when calls are still in flight after
        ``timeout`` seconds (a caller that holds the handle across the hold would wait forever).
        """
        with _close_lock:
            num = self.num
            if num < 0:
                raise self.closed_error(op)
            import threading  # a hold is rare: threading loads only when one happens

            self._gate = threading.Event()  # before the number is hidden: a caller that sees -1 finds the gate
            self._held = num
            self.num = -1
        deadline = time.monotonic() + timeout
        pause = 1e-5
        while self.users:
            if time.monotonic() > deadline:
                self.release()
                raise InvalidArgument(f"{op}: calls on the {self.kind} were still in flight after {timeout} s",
                                      op=op)
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    @property
    def held(self) -> bool:
        return self._gate is not None

    def release(self) -> None:
        """End a hold: waiting calls go on with the number (or find the handle closed, if close() came meanwhile)."""
        with _close_lock:
            gate = self._gate
            if gate is None:
                return
            num = self._held
            self._held = -1
            if self._close_on_release:
                self._pending.append(num)
            else:
                self.num = num  # before the gate goes: a caller that finds no gate finds the number
            self._gate = None
        gate.set()
        if self._close_on_release and not self.users:
            self._release()

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Invalidate the handle now; the kernel fd is closed when no call is in flight (idempotent).

        On a held handle the number is released to the kernel when the hold ends.
        """
        with _close_lock:
            if self._gate is not None:
                self._close_on_release = True
                return
            num = self.num
            if num < 0:
                return
            self._pending.append(num)  # before the number is cleared, so whoever releases finds it
            self.num = -1
        if not self.users:
            self._release()

    def _release(self) -> None:
        try:
            num = self._pending.pop()  # atomic: exactly one caller gets the number
        except IndexError:
            return
        try:
            os.close(num)
        except OSError:
            pass

    def dup_number(self) -> int:
        """A duplicate of the descriptor as a bare number, which the caller now owns and must close
        (or hand to an owner such as a new :class:`FD`)."""
        num = self.enter("dup")
        try:
            return os.dup(num)
        finally:
            self.leave()

    def dup(self: _F) -> _F:
        """A new handle on a duplicate of the descriptor (same kernel object, own lifetime)."""
        return type(self)(self.dup_number(), self.kind)

    def replace(self, new: int) -> None:
        """Make this handle's number refer to the object behind ``new`` (``dup2``), then close ``new``.

        The number stays the same, so calls in flight and code that printed the number carry on
        with the new object: the atomic switch a map resize needs. On a held handle the held
        number is switched, and callers waiting on the hold use the new object.
        """
        with _close_lock:
            held = self._held if self._gate is not None else -1
        if held >= 0:
            if new != held:
                os.dup2(new, held)
                os.close(new)
            return
        num = self.enter("replace")
        try:
            if new != num:
                os.dup2(new, num)
                os.close(new)
        finally:
            self.leave()

    def detach(self) -> int:
        """Give up ownership: the caller gets a descriptor of the object, which it must close, and this
        handle is closed. With no call in flight that is the number itself (so a fresh object keeps
        the lowest free number, as a bare syscall would give); otherwise a duplicate."""
        with _close_lock:
            num = self.num
            if num >= 0 and not self.users:
                self.num = -1
                return num
        out = self.dup_number()
        self.close()
        return out

    def __int__(self) -> int:
        """The number, for callers that hand it to another owner right away (raises once closed)."""
        if self.num < 0:
            raise self.closed_error("fd")
        return self.num

    def __repr__(self) -> str:
        state = "closed" if self.num < 0 else f"fd={self.num}"
        return f"<FD {self.kind} {state}>"

    def __copy__(self) -> FD:
        return self.dup()

    def __deepcopy__(self, memo: object) -> FD:
        return self.dup()

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("a file descriptor handle cannot be pickled (open the object by pin or id instead)")

    def __del__(self) -> None:
        # Objects own their handles; a handle dropped without close() still gives its number back.
        if self.num >= 0:
            self.close()
