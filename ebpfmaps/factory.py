"""Creating maps by type and opening existing ones (pinned, by id), each as the right class."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator

from ebpfmaps import extension, pinning
from ebpfmaps._lazy import lazy_module
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps.errors import IncompatibleMap, InvalidArgument, KeyNotFound, MapError, out_of_descriptors
from ebpfmaps.fdinfo import read_fdinfo
from ebpfmaps.map import Map, map_info_from_fd
from ebpfmaps.map import class_for as _class_for
from ebpfmaps.maptypes import BPF_F_RDONLY, EXTENSIBLE_MIN, MapType, parse_map_type
from ebpfmaps.spec import MAP_INFO_FIELDS, MapInfo, MapSpec

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any

    from ebpfmaps.btf import maps as btf_maps
    from ebpfmaps.btf.maps import TypeRef
else:
    btf_maps = lazy_module("ebpfmaps.btf.maps")  # only maps opened typed by their BTF need it


def class_for(type_id: int) -> type[Map]:
    """The class ebpfmaps uses for a kernel map type (the generic :class:`Map` if none is specific)."""
    return _class_for(type_id)


def create(map_type: MapType | str | int, key_size: int | None = None, value_size: int | None = None,
           max_entries: int | None = None, **kwargs: Any) -> Map:
    """Create a map of ``map_type`` (a :class:`MapType`, a keyword such as ``"lru-percpu-hash"``, or an int id).

    Ids from 4096 up are extensible maps, created by the registered extension.
    Other keyword arguments are those of the map classes (``key_type``,
    ``value_type``, ``flags``, ``name``, ``map_extra``, ``numa_node``, ``inner_map``...).
    """
    tid = parse_map_type(map_type)
    if key_size is not None:
        kwargs["key_size"] = key_size
    if value_size is not None:
        kwargs["value_size"] = value_size
    if max_entries is not None:
        kwargs["max_entries"] = max_entries
    if tid >= EXTENSIBLE_MIN:
        return extension.create_extensible(tid, kwargs)
    cls = class_for(tid)
    if cls is Map:
        kwargs["map_type"] = tid
    unknown = sorted(set(kwargs) - _keywords_of(cls))
    if unknown:
        raise InvalidArgument(f"create: {cls.__name__} ({MapType(tid).keyword if tid in _KNOWN_TYPES else tid}) "
                              f"takes no {', '.join(unknown)} argument{'s' if len(unknown) > 1 else ''}",
                              op="create")
    return cls(**kwargs)


_KNOWN_TYPES = frozenset(int(t) for t in MapType)
_KEYWORDS: dict[type[Map], frozenset[str]] = {}  # cached per class


def _keywords_of(cls: type[Map]) -> frozenset[str]:
    """The keyword arguments ``cls(...)`` takes: those of each ``__init__`` up the MRO that passes
    ``**kwargs`` on, down to the first that takes no more (Map's)."""
    cached = _KEYWORDS.get(cls)
    if cached is not None:
        return cached
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        # Read from the code object, as inspect.signature does for a plain function (inspect itself would
        # import ast, dis and tokenize on a one-shot command's path).
        code = init.__code__
        names.update(code.co_varnames[code.co_posonlyargcount:code.co_argcount + code.co_kwonlyargcount])
        if not code.co_flags & _CO_VARKEYWORDS:
            break
    names.discard("self")
    out = _KEYWORDS[cls] = frozenset(names)
    return out


_CO_VARKEYWORDS = 0x08  # inspect.CO_VARKEYWORDS: the function takes **kwargs


def _is_map_fd(fd: int) -> bool:
    try:
        return "map_type" in read_fdinfo(fd)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            # Reading fdinfo takes a descriptor too: running out says nothing about what the fd is.
            raise out_of_descriptors(exc.errno, "open", f"reading /proc/self/fdinfo/{fd}", call="open") from None
        return False


def _adopt(fd: int, *, spec: MapSpec | None, readonly: bool, key_type: Any, value_type: Any, where: str,
           pin_path: str | None = None, writeonly: bool = False, typed: bool = True) -> Map:
    try:
        if not _is_map_fd(fd):
            raise InvalidArgument(f"{where} is not a BPF map", op="open")
        info = map_info_from_fd(fd)
        # An extension that claims the map (an extensible map on a kernel base map) says how it presents it;
        # ``spec`` is compared with that view and the codecs are the extension's business.
        view = extension.describe(info)
        if spec is not None:
            diffs = spec.differences(view if view is not None else info)
            if diffs:
                raise IncompatibleMap(f"{where} differs from the expected spec: " + "; ".join(diffs), diffs, op="open")
    except BaseException:
        os.close(fd)
        raise
    cls = class_for(info.type)
    if view is not None:
        m = cls.adopt_fd(fd, info, writable=not readonly and not info.flags & BPF_F_RDONLY,
                         readable=not writeonly, pin_path=pin_path)
        return extension.adopt(m, key_type=key_type, value_type=value_type, claimed=True)
    if typed and (key_type is None or value_type is None) and info.btf_id:
        # Only a map with BTF, opened without both types, is typed by its BTF (which loads on first use).
        key_type, value_type = btf_maps.typed_codecs(info, key_type, value_type)
    m = cls.adopt_fd(fd, info, key_type=key_type, value_type=value_type,
                     writable=not readonly and not info.flags & BPF_F_RDONLY, readable=not writeonly,
                     pin_path=pin_path)
    return extension.adopt(m) if extension.may_claim(info) else m


def open_pinned(path: str | os.PathLike[str], spec: MapSpec | None = None, readonly: bool = False, *,
                key_type: Any = None, value_type: Any = None, writeonly: bool = False, typed: bool = True) -> Map:
    """Open the map pinned at ``path`` as the class of its type.

    A map with BTF for its key and value gets codecs from it (records, enums, bytes: see
    :mod:`ebpfmaps.btf`) unless ``key_type``/``value_type`` are given or ``typed=False``.

    With ``spec``, any difference in type, sizes, max_entries, flags or map_extra
    raises :class:`IncompatibleMap` listing every one. ``readonly=True`` opens the
    fd with BPF_F_RDONLY: lookups work, writes raise :class:`PermissionDenied`;
    ``writeonly=True`` opens it with BPF_F_WRONLY: updates and deletes work, reads
    raise :class:`PermissionDenied`.
    """
    if readonly and writeonly:
        raise InvalidArgument("open_pinned: readonly and writeonly exclude each other", op="open_pinned")
    fd = pinning.obj_get(path, readonly=readonly, writeonly=writeonly)
    return _adopt(fd, spec=spec, readonly=readonly, key_type=key_type, value_type=value_type, where=os.fspath(path),
                  pin_path=os.fspath(path), writeonly=writeonly, typed=typed)


def open_by_id(map_id: int, *, readonly: bool = False, key_type: Any = None, value_type: Any = None,
               typed: bool = True) -> Map:
    """Open a live map by its kernel id (needs CAP_SYS_ADMIN); codecs from its BTF as :func:`open_pinned`."""
    fd = _maps.map_get_fd_by_id(map_id, BPF_F_RDONLY if readonly else 0).detach()
    return _adopt(fd, spec=None, readonly=readonly, key_type=key_type, value_type=value_type, where=f"map id {map_id}",
                  typed=typed)


def map_exists(map_id: int) -> bool:
    """Whether kernel map ``map_id`` exists now, without opening it (so without taking a reference)."""
    return map_id > 0 and _maps.map_get_next_id(map_id - 1) == map_id


def map_ids() -> list[int]:
    """Ids of every map in the system, in order."""
    ids: list[int] = []
    nxt = _maps.map_get_next_id(0)
    while nxt is not None:
        ids.append(nxt)
        nxt = _maps.map_get_next_id(nxt)
    return ids


class ListedMap(MapInfo):
    """A map found by :func:`list_maps`: the kernel's info, the key and value types its BTF describes, and
    :meth:`open`, which opens it typed by that BTF."""

    @property
    def key_type(self) -> TypeRef | None:
        """The BTF key type (``str()`` is its C name), or None when the map has none."""
        return btf_maps.type_refs(self)[0]

    @property
    def value_type(self) -> TypeRef | None:
        """The BTF value type, or None when the map has none."""
        return btf_maps.type_refs(self)[1]

    def open(self, *, readonly: bool = False, typed: bool = True) -> Map:
        """The map, by id (:func:`open_by_id`): values decoded with its BTF types unless ``typed=False``.
        Raises :class:`~ebpfmaps.errors.KeyNotFound` when the map is gone since it was listed."""
        return open_by_id(self.id, readonly=readonly, typed=typed)


def iter_maps() -> Iterator[ListedMap]:
    """Info on every map in the system, one at a time (maps that vanish while listing are left out)."""
    for map_id in map_ids():
        try:
            h = _maps.map_get_fd_by_id(map_id)
        except KeyNotFound:
            continue
        try:
            with h.pinned("map_info") as fd:
                info = map_info_from_fd(fd)
        except MapError:
            continue
        finally:
            h.close()
        yield ListedMap(*(getattr(info, name) for name in MAP_INFO_FIELDS))


def list_maps() -> list[ListedMap]:
    """Info on every map in the system (maps that vanish while listing are left out)."""
    return list(iter_maps())


def iter_pins(roots: Iterable[str] | None = None) -> Iterator[tuple[str, int]]:
    """``(pin path, map id)`` for every map pinned under ``roots`` (default: every mounted bpffs), walked
    in order. Pins of programs and links, and pins that vanish meanwhile, are skipped."""
    for root in (pinning.bpffs_mounts() if roots is None else roots):
        for directory, subdirs, files in os.walk(root):
            subdirs.sort()
            for name in sorted(files):
                path = os.path.join(directory, name)
                try:
                    handle = pinning.obj_get_handle(path, readonly=True)
                except (MapError, OSError):
                    continue
                try:
                    with handle.pinned("map_info") as fd:
                        map_id = _maps.map_info(fd).id
                except MapError:
                    continue  # a program or link: not a map
                finally:
                    handle.close()
                yield path, map_id


def pins_by_map_id(roots: Iterable[str] | None = None) -> dict[int, list[str]]:
    """Every map's pin paths under ``roots`` (default: every mounted bpffs), keyed by map id."""
    found: dict[int, list[str]] = {}
    for path, map_id in iter_pins(roots):
        found.setdefault(map_id, []).append(path)
    return found
