"""A map's BTF: its key and value types read from the kernel, and the codecs they give.

Maps of the data-holding types (hash, array, their per-CPU and LRU variants) whose BTF describes
the key and value get :class:`~ebpfmaps.btf.codec.BtfCodec` codecs by default. Parsed BTF is
cached by BTF object id (the kernel never hands out an id again while the object lives, and the
object is immutable), so the maps of one program share one set of record classes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ebpfmaps import errors
from ebpfmaps.btf.codec import Record, UnsupportedType, _Compiler, codec_for
from ebpfmaps.btf.reader import BtfTypes, Kind
from ebpfmaps.codecs import Codec, Role
from ebpfmaps.maptypes import TYPED_MAP_TYPES, MapType
from ebpfmaps.spec import MapInfo

__all__ = ["TYPED_MAP_TYPES", "TypeRef", "btf_of", "type_refs", "typed_codecs"]


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
