"""Clang-built BPF ELF objects through libbpf, with maps shared with ebpfmaps.

>>> counts = ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=64)
>>> with BpfObject.open("counter.bpf.o", reuse={"counts": counts}) as obj:   # doctest: +SKIP
...     obj.load()
...     prog = obj.programs["count"]           # an ebpfmaps Program
...     obj.maps["counts"] is counts           # the very Map handed over
...     obj.maps["other"]                      # any other map, as the ebpfmaps class of its type

Three ways for an object's map to be a map ebpfmaps knows:

- ``reuse={"name": map}`` hands a live :class:`~ebpfmaps.Map` to libbpf (``bpf_map__reuse_fd``) before
  loading; its type and sizes are checked against the ELF definition first, because libbpf 1.1
  silently adopts whatever the fd has.
- ``pin_root=DIR`` (``bpf_object_open_opts.pin_root_path``): maps declared with
  ``__uint(pinning, LIBBPF_PIN_BY_NAME)`` reuse ``DIR/NAME`` when it exists (libbpf checks it
  matches) and are pinned there otherwise, so ``ebpfmaps.open_pinned(DIR/NAME)`` finds them.
  Without ``pin_root`` libbpf uses ``/sys/fs/bpf`` for such maps.
- ``pin_paths={"name": path}`` does the same for one map at an explicit path (``bpf_map__set_pin_path``).

Maps and programs taken from the object hold their own fds (duplicates), so they stay usable
after :meth:`BpfObject.close`, which releases only libbpf's references.
"""

from __future__ import annotations

import ctypes
import errno as E
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ebpfmaps import errors, pinning
from ebpfmaps._libbpf import lib, new_opts, printlog, structs
from ebpfmaps.errors import IncompatibleMap, InvalidArgument, MapError, ProgramLoadError
from ebpfmaps.map import Map
from ebpfmaps.maptypes import type_name
from ebpfmaps.programs.program import Program, _dup, _tail
from ebpfmaps.programs.types import ProgramType

__all__ = ["BpfObject"]


def _text(ptr: bytes | None) -> str:
    return ptr.decode(errors="replace") if ptr is not None else ""


class _Names(Mapping[str, Any]):
    """A read-only name -> object view that builds objects lazily and says what names exist."""

    def __init__(self, kind: str, names: list[str], get: Any) -> None:
        self._kind = kind
        self._names = names
        self._get = get

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(f"no {self._kind} named {name!r}; the object has: {', '.join(self._names) or 'none'}")
        return self._get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


