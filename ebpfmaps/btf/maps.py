"""A map's BTF: its key and value types read from the kernel, and the codecs they give.

Maps of the data-holding types (hash, array, their per-CPU and LRU variants) whose BTF describes
the key and value get :class:`~ebpfmaps.btf.codec.BtfCodec` codecs by default. Parsed BTF is
cached by BTF object id (the kernel never hands out an id again while the object lives, and the
object is immutable), so the maps of one program share one set of record classes.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ebpfmaps import errors
from ebpfmaps.btf.cdump import format_c
from ebpfmaps.btf.codec import Record, UnsupportedType, _Compiler, codec_for
from ebpfmaps.btf.formatted import bpftool_value
from ebpfmaps.btf.gen import generate_module, object_map_types
from ebpfmaps.btf.reader import BtfTypes, Kind
from ebpfmaps.codecs import Codec, Role, round8
from ebpfmaps.maptypes import MapType
from ebpfmaps.spec import MapInfo

__all__ = [
    "TYPED_MAP_TYPES",
    "MapFormatter",
    "TypeRef",
    "btf_of",
    "map_c_source",
    "map_formatter",
    "map_python_source",
    "object_c_source",
    "object_python_source",
    "type_refs",
    "typed_codecs",
]

#: Map types whose keys and values are plain data that BTF describes.
TYPED_MAP_TYPES = frozenset(int(t) for t in (
    MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_HASH,
    MapType.LRU_PERCPU_HASH,
))

_CACHE_SIZE = 32
_cache: OrderedDict[int, tuple[BtfTypes, _Compiler]] = OrderedDict()
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class TypeRef:
    """A map's key or value type as BTF describes it: ``str(ref)`` is its C name."""

    types: BtfTypes
    type_id: int

    @property
    def name(self) -> str:
        """The C name (``struct event``, ``__u32``, ``char[16]``)."""
        return self.types.c_name(self.type_id)

    @property
    def kind(self) -> Kind:
        """The kind behind typedefs and qualifiers."""
        return self.types.resolve(self.type_id).kind

    @property
    def size(self) -> int:
        return self.types.size_of(self.type_id)

    @property
    def fields(self) -> list[tuple[str, str]]:
        """``(name, C type)`` of each member of a struct or union (empty for other kinds)."""
        t = self.types.resolve(self.type_id)
        return [(m.name, self.types.c_name(m.type_id) + (f":{m.bitfield_size}" if m.bitfield_size else ""))
                for m in t.members]

    @property
    def record_class(self) -> type[Record] | None:
        """The class values of a struct or union type decode to."""
        if self.kind not in (Kind.STRUCT, Kind.UNION):
            return None
        return _compiler(self.types).record_class(self.types.resolve(self.type_id).id)

    def __str__(self) -> str:
        return self.name


def _compiler(types: BtfTypes) -> _Compiler:
    with _cache_lock:
        for cached_types, comp in _cache.values():
            if cached_types is types:
                return comp
    return _Compiler(types)


def btf_of(btf_id: int) -> tuple[BtfTypes, _Compiler] | None:
    """The parsed kernel BTF object ``btf_id`` (cached), or None when it is gone or unreadable."""
    with _cache_lock:
        found = _cache.get(btf_id)
        if found is not None:
            _cache.move_to_end(btf_id)
            return found
    try:
        types = BtfTypes.from_kernel(btf_id)
    except (errors.KeyNotFound, errors.PermissionDenied):
        return None
    entry = (types, _Compiler(types))
    with _cache_lock:
        _cache[btf_id] = entry
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return entry


def type_refs(info: MapInfo) -> tuple[TypeRef | None, TypeRef | None]:
    """The BTF key and value types of a map (None where the map has none)."""
    if not info.btf_id or not (info.btf_key_type_id or info.btf_value_type_id):
        return None, None
    found = btf_of(info.btf_id)
    if found is None:
        return None, None
    types = found[0]
    key = TypeRef(types, info.btf_key_type_id) if info.btf_key_type_id else None
    value = TypeRef(types, info.btf_value_type_id) if info.btf_value_type_id else None
    return key, value


def _codec(types: BtfTypes, comp: _Compiler, type_id: int, size: int, role: Role) -> Codec | None:
    if not type_id:
        return None
    try:
        if types.size_of(type_id) != size:
            return None
        if types.resolve(type_id).kind is Kind.DATASEC:
            return None  # a program's global data: kept as bytes
        return codec_for(types, type_id, role, comp)
    except (UnsupportedType, errors.InvalidArgument):
        return None


