"""Resizing maps by migration (the cloud profile's ``m.resize(new_max_entries)``).

The kernel cannot change a map's ``max_entries``. A resize therefore builds a
new map with the same spec and the new size, copies the entries with batch
operations, re-pins it atomically if this object knows a pin, and points every
Python object of this process on the old map at the new map:

1. read every entry of the old map (kernel batch lookups) while writers go on;
2. create the new map (same type, sizes, flags, name, BTF) and write those
   entries with batch updates; on a shrink, what does not fit is dropped;
3. pin the new map at a temporary name in the pin's bpffs directory
   (:func:`ebpfmaps.pinning.migration_temp_path`), if this object knows a pin;
4. *hold* every :class:`Map` object of this process on the old map (found by
   kernel id, :func:`ebpfmaps.map.maps_on`): their calls in flight finish, and
   new calls, from any thread, wait for step 8 (:meth:`FD.hold`);
5. freeze the old map (``BPF_MAP_FREEZE``): from here other processes' writes
   to it fail with EPERM; ebpfmaps in those processes, when it opened the map
   from the pin, follows the pin to the new map and retries the write there;
6. read the old map again and bring the new map up to date: what changed since
   step 1 is written, what was deleted is deleted; freeze the new map too if
   the old one was frozen before the resize;
7. rename the temporary pin over the old pin: rename is atomic on bpffs, so a
   process opening the pin meanwhile gets the old map or the new one, never nothing;
8. ``dup2`` the new map onto each held object's fd number and release the holds:
   the waiting calls run on the new map.

So no write made through ebpfmaps is lost: writes acknowledged before step 4
(this process) or step 5 (other processes) are in the old map when step 6 reads
it, and later ones wait or are retried on the new map. A writer in another
process that opened the map by id, or without ebpfmaps, gets the EPERM itself.

What the migration cannot change (say it plainly): kernel programs, other pins
and fds that are not ebpfmaps objects opened from the pin keep the old map, with
its old size, and it is frozen to syscalls from step 5. **Writes made by kernel
programs to the old map after step 6 read it are lost**: they are counted, by
comparing the old map with what was copied once the new map is in place, in
:attr:`ResizeResult.lost_after_copy`. Writes through a memory mapping of an
mmapable array are not held either; while a writable mapping exists the kernel
refuses the freeze (EBUSY), and other processes' writes during the copy are then
only counted, in ``lost_after_copy``, not carried over. The map gets a new kernel id.

A failure before step 5 closes the new map and leaves the objects, the map and
its pin as they were. A failure after it (the kernel running out of memory for
the last entries) leaves the old map frozen.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ebpfmaps import pinning, profile
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.errors import (
    BatchError,
    InvalidArgument,
    MapBusy,
    MapClosed,
    MapError,
    NotSupported,
    OutOfMemory,
    PermissionDenied,
    from_errno,
)
from ebpfmaps.map import Map, class_for, map_info_from_fd, maps_on
from ebpfmaps.maptypes import BPF_F_NO_COMMON_LRU, BPF_F_RDONLY, BPF_F_WRONLY, MapType, type_name
from ebpfmaps.spec import MapInfo, MapSpec

RESIZABLE_TYPES = frozenset(int(t) for t in MapType if t.is_resizable)  # the hash and array families

# The kernel stores max_entries as a u32.
MAX_ENTRIES_LIMIT = 0xFFFFFFFF
COPY_BATCH = 4096
#: ``progress(done, total)``: entries copied so far, of the whole bulk copy.
Progress = Callable[[int, int], None]
# BPF_MAP_FREEZE answers EBUSY while another process's write syscall is in flight: retried this often.
FREEZE_ATTEMPTS = 50


class ResizeWarning(UserWarning):
    """A resize dropped entries (a shrink, or LRU eviction while copying)."""


@dataclass(frozen=True)
class ResizeResult:
    """What a resize did.

    ``dropped`` maps each key that is not in the new map to its value in the old
    map, decoded with the map's codecs: for arrays the indices at or beyond the new
    size, for hash maps the keys that did not fit (and, for LRU maps, any the
    kernel evicted while the copy filled the new map).

    ``lost_after_copy`` counts the entries of the old map that differ, once the new
    map is in place, from what the last copy read: writes to the old map by kernel
    programs (or by other processes, when the old map could not be frozen) that the
    new map does not have. ``old_frozen`` says the resize froze the old map before
    the last copy, so writers in other processes were refused (and moved to the new
    map) rather than lost.
    """

    old_max_entries: int
    new_max_entries: int
    copied: int
    dropped: dict[Any, Any] = field(default_factory=dict)
    repinned: str | None = None
    old_id: int | None = None
    new_id: int | None = None
    lost_after_copy: int = 0
    old_frozen: bool = False

    @property
    def migrated(self) -> bool:
        """False when the size did not change and nothing was done."""
        return self.old_id != self.new_id


class _Snapshot:
    """A map's entries as batch lookups read them: packed keys and values, split per entry only when needed.

    Two reads of a map nobody changed in between come out identical (batch lookups walk
    buckets or indices in order), so comparing snapshots is a comparison of two byte strings.
    """

    def __init__(self, m: Map) -> None:
        chunks = list(m.raw_chunks(values=True, batch_size=COPY_BATCH))
        self.keys = b"".join(c[0] for c in chunks)
        self.values = b"".join(c[1] for c in chunks)
        self.count = sum(c[2] for c in chunks)
        self.ks, self.vs = m.key_size, m.value_codec.size
        self._entries: dict[bytes, bytes] | None = None

    def same(self, other: _Snapshot) -> bool:
        return self.keys == other.keys and self.values == other.values

    def entries(self) -> dict[bytes, bytes]:
        """``{key bytes: value bytes}``."""
        if self._entries is None:
            ks, vs, keys, values = self.ks, self.vs, self.keys, self.values
            self._entries = dict(zip([keys[i * ks : (i + 1) * ks] for i in range(self.count)],
                                     [values[i * vs : (i + 1) * vs] for i in range(self.count)]))
        return self._entries

    def changed_since(self, earlier: _Snapshot) -> int:
        """How many keys have another value (or are present in one snapshot only) than in ``earlier``."""
        if self.same(earlier):
            return 0
        now, then = self.entries(), earlier.entries()
        return sum(1 for k in now.keys() | then.keys() if now.get(k) != then.get(k))


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


def _write_entries(target: Map, keys: bytes, values: bytes, count: int, *, spread_cpus: bool,
                   progress: Progress | None = None) -> bool:
    """Batch-update ``count`` packed entries into ``target`` until everything is written (True) or the map
    is full (False).

    A full non-LRU hash map refuses further inserts (E2BIG): the rest is dropped,
    which the caller finds by reading the new map back. With per-CPU LRU lists
    (BPF_F_NO_COMMON_LRU) a syscall insert draws from the calling CPU's list
    only, so the copy is spread over the CPUs this thread may run on.
    """
    if count == 0:
        return True
    ks, vs = target.key_size, target.value_codec.size
    cpus = sorted(os.sched_getaffinity(0)) if spread_cpus else []
    # One piece per CPU, each holding an equal share of the entries; else pieces of COPY_BATCH.
    share = -(-count // len(cpus)) if cpus else COPY_BATCH
    for n, start in enumerate(range(0, count, share)):
        end = min(start + share, count)
        with _on_cpu(cpus[n % len(cpus)] if cpus else None):
            try:
                target.update_batch(keys[start * ks : end * ks], values[start * vs : end * vs])
                if progress is not None:
                    progress(end, count)
            except OutOfMemory:
                return False  # full before this piece: nothing more fits
            except BatchError as exc:
                if isinstance(exc.cause, OutOfMemory):
                    return False  # full part way: the prefix was written
                raise
    return True


def _packed(pairs: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes, int]:
    return b"".join(k for k, _ in pairs), b"".join(v for _, v in pairs), len(pairs)


def _kept(snap: _Snapshot, is_array: bool, new_max_entries: int) -> tuple[bytes, bytes, int]:
    """The entries of ``snap`` the new map can hold by index: for arrays those below the new size, else all."""
    if not is_array or snap.count == 0:
        return snap.keys, snap.values, snap.count
    idx = struct.unpack(f"={snap.count}I", snap.keys)
    if max(idx) < new_max_entries:
        return snap.keys, snap.values, snap.count
    ks, vs = snap.ks, snap.vs
    return _packed([(snap.keys[i * ks : (i + 1) * ks], snap.values[i * vs : (i + 1) * vs])
                    for i in range(snap.count) if idx[i] < new_max_entries])


def _present_keys(m: Map) -> set[bytes]:
    ks = m.key_size
    out: set[bytes] = set()
    for kb, _, count in m.raw_chunks(values=False, batch_size=COPY_BATCH):
        out.update(kb[i * ks : (i + 1) * ks] for i in range(count))
    return out


# One resize of a kernel map at a time in this process, whichever object asks: a lock per kernel
# map id, dropped once the map is migrated (a resize waiting on it then finds its object moved on).
_resize_locks: dict[int, threading.Lock] = {}
_resize_locks_guard = threading.Lock()


def _lock_for(map_id: int) -> threading.Lock:
    with _resize_locks_guard:
        lock = _resize_locks.get(map_id)
        if lock is None:
            lock = _resize_locks[map_id] = threading.Lock()
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


def _freeze(old: Map) -> bool:
    """Freeze the old map so that other processes' writes fail instead of being lost; False when the kernel
    refuses. EBUSY comes while a write syscall is in flight (retried) or a writable mapping exists."""
    for attempt in range(FREEZE_ATTEMPTS):
        try:
            old.freeze()
            return True
        except MapBusy:
            time.sleep(0.001 * min(attempt + 1, 10))
        except MapError:
            return False  # maps with BTF-managed fields (spin locks, timers, kptrs) cannot be frozen
    return False


def resize(m: Map, new_max_entries: int, *, progress: Progress | None = None) -> ResizeResult:
    """Give ``m`` a new ``max_entries`` by migrating it to a new kernel map (see the module docs).

    Growing keeps every entry (an LRU map may still evict while the copy fills
    it; such keys are reported). Shrinking keeps what fits and reports the rest in
    :attr:`ResizeResult.dropped` and with a :class:`ResizeWarning`. Writers need not
    pause: writes through ebpfmaps, in this process (they wait for the switch) or in
    others holding the map from its pin (they are moved to the new map), are carried
    over. Only writes by kernel programs to the old map during the copy can be
    lost; :attr:`ResizeResult.lost_after_copy` counts them.

    ``progress(done, total)``, when given, is called as the bulk copy of the entries proceeds (one call
    per kernel batch; the CLI draws a progress bar with it).
    """
    return resize_at(m, new_max_entries, stacklevel=3, progress=progress)


def resize_at(m: Map, new_max_entries: int, stacklevel: int, progress: Progress | None = None) -> ResizeResult:
    """``resize`` with the warnings attributed to the caller ``stacklevel`` frames up."""
    if profile.active() == profile.EMBEDDED:
        raise NotSupported("resize: the embedded profile has no resize (its maps have a fixed size)", op="resize")
    _check_resizable(m, new_max_entries)
    notes: list[str] = []
    while True:
        old_id = m.info().id
        with _lock_for(old_id):  # one resize of a kernel map at a time
            if m.info().id != old_id:
                continue  # another object's resize moved this one to a new map meanwhile
            result = _resize_locked(m, new_max_entries, notes, progress)
            if result.migrated:
                with _resize_locks_guard:
                    _resize_locks.pop(old_id, None)
            break
    for note in notes:
        warnings.warn(ResizeWarning(note), stacklevel=stacklevel)
    return result


def _resize_locked(m: Map, new_max_entries: int, notes: list[str], progress: Progress | None) -> ResizeResult:
    info: MapInfo = m.info()
    old_max = info.max_entries
    if new_max_entries == old_max:
        return ResizeResult(old_max, old_max, copied=0, old_id=info.id, new_id=info.id)
    cls = _class_of(info)
    # A handle of resize's own on the old map (a plain map of the family class: raw bytes codecs, no
    # extension hooks): the copy reads it while this process's objects on the map are held.
    old = cls.adopt_fd(m.handle.dup_number(), info)
    try:
        return _migrate(m, old, info, new_max_entries, notes, progress)
    finally:
        old.close()


def _migrate(m: Map, old: Map, info: MapInfo, new_max_entries: int, notes: list[str],
             progress: Progress | None) -> ResizeResult:
    old_max = info.max_entries
    mtype = MapType(info.type)
    is_array = mtype.is_array_family
    spread = mtype.is_lru and bool(info.flags & BPF_F_NO_COMMON_LRU)
    first = _Snapshot(old)

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
    # A plain map of the family class (raw bytes codecs, no extension hooks) does the writing.
    target = _class_of(info).adopt_fd(new_fd)
    temp: str | None = None
    held: list[FD] = []
    fds: list[int] = []
    try:
        # The bulk of the copy, while writers go on.
        complete = _write_entries(target, *_kept(first, is_array, new_max_entries), spread_cpus=spread,
                                  progress=progress)
        pin = _pin_of(m, info.id, notes)
        if pin is not None:
            temp = pinning.migration_temp_path(pin)
            pinning.pin_fd(target.handle, temp)  # before the freeze: see pinning.migration_in_progress
        # Hold every object of this process on the old map: from here their calls wait for the switch.
        objects = maps_on(info.id)
        if not any(o is m for o in objects):
            objects.append(m)
        switched: list[Map] = []
        for o in objects:
            if o is old:
                continue
            h = o.handle
            if not any(h is x for x in held):
                try:
                    h.hold("resize")
                except MapClosed:
                    continue  # closed meanwhile: nothing to switch
                held.append(h)
            switched.append(o)
        old_frozen = not info.frozen and _freeze(old)
        if not old_frozen and not info.frozen and pin is not None:
            notes.append("resize: the kernel refused to freeze the old map (a writable memory mapping of it, or "
                         "fields it manages): writes by other processes during the copy are counted in "
                         "lost_after_copy, not carried over")
        # The last copy: what changed since the first read, on a map nobody writes through syscalls now.
        final = _Snapshot(old)
        if not final.same(first):
            before, after = first.entries(), final.entries()
            gone = [k for k in before if k not in after]
            if gone:
                target.delete_batch(gone)
            changed = [(k, v) for k, v in after.items() if before.get(k) != v]
            if is_array:
                changed = [(k, v) for k, v in changed if struct.unpack("=I", k)[0] < new_max_entries]
            complete = _write_entries(target, *_packed(changed), spread_cpus=spread) and complete
        kdec: Callable[[bytes], Any] = m.key_codec.decode
        vdec: Callable[[bytes], Any] = m.value_codec.decode
        dropped: dict[Any, Any] = {}
        ks, vs = final.ks, final.vs
        if is_array:
            idx = struct.unpack(f"={final.count}I", final.keys)
            for i in range(final.count):
                if idx[i] >= new_max_entries:
                    dropped[kdec(final.keys[i * ks : (i + 1) * ks])] = vdec(final.values[i * vs : (i + 1) * vs])
        elif not complete or mtype.is_lru:
            # Hash maps: read the new map back, since a full map or the LRU decides what stayed (when
            # every write went through to a map that does not evict, everything is there).
            present = _present_keys(target)
            if len(present) < final.count:
                for key, value in final.entries().items():
                    if key not in present:
                        dropped[kdec(key)] = vdec(value)
        copied = final.count - len(dropped)
        if info.frozen:
            target.freeze()
        new_id = target.info().id
        # A descriptor of the new map for each object, with the access it had (read-only objects stay so).
        for o in switched:
            fds.append(target.handle.dup_number() if o.writable else
                       _maps.map_get_fd_by_id(new_id, BPF_F_RDONLY, op="resize").detach())
        if temp is not None and pin is not None:
            _rename(temp, pin)
            temp = None
        # From here on nothing can fail: each object takes the new map over its own fd number.
        for o, fd in zip(switched, fds):
            o.replace_kernel_map(fd, o.spec.replace(max_entries=new_max_entries))
        fds.clear()
    except BaseException:
        for fd in fds:
            os.close(fd)
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass
        raise
    finally:
        for h in held:
            h.release()
        target.close()
    # Writes the old map took after the last read (kernel programs) are not in the new map: count them.
    lost = _Snapshot(old).changed_since(final)
    if dropped:
        sample = ", ".join(repr(k) for k in list(dropped)[:8]) + (", ..." if len(dropped) > 8 else "")
        why = "did not fit" if new_max_entries < old_max else "were evicted by the LRU while copying"
        notes.append(f"resize {type_name(info.type)} map {old_max} -> {new_max_entries}: "
                     f"{len(dropped)} entries {why} and were dropped: {sample}")
    return ResizeResult(old_max, new_max_entries, copied=copied, dropped=dropped, repinned=pin,
                        old_id=info.id, new_id=new_id, lost_after_copy=lost, old_frozen=old_frozen)


def _class_of(info: MapInfo) -> type[Map]:
    """The family class for a map's type (the generic :class:`Map` when none is specific)."""
    return class_for(info.type)


def _rename(temp: str, path: str) -> None:
    """Rename the temporary pin over ``path`` (atomic on bpffs)."""
    try:
        os.rename(temp, path)
    except OSError as exc:
        raise from_errno(exc.errno or 0, "resize", f"rename {temp} -> {path}") from exc

