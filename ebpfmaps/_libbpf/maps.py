"""Typed map syscalls: every map operation the library makes outside the per-element hot paths.

Each function takes the :class:`~ebpfmaps._libbpf.fd.FD` it works on and holds it in flight
for the duration of the call (so a concurrent close cannot hand the number to another object
mid-call), checks its integer arguments before the syscall (ctypes would silently truncate a
too-large value to its C width), and turns a failure into the library's exception carrying the
operation (``op``), the libbpf function (``call``) and the errno.

Element calls (lookup/update/delete with keys that may be NULL, lookup_and_delete) and the
batch calls return the raw libbpf result instead: their callers read ENOENT as "absent" or
"end of map" and explain the other errors with what they know about the map (read-only fd,
frozen map...). The per-element hot paths of :class:`ebpfmaps.Map` do not come here; they use
:mod:`ebpfmaps._libbpf.fast`.

A few functions also accept a bare descriptor number where the caller holds the object in
flight itself or does not own it (programs, links, a libbpf object's maps): ``map_info`` and
``obj_pin``.
"""

from __future__ import annotations

import ctypes
import errno as E
import fcntl
import os
import struct

from ebpfmaps import errors
from ebpfmaps._libbpf import lib, new_opts, structs
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.maptypes import type_name

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Union

    #: What the kernel reads from or writes to: ``bytes`` (read only), a ctypes char array, or NULL.
    Buffer = Union[bytes, "ctypes.Array[ctypes.c_char]", None]

__all__ = [
    "Buffer",
    "attach_tracepoint_probe",
    "btf_get_fd_by_id",
    "btf_load",
    "map_create",
    "map_delete_batch",
    "map_delete_elem",
    "map_freeze",
    "map_get_fd_by_id",
    "map_get_next_id",
    "map_get_next_key",
    "map_info",
    "map_lookup_and_delete_elem",
    "map_lookup_batch",
    "map_lookup_elem",
    "map_update_batch",
    "map_update_elem",
    "mount_bpffs",
    "num_possible_cpus",
    "obj_get",
    "obj_pin",
    "probe_helper",
    "probe_map_type",
    "prog_load_probe",
    "umount",
]

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1


def _fail(ret: int, op: str, call: str, detail: str = "") -> errors.MapError:
    return errors.from_errno(-ret, op, detail, call=call)


