"""Attach points beyond tracepoints: kprobes, uprobes, tc, cgroups, sockets, sockmaps, perf events, fentry, LSM.

Each function returns a :class:`~ebpfmaps.programs.tracing.Link` that detaches when closed. A BPF link is
used where the kernel has one for the attach point (pinnable, released with its last descriptor); the older
attach calls are the fallback, and their :class:`Link` undoes the attachment on close the same way:

=================  =================================================  ===========================================
attach point       BPF link                                            fallback
=================  =================================================  ===========================================
kprobe, uprobe     perf event of the kprobe/uprobe PMU, BPF_PERF_EVENT  PERF_EVENT_IOC_SET_BPF
tc                 tcx link (BPF_TCX_INGRESS/EGRESS, Linux 6.6)        clsact qdisc + bpf filter (netlink, pyroute2)
cgroup             bpf_link_create on the cgroup (Linux 5.7)           bpf_prog_attach (BPF_F_ALLOW_MULTI)
sockmap            bpf_link_create on the map (Linux 6.10)             bpf_prog_attach on the map
socket             --                                                  SO_ATTACH_BPF / SO_DETACH_BPF
perf event         BPF_PERF_EVENT on each CPU's event                  PERF_EVENT_IOC_SET_BPF
fentry/fexit/lsm   BPF_RAW_TRACEPOINT_OPEN (always a link)             --
=================  =================================================  ===========================================

Explicit ``flags`` for a cgroup (``BPF_F_ALLOW_OVERRIDE``, ``BPF_F_ALLOW_MULTI``) ask for the older
semantics by name, so they go through ``bpf_prog_attach`` directly.
"""

from __future__ import annotations

import errno as E
import os
import socket
import threading
from typing import TYPE_CHECKING, Any

from ebpfmaps import errors, pinning
from ebpfmaps._libbpf import perf, progs
from ebpfmaps._libbpf.fd import FD
from ebpfmaps._libbpf.perf import PerfEventAttr
from ebpfmaps.cpus import online_cpus
from ebpfmaps.elfsyms import symbol_file_offset
from ebpfmaps.errors import InvalidArgument, InvalidFlags, MapClosed, NotSupported
from ebpfmaps.programs.tracing import PERF_TYPE_SOFTWARE, Link, attach_perf_event_fd, require_type
from ebpfmaps.programs.types import AttachType, ProgramType, parse_attach_type

if TYPE_CHECKING:
    # Only for annotations: program.py imports this module for its attach methods.
    from ebpfmaps.programs.program import Program

__all__ = [
    "BPF_F_ALLOW_MULTI", "BPF_F_ALLOW_OVERRIDE", "BPF_F_REPLACE", "CGROUP_ATTACH_TYPES", "PERF_COUNT_SW",
    "SOCKMAP_ATTACH_TYPES", "attach_cgroup", "attach_fentry", "attach_kprobe", "attach_lsm", "attach_perf_event",
    "attach_socket", "attach_sockmap", "attach_tc", "attach_uprobe", "kprobe_pmu_type", "uprobe_pmu_type",
]

# Cgroup attach flags (uapi linux/bpf.h).
BPF_F_ALLOW_OVERRIDE = 1 << 0
BPF_F_ALLOW_MULTI = 1 << 1
BPF_F_REPLACE = 1 << 2
_CGROUP_FLAGS = BPF_F_ALLOW_OVERRIDE | BPF_F_ALLOW_MULTI

# SOL_SOCKET options (uapi asm-generic/socket.h): SO_DETACH_BPF is SO_DETACH_FILTER.
SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27

# Software perf events by the names perf(1) gives them (uapi linux/perf_event.h, enum perf_sw_ids).
PERF_COUNT_SW = {"cpu-clock": 0, "task-clock": 1, "page-faults": 2, "context-switches": 3, "cpu-migrations": 4,
                 "minor-faults": 5, "major-faults": 6, "alignment-faults": 7, "emulation-faults": 8, "dummy": 9}
PERF_ATTR_FLAG_FREQ = 1 << 10

_EVENT_SOURCES = "/sys/bus/event_source/devices"

