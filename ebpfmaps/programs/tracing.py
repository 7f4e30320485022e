"""Attaching programs to tracepoints and raw tracepoints, and the links that detach them.

Tracepoints are attached the way libbpf does it: ``perf_event_open(PERF_TYPE_TRACEPOINT, config=id)``
where ``id`` comes from ``tracefs/events/CAT/NAME/id``, then the program is bound to that perf event
with a BPF link (``bpf_link_create(prog, perf_fd, BPF_PERF_EVENT)``, Linux 5.15+) or, on older
kernels, with ``PERF_EVENT_IOC_SET_BPF``; the event is enabled with ``PERF_EVENT_IOC_ENABLE``.
A tracepoint program sees every CPU's events though the perf event is opened on CPU 0: the
program hangs off the tracepoint itself, the perf event only carries the attachment.

Raw tracepoints need no tracefs: ``bpf_raw_tracepoint_open(name, prog_fd)`` returns a link fd.
Closing a link's fd detaches; a pinned link stays attached until unpinned.
"""

from __future__ import annotations

import errno as E
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ebpfmaps import errors, pinning
from ebpfmaps._libbpf import perf, progs
from ebpfmaps._libbpf.fd import FD
from ebpfmaps._libbpf.perf import (
    PERF_EVENT_IOC_DISABLE,
    PERF_EVENT_IOC_ENABLE,
    PERF_EVENT_IOC_SET_BPF,
    PERF_FLAG_FD_CLOEXEC,
    PerfEventAttr,
)
from ebpfmaps.errors import InvalidArgument, MapClosed, NotSupported
from ebpfmaps.programs.types import AttachType, ProgramType

if TYPE_CHECKING:
    # Only for annotations: program.py imports this module to attach its programs.
    from ebpfmaps.programs.program import Program

__all__ = [
    "PERF_EVENT_IOC_DISABLE",
    "PERF_EVENT_IOC_ENABLE",
    "PERF_EVENT_IOC_SET_BPF",
    "PERF_FLAG_FD_CLOEXEC",
    "PERF_TYPE_TRACEPOINT",
    "Link",
    "PerfEventAttr",
    "attach_perf_event_fd",
    "attach_raw_tracepoint",
    "attach_tracepoint",
    "perf_event_open",
    "require_type",
    "tracefs",
    "tracepoint_id",
]

# uapi linux/perf_event.h
PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE, PERF_TYPE_TRACEPOINT = 0, 1, 2
PERF_SAMPLE_RAW = 1 << 10

TRACEFS_DEFAULT = "/sys/kernel/tracing"

# perf_event_attr flag bits (the bit-field order of the header).
PERF_ATTR_FLAG_DISABLED = 1 << 0
PERF_ATTR_FLAG_WATERMARK = 1 << 14


def perf_event_open(attr: PerfEventAttr, pid: int = -1, cpu: int = 0, group_fd: int = -1,
                    flags: int = PERF_FLAG_FD_CLOEXEC) -> int:
    """The perf_event_open(2) syscall; returns the new fd, which the caller owns (``attr.size`` is filled in if 0).

    ``group_fd`` is the caller's own descriptor for the group leader (-1: none).
    """
    if group_fd < 0:
        return perf.perf_event_open_number(attr, pid, cpu, None, flags)
    # Borrow the caller's number for the call only; the caller keeps owning it.
    leader = FD(os.dup(group_fd), "perf event")
    try:
        return perf.perf_event_open_number(attr, pid, cpu, leader, flags)
    finally:
        leader.close()


def tracefs(mount: bool = True) -> str:
    """The tracefs mount point (also under debugfs), mounting tracefs at /sys/kernel/tracing if none is and
    ``mount`` allows (needs root)."""
    for m in pinning.mounts():
        if m.fstype == "tracefs" and os.path.isdir(os.path.join(m.mount_point, "events")):
            return m.mount_point
    legacy = "/sys/kernel/debug/tracing"
    if os.path.isdir(os.path.join(legacy, "events")):
        return legacy
    if not mount:
        raise NotSupported("tracefs is not mounted (mount -t tracefs tracefs /sys/kernel/tracing)", op="tracefs")
    err = perf.mount("tracefs", TRACEFS_DEFAULT, "tracefs")
    if err:
        if err == E.EBUSY and os.path.isdir(os.path.join(TRACEFS_DEFAULT, "events")):
            return TRACEFS_DEFAULT  # mounted by someone else meanwhile
        raise errors.from_errno(err, "mount tracefs", f"at {TRACEFS_DEFAULT} (CONFIG_TRACING off, or not root?)")
    return TRACEFS_DEFAULT


