"""Typed syscalls for BPF programs and links: load, test-run, info, open by id, raw tracepoints, links.

Everything that hands a program or link descriptor to the kernel takes its :class:`FD` and enters it
for the call, so a closed object can never act on a number the kernel has since reused. Functions
that make a descriptor return it as a new :class:`FD` the caller owns. Failures become the library's
exceptions here, naming the libbpf call (``exc.call``) and carrying the errno.
"""

from __future__ import annotations

import ctypes
import errno as E
import functools

from ebpfmaps import errors
from ebpfmaps._libbpf import lib, new_opts, structs
from ebpfmaps._libbpf.fd import FD

__all__ = [
    "BTF_KIND_FUNC", "LoadAttempt", "fail", "link_create", "link_create_target", "prog_attach", "prog_detach", "prog_info",
    "prog_load_attempt", "prog_open_by_id", "prog_test_run", "raw_tracepoint_open", "tracing_open",
    "vmlinux_btf_id",
]

BTF_KIND_FUNC = 12


def fail(err: int, op: str, detail: str, call: str) -> errors.MapError:
    """``errors.from_errno`` for a failed ``call``, with the call named in the message and ``.call``."""
    exc = errors.from_errno(err, op, f"{detail} [{call}]" if detail else f"[{call}]")
    exc.call = call
    return exc


def _checked(ret: int, op: str, detail: str, call: str) -> int:
    if ret < 0:
        raise fail(-ret, op, detail, call)
    return ret


# ---------------------------------------------------------------------- loading
class LoadAttempt:
    """One ``bpf_prog_load`` call's outcome: the program (``handle``) or ``-errno`` (``err``), and the log."""

    __slots__ = ("err", "handle", "log")

    def __init__(self, handle: FD | None, err: int, log: str) -> None:
        self.handle = handle
        self.err = err
        self.log = log


def prog_load_attempt(prog_type: int, name: bytes | None, license: bytes, code: ctypes.Array[ctypes.c_char],
                      count: int, *, expected_attach_type: int | None, kern_version: int, prog_flags: int,
                      attach_btf_id: int, log_level: int, log_size: int) -> LoadAttempt:
    """``bpf_prog_load`` once; with ``log_level`` > 0 the verifier writes its log into a ``log_size`` buffer.

    A refusal is returned rather than raised: the caller decides whether to retry (a bigger log
    buffer on ENOSPC, a log on a silent refusal) and how to report it.
    """
    opts = new_opts(structs.BpfProgLoadOpts, kern_version=kern_version, prog_flags=prog_flags,
                    attach_btf_id=attach_btf_id)
    if expected_attach_type is not None:
        opts.expected_attach_type = expected_attach_type
    log_buf = None
    if log_level:
        log_buf = ctypes.create_string_buffer(log_size)
        opts.log_level, opts.log_size, opts.log_buf = log_level, log_size, ctypes.addressof(log_buf)
    ret = int(lib.bpf_prog_load(prog_type, name, license, code, count, ctypes.byref(opts)))
    log = log_buf.value.decode(errors="replace") if log_buf is not None else ""
    if ret < 0:
        return LoadAttempt(None, -ret, log)
    return LoadAttempt(FD(ret, "program"), 0, log)


# ---------------------------------------------------------------------- running
def prog_test_run(h: FD, opts: structs.BpfTestRunOpts, what: str, out_capacity: int | None) -> None:
    """``bpf_prog_test_run_opts`` on the program ``h``; the kernel fills ``opts`` (retval, duration, sizes).

    ``out_capacity`` is the data_out buffer's size, to say so when the program's output outgrew it.
    """
    num = h.enter("test_run")
    try:
        ret = int(lib.bpf_prog_test_run_opts(num, ctypes.byref(opts)))
    finally:
        h.leave()
    if ret >= 0:
        return
    err, call = -ret, "bpf_prog_test_run_opts"
    if err == E.ENOSPC and out_capacity is not None and opts.data_size_out > out_capacity:
        raise errors.InvalidArgument(f"test_run: the program's output ({opts.data_size_out} bytes) exceeds "
                                     f"data_out_size={out_capacity}; pass a larger data_out_size", errno=err,
                                     op="test_run", call=call)
    if err in (errors.ENOTSUPP, E.EOPNOTSUPP):
        raise errors.NotSupported(f"test_run: the kernel cannot test-run {what} (no BPF_PROG_TEST_RUN for "
                                  "this program type)", errno=err, op="test_run", call=call)
    raise fail(err, "test_run", what, call)


# ---------------------------------------------------------------------- info and ids
def prog_info(h: FD) -> structs.BpfProgInfo:
    """BPF_OBJ_GET_INFO_BY_FD on a program."""
    return _fill_prog_info(h, structs.BpfProgInfo())


def _fill_prog_info(h: FD, info: structs.BpfProgInfo) -> structs.BpfProgInfo:
    """BPF_OBJ_GET_INFO_BY_FD into ``info``, whose pointer fields (map ids...) say what else to fill."""
    length = ctypes.c_uint32(ctypes.sizeof(info))
    with h.pinned("prog_info") as num:
        ret = int(lib.bpf_obj_get_info_by_fd(num, ctypes.addressof(info), ctypes.byref(length)))
    _checked(ret, "prog_info", "", "bpf_obj_get_info_by_fd")
    return info


