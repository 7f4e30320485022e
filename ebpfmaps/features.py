"""What the running kernel supports, found by probes (never by version numbers).

Map types are probed with libbpf's ``libbpf_probe_bpf_map_type``, which creates a
minimal map of the type (with the BTF the type needs) and reports whether the
kernel accepted it. Types newer than the loaded libbpf (libbpf 1.1 returns
``-EOPNOTSUPP`` for ``BPF_MAP_TYPE_ARENA``) are probed here by creating the
smallest valid map of the type ourselves. Results are cached per process.

``python -m ebpfmaps.features --markdown`` prints the README's table of every
map type: its class, key/value semantics, operations, and whether this kernel
has it.
"""

from __future__ import annotations

import ctypes
import errno as E
import functools
import importlib
import os
import socket
import struct
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType

from ebpfmaps import errors, fdinfo
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps._libbpf import perf as _perf
from ebpfmaps._libbpf import progs as _progs
from ebpfmaps._libbpf.fd import FD as _FD
from ebpfmaps.maptypes import BPF_F_LINK, BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, MapType, type_name


def _assembler() -> ModuleType:
    """The assembler, loaded on the first program probe: map probes (which every map family's
    constructor consults) then cost no assembler import at ``import ebpfmaps``."""
    return importlib.import_module("ebpfmaps.asm")


@dataclass(frozen=True)
class TypeDoc:
    """What the README says about one map type."""

    keys_values: str
    operations: str


# The semantics column of the README table, written here so the table and the code live together.
TYPE_DOCS: dict[MapType, TypeDoc] = {
    MapType.HASH: TypeDoc("any fixed-size key → value", "dict protocol, batches, iteration"),
    MapType.ARRAY: TypeDoc("u32 index < max_entries → value (preallocated, zeroed)",
                           "dict protocol, batches; `mmapable=True`: memoryview/numpy views"),
    MapType.PROG_ARRAY: TypeDoc("u32 index → program fd (reads give the program id)",
                                "set/get/delete; tail calls from programs"),
    MapType.PERF_EVENT_ARRAY: TypeDoc("u32 CPU → perf event fd (sized to the possible CPUs)",
                                      "set/delete; read with a perf reader"),
    MapType.PERCPU_HASH: TypeDoc("key → one value per possible CPU", "dict protocol, batches, `.sum()`"),
    MapType.PERCPU_ARRAY: TypeDoc("u32 index → one value per possible CPU", "dict protocol, batches"),
    MapType.STACK_TRACE: TypeDoc("u32 stack id → instruction pointers (depth x u64)",
                                 "read/delete/iterate; `symbols(id)` via /proc/kallsyms; filled by programs only"),
    MapType.CGROUP_ARRAY: TypeDoc("u32 index → cgroup v2 directory fd", "set/delete"),
    MapType.LRU_HASH: TypeDoc("key → value, least recently used evicted when full", "dict protocol, batches"),
    MapType.LRU_PERCPU_HASH: TypeDoc("key → per-CPU values, LRU eviction", "dict protocol, batches"),
    MapType.LPM_TRIE: TypeDoc("`ipaddress` network or (prefixlen, bytes) → value",
                              "exact dict protocol, `longest_match(addr)`, `longest_prefix(addr)`, iteration"),
    MapType.ARRAY_OF_MAPS: TypeDoc("u32 index → inner map (stored by fd, read back by id)",
                                   "`m[i] = inner`, `m[i]` opens the inner Map, delete"),
    MapType.HASH_OF_MAPS: TypeDoc("key → inner map (stored by fd, read back by id)",
                                  "`m[k] = inner`, `m[k]` opens the inner Map, delete, iteration"),
    MapType.DEVMAP: TypeDoc("u32 index → ifindex (+ XDP program fd with 8-byte values)",
                            "dict protocol; interface names accepted"),
    MapType.SOCKMAP: TypeDoc("u32 index → socket (reads give the socket cookie)", "set/get/delete"),
    MapType.CPUMAP: TypeDoc("u32 CPU → queue size (+ program fd with 8-byte values)", "dict protocol"),
    MapType.XSKMAP: TypeDoc("u32 queue index → AF_XDP socket fd", "set/delete (the kernel refuses reads)"),
    MapType.SOCKHASH: TypeDoc("any key → socket (reads give the socket cookie)", "set/get/delete, iteration"),
    MapType.CGROUP_STORAGE: TypeDoc("(cgroup inode, attach type) → value; max_entries 0",
                                    "entries appear when a program using it is attached"),
    MapType.REUSEPORT_SOCKARRAY: TypeDoc("u32 index → SO_REUSEPORT socket (reads give the cookie)",
                                         "set/get/delete"),
    MapType.PERCPU_CGROUP_STORAGE: TypeDoc("as cgroup storage, one value per CPU", "as cgroup storage"),
    MapType.QUEUE: TypeDoc("no key (key_size 0); FIFO of values", "push/pop/peek, `push(overwrite=True)`, drain"),
    MapType.STACK: TypeDoc("no key (key_size 0); LIFO of values", "push/pop/peek, `push(overwrite=True)`, drain"),
    MapType.SK_STORAGE: TypeDoc("socket → value (BTF built for you)", "get/set/delete by socket"),
    MapType.DEVMAP_HASH: TypeDoc("u32 key → ifindex (+ program fd)", "dict protocol, iteration"),
    MapType.STRUCT_OPS: TypeDoc("u32 0 → kernel struct `bpf_struct_ops_<name>` (vmlinux BTF)",
                                "created by struct name; filled with programs by a loader"),
    MapType.RINGBUF: TypeDoc("no keys; size = power-of-two multiple of the page size",
                             "creation, pinning; read with a ring buffer reader"),
    MapType.INODE_STORAGE: TypeDoc("open file → value (BTF built for you)", "get/set/delete by fd"),
    MapType.TASK_STORAGE: TypeDoc("pidfd → value (BTF built for you)", "get/set/delete by pidfd"),
    MapType.BLOOM_FILTER: TypeDoc("no key; set membership of values, `nr_hashes` = map_extra",
                                  "`add(v)`, `v in m`, predicted false-positive rate"),
    MapType.USER_RINGBUF: TypeDoc("no keys; user space produces, programs drain",
                                  "creation, pinning; written with a producer"),
    MapType.CGRP_STORAGE: TypeDoc("cgroup v2 directory fd → value (BTF built for you)", "get/set/delete by fd"),
    MapType.ARENA: TypeDoc("no keys; max_entries pages shared with programs",
                           "creation (flags MMAPABLE), `view()`: memoryview of the pages"),
}


