"""The extensible map: a map (:class:`ebpfmaps.maplike.MapLike`) whose operations go through its provider's callbacks.

Elements live in a real kernel map (``m.base``, a hash, array or LRU hash map) that the
extensible map wraps, through the base map's public API only. Every operation of the map
API is routed through the provider:

==========================  ======================================================================
operation                   callbacks
==========================  ======================================================================
lookup, m[k], get, in       find_element_notify (None: the stored bytes; HIDDEN or KeyNotFound: missing)
update, m[k] = v            update_element_notify, then delete_element_notify(REPLACED) for the
                            value it replaced, or delete_element_notify(ROLLBACK) if the kernel
                            refused the write the provider had accepted
delete, del m[k], pop       delete_element_notify(USER_DELETE)
lookup_and_delete           find_element_notify first (a hidden element stays), then
                            delete_element_notify(USER_DELETE)
keys/values/items, len      get_next_key_and_value_notify (or find_element_notify) per element
update_batch                each element's callbacks; all or nothing (a refusal or a kernel error
                            leaves the map as it was)
delete_batch, clear,        delete_element_notify(USER_DELETE) per element
lookup_and_delete_batch
last close / last unpin     delete_element_notify(MAP_CLEANUP) per element, then delete_map_notify
                            (or, if every holder died, in the next shim process: finish_cleanup)
program load (ebpfmaps)     associate_program (a refusal unloads the program)
reconcile, observe          external_change_notify (or delete_element_notify) per change found
==========================  ======================================================================

Writers of one key are serialized across threads and processes (see
:mod:`ebpfmaps_shim._locks`), so each stored value gets exactly one delete
notification. Kernel programs and tools that write the base map directly do not
go through the callbacks; :meth:`ExtensibleMap.reconcile` finds what they changed.
"""

from __future__ import annotations

import contextlib
import copy
import errno as E
import os
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any, ClassVar, TypeVar

from ebpfmaps import pinning
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.codecs import Codec, IndexCodec, as_items, make_codec
from ebpfmaps.errors import (
    BatchError,
    IncompatibleMap,
    IndexOutOfRange,
    InvalidArgument,
    InvalidFlags,
    InvalidKeySize,
    InvalidValueSize,
    KeyExists,
    KeyNotFound,
    MapClosed,
    MapError,
    NotSupported,
    OutOfMemory,
    PermissionDenied,
)
from ebpfmaps.factory import class_for, map_exists
from ebpfmaps.map import (
    DEFAULT_BATCH,
    ITER_BATCH,
    NO_FLAGS,
    Map,
    batch_size_arg,
    element_flags,
    map_info_from_fd,
    require_ints,
)
from ebpfmaps.maplike import DictProtocol, MapLike, SpecProperties
from ebpfmaps.maptypes import BPF_ANY, BPF_EXIST, BPF_NOEXIST, EXTENSIBLE_MIN, MapType, type_name
from ebpfmaps.spec import MapInfo, MapSpec

from . import _lease, _locks, _meta, registry
from .errors import (
    ProgramAccessRefused,
    ProviderContractError,
    ProviderError,
    ProviderNotificationFailed,
    refusal,
)
from .provider import (
    HIDDEN,
    DeleteReason,
    DispatchTable,
    ExtensibleMapLike,
    ExternalChange,
    MapProvider,
    ProgramType,
)

__all__ = ["RECONCILE_BATCH", "ExtensibleMap", "Observer", "adopt_extensible", "create_extensible", "finish_cleanup"]

_X = TypeVar("_X", bound="ExtensibleMap")
#: Elements per kernel batch lookup (and per notification list) of a reconcile pass.
RECONCILE_BATCH = 4096

_ARRAY = int(MapType.ARRAY)
_CREATE_KWARGS = frozenset({"key_size", "value_size", "max_entries", "key_type", "value_type", "flags", "name",
                            "map_extra", "numa_node", "options"})
# After our last close, a map that is still alive may only be held for a moment: by a pin removed just
# before (the lease pin, or the user's), which bpffs lets go of after an RCU grace period, or by a reader
# such as `bpftool map show` or ebpfmaps.list_maps(), which open every map by id. We wait for a grace
# period and then look again for ~250 ms before concluding that someone really holds it (then there is no
# cleanup: the map lives on).
_GONE_POLL_S = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128)


def _gone(map_id: int) -> bool:
    if not map_exists(map_id):
        return True
    pinning.await_pin_release()
    for pause in (0.0, *_GONE_POLL_S):
        time.sleep(pause)
        if not map_exists(map_id):
            return True
    return False


def _still_pinned(paths: Iterable[str], map_id: int) -> bool:
    """Whether one of the pins this process knows of still holds map ``map_id``."""
    for path in list(paths):
        try:
            fd = pinning.obj_get(path)
        except (MapError, OSError):
            continue
        try:
            if map_info_from_fd(fd).id == map_id:
                return True
        except MapError:
            pass
        finally:
            os.close(fd)
    return False


