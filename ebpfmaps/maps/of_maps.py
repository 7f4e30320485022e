"""ARRAY_OF_MAPS and HASH_OF_MAPS: maps whose values are other maps.

The outer map is created from a template of its inner maps (``inner_map=``: a
live :class:`Map` or a :class:`MapSpec`, from which a throwaway template map is
made). The kernel keeps the template's type, key size, value size and flags
(and max_entries for array inner maps unless they have BPF_F_INNER_MAP) and
refuses inner maps that differ (``bpf_map_meta_equal`` in kernel/bpf/map_in_map.c).

Writing ``m[k] = inner`` stores the inner map's fd; the kernel then holds its own
reference, so the inner Map object may be closed. Reading ``m[k]`` gets the inner
map's id from the kernel and opens it, returning a usable :class:`Map` of the
right class (with the template's codecs when the outer map was made from a live
template). ``m.inner_id(k)`` gives the id alone.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from ebpfmaps._lazy import lazy_module
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.codecs import Codec, IndexCodec, PerCpuCodec, as_items
from ebpfmaps.errors import IncompatibleMap, InvalidArgument, InvalidValueSize, KeyNotFound
from ebpfmaps.factory import open_by_id
from ebpfmaps.map import DEFAULT_BATCH, NO_FLAGS, Map, batch_size_arg, element_flags, map_class
from ebpfmaps.maps.hash import HASH_FLAGS
from ebpfmaps.maps.special import FD_ARRAY_FLAGS, IndexKeyedMap, check_fd_array_flags, fd_of
from ebpfmaps.maptypes import BPF_ANY, BPF_F_INNER_MAP, BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG, MapType, type_name
from ebpfmaps.spec import MapInfo, MapSpec

if TYPE_CHECKING:
    from ebpfmaps import features
else:
    features = lazy_module("ebpfmaps.features")  # the kernel is probed when a map of a newer type is created

_U32 = struct.Struct("=I")
_OF_MAPS = frozenset({int(MapType.ARRAY_OF_MAPS), int(MapType.HASH_OF_MAPS)})
# Inner maps whose max_entries the kernel compares (array_map_meta_equal), unless BPF_F_INNER_MAP is set.
_ARRAY_INNER = frozenset({int(MapType.ARRAY), int(MapType.PERCPU_ARRAY)})


class InnerMapCodec(Codec):
    """Outer-map values: a Map (or an fd) in; the inner map's id (u32) out."""

    def __init__(self) -> None:
        super().__init__(4, "value")

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return super().encode(value)
        return _U32.pack(fd_of(value, "inner map"))

    def decode(self, data: bytes) -> int:
        return int(_U32.unpack_from(data)[0])

    def decode_many(self, data: bytes | memoryview, count: int) -> list[Any]:
        return [int(_U32.unpack_from(data, 4 * i)[0]) for i in range(count)]


def _inner_differences(template: MapSpec, inner: MapSpec) -> list[str]:
    """What the kernel's meta-equality check would find different between the template and ``inner``."""
    diffs: list[str] = []
    if template.type != inner.type:
        diffs.append(f"type: template {type_name(template.type)}, given {type_name(inner.type)}")
    for field in ("key_size", "value_size", "flags"):
        want, have = getattr(template, field), getattr(inner, field)
        if want != have:
            diffs.append(f"{field}: template {want:#x}, given {have:#x}" if field == "flags"
                         else f"{field}: template {want}, given {have}")
    if (template.type in _ARRAY_INNER and not template.flags & BPF_F_INNER_MAP
            and template.max_entries != inner.max_entries):
        diffs.append(f"max_entries: template {template.max_entries}, given {inner.max_entries} "
                     "(array inner maps must match unless created with BPF_F_INNER_MAP)")
    return diffs