# Errnos that say nothing about the kernel's features: the probe could not run (no privilege, no free
# descriptor, no memory). They are raised to the caller and never cached as an answer.
_UNANSWERED = frozenset({E.EPERM, E.EACCES, E.EMFILE, E.ENFILE, E.ENOMEM})

_map_type_cache: dict[int, bool] = {}
_cache_lock = threading.Lock()


def _raise_unanswered(err: int, what: str) -> None:
    if err in _UNANSWERED:
        raise errors.from_errno(err, "probe", what)


def _probe_create(type_id: int, key_size: int, value_size: int, max_entries: int, flags: int = 0, **kwargs: int) -> bool:
    """Whether the kernel creates this map (closed at once); errors that answer nothing propagate."""
    try:
        _maps.map_create(type_id, None, key_size, value_size, max_entries, flags=flags, op="probe", **kwargs).close()
    except errors.MapError as exc:
        if exc.errno is None:
            raise
        _raise_unanswered(exc.errno, f"creating a {type_name(type_id)} map")
        return False
    return True


def _own_probe(type_id: int) -> bool | None:
    """Probes for types the loaded libbpf does not know; None when we have no probe either."""
    if type_id == MapType.ARENA:
        # The smallest arena: one page, MMAPABLE (kernel/bpf/arena.c requires it). An unknown type is EINVAL.
        return _probe_create(type_id, 0, 0, 1, BPF_F_MMAPABLE)
    return None


