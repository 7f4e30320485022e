"""BPF programs that share maps with Python.

- :class:`Program`: load instructions from :mod:`ebpfmaps.asm` (the verifier's log in the exception when the
  kernel refuses), run them with :meth:`Program.test_run`, pin them, attach them to tracepoints.
- :class:`BpfObject`: clang-built ELF objects through libbpf, whose maps can be ebpfmaps maps;
  :class:`LegacyObject` for objects with ``SEC("maps")`` definitions, which libbpf 1.x refuses
  (:func:`open_object` picks the right one).
- :class:`Link`: an attachment; close it (or leave ``with``) to detach.
"""

from __future__ import annotations

from ebpfmaps.programs.attach import (
    BPF_F_ALLOW_MULTI,
    BPF_F_ALLOW_OVERRIDE,
    attach_cgroup,
    attach_fentry,
    attach_kprobe,
    attach_lsm,
    attach_perf_event,
    attach_socket,
    attach_sockmap,
    attach_tc,
    attach_uprobe,
)
from ebpfmaps.programs.legacy import LegacyObject, open_object
from ebpfmaps.programs.objects import BpfObject
from ebpfmaps.programs.program import (
    BPF_F_TEST_RUN_ON_CPU,
    BPF_F_TEST_XDP_LIVE_FRAMES,
    ProgInfo,
    Program,
    TestRun,
)
from ebpfmaps.programs.sections import SectionTarget, parse_section
from ebpfmaps.programs.tracing import (
    Link,
    PerfEventAttr,
    attach_raw_tracepoint,
    attach_tracepoint,
    perf_event_open,
    tracefs,
    tracepoint_id,
)
from ebpfmaps.programs.types import AttachType, ProgramType, parse_attach_type, parse_prog_type

__all__ = [
    "BPF_F_ALLOW_MULTI",
    "BPF_F_ALLOW_OVERRIDE",
    "BPF_F_TEST_RUN_ON_CPU",
    "BPF_F_TEST_XDP_LIVE_FRAMES",
    "AttachType",
    "BpfObject",
    "LegacyObject",
    "Link",
    "PerfEventAttr",
    "ProgInfo",
    "Program",
    "ProgramType",
    "SectionTarget",
    "TestRun",
    "attach_cgroup",
    "attach_fentry",
    "attach_kprobe",
    "attach_lsm",
    "attach_perf_event",
    "attach_raw_tracepoint",
    "attach_socket",
    "attach_sockmap",
    "attach_tc",
    "attach_tracepoint",
    "attach_uprobe",
    "open_object",
    "parse_attach_type",
    "parse_prog_type",
    "parse_section",
    "perf_event_open",
    "tracefs",
    "tracepoint_id",
]
