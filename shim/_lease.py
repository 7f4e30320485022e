"""Leases: the map of a holder that died is cleaned up by the next shim process.

A map's cleanup (``MAP_CLEANUP`` notifications, then ``delete_map_notify``) belongs to its last
holder. When that holder is killed, the kernel frees the map with it and nobody would hear of it.
So while any shim process holds an extensible map:

* each such process holds a shared lease lock on the map (:func:`ebpfmaps_shim._locks.lease_share`,
  an OFD lock that vanishes with the process), and
* the map is pinned at ``<lease dir>/<map id>`` (the *lease pin*), which keeps it alive if they all die.

A process whose last handle closes asks for the exclusive lease without waiting: if it gets it, no other
shim process holds the map, and it removes the lease pin before the usual last-close logic (the map goes
away when nothing else holds it). Otherwise it just lets go. A lease pin whose exclusive lease is free
therefore belongs to a map whose holders all died: :func:`expired` lists them, and the next shim process
that registers the map's provider or opens an extensible map finishes the cleanup
(:func:`ebpfmaps_shim.finish_cleanup`).

The lease dir is ``/sys/fs/bpf/ebpfmaps_shim_leases`` (override with ``EBPFMAPS_SHIM_LEASE_DIR``, which
must be on a bpf filesystem). Without a writable bpffs there are no lease pins: a map whose last holder is
killed is then freed without cleanup notifications (the locks still vanish with it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ebpfmaps import pinning
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.errors import MapError

from . import _locks

__all__ = ["expired_except", "lease_dir", "lease_path", "release", "take", "unlock"]

_DEFAULT_DIR = "/sys/fs/bpf/ebpfmaps_shim_leases"


def lease_dir() -> str | None:
    """Where lease pins live, or None when no bpf filesystem is there."""
    path = os.environ.get("EBPFMAPS_SHIM_LEASE_DIR") or _DEFAULT_DIR
    parent = os.path.dirname(path.rstrip("/")) or "/"
    if not (pinning.is_bpffs(path) if os.path.isdir(path) else pinning.is_bpffs(parent)):
        return None
    return path


def lease_path(map_id: int) -> str | None:
    d = lease_dir()
    return None if d is None else os.path.join(d, str(map_id))


def take(map_id: int, handle: FD) -> None:
    """This process now holds map ``map_id``: the shared lease, then the lease pin (if not there yet)."""
    _locks.lease_share(map_id)
    path = lease_path(map_id)
    if path is None:
        return
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        if not os.path.lexists(path):
            pinning.pin_fd(handle, path)
    except (MapError, OSError):
        pass  # pinned meanwhile by another holder (EEXIST), or no room: the map simply has no lease pin


def release(map_id: int) -> bool:
    """This process lets go of ``map_id``; True when it was the last shim process holding it.

    The last one removes the lease pin (the caller then runs the last-close logic). Call under the
    map's lock, so that two processes closing at once agree on which one was the last.
    """
    last = _locks.lease_try_exclusive(map_id)
    if last:
        path = lease_path(map_id)
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass
    return last


def unlock(map_id: int) -> None:
    _locks.lease_drop(map_id)


def expired_except(held: set[int]) -> Iterator[tuple[int, str]]:
    """``(map id, lease pin)`` of the maps whose holders all died, each with its exclusive lease taken:
    the caller finishes the cleanup, then gives the lease back with :func:`unlock`. Maps in ``held``
    (this process holds them: our own shared lease would convert) are skipped."""
    d = lease_dir()
    if d is None:
        return
    try:
        names = os.listdir(d)
    except OSError:
        return
    for name in names:
        if not name.isdigit():
            continue
        map_id = int(name)
        if map_id not in held and _locks.lease_try_exclusive(map_id):
            yield map_id, os.path.join(d, name)