class _OfMapsBase(Map):
    """Shared by both map-of-maps types."""

    fixed_value_size: ClassVar[int | None] = 4
    _inner_spec: MapSpec | None
    _inner_codecs: tuple[Codec | None, Codec | None]

    def __init__(self, key_size: int | None = None, value_size: int | None = None,
                 max_entries: int | None = None, *, inner_map: Map | MapSpec | None = None,
                 value_type: Any = None, **kwargs: Any) -> None:
        if inner_map is None:
            raise InvalidArgument(f"{type(self).__name__} needs inner_map= (a template Map or a MapSpec of the "
                                  "inner maps)", op="create")
        if value_size not in (None, 4) or value_type is not None:
            raise InvalidValueSize(f"{type(self).__name__} values are inner map fds: value_size is 4", op="create")
        if not isinstance(inner_map, (Map, MapSpec)):
            raise InvalidArgument(f"inner_map must be a kernel Map or a MapSpec, not {type(inner_map).__name__} "
                                  "(a map layered over a kernel map, such as an extensible map, passes its .base)",
                                  op="create")
        template_spec = inner_map.spec if isinstance(inner_map, Map) else inner_map
        if template_spec.type in _OF_MAPS:
            raise IncompatibleMap("a map of maps cannot hold maps of maps (the kernel allows one level)",
                                  [f"type: {type_name(template_spec.type)}"], op="create")
        self._inner_spec = template_spec
        self._inner_codecs = (None, None)
        if isinstance(inner_map, Map):
            self._inner_codecs = (_shareable(inner_map.key_codec), _shareable(inner_map.value_codec))
            super().__init__(key_size, 4, max_entries, value_type=InnerMapCodec(), inner_map=inner_map, **kwargs)
            return
        # A spec: make a template map for the kernel to copy the metadata from, then drop it.
        template = Map.from_spec(inner_map)
        try:
            super().__init__(key_size, 4, max_entries, value_type=InnerMapCodec(), inner_map=template, **kwargs)
        finally:
            template.close()

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(vcodec) is Codec:
            vcodec = InnerMapCodec()
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)

    def _after_adopt(self, info: MapInfo) -> None:
        # The kernel does not report the inner template: only the kernel can check inner maps now.
        self._inner_spec = None
        self._inner_codecs = (None, None)

    @property
    def inner_spec(self) -> MapSpec | None:
        """The template inner maps must match (``None`` for maps opened rather than created here)."""
        return self._inner_spec

    # ------------------------------------------------------------------ writing
    def _check_inner(self, value: Any) -> None:
        if isinstance(value, Map) and self._inner_spec is not None:
            diffs = _inner_differences(self._inner_spec, value.spec)
            if diffs:
                raise IncompatibleMap(f"the inner map does not match this {type_name(self._spec.type)}'s template: "
                                      + "; ".join(diffs), diffs, op="update")

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        """Store the inner map ``value`` (a Map or an fd) at ``key``."""
        flags = self._check_outer_flags(flags, "update")
        self._check_inner(value)
        try:
            super().update(key, value, flags)
        except InvalidArgument as exc:
            if exc.errno is None:
                raise
            raise IncompatibleMap(
                f"update: the kernel refused the inner map ({exc}); its type, key/value sizes, flags "
                "(and max_entries for arrays) must match the template the outer map was created with",
                ["kernel: bpf_map_meta_equal failed"], op="update") from exc

    def _check_outer_flags(self, flags: Any, op: str) -> int:
        """The update flags as an int, checked for the type (arrays of maps take BPF_ANY only)."""
        return element_flags(flags, op)

    def update_batch(self, keys: Any, values: Any, flags: int = BPF_ANY) -> int:
        flags = self._check_outer_flags(flags, "update_batch")
        vals = as_items(values, "value")
        for v in vals:
            self._check_inner(v)
        return super().update_batch(keys, vals, flags)

    def _restorable_value(self, previous: bytes, held: list[FD]) -> bytes:
        # A lookup gives the inner map's id, an update takes an fd: open the map the slot held (kept
        # open by ``held`` so that the undo of a failed batch stores that very map back).
        inner = _maps.map_get_fd_by_id(_U32.unpack(previous)[0], op="update_batch")
        held.append(inner)
        return _U32.pack(int(inner))

    # ------------------------------------------------------------------ reading
    def inner_id(self, key: Any) -> int | None:
        """The kernel id of the inner map at ``key`` (``None`` when absent)."""
        value = super().lookup(key)
        return None if value is None else int(value)

    def _open_inner(self, map_id: int) -> Map:
        kt, vt = self._inner_codecs
        return open_by_id(map_id, key_type=kt, value_type=vt)

    def lookup(self, key: Any, flags: int = 0) -> Map | None:
        """The inner map at ``key``, opened by the id the kernel returns (``None`` when absent).

        ``flags`` are checked as for any lookup (a map of maps has no spin lock: only 0 or None).
        """
        if flags is not NO_FLAGS:
            self._check_lookup_flags(flags)
        for _ in range(3):
            map_id = self.inner_id(key)
            if map_id is None:
                return None
            try:
                return self._open_inner(map_id)
            except KeyNotFound:
                continue  # replaced and freed between the lookup and the open: read the slot again
        return None

    def get(self, key: Any, default: Any = None) -> Any:
        value = self.lookup(key)
        return default if value is None else value

    def __getitem__(self, key: Any) -> Map:
        value = self.lookup(key)
        if value is None:
            raise KeyNotFound(f"lookup: key {key!r} not found", op="lookup")
        return value

    def values(self) -> Iterator[Any]:
        """Each inner map, opened (one fd each, closed when the Map object is dropped or closed)."""
        for _, m in self.items():
            yield m

    def items(self) -> Iterator[tuple[Any, Any]]:
        for key, map_id in super().items():
            try:
                yield key, self._open_inner(int(map_id))
            except KeyNotFound:
                continue  # deleted while iterating

    def inner_ids(self) -> dict[Any, int]:
        """``{key: inner map id}`` without opening anything."""
        return {k: int(v) for k, v in super().items()}

    def lookup_batch(self, keys: Any = None, *, batch_size: int = DEFAULT_BATCH) -> dict[Any, Any]:
        batch_size_arg(batch_size, "lookup_batch")
        if keys is not None:
            return {k: m for k in as_items(keys, "key") if (m := self.lookup(k)) is not None}
        return dict(self.items())


@map_class
class ArrayOfMaps(_OfMapsBase, IndexKeyedMap):
    """BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 index → inner map."""

    map_type = MapType.ARRAY_OF_MAPS
    allowed_flags: ClassVar[int] = FD_ARRAY_FLAGS

    def _check_outer_flags(self, flags: Any, op: str) -> int:
        return check_fd_array_flags(flags, self._spec.type, op)


@map_class
class HashOfMaps(_OfMapsBase):
    """BPF_MAP_TYPE_HASH_OF_MAPS: any key → inner map."""

    map_type = MapType.HASH_OF_MAPS
    allowed_flags: ClassVar[int] = HASH_FLAGS & ~(BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        spec = super().prepare_spec(spec)
        features.require_map_type(spec.type)
        return spec


def _shareable(codec: Codec) -> Codec | None:
    """A codec that can decode another map's keys/values: stateless ones only (IndexCodec knows its bounds)."""
    if isinstance(codec, PerCpuCodec):
        codec = codec.elem  # the inner map wraps its element codec per CPU itself
    if type(codec) is Codec or isinstance(codec, IndexCodec):
        return None
    return codec


__all__ = ["ArrayOfMaps", "HashOfMaps", "InnerMapCodec"]