_INDEXED = frozenset({int(MapType.ARRAY), int(MapType.PERCPU_ARRAY)})


def typed_codecs(info: MapInfo, key_type: Any, value_type: Any) -> tuple[Any, Any]:
    """``(key_type, value_type)`` to open a map with: the caller's, else codecs from the map's BTF.

    A map without BTF, of a type whose entries BTF does not describe as data, or whose BTF cannot be
    read keeps what the caller passed (None: bytes). Arrays keep their index keys (ints checked
    against ``max_entries``).
    """
    if (key_type is not None and value_type is not None) or info.type not in TYPED_MAP_TYPES:
        return key_type, value_type
    if not info.btf_id or not (info.btf_key_type_id or info.btf_value_type_id):
        return key_type, value_type
    found = btf_of(info.btf_id)
    if found is None:
        return key_type, value_type
    types, comp = found
    if key_type is None and info.type not in _INDEXED:
        key_type = _codec(types, comp, info.btf_key_type_id, info.key_size, "key")
    if value_type is None:
        value_type = _codec(types, comp, info.btf_value_type_id, info.value_size, "value")
    return key_type, value_type


class MapFormatter:
    """A map's raw entries as bpftool's ``formatted`` JSON values, from the map's BTF.

    Per-CPU values are one formatted value per possible CPU, in CPU order (bpftool's ``values``).
    """

    def __init__(self, types: BtfTypes, key_type_id: int, value_type_id: int, *, value_size: int,
                 per_cpu: bool) -> None:
        self.types = types
        self.key_type_id = key_type_id
        self.value_type_id = value_type_id
        self.value_size = value_size
        self.per_cpu = per_cpu
        self._stride = round8(value_size)

    def key(self, data: bytes) -> Any:
        return bpftool_value(self.types, self.key_type_id, data) if self.key_type_id else data.hex(" ")

    def value(self, data: bytes) -> Any:
        if not self.value_type_id:
            return data.hex(" ")
        if self.per_cpu:
            s, n = self._stride, self.value_size
            return [bpftool_value(self.types, self.value_type_id, data[i : i + n]) for i in range(0, len(data), s)]
        return bpftool_value(self.types, self.value_type_id, data)

    def entry(self, key: bytes, value: bytes) -> dict[str, Any]:
        """``{"key": ..., "value": ...}`` equal to bpftool's ``formatted.key`` and ``formatted.value``
        (for per-CPU maps, ``value`` is the list of bpftool's ``formatted.values[i].value``)."""
        return {"key": self.key(key), "value": self.value(value)}


def map_formatter(info: MapInfo, *, per_cpu: bool) -> MapFormatter | None:
    """A :class:`MapFormatter` for a map with BTF key or value types, else None."""
    key, value = type_refs(info)
    ref = key or value
    if ref is None:
        return None
    return MapFormatter(ref.types, info.btf_key_type_id if key else 0, info.btf_value_type_id if value else 0,
                        value_size=info.value_size, per_cpu=per_cpu)


def map_c_source(info: MapInfo) -> str:
    """The C declarations of a map's BTF key and value types (``bpftool btf dump map ... format c``)."""
    key, value = type_refs(info)
    refs = [r for r in (key, value) if r is not None]
    if not refs:
        raise errors.NotSupported(f"map {info.id} ({info.name!r}) has no BTF key or value type", op="btf")
    return format_c(refs[0].types, [r.type_id for r in refs])


def map_python_source(info: MapInfo, *, source: str = "") -> str:
    """A Python module with ctypes types for a map's key and value (see :func:`ebpfmaps.btf.gen.generate_module`)."""
    key, value = type_refs(info)
    ref = key or value
    if ref is None:
        raise errors.NotSupported(f"map {info.id} ({info.name!r}) has no BTF key or value type", op="btf")
    name = info.name or f"map_{info.id}"
    return generate_module(ref.types, {name: (info.btf_key_type_id, info.btf_value_type_id)}, source=source,
                           named=False)


def object_python_source(path: str | os.PathLike[str]) -> str:
    """A Python module with ctypes types for the maps and named types of a clang-built object."""
    types = BtfTypes.from_elf(path)
    return generate_module(types, object_map_types(types), source=os.path.basename(os.fspath(path)))


def object_c_source(path: str | os.PathLike[str]) -> str:
    """Every type of a clang-built object as C (``bpftool btf dump file OBJECT.o format c``)."""
    return format_c(BtfTypes.from_elf(path))
