"""`MapLike`: what every map object offers, whether a kernel map or a map layered on one.

:class:`ebpfmaps.Map` implements it for kernel maps; an extension's maps (such as the extensible maps
of ``ebpfmaps_shim``, which wrap a kernel base map) implement it too, so code that takes "a map"
(front ends, providers, helpers) types against this protocol rather than one class.
"""

from __future__ import annotations

import errno as E
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ebpfmaps.errors import IndexOutOfRange, KeyNotFound

if TYPE_CHECKING:
    from ebpfmaps.codecs import Codec
    from ebpfmaps.spec import MapInfo, MapSpec

_D = TypeVar("_D", bound="DictProtocol")

_L = TypeVar("_L", bound="MapLike")


@runtime_checkable
class MapLike(Protocol):
    """The map protocol: metadata, element operations, the dict protocol, batches, pins and lifetime."""

    # ------------------------------------------------------------------ what the map is
    @property
    def spec(self) -> MapSpec: ...
    @property
    def type(self) -> int: ...
    @property
    def key_size(self) -> int: ...
    @property
    def value_size(self) -> int: ...
    @property
    def max_entries(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def key_codec(self) -> Codec: ...
    @property
    def value_codec(self) -> Codec: ...
    @property
    def closed(self) -> bool: ...
    @property
    def writable(self) -> bool: ...
    @property
    def pin_path(self) -> str | None: ...
    @property
    def id(self) -> int: ...
    def info(self) -> MapInfo: ...

    # ------------------------------------------------------------------ elements
    def lookup(self, key: Any, flags: int = 0) -> Any: ...
    def update(self, key: Any, value: Any, flags: int = 0) -> None: ...
    def delete(self, key: Any) -> None: ...
    def lookup_and_delete(self, key: Any) -> Any: ...
    def next_key(self, key: Any = None) -> Any: ...
    def get(self, key: Any, default: Any = None) -> Any: ...
    def __getitem__(self, key: Any) -> Any: ...
    def __setitem__(self, key: Any, value: Any) -> None: ...
    def __delitem__(self, key: Any) -> None: ...
    def __contains__(self, key: Any) -> bool: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...
    def keys(self) -> Iterator[Any]: ...
    def values(self) -> Iterator[Any]: ...
    def items(self) -> Iterator[tuple[Any, Any]]: ...
    def to_dict(self) -> dict[Any, Any]: ...
    def clear(self) -> int: ...

    # ------------------------------------------------------------------ batches
    def lookup_batch(self, keys: Iterable[Any] | None = None, *, batch_size: int = ...) -> dict[Any, Any]: ...
    def update_batch(self, keys: Iterable[Any], values: Iterable[Any], flags: int = 0) -> int: ...
    def delete_batch(self, keys: Iterable[Any]) -> int: ...
    def lookup_and_delete_batch(self, *, batch_size: int = ...) -> dict[Any, Any]: ...

    # ------------------------------------------------------------------ pins and lifetime
    def pin(self, path: str | os.PathLike[str]) -> None: ...
    def unpin(self, path: str | os.PathLike[str] | None = None) -> None: ...
    def freeze(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self: _L) -> _L: ...
    def __exit__(self, *exc: object) -> None: ...


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

