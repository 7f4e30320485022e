"""A statistics map: per-key u64 counters whose layout the provider validates.

The value is ``len(fields)`` native-endian u64 counters (``fields`` names them;
by default packets and bytes). The provider checks the layout when a map is
created or opened (value_size must be 8 per field) and each write: counters never
go backwards (unless the map's ``allow_decrease`` option is 1) — a write that would
lose counts is refused. Values are stored as written, so kernel programs may share
the map (``associate_program``; only the program types given to the provider, if
any) and both sides see the same layout. :meth:`StatsMapProvider.add` is an atomic
read-modify-write across threads and processes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

from ebpfmaps.errors import InvalidArgument, InvalidValueSize
from ebpfmaps.maptypes import BPF_ANY, MapType
from ebpfmaps.spec import MapSpec

from ..errors import ProgramAccessRefused
from ..provider import ExtensibleMapLike, MapProvider, ProgramType

__all__ = ["STATS_MAP_TYPE", "StatsMapProvider"]

STATS_MAP_TYPE = 4101
U64_MAX = (1 << 64) - 1


class StatsMapProvider(MapProvider):
    """Named u64 counters per key; writes may only increase them."""

    custom_map_type = STATS_MAP_TYPE
    base_map_type = int(MapType.HASH)
    transforms_values = False
    default_options: ClassVar[Mapping[str, int]] = {"allow_decrease": 0}

    def __init__(self, fields: Sequence[str] = ("packets", "bytes"), *, custom_map_type: int = STATS_MAP_TYPE,
                 base_map_type: int = int(MapType.HASH), program_types: Iterable[ProgramType] | None = None) -> None:
        if not fields or len(set(fields)) != len(fields):
            raise InvalidArgument(f"fields must be distinct names, not {list(fields)}", op="StatsMapProvider")
        self.fields = tuple(fields)
        self.layout = struct.Struct(f"={len(self.fields)}Q")
        self.custom_map_type = custom_map_type
        self.base_map_type = int(base_map_type)
        self.program_types = None if program_types is None else frozenset(program_types)

    def create_map_notify(self, spec: MapSpec) -> int | None:
        if spec.value_size != self.layout.size:
            raise InvalidValueSize(f"a stats map with fields {list(self.fields)} has {self.layout.size}-byte values "
                                   f"(u64 each), not {spec.value_size}", op="create")
        return None

    def update_element_notify(self, m: ExtensibleMapLike, key: bytes, value: bytes, flags: int) -> bytes | None:
        if m.options.get("allow_decrease"):
            return None
        old = m.find_element(key)  # we hold this key's write lock: nobody changes it meanwhile
        if old is not None:
            for name, before, after in zip(self.fields, self.layout.unpack(old), self.layout.unpack(value)):
                if after < before:
                    raise InvalidArgument(f"counter {name!r} would go back from {before} to {after}", op="update")
        return None

    def associate_program(self, m: ExtensibleMapLike, program_type: ProgramType) -> None:
        if self.program_types is not None and program_type not in self.program_types:
            raise ProgramAccessRefused(f"stats map {m.map_id} is shared with program types "
                                       f"{sorted(map(str, self.program_types))} only, not {program_type!r}",
                                       op="associate_program")

    # ---- helpers ---------------------------------------------------------------------------------
    def read(self, m: ExtensibleMapLike, key: object) -> dict[str, int] | None:
        """The counters of ``key`` by name, or None."""
        raw = m.lookup_bytes(key)
        return None if raw is None else dict(zip(self.fields, self.layout.unpack(raw)))

    def add(self, m: ExtensibleMapLike, key: object, **deltas: int) -> dict[str, int]:
        """Add to counters of ``key`` atomically (across threads and processes); returns the new counters."""
        unknown = set(deltas) - set(self.fields)
        if unknown:
            raise InvalidArgument(f"unknown counters {sorted(unknown)}; fields are {list(self.fields)}", op="add")
        with m.locked(key):
            raw = m.lookup_bytes(key)
            current = list(self.layout.unpack(raw)) if raw is not None else [0] * len(self.fields)
            for i, name in enumerate(self.fields):
                current[i] = current[i] + deltas.get(name, 0)
                if not 0 <= current[i] <= U64_MAX:
                    raise InvalidArgument(f"counter {name!r} would leave the u64 range", op="add")
            m.update(key, self.layout.pack(*current), BPF_ANY)
        return dict(zip(self.fields, current))

    def totals(self, m: ExtensibleMapLike) -> dict[str, int]:
        """Each counter summed over every key."""
        sums = [0] * len(self.fields)
        for raw in m.values():
            for i, v in enumerate(self.layout.unpack(bytes(raw))):
                sums[i] += v
        return dict(zip(self.fields, sums))
