"""Errors of the extensible-maps layer; each derives from the matching class in :mod:`ebpfmaps.errors`."""

from __future__ import annotations

from ebpfmaps.errors import InvalidArgument, MapError, NotSupported, PermissionDenied

__all__ = ["DuplicateProvider", "ProgramAccessRefused", "ProviderBusy", "ProviderError", "ProviderNotFound",
           "ProviderRefused"]


class ProviderError(MapError):
    """A provider broke the contract (a stored value of the wrong size, an undeclared transformation...)."""


class ProviderRefused(InvalidArgument):
    """A provider callback refused the operation (it raised); the map was left as it was."""


class ProviderNotFound(NotSupported):
    """No provider, registered or discoverable through entry points, serves this extensible type id."""


class DuplicateProvider(InvalidArgument):
    """Two providers claim one custom type id."""


class ProviderBusy(MapError):
    """The provider still has live maps in this process and cannot be unregistered."""


class ProgramAccessRefused(PermissionDenied):
    """Kernel programs may not use this extensible map (its provider transforms values, or it refused)."""
