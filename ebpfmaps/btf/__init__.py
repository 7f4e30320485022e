"""BTF, the kernel's type information: reading it, writing it, and typed map values from it.

- :mod:`~ebpfmaps.btf.reader`: :class:`BtfTypes` parses BTF from the kernel (a map's ``btf_id``),
  an ELF ``.BTF`` section or ``/sys/kernel/btf/vmlinux``, every kind included.
- :mod:`~ebpfmaps.btf.writer`: :class:`BtfBuilder` writes BTF and loads it (spin-lock values...);
  :mod:`~ebpfmaps.btf.fromcodec` describes a map's ctypes or struct codecs in BTF.
- :mod:`~ebpfmaps.btf.codec`: :class:`BtfCodec` turns values into records, enums, bytes and back.
- :mod:`~ebpfmaps.btf.formatted`: entries exactly as ``bpftool -j map dump`` formats them.
- :mod:`~ebpfmaps.btf.cdump`, :mod:`~ebpfmaps.btf.gen` and :mod:`~ebpfmaps.btf.output`: the types as C and as
  Python source, for a map or an object (loaded on first use).
"""

from __future__ import annotations

import importlib

# Every name loads on first use (PEP 562): ``import ebpfmaps`` needs none of BTF, a map typed by its BTF
# needs the reader and the codecs, and the output (the C dumper through libbpf, the source generator,
# bpftool's JSON) only the commands that print it.
_LAZY_NAMES = {
    "format_c": "ebpfmaps.btf.cdump",
    "BtfCodec": "ebpfmaps.btf.codec",
    "Record": "ebpfmaps.btf.codec",
    "UnsupportedType": "ebpfmaps.btf.codec",
    "codec_for": "ebpfmaps.btf.codec",
    "cstr": "ebpfmaps.btf.codec",
    "MapFormatter": "ebpfmaps.btf.formatted",
    "bpftool_value": "ebpfmaps.btf.formatted",
    "format_entry": "ebpfmaps.btf.formatted",
    "map_formatter": "ebpfmaps.btf.formatted",
    "render_text": "ebpfmaps.btf.formatted",
    "render_value": "ebpfmaps.btf.formatted",
    "CodecBtf": "ebpfmaps.btf.fromcodec",
    "btf_for_codecs": "ebpfmaps.btf.fromcodec",
    "describe_codec": "ebpfmaps.btf.fromcodec",
    "generate_module": "ebpfmaps.btf.gen",
    "object_map_types": "ebpfmaps.btf.gen",
    "TYPED_MAP_TYPES": "ebpfmaps.btf.maps",
    "TypeRef": "ebpfmaps.btf.maps",
    "btf_of": "ebpfmaps.btf.maps",
    "type_refs": "ebpfmaps.btf.maps",
    "typed_codecs": "ebpfmaps.btf.maps",
    "map_c_source": "ebpfmaps.btf.output",
    "map_python_source": "ebpfmaps.btf.output",
    "object_c_source": "ebpfmaps.btf.output",
    "object_python_source": "ebpfmaps.btf.output",
    "BtfTypes": "ebpfmaps.btf.reader",
    "EnumValue": "ebpfmaps.btf.reader",
    "Kind": "ebpfmaps.btf.reader",
    "Member": "ebpfmaps.btf.reader",
    "Param": "ebpfmaps.btf.reader",
    "SecInfo": "ebpfmaps.btf.reader",
    "Type": "ebpfmaps.btf.reader",
    "VMLINUX": "ebpfmaps.btf.reader",
    "BTF_KIND_INT": "ebpfmaps.btf.writer",
    "BTF_KIND_STRUCT": "ebpfmaps.btf.writer",
    "Btf": "ebpfmaps.btf.writer",
    "BtfBuilder": "ebpfmaps.btf.writer",
    "SpinLockBtf": "ebpfmaps.btf.writer",
    "load_blob": "ebpfmaps.btf.writer",
    "read_raw": "ebpfmaps.btf.writer",
    "spin_lock_value_btf": "ebpfmaps.btf.writer",
}

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any

    from ebpfmaps.btf.cdump import format_c
    from ebpfmaps.btf.codec import BtfCodec, Record, UnsupportedType, codec_for, cstr
    from ebpfmaps.btf.formatted import (
        MapFormatter,
        bpftool_value,
        format_entry,
        map_formatter,
        render_text,
        render_value,
    )
    from ebpfmaps.btf.fromcodec import CodecBtf, btf_for_codecs, describe_codec
    from ebpfmaps.btf.gen import generate_module, object_map_types
    from ebpfmaps.btf.maps import TYPED_MAP_TYPES, TypeRef, btf_of, type_refs, typed_codecs
    from ebpfmaps.btf.output import map_c_source, map_python_source, object_c_source, object_python_source
    from ebpfmaps.btf.reader import VMLINUX, BtfTypes, EnumValue, Kind, Member, Param, SecInfo, Type
    from ebpfmaps.btf.writer import (
        BTF_KIND_INT,
        BTF_KIND_STRUCT,
        Btf,
        BtfBuilder,
        SpinLockBtf,
        load_blob,
        read_raw,
        spin_lock_value_btf,
    )


def __getattr__(name: str) -> Any:
    source = _LAZY_NAMES.get(name)
    if source is None:
        raise AttributeError(f"module 'ebpfmaps.btf' has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "BTF_KIND_INT",
    "BTF_KIND_STRUCT",
    "TYPED_MAP_TYPES",
    "VMLINUX",
    "Btf",
    "BtfBuilder",
    "BtfCodec",
    "BtfTypes",
    "CodecBtf",
    "EnumValue",
    "Kind",
    "MapFormatter",
    "Member",
    "Param",
    "Record",
    "SecInfo",
    "SpinLockBtf",
    "Type",
    "TypeRef",
    "UnsupportedType",
    "bpftool_value",
    "btf_for_codecs",
    "btf_of",
    "codec_for",
    "cstr",
    "describe_codec",
    "format_c",
    "format_entry",
    "generate_module",
    "load_blob",
    "map_c_source",
    "map_formatter",
    "map_python_source",
    "object_c_source",
    "object_map_types",
    "object_python_source",
    "read_raw",
    "render_text",
    "render_value",
    "spin_lock_value_btf",
    "type_refs",
    "typed_codecs",
]
