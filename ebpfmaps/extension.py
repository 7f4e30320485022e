"""The one extension point of the core: map types with ids of 4096 and up.

The core knows nothing of any extension. An extension (such as the
``ebpfmaps_shim`` package) registers an :class:`Extension` here, explicitly or
through the entry point group ``ebpfmaps.extensions`` that is read the first
time an extensible type id is created or a map that carries BTF is opened.

An extension claims only maps whose BTF value type is named with the prefix ``ebpfmaps_``
(:data:`EXTENSIBLE_VALUE_PREFIX`): an extensible map records what it is in its BTF, so it travels with the
map to every process that opens it. Opening any other map never consults the extensions: the core reads
that one name (one small BTF read, remembered per BTF object), while scanning the entry points and
importing an extension costs several times the whole open.
"""

from __future__ import annotations

import _thread
import os
import sys
import warnings

from ebpfmaps import pinning
from ebpfmaps._lazy import lazy_module
from ebpfmaps.errors import NotSupported

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from importlib.metadata import EntryPoint
    from typing import Any, Protocol

    from ebpfmaps.btf import names as btf_names
    from ebpfmaps.map import Map
    from ebpfmaps.maplike import MapLike
    from ebpfmaps.spec import MapInfo

    class Extension(Protocol):
        """What an extension implements (a protocol for type checkers: an extension need not subclass it)."""

        def create(self, type_id: int, kwargs: dict[str, Any]) -> MapLike | None:
            """Create a map of extensible type ``type_id``; ``None`` if the id is not this extension's.

            The map need not be a :class:`~ebpfmaps.Map`: any object implementing :class:`MapLike` will do.
            """

        def adopt(self, m: Map) -> MapLike | None:
            """Given a map just opened (pinned or by id), return the extension's view of it, or ``None``."""
else:
    btf_names = lazy_module("ebpfmaps.btf.names")  # read only for maps that carry BTF

ENTRY_POINT_GROUP = "ebpfmaps.extensions"
#: How the BTF value type of every extensible map is named: an extension claims no other map.
EXTENSIBLE_VALUE_PREFIX = "ebpfmaps_"


# Optional methods an extension may also define (looked up with getattr, so older extensions keep working):
#   describe(info: MapInfo) -> MapInfo | None
#       How the extension presents a kernel map it claims (its own type id, the user's value size). When an
#       extension claims a map, open_pinned/open_by_id compare ``spec=`` with this view, open the kernel map with
#       raw codecs and call ``adopt_with_codecs(m, key_type, value_type)`` (if defined) instead of ``adopt(m)``.
#   program_loaded(prog_type: int, map_ids: list[int]) -> None
#       ebpfmaps loaded a program of type ``prog_type`` (a BPF_PROG_TYPE number) that uses the maps with
#       ``map_ids`` (the kernel's list, however the program came to name them). Raise to refuse: the load
#       fails with that exception and the program is unloaded before anything can attach it.
#   before_unpin(path: str) -> object | None ; after_unpin(token: object) -> None
#       Called around removing a pin (ebpfmaps.unpin, Map.unpin), so an extension can tell when the last holder
#       of one of its maps goes away. ``after_unpin`` gets back what ``before_unpin`` returned (even on failure).


_extensions: list[Extension] = []
_loaded = False
_lock = _thread.allocate_lock()


def register_extension(ext: Extension) -> None:
    with _lock:
        if ext not in _extensions:
            _extensions.append(ext)


def unregister_extension(ext: Extension) -> None:
    with _lock:
        if ext in _extensions:
            _extensions.remove(ext)


