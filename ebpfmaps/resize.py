"""Resizing maps by migration (the cloud profile's ``m.resize(new_max_entries)``).

The kernel cannot change a map's ``max_entries``. A resize therefore builds a
new map with the same spec and the new size, copies the entries with batch
operations, re-pins it atomically if this object knows a pin, and points the
Python object at the new map:

1. read every entry of the old map (kernel batch lookups);
2. create the new map (same type, sizes, flags, name, BTF) and write the
   entries with batch updates; on a shrink, what does not fit is dropped;
3. freeze the new map if the old one was frozen;
4. pin the new map at a temporary name in the pin's bpffs directory and
   ``rename`` it over the old pin: rename is atomic on bpffs, so a process
   opening the pin meanwhile gets the old map or the new one, never nothing;
5. ``dup2`` the new map onto the object's fd number, so threads of this process
   that are mid-call finish on the old map and the next call uses the new one.

What the migration cannot change (say it plainly): kernel programs, other pins
and other processes' fds that refer to the old map keep the old map, with its
old size; updates made to the old map after step 1 are not carried over (pause
writers during a resize). The map gets a new kernel id.

A failure before step 4 completes closes the new map and leaves the object, its
map and its pin as they were.
"""

from __future__ import annotations

import os
import secrets
import struct
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, overload

from ebpfmaps import pinning, profile
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.errors import (
    BatchError,
    InvalidArgument,
    MapClosed,
    NotSupported,
    OutOfMemory,
    PermissionDenied,
    from_errno,
)
from ebpfmaps.map import MAP_CLASSES, Map, map_info_from_fd
from ebpfmaps.maptypes import BPF_F_NO_COMMON_LRU, BPF_F_RDONLY, BPF_F_WRONLY, MapType, type_name
from ebpfmaps.spec import MapInfo, MapSpec

RESIZABLE_TYPES = frozenset(int(t) for t in MapType if t.is_resizable)

# The kernel stores max_entries as a u32.
MAX_ENTRIES_LIMIT = 0xFFFFFFFF
COPY_BATCH = 4096


class ResizeWarning(UserWarning):
    """A resize dropped entries (a shrink, or LRU eviction while copying)."""


@dataclass(frozen=True)
class ResizeResult:
    """What a resize did.

    ``dropped`` maps each key that is not in the new map to its value in the old
    map, decoded with the map's codecs: for arrays the indices at or beyond the new
    size, for hash maps the keys that did not fit (and, for LRU maps, any the
    kernel evicted while the copy filled the new map).
    """

    old_max_entries: int
    new_max_entries: int
    copied: int
    dropped: dict[Any, Any] = field(default_factory=dict)
    repinned: str | None = None
    old_id: int | None = None
    new_id: int | None = None

    @property
    def migrated(self) -> bool:
        """False when the size did not change and nothing was done."""
        return self.old_id != self.new_id


def _read_entries(m: Map) -> list[tuple[bytes, bytes, int]]:
    """Every entry of ``m`` as packed ``(keys, values, count)`` chunks, straight from batch lookups."""
    return list(m.iter_batches_raw(COPY_BATCH))


def _split_chunk(keys: bytes, values: bytes, count: int, ks: int, vs: int) -> Iterator[tuple[bytes, bytes]]:
    for i in range(count):
        yield keys[i * ks : (i + 1) * ks], values[i * vs : (i + 1) * vs]