def map_type_supported(map_type: MapType | int) -> bool:
    """Whether the running kernel creates maps of ``map_type`` (cached once answered).

    A probe that cannot run says nothing about the kernel: EPERM/EACCES raise
    :class:`PermissionDenied`, EMFILE/ENFILE/ENOMEM the matching error, and the next
    call probes again.
    """
    tid = int(map_type)
    cached = _map_type_cache.get(tid)
    if cached is not None:
        return cached
    ret, err = _maps.probe_map_type(tid)
    if ret == 1:
        answer = True
    else:
        _raise_unanswered(-ret if ret < 0 else err, f"probing {type_name(tid)} maps")
        if ret == 0:
            answer = False
        else:
            own = _own_probe(tid) if ret in (-E.EOPNOTSUPP, -E.EINVAL) else None  # libbpf has no probe for it
            if own is None:
                raise errors.NotSupported(f"cannot probe {type_name(tid)} maps: libbpf returned {ret}", errno=-ret,
                                          op="probe")
            answer = own
    with _cache_lock:
        _map_type_cache[tid] = answer
    return answer


def _cache_clear() -> None:
    with _cache_lock:
        _map_type_cache.clear()


map_type_supported.cache_clear = _cache_clear  # type: ignore[attr-defined]  # as functools.cache offered


def require_map_type(map_type: MapType | int) -> None:
    """Raise :class:`NotSupported` (before any creation syscall) when the kernel lacks ``map_type``."""
    if not map_type_supported(map_type):
        raise errors.NotSupported(
            f"the running kernel ({os.uname().release}) does not support {type_name(int(map_type))} maps "
            f"(probed with a minimal map of the type)",
            op="create",
        )


def probe_all() -> dict[MapType, bool]:
    """Every map type this library knows, and whether the running kernel has it."""
    return {t: map_type_supported(t) for t in MapType if t is not MapType.UNSPEC}


# --- behaviours that differ between kernels (found when running the suite on Debian's 6.1 in vm/) ----------------


@functools.cache
def memlock_tracks_usage() -> bool:
    """Whether a map's ``memlock`` (fdinfo, bpf_map_info) is its live memory use, not a size formula.

    Kernels since 6.4 ask each map type for its usage (``map_mem_usage``); older ones report
    ``round_up(max_entries * round_up(key_size + value_size, 8), PAGE_SIZE)`` fixed at creation
    (``bpf_map_memory_footprint``), which ignores preallocation and is 0 for a ring buffer.
    Probe: a NO_PREALLOC hash's memlock grows when an element is inserted only when it is live usage.
    """
    h = _maps.map_create(MapType.HASH, None, 4, 256, 16, flags=BPF_F_NO_PREALLOC, op="probe")
    try:
        with h.pinned("probe") as fd:
            before = fdinfo.memlock(fd)
        ret = _maps.map_update_elem(h, bytes(4), bytes(256), 0, "probe")
        if ret < 0:
            raise errors.from_errno(-ret, "probe", "inserting into a hash map to probe memlock accounting")
        with h.pinned("probe") as fd:
            after = fdinfo.memlock(fd)
    finally:
        h.close()
    return before is not None and after is not None and after > before


@functools.cache
def struct_ops_link_supported() -> bool:
    """Whether struct_ops maps accept BPF_F_LINK (struct_ops attached as links; Linux 6.4).

    Probe, as libbpf probes the type itself: a struct_ops map with the flag and a value type id that
    names no struct_ops. Kernels that accept the flag get as far as looking the type up and refuse
    it with ENOTSUPP; older ones refuse the flag with EINVAL.
    """
    if not map_type_supported(MapType.STRUCT_OPS):
        return False
    try:
        _maps.map_create(MapType.STRUCT_OPS, None, 4, 4, 1, flags=BPF_F_LINK, btf_vmlinux_value_type_id=1,
                         op="probe").close()
    except errors.MapError as exc:
        if exc.errno is None:
            raise
        _raise_unanswered(exc.errno, "creating a struct_ops map with BPF_F_LINK")
        return exc.errno in (errors.ENOTSUPP, E.EOPNOTSUPP)
    return True


_BPF_PROG_TYPE_SOCKET_FILTER = 1
_BPF_PROG_TYPE_XDP = 6
_UNSUPPORTED = frozenset({E.EINVAL, E.EOPNOTSUPP, errors.ENOTSUPP})