# Which program types each attach type takes, for a clear error before the syscall.
CGROUP_ATTACH_TYPES: dict[AttachType, ProgramType] = {
    AttachType.CGROUP_INET_INGRESS: ProgramType.CGROUP_SKB,
    AttachType.CGROUP_INET_EGRESS: ProgramType.CGROUP_SKB,
    AttachType.CGROUP_INET_SOCK_CREATE: ProgramType.CGROUP_SOCK,
    AttachType.CGROUP_INET_SOCK_RELEASE: ProgramType.CGROUP_SOCK,
    AttachType.CGROUP_INET4_POST_BIND: ProgramType.CGROUP_SOCK,
    AttachType.CGROUP_INET6_POST_BIND: ProgramType.CGROUP_SOCK,
    AttachType.CGROUP_SOCK_OPS: ProgramType.SOCK_OPS,
    AttachType.CGROUP_DEVICE: ProgramType.CGROUP_DEVICE,
    AttachType.CGROUP_INET4_BIND: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_INET6_BIND: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_INET4_CONNECT: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_INET6_CONNECT: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_UDP4_SENDMSG: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_UDP6_SENDMSG: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_UDP4_RECVMSG: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_UDP6_RECVMSG: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_INET4_GETPEERNAME: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_INET6_GETPEERNAME: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_INET4_GETSOCKNAME: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_INET6_GETSOCKNAME: ProgramType.CGROUP_SOCK_ADDR,
    AttachType.CGROUP_SYSCTL: ProgramType.CGROUP_SYSCTL,
    AttachType.CGROUP_GETSOCKOPT: ProgramType.CGROUP_SOCKOPT,
    AttachType.CGROUP_SETSOCKOPT: ProgramType.CGROUP_SOCKOPT,
}
SOCKMAP_ATTACH_TYPES: dict[AttachType, ProgramType] = {
    AttachType.SK_SKB_STREAM_PARSER: ProgramType.SK_SKB,
    AttachType.SK_SKB_STREAM_VERDICT: ProgramType.SK_SKB,
    AttachType.SK_SKB_VERDICT: ProgramType.SK_SKB,
    AttachType.SK_MSG_VERDICT: ProgramType.SK_MSG,
}
# BPF_MAP_TYPE_SOCKMAP and BPF_MAP_TYPE_SOCKHASH.
_SOCK_MAP_TYPES = (15, 18)
# tc directions: the tcx attach type, and the clsact parent of the netlink filter.
_TC_DIRECTIONS = {"ingress": (AttachType.TCX_INGRESS, "ffff:fff2"), "egress": (AttachType.TCX_EGRESS, "ffff:fff3")}

# Errors meaning "the kernel has no link (or no such attach type) for this": fall back to the older call.
_NO_LINK = (E.EINVAL, E.EOPNOTSUPP, errors.ENOTSUPP, E.EBADF, E.ENOTSUP)


def _no_link(exc: errors.MapError) -> bool:
    return exc.errno in _NO_LINK and not isinstance(exc, MapClosed)


# ---------------------------------------------------------------------- kprobes and uprobes
def _pmu(name: str, feature: str) -> tuple[int, int]:
    """(PMU type id, return-probe config bit) of the ``kprobe``/``uprobe`` PMU, or NotSupported naming it."""
    base = os.path.join(_EVENT_SOURCES, name)
    try:
        with open(os.path.join(base, "type")) as f:
            pmu_type = int(f.read().strip())
    except (OSError, ValueError):
        raise NotSupported(f"the running kernel has no {feature} ({base}/type is missing: "
                           f"CONFIG_{feature.upper()}S off)", errno=E.ENOENT, op=f"attach_{name}") from None
    ret_bit = 0
    try:
        with open(os.path.join(base, "format", "retprobe")) as f:
            spec = f.read().strip()  # "config:0"
        ret_bit = int(spec.partition(":")[2])
    except (OSError, ValueError):
        pass
    return pmu_type, ret_bit


def kprobe_pmu_type() -> int:
    """The kprobe PMU's type id (NotSupported when the kernel was built without kprobes)."""
    return _pmu("kprobe", "kprobe")[0]


def uprobe_pmu_type() -> int:
    """The uprobe PMU's type id (NotSupported when the kernel was built without uprobes)."""
    return _pmu("uprobe", "uprobe")[0]


def _check_offset(offset: Any, op: str) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0 or offset >= 1 << 64:
        raise InvalidArgument(f"offset must be a non-negative int, not {offset!r}", op=op)
    return offset


