"""Errors of the extensible-maps layer; each derives from the matching class in :mod:`ebpfmaps.errors`.

Every exception a provider callback raises reaches the caller wrapped in a :class:`ProviderError`
subclass that names the callback (``exc.callback``) and chains the provider's exception
(``exc.__cause__``). Which subclass says whether the map changed:

* :class:`ProviderRefused`: a *veto* callback (``create_map_notify``, ``associate_program``,
  ``update_element_notify``, ``find_element_notify``, ``get_next_key_and_value_notify``) raised
  before anything changed; the map is as it was.
* :class:`ProviderNotificationFailed`: a *notification* callback (``delete_element_notify``,
  ``delete_map_notify``, ``external_change_notify``) raised after the change it reports was made.
* :class:`ProviderContractError`: a callback returned something the contract forbids (not bytes,
  the wrong size, a changed value from a provider that declares it does not transform values).
"""

from __future__ import annotations

from ebpfmaps.errors import InvalidArgument, MapError, NotSupported, PermissionDenied

__all__ = ["DuplicateProvider", "ProgramAccessRefused", "ProviderBusy", "ProviderContractError", "ProviderError",
           "ProviderNotFound", "ProviderNotificationFailed", "ProviderRefused"]


class ProviderError(MapError):
    """A provider callback failed or broke the contract; ``callback`` names it (None: not one callback)."""

    def __init__(self, message: str, *, callback: str | None = None, errno: int | None = None,
                 op: str | None = None, call: str | None = None) -> None:
        super().__init__(message, errno=errno, op=op, call=call)
        self.callback = callback


class ProviderContractError(ProviderError):
    """A callback returned what the contract forbids (not bytes, the wrong size, an undeclared transformation)."""


class ProviderRefused(ProviderError, InvalidArgument):
    """A veto callback raised before the change: the operation was refused and the map left as it was."""


class ProviderNotificationFailed(ProviderError):
    """A notification callback raised after the change it reports had been made (the change stands)."""


class ProviderNotFound(NotSupported):
    """No provider, registered or discoverable through entry points, serves this extensible type id."""


class DuplicateProvider(InvalidArgument):
    """Two providers claim one custom type id."""


class ProviderBusy(MapError):
    """The provider still has live maps in this process and cannot be unregistered."""


class ProgramAccessRefused(ProviderRefused, PermissionDenied):
    """Kernel programs may not use this extensible map (its provider transforms values, or it refused)."""


_refusal_classes: dict[type[MapError], type[ProviderRefused]] = {}


def _refusal_class(kind: type[MapError]) -> type[ProviderRefused]:
    """A :class:`ProviderRefused` that is also ``kind``, so ``except InvalidValueSize`` still catches a
    provider's own InvalidValueSize once it is wrapped."""
    if issubclass(kind, ProviderRefused):
        return kind
    cls = _refusal_classes.get(kind)
    if cls is None:
        try:
            cls = type(f"ProviderRefused_{kind.__name__}", (ProviderRefused, kind), {"__module__": __name__})
        except TypeError:  # no consistent method order with this class: the plain refusal
            cls = ProviderRefused
        _refusal_classes[kind] = cls
    return cls


def refusal(provider: str, callback: str, op: str, exc: Exception, what: str = "") -> ProviderRefused:
    """The error a veto callback's exception ``exc`` becomes (the caller chains ``exc`` as its cause)."""
    cls = _refusal_class(type(exc)) if isinstance(exc, MapError) else ProviderRefused
    errno = exc.errno if isinstance(exc, MapError) else None
    return cls(f"{op}: {provider}.{callback} refused{what}: {exc}", callback=callback, op=op, errno=errno)
