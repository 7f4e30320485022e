"""Hot-path entry points to libbpf's element operations, called without ctypes argument conversion.

:data:`ebpfmaps._libbpf.lib` declares ``argtypes`` for every function, which is the
safe default. For the per-element calls that ``Map.lookup``/``update``/``delete``
and the ``get_next_key`` walk make once per element, that conversion is the most
expensive part of the Python side: with ``argtypes`` ctypes builds a converted
argument object per parameter through each type's ``from_param``; without them it
converts ints, ``bytes`` and ctypes instances directly. Measured on the project's
Debian 12 / kernel 6.18 VM (benchmarks/, a hash lookup through ctypes with
prebuilt arguments, median of 15 rounds of 20,000 calls): 1,741 ns with
``[c_int, c_char_p, c_char_p]`` against 1,206 ns without argtypes.

The price is that nothing checks the arguments here, so every caller (only
``ebpfmaps.map``) must pass exactly:

* the fd as a Python ``int``;
* input buffers (keys, values the kernel reads) as ``bytes`` of the map's size, or ``None`` for NULL;
* output buffers (anything the kernel writes) as ctypes arrays of at least the map's size;
* 64-bit flags as ``ctypes.c_uint64`` instances (:func:`u64`), never a bare int: a bare
  int is passed as a 32-bit C ``int``.

The same symbols stay available with full argtypes through ``lib``.

These element calls also keep the GIL (their function pointers come from a ``ctypes.PyDLL``
handle on the same library): a map element syscall is short and never waits for another
thread, and dropping and retaking the GIL around it costs more than it gives. Measured in
``make bench`` (bench_core "GIL" rows, 1,000-key hash lookups with prebuilt arguments, one CPU
and two CPUs) on the project's 2-CPU VM under load: one thread 0.55 M lookups/s holding the
GIL against 0.50 M releasing it; two threads 0.50 M against 0.43 M in total. With the GIL
released the second thread mostly waits for the GIL anyway, and the handoffs cost more than
the overlap of two syscalls saves. The releasing variants stay here (``released``) for
that measurement.
"""

from __future__ import annotations

import ctypes

from ebpfmaps._libbpf import LIBBPF_PATH, _cdll

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any

# The same library (dlopen hands back the loaded one), with calls that keep the GIL.
_pydll = ctypes.PyDLL(LIBBPF_PATH)


def _raw(name: str, dll: ctypes.CDLL = _pydll) -> Any:
    # dll[name] makes a new function pointer object, so the argtypes that ``lib`` set on
    # its own object for the same symbol do not apply to this one.
    fn = dll[name]
    fn.restype = ctypes.c_int
    return fn


# int bpf_map_lookup_elem(int fd, const void *key, void *value)
map_lookup_elem = _raw("bpf_map_lookup_elem")
# int bpf_map_lookup_elem_flags(int fd, const void *key, void *value, __u64 flags)
map_lookup_elem_flags = _raw("bpf_map_lookup_elem_flags")
# int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags)
map_update_elem = _raw("bpf_map_update_elem")
# int bpf_map_delete_elem(int fd, const void *key)
map_delete_elem = _raw("bpf_map_delete_elem")
# int bpf_map_get_next_key(int fd, const void *key, void *next_key)
map_get_next_key = _raw("bpf_map_get_next_key")


class released:
    """The same element calls with the GIL released during the call (the plain ctypes ``CDLL`` way),
    kept for the benchmark that decides between the two."""

    map_lookup_elem = _raw("bpf_map_lookup_elem", _cdll)
    map_update_elem = _raw("bpf_map_update_elem", _cdll)
    map_delete_elem = _raw("bpf_map_delete_elem", _cdll)


# Flag values are few; one shared immutable-by-convention c_uint64 per value avoids building one per call.
_U64_CACHE: dict[int, ctypes.c_uint64] = {}


def u64(value: int) -> ctypes.c_uint64:
    """A ``c_uint64`` holding ``value`` (cached: callers must never mutate it)."""
    cached = _U64_CACHE.get(value)
    if cached is None:
        cached = ctypes.c_uint64(value)
        if len(_U64_CACHE) < 64:
            _U64_CACHE[value] = cached
    return cached
