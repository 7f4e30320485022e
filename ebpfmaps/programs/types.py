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
    """The attach types ebpfmaps uses by name; any other id can be passed as an int."""

    CGROUP_INET_INGRESS = 0
    CGROUP_INET_EGRESS = 1
    TRACE_RAW_TP = 23
    TRACE_FENTRY = 24
    TRACE_FEXIT = 25
    SK_LOOKUP = 36
    XDP = 37
    PERF_EVENT = 41


# Short spellings people use (libbpf section prefixes among them).
_ALIASES = {
    "socket": ProgramType.SOCKET_FILTER, "tc": ProgramType.SCHED_CLS, "classifier": ProgramType.SCHED_CLS,
    "tp": ProgramType.TRACEPOINT, "raw_tp": ProgramType.RAW_TRACEPOINT, "raw_tracepoint": ProgramType.RAW_TRACEPOINT,
    "perf": ProgramType.PERF_EVENT,
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