def attach_kprobe(prog: Program, symbol: str, offset: int = 0, ret: bool = False) -> Link:
    """Run a kprobe program when the kernel enters ``symbol`` (+``offset``), or returns from it (``ret``)."""
    op = "attach_kretprobe" if ret else "attach_kprobe"
    require_type(prog, (ProgramType.KPROBE,), "a kprobe")
    if not isinstance(symbol, str) or not symbol or "\0" in symbol or any(c.isspace() for c in symbol):
        raise InvalidArgument(f"kprobe symbol must be a kernel function name, not {symbol!r}", op=op)
    offset = _check_offset(offset, op)
    if ret and offset:
        raise InvalidArgument("a kretprobe fires on the function's return: it takes no offset", op=op)
    pmu_type, ret_bit = _pmu("kprobe", "kprobe")
    event = perf.probe_event_open(pmu_type, (1 << ret_bit) if ret else 0, symbol, offset, pid=-1, cpu=0)
    target = f"{symbol}+{offset:#x}" if offset else symbol
    return attach_perf_event_fd(prog, event, "kretprobe" if ret else "kprobe", target, op)


def attach_uprobe(prog: Program, binary: str | os.PathLike[str], symbol_or_offset: str | int, pid: int | None = None,
                  ret: bool = False) -> Link:
    """Run a kprobe-type program when user code reaches ``symbol_or_offset`` in ``binary`` (or returns, ``ret``).

    A symbol is looked up in the ELF symbol tables (``.symtab``, then ``.dynsym``) and turned into the file
    offset the kernel wants; an int is that file offset already. ``pid`` limits the probe to one process.
    """
    op = "attach_uretprobe" if ret else "attach_uprobe"
    require_type(prog, (ProgramType.KPROBE,), "a uprobe")
    path = os.fspath(binary)
    if not os.path.isabs(path):
        raise InvalidArgument(f"the uprobe binary must be an absolute path, not {path!r}", op=op)
    if not os.path.isfile(path):
        raise InvalidArgument(f"no binary at {path!r}", errno=E.ENOENT, op=op)
    if isinstance(symbol_or_offset, str):
        offset = symbol_file_offset(path, symbol_or_offset)
        what = symbol_or_offset
    else:
        offset = _check_offset(symbol_or_offset, op)
        what = f"{offset:#x}"
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
        raise InvalidArgument(f"pid must be a positive int or None, not {pid!r}", op=op)
    pmu_type, ret_bit = _pmu("uprobe", "uprobe")
    event = perf.probe_event_open(pmu_type, (1 << ret_bit) if ret else 0, path, offset,
                                  pid=pid if pid is not None else -1, cpu=-1 if pid is not None else 0)
    target = f"{path}:{what}" + (f" pid {pid}" if pid is not None else "")
    return attach_perf_event_fd(prog, event, "uretprobe" if ret else "uprobe", target, op)


# ---------------------------------------------------------------------- perf events
def attach_perf_event(prog: Program, event: str | int = "cpu-clock", *, cpu: int | None = None,
                      sample_period: int | None = None, sample_freq: int | None = None,
                      event_type: int = PERF_TYPE_SOFTWARE, pid: int = -1) -> Link:
    """Run a perf_event program on samples of ``event`` (a software event by default, ``cpu-clock``).

    ``cpu=None`` samples every online CPU (the link's :attr:`~Link.members` hold the other CPUs' links);
    give ``sample_freq`` (Hz) or ``sample_period`` (events; for ``cpu-clock``, nanoseconds).
    """
    op = "attach_perf_event"
    require_type(prog, (ProgramType.PERF_EVENT,), "a perf event")
    if isinstance(event, str):
        if event_type != PERF_TYPE_SOFTWARE or event not in PERF_COUNT_SW:
            raise InvalidArgument(f"unknown software event {event!r}; known: {', '.join(PERF_COUNT_SW)} "
                                  "(or pass the config number and event_type)", op=op)
        config = PERF_COUNT_SW[event]
    elif isinstance(event, bool) or not isinstance(event, int) or event < 0:
        raise InvalidArgument(f"event must be a name or a config number, not {event!r}", op=op)
    else:
        config = event
    if (sample_period is None) == (sample_freq is None):
        raise InvalidArgument("give exactly one of sample_period and sample_freq", op=op)
    rate = sample_period if sample_period is not None else sample_freq
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise InvalidArgument(f"the sample period or frequency must be a positive int, not {rate!r}", op=op)
    cpus = online_cpus() if cpu is None else [cpu]
    if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, int) or cpu not in online_cpus()):
        raise InvalidArgument(f"cpu {cpu!r} is not an online CPU", op=op)
    links: list[Link] = []
    try:
        for c in cpus:
            attr = PerfEventAttr(type=event_type, config=config, sample_period=rate, wakeup_events=1)
            attr.flags |= 1  # disabled until the program is on it
            if sample_freq is not None:
                attr.flags |= PERF_ATTR_FLAG_FREQ
            fd = perf.perf_event_open(attr, pid=pid, cpu=c)
            links.append(attach_perf_event_fd(prog, fd, "perf_event", f"{event} cpu {c}", op))
    except BaseException:
        for link in links:
            link.detach()
        raise
    first, rest = links[0], links[1:]
    first.add_members(rest)
    if cpu is None:
        first.target = f"{event} on {len(cpus)} CPUs"
    return first


