"""Bindings to the system libbpf (``libbpf.so.1``).

This package is the only place in ebpfmaps that calls libbpf through ctypes. It
loads the library once, declares ``argtypes``/``restype`` for every function the
project uses (declared argtypes make ctypes calls both safe and faster), and
turns libbpf's negative-errno returns into the library's exceptions in
:func:`check`. Functions newer than libbpf 1.1 (Debian 12) are optional:
:data:`lib` has them as ``None`` when the loaded libbpf lacks them.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator

from ebpfmaps import errors
from ebpfmaps._libbpf import structs
from ebpfmaps._libbpf.structs import new_opts

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any, NoReturn

__all__ = ["LIBBPF_PATH", "check", "lib", "new_opts", "raise_errno", "structs", "version"]

c_int = ctypes.c_int
c_uint = ctypes.c_uint32
c_u64 = ctypes.c_uint64
c_vp = ctypes.c_void_p
c_cp = ctypes.c_char_p
P = ctypes.POINTER


def _candidates() -> Iterator[str | None]:
    yield os.environ.get("EBPFMAPS_LIBBPF")
    yield "libbpf.so.1"
    # find_library runs ldconfig in a subprocess: asked only when the soname itself is not found.
    import ctypes.util

    yield ctypes.util.find_library("bpf")


def _load() -> ctypes.CDLL:
    last: OSError | None = None
    for name in _candidates():
        if not name:
            continue
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            last = exc
    raise errors.NotSupported(
        f"cannot load libbpf (libbpf.so.1): {last}; install Debian's libbpf1 (make setup does)", op="load libbpf"
    )


_cdll = _load()
LIBBPF_PATH: str = _cdll._name


class _Lib:
    """Namespace of declared libbpf functions (``None`` where the library lacks an optional one).

    A function is looked up in the library and given its prototype the first time it is used: a one-shot
    command that touches a few map calls does not pay for the eighty declarations below.
    """

    def __getattr__(self, name: str) -> Any:  # only reached for names not resolved yet
        declared = _DECLARATIONS.get(name)
        if declared is None:
            raise AttributeError(f"libbpf function {name!r} was not declared in ebpfmaps._libbpf")
        restype, argtypes, optional = declared
        try:
            fn = getattr(_cdll, name)
        except AttributeError:
            if not optional:
                raise errors.NotSupported(f"the loaded libbpf ({LIBBPF_PATH}) lacks {name}",
                                          op="load libbpf") from None
            fn = None
        else:
            fn.restype = restype
            fn.argtypes = argtypes
        setattr(self, name, fn)
        return fn


lib: Any = _Lib()
_DECLARATIONS: dict[str, tuple[Any, list[Any], bool]] = {}


def _declare(name: str, restype: Any, argtypes: list[Any], *, optional: bool = False) -> None:
    _DECLARATIONS[name] = (restype, argtypes, optional)


# --- version and environment -------------------------------------------------------------------
_declare("libbpf_major_version", c_uint, [])
_declare("libbpf_minor_version", c_uint, [])
_declare("libbpf_num_possible_cpus", c_int, [])
_declare("libbpf_probe_bpf_map_type", c_int, [c_uint, c_vp])
_declare("libbpf_probe_bpf_prog_type", c_int, [c_uint, c_vp])
_declare("libbpf_probe_bpf_helper", c_int, [c_uint, c_uint, c_vp])
_declare("libbpf_set_print", c_vp, [c_vp])
_declare("libbpf_get_error", ctypes.c_long, [c_vp])

# --- maps: creation and element operations -----------------------------------------------------
# Buffers are declared c_char_p: ctypes passes a bytes object's own storage (no copy) and
# accepts ctypes char arrays for output buffers. Keys the kernel only reads may be bytes;
# anything the kernel writes is always a ctypes array we allocated at the map's real size.
_declare("bpf_map_create", c_int, [c_uint, c_cp, c_uint, c_uint, c_uint, P(structs.BpfMapCreateOpts)])
_declare("bpf_map_lookup_elem", c_int, [c_int, c_cp, c_cp])
_declare("bpf_map_lookup_elem_flags", c_int, [c_int, c_cp, c_cp, c_u64])
_declare("bpf_map_update_elem", c_int, [c_int, c_cp, c_cp, c_u64])
_declare("bpf_map_delete_elem", c_int, [c_int, c_cp])
_declare("bpf_map_delete_elem_flags", c_int, [c_int, c_cp, c_u64])
_declare("bpf_map_lookup_and_delete_elem", c_int, [c_int, c_cp, c_cp])
_declare("bpf_map_lookup_and_delete_elem_flags", c_int, [c_int, c_cp, c_cp, c_u64])
_declare("bpf_map_get_next_key", c_int, [c_int, c_cp, c_cp])
_declare("bpf_map_freeze", c_int, [c_int])
_declare("bpf_map_get_next_id", c_int, [c_uint, P(c_uint)])
_declare("bpf_map_get_fd_by_id", c_int, [c_uint])
_declare("bpf_map_get_fd_by_id_opts", c_int, [c_uint, P(structs.BpfGetFdByIdOpts)], optional=True)

# --- maps: batches ----------------------------------------------------------------------------
_batch_opts = P(structs.BpfMapBatchOpts)
_declare("bpf_map_lookup_batch", c_int, [c_int, c_vp, c_vp, c_vp, c_vp, P(c_uint), _batch_opts])
_declare("bpf_map_lookup_and_delete_batch", c_int, [c_int, c_vp, c_vp, c_vp, c_vp, P(c_uint), _batch_opts])
_declare("bpf_map_update_batch", c_int, [c_int, c_vp, c_vp, P(c_uint), _batch_opts])
_declare("bpf_map_delete_batch", c_int, [c_int, c_vp, P(c_uint), _batch_opts])

# --- objects in bpffs and info ----------------------------------------------------------------
_declare("bpf_obj_pin", c_int, [c_int, c_cp])
_declare("bpf_obj_get", c_int, [c_cp])
_declare("bpf_obj_get_opts", c_int, [c_cp, P(structs.BpfObjGetOpts)], optional=True)
_declare("bpf_obj_get_info_by_fd", c_int, [c_int, c_vp, P(c_uint)])
# libbpf 1.2+ spells the typed variant; used when present.
_declare("bpf_map_get_info_by_fd", c_int, [c_int, P(structs.BpfMapInfo), P(c_uint)], optional=True)

# --- programs and links (used by ebpfmaps.programs) ------------------------------------------
# Signatures as in libbpf 1.1's bpf.h. Each returns a new fd or -errno.
_declare("bpf_prog_load", c_int, [c_uint, c_cp, c_cp, c_vp, ctypes.c_size_t, P(structs.BpfProgLoadOpts)])
_declare("bpf_prog_test_run_opts", c_int, [c_int, P(structs.BpfTestRunOpts)])
_declare("bpf_prog_get_fd_by_id", c_int, [c_uint])
_declare("bpf_prog_get_next_id", c_int, [c_uint, P(c_uint)])
_declare("bpf_raw_tracepoint_open", c_int, [c_cp, c_int])
_declare("bpf_btf_load", c_int, [c_vp, ctypes.c_size_t, c_vp])
_declare("bpf_btf_get_fd_by_id", c_int, [c_uint])  # resize recreates a map with its BTF
# opts is a struct bpf_link_create_opts; NULL (all defaults, bpf_cookie 0) is all we pass.
_declare("bpf_link_create", c_int, [c_int, c_int, c_uint, c_vp])
_declare("bpf_link_detach", c_int, [c_int])
_declare("bpf_link_get_fd_by_id", c_int, [c_uint])
# The attach calls before BPF links (cgroups, sockmaps): attachable_fd is the cgroup or the map.
_declare("bpf_prog_attach", c_int, [c_int, c_int, c_uint, c_uint])
_declare("bpf_prog_detach2", c_int, [c_int, c_int, c_uint])
# The kernel's own BTF (struct btf *), to find the function a tracing or LSM program attaches to.
_declare("btf__load_vmlinux_btf", c_vp, [])
_declare("btf__find_by_name_kind", ctypes.c_int32, [c_vp, c_cp, c_uint])
_declare("btf__free", None, [c_vp])

# --- objects: clang-built ELF files through libbpf (used by ebpfmaps.programs.objects) --------
# struct bpf_object / bpf_map / bpf_program are opaque pointers. Constructors return NULL and set
# errno on failure (libbpf 1.0 semantics, the default from 1.0 on).
_declare("bpf_object__open_file", c_vp, [c_cp, P(structs.BpfObjectOpenOpts)])
_declare("bpf_object__load", c_int, [c_vp])
_declare("bpf_object__close", None, [c_vp])
_declare("bpf_object__name", c_cp, [c_vp])
_declare("bpf_object__next_map", c_vp, [c_vp, c_vp])
_declare("bpf_object__next_program", c_vp, [c_vp, c_vp])
_declare("bpf_object__find_map_by_name", c_vp, [c_vp, c_cp])
_declare("bpf_object__find_program_by_name", c_vp, [c_vp, c_cp])
_declare("bpf_map__name", c_cp, [c_vp])
_declare("bpf_map__fd", c_int, [c_vp])
_declare("bpf_map__type", c_uint, [c_vp])
_declare("bpf_map__key_size", c_uint, [c_vp])
_declare("bpf_map__value_size", c_uint, [c_vp])
_declare("bpf_map__max_entries", c_uint, [c_vp])
_declare("bpf_map__map_flags", c_uint, [c_vp])
_declare("bpf_map__is_internal", ctypes.c_bool, [c_vp])
_declare("bpf_map__reuse_fd", c_int, [c_vp, c_int])
_declare("bpf_map__set_pin_path", c_int, [c_vp, c_cp])
_declare("bpf_map__pin_path", c_cp, [c_vp])
_declare("bpf_map__is_pinned", ctypes.c_bool, [c_vp])
_declare("bpf_map__set_max_entries", c_int, [c_vp, c_uint])
_declare("bpf_program__name", c_cp, [c_vp])
_declare("bpf_program__section_name", c_cp, [c_vp])
_declare("bpf_program__fd", c_int, [c_vp])
_declare("bpf_program__type", c_uint, [c_vp])
_declare("bpf_program__expected_attach_type", c_uint, [c_vp])
_declare("bpf_program__set_autoload", c_int, [c_vp, ctypes.c_bool])

# --- BTF as C text (used by ebpfmaps.btf.cdump): libbpf's own C dumper, as bpftool uses it ----
_declare("btf__new", c_vp, [c_vp, c_uint])
_declare("btf__free", None, [c_vp])
_declare("btf__type_cnt", c_uint, [c_vp])
_declare("btf_dump__new", c_vp, [c_vp, c_vp, c_vp, c_vp])
_declare("btf_dump__dump_type", c_int, [c_vp, c_uint])
_declare("btf_dump__free", None, [c_vp])

def version() -> tuple[int, int]:
    """The loaded libbpf's (major, minor) version."""
    return int(lib.libbpf_major_version()), int(lib.libbpf_minor_version())


def raise_errno(err: int, op: str, detail: str = "") -> NoReturn:
    raise errors.from_errno(err, op, detail)


def check(ret: int, op: str, detail: str = "") -> int:
    """Return ``ret`` unless it is a negative errno, which becomes the library's exception."""
    if ret < 0:
        raise errors.from_errno(-ret, op, detail)
    return ret


def last_errno() -> int:
    """errno as set by the last libbpf call on this thread (for pointer-returning functions)."""
    return ctypes.get_errno()