def _minimal_map(t: int) -> _FD:
    """The smallest keyed map of type ``t`` for a probe: 4-byte keys (8 for an LPM trie, which also needs
    BPF_F_NO_PREALLOC), 8-byte values, one entry."""
    if t == MapType.LPM_TRIE:
        return _maps.map_create(t, None, 8, 8, 1, flags=BPF_F_NO_PREALLOC, op="probe")
    return _maps.map_create(t, None, 4, 8, 1, op="probe")


def _require_unsupported(exc: errors.MapError, what: str) -> None:
    """Return when the kernel's refusal of a probe means "not supported" (EINVAL, EOPNOTSUPP, ENOTSUPP);
    raise anything that answers nothing (no errno, EPERM, EMFILE, ENOMEM...) or means something else."""
    if exc.errno is None:
        raise exc
    _raise_unanswered(exc.errno, what)
    if exc.errno not in _UNSUPPORTED:
        raise exc


@functools.cache
def lookup_and_delete_supported(map_type: MapType | int) -> bool:
    """Whether BPF_MAP_LOOKUP_AND_DELETE_ELEM takes a key on maps of ``map_type`` (hash types: Linux 5.14).

    Probe: a one-element map of the type, looked up and deleted at once.
    """
    t = int(map_type)
    if not map_type_supported(t):
        return False
    h = _minimal_map(t)
    try:
        key = bytes(8) if t == MapType.LPM_TRIE else bytes(4)
        ret = _maps.map_update_elem(h, key, bytes(8), 0, "probe")
        if ret < 0:
            raise errors.from_errno(-ret, "probe", f"inserting into a {type_name(t)} map")
        value = ctypes.create_string_buffer(8 * max(1, _maps.num_possible_cpus()))
        ret = _maps.map_lookup_and_delete_elem(h, key, value, "probe")
    finally:
        h.close()
    if ret == 0:
        return True
    _raise_unanswered(-ret, f"lookup_and_delete on a {type_name(t)} map")
    if -ret in _UNSUPPORTED:
        return False
    raise errors.from_errno(-ret, "probe", f"lookup_and_delete on a {type_name(t)} map")


@functools.cache
def batch_ops_supported(map_type: MapType | int) -> bool:
    """Whether the kernel has batch operations (BPF_MAP_LOOKUP_BATCH...) for maps of ``map_type``.

    Hash maps have them since Linux 5.6, per-CPU arrays since 5.13. Probe: a batch lookup of an empty
    map of the type, which answers ENOENT (nothing to read) when the operation exists.
    """
    t = int(map_type)
    if not map_type_supported(t):
        return False
    h = _minimal_map(t)
    try:
        ks = ctypes.create_string_buffer(8)
        vs = ctypes.create_string_buffer(8 * max(1, _maps.num_possible_cpus()))
        ret, _ = _maps.map_lookup_batch(h, None, ctypes.create_string_buffer(8), ks, vs, 1)
    finally:
        h.close()
    if ret in (0, -E.ENOENT):
        return True
    _raise_unanswered(-ret, f"a batch lookup on a {type_name(t)} map")
    if -ret in _UNSUPPORTED:
        return False
    raise errors.from_errno(-ret, "probe", f"a batch lookup on a {type_name(t)} map")


_PROG_TYPES = {"socket_filter": _BPF_PROG_TYPE_SOCKET_FILTER, "xdp": _BPF_PROG_TYPE_XDP, "tracepoint": 5,
               "sched_cls": 3, "kprobe": 2, "raw_tracepoint": 17}


@functools.cache
def helper_supported(helper: str | int, prog_type: str | int = "xdp") -> bool:
    """Whether programs of ``prog_type`` may call ``helper`` (a name such as ``"loop"`` or
    ``"bpf_loop"``, or an id) on the running kernel: libbpf's helper probe."""
    pt = _PROG_TYPES[prog_type] if isinstance(prog_type, str) else int(prog_type)
    asm = _assembler()
    ret, _ = _maps.probe_helper(pt, asm.helper_id(helper))
    if ret == 1:
        return True
    if ret == 0:
        return False
    _raise_unanswered(-ret, f"probing helper {helper!r}")
    raise errors.from_errno(-ret, "probe", f"probing helper {helper!r}")