# ---------------------------------------------------------------------- tracing (BTF trampolines) and LSM
def attach_fentry(prog: Program) -> Link:
    """Attach a tracing program (fentry/fexit/fmod_ret) at the kernel function its load named (``attach_to``)."""
    require_type(prog, (ProgramType.TRACING,), "an fentry/fexit")
    return Link(progs.tracing_open(prog.handle, "attach_fentry", prog.name), "fentry", prog.attach_target or prog.name,
                prog)


def attach_lsm(prog: Program) -> Link:
    """Attach an LSM program at the hook its load named (``attach_to="file_open"``); needs ``lsm=bpf`` at boot."""
    require_type(prog, (ProgramType.LSM,), "an LSM")
    return Link(progs.tracing_open(prog.handle, "attach_lsm", prog.name), "lsm", prog.attach_target or prog.name,
                prog)


# ---------------------------------------------------------------------- tc
def _ifindex(interface: str | int, op: str) -> tuple[int, str]:
    if isinstance(interface, bool):
        raise InvalidArgument(f"not an interface: {interface!r}", op=op)
    if isinstance(interface, int):
        if interface <= 0:
            raise InvalidArgument(f"ifindex must be positive, not {interface}", op=op)
        try:
            return interface, socket.if_indextoname(interface)
        except OSError:
            raise InvalidArgument(f"no interface with ifindex {interface}", errno=E.ENODEV, op=op) from None
    if not isinstance(interface, str) or not interface or "\0" in interface:
        raise InvalidArgument(f"not an interface name: {interface!r}", op=op)
    try:
        return socket.if_nametoindex(interface), interface
    except OSError:
        raise InvalidArgument(f"no interface named {interface!r}", errno=E.ENODEV, op=op) from None


def _pyroute2() -> Any:
    try:
        # Imported on first use: pyroute2 is an optional dependency (the [net] extra).
        import pyroute2
    except ImportError as exc:
        raise NotSupported("this kernel has no tcx links; attaching tc programs through netlink needs pyroute2 "
                           "(pip install 'ebpfmaps[net]')", op="attach_tc") from exc
    return pyroute2


_tc_prio_lock = threading.Lock()


def _attach_tc_netlink(prog: Program, ifindex: int, ifname: str, direction: str) -> Link:
    """A clsact qdisc (added when missing) and a direct-action bpf filter of its own priority."""
    pr2 = _pyroute2()
    parent = _TC_DIRECTIONS[direction][1]
    name = (prog.name or "ebpfmaps")[:15]
    with _tc_prio_lock, pr2.IPRoute() as ipr:
        try:
            ipr.tc("add", "clsact", ifindex)
        except pr2.NetlinkError as exc:
            if exc.code != E.EEXIST:
                raise errors.from_errno(exc.code, "attach_tc", f"add clsact qdisc on {ifname}") from None
        used = {f.get("info") >> 16 for f in ipr.get_filters(ifindex, parent=int(parent.replace(":", ""), 16))}
        prio = next(p for p in range(1, 0xFFFF) if p not in used)
        with prog.handle.pinned("attach_tc") as num:
            try:
                ipr.tc("add-filter", "bpf", ifindex, ":1", fd=num, name=name, parent=parent, prio=prio,
                       classid=1, direct_action=True)
            except pr2.NetlinkError as exc:
                raise errors.from_errno(exc.code, "attach_tc", f"bpf filter on {ifname} {direction}") from None

    def undo() -> None:
        with pr2.IPRoute() as ipr2:
            try:
                ipr2.tc("del-filter", "bpf", ifindex, ":1", parent=parent, prio=prio)
            except pr2.NetlinkError as exc:
                if exc.code not in (E.ENOENT, E.ENODEV, E.EINVAL):
                    raise errors.from_errno(exc.code, "detach_tc", f"bpf filter on {ifname}") from None

    return Link(None, "tc", f"{ifname} {direction} (netlink filter prio {prio})", prog, undo=undo)


