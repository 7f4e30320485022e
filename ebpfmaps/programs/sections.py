"""libbpf's ELF section names read as attach points: ``kprobe/do_unlinkat``, ``tc``, ``cgroup_skb/ingress``...

:func:`parse_section` says what kind of attachment a section asks for and, where the section says it,
where (a kernel function, a tracepoint, a binary and symbol). Sections that name only the kind (``tc``,
``cgroup/connect4``, ``socket``, ``sk_skb/stream_verdict``) need a target from the caller: an interface,
a cgroup, a socket or a sockmap (:attr:`SectionTarget.target_what`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ebpfmaps.programs.types import ATTACH_TYPE_NAMES, AttachType

__all__ = ["SectionTarget", "parse_section"]


@dataclass(frozen=True)
class SectionTarget:
    """What a section name asks for: ``kind`` and the parts of the target it names."""

    section: str
    kind: str  # tracepoint, raw_tracepoint, kprobe, kretprobe, uprobe, uretprobe, tc, cgroup, socket, sockmap, ...
    name: str = ""  # function, tracepoint or symbol
    category: str = ""  # tracepoint category
    offset: int = 0
    binary: str = ""  # uprobe binary
    direction: str = "ingress"  # tc
    attach_type: AttachType | None = None  # cgroup and sockmap programs
    target_what: str = ""  # what the caller must give as target, "" when the section says it all

    @property
    def needs_target(self) -> bool:
        return bool(self.target_what)


def _symbol_offset(text: str) -> tuple[str, int] | None:
    name, plus, off = text.partition("+")
    if not name:
        return None
    if not plus:
        return name, 0
    try:
        return name, int(off, 0)
    except ValueError:
        return None


_CGROUP_SKB = {"ingress": AttachType.CGROUP_INET_INGRESS, "egress": AttachType.CGROUP_INET_EGRESS}
_SK_SKB = {"stream_parser": AttachType.SK_SKB_STREAM_PARSER, "stream_verdict": AttachType.SK_SKB_STREAM_VERDICT,
           "": AttachType.SK_SKB_VERDICT, "verdict": AttachType.SK_SKB_VERDICT}


def parse_section(section: str) -> SectionTarget | None:
    """The attach point section ``section`` names, or None for a section no attach call follows."""
    if not isinstance(section, str) or not section:
        return None
    kind, _, rest = section.partition("/")
    if kind in ("tracepoint", "tp") and rest.count("/") == 1:
        cat, _, name = rest.partition("/")
        if cat and name:
            return SectionTarget(section, "tracepoint", name=name, category=cat)
        return None
    if kind in ("raw_tracepoint", "raw_tp", "tp_btf") and rest and kind != "tp_btf":
        return SectionTarget(section, "raw_tracepoint", name=rest)
    if kind in ("kprobe", "kretprobe") and rest:
        sym = _symbol_offset(rest)
        if sym is None:
            return None
        return SectionTarget(section, kind, name=sym[0], offset=sym[1])
    if kind in ("uprobe", "uretprobe"):
        if not rest:
            return SectionTarget(section, kind, target_what="binary and symbol ('/path/to/binary:symbol')")
        binary, colon, point = rest.rpartition(":")
        if not colon or not binary or not point:
            return None
        sym = _symbol_offset(point)
        if sym is None:
            return None
        name, offset = sym
        if name.startswith("0x") and not offset:
            return SectionTarget(section, kind, binary=binary, offset=int(name, 16))
        return SectionTarget(section, kind, name=name, offset=offset, binary=binary)
    if kind in ("tc", "classifier", "tcx"):
        direction = rest or "ingress"
        if direction not in ("ingress", "egress"):
            return None
        return SectionTarget(section, "tc", direction=direction, target_what="interface (name or ifindex)")
    if kind == "cgroup_skb" and rest in _CGROUP_SKB:
        return SectionTarget(section, "cgroup", attach_type=_CGROUP_SKB[rest], target_what="cgroup v2 path")
    if kind == "cgroup" and rest in ATTACH_TYPE_NAMES:
        return SectionTarget(section, "cgroup", attach_type=ATTACH_TYPE_NAMES[rest], target_what="cgroup v2 path")
    if kind == "sockops" and not rest:
        return SectionTarget(section, "cgroup", attach_type=AttachType.CGROUP_SOCK_OPS, target_what="cgroup v2 path")
    if kind == "socket":
        return SectionTarget(section, "socket", target_what="socket")
    if kind == "sk_skb" and rest in _SK_SKB:
        return SectionTarget(section, "sockmap", attach_type=_SK_SKB[rest], target_what="sockmap or sockhash")
    if kind == "sk_msg" and not rest:
        return SectionTarget(section, "sockmap", attach_type=AttachType.SK_MSG_VERDICT,
                             target_what="sockmap or sockhash")
    if kind == "perf_event" and not rest:
        return SectionTarget(section, "perf_event")
    if kind in ("fentry", "fexit", "fmod_ret") and rest:
        return SectionTarget(section, "fentry", name=rest)
    if kind == "lsm" and rest:
        return SectionTarget(section, "lsm", name=rest)
    return None