@functools.cache
def atomic_fetch_supported() -> bool:
    """Whether the verifier accepts BPF_ATOMIC with BPF_FETCH (fetch-and-add, xchg, cmpxchg: Linux 5.12).

    Older kernels know only BPF_XADD, the atomic add that returns nothing. Probe: a socket filter that
    fetch-adds on its stack.
    """
    asm = _assembler()
    R0, R1, R10 = asm.R0, asm.R1, asm.R10
    code = asm.assemble([
        asm.st(8, R10, -8, 0),
        asm.mov64(R1, 1),
        asm.atomic_add(8, R10, R1, -8, fetch=True),
        asm.mov64(R0, 0),
        asm.exit_(),
    ])
    try:
        _maps.prog_load_probe(_BPF_PROG_TYPE_SOCKET_FILTER, bytes(code), "probe_atomic").close()
    except errors.MapError as exc:
        _require_unsupported(exc, "loading a program with an atomic fetch-add")
        return False
    return True


_BPF_PROG_TYPE_TRACEPOINT = 5
_TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def _tracepoint_id(category: str, name: str) -> int:
    for root in _TRACEFS:
        try:
            with open(f"{root}/events/{category}/{name}/id") as f:
                return int(f.read())
        except FileNotFoundError:
            continue
        except PermissionError as exc:
            raise errors.PermissionDenied(f"probe: cannot read the id of tracepoint {category}/{name}: {exc}",
                                          errno=exc.errno, op="probe") from None
    raise errors.NotSupported(f"probe: no tracepoint {category}/{name} in tracefs", op="probe")


_PERF_TYPE_TRACEPOINT = 2
_BPF_PERF_EVENT = 41  # enum bpf_attach_type


@functools.cache
def perf_event_link_supported() -> bool:
    """Whether a program attaches to a perf event as a BPF link (``BPF_LINK_CREATE`` with BPF_PERF_EVENT,
    Linux 5.15); older kernels bind it with the PERF_EVENT_IOC_SET_BPF ioctl only.

    Probe: a do-nothing tracepoint program linked to a ``syscalls/sys_enter_getppid`` perf event.
    """
    tp_id = _tracepoint_id("syscalls", "sys_enter_getppid")
    asm = _assembler()
    code = asm.assemble([asm.mov64(asm.R0, 0), asm.exit_()])
    prog = _maps.prog_load_probe(_BPF_PROG_TYPE_TRACEPOINT, bytes(code), "probe_perf_link")
    try:
        attr = _perf.PerfEventAttr(type=_PERF_TYPE_TRACEPOINT, config=tp_id, sample_period=1, wakeup_events=1)
        event = _perf.perf_event_open(attr, pid=-1, cpu=0)
        try:
            _progs.link_create(prog, event, _BPF_PERF_EVENT, "probe", "a perf event link").close()
        except errors.MapError as exc:
            _require_unsupported(exc, "linking a program to a perf event")
            return False
        finally:
            event.close()
    finally:
        prog.close()
    return True


_EVENT_SOURCES = "/sys/bus/event_source/devices"


@functools.cache
def kprobes_supported() -> bool:
    """Whether the kernel has kprobes (CONFIG_KPROBES). Probe: the ``kprobe`` PMU perf_event_open takes."""
    return os.path.isfile(f"{_EVENT_SOURCES}/kprobe/type")


@functools.cache
def uprobes_supported() -> bool:
    """Whether the kernel has uprobes (CONFIG_UPROBE_EVENTS). Probe: the ``uprobe`` PMU perf_event_open takes."""
    return os.path.isfile(f"{_EVENT_SOURCES}/uprobe/type")


_BPF_PROG_TYPE_SCHED_CLS = 3
_BPF_PROG_TYPE_TRACING = 26
_BPF_TCX_INGRESS = 46
_BPF_TRACE_FENTRY = 24


