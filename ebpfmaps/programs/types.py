"""Program and attach type ids (``enum bpf_prog_type`` / ``enum bpf_attach_type`` in uapi linux/bpf.h)."""

from __future__ import annotations

import enum

from ebpfmaps.errors import InvalidArgument


class ProgramType(enum.IntEnum):
    UNSPEC = 0
    SOCKET_FILTER = 1
    KPROBE = 2
    SCHED_CLS = 3
    SCHED_ACT = 4
    TRACEPOINT = 5
    XDP = 6
    PERF_EVENT = 7
    CGROUP_SKB = 8
    CGROUP_SOCK = 9
    LWT_IN = 10
    LWT_OUT = 11
    LWT_XMIT = 12
    SOCK_OPS = 13
    SK_SKB = 14
    CGROUP_DEVICE = 15
    SK_MSG = 16
    RAW_TRACEPOINT = 17
    CGROUP_SOCK_ADDR = 18
    LWT_SEG6LOCAL = 19
    LIRC_MODE2 = 20
    SK_REUSEPORT = 21
    FLOW_DISSECTOR = 22
    CGROUP_SYSCTL = 23
    RAW_TRACEPOINT_WRITABLE = 24
    CGROUP_SOCKOPT = 25
    TRACING = 26
    STRUCT_OPS = 27
    EXT = 28
    LSM = 29
    SK_LOOKUP = 30
    SYSCALL = 31
    NETFILTER = 32  # Linux 6.4


class AttachType(enum.IntEnum):
    """``enum bpf_attach_type``; any other id can be passed as an int."""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    CGROUP_INET_SOCK_CREATE = 2
    CGROUP_SOCK_OPS = 3
    SK_SKB_STREAM_PARSER = 4
    SK_SKB_STREAM_VERDICT = 5
    CGROUP_DEVICE = 6
    SK_MSG_VERDICT = 7
    CGROUP_INET4_BIND = 8
    CGROUP_INET6_BIND = 9
    CGROUP_INET4_CONNECT = 10
    CGROUP_INET6_CONNECT = 11
    CGROUP_INET4_POST_BIND = 12
    CGROUP_INET6_POST_BIND = 13
    CGROUP_UDP4_SENDMSG = 14
    CGROUP_UDP6_SENDMSG = 15
    LIRC_MODE2 = 16
    FLOW_DISSECTOR = 17
    CGROUP_SYSCTL = 18
    CGROUP_UDP4_RECVMSG = 19
    CGROUP_UDP6_RECVMSG = 20
    CGROUP_GETSOCKOPT = 21
    CGROUP_SETSOCKOPT = 22
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    MODIFY_RETURN = 26
    LSM_MAC = 27
    TRACE_ITER = 28
    CGROUP_INET4_GETPEERNAME = 29
    CGROUP_INET6_GETPEERNAME = 30
    CGROUP_INET4_GETSOCKNAME = 31
    CGROUP_INET6_GETSOCKNAME = 32
    XDP_DEVMAP = 33
    CGROUP_INET_SOCK_RELEASE = 34
    XDP_CPUMAP = 35
    SK_LOOKUP = 36
    XDP = 37
    SK_SKB_VERDICT = 38
    SK_REUSEPORT_SELECT = 39
    SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    PERF_EVENT = 41
    TRACE_KPROBE_MULTI = 42
    LSM_CGROUP = 43
    STRUCT_OPS = 44
    NETFILTER = 45
    TCX_INGRESS = 46  # Linux 6.6
    TCX_EGRESS = 47


