"""A map's or an object's BTF types as source text: C declarations and Python modules.

Kept apart from :mod:`ebpfmaps.btf.maps` (which typed maps need) so that opening a map does not load the C
dumper and the source generator.
"""

from __future__ import annotations

import os

from ebpfmaps import errors
from ebpfmaps.btf.cdump import format_c
from ebpfmaps.btf.gen import generate_module, object_map_types
from ebpfmaps.btf.maps import type_refs
from ebpfmaps.btf.reader import BtfTypes
from ebpfmaps.spec import MapInfo

__all__ = ["map_c_source", "map_python_source", "object_c_source", "object_python_source"]


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
