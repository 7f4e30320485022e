"""BTF types as C declarations through libbpf's ``btf_dump`` (what ``bpftool btf dump format c`` prints).

libbpf hands each piece of text to a ``printf``-style callback with a ``va_list``; it is formatted
with libc's ``vsnprintf`` as libbpf's log messages are (:mod:`ebpfmaps._libbpf.printlog`).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

from ebpfmaps import errors
from ebpfmaps._libbpf import last_errno, lib
from ebpfmaps._libbpf.printlog import _format

__all__ = ["dump_c"]

_PRINTF_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)


def dump_c(blob: bytes, type_ids: Sequence[int] | None = None) -> str:
    """The C declarations of ``type_ids`` (every type when None) of the BTF ``blob``, in dependency order."""
    pieces: list[str] = []

    def on_print(_ctx: int | None, fmt: bytes | None, args: int | None) -> None:
        if fmt is not None and args is not None:
            pieces.append(_format(fmt, args))

    callback = _PRINTF_FN(on_print)
    buf = ctypes.create_string_buffer(blob, len(blob))
    btf = lib.btf__new(buf, len(blob))
    if not btf:
        raise errors.from_errno(last_errno(), "btf_dump", "libbpf cannot parse the BTF", call="btf__new")
    try:
        d = lib.btf_dump__new(btf, ctypes.cast(callback, ctypes.c_void_p), None, None)
        if not d:
            raise errors.from_errno(last_errno(), "btf_dump", "", call="btf_dump__new")
        try:
            ids = list(type_ids) if type_ids is not None else range(1, int(lib.btf__type_cnt(btf)))
            for tid in ids:
                err = int(lib.btf_dump__dump_type(d, tid))
                if err < 0:
                    raise errors.from_errno(-err, "btf_dump", f"type id {tid}", call="btf_dump__dump_type")
        finally:
            lib.btf_dump__free(d)
    finally:
        lib.btf__free(btf)
    return "".join(pieces)