def attach_tc(prog: Program, interface: str | int, direction: str = "ingress", *, tcx: bool | None = None) -> Link:
    """Attach a tc classifier (sched_cls, direct action) to ``interface``'s ``ingress`` or ``egress``.

    A tcx link where the kernel has them (``tcx=None``: try it first); ``tcx=False`` asks for the netlink
    clsact filter, which every kernel has.
    """
    op = "attach_tc"
    require_type(prog, (ProgramType.SCHED_CLS, ProgramType.SCHED_ACT), "a tc")
    if direction not in _TC_DIRECTIONS:
        raise InvalidArgument(f"tc direction must be 'ingress' or 'egress', not {direction!r}", op=op)
    ifindex, ifname = _ifindex(interface, op)
    if tcx is not False:
        try:
            fd = progs.link_create_target(prog.handle, ifindex, int(_TC_DIRECTIONS[direction][0]), op,
                                          f"{ifname} {direction}")
            return Link(fd, "tcx", f"{ifname} {direction}", prog)
        except errors.MapError as exc:
            if tcx or not _no_link(exc):
                raise
    return _attach_tc_netlink(prog, ifindex, ifname, direction)


# ---------------------------------------------------------------------- cgroups
def _open_cgroup(path: str | os.PathLike[str] | int, op: str) -> FD:
    if isinstance(path, bool):
        raise InvalidArgument(f"not a cgroup: {path!r}", op=op)
    if isinstance(path, int):
        return FD(os.dup(path), "cgroup")
    p = os.fspath(path)
    if not isinstance(p, str):
        raise InvalidArgument(f"cgroup path must be a str, not {path!r}", op=op)
    real = os.path.realpath(p)
    mount = None
    for m in pinning.mounts():
        if real == m.mount_point or real.startswith(m.mount_point.rstrip("/") + "/"):
            if mount is None or len(m.mount_point) >= len(mount.mount_point):
                mount = m
    if mount is None or mount.fstype != "cgroup2":
        raise InvalidArgument(f"{p!r} is not in a cgroup v2 hierarchy (mount -t cgroup2 none DIR)", op=op)
    try:
        return FD(os.open(real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), "cgroup")
    except OSError as exc:
        raise errors.from_errno(exc.errno or E.EINVAL, op, f"open {p}") from None


def attach_cgroup(prog: Program, path: str | os.PathLike[str] | int, attach_type: AttachType | str | int | None = None,
                  flags: int = 0) -> Link:
    """Attach a cgroup program to the cgroup v2 directory ``path`` (or an open fd of one).

    ``attach_type`` defaults to the program's expected attach type; names as libbpf's sections spell them
    (``"ingress"``, ``"egress"``, ``"sock_create"``, ``"connect4"``, ``"bind4"``, ``"sysctl"``...) work too.
    ``flags`` (``BPF_F_ALLOW_OVERRIDE``, ``BPF_F_ALLOW_MULTI``) select ``bpf_prog_attach``'s semantics.
    """
    op = "attach_cgroup"
    atype = _attach_type_of(prog, attach_type, op)
    if atype not in CGROUP_ATTACH_TYPES:
        raise InvalidArgument(f"{atype!r} is not a cgroup attach type", op=op)
    require_type(prog, (CGROUP_ATTACH_TYPES[atype],), f"cgroup {atype.name.lower()}")
    if isinstance(flags, bool) or not isinstance(flags, int) or flags & ~_CGROUP_FLAGS:
        raise InvalidFlags(f"cgroup attach flags are BPF_F_ALLOW_OVERRIDE and BPF_F_ALLOW_MULTI, not {flags!r}",
                           op=op)
    if flags == _CGROUP_FLAGS:
        raise InvalidFlags("BPF_F_ALLOW_OVERRIDE and BPF_F_ALLOW_MULTI exclude each other", op=op)
    cg = _open_cgroup(path, op)
    target = f"{path} {atype.name.lower()}"
    try:
        if not flags:
            try:
                return Link(progs.link_create(prog.handle, cg, int(atype), op, target), "cgroup", target, prog)
            except errors.MapError as exc:
                if not _no_link(exc):
                    raise
                flags = BPF_F_ALLOW_MULTI  # what a cgroup link means: it runs next to the others
        return _prog_attach_link(prog, cg, atype, flags, "cgroup", target, op)
    finally:
        cg.close()


