"""Typed calls on libbpf's ``struct bpf_object`` (clang-built ELF objects) and its maps and programs.

A ``struct bpf_object *`` is owned by :class:`ObjectHandle`, which follows :class:`FD`'s rules:
every call enters it, :meth:`ObjectHandle.close` invalidates it at once (later calls raise
:class:`~ebpfmaps.errors.MapClosed`) and ``bpf_object__close`` runs only when the last call in
flight has left. The ``struct bpf_map *``/``struct bpf_program *`` pointers inside an object live
and die with it, so every accessor takes the object's handle together with the pointer and uses
the pointer only while the object is entered. Descriptors taken from the object are duplicates
in new :class:`FD` handles: libbpf closes its own with the object.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno as E
import fcntl
import os
import threading
from collections.abc import Iterator
from typing import Any

from ebpfmaps import errors
from ebpfmaps._libbpf import lib, new_opts, printlog, structs
from ebpfmaps._libbpf.fd import FD
from ebpfmaps._libbpf.progs import fail

__all__ = [
    "ObjectHandle",
    "map_definition",
    "map_dup_fd",
    "map_pin_path",
    "map_ptrs",
    "map_reuse_fd",
    "map_set_max_entries",
    "map_set_pin_path",
    "object_load",
    "object_open",
    "program_dup_fd",
    "program_expected_attach_type",
    "program_ptr",
    "program_ptrs",
    "program_section",
    "program_set_autoload",
    "program_type",
]

_close_lock = threading.Lock()


def _text(raw: bytes | None) -> str:
    return raw.decode(errors="replace") if raw is not None else ""


class ObjectHandle:
    """The one owner of a ``struct bpf_object *`` (the pointer is 0 once closed)."""

    __slots__ = ("_pending", "ptr", "users")

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr
        self.users: list[None] = []
        self._pending: list[int] = []

    def enter(self, op: str = "object") -> int:
        """Count one call in flight and return the pointer; :class:`MapClosed` once closed."""
        self.users.append(None)
        ptr = self.ptr
        if not ptr:
            self.leave()
            raise errors.MapClosed(f"{op}: the BPF object is closed", op=op)
        return ptr

    def leave(self) -> None:
        self.users.pop()
        if not self.ptr and not self.users:
            self._release()

    @contextlib.contextmanager
    def pinned(self, op: str = "object") -> Iterator[int]:
        ptr = self.enter(op)
        try:
            yield ptr
        finally:
            self.leave()

    @property
    def closed(self) -> bool:
        return not self.ptr

    def close(self) -> None:
        """Invalidate now; libbpf's object is freed when no call is in flight (idempotent)."""
        with _close_lock:
            ptr = self.ptr
            if not ptr:
                return
            self._pending.append(ptr)
            self.ptr = 0
        if not self.users:
            self._release()

    def _release(self) -> None:
        try:
            ptr = self._pending.pop()
        except IndexError:
            return
        lib.bpf_object__close(ptr)

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("a libbpf object cannot be pickled")

    def __del__(self) -> None:
        if self.ptr:
            self.close()


def _dup(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 0)


# ---------------------------------------------------------------------- the object
def object_open(path: str, *, pin_root: str | None = None, object_name: str | None = None) -> ObjectHandle:
    """``bpf_object__open_file``: parse the ELF (nothing reaches the kernel yet)."""
    opts = new_opts(structs.BpfObjectOpenOpts)
    raw_root = pin_root.encode() if pin_root is not None else None
    raw_name = object_name.encode() if object_name is not None else None
    if raw_root is not None:
        opts.pin_root_path = raw_root
    if raw_name is not None:
        opts.object_name = raw_name
    with printlog.capture() as messages:
        ptr = lib.bpf_object__open_file(path.encode(), ctypes.byref(opts))
        err = ctypes.get_errno() if not ptr else 0
    del raw_root, raw_name  # libbpf copied them during the call
    if not ptr:
        err = err or E.EINVAL
        detail = "\n".join(messages[-20:])
        raise errors.ProgramLoadError(f"object_open: libbpf cannot open {path}: {os.strerror(err)}"
                                      + (f"\n{detail}" if detail else ""), errno=err, op="object_open", log=detail,
                                      call="bpf_object__open_file")
    return ObjectHandle(int(ptr))


def object_load(h: ObjectHandle) -> tuple[int, list[str]]:
    """``bpf_object__load``: 0 or the errno, and what libbpf printed meanwhile (the caller reports it)."""
    with h.pinned("object_load") as ptr, printlog.capture() as messages:
        ret = int(lib.bpf_object__load(ptr))
    return (-ret if ret < 0 else 0), messages


