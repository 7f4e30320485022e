"""PERF_EVENT_ARRAY maps: the class (creation, defaults, pinning); the reader is another module.

Keys are CPU indices, values perf event fds (bpf_perf_event_output writes into
the event of the CPU it runs on). ``max_entries`` defaults to the number of
*possible* CPUs, as libbpf does for perf buffers, because an index per CPU is
what the helper needs (BPF_F_CURRENT_CPU). The kernel does not let syscalls
read the fds back (lookups raise NotSupported).
"""

from __future__ import annotations

from typing import ClassVar

from ebpfmaps.cpus import possible_cpus
from ebpfmaps.map import map_class
from ebpfmaps.maps.special import FD_ARRAY_FLAGS, IndexKeyedMap, _FdValued
from ebpfmaps.maptypes import BPF_F_PRESERVE_ELEMS, MapType

# arraymap.c: fd arrays, plus PRESERVE_ELEMS, which only perf event arrays accept (keep events after the
# map's last user-space fd closes).
PERF_FLAGS = FD_ARRAY_FLAGS | BPF_F_PRESERVE_ELEMS


@map_class
class PerfEventArray(_FdValued, IndexKeyedMap):
    """BPF_MAP_TYPE_PERF_EVENT_ARRAY: CPU index → perf event fd; sized to the possible CPUs by default."""

    map_type = MapType.PERF_EVENT_ARRAY
    allowed_flags: ClassVar[int] = PERF_FLAGS

    @classmethod
    def _default_max_entries(cls) -> int:
        return possible_cpus()


__all__ = ["PerfEventArray"]