class ExtensibleMap(SpecProperties, DictProtocol):
    """A map of a custom type id (>= 4096) on a kernel base map, driven by its provider.

    Create with :func:`ebpfmaps.create` (``ebpfmaps.create(4100, key_size=4, value_size=8, max_entries=100)``)
    or open with :func:`ebpfmaps.open_pinned`/:func:`ebpfmaps.open_by_id`. ``m.spec.type`` is the custom id
    and ``m.spec.value_size`` the user's value size; ``m.base`` is the kernel map (what ``bpftool`` and
    kernel programs see, without callbacks), which this object owns and closes with itself.

    It implements :class:`ebpfmaps.maplike.MapLike` (and the providers' :class:`ExtensibleMapLike`) by
    wrapping the base :class:`~ebpfmaps.Map` through its public API only; it is not a ``Map`` subclass,
    so no ``Map`` operation can reach the kernel map without passing through the provider.
    """

    #: Values are the user's bytes, one per element (never one per CPU).
    per_cpu: ClassVar[bool] = False

    _base: Map
    _spec: MapSpec
    _kcodec: Codec
    _vcodec: Codec
    _kenc: Callable[[Any], bytes]
    _venc: Callable[[Any], bytes]
    _vdec: Callable[[bytes], Any]
    _ksize: int
    _vsize: int
    _binding: registry.Binding
    _provider: MapProvider
    _dispatch: DispatchTable
    _map_id: int
    _stored_size: int
    _transforms: bool
    _atomic_take: bool
    _release: Callable[[], object]
    _shim_open: bool
    _observer: Observer | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("create extensible maps with ebpfmaps.create(type_id, ...) after registering a provider")

    # ------------------------------------------------------------------ binding
    @classmethod
    def _wrap(cls, base: Map, spec: MapSpec, kcodec: Codec, vcodec: Codec, binding: registry.Binding,
              *, is_open: bool) -> ExtensibleMap:
        """The object's state around ``base`` (no binding is acquired and no release registered here)."""
        self = cls.__new__(cls)
        self._shim_open = is_open
        self._base = base
        self._spec = spec
        self._kcodec = kcodec
        self._vcodec = vcodec
        self._kenc = kcodec.encode
        self._venc = vcodec.encode
        self._vdec = vcodec.decode
        self._ksize = kcodec.size
        self._vsize = vcodec.size
        self._binding = binding
        self._provider = binding.provider
        self._dispatch = binding.dispatch
        self._map_id = binding.map_id
        self._stored_size = base.value_size
        self._transforms = bool(binding.provider.transforms_values)
        self._atomic_take = True  # until the kernel says it has no lookup_and_delete for the base type
        self._release = _nothing
        self._observer = None
        return self

    @classmethod
    def _bind(cls, base: Map, meta: _meta.ShimMeta, provider: MapProvider, dispatch: DispatchTable,
              kcodec: Codec, vcodec: Codec) -> ExtensibleMap:
        """Wrap ``base`` (which this object then owns) as an extensible map bound to ``provider``."""
        info = base.info()
        spec = base.spec.replace(type=meta.custom_type, value_size=meta.user_value_size, btf_fd=None,
                                   btf_key_type_id=0, btf_value_type_id=0)
        binding = registry.acquire_binding(info.id, provider, dispatch, dict(meta.options), base.pin_path)
        with binding.lock:
            if not binding.leased:
                try:
                    _lease.take(info.id, base.handle)
                except BaseException:
                    registry.drop_handle(binding)
                    raise
                binding.leased = True
        self = cls._wrap(base, spec, kcodec, vcodec, binding, is_open=True)
        self._release = weakref.finalize(self, _release_handle, binding, base, spec, kcodec, vcodec,
                                         weakref.ref(self))
        return self

    @classmethod
    def from_spec(cls, spec: MapSpec, *, key_type: Any = None, value_type: Any = None,
                  options: dict[str, int] | None = None) -> ExtensibleMap:
        """Create a map of the extensible type ``spec.type`` (as ``ebpfmaps.create`` does), through its provider."""
        if spec.type < EXTENSIBLE_MIN:
            raise InvalidArgument(f"{type_name(spec.type)} is a kernel map type, not an extensible one (ids >= "
                                  f"{EXTENSIBLE_MIN})", op="create")
        if spec.inner_map is not None or spec.ifindex:
            raise InvalidArgument("extensible maps have no inner maps and are not offloaded (inner_map, ifindex)",
                                  op="create")
        provider, dispatch = registry.require_provider(spec.type, "create")
        kwargs: dict[str, Any] = {"key_size": spec.key_size if key_type is None else None,
                                  "value_size": spec.value_size if value_type is None else None,
                                  "max_entries": spec.max_entries, "key_type": key_type, "value_type": value_type,
                                  "flags": spec.flags, "name": spec.name, "map_extra": spec.map_extra,
                                  "numa_node": spec.numa_node, "options": options}
        return create_extensible(provider, dispatch, spec.type, kwargs)

    # ------------------------------------------------------------------ what it is
    @property
    def base(self) -> Map:
        """The kernel map holding the (stored) elements; operations on it bypass the provider."""
        return self._base

    @property
    def provider(self) -> MapProvider:
        return self._provider

    @property
    def map_id(self) -> int:
        """The kernel id of the base map (readable after close, unlike :attr:`id`)."""
        return self._map_id

    @property
    def options(self) -> dict[str, int]:
        """The options the map was created with (recorded with the map, the same in every process)."""
        return dict(self._binding.options)

    @property
    def context(self) -> dict[str, Any]:
        """Per-map state for the provider, shared by every handle of this map in this process."""
        return self._binding.context

    @property
    def stored_value_size(self) -> int:
        """The base map's value size: what create_map_notify returned."""
        return self._stored_size

    @property
    def transforms_values(self) -> bool:
        return self._transforms

    @property
    def can_delete(self) -> bool:
        """Whether elements can be deleted: as the base map says (array elements cannot)."""
        return self._base.can_delete










    @property
    def writable(self) -> bool:
        return self._base.writable

    @property
    def pin_path(self) -> str | None:
        return self._base.pin_path

    @property
    def id(self) -> int:
        return self.info().id

    @property
    def fd(self) -> int:
        """The base map's descriptor number now (raises :class:`MapClosed` once closed); see ``Map.fd``."""
        self._require_open("fd")
        return self._base.fd

    @property
    def handle(self) -> FD:
        """The base map's :class:`~ebpfmaps._libbpf.fd.FD` (closed together with this map)."""
        return self._base.handle

    def info(self) -> MapInfo:
        """The kernel's info on the base map, with the custom type and the user's value size."""
        self._require_open("info")
        return self._base.info().replace(type=self._spec.type, value_size=self._spec.value_size)

    @property
    def key_type(self) -> None:
        """None: the base map's BTF describes the stored record, not the user's key type (its codecs do)."""
        self._require_open("key_type")
        return None

    @property
    def value_type(self) -> None:
        """None: the base map's BTF describes the stored record, not the user's value type (its codecs do)."""
        self._require_open("value_type")
        return None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self._base.handle.num}"
        s = self._spec
        return (f"<ExtensibleMap type={s.type} provider={self._provider.provider_name} base={type_name(self._base.type)}"
                f" {state} key_size={s.key_size} value_size={s.value_size} stored_value_size={self._stored_size}"
                f" max_entries={s.max_entries}>")


    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close this handle. The last handle of a map nobody else holds cleans the map up
        (MAP_CLEANUP notifications, then delete_map_notify)."""
        if not self._shim_open:
            return
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
        self._shim_open = False
        self._release()

    @property
    def closed(self) -> bool:
        return not self._shim_open or self._base.closed



    def __copy__(self) -> ExtensibleMap:
        """A second handle on the same map, bound to the same provider, with its own duplicated base."""
        self._require_open("copy")
        base = copy.copy(self._base)
        meta = _meta.ShimMeta(self._spec.type, self._spec.value_size, self._stored_size, self.options)
        try:
            return ExtensibleMap._bind(base, meta, self._provider, self._dispatch, self._kcodec, self._vcodec)
        except BaseException:
            base.close()
            raise

    def __deepcopy__(self, memo: dict[int, Any]) -> ExtensibleMap:
        """As :meth:`__copy__`: the kernel map is shared (its contents are not Python data to copy)."""
        return self.__copy__()

    def __reduce__(self) -> Any:
        raise TypeError("an ExtensibleMap cannot be pickled: pin it and open_pinned() it in the other process")

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the base map; the map outlives this process until unpinned (cleanup waits for the last unpin)."""
        self._require_open("pin")
        self._base.pin(path)
        pinned = self._base.pin_path
        if pinned is not None:
            self._binding.pin_paths.add(pinned)

    def unpin(self, path: str | os.PathLike[str] | None = None) -> None:
        """Remove the pin (this map's own, or ``path``); the last holder gone, the map is cleaned up."""
        self._base.unpin(path)

    def freeze(self) -> None:
        """Make the map read-only for syscalls (BPF_MAP_FREEZE); programs may still write."""
        self._require_open("freeze")
        self._base.freeze()

    def replace_kernel_map(self, fd: int, spec: MapSpec) -> None:
        """Refused: the kernel map of an extensible map is its base, bound to the provider for its lifetime."""
        raise NotSupported("replace_kernel_map: an extensible map's kernel map is its base, which cannot be "
                           "swapped (extensible maps cannot be resized)", op="replace_kernel_map")

    def check_packed_keys(self, keys: bytes, count: int) -> None:
        """Check ``count`` packed keys before a batch write, as the base map does."""
        self._base.check_packed_keys(keys, count)

    def associate_program(self, program_type: ProgramType) -> Map:
        """Let a kernel program of ``program_type`` use this map; returns the base map to hand to it.

        Kernel programs see the base map: their reads and writes do not pass through the provider's
        callbacks. So a provider that transforms values is refused (the program would see stored bytes,
        not the user's), and any provider may refuse in its ``associate_program`` callback.
        """
        if isinstance(program_type, bool) or not isinstance(program_type, (int, str)) or program_type in ("", -1):
            raise InvalidArgument(f"program_type must be a BPF_PROG_TYPE number or name, not {program_type!r}",
                                  op="associate_program")
        self._require_open("associate_program")
        name = self._provider.provider_name
        if self._transforms and not getattr(self._provider, "programs_see_stored", False):
            raise ProgramAccessRefused(
                f"associate_program: {name} transforms values (stored bytes differ from the user's), and kernel "
                f"programs would bypass it; kernel access to map type {self._spec.type} is refused (a provider "
                f"whose programs should read the stored form declares programs_see_stored = True)",
                callback="associate_program", op="associate_program")
        fn = self._dispatch.associate_program
        if fn is not None:
            try:
                fn(self, program_type)
            except Exception as exc:
                raise ProgramAccessRefused(f"associate_program: {name}.associate_program refused program type "
                                           f"{program_type!r}: {exc}", callback="associate_program",
                                           op="associate_program", errno=getattr(exc, "errno", None)) from exc
        self._binding.programs.append(program_type)
        return self._base

    def _require_open(self, op: str) -> None:
        if not self._shim_open or self._base.closed:
            raise MapClosed(f"{op}: the map is closed", op=op)

    def _check_writable(self, op: str) -> None:
        if not self._base.writable:
            raise PermissionDenied(f"{op}: the map is read-only for this process (opened or created with BPF_F_RDONLY)",
                                   op=op)

    # ------------------------------------------------------------------ provider calls
    def _accept(self, kb: bytes, vb: bytes, flags: int) -> bytes:
        """The bytes to store for an update the provider accepts (it raises to refuse)."""
        fn = self._dispatch.update_element_notify
        if fn is None:
            return vb
        try:
            out = fn(self, kb, vb, flags)
        except ProviderError:
            raise  # a client service the callback used already named what failed
        except Exception as exc:
            raise refusal(self._provider.provider_name, "update_element_notify", "update", exc,
                          f" key {kb.hex()}") from exc
        if out is None:
            return vb
        stored = self._returned_bytes("update_element_notify", "update", out, self._stored_size, "stored")
        if not self._transforms and stored != vb:
            raise ProviderContractError(f"update: {self._provider.provider_name}.update_element_notify returned a "
                                        f"value other than the user's but declares transforms_values = False",
                                        callback="update_element_notify", op="update")
        return stored

    def _returned_bytes(self, callback: str, op: str, out: object, size: int, what: str) -> bytes:
        """``out`` as bytes when it is bytes-like of ``size`` bytes; anything else breaks the contract."""
        name = self._provider.provider_name
        if not isinstance(out, (bytes, bytearray, memoryview)):
            raise ProviderContractError(f"{op}: {name}.{callback} returned {type(out).__name__} {out!r:.40}; expected "
                                        f"None or {size} bytes (the {what} value size)", callback=callback, op=op)
        data = bytes(out)
        if len(data) != size:
            raise ProviderContractError(f"{op}: {name}.{callback} returned {len(data)} bytes; the {what} value size "
                                        f"is {size}", callback=callback, op=op)
        return data

    def _user_value(self, kb: bytes, stored: bytes, op: str = "lookup") -> bytes | None:
        """The user's bytes for ``stored`` (None: the provider hides the element)."""
        fn = self._dispatch.find_element_notify
        if fn is None:
            return stored
        try:
            out = fn(self, kb, stored)
        except KeyNotFound:
            return None  # the documented way to hide, as returning HIDDEN
        except ProviderError:
            raise
        except Exception as exc:
            raise refusal(self._provider.provider_name, "find_element_notify", op, exc, f" key {kb.hex()}") from exc
        return self._checked_user_value("find_element_notify", op, out, stored)

    def _visit(self, prev: bytes | None, kb: bytes, stored: bytes) -> bytes | None:
        fn = self._dispatch.get_next_key_and_value_notify
        if fn is None:
            return self._user_value(kb, stored, "iterate")
        try:
            out = fn(self, prev, kb, stored)
        except KeyNotFound:
            return None
        except ProviderError:
            raise
        except Exception as exc:
            raise refusal(self._provider.provider_name, "get_next_key_and_value_notify", "iterate", exc,
                          f" key {kb.hex()}") from exc
        return self._checked_user_value("get_next_key_and_value_notify", "iterate", out, stored)

    def _checked_user_value(self, callback: str, op: str, out: object, stored: bytes) -> bytes | None:
        if out is HIDDEN:
            return None
        if out is None:
            out = stored  # None means unchanged: the stored bytes are the user's
        data = self._returned_bytes(callback, op, out, self._vsize, "map's")
        if not self._transforms and data != stored:
            raise ProviderContractError(f"{op}: {self._provider.provider_name}.{callback} returned a value other than "
                                        f"the stored one but declares transforms_values = False", callback=callback,
                                        op=op)
        return data

    def _notify_delete(self, kb: bytes, stored: bytes, reason: DeleteReason) -> None:
        fn = self._dispatch.delete_element_notify
        if fn is None:
            return
        try:
            fn(self, kb, stored, reason)
        except Exception as exc:
            raise ProviderNotificationFailed(
                f"{self._provider.provider_name}.delete_element_notify({reason.name}) failed after the change it "
                f"reports (the map operation itself completed): {exc!r}", callback="delete_element_notify",
                op="delete") from exc

    # ------------------------------------------------------------------ checks
    def _check_flags(self, flags: int, op: str) -> int:
        """``flags`` as an int (None: BPF_ANY, the library's rule), checked for what extensible maps accept."""
        flags = element_flags(flags, op)
        if flags & ~(BPF_NOEXIST | BPF_EXIST):
            raise InvalidFlags(f"{op} on an extensible map accepts BPF_ANY, BPF_NOEXIST and BPF_EXIST, "
                               f"not {flags:#x}", op=op)
        if flags & BPF_NOEXIST and flags & BPF_EXIST:
            raise InvalidFlags(f"{op}: BPF_NOEXIST and BPF_EXIST exclude each other", op=op)
        return flags

    def _check_delete(self, op: str) -> None:
        self._require_open(op)
        self._check_writable(op)
        if not self._base.can_delete:
            raise NotSupported(f"{op}: map type {self._spec.type} is based on {type_name(self._base.type)} maps, "
                               f"whose elements cannot be deleted", op=op)

    # ------------------------------------------------------------------ client services (for providers)
    def find_element(self, key: Any) -> bytes | None:
        """Client service: the stored bytes for ``key`` (user key or raw key bytes), no callbacks."""
        self._require_open("find_element")
        kb = self._raw_key(key)
        return self._base.lookup_bytes(kb)

    def remove_element(self, key: Any, reason: DeleteReason = DeleteReason.EVICTED) -> bool:
        """Client service: remove ``key`` and notify ``reason``; False when it was absent."""
        self._check_delete("remove_element")
        kb = self._raw_key(key)
        with _locks.key_lock(self._map_id, kb):
            try:
                stored = self._take_stored(kb)
            except KeyNotFound:
                return False
            self._notify_delete(kb, stored, reason)
        return True

    def stored_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Client service: ``(key bytes, stored bytes)`` of every element, no callbacks."""
        self._require_open("stored_items")
        return self._base.raw_pairs(values=True)

    def locked(self, key: Any) -> contextlib.AbstractContextManager[None]:
        """Client service: hold the write lock of ``key`` (across threads and processes) for a read-modify-write."""
        self._require_open("locked")
        return _locks.key_lock(self._map_id, self._raw_key(key))

    # ------------------------------------------------------------------ changes made outside the shim
    def _seen(self, kb: bytes, stored: bytes | None) -> None:
        """A write through the shim here: keep the reconcile snapshot current (it is not an outside change)."""
        observed = self._binding.observed
        if observed is not None:
            self._binding.observed_chunks = None  # the next pass compares element by element
            if stored is None:
                observed.pop(kb, None)
            else:
                observed[kb] = stored

    def reconcile(self, *, batch_size: int = RECONCILE_BATCH) -> list[ExternalChange]:
        """Find the changes made to the base map outside the shim since the last pass, and deliver them.

        One pass reads the whole base map with kernel batch lookups (``batch_size`` elements per
        system call) and compares it with what the previous pass saw, kept up to date by every write
        through the shim in this process. Each difference is one :class:`ExternalChange`:
        ``EXTERNAL_UPDATE`` for a key that appeared or changed, ``EXTERNAL_DELETE`` for one that went
        away, ``EVICTED`` for one that went away from an LRU base map while other keys arrived (the
        kernel evicts to make room). The changes go to ``external_change_notify`` in lists of up to
        ``batch_size``; a provider without it hears each replaced or removed stored value through
        ``delete_element_notify`` with the change's reason. Each change is delivered once.

        The first pass only records the map as it is (and returns ``[]``). Writes by shim handles in
        other processes are outside changes here. The cost is linear: one dict lookup and one bytes
        comparison per element plus one system call per batch (``make bench`` measures it). Writers in
        this process wait for the read; other processes are not stopped. Returns the changes.
        """
        n = batch_size_arg(batch_size, "reconcile")
        self._require_open("reconcile")
        binding = self._binding
        with binding.reconcile_lock:
            # Writers of this process keep the snapshot current, so none may run between reading the map
            # and storing what was read; other processes' writes are outside changes and need no exclusion.
            with _locks.local_map_lock(self._map_id):
                chunks = [(keys, vals) for keys, vals, _ in self._base.raw_chunks(values=True, batch_size=n)]
                previous, previous_chunks = binding.observed, binding.observed_chunks
                if previous is None:
                    binding.observed, binding.observed_chunks = self._as_dict(chunks), chunks
                    return []
                changes = self._changed_values(previous, previous_chunks, chunks)
                if changes is None:  # keys came or went: compare the whole map
                    current = self._as_dict(chunks)
                    changes = _diff(previous, current, self._base.type == int(MapType.LRU_HASH))
                    binding.observed = current
                binding.observed_chunks = chunks
            self._deliver(changes, n)
        return changes

    def _as_dict(self, chunks: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
        ks, vs = self._ksize, self._stored_size
        current: dict[bytes, bytes] = {}
        for keys, vals in chunks:
            current.update(zip([keys[i : i + ks] for i in range(0, len(keys), ks)],
                               [vals[i : i + vs] for i in range(0, len(vals), vs)]))
        return current

    def _changed_values(self, previous: dict[bytes, bytes], previous_chunks: list[tuple[bytes, bytes]] | None,
                        chunks: list[tuple[bytes, bytes]]) -> list[ExternalChange] | None:
        """The fast path of a pass: when the kernel lists the very same keys as last time (same chunks of
        keys, in the same order), only chunks whose values differ are compared element by element. None
        when keys came or went (or a write through the shim touched the snapshot): the caller diffs all."""
        if previous_chunks is None or len(previous_chunks) != len(chunks):
            return None
        if any(old[0] != new[0] for old, new in zip(previous_chunks, chunks)):
            return None
        ks, vs = self._ksize, self._stored_size
        update = DeleteReason.EXTERNAL_UPDATE
        changes: list[ExternalChange] = []
        for (_, old_vals), (keys, vals) in zip(previous_chunks, chunks):
            if old_vals == vals:
                continue
            olds = [old_vals[i : i + vs] for i in range(0, len(old_vals), vs)]
            news = [vals[i : i + vs] for i in range(0, len(vals), vs)]
            for i in [i for i, (old, new) in enumerate(zip(olds, news)) if old != new]:
                kb = keys[i * ks : (i + 1) * ks]
                changes.append(ExternalChange(kb, olds[i], news[i], update))
                previous[kb] = news[i]
        return changes

    def _deliver(self, changes: list[ExternalChange], batch_size: int) -> None:
        failure: Exception | None = None
        batch_fn = self._dispatch.external_change_notify
        if batch_fn is not None:
            for start in range(0, len(changes), batch_size):
                try:
                    batch_fn(self, changes[start : start + batch_size])
                except Exception as exc:
                    failure = failure or exc
            callback = "external_change_notify"
        else:
            callback = "delete_element_notify"
            fn = self._dispatch.delete_element_notify
            if fn is not None:
                for change in changes:
                    if change.old is not None:
                        try:
                            fn(self, change.key, change.old, change.reason)
                        except Exception as exc:
                            failure = failure or exc
        if failure is not None:
            raise ProviderNotificationFailed(f"reconcile: {self._provider.provider_name}.{callback} failed (every "
                                             f"change was still delivered once): {failure!r}", callback=callback,
                                             op="reconcile") from failure

    def observe(self, interval: float | None = 1.0) -> Observer | None:
        """Run :meth:`reconcile` every ``interval`` seconds in a background thread (``None``: stop it).

        Opt-in; one observer per handle, stopped when the handle closes. Returns the :class:`Observer`
        (its ``errors`` count failed passes and ``last_error`` keeps the latest).
        """
        if self._observer is not None:
            self._observer.stop()
            self._observer = None
        if interval is None:
            return None
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            raise InvalidArgument(f"observe: interval must be a number of seconds > 0, not {interval!r}",
                                  op="observe")
        self._require_open("observe")
        self._observer = Observer(self, float(interval))
        return self._observer

    def _raw_key(self, key: Any) -> bytes:
        if isinstance(key, (bytes, bytearray, memoryview)) and len(key) == self._ksize:
            return bytes(key)
        return self._kenc(key)

    # ------------------------------------------------------------------ element operations
    def lookup(self, key: Any, flags: int = 0) -> Any:
        """The user's value for ``key`` (through find_element_notify), or ``None``."""
        if flags is not NO_FLAGS and element_flags(flags, "lookup"):
            raise InvalidFlags("lookup on an extensible map takes no flags (no BPF_F_LOCK)", op="lookup")
        out = self.lookup_bytes(key)
        return None if out is None else self._vdec(out)

    def next_key(self, key: Any = None) -> Any:
        """The key after ``key`` in the base map's order (BPF_MAP_GET_NEXT_KEY), decoded by the key codec.

        The kernel's semantics, as :meth:`ebpfmaps.Map.next_key`: ``None`` gives the first key, the last
        key ``None``, an absent key the first key on hash-based maps. The answer is the base map's: no
        provider callback runs (:meth:`keys` lists what the provider reports present).
        """
        self._require_open("next_key")
        kb: bytes | None = None
        if key is not None:
            try:
                kb = self._raw_key(key)
            except IndexOutOfRange:
                kb = None  # an index past the end: the kernel starts over at the first one
        out = self.next_key_bytes(kb)
        return None if out is None else self._kcodec.decode(out)

    def next_key_bytes(self, key: bytes | None) -> bytes | None:
        """:meth:`next_key` with raw key bytes in and out (the base map's answer)."""
        self._require_open("next_key")
        return self._base.next_key_bytes(key)

    def lookup_bytes(self, key: Any) -> bytes | None:
        """The user's value bytes for ``key`` (through find_element_notify), or ``None``."""
        if not self._shim_open:
            raise MapClosed("lookup: the map is closed", op="lookup")
        try:
            kb = self._kenc(key)
        except IndexOutOfRange:
            return None
        stored = self._base.lookup_bytes(kb)
        if stored is None:
            return None
        return self._user_value(kb, stored)

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        """Insert or replace through update_element_notify; the replaced value gets delete_element_notify(REPLACED)."""
        flags = self._check_flags(flags, "update")
        self._require_open("update")
        self._check_writable("update")
        kb = self._kenc(key)
        vb = self._venc(value)
        with _locks.key_lock(self._map_id, kb):
            old = self._base.lookup_bytes(kb)
            if flags & BPF_NOEXIST and old is not None:
                raise KeyExists(f"update: key {key!r} exists (BPF_NOEXIST)", op="update")
            if flags & BPF_EXIST and old is None:
                raise KeyNotFound(f"update: key {key!r} not found (BPF_EXIST)", op="update")
            stored = self._accept(kb, vb, flags)
            try:
                self._base.update(kb, stored, flags)
            except MapError as exc:
                self._rollback([(kb, stored)], exc)
                raise
            self._seen(kb, stored)
            if old is not None:
                self._notify_delete(kb, old, DeleteReason.REPLACED)

    def _rollback(self, accepted: list[tuple[bytes, bytes]], cause: MapError) -> None:
        """Tell the provider that values it accepted never landed (the caller re-raises ``cause``)."""
        failure: Exception | None = None
        for kb, stored in accepted:
            try:
                self._notify_delete(kb, stored, DeleteReason.ROLLBACK)
            except ProviderError as exc:
                failure = failure or exc
        if failure is not None:
            cause.message += f" (and the provider's ROLLBACK notification failed: {failure})"

    def delete(self, key: Any) -> None:
        """Remove ``key`` (KeyNotFound when absent); the provider hears delete_element_notify(USER_DELETE)."""
        self._check_delete("delete")
        kb = self._kenc(key)
        with _locks.key_lock(self._map_id, kb):
            stored = self._take_stored(kb)
            self._notify_delete(kb, stored, DeleteReason.USER_DELETE)

    def lookup_and_delete(self, key: Any) -> Any:
        """Remove ``key`` and return the user's value; KeyNotFound if absent or hidden by the provider.

        A value is removed only when it is returned: a hidden element stays, and a refusal of
        find_element_notify leaves the map as it was.
        """
        self._check_delete("lookup_and_delete")
        kb = self._kenc(key)
        with _locks.key_lock(self._map_id, kb):
            out = self._take_visible(kb)
            if out is None:
                raise KeyNotFound(f"lookup_and_delete: key {key!r} not found", errno=E.ENOENT, op="lookup_and_delete")
        return self._vdec(out)

    def _take_visible(self, kb: bytes) -> bytes | None:
        """Remove ``kb`` and return its user bytes, unless it is absent or hidden (then it stays; None).

        The caller holds the key's lock. The provider judges the value first; the removal then takes
        it atomically, and if a kernel program changed it in between, the value taken is judged again
        and put back when that one is hidden.
        """
        stored = self._base.lookup_bytes(kb)
        if stored is None:
            return None
        out = self._user_value(kb, stored, "lookup_and_delete")
        if out is None:
            return None
        try:
            taken = self._take_stored(kb)
        except KeyNotFound:
            return None
        if taken != stored:
            try:
                out = self._user_value(kb, taken, "lookup_and_delete")
            except BaseException:
                self._put_back(kb, taken)
                raise
            if out is None:
                self._put_back(kb, taken)
                return None
        self._notify_delete(kb, taken, DeleteReason.USER_DELETE)
        return out

    def _put_back(self, kb: bytes, stored: bytes) -> None:
        with contextlib.suppress(KeyExists):  # a program wrote the key again meanwhile: its value wins
            self._base.update(kb, stored, BPF_NOEXIST)
        self._seen(kb, self._base.lookup_bytes(kb))


    # ------------------------------------------------------------------ dict protocol





    def _take_all(self) -> Iterator[tuple[bytes, bytes]]:
        """Remove every element with USER_DELETE notifications, yielding ``(key, stored)``; bounded passes."""
        for _ in range(8):
            keys = [kb for kb, _ in self._base.raw_pairs(values=False)]
            if not keys:
                return
            for kb in keys:
                with _locks.key_lock(self._map_id, kb):
                    try:
                        stored = self._take_stored(kb)
                    except KeyNotFound:
                        continue  # deleted meanwhile by someone else
                    self._notify_delete(kb, stored, DeleteReason.USER_DELETE)
                yield kb, stored

    def _take_all_visible(self) -> Iterator[tuple[bytes, bytes]]:
        """Remove every element the provider shows, yielding ``(key, user bytes)``; hidden ones stay."""
        kept: set[bytes] = set()
        for _ in range(8):
            keys = [kb for kb, _ in self._base.raw_pairs(values=False) if kb not in kept]
            if not keys:
                return
            for kb in keys:
                with _locks.key_lock(self._map_id, kb):
                    out = self._take_visible(kb)
                if out is None:
                    kept.add(kb)
                else:
                    yield kb, out

    def clear(self) -> int:
        """Delete every element (USER_DELETE notifications); returns how many."""
        self._check_delete("clear")
        return sum(1 for _ in self._take_all())

    # ------------------------------------------------------------------ iteration
    def _take_stored(self, kb: bytes) -> bytes:
        """Remove ``kb`` from the base map and return its stored bytes; :class:`KeyNotFound` when absent.

        Callers hold the key's lock. Kernels without BPF_MAP_LOOKUP_AND_DELETE_ELEM for the base type
        (hash maps before Linux 5.14) get a lookup then a delete: atomic for every shim user, who takes
        the same lock, though not against kernel programs writing the key in between.
        """
        if self._atomic_take:
            try:
                stored: bytes = self._base.lookup_and_delete(kb)
                self._seen(kb, None)
                return stored
            except NotSupported as exc:
                if exc.errno is None:
                    raise
                self._atomic_take = False
        found = self._base.lookup_bytes(kb)
        if found is None:
            raise KeyNotFound(f"lookup_and_delete: key {kb.hex()} not found", errno=E.ENOENT, op="lookup_and_delete")
        self._base.delete(kb)
        self._seen(kb, None)
        return found

    def raw_chunks(self, values: bool = True, batch_size: int = ITER_BATCH) -> Iterator[tuple[bytes, bytes, int]]:
        """:meth:`raw_pairs` packed into ``(keys, user values, count)`` chunks of up to ``batch_size``."""
        batch_size_arg(batch_size, "raw_chunks")
        keys: list[bytes] = []
        vals: list[bytes] = []
        for kb, vb in self.raw_pairs(values):
            keys.append(kb)
            vals.append(vb)
            if len(keys) >= batch_size:
                yield b"".join(keys), b"".join(vals), len(keys)
                keys.clear()
                vals.clear()
        if keys:
            yield b"".join(keys), b"".join(vals), len(keys)

    def raw_pairs(self, values: bool = True) -> Iterator[tuple[bytes, bytes]]:
        """``(key, user value)`` pairs: each element through get_next_key_and_value_notify (or find)."""
        self._require_open("iterate")
        if (self._dispatch.get_next_key_and_value_notify is None and self._dispatch.find_element_notify is None
                and not values):
            yield from self._base.raw_pairs(values=False)
            return
        prev: bytes | None = None
        for kb, stored in self._base.raw_pairs(values=True):
            out = self._visit(prev, kb, stored)
            prev = kb
            if out is not None:
                yield kb, out

    def _iter_batches_raw(self, batch_size: int, delete: bool) -> Iterator[tuple[bytes, bytes, int]]:
        """Packed chunks of user keys and values, each element through its callbacks."""
        n = batch_size_arg(batch_size, "lookup_and_delete_batch" if delete else "lookup_batch")
        source: Iterator[tuple[bytes, bytes]]
        if delete:
            self._check_delete("lookup_and_delete_batch")
            source = self._take_all_visible()
        else:
            source = self.raw_pairs(values=True)
        keys: list[bytes] = []
        vals: list[bytes] = []
        for kb, vb in source:
            keys.append(kb)
            vals.append(vb)
            if len(keys) == n:
                yield b"".join(keys), b"".join(vals), n
                keys, vals = [], []
        if keys:
            yield b"".join(keys), b"".join(vals), len(keys)

    def __len__(self) -> int:
        """Elements the provider reports present (a full walk)."""
        return sum(1 for _ in self.raw_pairs(values=True))

    # keys()/values()/items() are lazy like Map's: packed chunks of the provider's answers, decoded a
    # chunk at a time. keys() walks values too: the provider decides which elements are present.

    def keys(self) -> Iterator[Any]:
        kdm = self._kcodec.decode_many
        return chain.from_iterable(kdm(kb, n) for kb, _, n in self._iter_batches_raw(ITER_BATCH, delete=False))

    def values(self) -> Iterator[Any]:
        vdm = self._vcodec.decode_many
        return chain.from_iterable(vdm(vb, n) for _, vb, n in self._iter_batches_raw(ITER_BATCH, delete=False))

    def items(self) -> Iterator[tuple[Any, Any]]:
        kdm, vdm = self._kcodec.decode_many, self._vcodec.decode_many
        return chain.from_iterable(zip(kdm(kb, n), vdm(vb, n))
                                   for kb, vb, n in self._iter_batches_raw(ITER_BATCH, delete=False))


    def iter_batches(self, batch_size: int = DEFAULT_BATCH, *, delete: bool = False) -> Iterator[list[tuple[Any, Any]]]:
        """Lazy chunks of decoded ``(key, value)`` pairs, each element through its callbacks."""
        kdm, vdm = self._kcodec.decode_many, self._vcodec.decode_many
        for keys, vals, count in self._iter_batches_raw(batch_size, delete):
            yield list(zip(kdm(keys, count), vdm(vals, count)))

    def iter_batches_raw(self, batch_size: int = DEFAULT_BATCH, *,
                         delete: bool = False) -> Iterator[tuple[bytes, bytes, int]]:
        """Lazy ``(keys, values, count)`` with packed user bytes, each element through its callbacks."""
        return self._iter_batches_raw(batch_size, delete)

    # ------------------------------------------------------------------ batches
    def lookup_batch(self, keys: Iterable[Any] | None = None, *, batch_size: int = DEFAULT_BATCH) -> dict[Any, Any]:
        """The user's values of ``keys`` (or of every element), each through its callbacks."""
        batch_size_arg(batch_size, "lookup_batch")
        if keys is not None:
            out: dict[Any, Any] = {}
            for k in as_items(keys, "key"):
                v = self.lookup(k)
                if v is not None:
                    out[k] = v
            return out
        kdm, vdm = self._kcodec.decode_many, self._vcodec.decode_many
        result: dict[Any, Any] = {}
        for kb, vb, count in self._iter_batches_raw(batch_size, delete=False):
            result.update(zip(kdm(kb, count), vdm(vb, count)))
        return result

    def lookup_many(self, keys: Iterable[Any]) -> list[Any]:
        """The user's values of ``keys`` in order (``None`` for an absent key), each through its callbacks."""
        return [self.lookup(k) for k in as_items(keys, "key")]

    def update_many(self, keys: Iterable[Any], values: Iterable[Any], flags: int = BPF_ANY) -> int:
        """Write many elements through the provider's callbacks: :meth:`update_batch` (all or nothing)."""
        return self.update_batch(keys, values, flags)

    def to_numpy(self, *, batch_size: int = DEFAULT_BATCH) -> Any:
        """Refused: an extensible map's values are what its provider makes of the stored bytes, not a
        fixed binary layout a numpy array could hold; :meth:`lookup_batch` gives them."""
        raise NotSupported("to_numpy: an extensible map's values come from its provider's callbacks; "
                           "use lookup_batch()", op="to_numpy")

    def iter_numpy(self, *, batch_size: int = DEFAULT_BATCH) -> Iterator[Any]:
        """Refused, as :meth:`to_numpy` is: :meth:`iter_batches` streams the provider's values instead."""
        raise NotSupported("iter_numpy: an extensible map's values come from its provider's callbacks; "
                           "use iter_batches()", op="iter_numpy")

    def lookup_and_delete_batch(self, *, batch_size: int = DEFAULT_BATCH) -> dict[Any, Any]:
        """Drain the map: every element is removed (USER_DELETE) and the present ones returned."""
        self._check_delete("lookup_and_delete_batch")
        kdm, vdm = self._kcodec.decode_many, self._vcodec.decode_many
        result: dict[Any, Any] = {}
        for kb, vb, count in self._iter_batches_raw(batch_size, delete=True):
            result.update(zip(kdm(kb, count), vdm(vb, count)))
        return result

    def delete_batch(self, keys: Iterable[Any]) -> int:
        """Delete many keys (absent ones are skipped), each with delete_element_notify(USER_DELETE)."""
        self._check_delete("delete_batch")
        kb_all, n = self._kcodec.encode_many(keys)
        ks = self._ksize
        return self._delete_raw_keys([kb_all[i * ks : (i + 1) * ks] for i in range(n)])

    def _delete_raw_keys(self, keys: list[bytes]) -> int:
        deleted = 0
        for kb in keys:
            with _locks.key_lock(self._map_id, kb):
                try:
                    stored = self._take_stored(kb)
                except KeyNotFound:
                    continue
                self._notify_delete(kb, stored, DeleteReason.USER_DELETE)
            deleted += 1
        return deleted

    def update_batch(self, keys: Iterable[Any], values: Iterable[Any], flags: int = BPF_ANY) -> int:
        """Write many elements, all or nothing.

        Every element goes through update_element_notify first; if the provider refuses one, those it had
        accepted get ROLLBACK notifications and nothing is written. Then one kernel batch writes them; if the
        kernel stops part way, the keys are restored to what they held and every accepted value gets a ROLLBACK
        notification. On success each replaced value gets one REPLACED notification.
        """
        flags = self._check_flags(flags, "update_batch")
        self._require_open("update_batch")
        self._check_writable("update_batch")
        kb_all, nk = self._kcodec.encode_many(keys)
        vb_all, nv = self._vcodec.encode_many(values)
        if nk != nv:
            raise InvalidArgument(f"update_batch: {nk} keys but {nv} values", op="update_batch")
        if nk == 0:
            return 0
        self._base.check_packed_keys(kb_all, nk)
        ks, vs = self._ksize, self._vsize
        klist = [kb_all[i * ks : (i + 1) * ks] for i in range(nk)]
        vlist = [vb_all[i * vs : (i + 1) * vs] for i in range(nk)]
        with _locks.stripes_lock(self._map_id, {_locks.stripe_of(kb) for kb in klist}):
            original: dict[bytes, bytes | None] = {}
            current: dict[bytes, bytes | None] = {}
            accepted: list[tuple[bytes, bytes]] = []
            replaced: list[tuple[bytes, bytes]] = []
            try:
                for i, (kb, vb) in enumerate(zip(klist, vlist)):
                    if kb not in current:
                        current[kb] = original[kb] = self._base.lookup_bytes(kb)
                    old = current[kb]
                    if (flags & BPF_NOEXIST and old is not None) or (flags & BPF_EXIST and old is None):
                        # Elements are taken in order, as the kernel's would be: an earlier element that
                        # found the map full is the batch's error, not this later one.
                        self._check_room_before(i, klist, original)
                    if flags & BPF_NOEXIST and old is not None:
                        raise KeyExists(f"update_batch: element {i} (key {kb!r}) exists (BPF_NOEXIST)",
                                        op="update_batch")
                    if flags & BPF_EXIST and old is None:
                        raise KeyNotFound(f"update_batch: element {i} (key {kb!r}) not found (BPF_EXIST)",
                                          op="update_batch")
                    stored = self._accept(kb, vb, flags)
                    accepted.append((kb, stored))
                    if old is not None:
                        replaced.append((kb, old))
                    current[kb] = stored
            except MapError as exc:
                self._rollback(accepted, exc)
                raise
            try:
                self._base.update_batch(b"".join(klist), b"".join(s for _, s in accepted), flags)
            except MapError as exc:
                # The kernel may have written a prefix; we undo it, so the error is the cause, not a partial batch.
                cause = exc.cause if isinstance(exc, BatchError) else exc
                self._restore(original, cause)
                cause.message += " (the whole batch was undone)"
                self._rollback(accepted, cause)
                raise cause from None
            for kb, stored in accepted:
                self._seen(kb, stored)
            failure: ProviderError | None = None
            for kb, old in replaced:
                try:
                    self._notify_delete(kb, old, DeleteReason.REPLACED)
                except ProviderError as exc:
                    failure = failure or exc
            if failure is not None:
                raise failure
        return nk

    def _check_room_before(self, index: int, klist: list[bytes], original: dict[bytes, bytes | None]) -> None:
        """Raise OutOfMemory if the new keys among the batch's first ``index`` elements do not fit in the
        base map (a hash map holds at most max_entries elements; LRU maps evict and arrays have every index)."""
        if self._base.type != int(MapType.HASH):
            return
        new_keys = {kb for kb in klist[:index] if original.get(kb) is None}
        if not new_keys:
            return
        room = self._base.max_entries - sum(1 for _ in self._base.raw_pairs(values=False))
        if len(new_keys) > room:
            raise OutOfMemory(f"update_batch: the map is full before element {index} "
                              f"(max_entries={self._base.max_entries})", op="update_batch")

    def _restore(self, original: dict[bytes, bytes | None], cause: MapError) -> None:
        """Put each key back as it was before a failed batch (we hold their locks)."""
        unrestored = 0
        for kb, old in original.items():
            try:
                if old is None:
                    if self._base.can_delete:
                        try:
                            self._base.delete(kb)
                        except KeyNotFound:
                            pass
                elif self._base.lookup_bytes(kb) != old:
                    self._base.update(kb, old)
                self._seen(kb, old)
            except MapError:
                unrestored += 1
        if unrestored:
            cause.message += f" ({unrestored} keys could not be restored)"


