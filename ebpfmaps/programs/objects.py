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

import errno as E
import os
from collections.abc import Iterator, Mapping
from typing import Any

from ebpfmaps import errors, pinning
from ebpfmaps._libbpf import objects as obj_calls
from ebpfmaps._libbpf.fd import FD
from ebpfmaps._libbpf.objects import ObjectHandle
from ebpfmaps.btf.maps import typed_codecs
from ebpfmaps.errors import IncompatibleMap, InvalidArgument, MapError, ProgramLoadError
from ebpfmaps.factory import class_for
from ebpfmaps.map import Map, map_info_from_fd
from ebpfmaps.maptypes import type_name
from ebpfmaps.programs.autoattach import attach_programs
from ebpfmaps.programs.program import Program, _tail, announce_maps
from ebpfmaps.programs.sections import parse_section
from ebpfmaps.programs.tracing import Link
from ebpfmaps.programs.types import AttachType, ProgramType

__all__ = ["BpfObject"]


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

    def __init__(self, handle: ObjectHandle, path: str, reuse: dict[str, Map]) -> None:
        # Use open(); this takes over the handle of a ``struct bpf_object *``.
        self._obj = handle
        self.path = path
        self.loaded = False
        self._reuse = reuse
        self._maps: dict[str, Map] = {}
        self._programs: dict[str, Program] = {}
        self.load_log: list[str] = []
        # Names as the ELF declares them, taken at open: libbpf 1.1's bpf_map__reuse_fd renames its map
        # to the reused kernel map's own name (often ""), so name lookups through libbpf would then fail.
        self._map_ptrs: dict[str, int] = obj_calls.map_ptrs(handle)

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
        root = None
        if pin_root is not None:
            root = os.fspath(pin_root)
            pinning.require_bpffs(os.path.join(root, "x"), "object_open")  # checks the directory of a pin in it
        try:
            handle = obj_calls.object_open(fspath, pin_root=root, object_name=object_name)
        except ProgramLoadError as exc:
            if "legacy map definitions" in (exc.log or ""):
                exc.args = (exc.args[0] + "\n(a legacy SEC(\"maps\") object: open it with "
                            "ebpfmaps.programs.LegacyObject.open, or ebpfmaps.programs.open_object)",)
                exc.message = exc.args[0]
            raise
        try:
            obj = cls(handle, fspath, {})
        except BaseException:
            handle.close()
            raise
        try:
            obj._configure(reuse or {}, pin_paths or {}, max_entries or {}, autoload or {})
        except BaseException:
            obj.close()
            raise
        return obj

    def _map_ptr(self, name: str) -> int:
        self._check_open()
        if name not in self._map_ptrs:
            raise KeyError(f"{self.path} has no map named {name!r}; it has: {', '.join(self.map_names()) or 'none'}")
        return self._map_ptrs[name]

    def _prog_ptr(self, name: str) -> int:
        ptr = obj_calls.program_ptr(self._obj, name)
        if ptr is None:
            raise KeyError(f"{self.path} has no program named {name!r}; it has: "
                           f"{', '.join(self.program_names()) or 'none'}")
        return ptr

    def _configure(self, reuse: Mapping[str, Map], pin_paths: Mapping[str, str | os.PathLike[str]],
                   max_entries: Mapping[str, int], autoload: Mapping[str, bool]) -> None:
        for name, entries in max_entries.items():
            if isinstance(entries, bool) or not isinstance(entries, int) or entries <= 0:
                raise InvalidArgument(f"max_entries for {name!r} must be a positive int", op="object_open")
            obj_calls.map_set_max_entries(self._obj, self._map_ptr(name), entries, name)
        for name, m in reuse.items():
            if not isinstance(m, Map):
                raise InvalidArgument(f"reuse[{name!r}] must be an ebpfmaps Map, not {m!r}", op="object_open")
            ptr = self._map_ptr(name)
            self._check_compatible(name, ptr, m)
            obj_calls.map_reuse_fd(self._obj, ptr, m.handle, name)
            self._reuse[name] = m
        for name, path in pin_paths.items():
            ptr = self._map_ptr(name)
            pinning.require_bpffs(path, "object_open")
            obj_calls.map_set_pin_path(self._obj, ptr, os.fspath(path), name)
        for name, flag in autoload.items():
            obj_calls.program_set_autoload(self._obj, self._prog_ptr(name), bool(flag), name)

    def _check_compatible(self, name: str, ptr: int, m: Map) -> None:
        # libbpf 1.1's bpf_map__reuse_fd takes the fd's definition over the ELF's without comparing;
        # a mismatch would only surface as a verifier refusal (or worse, a program reading past a value).
        info = m.info()
        mtype, key_size, value_size = obj_calls.map_definition(self._obj, ptr)
        want = {"type": mtype, "key_size": key_size, "value_size": value_size}
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
        err, messages = obj_calls.object_load(self._obj)
        self.load_log = messages
        if err:
            log = "\n".join(messages)
            msg = f"object_load: libbpf could not load {self.path}: {os.strerror(err)} ({E.errorcode.get(err, err)})"
            if log:
                msg += "\n--- libbpf ---\n" + _tail(log, 60)
            if err == E.EPERM:
                raise errors.PermissionDenied(msg, errno=err, op="object_load", call="bpf_object__load")
            raise ProgramLoadError(msg, errno=err, op="object_load", log=log, call="bpf_object__load")
        self.loaded = True
        self._announce_maps()
        return self

    def _announce_maps(self) -> None:
        """Each loaded program's maps to the extensions; a refusal closes the object (its programs unload)."""
        try:
            for ptr in obj_calls.program_ptrs(self._obj).values():
                fd = obj_calls.program_dup_fd(self._obj, ptr)
                if fd is not None:
                    h = FD(fd, "program")
                    announce_maps(h, obj_calls.program_type(self._obj, ptr))
                    h.close()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ maps and programs
    def _check_open(self) -> None:
        if self._obj.closed:
            raise errors.MapClosed("the BPF object is closed", op="object")

    @property
    def closed(self) -> bool:
        return self._obj.closed

    def map_names(self) -> list[str]:
        """Names of the object's maps as its source declares them (internal ones such as ``.bss`` included)."""
        self._check_open()
        return list(self._map_ptrs)

    def program_names(self) -> list[str]:
        return list(obj_calls.program_ptrs(self._obj))

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

    def map(self, name: str, *, key_type: Any = None, value_type: Any = None, typed: bool = True) -> Map:
        """A new Map object (its own fd) on the object's map ``name``, with optional codecs.

        Without codecs, a map whose BTF describes its key and value gets codecs from it (``typed=False``: bytes).
        """
        self._require_loaded("maps")
        ptr = self._map_ptr(name)
        path = obj_calls.map_pin_path(self._obj, ptr)
        own = obj_calls.map_dup_fd(self._obj, ptr, name)
        try:
            info = map_info_from_fd(own)
        except BaseException:
            os.close(own)
            raise
        cls = class_for(info.type)
        if typed:
            try:
                key_type, value_type = typed_codecs(info, key_type, value_type)
            except BaseException:
                os.close(own)
                raise
        # adopt_fd owns ``own`` from here on, closing it if it fails.
        return cls.adopt_fd(own, info, key_type=key_type, value_type=value_type,
                                             pin_path=path or None)

    def _get_program(self, name: str) -> Program:
        self._require_loaded("programs")
        if name not in self._programs:
            ptr = self._prog_ptr(name)
            fd = obj_calls.program_dup_fd(self._obj, ptr)
            if fd is None:
                raise MapError(f"program {name!r} was not loaded (autoload off?)", op="object_program")
            handle = FD(fd, "program")
            try:
                section = obj_calls.program_section(self._obj, ptr)
            except BaseException:
                handle.close()
                raise
            prog = Program.from_fd(handle, name=name, section=section)
            eat = obj_calls.program_expected_attach_type(self._obj, ptr)
            try:
                prog.expected_attach_type = AttachType(eat)
            except ValueError:
                prog.expected_attach_type = eat
            parsed = parse_section(section)
            if parsed is not None and parsed.kind in ("fentry", "lsm"):
                prog.attach_target = parsed.name
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
        for name, ptr in obj_calls.program_ptrs(self._obj).items():
            t = obj_calls.program_type(self._obj, ptr)
            try:
                out[name] = ProgramType(t)
            except ValueError:
                out[name] = t
        return out

    # ------------------------------------------------------------------ attaching
    def attach(self, name: str, target: Any = None) -> Link:
        """Attach program ``name`` by its section (``kprobe/do_unlinkat``, ``tc``, ``cgroup_skb/ingress``...);
        sections that do not say where take ``target`` (an interface, cgroup path, socket or sockmap)."""
        return self.programs[name].attach(target)

    def attach_all(self, targets: Mapping[str, Any] | None = None) -> dict[str, Link]:
        """Attach every loaded program whose section says where to (libbpf's auto-attach), and those whose
        ``targets[name]`` says where; the links by program name. Programs of other sections are left alone.

        If one attachment fails, the ones made before it are detached and the error is raised.
        """
        self._require_loaded("programs")
        loaded = {name: self.programs[name] for name, ptr in obj_calls.program_ptrs(self._obj).items()
                  if obj_calls.program_dup_fd(self._obj, ptr, probe_only=True) is not None}
        return attach_programs(loaded, targets, self.path)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Release libbpf's object (idempotent). Maps and Programs already taken from it stay usable.

        Every later call raises :class:`~ebpfmaps.errors.MapClosed`; libbpf frees the object once calls
        in flight in other threads have finished.
        """
        self._obj.close()

    def __copy__(self) -> BpfObject:
        raise TypeError("a BpfObject cannot be copied (libbpf's object has one owner); open the file again")

    def __deepcopy__(self, memo: dict[int, Any]) -> BpfObject:
        return self.__copy__()

    def __reduce__(self) -> Any:
        raise TypeError("a BpfObject cannot be pickled: pin its maps and programs to share them")

    def __enter__(self) -> BpfObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._obj.closed else ("loaded" if self.loaded else "opened")
        return f"<BpfObject {self.path!r} {state}>"

