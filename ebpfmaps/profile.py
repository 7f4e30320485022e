"""Profiles: ``cloud`` (the default) and ``embedded``.

The profile is chosen per process: :func:`use` wins, then the environment
variable ``EBPFMAPS_PROFILE``, then ``cloud``. What changes:

========================  ==========================================  ===========================================
                          cloud                                       embedded
========================  ==========================================  ===========================================
memory                    what the kernel allows                      a :class:`~ebpfmaps.pool.StaticPool` (64 KiB
                                                                      by default) charged with each new map's
                                                                      kernel memory (fdinfo ``memlock``)
LRU hash maps             yes                                         no: :class:`NotSupported` before the syscall
``BPF_F_NO_PREALLOC``     yes                                         no: such maps grow after creation, past
                                                                      what the pool was charged
``m.resize(n)``           hash, LRU hash, array and per-CPU variants  no attribute at all (``hasattr`` is False)
========================  ==========================================  ===========================================

The core calls :func:`before_create` before every map creation syscall and
:func:`after_create` once the fd exists; if either raises, no map is left behind
(the core closes a map whose ``after_create`` raised).

Only maps created through ebpfmaps while the embedded profile is active are
charged: maps opened from a pin or an id were paid for by their creator, and
maps that libbpf creates while loading an object file do not pass through here.
"""

from __future__ import annotations

import _thread
import contextlib
import os
from collections.abc import Iterator

from ebpfmaps._lazy import lazy_module
from ebpfmaps.errors import InvalidArgument, NotSupported, OutOfMemory
from ebpfmaps.maptypes import BPF_F_NO_PREALLOC, map_type_of, type_name

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from ebpfmaps import features, memguard, pool
    from ebpfmaps.map import Map
    from ebpfmaps.spec import MapSpec
else:
    # Only the embedded profile probes the kernel and charges the pool: the default one loads neither.
    features = lazy_module("ebpfmaps.features")
    memguard = lazy_module("ebpfmaps.memguard")
    pool = lazy_module("ebpfmaps.pool")

CLOUD = "cloud"
EMBEDDED = "embedded"
PROFILES = (CLOUD, EMBEDDED)
PROFILE_ENV = "EBPFMAPS_PROFILE"

_explicit: str | None = None
_explicit_lock = _thread.allocate_lock()



def _check_name(name: str, source: str) -> str:
    normal = name.strip().lower()
    if normal not in PROFILES:
        raise InvalidArgument(f"{source}: unknown profile {name!r}; choose one of {', '.join(PROFILES)}", op="profile")
    return normal


def active() -> str:
    """The profile in force: ``use()`` wins, then ``EBPFMAPS_PROFILE``, then ``cloud``."""
    if _explicit is not None:
        return _explicit
    env = os.environ.get(PROFILE_ENV, "").strip()
    if not env:
        return CLOUD
    return _check_name(env, PROFILE_ENV)


def is_embedded() -> bool:
    return active() == EMBEDDED


def summary() -> str:
    """One line for a demo or a log: the active profile and what it means right now."""
    if active() == EMBEDDED:
        return (f"embedded: static pool {pool.StaticPool.used()} of {pool.StaticPool.total_size()} bytes used; "
                f"no LRU maps, no resize")
    return "cloud: maps resize by migration, LRU maps allowed, no pool"


def use(name: str | None) -> None:
    """Select the profile for this process (``None`` returns to ``EBPFMAPS_PROFILE``/the default).

    Switching does not touch maps that already exist: their pool charges stay
    until :meth:`StaticPool.reset`, and ``resize`` appears or vanishes on every map
    object at once because it is looked up on each access.
    """
    global _explicit
    chosen = None if name is None else _check_name(name, "profile.use")
    with _explicit_lock:
        _explicit = chosen


@contextlib.contextmanager
def using(name: str) -> Iterator[str]:
    """``with profile.using("embedded"): ...`` selects a profile for a block, then restores the previous choice."""
    global _explicit
    chosen = _check_name(name, "profile.using")
    with _explicit_lock:
        previous = _explicit
        _explicit = chosen
    try:
        yield chosen
    finally:
        with _explicit_lock:
            _explicit = previous


def estimate_memlock(spec: MapSpec) -> int:
    """A lower bound of the kernel memory a map of ``spec`` will hold (0 when unknown; see
    :meth:`MapType.memlock_estimate`). It lets the embedded profile refuse a map that cannot fit
    before the syscall."""
    return memguard.estimate(spec)


def memlock_formula(spec: MapSpec) -> int:
    """``memlock`` as kernels before 6.4 report it (``bpf_map_memory_footprint``): the key and value of
    every entry, each rounded up to 8 bytes, rounded up to whole pages."""
    size = spec.max_entries * _round_up(spec.key_size + spec.value_size, 8)
    return _round_up(size, _PAGE)


def _round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


_PAGE = os.sysconf("SC_PAGE_SIZE")


def before_create(spec: MapSpec) -> None:
    """Refuse what the active profile forbids, before the syscall."""
    if active() != EMBEDDED:
        return
    t = map_type_of(spec.type)
    if t is not None and t.is_lru:
        raise NotSupported(
            f"{type_name(spec.type)} maps are not available in the embedded profile (LRU maps are "
            f"cloud-only); use a hash map, or the cloud profile",
            op="create",
        )
    if spec.flags & BPF_F_NO_PREALLOC:
        raise NotSupported(
            "BPF_F_NO_PREALLOC maps are not available in the embedded profile: they allocate per element after "
            "creation, past what the static pool was charged at creation",
            op="create",
        )
    estimate = estimate_memlock(spec)
    if not features.memlock_tracks_usage():
        # Before Linux 6.4 the kernel reports (and the pool charges) a size formula, which can be below
        # the element storage: compare with what will be charged, so a map that fits is not refused.
        estimate = min(estimate, memlock_formula(spec))
    remaining = pool.StaticPool.remaining()
    if estimate > remaining:
        raise OutOfMemory(
            f"static pool: {type_name(spec.type)} map of {spec.max_entries} entries needs at least {estimate} "
            f"bytes, {remaining} of {pool.StaticPool.total_size()} remain (refused before creating it)",
            op="create",
        )


def after_create(m: Map) -> None:
    """Charge the new map's kernel memory to the pool (embedded); raising makes the core close the map."""
    if active() != EMBEDDED:
        return
    info = m.info()
    name = f" {info.name!r}" if info.name else ""
    label = f"{type_name(info.type)} map{name} id {info.id}"
    if info.memlock is None:
        # Kernels before 4.10 had no memlock line: charge what we can tell for sure.
        size = estimate_memlock(m.spec)
        label += " (estimated: no memlock in fdinfo)"
    else:
        size = info.memlock
    pool.StaticPool.charge(size, label, map_id=info.id)
