"""A cache with timeout: entries expire ``ttl_ms`` after they were written.

Each stored value is the user's value prefixed by its expiry time, a u64 of
``CLOCK_MONOTONIC`` nanoseconds (``time.monotonic_ns()``; the same clock as the
kernel's ``bpf_ktime_get_ns()``, and one clock for every process on the machine,
so a map opened elsewhere agrees on what has expired). Lookups treat expired
entries as missing, iteration skips them, and :meth:`TtlCacheProvider.purge`
removes them (EVICTED notifications). The TTL is an option of each map
(``options={"ttl_ms": ...}``), recorded with the map.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Mapping
from typing import ClassVar

from ebpfmaps.errors import InvalidArgument, InvalidValueSize
from ebpfmaps.maptypes import MapType
from ebpfmaps.spec import MapSpec

from ..provider import HIDDEN, DeleteReason, ExtensibleMapLike, Hidden, MapProvider

__all__ = ["TTL_CACHE_TYPE", "TtlCacheProvider"]

TTL_CACHE_TYPE = 4100
_EXPIRY = struct.Struct("=Q")
HEADER = _EXPIRY.size


class TtlCacheProvider(MapProvider):
    """Entries expire ``ttl_ms`` milliseconds after their last update (default one minute)."""

    custom_map_type = TTL_CACHE_TYPE
    base_map_type = int(MapType.HASH)
    transforms_values = True
    default_options: ClassVar[Mapping[str, int]] = {"ttl_ms": 60_000}

    def __init__(self, custom_map_type: int = TTL_CACHE_TYPE, base_map_type: int = int(MapType.HASH)) -> None:
        self.custom_map_type = custom_map_type
        self.base_map_type = int(base_map_type)

    def check_options(self, options: Mapping[str, int]) -> None:
        if options["ttl_ms"] <= 0:
            raise InvalidArgument("ttl_ms must be > 0", op="create")

    def create_map_notify(self, spec: MapSpec) -> int | None:
        if spec.value_size > 0xFFFFFFFF - HEADER:
            raise InvalidValueSize(f"value_size {spec.value_size} leaves no room for the expiry stamp", op="create")
        return spec.value_size + HEADER

    def update_element_notify(self, m: ExtensibleMapLike, key: bytes, value: bytes, flags: int) -> bytes | None:
        expires = time.monotonic_ns() + m.options["ttl_ms"] * 1_000_000
        return _EXPIRY.pack(expires) + value

    def find_element_notify(self, m: ExtensibleMapLike, key: bytes, stored: bytes) -> bytes | Hidden:
        if _EXPIRY.unpack_from(stored)[0] <= time.monotonic_ns():
            return HIDDEN  # expired: reported missing until purge() removes it
        return stored[HEADER:]

    def get_next_key_and_value_notify(self, m: ExtensibleMapLike, key: bytes | None, next_key: bytes,
                                      stored: bytes) -> bytes | Hidden:
        return self.find_element_notify(m, next_key, stored)

    # ---- helpers built on the client services ---------------------------------------------------
    @staticmethod
    def expires_at_ns(m: ExtensibleMapLike, key: object) -> int | None:
        """When ``key`` expires (CLOCK_MONOTONIC ns), or None when it is not stored."""
        stored = m.find_element(key)
        return None if stored is None else int(_EXPIRY.unpack_from(stored)[0])

    @staticmethod
    def purge(m: ExtensibleMapLike) -> int:
        """Remove the expired entries (each gets an EVICTED notification); returns how many."""
        now = time.monotonic_ns()
        expired = [kb for kb, stored in m.stored_items() if _EXPIRY.unpack_from(stored)[0] <= now]
        removed = 0
        for kb in expired:
            with m.locked(kb):
                stored = m.find_element(kb)
                # Re-check under the lock: another writer may have refreshed it since we looked.
                if stored is not None and _EXPIRY.unpack_from(stored)[0] <= now:
                    removed += m.remove_element(kb, DeleteReason.EVICTED)
        return removed
