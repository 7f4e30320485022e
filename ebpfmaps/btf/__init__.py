"""BTF, the kernel's type information: reading it, writing it, and typed map values from it.

- :mod:`~ebpfmaps.btf.reader`: :class:`BtfTypes` parses BTF from the kernel (a map's ``btf_id``),
  an ELF ``.BTF`` section or ``/sys/kernel/btf/vmlinux``, every kind included.
- :mod:`~ebpfmaps.btf.writer`: :class:`BtfBuilder` writes BTF and loads it (spin-lock values...);
  :mod:`~ebpfmaps.btf.fromcodec` describes a map's ctypes or struct codecs in BTF.
- :mod:`~ebpfmaps.btf.codec`: :class:`BtfCodec` turns values into records, enums, bytes and back.
- :mod:`~ebpfmaps.btf.formatted`: entries exactly as ``bpftool -j map dump`` formats them.
- :mod:`~ebpfmaps.btf.cdump` and :mod:`~ebpfmaps.btf.gen`: the types as C and as Python source.
"""

from __future__ import annotations

from ebpfmaps.btf.cdump import format_c
from ebpfmaps.btf.codec import BtfCodec, Record, UnsupportedType, codec_for, cstr
from ebpfmaps.btf.formatted import bpftool_value, format_entry, render_text, render_value
from ebpfmaps.btf.fromcodec import CodecBtf, btf_for_codecs, describe_codec
from ebpfmaps.btf.gen import generate_module, object_map_types
from ebpfmaps.btf.maps import (
    TYPED_MAP_TYPES,
    MapFormatter,
    TypeRef,
    btf_of,
    map_c_source,
    map_formatter,
    map_python_source,
    object_c_source,
    object_python_source,
    type_refs,
    typed_codecs,
)
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