def _prog_attach_link(prog: Program, target_fd: FD, atype: AttachType, flags: int, kind: str, target: str,
                      op: str) -> Link:
    """``bpf_prog_attach``, and a Link whose close detaches this program from a descriptor of its own."""
    held = target_fd.dup()
    try:
        progs.prog_attach(prog.handle, held, int(atype), flags, op, target)
    except BaseException:
        held.close()
        raise
    prog_h = prog.handle.dup()  # detaching names the program: keep it even if the Program is closed first

    def undo() -> None:
        try:
            progs.prog_detach(prog_h, held, int(atype), f"detach_{kind}", target)
        except errors.MapError as exc:
            if exc.errno != E.ENOENT:  # already detached (the cgroup or map went away)
                raise
        finally:
            prog_h.close()
            held.close()

    return Link(None, kind, target, prog, undo=undo)


def _attach_type_of(prog: Program, attach_type: AttachType | str | int | None, op: str) -> AttachType:
    if attach_type is None:
        if prog.expected_attach_type is None:
            raise InvalidArgument("give the attach type (or load the program with expected_attach_type)", op=op)
        attach_type = prog.expected_attach_type
    return parse_attach_type(attach_type, op=op)


# ---------------------------------------------------------------------- sockets and sockmaps
def attach_socket(prog: Program, sock: socket.socket | int) -> Link:
    """Attach a socket filter to ``sock`` (SO_ATTACH_BPF); closing the link detaches it (SO_DETACH_BPF)."""
    op = "attach_socket"
    require_type(prog, (ProgramType.SOCKET_FILTER,), "a socket")
    if isinstance(sock, bool) or not isinstance(sock, (socket.socket, int)):
        raise InvalidArgument(f"not a socket: {sock!r}", op=op)
    try:
        own = socket.socket(fileno=os.dup(sock if isinstance(sock, int) else sock.fileno()))
    except OSError as exc:
        raise InvalidArgument(f"not an open socket: {sock!r} ({exc.strerror})", errno=exc.errno, op=op) from None
    try:
        with prog.handle.pinned(op) as num:
            own.setsockopt(socket.SOL_SOCKET, SO_ATTACH_BPF, num)
    except OSError as exc:
        own.close()
        raise errors.from_errno(exc.errno or E.EINVAL, op, f"SO_ATTACH_BPF on {sock!r}") from None
    except BaseException:
        own.close()
        raise
    target = f"socket fd {own.fileno()}"

    def undo() -> None:
        try:
            own.setsockopt(socket.SOL_SOCKET, SO_DETACH_BPF, 0)
        except OSError as exc:
            if exc.errno != E.ENOENT:  # nothing attached any more (replaced by someone else)
                raise errors.from_errno(exc.errno or E.EINVAL, "detach_socket", target) from None
        finally:
            own.close()

    return Link(None, "socket", target, prog, undo=undo)


def attach_sockmap(prog: Program, sock_map: Any, attach_type: AttachType | str | int | None = None) -> Link:
    """Attach an SK_SKB stream parser/verdict or SK_MSG verdict program to a sockmap or sockhash."""
    op = "attach_sockmap"
    atype = _attach_type_of(prog, attach_type, op)
    if atype not in SOCKMAP_ATTACH_TYPES:
        raise InvalidArgument(f"{atype!r} is not a sockmap attach type (sk_skb stream_parser/stream_verdict/verdict, "
                              "sk_msg)", op=op)
    require_type(prog, (SOCKMAP_ATTACH_TYPES[atype],), f"sockmap {atype.name.lower()}")
    handle = getattr(sock_map, "handle", None)
    if not isinstance(handle, FD) or getattr(sock_map, "map_type", None) not in _SOCK_MAP_TYPES:
        raise InvalidArgument(f"attach_sockmap needs a SockMap or SockHash, not {sock_map!r}", op=op)
    target = f"{sock_map!r} {atype.name.lower()}"
    try:
        return Link(progs.link_create(prog.handle, handle, int(atype), op, target), "sockmap", target, prog)
    except errors.MapError as exc:
        if not _no_link(exc):
            raise
    return _prog_attach_link(prog, handle, atype, 0, "sockmap", target, op)

