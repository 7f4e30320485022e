"""What every map object shares, written once: the spec's properties and the dict protocol over the
element operations (:class:`SpecProperties`, :class:`DictProtocol`).

:class:`ebpfmaps.Map` and maps layered over a kernel map (an extension's) inherit them; the protocol
they implement together is :class:`ebpfmaps.maplike.MapLike`, which re-exports both.
"""

from __future__ import annotations

import errno as E
from collections.abc import Iterator

from ebpfmaps.errors import IndexOutOfRange, KeyNotFound

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from ebpfmaps.codecs import Codec
    from ebpfmaps.spec import MapSpec

    _D = TypeVar("_D", bound="DictProtocol")

__all__ = ["DictProtocol", "SpecProperties"]


class SpecProperties:
    """The metadata properties of a map object, read from its spec and codecs.

    Shared by :class:`ebpfmaps.Map` and maps layered over one (an extensible map reports its own
    type id and the user's value size), which set ``_spec``, ``_kcodec`` and ``_vcodec``.
    """

    _spec: MapSpec
    _kcodec: Codec
    _vcodec: Codec

    @property
    def spec(self) -> MapSpec:
        """The map as its users see it (type, sizes, max_entries, flags, name...)."""
        return self._spec

    @property
    def type(self) -> int:
        return self._spec.type

    @property
    def key_size(self) -> int:
        return self._spec.key_size

    @property
    def value_size(self) -> int:
        return self._spec.value_size

    @property
    def max_entries(self) -> int:
        return self._spec.max_entries

    @property
    def flags(self) -> int:
        return self._spec.flags

    @property
    def name(self) -> str:
        return self._spec.name

    @property
    def key_codec(self) -> Codec:
        return self._kcodec

    @property
    def value_codec(self) -> Codec:
        return self._vcodec


class DictProtocol:
    """The dict protocol, context manager and truthiness of a map object, written once over its element
    operations (``lookup``, ``lookup_bytes``, ``update``, ``delete``, ``lookup_and_delete``, ``keys``,
    ``items``, ``close``), which each map class defines. Shared by :class:`ebpfmaps.Map` and maps layered
    over one."""

    def lookup(self, key: Any, flags: int = 0) -> Any:
        raise NotImplementedError

    def lookup_bytes(self, key: Any) -> bytes | None:
        raise NotImplementedError

    def update(self, key: Any, value: Any, flags: int = 0) -> None:
        raise NotImplementedError

    def delete(self, key: Any) -> None:
        raise NotImplementedError

    def lookup_and_delete(self, key: Any) -> Any:
        raise NotImplementedError

    def keys(self) -> Iterator[Any]:
        raise NotImplementedError

    def items(self) -> Iterator[tuple[Any, Any]]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def pop_item(self, key: Any, default: Any = ...) -> Any:
        """dict.pop: remove and return the value (``default`` when absent).

        An index past the end of an array is not "absent" but a bad key: :class:`IndexOutOfRange`.
        """
        try:
            return self.lookup_and_delete(key)
        except IndexOutOfRange:
            raise
        except KeyNotFound:
            if default is ...:
                raise
            return default

    def __getitem__(self, key: Any) -> Any:
        value = self.lookup(key)
        if value is None:
            raise KeyNotFound(f"lookup: key {key!r} not found", errno=E.ENOENT, op="lookup")
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        self.delete(key)

    def __contains__(self, key: Any) -> bool:
        return self.lookup_bytes(key) is not None

    def get(self, key: Any, default: Any = None) -> Any:
        value = self.lookup(key)
        return default if value is None else value

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def __bool__(self) -> bool:
        # A map object is always truthy: emptiness would need a walk of the map.
        return True

    def to_dict(self) -> dict[Any, Any]:
        return dict(self.items())

    def __enter__(self: _D) -> _D:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

