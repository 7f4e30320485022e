"""The provider interface: what an extension implements to serve one custom map type.

A provider declares one ``custom_map_type`` (4096 and up; 1-4095 are the
kernel's), the kernel ``base_map_type`` that holds the elements (hash, array or
LRU hash), whether it ``transforms_values`` (the bytes stored in the base map
differ from the bytes the user wrote), and the callbacks of the dispatch table
(modelled on a kernel-style ``ebpf_map_provider_dispatch_table_t``). Every callback
is optional: one that a subclass does not override is simply not called.

Callbacks receive the map as an :class:`ExtensibleMapLike`: the map protocol
(:class:`ebpfmaps.maplike.MapLike`) plus the client services (``find_element``,
``remove_element``, ``stored_items``, ``locked``, ``options``...).

One rule per callback. A *veto* runs before the change and may refuse it by raising (the caller
gets :class:`~ebpfmaps_shim.ProviderRefused`, the map is unchanged); a *notification* runs after
the change and cannot undo it (the caller gets :class:`~ebpfmaps_shim.ProviderNotificationFailed`,
the change stands). Every exception is wrapped with the callback's name (``exc.callback``).

=============================  ============  =====================================================
callback                       rule          returns
=============================  ============  =====================================================
create_map_notify              veto          stored value size, or None (the user's)
associate_program              veto          nothing
update_element_notify          veto          bytes to store (stored size), or None (value as given)
find_element_notify            veto (read)   user value bytes, None (stored unchanged) or HIDDEN
get_next_key_and_value_notify  veto (read)   as find_element_notify
delete_element_notify          notification  nothing
delete_map_notify              notification  nothing
external_change_notify         notification  nothing
=============================  ============  =====================================================

``None`` always means "unchanged": a provider that only observes never hides or alters data.
Hiding an element is explicit (:data:`HIDDEN`, or raising :class:`ebpfmaps.KeyNotFound`); a
hidden element still occupies its key (``update(..., BPF_NOEXIST)`` refuses it). A returned value
must be ``bytes`` (or bytearray/memoryview) of exactly the right size: anything else (an ``int``
included) is a :class:`~ebpfmaps_shim.ProviderContractError`.

Keys and values reach callbacks as ``bytes``: ``key`` has the map's key size,
``value`` the user's value size and ``stored`` the base map's value size (what
``create_map_notify`` returned). Callbacks may be called from several threads at
once; calls that change one key (update, delete notifications) are serialized
for that key across threads and processes, lookups are not.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, Union, runtime_checkable

from ebpfmaps.maplike import MapLike
from ebpfmaps.maptypes import MapType
from ebpfmaps.spec import MapSpec

__all__ = ["CALLBACKS", "HIDDEN", "SUPPORTED_BASES", "DeleteReason", "DispatchTable", "ExtensibleMapLike",
           "ExternalChange", "Hidden", "MapProvider", "ProgramType"]

#: Kernel map types an extensible map can be based on.
SUPPORTED_BASES: frozenset[int] = frozenset({int(MapType.HASH), int(MapType.ARRAY), int(MapType.LRU_HASH)})

#: A program type as the programs layer names it: a ``BPF_PROG_TYPE_*`` number or a keyword such as ``"xdp"``.
ProgramType = Union[int, str]


class Hidden(enum.Enum):
    """The type of :data:`HIDDEN` (a one-member enum, so type checkers know it is a singleton)."""

    HIDDEN = "HIDDEN"

    def __repr__(self) -> str:
        return "ebpfmaps_shim.HIDDEN"


#: What ``find_element_notify`` or ``get_next_key_and_value_notify`` returns to report a stored element as
#: missing (raising :class:`ebpfmaps.KeyNotFound` does the same). ``None`` always means "unchanged".
HIDDEN = Hidden.HIDDEN


class DeleteReason(enum.IntEnum):
    """Why a stored value leaves the map (or changed outside the shim); notifications carry one.

    It prints by name (``USER_DELETE``) and compares equal to its number.
    """

    #: The user deleted the key (delete, del m[k], delete_batch, clear, lookup_and_delete...).
    USER_DELETE = 1
    #: An update replaced the value; the notification carries the old stored value.
    REPLACED = 2
    #: The map is going away (its last holder closed it or removed its last pin).
    MAP_CLEANUP = 3
    #: The provider accepted an update but the kernel refused it (map full, frozen...): the value never landed.
    ROLLBACK = 4
    #: The element was evicted: the provider removed it itself through the client service ``m.remove_element``
    #: (e.g. expiry), or ``reconcile`` found that the kernel evicted it from an LRU base map.
    EVICTED = 5
    #: ``reconcile`` found a value written outside the shim (a kernel program, bpftool, a C client).
    EXTERNAL_UPDATE = 6
    #: ``reconcile`` found an element deleted outside the shim.
    EXTERNAL_DELETE = 7

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        # f"{reason}" names it; a numeric spec (f"{reason:d}") still formats the number.
        return self.name if not spec else format(int(self), spec)


class ExternalChange(NamedTuple):
    """One change :meth:`ExtensibleMap.reconcile` found in the base map: ``old``/``new`` stored bytes.

    ``old`` is None for a key that appeared, ``new`` is None for one that disappeared. ``reason`` is
    ``EXTERNAL_UPDATE`` (appeared or changed), ``EXTERNAL_DELETE`` or ``EVICTED`` (disappeared).
    """

    key: bytes
    old: bytes | None
    new: bytes | None
    reason: DeleteReason


@runtime_checkable
class ExtensibleMapLike(MapLike, Protocol):
    """The map a provider's callbacks receive: the map protocol plus the client services of extensible maps.

    :class:`ebpfmaps_shim.ExtensibleMap` implements it; providers type against this protocol, so they
    depend on what a map offers rather than on the class that serves it.
    """

    @property
    def base(self) -> MapLike:
        """The kernel map holding the stored elements (operations on it bypass the provider)."""
    @property
    def provider(self) -> MapProvider: ...
    @property
    def map_id(self) -> int:
        """The kernel id of the base map (readable after close)."""
    @property
    def options(self) -> dict[str, int]: ...
    @property
    def context(self) -> dict[str, Any]: ...
    @property
    def stored_value_size(self) -> int: ...
    def lookup_bytes(self, key: Any) -> bytes | None: ...
    def find_element(self, key: Any) -> bytes | None:
        """The stored bytes for ``key``, without callbacks."""
    def remove_element(self, key: Any, reason: DeleteReason = ...) -> bool:
        """Remove ``key`` with a ``reason`` notification; False when it was absent."""
    def stored_items(self) -> Iterator[tuple[bytes, bytes]]:
        """``(key bytes, stored bytes)`` of every element, without callbacks."""
    def locked(self, key: Any) -> AbstractContextManager[None]:
        """The write lock of ``key`` (across threads and processes), for a read-modify-write."""


class MapProvider:
    """Base class of providers. Override the class attributes and the callbacks you need."""

    #: The extensible type id this provider serves (>= 4096).
    custom_map_type: int = 0
    #: The kernel map that holds the elements: ``MapType.HASH``, ``MapType.ARRAY`` or ``MapType.LRU_HASH``.
    base_map_type: int = int(MapType.HASH)
    #: True when stored bytes differ from the user's bytes; then kernel programs may not use the map,
    #: unless the provider also sets ``programs_see_stored``.
    transforms_values: bool = False
    #: A transforming provider sets this to say that kernel programs may use its maps knowing they read and
    #: write the *stored* form (no callback runs for program helper calls).
    programs_see_stored: bool = False
    #: Integer options a map of this type accepts (``create(..., options={...})``) and their defaults;
    #: the values chosen at creation are recorded with the map and come back in every process (``m.options``).
    default_options: ClassVar[Mapping[str, int]] = {}

    @property
    def provider_name(self) -> str:
        return type(self).__name__

    def check_options(self, options: Mapping[str, int]) -> None:
        """Raise to refuse the options of a new map (names and ranges are already checked)."""

    # ---- the dispatch table ------------------------------------------------------------------
    def create_map_notify(self, spec: MapSpec) -> int | None:
        """Validate the sizes of a map being created or opened; return the stored value size (None: the same)."""
        return None

    def delete_map_notify(self, m: ExtensibleMapLike) -> None:
        """The map is gone: its last holder closed it, or its last pin was removed while nobody held it."""

    def associate_program(self, m: ExtensibleMapLike, program_type: ProgramType) -> None:
        """A kernel program of ``program_type`` wants the map; raise to refuse."""

    def find_element_notify(self, m: ExtensibleMapLike, key: bytes, stored: bytes) -> bytes | Hidden | None:
        """The user's value for ``stored``: ``None`` for ``stored`` unchanged, :data:`HIDDEN` (or raise
        :class:`ebpfmaps.KeyNotFound`) to report the element as missing. Raise anything else to refuse."""
        return None

    def update_element_notify(self, m: ExtensibleMapLike, key: bytes, value: bytes, flags: int) -> bytes | None:
        """Validate an update; return the bytes to store (``None``: ``value`` as it is). Raise to refuse."""
        return None

    def delete_element_notify(self, m: ExtensibleMapLike, key: bytes, stored: bytes, reason: DeleteReason) -> None:
        """A stored value left the map (exactly once per value), for ``reason``; called after the change."""

    def get_next_key_and_value_notify(self, m: ExtensibleMapLike, key: bytes | None, next_key: bytes,
                                      stored: bytes) -> bytes | Hidden | None:
        """Iteration reached ``next_key`` after ``key``: the user's value to yield (``None``: ``stored``
        unchanged), or :data:`HIDDEN` (or raise :class:`ebpfmaps.KeyNotFound`) to skip it."""
        return None

    def external_change_notify(self, m: ExtensibleMapLike, changes: list[ExternalChange]) -> None:
        """``m.reconcile()`` found changes made outside the shim; each is delivered once, in batches."""


#: The callbacks of the dispatch table, in the order of the dispatch table.
CALLBACKS = (
    "create_map_notify",
    "delete_map_notify",
    "associate_program",
    "find_element_notify",
    "update_element_notify",
    "delete_element_notify",
    "get_next_key_and_value_notify",
    "external_change_notify",
)


@dataclass(frozen=True)
class DispatchTable:
    """The callbacks a provider really implements (``None`` for those it left out)."""

    create_map_notify: Callable[[MapSpec], int | None] | None
    delete_map_notify: Callable[[ExtensibleMapLike], None] | None
    associate_program: Callable[[ExtensibleMapLike, ProgramType], None] | None
    find_element_notify: Callable[[ExtensibleMapLike, bytes, bytes], bytes | Hidden | None] | None
    update_element_notify: Callable[[ExtensibleMapLike, bytes, bytes, int], bytes | None] | None
    delete_element_notify: Callable[[ExtensibleMapLike, bytes, bytes, DeleteReason], None] | None
    get_next_key_and_value_notify: Callable[[ExtensibleMapLike, bytes | None, bytes, bytes],
                                            bytes | Hidden | None] | None
    external_change_notify: Callable[[ExtensibleMapLike, list[ExternalChange]], None] | None

    @classmethod
    def of(cls, provider: object) -> DispatchTable:
        """The table of ``provider``: a callback counts when the provider's class defines it itself
        (a :class:`MapProvider` default does nothing and is not called) or, for duck-typed providers, has it."""
        found: dict[str, Any] = {}
        for name in CALLBACKS:
            fn = getattr(provider, name, None)
            inherited = getattr(MapProvider, name)
            if fn is not None and getattr(type(provider), name, None) is inherited:
                fn = None
            if fn is not None and not callable(fn):
                fn = None
            found[name] = fn
        return cls(**found)

    def present(self) -> list[str]:
        return [name for name in CALLBACKS if getattr(self, name) is not None]
