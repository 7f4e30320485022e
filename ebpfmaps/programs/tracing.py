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

import ctypes
import errno as E
import fcntl
import os
import platform
import weakref
from typing import TYPE_CHECKING

from ebpfmaps import _libbpf, errors, pinning
from ebpfmaps._libbpf import lib
from ebpfmaps.errors import InvalidArgument, MapClosed, NotSupported
from ebpfmaps.programs.types import AttachType, ProgramType

if TYPE_CHECKING:
    from ebpfmaps.programs.program import Program

__all__ = [
    "PERF_FLAG_FD_CLOEXEC", "PERF_TYPE_TRACEPOINT", "Link", "PerfEventAttr", "attach_raw_tracepoint",
    "attach_tracepoint", "perf_event_open", "tracefs", "tracepoint_id",
]

# uapi linux/perf_event.h
PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE, PERF_TYPE_TRACEPOINT = 0, 1, 2
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
# _IO('$', n) and _IOW('$', 8, __u32) from the same header, encoded per asm-generic/ioctl.h.
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408
# perf_event_open(2) syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h).
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "arm64": 241, "riscv64": 241, "s390x": 331, "ppc64le": 319}

TRACEFS_DEFAULT = "/sys/kernel/tracing"


class PerfEventAttr(ctypes.Structure):
    """``struct perf_event_attr`` up to ``sig_data`` (PERF_ATTR_SIZE_VER7, 128 bytes); the bit
    fields (disabled, inherit, ..., watermark at bit 14) are one u64 ``flags``."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),  # union with sample_freq
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32),  # union with wakeup_watermark
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
        ("config2", ctypes.c_uint64),
        ("branch_sample_type", ctypes.c_uint64),
        ("sample_regs_user", ctypes.c_uint64),
        ("sample_stack_user", ctypes.c_uint32),
        ("clockid", ctypes.c_int32),
        ("sample_regs_intr", ctypes.c_uint64),
        ("aux_watermark", ctypes.c_uint32),
        ("sample_max_stack", ctypes.c_uint16),
        ("_reserved_2", ctypes.c_uint16),
        ("aux_sample_size", ctypes.c_uint32),
        ("_reserved_3", ctypes.c_uint32),
        ("sig_data", ctypes.c_uint64),
    ]


# perf_event_attr flag bits (the bit-field order of the header).
PERF_ATTR_FLAG_DISABLED = 1 << 0
PERF_ATTR_FLAG_WATERMARK = 1 << 14

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_mount = _libc.mount
_mount.restype = ctypes.c_int
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


def perf_event_open(attr: PerfEventAttr, pid: int = -1, cpu: int = 0, group_fd: int = -1,
                    flags: int = PERF_FLAG_FD_CLOEXEC) -> int:
    """The perf_event_open(2) syscall; returns the new fd (``attr.size`` is filled in if 0)."""
    nr = _NR_PERF_EVENT_OPEN.get(platform.machine())
    if nr is None:
        raise NotSupported(f"perf_event_open: syscall number unknown for {platform.machine()}", op="perf_event_open")
    if not attr.size:
        attr.size = ctypes.sizeof(PerfEventAttr)
    fd = _syscall(ctypes.c_long(nr), ctypes.byref(attr), ctypes.c_int(pid), ctypes.c_int(cpu),
                  ctypes.c_int(group_fd), ctypes.c_ulong(flags))
    if fd < 0:
        err = ctypes.get_errno()
        if err == E.ENOENT:
            raise NotSupported(f"perf_event_open: no such event (type {attr.type}, config {attr.config})",
                               errno=err, op="perf_event_open")
        raise errors.from_errno(err, "perf_event_open", f"type {attr.type} config {attr.config}")
    return int(fd)


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
    if _mount(b"tracefs", TRACEFS_DEFAULT.encode(), b"tracefs", 0, None) != 0:
        err = ctypes.get_errno()
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

    def __init__(self, fd: int, kind: str, target: str, program: Program | None = None, *, perf_fd: int = -1,
                 is_bpf_link: bool = True) -> None:
        self._fds = [fd, perf_fd]
        self._finalizer = weakref.finalize(self, Link._release, self._fds, is_bpf_link)
        self.kind = kind
        self.target = target
        self.program = program
        self.is_bpf_link = is_bpf_link
        self._pin_path: str | None = None

    @staticmethod
    def _release(fds: list[int], is_bpf_link: bool) -> None:
        fd, perf_fd = fds
        fds[0] = fds[1] = -1
        if fd >= 0 and not is_bpf_link:
            # Attached with PERF_EVENT_IOC_SET_BPF: the fd is the perf event; stop it before closing.
            try:
                fcntl.ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)
            except OSError:
                pass
        for f in (fd, perf_fd):
            if f >= 0:
                try:
                    os.close(f)
                except OSError:
                    pass

    @property
    def fd(self) -> int:
        if self._fds[0] < 0:
            raise MapClosed("the link is detached", op="link_fd")
        return self._fds[0]

    @property
    def attached(self) -> bool:
        return self._fds[0] >= 0

    def detach(self) -> None:
        """Detach now (idempotent). A pinned BPF link stays attached until its pin is removed too."""
        self._finalizer()

    close = detach

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def __repr__(self) -> str:
        state = f"fd={self._fds[0]}" if self.attached else "detached"
        return f"<Link {self.kind} {self.target!r} {state}>"

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link: the attachment survives this process until the pin is removed."""
        if not self.is_bpf_link:
            raise NotSupported("this kernel attached through PERF_EVENT_IOC_SET_BPF, which makes no pinnable link",
                               op="link_pin")
        self._pin_path = pinning.pin_fd(self.fd, path)

    @property
    def pin_path(self) -> str | None:
        return self._pin_path


