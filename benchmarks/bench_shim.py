"""Extensible maps: what a reconcile pass (and so the observer) costs per entry of a big map.

A reconcile pass reads the whole base map with kernel batch lookups and compares it with the previous
pass. The C baseline is libbpf reading the same map with bpf_map_lookup_batch in the same run, so the
ratio is the observer's overhead over the kernel's own cost of reading the map. Two cases: nothing
changed (the steady state of an observer), and 10% of the entries rewritten outside the shim since
the last pass (delivered in batches to a provider that counts them).
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

from ebpfmaps_shim import ExtensibleMap, ExternalChange, MapProvider, register_provider, unregister_provider
from harness import Result, c_baseline, make_result

import ebpfmaps
from ebpfmaps import map as map_module

_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_TYPE_ID = 4190  # a type id of its own for the benchmark's provider

# A reconcile pass may cost a few times the kernel's batch read (a dict lookup and a bytes comparison
# per entry); the targets bound it. A pass where values changed compares those chunks element by element
# and builds one change per changed entry.
RECONCILE_TARGET = 2.0
RECONCILE_CHANGED_TARGET = 5.0


class _Counting(MapProvider):
    custom_map_type = _TYPE_ID

    def __init__(self) -> None:
        self.delivered = 0

    def external_change_notify(self, m: Any, changes: list[ExternalChange]) -> None:
        self.delivered += len(changes)


def run(quick: bool) -> list[Result]:
    n = 5_000 if quick else 100_000
    rounds = 3 if quick else 7
    provider = register_provider(_Counting())
    cb = c_baseline()
    out: list[Result] = []
    try:
        m = ebpfmaps.create(_TYPE_ID, key_type=ctypes.c_uint32, value_size=8, max_entries=n)
        assert isinstance(m, ExtensibleMap)
        keys = b"".join(_U32.pack(k) for k in range(n))
        m.base.update_batch(keys, b"".join(_U64.pack(k) for k in range(n)))
        m.reconcile()  # the baseline pass
        cb.share(m.base.fd)
        fd = m.base.fd

        def py_reconcile() -> int:
            m.reconcile()
            return n

        def c_lookup_batch() -> tuple[int, int]:
            return cb.call("lookup_batch", fd, 4, 8, map_module.DEFAULT_BATCH)

        out.append(make_result(f"reconcile, nothing changed ({n} entries)", "shim", py_reconcile, c_lookup_batch,
                               rounds=rounds, elements=n, target=RECONCILE_TARGET,
                               notes="per entry: the observer's steady state vs a C batch read of the base map"))
        changed = list(range(0, n, 10))
        flip = [0]

        def rewrite_tenth() -> None:
            flip[0] += 1
            m.base.update_batch(b"".join(_U32.pack(k) for k in changed),
                                b"".join(_U64.pack(k + flip[0]) for k in changed))

        out.append(make_result(f"reconcile, 10% changed ({n} entries)", "shim", py_reconcile, c_lookup_batch,
                               rounds=rounds, elements=n, target=RECONCILE_CHANGED_TARGET, setup=rewrite_tenth,
                               notes="per entry, with one EXTERNAL_UPDATE per changed entry delivered in batches"))
        m.close()
    finally:
        unregister_provider(provider)
    return out
