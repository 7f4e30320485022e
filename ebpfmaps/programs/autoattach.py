"""Attaching an object's programs by their sections, as libbpf's auto-attach does (``BpfObject.attach_all``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ebpfmaps.errors import InvalidArgument
from ebpfmaps.programs.program import Program
from ebpfmaps.programs.sections import parse_section
from ebpfmaps.programs.tracing import Link

__all__ = ["attach_programs"]


def attach_programs(programs: Mapping[str, Program], targets: Mapping[str, Any] | None, what: str) -> dict[str, Link]:
    """Attach every program whose section says where (and those ``targets`` names); the links by name.

    Programs of sections that take a target and have none in ``targets`` are left alone, as are sections
    no attach call follows (``xdp``...). If one attachment fails, those made before it are detached.
    """
    wanted = dict(targets or {})
    unknown = set(wanted) - set(programs)
    if unknown:
        raise KeyError(f"{what} has no program named {', '.join(sorted(unknown))}")
    links: dict[str, Link] = {}
    try:
        for name, prog in programs.items():
            parsed = parse_section(prog.section)
            if parsed is None:
                if name in wanted:
                    raise InvalidArgument(f"program {name!r} (section {prog.section!r}) is not of a section "
                                          "ebpfmaps attaches", op="attach_all")
                continue
            if parsed.needs_target and name not in wanted:
                continue
            links[name] = prog.attach(wanted.get(name))
    except BaseException:
        for link in links.values():
            link.detach()
        raise
    return links
