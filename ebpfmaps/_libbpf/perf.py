"""Typed system calls for perf events: perf_event_open(2), the perf ioctls, perf event array slots, mount(2).

Tracepoint attachment (:mod:`ebpfmaps.programs.tracing`) and the perf ring reader
(:mod:`ebpfmaps.readers.perf`) share these. Every call on an existing descriptor takes its
:class:`FD` and enters it, so a closed event or map is never reached through a reused number.
"""

from __future__ import annotations

import ctypes
import errno as E
import fcntl
import os
import struct

from ebpfmaps import errors
from ebpfmaps._libbpf import lib
from ebpfmaps._libbpf.fd import FD
from ebpfmaps._libbpf.progs import fail

__all__ = [
    "PERF_EVENT_IOC_DISABLE", "PERF_EVENT_IOC_ENABLE", "PERF_EVENT_IOC_SET_BPF", "PERF_FLAG_FD_CLOEXEC",
    "PerfEventAttr", "clear_event_slot", "mount", "perf_event_open", "perf_event_open_number", "perf_ioctl",
    "perf_set_bpf", "probe_event_open", "set_event_slot",
]

PERF_FLAG_FD_CLOEXEC = 1 << 3
# _IO('$', n) and _IOW('$', 8, __u32) from uapi linux/perf_event.h, encoded per asm-generic/ioctl.h.
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408
# perf_event_open(2) syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/asm-generic/unistd.h).
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "arm64": 241, "riscv64": 241, "s390x": 331, "ppc64le": 319}


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


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_mount = _libc.mount
_mount.restype = ctypes.c_int
_mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


def perf_event_open_number(attr: PerfEventAttr, pid: int = -1, cpu: int = 0, group: FD | None = None,
                           flags: int = PERF_FLAG_FD_CLOEXEC) -> int:
    """perf_event_open(2) as a bare new descriptor the caller owns (``attr.size`` is filled in if 0)."""
    nr = _NR_PERF_EVENT_OPEN.get(os.uname().machine)
    if nr is None:
        raise errors.NotSupported(f"perf_event_open: syscall number unknown for {os.uname().machine}",
                                  op="perf_event_open", call="perf_event_open")
    if not attr.size:
        attr.size = ctypes.sizeof(PerfEventAttr)
    group_num = group.enter("perf_event_open") if group is not None else -1
    try:
        fd = int(_syscall(ctypes.c_long(nr), ctypes.byref(attr), ctypes.c_int(pid), ctypes.c_int(cpu),
                          ctypes.c_int(group_num), ctypes.c_ulong(flags)))
        err = ctypes.get_errno() if fd < 0 else 0
    finally:
        if group is not None:
            group.leave()
    if fd < 0:
        if err == E.ENOENT:
            raise errors.NotSupported(f"perf_event_open: no such event (type {attr.type}, config {attr.config})",
                                      errno=err, op="perf_event_open", call="perf_event_open")
        raise fail(err, "perf_event_open", f"type {attr.type} config {attr.config}", "perf_event_open")
    return fd


def perf_event_open(attr: PerfEventAttr, pid: int = -1, cpu: int = 0, group: FD | None = None,
                    flags: int = PERF_FLAG_FD_CLOEXEC) -> FD:
    """perf_event_open(2): the new event's descriptor."""
    return FD(perf_event_open_number(attr, pid, cpu, group, flags), "perf event")


def probe_event_open(pmu_type: int, config: int, target: str, offset: int, pid: int, cpu: int) -> FD:
    """A kprobe or uprobe perf event: ``target`` is the kernel symbol or the binary's path (``config1``),
    ``offset`` the offset from it (``config2``), ``config`` the PMU's flag bits (the return-probe bit)."""
    raw = ctypes.create_string_buffer(target.encode())
    attr = PerfEventAttr(type=pmu_type, config=config, config1=ctypes.addressof(raw), config2=offset,
                         sample_period=1, wakeup_events=1)
    attr.flags |= 1  # disabled until the program is on it
    try:
        return perf_event_open(attr, pid=pid, cpu=cpu)
    finally:
        del raw  # the kernel copied the string during the call


def perf_ioctl(h: FD, request: int, op: str, detail: str = "") -> None:
    """An argument-less perf ioctl (PERF_EVENT_IOC_ENABLE/DISABLE) on the event ``h``."""
    num = h.enter(op)
    try:
        fcntl.ioctl(num, request, 0)
    except OSError as exc:
        raise fail(exc.errno or E.EINVAL, op, detail, "ioctl") from None
    finally:
        h.leave()


def perf_set_bpf(h: FD, prog: FD, op: str, detail: str) -> None:
    """PERF_EVENT_IOC_SET_BPF: run ``prog`` on the event ``h`` (the attachment before BPF perf links)."""
    num = h.enter(op)
    try:
        pnum = prog.enter(op)
        try:
            fcntl.ioctl(num, PERF_EVENT_IOC_SET_BPF, pnum)
        except OSError as exc:
            raise fail(exc.errno or E.EINVAL, op, detail, "ioctl(PERF_EVENT_IOC_SET_BPF)") from None
        finally:
            prog.leave()
    finally:
        h.leave()


_U32 = struct.Struct("=I")


def set_event_slot(array: FD, index: int, event: FD) -> None:
    """Store the perf event ``event`` at ``index`` of the perf event array ``array``."""
    anum = array.enter("update")
    try:
        enum_ = event.enter("update")
        try:
            ret = int(lib.bpf_map_update_elem(anum, _U32.pack(index), _U32.pack(enum_), 0))
        finally:
            event.leave()
    finally:
        array.leave()
    if ret < 0:
        raise fail(-ret, "update", f"perf event array slot {index}", "bpf_map_update_elem")


def clear_event_slot(array: FD, index: int) -> bool:
    """Empty slot ``index`` of the perf event array; False if it was already empty or the array is closed."""
    try:
        anum = array.enter("delete")
    except errors.MapClosed:
        return False  # its number may belong to another object by now: leave it alone
    try:
        return int(lib.bpf_map_delete_elem(anum, _U32.pack(index))) == 0
    finally:
        array.leave()


def mount(source: str, target: str, fstype: str, flags: int = 0) -> int:
    """mount(2); 0 or the errno."""
    if _mount(source.encode(), target.encode(), fstype.encode(), flags, None) != 0:
        return ctypes.get_errno() or E.EINVAL
    return 0
