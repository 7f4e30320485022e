"""Helpers for the reader, XDP and bcc tests: load tests/bpf programs through ebpfmaps.programs.

Sources are compiled by clang at test time (tests/bpfbuild.py caches the objects) and loaded
with :class:`ebpfmaps.programs.BpfObject`, whose maps are replaced by maps ebpfmaps created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ebpfmaps.programs import BpfObject
from tests.bpfbuild import bpf_object


class Loaded:
    """A loaded object's programs by name; closing it closes the object (maps handed in stay open)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self.programs = dict(obj.programs)

    def __getitem__(self, name: str) -> Any:
        return self.programs[name]

    def close(self) -> None:
        self.obj.close()

    def __enter__(self) -> Loaded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_programs(name: str, bpffs: Path | None = None, maps: dict[str, Any] | None = None) -> Loaded:
    """Open and load tests/bpf/NAME.bpf.c, its maps named in ``maps`` replaced by those ebpfmaps Maps."""
    obj = BpfObject.open(str(bpf_object(name)), reuse=dict(maps or {}))
    try:
        obj.load()
    except BaseException:
        obj.close()
        raise
    return Loaded(obj)