# ---------------------------------------------------------------------- maps
def map_ptrs(h: ObjectHandle) -> dict[str, int]:
    """The object's maps by the names the ELF declares."""
    out: dict[str, int] = {}
    with h.pinned("object") as obj:
        cur = lib.bpf_object__next_map(obj, None)
        while cur:
            out[_text(lib.bpf_map__name(cur))] = int(cur)
            cur = lib.bpf_object__next_map(obj, cur)
    return out


def map_set_max_entries(h: ObjectHandle, ptr: int, entries: int, name: str) -> None:
    with h.pinned("set_max_entries"):
        ret = int(lib.bpf_map__set_max_entries(ptr, entries))
    if ret < 0:
        raise fail(-ret, "set_max_entries", name, "bpf_map__set_max_entries")


def map_reuse_fd(h: ObjectHandle, ptr: int, m: FD, name: str) -> None:
    """``bpf_map__reuse_fd``: libbpf takes its own duplicate of the map's descriptor."""
    with h.pinned("reuse_fd"), m.pinned("reuse_fd") as num:
        ret = int(lib.bpf_map__reuse_fd(ptr, num))
    if ret < 0:
        raise fail(-ret, "reuse_fd", name, "bpf_map__reuse_fd")


def map_set_pin_path(h: ObjectHandle, ptr: int, path: str, name: str) -> None:
    with h.pinned("set_pin_path"):
        ret = int(lib.bpf_map__set_pin_path(ptr, path.encode()))
    if ret < 0:
        raise fail(-ret, "set_pin_path", name, "bpf_map__set_pin_path")


def map_definition(h: ObjectHandle, ptr: int) -> tuple[int, int, int]:
    """(type, key_size, value_size) as the ELF declares the map."""
    with h.pinned("object_map"):
        return int(lib.bpf_map__type(ptr)), int(lib.bpf_map__key_size(ptr)), int(lib.bpf_map__value_size(ptr))


def map_dup_fd(h: ObjectHandle, ptr: int, name: str) -> int:
    """A duplicate of the loaded map's descriptor (the caller owns it)."""
    with h.pinned("object_map"):
        fd = int(lib.bpf_map__fd(ptr))
        if fd < 0:
            raise fail(-fd, "object_map", f"{name} (not created: is it an unused internal map?)", "bpf_map__fd")
        return _dup(fd)


def map_pin_path(h: ObjectHandle, ptr: int) -> str | None:
    """Where libbpf pinned the map, or None when it is not pinned."""
    with h.pinned("object_map"):
        path = _text(lib.bpf_map__pin_path(ptr))
        return path if path and lib.bpf_map__is_pinned(ptr) else None


# ---------------------------------------------------------------------- programs
def program_ptrs(h: ObjectHandle) -> dict[str, int]:
    """The object's programs by function name, in ELF order."""
    out: dict[str, int] = {}
    with h.pinned("object") as obj:
        cur = lib.bpf_object__next_program(obj, None)
        while cur:
            out[_text(lib.bpf_program__name(cur))] = int(cur)
            cur = lib.bpf_object__next_program(obj, cur)
    return out


def program_ptr(h: ObjectHandle, name: str) -> int | None:
    with h.pinned("object") as obj:
        ptr = lib.bpf_object__find_program_by_name(obj, name.encode())
    return int(ptr) if ptr else None


def program_set_autoload(h: ObjectHandle, ptr: int, flag: bool, name: str) -> None:
    with h.pinned("set_autoload"):
        ret = int(lib.bpf_program__set_autoload(ptr, flag))
    if ret < 0:
        raise fail(-ret, "set_autoload", name, "bpf_program__set_autoload")


def program_type(h: ObjectHandle, ptr: int) -> int:
    with h.pinned("object_program"):
        return int(lib.bpf_program__type(ptr))


def program_section(h: ObjectHandle, ptr: int) -> str:
    with h.pinned("object_program"):
        return _text(lib.bpf_program__section_name(ptr))


def program_dup_fd(h: ObjectHandle, ptr: int, *, probe_only: bool = False) -> int | None:
    """A duplicate of the loaded program's descriptor (the caller owns it), or None if it was not loaded.

    ``probe_only`` answers only whether it was loaded (0 for yes, no descriptor is made).
    """
    with h.pinned("object_program"):
        fd = int(lib.bpf_program__fd(ptr))
        if fd < 0:
            return None
        return 0 if probe_only else _dup(fd)


def program_expected_attach_type(h: ObjectHandle, ptr: int) -> int:
    with h.pinned("object_program"):
        return int(lib.bpf_program__expected_attach_type(ptr))
