"""ebpfmaps_shim: extensible maps — custom map type ids (4096 and up) on real kernel base maps.

A provider serves one custom type id. Register it (or ship it in an entry point
of the group ``ebpfmaps.providers``) and the unchanged ebpfmaps API works on maps
of that type, with the provider's callbacks around every operation::

    import ebpfmaps
    from ebpfmaps_shim import MapProvider, register_provider

    class Upper(MapProvider):
        custom_map_type = 5000
        def update_element_notify(self, m, key, value, flags):
            if not value.isascii():
                raise ValueError("ASCII only")
            return None

    register_provider(Upper())
    m = ebpfmaps.create(5000, key_size=4, value_size=8, max_entries=100)
"""

from __future__ import annotations

from ebpfmaps import extension as _core_extension

from .errors import (
    DuplicateProvider,
    ProgramAccessRefused,
    ProviderBusy,
    ProviderContractError,
    ProviderError,
    ProviderNotFound,
    ProviderNotificationFailed,
    ProviderRefused,
)
from .extension import ShimExtension
from .extmap import RECONCILE_BATCH, ExtensibleMap, Observer, finish_cleanup
from .provider import (
    CALLBACKS,
    HIDDEN,
    DeleteReason,
    DispatchTable,
    ExtensibleMapLike,
    ExternalChange,
    Hidden,
    MapProvider,
    ProgramType,
)
from .registry import (
    ENTRY_POINT_GROUP,
    find_provider,
    live_maps,
    providers,
    register_provider,
    unregister_provider,
)

# Importing the shim plugs it into the core even where entry points are not installed.
_core_extension.register_extension(ShimExtension())

__all__ = [
    "CALLBACKS",
    "ENTRY_POINT_GROUP",
    "HIDDEN",
    "RECONCILE_BATCH",
    "DeleteReason",
    "DispatchTable",
    "DuplicateProvider",
    "ExtensibleMap",
    "ExtensibleMapLike",
    "ExternalChange",
    "Hidden",
    "MapProvider",
    "Observer",
    "ProgramAccessRefused",
    "ProgramType",
    "ProviderBusy",
    "ProviderContractError",
    "ProviderError",
    "ProviderNotFound",
    "ProviderNotificationFailed",
    "ProviderRefused",
    "ShimExtension",
    "find_provider",
    "finish_cleanup",
    "live_maps",
    "providers",
    "register_provider",
    "unregister_provider",
]