def _diff(previous: dict[bytes, bytes], current: dict[bytes, bytes], lru: bool) -> list[ExternalChange]:
    """The changes from ``previous`` to ``current`` (key -> stored bytes)."""
    update = DeleteReason.EXTERNAL_UPDATE
    changes = [ExternalChange(kb, old, new, update)
               for kb, new in current.items() if (old := previous.get(kb)) != new]
    appeared = sum(1 for c in changes if c.old is None)
    if len(previous) > len(current) - appeared:
        # Some keys went away (the scan is skipped when none did). On an LRU map they were evicted if
        # others arrived meanwhile: the kernel evicts to make room.
        gone = DeleteReason.EVICTED if lru and appeared else DeleteReason.EXTERNAL_DELETE
        changes += [ExternalChange(kb, old, None, gone) for kb, old in previous.items() if kb not in current]
    return changes


class Observer:
    """A background thread that reconciles one map handle every ``interval`` seconds (see ``observe``)."""

    def __init__(self, m: ExtensibleMap, interval: float) -> None:
        self.interval = interval
        self.passes = 0
        self.errors = 0
        self.last_error: BaseException | None = None
        self._stop = threading.Event()
        # The thread holds the map weakly: an observed handle that is dropped is still collected (and closed).
        self._ref = weakref.ref(m)
        self._thread = threading.Thread(target=self._run, name=f"ebpfmaps-shim-observe-{m.map_id}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            m = self._ref()
            if m is None or m.closed:
                return
            try:
                m.reconcile()
                self.passes += 1
            except MapClosed:
                return
            except Exception as exc:  # a failed pass is counted; the next one tries again
                self.errors += 1
                self.last_error = exc
            finally:
                del m

    def stop(self) -> None:
        """Stop the thread (waits for a pass in progress, unless called from the thread itself)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


def _release_handle(binding: registry.Binding, base: Map, spec: MapSpec, kcodec: Codec, vcodec: Codec,
                    ref: weakref.ReferenceType[ExtensibleMap]) -> None:
    """A handle closed (or was collected). The last one of a map nobody else holds cleans it up."""
    if not registry.drop_handle(binding):
        base.close()
        return
    map_id = binding.map_id
    dispatch = binding.dispatch
    failure: Exception | None = None
    failed_callback = ""
    with _locks.map_lock(map_id), _leased(binding):
        # The last shim process holding the map (the lease says) runs the last-close logic; others let go.
        if binding.leased and not _lease.release(map_id):
            base.close()
            _locks.forget_map(map_id)
            return
        pinned = _still_pinned(binding.pin_paths, map_id)
        snapshot: list[tuple[bytes, bytes]] = []
        if not pinned and dispatch.delete_element_notify is not None and not base.closed:
            # Read the elements while we still hold the map: if we are its last holder they go with it.
            with contextlib.suppress(MapError):
                snapshot = list(base.raw_pairs(values=True))
        base.close()
        if pinned or not _gone(map_id):
            _locks.forget_map(map_id)
            return
        handle = ref() or _dead_view(binding, base, spec, kcodec, vcodec)
        failure, failed_callback = _notify_cleanup(dispatch, handle, snapshot)
    _locks.forget_map(map_id)
    if failure is not None:
        raise ProviderNotificationFailed(f"{binding.provider.provider_name} failed while the map was cleaned up "
                                         f"(the map is gone): {failure!r}", callback=failed_callback,
                                         op="close") from failure


def _notify_cleanup(dispatch: DispatchTable, handle: ExtensibleMap,
                    snapshot: list[tuple[bytes, bytes]]) -> tuple[Exception | None, str]:
    """MAP_CLEANUP for each element, then delete_map_notify; every callback runs even if one fails.
    Returns the first failure and the callback that raised it."""
    failure: Exception | None = None
    failed_callback = ""
    if dispatch.delete_element_notify is not None:
        for kb, stored in snapshot:
            try:
                dispatch.delete_element_notify(handle, kb, stored, DeleteReason.MAP_CLEANUP)
            except Exception as exc:
                if failure is None:
                    failure, failed_callback = exc, "delete_element_notify"
    if dispatch.delete_map_notify is not None:
        try:
            dispatch.delete_map_notify(handle)
        except Exception as exc:
            if failure is None:
                failure, failed_callback = exc, "delete_map_notify"
    return failure, failed_callback


@contextlib.contextmanager
def _leased(binding: registry.Binding) -> Iterator[None]:
    """Give the map's lease back when the release is over (whatever happened)."""
    try:
        yield
    finally:
        if binding.leased:
            binding.leased = False
            _lease.unlock(binding.map_id)


def finish_cleanup(type_id: int | None = None) -> list[int]:
    """Finish the cleanup of extensible maps whose holders all died (killed before they could close them).

    Each such map is still alive, held by its lease pin (see :mod:`ebpfmaps_shim._lease`). If nothing
    else holds it (no other pin, no program, no other process), its provider hears ``MAP_CLEANUP`` for
    every element and then ``delete_map_notify``, as it would have from the last holder; the map is then
    freed. Maps whose provider is not registered here (or not of ``type_id``) are left for a process that
    has it (a map whose provider never comes back stays pinned in the lease dir until its pin is removed). Runs by itself when a provider is registered and when an extensible map is opened. Returns
    the ids of the maps cleaned up.
    """
    cleaned: list[int] = []
    held = set(registry.live_maps())
    for map_id, path in _lease.expired_except(held):
        try:
            with _locks.map_lock(map_id):
                if _finish_one(map_id, path, type_id):
                    cleaned.append(map_id)
        finally:
            _lease.unlock(map_id)
    return cleaned


def finish_cleanup_quietly(type_id: int | None = None) -> None:
    """:func:`finish_cleanup` where a failure must not fail the caller (registering, opening): it warns."""
    try:
        finish_cleanup(type_id)
    except (MapError, OSError) as exc:
        warnings.warn(f"ebpfmaps_shim: finishing the cleanup of maps whose holders died: {exc}", RuntimeWarning,
                      stacklevel=3)


registry.after_register.append(finish_cleanup_quietly)


def _finish_one(map_id: int, path: str, type_id: int | None) -> bool:
    try:
        fd = pinning.obj_get(path)
    except (MapError, OSError):
        return False  # its last holder removed it meanwhile
    try:
        info = map_info_from_fd(fd)
    except MapError:
        os.close(fd)
        return False
    meta = _meta.read_meta(info)
    # Only providers registered here (no entry-point discovery): a sweep must stay cheap for maps of types
    # this process does not serve.
    found = None if meta is None or (type_id is not None and meta.custom_type != type_id) else \
        registry.registered_provider(meta.custom_type)
    if meta is None or found is None or info.id != map_id:
        os.close(fd)
        return False
    provider, dispatch = found
    base = class_for(info.type).adopt_fd(fd, info)
    snapshot: list[tuple[bytes, bytes]] = []
    if dispatch.delete_element_notify is not None:
        with contextlib.suppress(MapError):
            snapshot = list(base.raw_pairs(values=True))
    spec = base.spec.replace(type=meta.custom_type, value_size=meta.user_value_size)
    kcodec = _key_codec(info.type, None, info.key_size, info.max_entries)
    vcodec = make_codec(None, meta.user_value_size, "value")
    with contextlib.suppress(OSError):
        os.unlink(path)
    base.close()
    if not _gone(map_id):
        return False  # something else holds it (a pin, a program): it lives on, and so does its cleanup
    binding = registry.Binding(map_id, provider, dispatch, dict(meta.options))
    failure, failed_callback = _notify_cleanup(dispatch, _dead_view(binding, base, spec, kcodec, vcodec), snapshot)
    _locks.forget_map(map_id)
    if failure is not None:
        raise ProviderNotificationFailed(f"{provider.provider_name} failed while finishing the cleanup of map "
                                         f"{map_id} (the map is gone): {failure!r}", callback=failed_callback,
                                         op="finish_cleanup") from failure
    return True


def _dead_view(binding: registry.Binding, base: Map, spec: MapSpec, kcodec: Codec, vcodec: Codec) -> ExtensibleMap:
    """A closed handle to pass to cleanup callbacks when the last handle was garbage-collected."""
    return ExtensibleMap._wrap(base, spec, kcodec, vcodec, binding, is_open=False)


# ---------------------------------------------------------------------- creating and opening
def _key_codec(base_type: int, key_type: Any, key_size: int | None, max_entries: int) -> Codec:
    if base_type == _ARRAY:
        if key_size not in (None, 4):
            raise InvalidKeySize(f"maps based on arrays have u32 index keys: key_size must be 4, not {key_size}",
                                 op="create")
        if key_type is None:
            return IndexCodec(max_entries)
    if key_type is None and key_size is None:
        raise InvalidArgument("an extensible map needs key_size= or key_type=", op="create")
    return make_codec(key_type, key_size, "key")


def _options(provider: MapProvider, given: Any) -> dict[str, int]:
    defaults = dict(getattr(provider, "default_options", {}) or {})
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise InvalidArgument(f"options must be a dict of int values, not {type(given).__name__}", op="create")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise InvalidArgument(f"{provider.provider_name} has no options {unknown}; it accepts "
                              f"{sorted(defaults) or 'none'}", op="create")
    merged = {**defaults, **given}
    for name, value in merged.items():
        _meta.check_option_name(name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _meta.MAX_OPTION:
            raise InvalidArgument(f"option {name}={value!r} must be an int from 0 to {_meta.MAX_OPTION}", op="create")
    provider.check_options(merged)
    return merged


# The largest stored value size a provider may ask for: value_size is a u32 in the kernel (and in the
# BTF that describes the stored value); the kernel refuses sizes far below this (E2BIG) when creating.
_MAX_STORED_SIZE = 2**32 - 1


def _stored_size(provider: MapProvider, dispatch: DispatchTable, spec: MapSpec, op: str) -> int:
    fn = dispatch.create_map_notify
    stored: int | None = None
    if fn is not None:
        try:
            stored = fn(spec)
        except ProviderError:
            raise
        except Exception as exc:
            raise refusal(provider.provider_name, "create_map_notify", op, exc, " the map") from exc
    if stored is None:
        stored = spec.value_size
    if isinstance(stored, bool) or not isinstance(stored, int) or not 0 < stored <= _MAX_STORED_SIZE:
        raise ProviderContractError(f"{op}: {provider.provider_name}.create_map_notify returned {stored!r}; "
                                    f"expected None or a stored value size from 1 to {_MAX_STORED_SIZE} bytes",
                                    callback="create_map_notify", op=op)
    if not provider.transforms_values and stored != spec.value_size:
        raise ProviderContractError(f"{op}: {provider.provider_name} stores {stored}-byte values for "
                                    f"{spec.value_size}-byte user values but declares transforms_values = False",
                                    callback="create_map_notify", op=op)
    return stored


def create_extensible(provider: MapProvider, dispatch: DispatchTable, type_id: int,
                      kwargs: dict[str, Any]) -> ExtensibleMap:
    """Create a map of ``type_id`` served by ``provider`` (what ``ebpfmaps.create(type_id, ...)`` ends in)."""
    unknown = sorted(set(kwargs) - _CREATE_KWARGS)
    if unknown:
        raise InvalidArgument(f"extensible maps do not take {unknown} (they accept {sorted(_CREATE_KWARGS)})",
                              op="create")
    require_ints("create", **{k: kwargs.get(k) for k in ("key_size", "value_size", "flags", "map_extra", "numa_node")})
    base_type = int(provider.base_map_type)
    max_entries = kwargs.get("max_entries")
    if max_entries is None or isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries <= 0:
        raise InvalidArgument(f"an extensible map needs max_entries > 0, not {max_entries!r}", op="create")
    kcodec = _key_codec(base_type, kwargs.get("key_type"), kwargs.get("key_size"), max_entries)
    if kwargs.get("value_type") is None and kwargs.get("value_size") is None:
        raise InvalidArgument("an extensible map needs value_size= or value_type=", op="create")
    vcodec = make_codec(kwargs.get("value_type"), kwargs.get("value_size"), "value")
    if vcodec.size <= 0:
        raise InvalidArgument("the value size of an extensible map must be > 0", op="create")
    options = _options(provider, kwargs.get("options"))
    spec = MapSpec(type=type_id, key_size=kcodec.size, value_size=vcodec.size, max_entries=max_entries,
                   flags=int(kwargs.get("flags", 0)), name=str(kwargs.get("name", "")),
                   map_extra=int(kwargs.get("map_extra", 0)), numa_node=kwargs.get("numa_node"))
    stored = _stored_size(provider, dispatch, spec, "create")
    btf, key_type_id, value_type_id = _meta.build_btf(key_size=spec.key_size, stored_size=stored, base_type=base_type,
                                                      custom_type=type_id, user_value_size=spec.value_size,
                                                      options=options)
    try:
        base = class_for(base_type)(
            key_size=spec.key_size, value_size=stored, max_entries=max_entries, flags=spec.flags, name=spec.name,
            map_extra=spec.map_extra, numa_node=spec.numa_node, btf=btf, btf_key_type_id=key_type_id,
            btf_value_type_id=value_type_id)
    finally:
        btf.close()  # the map holds the kernel's reference to its BTF
    meta = _meta.ShimMeta(type_id, spec.value_size, stored, options)
    try:
        return ExtensibleMap._bind(base, meta, provider, dispatch, kcodec, vcodec)
    except BaseException:
        base.close()
        raise


def adopt_extensible(base: Map, meta: _meta.ShimMeta, provider: MapProvider, dispatch: DispatchTable,
                     key_type: Any, value_type: Any) -> ExtensibleMap:
    """Bind a just-opened base map to its provider (``open_pinned``/``open_by_id`` end here)."""
    try:
        spec = base.spec.replace(type=meta.custom_type, value_size=meta.user_value_size)
        # The provider validates the sizes again in this process; its stored size must be what the map holds.
        stored = _stored_size(provider, dispatch, spec, "open")
        if stored != base.value_size:
            diff = f"stored value_size: provider wants {stored}, the map has {base.value_size}"
            raise IncompatibleMap(f"open: {provider.provider_name} does not match map {base.info().id}: {diff}",
                                  [diff], op="open")
        kcodec = _key_codec(int(provider.base_map_type), key_type, spec.key_size if key_type is None else None,
                            spec.max_entries)
        if kcodec.size != spec.key_size:
            raise InvalidKeySize(f"key_type is {kcodec.size} bytes; the map's key_size is {spec.key_size}", op="open")
        vcodec = make_codec(value_type, meta.user_value_size if value_type is None else None, "value")
        if vcodec.size != meta.user_value_size:
            raise InvalidValueSize(f"value_type is {vcodec.size} bytes; the map's value_size is "
                                   f"{meta.user_value_size}", op="open")
        return ExtensibleMap._bind(base, meta, provider, dispatch, kcodec, vcodec)
    except BaseException:
        base.close()
        raise


def _nothing() -> None:
    """The release of a dead view: it holds nothing."""


# Checked by mypy: an ExtensibleMap is a MapLike and everything its providers are promised.
_IMPLEMENTS: tuple[type[MapLike], type[ExtensibleMapLike]] = (ExtensibleMap, ExtensibleMap)