# libbpf's section suffixes (cgroup_skb/ingress, cgroup/connect4, sk_skb/stream_parser...) as attach types.
ATTACH_TYPE_NAMES: dict[str, AttachType] = {
    "ingress": AttachType.CGROUP_INET_INGRESS, "egress": AttachType.CGROUP_INET_EGRESS,
    "sock_create": AttachType.CGROUP_INET_SOCK_CREATE, "sock": AttachType.CGROUP_INET_SOCK_CREATE,
    "sock_release": AttachType.CGROUP_INET_SOCK_RELEASE, "sockops": AttachType.CGROUP_SOCK_OPS,
    "post_bind4": AttachType.CGROUP_INET4_POST_BIND, "post_bind6": AttachType.CGROUP_INET6_POST_BIND,
    "dev": AttachType.CGROUP_DEVICE, "device": AttachType.CGROUP_DEVICE,
    "bind4": AttachType.CGROUP_INET4_BIND, "bind6": AttachType.CGROUP_INET6_BIND,
    "connect4": AttachType.CGROUP_INET4_CONNECT, "connect6": AttachType.CGROUP_INET6_CONNECT,
    "sendmsg4": AttachType.CGROUP_UDP4_SENDMSG, "sendmsg6": AttachType.CGROUP_UDP6_SENDMSG,
    "recvmsg4": AttachType.CGROUP_UDP4_RECVMSG, "recvmsg6": AttachType.CGROUP_UDP6_RECVMSG,
    "getpeername4": AttachType.CGROUP_INET4_GETPEERNAME, "getpeername6": AttachType.CGROUP_INET6_GETPEERNAME,
    "getsockname4": AttachType.CGROUP_INET4_GETSOCKNAME, "getsockname6": AttachType.CGROUP_INET6_GETSOCKNAME,
    "sysctl": AttachType.CGROUP_SYSCTL, "getsockopt": AttachType.CGROUP_GETSOCKOPT,
    "setsockopt": AttachType.CGROUP_SETSOCKOPT,
    "stream_parser": AttachType.SK_SKB_STREAM_PARSER, "stream_verdict": AttachType.SK_SKB_STREAM_VERDICT,
    "verdict": AttachType.SK_SKB_VERDICT, "sk_msg": AttachType.SK_MSG_VERDICT, "msg_verdict": AttachType.SK_MSG_VERDICT,
    "fentry": AttachType.TRACE_FENTRY, "fexit": AttachType.TRACE_FEXIT, "fmod_ret": AttachType.MODIFY_RETURN,
    "lsm": AttachType.LSM_MAC, "tcx_ingress": AttachType.TCX_INGRESS, "tcx_egress": AttachType.TCX_EGRESS,
}


def parse_attach_type(value: AttachType | str | int, op: str = "attach") -> AttachType:
    """An :class:`AttachType` from a member, an id, its name (``"cgroup_inet_ingress"``) or a libbpf section
    suffix (``"ingress"``, ``"connect4"``, ``"stream_verdict"``)."""
    if isinstance(value, AttachType):
        return value
    if isinstance(value, bool):
        raise InvalidArgument(f"not an attach type: {value!r}", op=op)
    if isinstance(value, int):
        try:
            return AttachType(value)
        except ValueError:
            raise InvalidArgument(f"unknown attach type id {value}", op=op) from None
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_")
        if key.startswith("bpf_"):
            key = key[len("bpf_"):]
        if key in ATTACH_TYPE_NAMES:
            return ATTACH_TYPE_NAMES[key]
        try:
            return AttachType[key.upper()]
        except KeyError:
            raise InvalidArgument(f"unknown attach type {value!r}; known: {', '.join(ATTACH_TYPE_NAMES)} or the "
                                  "names of AttachType", op=op) from None
    raise InvalidArgument(f"not an attach type: {value!r}", op=op)


# Short spellings people use (libbpf section prefixes among them).
_ALIASES = {
    "socket": ProgramType.SOCKET_FILTER, "tc": ProgramType.SCHED_CLS, "classifier": ProgramType.SCHED_CLS,
    "tp": ProgramType.TRACEPOINT, "raw_tp": ProgramType.RAW_TRACEPOINT, "raw_tracepoint": ProgramType.RAW_TRACEPOINT,
    "perf": ProgramType.PERF_EVENT, "perf_event": ProgramType.PERF_EVENT, "kprobe": ProgramType.KPROBE,
    "uprobe": ProgramType.KPROBE, "fentry": ProgramType.TRACING, "fexit": ProgramType.TRACING,
    "cgroup_skb": ProgramType.CGROUP_SKB, "sk_skb": ProgramType.SK_SKB, "sk_msg": ProgramType.SK_MSG,
    "sysctl": ProgramType.CGROUP_SYSCTL,
}


def parse_prog_type(value: ProgramType | str | int) -> ProgramType:
    """A :class:`ProgramType` from an enum member, a name (``"socket_filter"``, ``"xdp"``, ``"raw-tp"``) or an id."""
    if isinstance(value, ProgramType):
        return value
    if isinstance(value, bool):
        raise InvalidArgument(f"not a program type: {value!r}", op="prog_load")
    if isinstance(value, int):
        try:
            return ProgramType(value)
        except ValueError:
            raise InvalidArgument(f"unknown program type id {value}", op="prog_load") from None
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_")
        if key.startswith("bpf_prog_type_"):
            key = key[len("bpf_prog_type_"):]
        if key in _ALIASES:
            return _ALIASES[key]
        try:
            return ProgramType[key.upper()]
        except KeyError:
            names = ", ".join(t.name.lower() for t in ProgramType if t)
            raise InvalidArgument(f"unknown program type {value!r}; known: {names}", op="prog_load") from None
    raise InvalidArgument(f"not a program type: {value!r}", op="prog_load")
