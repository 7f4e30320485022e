"""BTF types as C, the text ``bpftool btf dump ... format c`` prints (libbpf's C dumper, bpftool's frame)."""

from __future__ import annotations

from collections.abc import Sequence

from ebpfmaps import errors
from ebpfmaps._libbpf.btfdump import dump_c
from ebpfmaps.btf.reader import BtfTypes

__all__ = ["format_c"]

_HEADER = (
    "#ifndef __VMLINUX_H__\n"
    "#define __VMLINUX_H__\n"
    "\n"
    "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
    "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n"
    "#endif\n"
    "\n"
)
_FOOTER = (
    "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
    "#pragma clang attribute pop\n"
    "#endif\n"
    "\n"
    "#endif /* __VMLINUX_H__ */\n"
)


def format_c(types: BtfTypes, type_ids: Sequence[int] | None = None) -> str:
    """C declarations of ``type_ids`` (all types when None) and what they depend on, framed as bpftool frames them."""
    if types.base is not None:
        raise errors.NotSupported("C output of split BTF (a kernel module's) is not supported", op="btf")
    return _HEADER + dump_c(types.blob, type_ids) + _FOOTER