@functools.cache
def tcx_supported() -> bool:
    """Whether tc programs attach as tcx links (``BPF_LINK_CREATE`` with BPF_TCX_INGRESS, Linux 6.6).

    Probe: a program that passes every packet, linked to the loopback's ingress and detached at once.
    """
    asm = _assembler()
    code = asm.assemble([asm.mov64(asm.R0, 0), asm.exit_()])
    prog = _maps.prog_load_probe(_BPF_PROG_TYPE_SCHED_CLS, bytes(code), "probe_tcx")
    try:
        _progs.link_create_target(prog, socket.if_nametoindex("lo"), _BPF_TCX_INGRESS, "probe", "a tcx link").close()
    except errors.MapError as exc:
        _require_unsupported(exc, "linking a tc program with tcx")
        return False
    finally:
        prog.close()
    return True


@functools.cache
def tracing_trampolines_supported() -> bool:
    """Whether fentry/fexit programs attach through BPF trampolines (BTF and CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS).

    Probe: a do-nothing fentry program on ``bpf_fentry_test1`` (the kernel's own test target), attached and
    detached; a kernel without BTF answers no too, and so does one that refuses the load to root with EPERM
    (measured on a 6.18 kernel under ``lockdown=integrity``, which loads tp_btf programs but no trampolines).
    """
    try:
        btf_id = _progs.vmlinux_btf_id("bpf_fentry_test1")
    except errors.NotSupported:
        return False
    if not btf_id:
        return False
    asm = _assembler()
    code = bytes(asm.assemble([asm.mov64(asm.R0, 0), asm.exit_()]))
    buf = ctypes.create_string_buffer(code, len(code))
    res = _progs.prog_load_attempt(_BPF_PROG_TYPE_TRACING, b"probe_fentry", b"GPL", buf, len(code) // 8,
                                   expected_attach_type=_BPF_TRACE_FENTRY, kern_version=0, prog_flags=0,
                                   attach_btf_id=btf_id, log_level=0, log_size=0)
    if res.handle is None:
        if res.err == E.EPERM and os.geteuid() == 0:
            return False
        _raise_unanswered(res.err, "loading an fentry program")
        if res.err not in _UNSUPPORTED:
            raise errors.from_errno(res.err, "probe", "loading an fentry program")
        return False
    try:
        _progs.tracing_open(res.handle, "probe", "an fentry attachment").close()
    except errors.MapError as exc:
        _require_unsupported(exc, "attaching an fentry program")
        return False
    finally:
        res.handle.close()
    return True


_SECURITYFS = "/sys/kernel/security"


def kernel_lockdown() -> str:
    """The kernel's lockdown mode (``none``, ``integrity``, ``confidentiality``), or "" when it has none to show."""
    try:
        with open(f"{_SECURITYFS}/lockdown") as f:
            text = f.read()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else ""


@functools.cache
def bpf_lsm_enabled() -> bool:
    """Whether BPF LSM programs run: the kernel has CONFIG_BPF_LSM and ``bpf`` is among the active LSMs.

    Probe: ``bpf`` in securityfs' ``lsm`` list (securityfs is mounted for it when it is not yet). An LSM
    program attaches even where ``bpf`` is not active, but then never runs.
    """
    path = f"{_SECURITYFS}/lsm"
    if not os.path.isfile(path):
        err = _perf.mount("securityfs", _SECURITYFS, "securityfs")
        if err and err != E.EBUSY:
            return False
    try:
        with open(path) as f:
            return "bpf" in f.read().strip().split(",")
    except OSError:
        return False