def _require_type(prog: Program, expected: tuple[ProgramType, ...], what: str) -> None:
    if prog.type not in expected:
        names = " or ".join(t.name.lower() for t in expected)
        raise InvalidArgument(f"{what} needs a {names} program, not {prog!r}", op="attach")


def attach_raw_tracepoint(prog: Program, name: str) -> Link:
    """Attach a raw_tracepoint program to ``name`` (``sys_enter``, ``sched_switch``...)."""
    _require_type(prog, (ProgramType.RAW_TRACEPOINT, ProgramType.RAW_TRACEPOINT_WRITABLE), "a raw tracepoint")
    _check_name(name, "name")
    fd = lib.bpf_raw_tracepoint_open(name.encode(), prog.fd)
    if fd == -E.ENOENT:
        raise NotSupported(f"no raw tracepoint {name!r} on this kernel", errno=E.ENOENT, op="attach_raw_tracepoint")
    _libbpf.check(fd, "attach_raw_tracepoint", name)
    return Link(fd, "raw_tracepoint", name, prog)


def attach_tracepoint(prog: Program, category: str, name: str) -> Link:
    """Attach a tracepoint program to ``category/name`` (``syscalls/sys_enter_openat``...)."""
    _require_type(prog, (ProgramType.TRACEPOINT,), "a tracepoint")
    tp_id = tracepoint_id(category, name)
    attr = PerfEventAttr(type=PERF_TYPE_TRACEPOINT, config=tp_id, sample_period=1, wakeup_events=1)
    pfd = perf_event_open(attr, pid=-1, cpu=0)
    target = f"{category}/{name}"
    try:
        link_fd = lib.bpf_link_create(prog.fd, pfd, int(AttachType.PERF_EVENT), None)
        if link_fd >= 0:
            link = Link(link_fd, "tracepoint", target, prog, perf_fd=pfd)
        elif -link_fd in (E.EINVAL, E.EOPNOTSUPP, errors.ENOTSUPP):
            # Kernels before 5.15 have no perf-event links: bind the program with the ioctl instead;
            # the perf event fd is then the attachment itself.
            try:
                fcntl.ioctl(pfd, PERF_EVENT_IOC_SET_BPF, prog.fd)
            except OSError as exc:
                raise errors.from_errno(exc.errno or E.EINVAL, "attach_tracepoint", target) from None
            link = Link(pfd, "tracepoint", target, prog, is_bpf_link=False)
        else:
            raise errors.from_errno(-link_fd, "attach_tracepoint", target)
    except BaseException:
        os.close(pfd)
        raise
    try:
        fcntl.ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError as exc:
        link.detach()
        raise errors.from_errno(exc.errno or E.EINVAL, "attach_tracepoint", f"enable {target}") from None
    return link
