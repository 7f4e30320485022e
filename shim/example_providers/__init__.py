"""Example providers, each useful on its own (and shipped as entry points in ``ebpfmaps.providers``).

* :class:`XskMapProvider` (type 4097): an XSKMAP-style map of AF_XDP sockets on a hash base.
* :class:`TtlCacheProvider` (type 4100): a cache whose entries expire.
* :class:`StatsMapProvider` (type 4101): counters with a validated layout that kernel programs may share.
"""

from __future__ import annotations

from .stats import STATS_MAP_TYPE, StatsMapProvider
from .ttl import TTL_CACHE_TYPE, TtlCacheProvider
from .xsk import XSK_MAP_TYPE, SocketEntry, XskMapProvider

__all__ = ["STATS_MAP_TYPE", "TTL_CACHE_TYPE", "XSK_MAP_TYPE", "SocketEntry", "StatsMapProvider", "TtlCacheProvider",
           "XskMapProvider"]
