"""Plain data describing maps: :class:`MapSpec` (what a map is) and :class:`MapInfo` (what the kernel reports).

Neither holds a file descriptor; the live object is :class:`ebpfmaps.Map`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ebpfmaps.maptypes import BPF_F_RDONLY, BPF_F_WRONLY, flag_names, type_name

_FD_ONLY_FLAGS = BPF_F_RDONLY | BPF_F_WRONLY


@dataclass(frozen=True)
class MapSpec:
    """Everything needed to create a map, and what :func:`open_pinned` compares against.

    ``type`` is the numeric id: a :class:`MapType` value, or 4096 and up for an
    extensible map. ``inner_map`` describes the inner maps of a map-of-maps.
    ``allow_overcommit`` skips the check that refuses a map larger than the memory
    available (:mod:`ebpfmaps.memguard`); it is a creation option, not part of what
    the map is, so it is left out of comparisons.
    """

    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    name: str = ""
    map_extra: int = 0
    numa_node: int | None = None
    inner_map: MapSpec | None = None
    btf_fd: int | None = field(default=None, compare=False)
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    btf_vmlinux_value_type_id: int = 0
    ifindex: int = 0
    allow_overcommit: bool = field(default=False, compare=False)

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    def replace(self, **changes: object) -> MapSpec:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def differences(self, other: MapSpec | MapInfo, *, compare_name: bool = False) -> list[str]:
        """Each field where ``other`` differs from this spec, as ``"field: want X, have Y"``."""
        out: list[str] = []
        pairs: list[tuple[str, object, object]] = [
            ("type", type_name(self.type), type_name(other.type)),
            ("key_size", self.key_size, other.key_size),
            ("value_size", self.value_size, other.value_size),
            ("max_entries", self.max_entries, other.max_entries),
            ("map_extra", self.map_extra, other.map_extra),
        ]
        for name, want, have in pairs:
            if want != have:
                out.append(f"{name}: want {want}, have {have}")
        # RDONLY/WRONLY describe the creating fd, not the map: the kernel drops them from map_flags
        # (bpf_map_flags_retain_permanent), so they never show in MapInfo and are not compared.
        want_flags, have_flags = self.flags & ~_FD_ONLY_FLAGS, other.flags & ~_FD_ONLY_FLAGS
        if want_flags != have_flags:
            out.append(
                f"flags: want {want_flags:#x} {flag_names(want_flags)}, have {have_flags:#x} {flag_names(have_flags)}"
            )
        if compare_name and self.name and self.name != other.name:
            out.append(f"name: want {self.name!r}, have {other.name!r}")
        return out


@dataclass(frozen=True)
class MapInfo:
    """What the kernel says about a live map (``BPF_OBJ_GET_INFO_BY_FD`` plus fdinfo)."""

    id: int
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    map_extra: int = 0
    memlock: int | None = None
    frozen: bool = False
    btf_id: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    ifindex: int = 0
    owner_prog_type: int | None = None

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    def to_spec(self) -> MapSpec:
        return MapSpec(
            type=self.type,
            key_size=self.key_size,
            value_size=self.value_size,
            max_entries=self.max_entries,
            flags=self.flags,
            name=self.name,
            map_extra=self.map_extra,
            btf_key_type_id=self.btf_key_type_id,
            btf_value_type_id=self.btf_value_type_id,
            ifindex=self.ifindex,
        )