class BpfObject:
    """One BPF ELF object opened (and, after :meth:`load`, loaded) by libbpf."""

    def __init__(self, ptr: int, path: str, reuse: dict[str, Map]) -> None:
        # Use open(); this wraps a ``struct bpf_object *`` we own.
        self._ptr: int | None = ptr
        self.path = path
        self.loaded = False
        self._reuse = reuse
        self._maps: dict[str, Map] = {}
        self._programs: dict[str, Program] = {}
        self.load_log: list[str] = []
        # Names as the ELF declares them, taken at open: libbpf 1.1's bpf_map__reuse_fd renames its map
        # to the reused kernel map's own name (often ""), so name lookups through libbpf would then fail.
        self._map_ptrs: dict[str, int] = {}
        cur = lib.bpf_object__next_map(ptr, None)
        while cur:
            self._map_ptrs[_text(lib.bpf_map__name(cur))] = int(cur)
            cur = lib.bpf_object__next_map(ptr, cur)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        pin_root: str | os.PathLike[str] | None = None,
        reuse: Mapping[str, Map] | None = None,
        pin_paths: Mapping[str, str | os.PathLike[str]] | None = None,
        max_entries: Mapping[str, int] | None = None,
        object_name: str | None = None,
        autoload: Mapping[str, bool] | None = None,
    ) -> BpfObject:
        """Open ``path`` (nothing is loaded into the kernel yet; see :meth:`load`)."""
        fspath = os.fspath(path)
        if not os.path.isfile(fspath):
            raise InvalidArgument(f"no BPF object file at {fspath!r}", errno=E.ENOENT, op="object_open")
        keep: list[Any] = []
        opts = new_opts(structs.BpfObjectOpenOpts)
        if pin_root is not None:
            root = os.fspath(pin_root)
            pinning.require_bpffs(os.path.join(root, "x"), "object_open")  # checks the directory of a pin in it
            raw_root = root.encode()
            keep.append(raw_root)
            opts.pin_root_path = raw_root
        if object_name is not None:
            opts.object_name = object_name.encode()
        with printlog.capture() as messages:
            ptr = lib.bpf_object__open_file(fspath.encode(), ctypes.byref(opts))
        if not ptr:
            err = ctypes.get_errno() or E.EINVAL
            detail = "\n".join(messages[-20:])
            raise ProgramLoadError(f"object_open: libbpf cannot open {fspath}: {os.strerror(err)}"
                                   + (f"\n{detail}" if detail else ""), errno=err, op="object_open", log=detail)
        obj = cls(ptr, fspath, {})
        try:
            obj._configure(reuse or {}, pin_paths or {}, max_entries or {}, autoload or {})
        except BaseException:
            obj.close()
            raise
        return obj

    def _map_ptr(self, name: str) -> int:
        self._handle  # noqa: B018 - raises once closed
        if name not in self._map_ptrs:
            raise KeyError(f"{self.path} has no map named {name!r}; it has: {', '.join(self.map_names()) or 'none'}")
        return self._map_ptrs[name]

    def _prog_ptr(self, name: str) -> int:
        ptr = lib.bpf_object__find_program_by_name(self._handle, name.encode())
        if not ptr:
            raise KeyError(f"{self.path} has no program named {name!r}; it has: "
                           f"{', '.join(self.program_names()) or 'none'}")
        return int(ptr)

    def _configure(self, reuse: Mapping[str, Map], pin_paths: Mapping[str, str | os.PathLike[str]],
                   max_entries: Mapping[str, int], autoload: Mapping[str, bool]) -> None:
        for name, entries in max_entries.items():
            if isinstance(entries, bool) or not isinstance(entries, int) or entries <= 0:
                raise InvalidArgument(f"max_entries for {name!r} must be a positive int", op="object_open")
            _check(lib.bpf_map__set_max_entries(self._map_ptr(name), entries), "set_max_entries", name)
        for name, m in reuse.items():
            if not isinstance(m, Map):
                raise InvalidArgument(f"reuse[{name!r}] must be an ebpfmaps Map, not {m!r}", op="object_open")
            ptr = self._map_ptr(name)
            self._check_compatible(name, ptr, m)
            _check(lib.bpf_map__reuse_fd(ptr, m.fd), "reuse_fd", name)
            self._reuse[name] = m
        for name, path in pin_paths.items():
            ptr = self._map_ptr(name)
            pinning.require_bpffs(path, "object_open")
            _check(lib.bpf_map__set_pin_path(ptr, os.fspath(path).encode()), "set_pin_path", name)
        for name, flag in autoload.items():
            _check(lib.bpf_program__set_autoload(self._prog_ptr(name), bool(flag)), "set_autoload", name)

    def _check_compatible(self, name: str, ptr: int, m: Map) -> None:
        # libbpf 1.1's bpf_map__reuse_fd takes the fd's definition over the ELF's without comparing;
        # a mismatch would only surface as a verifier refusal (or worse, a program reading past a value).
        info = m.info()
        want = {
            "type": int(lib.bpf_map__type(ptr)),
            "key_size": int(lib.bpf_map__key_size(ptr)),
            "value_size": int(lib.bpf_map__value_size(ptr)),
        }
        have = {"type": info.type, "key_size": info.key_size, "value_size": info.value_size}
        diffs = []
        for field, value in want.items():
            if have[field] != value:
                shown = (type_name(have[field]), type_name(value)) if field == "type" else (have[field], value)
                diffs.append(f"{field}: map has {shown[0]}, the object declares {shown[1]}")
        if diffs:
            raise IncompatibleMap(f"cannot reuse {m!r} as {name!r} in {self.path}: " + "; ".join(diffs), diffs,
                                  op="object_open")

    # ------------------------------------------------------------------ loading
    def load(self) -> BpfObject:
        """Create the object's maps (or reuse/pin them), load its programs. Raises
        :class:`~ebpfmaps.errors.ProgramLoadError` with libbpf's report (verifier log included)."""
        if self.loaded:
            raise MapError("the object is already loaded", op="object_load")
        with printlog.capture() as messages:
            ret = lib.bpf_object__load(self._handle)
        self.load_log = messages
        if ret < 0:
            err = -ret
            log = "\n".join(messages)
            msg = f"object_load: libbpf could not load {self.path}: {os.strerror(err)} ({E.errorcode.get(err, err)})"
            if log:
                msg += "\n--- libbpf ---\n" + _tail(log, 60)
            if err == E.EPERM:
                raise errors.PermissionDenied(msg, errno=err, op="object_load")
            raise ProgramLoadError(msg, errno=err, op="object_load", log=log)
        self.loaded = True
        return self

    # ------------------------------------------------------------------ maps and programs
    @property
    def _handle(self) -> int:
        if self._ptr is None:
            raise errors.MapClosed("the BPF object is closed", op="object")
        return self._ptr

    def map_names(self) -> list[str]:
        """Names of the object's maps as its source declares them (internal ones such as ``.bss`` included)."""
        self._handle  # noqa: B018 - raises once closed
        return list(self._map_ptrs)

    def program_names(self) -> list[str]:
        names = []
        ptr = lib.bpf_object__next_program(self._handle, None)
        while ptr:
            names.append(_text(lib.bpf_program__name(ptr)))
            ptr = lib.bpf_object__next_program(self._handle, ptr)
        return names

    def _require_loaded(self, what: str) -> None:
        if not self.loaded:
            raise MapError(f"{what} exist in the kernel only after load()", op="object")

    def _get_map(self, name: str) -> Map:
        self._require_loaded("maps")
        if name in self._reuse:
            return self._reuse[name]
        if name not in self._maps:
            self._maps[name] = self.map(name)
        return self._maps[name]

    def map(self, name: str, *, key_type: Any = None, value_type: Any = None) -> Map:
        """A new Map object (its own fd) on the object's map ``name``, with optional codecs."""
        from ebpfmaps.factory import class_for
        from ebpfmaps.map import map_info_from_fd

        self._require_loaded("maps")
        ptr = self._map_ptr(name)
        fd = lib.bpf_map__fd(ptr)
        if fd < 0:
            raise errors.from_errno(-fd, "object_map", f"{name} (not created: is it an unused internal map?)")
        own = _dup(fd)
        try:
            info = map_info_from_fd(own)
        except BaseException:
            os.close(own)
            raise
        m = class_for(info.type)._adopt(own, info, key_type=key_type, value_type=value_type)
        path = _text(lib.bpf_map__pin_path(ptr))
        if path and lib.bpf_map__is_pinned(ptr):
            m._pin_path = path
        return m

    def _get_program(self, name: str) -> Program:
        self._require_loaded("programs")
        if name not in self._programs:
            ptr = self._prog_ptr(name)
            fd = lib.bpf_program__fd(ptr)
            if fd < 0:
                raise MapError(f"program {name!r} was not loaded (autoload off?)", op="object_program")
            prog = Program.from_fd(_dup(fd), name=name, section=_text(lib.bpf_program__section_name(ptr)))
            self._programs[name] = prog
        return self._programs[name]

    @property
    def maps(self) -> Mapping[str, Map]:
        """The object's maps by name, as ebpfmaps Map objects (the handed-over Map itself for ``reuse``)."""
        return _Names("map", self.map_names(), self._get_map)

    @property
    def programs(self) -> Mapping[str, Program]:
        """The object's programs by function name, as :class:`Program` objects."""
        return _Names("program", self.program_names(), self._get_program)

    def program_types(self) -> dict[str, ProgramType | int]:
        out: dict[str, ProgramType | int] = {}
        for name in self.program_names():
            t = int(lib.bpf_program__type(self._prog_ptr(name)))
            try:
                out[name] = ProgramType(t)
            except ValueError:
                out[name] = t
        return out

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Release libbpf's object (idempotent). Maps and Programs already taken from it stay usable."""
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            lib.bpf_object__close(ptr)

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else ("loaded" if self.loaded else "opened")
        return f"<BpfObject {self.path!r} {state}>"


def _check(ret: int, op: str, name: str) -> None:
    if ret < 0:
        raise errors.from_errno(-ret, op, name)