@contextmanager
def _on_cpu(cpu: int | None) -> Iterator[None]:
    """Run the block on one CPU (this thread only), then restore the thread's affinity."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _write_entries(target: Map, chunks: list[tuple[bytes, bytes, int]], *, spread_cpus: bool) -> None:
    """Batch-update ``chunks`` into ``target`` until everything is written or the map is full.

    A full non-LRU hash map refuses further inserts (E2BIG): the rest is dropped,
    which the caller finds by reading the new map back. With per-CPU LRU lists
    (BPF_F_NO_COMMON_LRU) a syscall insert draws from the calling CPU's list
    only, so the copy is spread over the CPUs this thread may run on.
    """
    cpus = sorted(os.sched_getaffinity(0)) if spread_cpus else []
    ks, vs = target.key_size, target.value_codec.size
    pieces: list[tuple[bytes, bytes, int]] = chunks
    if cpus:
        # One piece per CPU, each holding an equal share of the entries.
        flat = [kv for c in chunks for kv in _split_chunk(c[0], c[1], c[2], ks, vs)]
        share = -(-len(flat) // len(cpus)) or 1
        pieces = [
            (b"".join(k for k, _ in flat[i : i + share]), b"".join(v for _, v in flat[i : i + share]),
             len(flat[i : i + share]))
            for i in range(0, len(flat), share)
        ]
    for n, (kb, vb, count) in enumerate(pieces):
        if count == 0:
            continue
        with _on_cpu(cpus[n % len(cpus)] if cpus else None):
            try:
                target.update_batch(kb, vb)
            except OutOfMemory:
                return  # full before this piece: nothing more fits
            except BatchError as exc:
                if isinstance(exc.cause, OutOfMemory):
                    return  # full part way: the prefix was written
                raise


def _present_keys(m: Map) -> set[bytes]:
    ks = m.key_size
    out: set[bytes] = set()
    for kb, _, count in m.iter_batches_raw(COPY_BATCH):
        out.update(kb[i * ks : (i + 1) * ks] for i in range(count))
    return out


_resize_locks: weakref.WeakKeyDictionary[Map, threading.Lock] = weakref.WeakKeyDictionary()
_resize_locks_guard = threading.Lock()


def _lock_for(m: Map) -> threading.Lock:
    """A lock per map object, private to resize (the core's own locks stay the core's)."""
    with _resize_locks_guard:
        lock = _resize_locks.get(m)
        if lock is None:
            lock = _resize_locks[m] = threading.Lock()
        return lock


def _check_resizable(m: Map, new_max_entries: int) -> None:
    if isinstance(new_max_entries, bool) or not isinstance(new_max_entries, int):
        raise InvalidArgument(f"resize: new_max_entries must be an int, not {type(new_max_entries).__name__}",
                              op="resize")
    if not 0 < new_max_entries <= MAX_ENTRIES_LIMIT:
        raise InvalidArgument(f"resize: new_max_entries must be in 1..{MAX_ENTRIES_LIMIT}, not {new_max_entries}",
                              op="resize")
    if m.closed:
        raise MapClosed("resize: the map is closed", op="resize")
    if m.spec.type not in RESIZABLE_TYPES:
        raise NotSupported(f"resize: {type_name(m.spec.type)} maps cannot be resized (hash, LRU hash, array and "
                           f"their per-CPU variants can)", op="resize")
    if not m.writable:
        raise PermissionDenied("resize: the map is read-only for this process", op="resize")
    if m.spec.flags & (BPF_F_RDONLY | BPF_F_WRONLY):
        raise NotSupported("resize: a map created with BPF_F_RDONLY or BPF_F_WRONLY cannot be both read and written "
                           "by syscalls, so it cannot be copied", op="resize")


def _pin_of(m: Map, old_id: int, notes: list[str]) -> str | None:
    """The pin this object knows, if it still refers to the map being resized."""
    path = m.pin_path
    if path is None or not os.path.lexists(path):
        return None
    fd = pinning.obj_get(path)
    try:
        pinned_id = map_info_from_fd(fd).id
    finally:
        os.close(fd)
    if pinned_id != old_id:
        notes.append(f"resize: {path} now holds map id {pinned_id}, not this map (id {old_id}); the pin was left alone")
        return None
    return path


def _replace_pin(new_fd: int, path: str) -> None:
    """Pin ``new_fd`` at a temporary name next to ``path``, then rename it over ``path`` (atomic on bpffs)."""
    directory, base = os.path.split(path)
    # No dots: bpffs reserves names with dots for itself (bpf_lookup refuses them with EPERM).
    temp = os.path.join(directory, f"{base}_resize_{os.getpid()}_{secrets.token_hex(4)}")
    pinning.pin_fd(new_fd, temp)
    try:
        os.rename(temp, path)
    except OSError as exc:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise from_errno(exc.errno or 0, "resize", f"rename {temp} -> {path}") from exc


def resize(m: Map, new_max_entries: int) -> ResizeResult:
    """Give ``m`` a new ``max_entries`` by migrating it to a new kernel map (see the module docs).

    Growing keeps every entry (an LRU map may still evict while the copy fills
    it; such keys are reported). Shrinking keeps what fits and reports the rest in
    :attr:`ResizeResult.dropped` and with a :class:`ResizeWarning`.
    """
    return _resize(m, new_max_entries, stacklevel=3)


def _resize(m: Map, new_max_entries: int, stacklevel: int) -> ResizeResult:
    """``resize`` with the warnings attributed to the caller ``stacklevel`` frames up."""
    if profile.active() == profile.EMBEDDED:
        raise NotSupported("resize: the embedded profile has no resize (its maps have a fixed size)", op="resize")
    _check_resizable(m, new_max_entries)
    notes: list[str] = []
    with _lock_for(m):  # one resize of an object at a time
        result = _resize_locked(m, new_max_entries, notes)
    for note in notes:
        warnings.warn(ResizeWarning(note), stacklevel=stacklevel)
    return result


def _resize_locked(m: Map, new_max_entries: int, notes: list[str]) -> ResizeResult:
    info: MapInfo = m.info()
    old_max = info.max_entries
    if new_max_entries == old_max:
        return ResizeResult(old_max, old_max, copied=0, old_id=info.id, new_id=info.id)
    is_array = MapType(info.type).is_array_family
    chunks = _read_entries(m)
    ks, vs = info.key_size, m.value_codec.size
    kdec: Callable[[bytes], Any] = m.key_codec.decode
    vdec: Callable[[bytes], Any] = m.value_codec.decode
    dropped: dict[Any, Any] = {}
    copied = 0
    to_write = chunks
    if is_array:
        # Array slots always exist: what is kept is exactly the indices below the new size.
        to_write = []
        for kb, vb, count in chunks:
            idx = struct.unpack_from(f"={count}I", kb)
            keep = [i for i in range(count) if idx[i] < new_max_entries]
            if len(keep) == count:
                to_write.append((kb, vb, count))
            elif keep:
                to_write.append((b"".join(kb[i * ks : (i + 1) * ks] for i in keep),
                                 b"".join(vb[i * vs : (i + 1) * vs] for i in keep), len(keep)))
            copied += len(keep)
            for i in range(count):
                if idx[i] >= new_max_entries:
                    dropped[kdec(kb[i * ks : (i + 1) * ks])] = vdec(vb[i * vs : (i + 1) * vs])

    spec: MapSpec = m.spec.replace(max_entries=new_max_entries)
    btf: FD | None = None
    if info.btf_id:
        btf = _maps.btf_get_fd_by_id(info.btf_id, op="resize")
    try:
        if btf is not None:
            with btf.pinned("resize") as btf_fd:
                new_fd = Map.create_kernel_map(spec.replace(btf_fd=btf_fd))
        else:
            new_fd = Map.create_kernel_map(spec.replace(btf_fd=None, btf_key_type_id=0, btf_value_type_id=0,
                                                        btf_vmlinux_value_type_id=0))
    finally:
        if btf is not None:
            btf.close()
    cls = MAP_CLASSES.get(info.type, Map)
    # A plain map of the family class (raw bytes codecs, no extension hooks) does the writing.
    target = cls.adopt_fd(new_fd)
    try:
        _write_entries(target, to_write,
                       spread_cpus=MapType(info.type).is_lru and bool(info.flags & BPF_F_NO_COMMON_LRU))
        if not is_array:
            # Hash maps: read the new map back, since a full map or the LRU decides what stayed.
            present = _present_keys(target)
            for kb, vb, count in chunks:
                for key, value in _split_chunk(kb, vb, count, ks, vs):
                    if key in present:
                        copied += 1
                    else:
                        dropped[kdec(key)] = vdec(value)
        if info.frozen:
            target.freeze()
        new_id = target.info().id
        pin = _pin_of(m, info.id, notes)
        if pin is not None:
            _replace_pin(target.fd, pin)
        # From here on nothing can fail: the object takes the new map over its own fd number.
        m.replace_kernel_map(target.handle.detach(), spec)
    finally:
        target.close()
    if dropped:
        sample = ", ".join(repr(k) for k in list(dropped)[:8]) + (", ..." if len(dropped) > 8 else "")
        why = "did not fit" if new_max_entries < old_max else "were evicted by the LRU while copying"
        notes.append(f"resize {type_name(info.type)} map {old_max} -> {new_max_entries}: "
                     f"{len(dropped)} entries {why} and were dropped: {sample}")
    return ResizeResult(old_max, new_max_entries, copied=copied, dropped=dropped, repinned=pin,
                        old_id=info.id, new_id=new_id)


class Resizable:
    """The ``resize`` attribute of resizable map classes: present in the cloud profile, absent in embedded.

    In the embedded profile looking it up raises :class:`AttributeError`, so
    ``hasattr(m, "resize")`` is False (the method is erased from the embedded profile, as a compile-time feature would be);
    the profile is consulted on every lookup, so switching profiles takes effect
    at once.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Resizable: ...

    @overload
    def __get__(self, obj: Map, objtype: type | None = None) -> Callable[[int], ResizeResult]: ...

    def __get__(self, obj: Map | None, objtype: type | None = None) -> Resizable | Callable[[int], ResizeResult]:
        owner = objtype if objtype is not None else type(obj)
        if profile.active() == profile.EMBEDDED:
            raise AttributeError(
                f"{owner.__name__!r} object has no attribute 'resize' (the embedded profile has no resize)"
            )
        if obj is None:
            return self
        if obj.spec.type not in RESIZABLE_TYPES:
            raise AttributeError(f"{owner.__name__!r} object has no attribute 'resize' "
                                 f"({type_name(obj.spec.type)} maps cannot be resized)")
        target = obj

        def bound_resize(new_max_entries: int) -> ResizeResult:
            return _resize(target, new_max_entries, stacklevel=3)

        bound_resize.__doc__ = resize.__doc__
        return bound_resize