def _check_int(value: int, name: str, op: str, limit: int = U32_MAX) -> int:
    """``value`` as an int in ``0..limit``, else :class:`InvalidArgument` (before any syscall)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidArgument(f"{op}: {name} must be an int, not {type(value).__name__}", op=op)
    if not 0 <= value <= limit:
        bits = 64 if limit == U64_MAX else 32
        raise errors.InvalidArgument(f"{op}: {name} {value} does not fit in an unsigned {bits}-bit field "
                                     f"(0..{limit})", op=op)
    return value


def _c_path(path: str, op: str) -> bytes:
    """``path`` as the C string the kernel reads; a NUL inside would silently cut it short."""
    if "\0" in path:
        raise errors.InvalidArgument(f"{op}: the path {path!r} contains a NUL byte", op=op)
    return path.encode()


# ---------------------------------------------------------------------------------- creation
def map_create(
    map_type: int,
    name: str | bytes | None,
    key_size: int,
    value_size: int,
    max_entries: int,
    *,
    flags: int = 0,
    map_extra: int = 0,
    numa_node: int = 0,
    ifindex: int = 0,
    btf_fd: FD | int | None = None,
    btf_key_type_id: int = 0,
    btf_value_type_id: int = 0,
    btf_vmlinux_value_type_id: int = 0,
    inner_map_fd: FD | int | None = None,
    op: str = "create",
) -> FD:
    """BPF_MAP_CREATE: a new map, owned by the returned handle.

    Every integer is range-checked first (u32 fields, ``map_extra`` u64). ``btf_fd`` and
    ``inner_map_fd`` may be handles (held in flight for the call) or numbers the caller keeps
    open. EINVAL for a type the kernel does not have at all becomes :class:`NotSupported`.
    """
    for value, field in ((map_type, "map type"), (key_size, "key_size"), (value_size, "value_size"),
                         (max_entries, "max_entries"), (flags, "map flags"), (numa_node, "numa_node"),
                         (ifindex, "ifindex"), (btf_key_type_id, "btf_key_type_id"),
                         (btf_value_type_id, "btf_value_type_id"),
                         (btf_vmlinux_value_type_id, "btf_vmlinux_value_type_id")):
        _check_int(value, field, op)
    _check_int(map_extra, "map_extra", op, U64_MAX)
    cname = name.encode() if isinstance(name, str) else name
    held: list[FD] = []
    try:
        btf_num = _number(btf_fd, "btf_fd", op, held)
        inner_num = _number(inner_map_fd, "inner_map_fd", op, held)
        opts = new_opts(
            structs.BpfMapCreateOpts,
            map_flags=flags,
            map_extra=map_extra,
            numa_node=numa_node,
            map_ifindex=ifindex,
            btf_key_type_id=btf_key_type_id,
            btf_value_type_id=btf_value_type_id,
            btf_vmlinux_value_type_id=btf_vmlinux_value_type_id,
        )
        if btf_num is not None:
            opts.btf_fd = btf_num
        if inner_num is not None:
            opts.inner_map_fd = inner_num
        fd = int(lib.bpf_map_create(map_type, cname or None, key_size, value_size, max_entries, ctypes.byref(opts)))
    finally:
        for h in held:
            h.leave()
    if fd < 0:
        err = -fd
        if err == E.EINVAL and int(lib.libbpf_probe_bpf_map_type(map_type, None)) == 0:
            raise errors.NotSupported(f"the running kernel does not support {type_name(map_type)} maps",
                                      errno=err, op=op, call="bpf_map_create")
        raise _fail(fd, op, "bpf_map_create", f"{type_name(map_type)} key_size={key_size} value_size={value_size} "
                    f"max_entries={max_entries} flags={flags:#x}")
    return FD(fd, "map")


def _number(h: FD | int | None, field: str, op: str, held: list[FD]) -> int | None:
    """The number behind ``h``; a handle is entered and added to ``held`` (the caller leaves it)."""
    if h is None:
        return None
    if isinstance(h, FD):
        num = h.enter(op)
        held.append(h)
        return num
    return _check_int(h, field, op)


def probe_map_type(map_type: int) -> tuple[int, int]:
    """libbpf's probe for ``map_type``: ``(result, errno)``.

    ``result`` is 1 (supported), 0 (the probe map was refused) or a negative errno (libbpf could
    not probe). libbpf reports a refused probe as 0 whatever the reason, so ``errno`` is what
    the failed creation left behind: EPERM, EMFILE or ENOMEM mean the question was not answered.
    """
    _check_int(map_type, "map type", "probe")
    ctypes.set_errno(0)
    ret = int(lib.libbpf_probe_bpf_map_type(map_type, None))
    return ret, ctypes.get_errno()


def probe_helper(prog_type: int, helper_id: int) -> tuple[int, int]:
    """libbpf's probe for helper ``helper_id`` in programs of ``prog_type``: ``(result, errno)`` as
    :func:`probe_map_type` (1 usable, 0 refused, negative: libbpf could not probe)."""
    _check_int(prog_type, "program type", "probe")
    _check_int(helper_id, "helper id", "probe")
    ctypes.set_errno(0)
    ret = int(lib.libbpf_probe_bpf_helper(prog_type, helper_id, None))
    return ret, ctypes.get_errno()


def num_possible_cpus() -> int:
    """libbpf_num_possible_cpus: the CPUs per-CPU values are sized for."""
    ret = int(lib.libbpf_num_possible_cpus())
    if ret < 0:
        raise _fail(ret, "num_possible_cpus", "libbpf_num_possible_cpus")
    return ret


# ---------------------------------------------------------------------------------- info, freeze
def map_info(h: FD | int, op: str = "map_info") -> structs.BpfMapInfo:
    """BPF_OBJ_GET_INFO_BY_FD for a map (``h`` a handle, or a number the caller holds open)."""
    info = structs.BpfMapInfo()
    length = ctypes.c_uint32(ctypes.sizeof(info))
    num = h.enter(op) if isinstance(h, FD) else h
    try:
        if lib.bpf_map_get_info_by_fd is not None:
            call = "bpf_map_get_info_by_fd"
            ret = int(lib.bpf_map_get_info_by_fd(num, ctypes.byref(info), ctypes.byref(length)))
        else:
            call = "bpf_obj_get_info_by_fd"
            ret = int(lib.bpf_obj_get_info_by_fd(num, ctypes.addressof(info), ctypes.byref(length)))
    finally:
        if isinstance(h, FD):
            h.leave()
    if ret < 0:
        raise _fail(ret, op, call)
    return info


def map_freeze(h: FD, op: str = "freeze") -> None:
    """BPF_MAP_FREEZE: no more writes through syscalls."""
    num = h.enter(op)
    try:
        ret = int(lib.bpf_map_freeze(num))
    finally:
        h.leave()
    if ret < 0:
        raise _fail(ret, op, "bpf_map_freeze")


# ---------------------------------------------------------------------------------- bpffs, ids
def obj_pin(h: FD | int, path: str, op: str = "pin") -> None:
    """BPF_OBJ_PIN ``h`` at ``path`` (an existing file there is a plain :class:`MapError`, not a key error)."""
    cpath = _c_path(path, op)
    num = h.enter(op) if isinstance(h, FD) else h
    try:
        ret = int(lib.bpf_obj_pin(num, cpath))
    finally:
        if isinstance(h, FD):
            h.leave()
    if ret == -E.EEXIST:
        raise errors.PinExists(f"{op}: {path} already exists", errno=E.EEXIST, op=op, call="bpf_obj_pin")
    if ret < 0:
        raise _fail(ret, op, "bpf_obj_pin", path)


def obj_get(path: str, flags: int = 0, *, kind: str = "map", op: str = "obj_get") -> FD:
    """BPF_OBJ_GET: a handle on the object pinned at ``path`` (``flags``: BPF_F_RDONLY/BPF_F_WRONLY)."""
    _check_int(flags, "file flags", op)
    cpath = _c_path(path, op)
    if flags:
        if lib.bpf_obj_get_opts is None:
            raise errors.NotSupported("the loaded libbpf lacks bpf_obj_get_opts (read-only opens)", op=op,
                                      call="bpf_obj_get_opts")
        opts = new_opts(structs.BpfObjGetOpts, file_flags=flags)
        call = "bpf_obj_get_opts"
        fd = int(lib.bpf_obj_get_opts(cpath, ctypes.byref(opts)))
    else:
        call = "bpf_obj_get"
        fd = int(lib.bpf_obj_get(cpath))
    if fd < 0:
        raise _fail(fd, op, call, path)
    return FD(fd, kind)


def map_get_fd_by_id(map_id: int, flags: int = 0, op: str = "open_by_id") -> FD:
    """BPF_MAP_GET_FD_BY_ID (``flags``: BPF_F_RDONLY... where the loaded libbpf can pass them).

    A missing id is :class:`KeyNotFound`.
    """
    _check_int(map_id, "map id", op)
    _check_int(flags, "open flags", op)
    if flags and lib.bpf_map_get_fd_by_id_opts is not None:
        opts = new_opts(structs.BpfGetFdByIdOpts, open_flags=flags)
        call = "bpf_map_get_fd_by_id_opts"
        fd = int(lib.bpf_map_get_fd_by_id_opts(map_id, ctypes.byref(opts)))
    else:
        call = "bpf_map_get_fd_by_id"
        fd = int(lib.bpf_map_get_fd_by_id(map_id))
    if fd == -E.ENOENT:
        raise errors.KeyNotFound(f"{op}: no map has id {map_id}", errno=E.ENOENT, op=op, call=call)
    if fd < 0:
        raise _fail(fd, op, call, f"id {map_id}")
    return FD(fd, "map")


def map_get_next_id(start: int, op: str = "map_get_next_id") -> int | None:
    """The first map id after ``start``; None when there is none."""
    _check_int(start, "map id", op)
    nxt = ctypes.c_uint32(0)
    ret = int(lib.bpf_map_get_next_id(start, ctypes.byref(nxt)))
    if ret == -E.ENOENT:
        return None
    if ret < 0:
        raise _fail(ret, op, "bpf_map_get_next_id")
    return int(nxt.value)


def btf_get_fd_by_id(btf_id: int, op: str = "btf_get_fd_by_id") -> FD:
    """BPF_BTF_GET_FD_BY_ID: a handle on a loaded BTF object."""
    _check_int(btf_id, "BTF id", op)
    fd = int(lib.bpf_btf_get_fd_by_id(btf_id))
    if fd < 0:
        raise _fail(fd, op, "bpf_btf_get_fd_by_id", f"id {btf_id}")
    return FD(fd, "btf")


def btf_info_blob(h: FD, op: str = "btf_info") -> bytes:
    """The raw BTF blob of a loaded BTF object (BPF_OBJ_GET_INFO_BY_FD, twice: size, then data)."""
    with h.pinned(op) as fd:
        info = structs.BpfBtfInfo()
        length = ctypes.c_uint32(ctypes.sizeof(info))
        ret = int(lib.bpf_obj_get_info_by_fd(fd, ctypes.addressof(info), ctypes.byref(length)))
        if ret < 0:
            raise _fail(ret, op, "bpf_obj_get_info_by_fd")
        # Second call with a buffer of the size the kernel just reported: never shorter than it writes.
        size = int(info.btf_size)
        buf = (ctypes.c_char * max(size, 1))()
        info = structs.BpfBtfInfo(btf=ctypes.addressof(buf), btf_size=size)
        length = ctypes.c_uint32(ctypes.sizeof(info))
        ret = int(lib.bpf_obj_get_info_by_fd(fd, ctypes.addressof(info), ctypes.byref(length)))
        if ret < 0:
            raise _fail(ret, op, "bpf_obj_get_info_by_fd")
        return bytes(buf.raw[: min(size, int(info.btf_size))])


def btf_load(blob: bytes, *, log_size: int = 0, op: str = "btf_load") -> tuple[FD | None, int, str]:
    """BPF_BTF_LOAD: ``(handle, 0, "")`` on success, ``(None, errno, log)`` when the kernel refuses the blob.

    With ``log_size`` the kernel's verifier log (level 1) of a refusal is returned.
    """
    _check_int(log_size, "log_size", op)
    buf = ctypes.create_string_buffer(blob, len(blob))  # a writable copy: libbpf may retry with it
    if log_size:
        log = ctypes.create_string_buffer(log_size)
        opts = new_opts(structs.BpfBtfLoadOpts, log_buf=ctypes.addressof(log), log_level=1, log_size=log_size)
        fd = int(lib.bpf_btf_load(buf, len(blob), ctypes.byref(opts)))
        text = log.value.decode(errors="replace").strip()
    else:
        fd = int(lib.bpf_btf_load(buf, len(blob), None))
        text = ""
    if fd < 0:
        return None, -fd, text
    return FD(fd, "btf"), 0, ""


# ---------------------------------------------------------------------------------- elements
# Raw results (0 or -errno): the callers interpret ENOENT and explain the rest (Map._fail).
def map_lookup_elem(h: FD, key: Buffer, value: ctypes.Array[ctypes.c_char], op: str = "lookup") -> int:
    """BPF_MAP_LOOKUP_ELEM (``key`` None for queue/stack/bloom maps); 0 or -errno."""
    num = h.enter(op)
    try:
        return int(lib.bpf_map_lookup_elem(num, key, value))
    finally:
        h.leave()


def map_update_elem(h: FD, key: Buffer, value: Buffer, flags: int = 0, op: str = "update") -> int:
    """BPF_MAP_UPDATE_ELEM (``key`` None for queue/stack/bloom maps); 0 or -errno."""
    _check_int(flags, "update flags", op, U64_MAX)
    num = h.enter(op)
    try:
        return int(lib.bpf_map_update_elem(num, key, value, flags))
    finally:
        h.leave()


def map_delete_elem(h: FD, key: Buffer, op: str = "delete") -> int:
    """BPF_MAP_DELETE_ELEM; 0 or -errno."""
    num = h.enter(op)
    try:
        return int(lib.bpf_map_delete_elem(num, key))
    finally:
        h.leave()


def map_lookup_and_delete_elem(h: FD, key: Buffer, value: ctypes.Array[ctypes.c_char],
                               op: str = "lookup_and_delete") -> int:
    """BPF_MAP_LOOKUP_AND_DELETE_ELEM (``key`` None pops a queue or stack); 0 or -errno."""
    num = h.enter(op)
    try:
        return int(lib.bpf_map_lookup_and_delete_elem(num, key, value))
    finally:
        h.leave()


def map_get_next_key(h: FD, key: Buffer, next_key: ctypes.Array[ctypes.c_char], op: str = "get_next_key") -> int:
    """BPF_MAP_GET_NEXT_KEY (``key`` None: the first key); 0 or -errno."""
    num = h.enter(op)
    try:
        return int(lib.bpf_map_get_next_key(num, key, next_key))
    finally:
        h.leave()


# ---------------------------------------------------------------------------------- batches
def map_lookup_batch(h: FD, in_batch: ctypes.Array[ctypes.c_char] | None, out_batch: ctypes.Array[ctypes.c_char],
                     keys: ctypes.Array[ctypes.c_char], values: ctypes.Array[ctypes.c_char], count: int, *,
                     delete: bool = False, elem_flags: int = 0) -> tuple[int, int]:
    """BPF_MAP_LOOKUP_BATCH (or LOOKUP_AND_DELETE_BATCH): ``(0 or -errno, elements done)``.

    ``in_batch`` None starts at the beginning; the kernel leaves the cursor in ``out_batch``.
    """
    op = "lookup_and_delete_batch" if delete else "lookup_batch"
    _check_int(count, "count", op)
    _check_int(elem_flags, "elem_flags", op, U64_MAX)
    fn = lib.bpf_map_lookup_and_delete_batch if delete else lib.bpf_map_lookup_batch
    opts = new_opts(structs.BpfMapBatchOpts, elem_flags=elem_flags)
    n = ctypes.c_uint32(count)
    num = h.enter(op)
    try:
        ret = int(fn(num, in_batch, out_batch, keys, values, ctypes.byref(n), ctypes.byref(opts)))
    finally:
        h.leave()
    return ret, int(n.value)


def map_update_batch(h: FD, keys: bytes, values: bytes, count: int, *, elem_flags: int = 0,
                     op: str = "update_batch") -> tuple[int, int]:
    """BPF_MAP_UPDATE_BATCH of ``count`` packed keys and values: ``(0 or -errno, count the kernel left)``.

    The kernel writes back how many elements it processed; an early refusal leaves ``count`` as passed.
    """
    _check_int(count, "count", op)
    _check_int(elem_flags, "elem_flags", op, U64_MAX)
    opts = new_opts(structs.BpfMapBatchOpts, elem_flags=elem_flags)
    n = ctypes.c_uint32(count)
    num = h.enter(op)
    try:
        ret = int(lib.bpf_map_update_batch(num, keys, values, ctypes.byref(n), ctypes.byref(opts)))
    finally:
        h.leave()
    return ret, int(n.value)


def map_delete_batch(h: FD, keys: bytes, count: int, *, op: str = "delete_batch") -> tuple[int, int]:
    """BPF_MAP_DELETE_BATCH of ``count`` packed keys: ``(0 or -errno, elements deleted)``."""
    _check_int(count, "count", op)
    opts = new_opts(structs.BpfMapBatchOpts)
    n = ctypes.c_uint32(count)
    num = h.enter(op)
    try:
        ret = int(lib.bpf_map_delete_batch(num, keys, ctypes.byref(n), ctypes.byref(opts)))
    finally:
        h.leave()
    return ret, int(n.value)


# ---------------------------------------------------------------------------------- feature probes
# The few program operations a feature probe needs (a tiny program, attached to a tracepoint),
# here so that ebpfmaps.features depends on this layer only and not on ebpfmaps.programs.
_PERF_TYPE_TRACEPOINT = 2
_PERF_SAMPLE_RAW = 1 << 10
_PERF_ATTR_SIZE_VER0 = 64
_PERF_EVENT_IOC_ENABLE = 0x2400
_PERF_EVENT_IOC_SET_BPF = 0x40042408
_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241, "riscv64": 241, "ppc64le": 319, "s390x": 331}


def prog_load_probe(prog_type: int, insns: bytes, name: str = "", license: str = "GPL", op: str = "probe") -> FD:
    """BPF_PROG_LOAD of raw instructions, no log: a handle on the program (for feature probes)."""
    _check_int(prog_type, "program type", op)
    code = ctypes.create_string_buffer(insns, len(insns))
    opts = new_opts(structs.BpfProgLoadOpts)
    fd = int(lib.bpf_prog_load(prog_type, name.encode() or None, license.encode(), code, len(insns) // 8,
                               ctypes.byref(opts)))
    if fd < 0:
        raise _fail(fd, op, "bpf_prog_load", f"program type {prog_type}")
    return FD(fd, "program")


def attach_tracepoint_probe(prog: FD, tracepoint_id: int, op: str = "probe") -> FD:
    """Run ``prog`` on a tracepoint: a perf event (``perf_event_open``) with PERF_EVENT_IOC_SET_BPF.

    Closing the returned handle detaches the program.
    """
    _check_int(tracepoint_id, "tracepoint id", op, U64_MAX)
    nr = _NR_PERF_EVENT_OPEN.get(os.uname().machine)
    if nr is None:
        raise errors.NotSupported(f"{op}: perf_event_open syscall number unknown for {os.uname().machine}", op=op)
    # struct perf_event_attr as PERF_ATTR_SIZE_VER0: type, size, config, sample_period, sample_type,
    # read_format, the flag bits, then wakeup_events = 1 as libbpf sets it.
    raw = struct.pack("=IIQQQQQI", _PERF_TYPE_TRACEPOINT, _PERF_ATTR_SIZE_VER0, tracepoint_id, 1,
                      _PERF_SAMPLE_RAW, 0, 0, 1)
    attr = ctypes.create_string_buffer(raw, _PERF_ATTR_SIZE_VER0)
    syscall = _libc().syscall
    pfd = int(syscall(ctypes.c_long(nr), attr, ctypes.c_int(-1), ctypes.c_int(0), ctypes.c_int(-1),
                      ctypes.c_ulong(0x8)))  # PERF_FLAG_FD_CLOEXEC
    if pfd < 0:
        raise errors.from_errno(ctypes.get_errno(), op, f"perf_event_open tracepoint {tracepoint_id}",
                                call="perf_event_open")
    event = FD(pfd, "perf event")
    try:
        with prog.pinned(op) as prog_num:
            fcntl.ioctl(pfd, _PERF_EVENT_IOC_SET_BPF, prog_num)
        fcntl.ioctl(pfd, _PERF_EVENT_IOC_ENABLE, 0)
    except OSError as exc:
        event.close()
        raise errors.from_errno(exc.errno or 0, op, "PERF_EVENT_IOC_SET_BPF", call="ioctl") from None
    except BaseException:
        event.close()
        raise
    return event


_libc_cache: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    """The C library, for perf_event_open, mount and umount (loaded on first use)."""
    if not _libc_cache:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        _libc_cache.append(libc)
    return _libc_cache[0]


# membarrier(2) syscall numbers (asm-generic for arm64 and riscv64).
_NR_MEMBARRIER = {"x86_64": 324, "aarch64": 283, "riscv64": 283}
_MEMBARRIER_CMD_GLOBAL = 1


def rcu_grace_period() -> bool:
    """Wait for an RCU grace period: ``membarrier(MEMBARRIER_CMD_GLOBAL)``, which the kernel implements
    with ``synchronize_rcu()`` (kernel/sched/membarrier.c). False when it is not available here (another
    architecture, a ``nohz_full`` kernel, or no membarrier): the caller then waits by time alone.

    bpffs frees an unlinked pin's inode, and drops the reference it held, in an RCU callback
    (``bpf_free_inode``): once a grace period has passed, that callback is due.
    """
    nr = _NR_MEMBARRIER.get(os.uname().machine)
    if nr is None:
        return False
    return int(_libc().syscall(ctypes.c_long(nr), ctypes.c_int(_MEMBARRIER_CMD_GLOBAL), ctypes.c_uint(0))) == 0


# ---------------------------------------------------------------------------------- bpffs mounts
def mount_bpffs(target: str, op: str = "mount_bpffs") -> None:
    """mount(2) a bpf filesystem at ``target``."""
    libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    if libc.mount(b"bpf", target.encode(), b"bpf", 0, None) != 0:
        raise errors.from_errno(ctypes.get_errno(), op, target, call="mount")


def umount(target: str, op: str = "umount") -> None:
    """umount2(2) ``target``."""
    libc = _libc()
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    if libc.umount2(target.encode(), 0) != 0:
        raise errors.from_errno(ctypes.get_errno(), op, target, call="umount2")