@functools.cache
def syscall_tracepoint_kernel_stacks() -> bool:
    """Whether ``bpf_get_stackid`` in a program on a syscall tracepoint (``syscalls/sys_enter_*``) gets a kernel stack.

    Older kernels hand such programs the syscall's saved user-mode registers, so the kernel callchain is empty
    and the helper fails with EFAULT; newer ones fetch the caller's kernel registers first. Probe: a tracepoint
    program on ``sys_enter_openat`` stores the helper's result, and this process opens /dev/null.
    """
    asm = _assembler()
    R0, R1, R2, R3, R4, R6, R10 = asm.R0, asm.R1, asm.R2, asm.R3, asm.R4, asm.R6, asm.R10
    not_run = -(1 << 40)  # no errno: tells "the program never ran" from a helper failure
    tp_id = _tracepoint_id("syscalls", "sys_enter_openat")
    stacks = _maps.map_create(MapType.STACK_TRACE, None, 4, 16 * 8, 8, op="probe")
    try:
        result = _maps.map_create(MapType.ARRAY, None, 4, 8, 1, op="probe")
        try:
            zero = bytes(4)
            ret = _maps.map_update_elem(result, zero, struct.pack("=q", not_run), 0, "probe")
            if ret < 0:
                raise errors.from_errno(-ret, "probe", "initialising the probe's result")
            # The instructions carry the maps' numbers only until the load; the program then holds the maps.
            with stacks.pinned("probe") as stacks_fd, result.pinned("probe") as result_fd:
                code = asm.assemble([
                    asm.mov64(R6, R1),
                    asm.mov64(R1, R6),
                    asm.ld_map_fd(R2, stacks_fd),
                    asm.mov64(R3, 0),  # the kernel stack, no frames skipped
                    asm.call("get_stackid"),
                    asm.stx(8, R10, R0, -8),
                    asm.st(4, R10, -12, 0),
                    asm.ld_map_fd(R1, result_fd),
                    asm.mov64(R2, R10),
                    asm.add64(R2, -12),
                    asm.mov64(R3, R10),
                    asm.add64(R3, -8),
                    asm.mov64(R4, 0),
                    asm.call("map_update_elem"),
                    asm.mov64(R0, 0),
                    asm.exit_(),
                ])
                prog = _maps.prog_load_probe(_BPF_PROG_TYPE_TRACEPOINT, bytes(code), "probe_tp_stack")
            try:
                event = _maps.attach_tracepoint_probe(prog, tp_id)
                try:
                    os.close(os.open("/dev/null", os.O_RDONLY))
                finally:
                    event.close()
            finally:
                prog.close()
            buf = ctypes.create_string_buffer(8)
            ret = _maps.map_lookup_elem(result, zero, buf, "probe")
            if ret < 0:
                raise errors.from_errno(-ret, "probe", "reading the probe's result")
            outcome = int(struct.unpack("=q", buf.raw)[0])
        finally:
            result.close()
    finally:
        stacks.close()
    if outcome == not_run:
        raise errors.NotSupported("the sys_enter_openat probe program never ran", op="probe")
    return outcome >= 0


def markdown_table(class_names: Mapping[int, str] | None = None) -> str:
    """The README table: every map type, its class (``class_names``: type id to class name, as
    ``ebpfmaps.map.MAP_CLASSES`` registers them), semantics, operations, support on this kernel."""
    names = class_names or {}
    support = probe_all()
    lines = [
        f"Kernel support as probed on `{os.uname().release}` by `python -m ebpfmaps.features --markdown`.",
        "",
        "| id | type (`create()` keyword) | class | keys → values | operations | this kernel |",
        "|---:|---|---|---|---|:---:|",
    ]
    for t, ok in support.items():
        doc = TYPE_DOCS.get(t, TypeDoc("", ""))
        cls = names.get(int(t))
        lines.append(
            f"| {int(t)} | `{t.keyword}` | {'`' + cls + '`' if cls else '`Map` (generic)'} | {doc.keys_values} | "
            f"{doc.operations} | {'yes' if ok else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None, class_names: Mapping[int, str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m ebpfmaps.features",
                                     description="Probe which BPF map types the running kernel supports.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--markdown", action="store_true", help="print the README table of every map type")
    group.add_argument("--json", action="store_true", help="print {type keyword: supported}")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown_table(class_names))
    elif args.json:
        print(json.dumps({t.keyword: ok for t, ok in probe_all().items()}, indent=2))
    else:
        for t, ok in probe_all().items():
            print(f"{t.keyword:24} {'yes' if ok else 'no'}")
    return 0


if __name__ == "__main__":
    # Run as a program: the package registers every family's map class, which the table names. (This
    # module itself sits below the map classes, whose constructors consult its probes.)
    from ebpfmaps.map import Map, class_for

    sys.exit(main(class_names={int(t): cls.__name__ for t in MapType if (cls := class_for(t)) is not Map}))
