"""Which provider serves which custom type id, and which maps each provider has live in this process.

Providers come from :func:`register_provider` or, on demand, from entry points
in the group ``ebpfmaps.providers`` (the NMR model: nothing central to edit).
Entry points are read only when a map of a type id nobody has registered is
created or opened; an entry point named after the decimal type id is loaded
first, others (non-numeric names) are loaded and asked for their id.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ebpfmaps.errors import InvalidArgument, NotSupported
from ebpfmaps.extension import entry_points_in
from ebpfmaps.maptypes import EXTENSIBLE_MIN, type_name

from .errors import DuplicateProvider, ProviderBusy, ProviderError, ProviderNotFound
from .provider import SUPPORTED_BASES, DispatchTable, MapProvider

__all__ = ["ENTRY_POINT_GROUP", "Binding", "find_provider", "live_maps", "providers", "register_provider",
           "require_provider", "unregister_provider"]

ENTRY_POINT_GROUP = "ebpfmaps.providers"
_P = TypeVar("_P", bound=MapProvider)
MAX_TYPE_ID = 0xFFFFFFFF  # bpf_attr.map_type is a __u32

_lock = threading.RLock()
_providers: dict[int, MapProvider] = {}
_dispatch: dict[int, DispatchTable] = {}
_bindings: dict[int, Binding] = {}


@dataclass(eq=False)
class Binding:
    """One kernel map bound to its provider in this process; shared by every handle of that map here."""

    map_id: int
    provider: MapProvider
    dispatch: DispatchTable
    options: dict[str, int]
    handles: int = 0
    #: Per-map state for the provider (this process only).
    context: dict[str, Any] = field(default_factory=dict)
    pin_paths: set[str] = field(default_factory=set)
    programs: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Whether this process holds the map's lease (see :mod:`ebpfmaps_shim._lease`).
    leased: bool = False
    #: What the base map held after the last ``reconcile`` (key -> stored bytes); None until the first one.
    #: Writes through the shim in this process keep it current, so only outside changes show as differences.
    observed: dict[bytes, bytes] | None = None
    #: The packed ``(keys, values)`` chunks of the last pass, for its fast path (None after a write here).
    observed_chunks: list[tuple[bytes, bytes]] | None = None
    #: Serializes reconcile passes (and their notifications) of this map in this process.
    reconcile_lock: threading.Lock = field(default_factory=threading.Lock)


def _validate(provider: MapProvider) -> tuple[int, DispatchTable]:
    tid = getattr(provider, "custom_map_type", None)
    if not isinstance(tid, int) or isinstance(tid, bool):
        raise InvalidArgument(f"provider {provider!r} must declare an int custom_map_type", op="register_provider")
    if tid < EXTENSIBLE_MIN:
        raise InvalidArgument(f"provider {type(provider).__name__} claims map type {tid}: ids 1-{EXTENSIBLE_MIN - 1} "
                              f"are the kernel's; extensible types use {EXTENSIBLE_MIN} and up", op="register_provider")
    if tid > MAX_TYPE_ID:
        raise InvalidArgument(f"custom_map_type {tid} does not fit the kernel's 32-bit map type", op="register_provider")
    base = int(getattr(provider, "base_map_type", 0))
    if base not in SUPPORTED_BASES:
        names = ", ".join(sorted(type_name(b) for b in SUPPORTED_BASES))
        raise NotSupported(f"provider {type(provider).__name__}: base map type {type_name(base)} is not supported "
                           f"(choose one of {names})", op="register_provider")
    table = DispatchTable.of(provider)
    if getattr(provider, "transforms_values", False) and (
        table.update_element_notify is None or table.find_element_notify is None
    ):
        raise InvalidArgument(f"provider {type(provider).__name__} transforms values, so it must implement both "
                              f"update_element_notify and find_element_notify", op="register_provider")
    return tid, table


#: Called with the type id after each new registration (the map layer finishes cleanups left by dead holders).
after_register: list[Callable[[int], object]] = []


def register_provider(provider: _P) -> _P:
    """Serve ``provider.custom_map_type`` with ``provider`` (registering the same object again does nothing).

    Maps of this type whose holders all died meanwhile get their cleanup now (see ``finish_cleanup``).
    """
    tid = _register(provider)
    if tid is not None:
        for hook in list(after_register):
            hook(tid)
    return provider


def _register(provider: MapProvider) -> int | None:
    tid, table = _validate(provider)
    with _lock:
        current = _providers.get(tid)
        if current is provider:
            return None
        if current is not None:
            raise DuplicateProvider(f"map type {tid} is already served by {type(current).__name__}; "
                                    f"unregister it first", op="register_provider")
        _providers[tid] = provider
        _dispatch[tid] = table
    return tid


def unregister_provider(provider: MapProvider | int) -> None:
    """Stop serving a type id. Refused (:class:`ProviderBusy`) while maps of the provider are live here.

    Registrations are per process: this says nothing about other processes, which keep their own
    providers and maps. Maps of the type stay in the kernel; here, opening one (or loading a program
    that uses one) raises :class:`ProviderNotFound` until a provider is registered again, and the cleanup
    of such a map waits for a process that serves its type.
    """
    with _lock:
        tid = provider if isinstance(provider, int) else provider.custom_map_type
        current = _providers.get(tid)
        if current is None or (not isinstance(provider, int) and current is not provider):
            raise ProviderNotFound(f"no provider registered for map type {tid}", op="unregister_provider")
        live = sorted(b.map_id for b in _bindings.values() if b.provider is current)
        if live:
            raise ProviderBusy(f"{type(current).__name__} still has live maps in this process (ids {live}); "
                               f"close them first", op="unregister_provider")
        del _providers[tid]
        del _dispatch[tid]


def providers() -> dict[int, MapProvider]:
    """The registered providers by type id (including those discovered through entry points)."""
    with _lock:
        return dict(_providers)


def _load_entry_point(ep: Any) -> None:
    obj = ep.load()
    if isinstance(obj, type):
        with _lock:
            for p in _providers.values():
                if type(p) is obj:  # its module registered an instance when imported
                    return
        obj = obj()
    if obj is not None:
        register_provider(obj)


def _discover(type_id: int) -> None:
    eps = entry_points_in(ENTRY_POINT_GROUP)
    named = [ep for ep in eps if ep.name.strip() == str(type_id)]
    if len(named) > 1:
        raise DuplicateProvider(f"several entry points in {ENTRY_POINT_GROUP!r} claim map type {type_id}: "
                                + ", ".join(f"{ep.name} = {ep.value}" for ep in named), op="discover")
    for ep in named:
        try:
            _load_entry_point(ep)
        except (DuplicateProvider, InvalidArgument, NotSupported):
            raise
        except Exception as exc:
            raise ProviderError(f"entry point {ep.name} = {ep.value} ({ENTRY_POINT_GROUP}) failed to load: {exc!r}",
                                op="discover") from exc
    if type_id in _providers:
        return
    for ep in eps:
        if ep.name.strip().isdigit():
            continue
        try:
            _load_entry_point(ep)
        except Exception as exc:  # a broken unrelated provider must not break this lookup
            warnings.warn(f"ebpfmaps_shim: provider entry point {ep.name} = {ep.value} failed: {exc!r}",
                          RuntimeWarning, stacklevel=3)
        if type_id in _providers:
            return


def find_provider(type_id: int) -> tuple[MapProvider, DispatchTable] | None:
    """The provider of ``type_id``: registered, or discovered now through entry points; None if there is none."""
    with _lock:
        if type_id not in _providers:
            _discover(type_id)
        provider = _providers.get(type_id)
        if provider is None:
            return None
        return provider, _dispatch[type_id]


def registered_provider(type_id: int) -> tuple[MapProvider, DispatchTable] | None:
    """The provider registered for ``type_id`` in this process, without looking at entry points."""
    with _lock:
        provider = _providers.get(type_id)
        return None if provider is None else (provider, _dispatch[type_id])


def require_provider(type_id: int, op: str) -> tuple[MapProvider, DispatchTable]:
    found = find_provider(type_id)
    if found is None:
        raise ProviderNotFound(f"{op}: no provider serves extensible map type {type_id}: register one with "
                               f"ebpfmaps_shim.register_provider or install a package with an entry point in "
                               f"{ENTRY_POINT_GROUP!r} named {type_id}", op=op)
    return found


def acquire_binding(map_id: int, provider: MapProvider, dispatch: DispatchTable, options: dict[str, int],
                    pin_path: str | None) -> Binding:
    """The binding of ``map_id`` with one more handle (created on the first)."""
    with _lock:
        if _providers.get(provider.custom_map_type) is not provider:
            raise ProviderNotFound(f"{type(provider).__name__} was unregistered", op="bind")
        binding = _bindings.get(map_id)
        if binding is None or binding.provider is not provider:
            binding = Binding(map_id, provider, dispatch, dict(options))
            _bindings[map_id] = binding
        binding.handles += 1
        if pin_path:
            binding.pin_paths.add(pin_path)
        return binding


def drop_handle(binding: Binding) -> bool:
    """One handle fewer; True when it was the last one in this process (the binding is then forgotten)."""
    with _lock:
        binding.handles -= 1
        if binding.handles > 0:
            return False
        if _bindings.get(binding.map_id) is binding:
            del _bindings[binding.map_id]
        return True


def live_maps(provider: MapProvider | None = None) -> list[int]:
    """Kernel ids of the extensible maps live in this process (of ``provider`` only, if given)."""
    with _lock:
        return sorted(b.map_id for b in _bindings.values() if provider is None or b.provider is provider)

