"""The shim's side of the core's one extension point (:mod:`ebpfmaps.extension`).

The core finds :class:`ShimExtension` through the entry point group
``ebpfmaps.extensions`` (declared in pyproject), so a process that never imports
``ebpfmaps_shim`` still gets extensible maps back from ``ebpfmaps.open_pinned``.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from ebpfmaps.errors import MapError
from ebpfmaps.factory import open_by_id, open_pinned
from ebpfmaps.map import Map
from ebpfmaps.maplike import MapLike
from ebpfmaps.maptypes import EXTENSIBLE_MIN
from ebpfmaps.programs.types import ProgramType as ProgramKind
from ebpfmaps.spec import MapInfo

from . import _meta, registry
from .errors import ProviderError, ProviderNotFound
from .extmap import ExtensibleMap, adopt_extensible, create_extensible, finish_cleanup_quietly
from .provider import ProgramType

__all__ = ["ShimExtension"]


class ShimExtension:
    """Creates maps of type ids >= 4096 through their providers and recognises them when they are opened.

    One instance per process (the entry point and an explicit import share it).
    """

    _instance: ShimExtension | None = None
    _instance_lock = threading.Lock()

    def __new__(cls) -> ShimExtension:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = super().__new__(cls)
            return cls._instance

    def create(self, type_id: int, kwargs: dict[str, Any]) -> MapLike | None:
        if type_id < EXTENSIBLE_MIN:
            return None
        found = registry.find_provider(type_id)
        if found is None:
            return None  # the core then says that no extension provides this type
        provider, dispatch = found
        return create_extensible(provider, dispatch, type_id, dict(kwargs))

    def describe(self, info: MapInfo) -> MapInfo | None:
        meta = _meta.read_meta(info)
        if meta is None:
            return None
        return info.replace(type=meta.custom_type, value_size=meta.user_value_size)

    def adopt(self, m: Map) -> MapLike | None:
        return None  # maps we claim arrive through adopt_with_codecs (describe() said they are ours)

    def adopt_with_codecs(self, m: Map, key_type: Any, value_type: Any) -> MapLike | None:
        try:
            meta = _meta.read_meta(m.info())
            if meta is None:
                return None
            provider, dispatch = registry.require_provider(meta.custom_type, "open")
        except BaseException:
            m.close()
            raise
        finish_cleanup_quietly()  # opening an extensible map is when maps left by dead holders are noticed
        return adopt_extensible(m, meta, provider, dispatch, key_type, value_type)

    def program_loaded(self, prog_type: int, map_ids: list[int]) -> None:
        """A program ebpfmaps just loaded uses ``map_ids``: each extensible one is associated with it
        (``associate_program``), and a refusal fails the load (the core then unloads the program).

        The provider hears the program type by its keyword (``"xdp"``, ``"socket_filter"``: the lower-case
        ``BPF_PROG_TYPE_*`` name), or the number for a type this library does not name.
        """
        try:
            kind: ProgramType = ProgramKind(prog_type).name.lower()
        except ValueError:
            kind = prog_type
        for map_id in map_ids:
            try:
                m = open_by_id(map_id)
            except (ProviderNotFound, ProviderError):
                raise
            except (MapError, OSError):
                continue  # gone already, or a kind of map we cannot open: not an extensible one
            try:
                if isinstance(m, ExtensibleMap):
                    m.associate_program(kind)
            finally:
                m.close()

    # An unpin may remove the last holder of an extensible map: open a handle first, so that closing it after
    # the unlink runs the usual last-close logic (cleanup notifications when nobody else holds the map).
    def before_unpin(self, path: str) -> object | None:
        try:
            m = open_pinned(path)
        except ProviderNotFound as exc:
            warnings.warn(f"ebpfmaps_shim: unpinning {path}: {exc}; its provider will not hear of it",
                          RuntimeWarning, stacklevel=4)
            return None
        except (MapError, OSError):
            return None  # not a map, or unreadable: nothing of ours
        if isinstance(m, ExtensibleMap):
            return m
        m.close()
        return None

    def after_unpin(self, token: object) -> None:
        if isinstance(token, ExtensibleMap):
            token.close()

