"""``m.resize(n)`` on the map classes that can be resized, with :mod:`ebpfmaps.resize` loaded on first use."""

from __future__ import annotations

from collections.abc import Callable

from ebpfmaps import profile
from ebpfmaps._lazy import lazy_module
from ebpfmaps.maptypes import MapType, type_name

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import overload

    from ebpfmaps import resize as resizing
    from ebpfmaps.map import Map
    from ebpfmaps.resize import Progress, ResizeResult
else:
    resizing = lazy_module("ebpfmaps.resize")  # the migration machinery, loaded when a map is resized

__all__ = ["Resizable"]

_RESIZABLE_TYPES = frozenset(int(t) for t in MapType if t.is_resizable)


class Resizable:
    """The ``resize`` attribute of resizable map classes: present in the cloud profile, absent in embedded.

    In the embedded profile looking it up raises :class:`AttributeError`, so
    ``hasattr(m, "resize")`` is False (the method is erased from the embedded profile, as a compile-time feature would be);
    the profile is consulted on every lookup, so switching profiles takes effect
    at once.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    if TYPE_CHECKING:
        @overload
        def __get__(self, obj: None, objtype: type | None = None) -> Resizable: ...

        @overload
        def __get__(self, obj: Map, objtype: type | None = None) -> Callable[..., ResizeResult]: ...

    def __get__(self, obj: Map | None, objtype: type | None = None) -> Resizable | Callable[..., ResizeResult]:
        owner = objtype if objtype is not None else type(obj)
        if profile.active() == profile.EMBEDDED:
            raise AttributeError(
                f"{owner.__name__!r} object has no attribute 'resize' (the embedded profile has no resize)"
            )
        if obj is None:
            return self
        if obj.spec.type not in _RESIZABLE_TYPES:
            raise AttributeError(f"{owner.__name__!r} object has no attribute 'resize' "
                                 f"({type_name(obj.spec.type)} maps cannot be resized)")
        target = obj

        def bound_resize(new_max_entries: int, *, progress: Progress | None = None) -> ResizeResult:
            """Resize the map to ``new_max_entries`` by migration (see :func:`ebpfmaps.resize.resize`)."""
            # stacklevel 3: a warning points at the caller of m.resize(), past this wrapper and resize's own frame.
            return resizing.resize_at(target, new_max_entries, stacklevel=3, progress=progress)

        return bound_resize