def entry_points_in(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group``."""
    # Imported here: importlib.metadata (with email and zipfile) would cost every ``import ebpfmaps``.
    from importlib.metadata import entry_points

    if sys.version_info >= (3, 10):
        return list(entry_points(group=group))
    # Python 3.9's entry_points() takes no selection and returns a dict of groups.
    return list(entry_points().get(group, ()))


def _load_entry_points() -> None:
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        _loaded = True
    for ep in entry_points_in(ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            ext = obj() if isinstance(obj, type) else obj
        except Exception as exc:  # a broken extension must not break ordinary maps
            warnings.warn(f"ebpfmaps: extension entry point {ep.name!r} ({ep.value}) failed to load: {exc!r}",
                          RuntimeWarning, stacklevel=3)
            continue
        if ext is not None:
            register_extension(ext)


def extensions() -> list[Extension]:
    _load_entry_points()
    return list(_extensions)


def create_extensible(type_id: int, kwargs: dict[str, Any]) -> Map:
    for ext in extensions():
        m = ext.create(type_id, kwargs)
        if m is not None:
            # The callers (ebpfmaps.create, Map.from_spec) are still typed as returning Map; an extension's
            # map is a MapLike that need not be one.
            return m  # type: ignore[return-value]
    raise NotSupported(
        f"no extension provides map type {type_id} (ids >= 4096 are extensible maps: install or register a provider, "
        f"e.g. ebpfmaps_shim.register_provider)",
        op="create",
    )


def may_claim(info: MapInfo) -> bool:
    """Whether an extension may claim this kernel map: only one whose BTF value type's name begins with
    :data:`EXTENSIBLE_VALUE_PREFIX` (or cannot be read here) can be extensible."""
    if not (info.btf_id and info.btf_value_type_id):
        return False
    name = btf_names.type_name(info.btf_id, info.btf_value_type_id)
    return name is None or name.startswith(EXTENSIBLE_VALUE_PREFIX)


def describe(info: MapInfo) -> MapInfo | None:
    """The first extension's view of a kernel map it claims, or ``None`` when no extension claims it."""
    if not may_claim(info):
        return None
    for ext in extensions():
        fn = getattr(ext, "describe", None)
        if fn is not None:
            view: MapInfo | None = fn(info)
            if view is not None:
                return view
    return None


def adopt(m: Map, *, key_type: Any = None, value_type: Any = None, claimed: bool = False) -> Map:
    """The extension's view of a map just opened; ``claimed`` says :func:`describe` claimed it."""
    for ext in extensions():
        with_codecs = getattr(ext, "adopt_with_codecs", None)
        out: MapLike | None
        if claimed and with_codecs is not None:
            out = with_codecs(m, key_type, value_type)
        else:
            out = ext.adopt(m)
        if out is not None:
            return out  # type: ignore[return-value]  # as in create_extensible: open_pinned/open_by_id are typed as returning Map
    return m


def program_loaded(prog_type: int, map_ids: list[int]) -> None:
    """Tell the extensions that a program of ``prog_type`` using ``map_ids`` was loaded; they may refuse it
    (raise), and then the caller unloads the program."""
    if not map_ids:
        return
    for ext in extensions():
        fn = getattr(ext, "program_loaded", None)
        if fn is not None:
            fn(prog_type, list(map_ids))


def before_unpin(path: str) -> list[tuple[Extension, object]]:
    """Tokens of the extensions that want to hear about removing the pin at ``path``."""
    tokens: list[tuple[Extension, object]] = []
    for ext in extensions():
        fn = getattr(ext, "before_unpin", None)
        if fn is not None:
            token = fn(path)
            if token is not None:
                tokens.append((ext, token))
    return tokens


def after_unpin(tokens: list[tuple[Extension, object]]) -> None:
    for ext, token in tokens:
        ext.after_unpin(token)  # type: ignore[attr-defined]


def unpin(path: str | os.PathLike[str]) -> None:
    """Remove the pin at ``path``; the object lives on while anything else holds it.

    Extensions hear about it (``before_unpin``/``after_unpin``): removing a pin may drop the last
    holder of one of their maps.
    """
    p = pinning.require_pin(path, "unpin")
    tokens = before_unpin(p) if os.path.lexists(p) else []
    try:
        pinning.unpin(p)
    finally:
        after_unpin(tokens)
