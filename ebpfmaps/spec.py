"""Plain data describing maps: :class:`MapSpec` (what a map is) and :class:`MapInfo` (what the kernel reports).

Neither holds a file descriptor; the live object is :class:`ebpfmaps.Map`.

Both behave as frozen dataclasses (keyword or positional construction, ``repr``, equality and hashing
over the compared fields, assignment refused, ``replace``) but are written out: ``dataclasses`` imports
``inspect``, which alone would cost every one-shot command about a fifth of the interpreter's start-up.
"""

from __future__ import annotations

from ebpfmaps.maptypes import BPF_F_RDONLY, BPF_F_WRONLY, flag_names, type_name

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any, ClassVar

_FD_ONLY_FLAGS = BPF_F_RDONLY | BPF_F_WRONLY


class FrozenInstanceError(AttributeError):
    """Assigning to (or deleting) a field of a :class:`MapSpec` or :class:`MapInfo`."""


class _Record:
    """Fields set once by ``__init__``, compared, hashed and shown as a frozen dataclass's are."""

    _fields: ClassVar[tuple[str, ...]] = ()
    _compared: ClassVar[tuple[str, ...]] = ()

    def _set(self, **values: Any) -> None:
        self.__dict__.update(values)

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={self.__dict__[name]!r}" for name in self._fields)
        return f"{type(self).__qualname__}({body})"

    def _key(self) -> tuple[object, ...]:
        d = self.__dict__
        return tuple(d[name] for name in self._compared)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, _Record)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), tuple(self.__dict__[name] for name in self._fields))

    def _replaced(self, changes: dict[str, object]) -> dict[str, object]:
        unknown = sorted(set(changes) - set(self._fields))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(map(repr, unknown))}")
        values = {name: self.__dict__[name] for name in self._fields}
        values.update(changes)
        return values


class MapSpec(_Record):
    """Everything needed to create a map, and what :func:`open_pinned` compares against.

    ``type`` is the numeric id: a :class:`MapType` value, or 4096 and up for an
    extensible map. ``inner_map`` describes the inner maps of a map-of-maps.
    ``allow_overcommit`` skips the check that refuses a map larger than the memory
    available (:mod:`ebpfmaps.memguard`); it is a creation option, not part of what
    the map is, so it is left out of comparisons (and so is ``btf_fd``).
    """

    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str
    map_extra: int
    numa_node: int | None
    inner_map: MapSpec | None
    btf_fd: int | None
    btf_key_type_id: int
    btf_value_type_id: int
    btf_vmlinux_value_type_id: int
    ifindex: int
    allow_overcommit: bool

    __match_args__ = ("type", "key_size", "value_size", "max_entries", "flags", "name", "map_extra", "numa_node",
                      "inner_map", "btf_fd", "btf_key_type_id", "btf_value_type_id", "btf_vmlinux_value_type_id",
                      "ifindex", "allow_overcommit")
    _fields = __match_args__
    _compared = tuple(f for f in _fields if f not in ("btf_fd", "allow_overcommit"))

    def __init__(self, type: int, key_size: int, value_size: int, max_entries: int, flags: int = 0, name: str = "",
                 map_extra: int = 0, numa_node: int | None = None, inner_map: MapSpec | None = None,
                 btf_fd: int | None = None, btf_key_type_id: int = 0, btf_value_type_id: int = 0,
                 btf_vmlinux_value_type_id: int = 0, ifindex: int = 0, allow_overcommit: bool = False) -> None:
        self._set(type=type, key_size=key_size, value_size=value_size, max_entries=max_entries, flags=flags,
                  name=name, map_extra=map_extra, numa_node=numa_node, inner_map=inner_map, btf_fd=btf_fd,
                  btf_key_type_id=btf_key_type_id, btf_value_type_id=btf_value_type_id,
                  btf_vmlinux_value_type_id=btf_vmlinux_value_type_id, ifindex=ifindex,
                  allow_overcommit=allow_overcommit)

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    def replace(self, **changes: object) -> MapSpec:
        """A copy with ``changes`` (field names as keywords), as :func:`dataclasses.replace` makes."""
        return type(self)(**self._replaced(changes))  # type: ignore[arg-type]

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


class MapInfo(_Record):
    """What the kernel says about a live map (``BPF_OBJ_GET_INFO_BY_FD`` plus fdinfo)."""

    id: int
    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    map_extra: int
    memlock: int | None
    frozen: bool
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int
    ifindex: int
    owner_prog_type: int | None

    __match_args__ = ("id", "name", "type", "key_size", "value_size", "max_entries", "flags", "map_extra",
                      "memlock", "frozen", "btf_id", "btf_key_type_id", "btf_value_type_id", "ifindex",
                      "owner_prog_type")
    _fields = __match_args__
    _compared = _fields

    def __init__(self, id: int, name: str, type: int, key_size: int, value_size: int, max_entries: int, flags: int,
                 map_extra: int = 0, memlock: int | None = None, frozen: bool = False, btf_id: int = 0,
                 btf_key_type_id: int = 0, btf_value_type_id: int = 0, ifindex: int = 0,
                 owner_prog_type: int | None = None) -> None:
        self._set(id=id, name=name, type=type, key_size=key_size, value_size=value_size, max_entries=max_entries,
                  flags=flags, map_extra=map_extra, memlock=memlock, frozen=frozen, btf_id=btf_id,
                  btf_key_type_id=btf_key_type_id, btf_value_type_id=btf_value_type_id, ifindex=ifindex,
                  owner_prog_type=owner_prog_type)

    def replace(self, **changes: object) -> MapInfo:
        """A copy with ``changes`` (field names as keywords), as :func:`dataclasses.replace` makes."""
        return type(self)(**self._replaced(changes))  # type: ignore[arg-type]

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


#: The fields of :class:`MapInfo`, in order (its positional arguments).
MAP_INFO_FIELDS = MapInfo._fields