def _check_name(part: str, what: str) -> None:
    if not part or "/" in part or part in (".", "..") or "\0" in part:
        raise InvalidArgument(f"bad tracepoint {what} {part!r}", op="attach_tracepoint")


def tracepoint_id(category: str, name: str) -> int:
    """The id of tracepoint ``category/name`` (``tracefs/events/CAT/NAME/id``)."""
    _check_name(category, "category")
    _check_name(name, "name")
    path = os.path.join(tracefs(), "events", category, name, "id")
    try:
        with open(path) as f:
            return int(f.read().strip())
    except FileNotFoundError:
        raise NotSupported(f"no tracepoint {category}/{name} on this kernel ({path} is missing)",
                           errno=E.ENOENT, op="attach_tracepoint") from None


class Link:
    """An attachment of a program. Close it (or leave the ``with`` block) to detach.

    ``perf_fd`` is the perf event a tracepoint attachment rides on; it is closed with the link.
    ``program`` keeps the attached Program object alive while the link is.
    """

    def __init__(self, fd: int | FD | None, kind: str, target: str, program: Program | None = None, *,
                 perf_fd: int | FD = -1, is_bpf_link: bool = True, undo: Callable[[], None] | None = None,
                 members: Sequence[Link] = ()) -> None:
        """Wrap ``fd`` (and ``perf_fd``), numbers or :class:`FD` handles this object now owns.

        Attachments that make no descriptor of their own (``bpf_prog_attach``, ``SO_ATTACH_BPF``, a tc
        filter) pass ``fd=None`` and an ``undo`` that detaches; ``members`` are further links (one per
        CPU) detached with this one.
        """
        self._h: FD | None = fd if isinstance(fd, FD) or fd is None else FD(fd, "link")
        self._perf: FD | None = None
        if isinstance(perf_fd, FD):
            self._perf = perf_fd
        elif perf_fd >= 0:
            self._perf = FD(perf_fd, "perf event")
        self.kind = kind
        self.target = target
        self.program = program
        self.is_bpf_link = is_bpf_link and fd is not None
        self._undo = undo
        self._undo_lock = threading.Lock()
        self._members = list(members)
        self._pin_path: str | None = None

    @property
    def fd(self) -> int:
        """The link's descriptor number now (raises :class:`MapClosed` once detached)."""
        if self._h is None:
            if self.closed:
                raise MapClosed("the link is detached", op="link_fd")
            raise NotSupported(f"a {self.kind} attachment made without a BPF link has no descriptor", op="link_fd")
        num = self._h.num
        if num < 0:
            raise MapClosed("the link is detached", op="link_fd")
        return num

    @property
    def handle(self) -> FD:
        """The :class:`~ebpfmaps._libbpf.fd.FD` that owns the link's descriptor."""
        if self._h is None:
            raise NotSupported(f"a {self.kind} attachment made without a BPF link has no descriptor", op="link_fd")
        return self._h

    @property
    def members(self) -> list[Link]:
        """The further links (one per CPU) detached together with this one."""
        return list(self._members)

    def add_members(self, links: Sequence[Link]) -> None:
        """Make ``links`` detach together with this one (the per-CPU links of one perf event attachment)."""
        self._members.extend(links)

    @property
    def attached(self) -> bool:
        return not self.closed

    @property
    def closed(self) -> bool:
        if self._h is None:
            return self._undo is None
        return self._h.closed

    def detach(self) -> None:
        """Detach now (idempotent). A pinned BPF link stays attached until its pin is removed too.

        Every later call through this object raises :class:`MapClosed`; the descriptors are released
        when calls in flight in other threads have finished.
        """
        try:
            if self._h is None:
                with self._undo_lock:
                    undo, self._undo = self._undo, None
                if undo is not None:
                    undo()
            else:
                if not self.is_bpf_link:
                    # Attached with PERF_EVENT_IOC_SET_BPF: the fd is the perf event; stop it before closing.
                    try:
                        perf.perf_ioctl(self._h, PERF_EVENT_IOC_DISABLE, "link_detach")
                    except errors.MapError:
                        pass  # already closed (by another thread), or the event is gone: closing is all that is left
                self._h.close()
            if self._perf is not None:
                self._perf.close()
        finally:
            for member in self._members:
                member.detach()

    close = detach

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __del__(self) -> None:
        # The handles release their numbers on their own; this stops an ioctl-attached event first.
        try:
            if not self.closed:
                self.detach()
        except Exception:
            pass

    def __copy__(self) -> Link:
        raise TypeError("a Link cannot be copied: a duplicate descriptor would keep the program attached after "
                        "close(); share the Link object itself")

    def __deepcopy__(self, memo: dict[int, Any]) -> Link:
        return self.__copy__()

    def __reduce__(self) -> Any:
        raise TypeError("a Link cannot be pickled: pin it to keep the attachment beyond this process")

    def __repr__(self) -> str:
        num = self._h.num if self._h is not None else -1
        state = "detached" if self.closed else (f"fd={num}" if num >= 0 else "attached")
        return f"<Link {self.kind} {self.target!r} {state}>"

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link: the attachment survives this process until the pin is removed."""
        if self._members:
            raise NotSupported(f"a {self.kind} attachment of {len(self._members) + 1} links cannot be pinned as one; "
                               "pin each of .members and the link itself", op="link_pin")
        if self._h is None or not self.is_bpf_link:
            how = "PERF_EVENT_IOC_SET_BPF" if self._h is not None else "an attach call without BPF links"
            raise NotSupported(f"this kernel attached the {self.kind} program through {how}, which makes no "
                               "pinnable link", op="link_pin")
        with self._h.pinned("link_pin") as num:
            self._pin_path = pinning.pin_fd(num, path)

    @property
    def pin_path(self) -> str | None:
        return self._pin_path


def require_type(prog: Program, expected: tuple[ProgramType, ...], what: str) -> None:
    if prog.type not in expected:
        names = " or ".join(t.name.lower() for t in expected)
        raise InvalidArgument(f"{what} needs a {names} program, not {prog!r}", op="attach")


def attach_raw_tracepoint(prog: Program, name: str) -> Link:
    """Attach a raw_tracepoint program to ``name`` (``sys_enter``, ``sched_switch``...)."""
    require_type(prog, (ProgramType.RAW_TRACEPOINT, ProgramType.RAW_TRACEPOINT_WRITABLE), "a raw tracepoint")
    _check_name(name, "name")
    return Link(progs.raw_tracepoint_open(name, prog.handle), "raw_tracepoint", name, prog)


def attach_perf_event_fd(prog: Program, event: FD, kind: str, target: str, op: str) -> Link:
    """Run ``prog`` on the perf event ``event`` (which the returned link then owns) and enable the event.

    A BPF link (``BPF_PERF_EVENT``, Linux 5.15+) where the kernel has one, else ``PERF_EVENT_IOC_SET_BPF``,
    where the perf event's descriptor is itself the attachment.
    """
    try:
        try:
            link = Link(progs.link_create(prog.handle, event, int(AttachType.PERF_EVENT), op, target),
                        kind, target, prog, perf_fd=event)
        except errors.MapError as exc:
            if exc.errno not in (E.EINVAL, E.EOPNOTSUPP, errors.ENOTSUPP) or isinstance(exc, MapClosed):
                raise
            # Kernels before 5.15 have no perf-event links: bind the program with the ioctl instead;
            # the perf event fd is then the attachment itself.
            perf.perf_set_bpf(event, prog.handle, op, target)
            link = Link(event, kind, target, prog, is_bpf_link=False)
    except BaseException:
        event.close()
        raise
    try:
        perf.perf_ioctl(event, PERF_EVENT_IOC_ENABLE, op, f"enable {target}")
    except BaseException:
        link.detach()
        raise
    return link


def attach_tracepoint(prog: Program, category: str, name: str) -> Link:
    """Attach a tracepoint program to ``category/name`` (``syscalls/sys_enter_openat``...)."""
    require_type(prog, (ProgramType.TRACEPOINT,), "a tracepoint")
    tp_id = tracepoint_id(category, name)
    attr = PerfEventAttr(type=PERF_TYPE_TRACEPOINT, config=tp_id, sample_period=1, wakeup_events=1)
    event = perf.perf_event_open(attr, pid=-1, cpu=0)
    return attach_perf_event_fd(prog, event, "tracepoint", f"{category}/{name}", "attach_tracepoint")