def prog_map_ids(h: FD) -> list[int]:
    """Ids of the maps the program behind ``h`` uses (the kernel's list, BPF_OBJ_GET_INFO_BY_FD twice)."""
    count = prog_info(h).nr_map_ids
    while count:
        ids = (ctypes.c_uint32 * count)()
        info = _fill_prog_info(h, structs.BpfProgInfo(nr_map_ids=count, map_ids=ctypes.addressof(ids)))
        if info.nr_map_ids <= count:  # the kernel wrote min(count, its own) ids
            return list(ids[: info.nr_map_ids])
        count = info.nr_map_ids  # a program's maps are fixed at load; never more than once
    return []


def prog_open_by_id(prog_id: int) -> FD:
    """A new descriptor for the program with id ``prog_id`` (:class:`KeyNotFound` when there is none)."""
    ret = int(lib.bpf_prog_get_fd_by_id(prog_id))
    if ret == -E.ENOENT:
        raise errors.KeyNotFound(f"open_by_id: no program has id {prog_id}", errno=E.ENOENT, op="prog_open_by_id",
                                 call="bpf_prog_get_fd_by_id")
    return FD(_checked(ret, "prog_open_by_id", f"id {prog_id}", "bpf_prog_get_fd_by_id"), "program")


# ---------------------------------------------------------------------- attaching
def raw_tracepoint_open(name: str, prog: FD) -> FD:
    """Attach ``prog`` to raw tracepoint ``name``; the new link's descriptor."""
    num = prog.enter("attach_raw_tracepoint")
    try:
        ret = int(lib.bpf_raw_tracepoint_open(name.encode(), num))
    finally:
        prog.leave()
    if ret == -E.ENOENT:
        raise errors.NotSupported(f"no raw tracepoint {name!r} on this kernel", errno=E.ENOENT,
                                  op="attach_raw_tracepoint", call="bpf_raw_tracepoint_open")
    return FD(_checked(ret, "attach_raw_tracepoint", name, "bpf_raw_tracepoint_open"), "link")


def link_create(prog: FD, target: FD, attach_type: int, op: str, detail: str) -> FD:
    """``bpf_link_create(prog, target, attach_type)`` with default options; the new link's descriptor."""
    with prog.pinned(op) as pnum, target.pinned(op) as tnum:
        ret = int(lib.bpf_link_create(pnum, tnum, attach_type, None))
    return FD(_checked(ret, op, detail, "bpf_link_create"), "link")


def link_create_target(prog: FD, target: int, attach_type: int, op: str, detail: str) -> FD:
    """``bpf_link_create`` on a target that is a number, not a descriptor (an ifindex for tcx links)."""
    with prog.pinned(op) as pnum:
        ret = int(lib.bpf_link_create(pnum, target, attach_type, None))
    return FD(_checked(ret, op, detail, "bpf_link_create"), "link")


def tracing_open(prog: FD, op: str, detail: str) -> FD:
    """Attach a tracing (fentry/fexit) or LSM program at the function its load named; the new link's descriptor.

    ``BPF_RAW_TRACEPOINT_OPEN`` with no name attaches such programs through their BTF trampoline (Linux 5.5+).
    """
    with prog.pinned(op) as num:
        ret = int(lib.bpf_raw_tracepoint_open(None, num))
    return FD(_checked(ret, op, detail, "bpf_raw_tracepoint_open"), "link")


def prog_attach(prog: FD, target: FD, attach_type: int, flags: int, op: str, detail: str) -> None:
    """``bpf_prog_attach``: the attachment without a link (it lasts until :func:`prog_detach` or the target goes)."""
    with prog.pinned(op) as pnum, target.pinned(op) as tnum:
        ret = int(lib.bpf_prog_attach(pnum, tnum, attach_type, flags))
    _checked(ret, op, detail, "bpf_prog_attach")


def prog_detach(prog: FD, target: FD, attach_type: int, op: str, detail: str) -> None:
    """``bpf_prog_detach2``: undo :func:`prog_attach` of this very program."""
    with prog.pinned(op) as pnum, target.pinned(op) as tnum:
        ret = int(lib.bpf_prog_detach2(pnum, tnum, attach_type))
    _checked(ret, op, detail, "bpf_prog_detach2")


@functools.cache
def vmlinux_btf_id(name: str, kind: int = BTF_KIND_FUNC) -> int:
    """The id of the kernel's BTF type ``name`` of ``kind`` (a function by default); -ENOENT-like 0 when absent.

    Raises :class:`~ebpfmaps.errors.NotSupported` when the kernel exposes no BTF (/sys/kernel/btf/vmlinux).
    """
    btf = lib.btf__load_vmlinux_btf()
    err = int(lib.libbpf_get_error(btf)) if btf else -E.ENOENT
    if err or not btf:
        raise errors.NotSupported("the running kernel exposes no BTF (/sys/kernel/btf/vmlinux): fentry, fexit and "
                                  "LSM programs need it", errno=-err if err else E.ENOENT, op="vmlinux_btf",
                                  call="btf__load_vmlinux_btf")
    try:
        ret = int(lib.btf__find_by_name_kind(btf, name.encode(), kind))
    finally:
        lib.btf__free(btf)
    return ret if ret > 0 else 0
