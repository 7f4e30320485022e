"""The array family: ARRAY and PERCPU_ARRAY (keys are u32 indices below max_entries)."""

from __future__ import annotations

import mmap
import struct
import threading
from typing import Any, ClassVar

from ebpfmaps._libbpf import maps as _maps
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.codecs import Codec, CtypesCodec, IndexCodec, StructCodec
from ebpfmaps.errors import IndexOutOfRange, InvalidArgument, InvalidKeySize, MapBusy, NotSupported, from_errno
from ebpfmaps.map import Map, map_class
from ebpfmaps.maptypes import (
    BPF_F_INNER_MAP,
    BPF_F_MMAPABLE,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_F_WRONLY_PROG,
    MapType,
)
from ebpfmaps.resizable import Resizable
from ebpfmaps.spec import MapSpec

# kernel/bpf/arraymap.c, ARRAY_CREATE_FLAG_MASK, less what array_map_alloc_check refuses for
# these two types: PRESERVE_ELEMS is for perf event arrays only.
ARRAY_FLAGS = (
    BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG
    | BPF_F_WRONLY_PROG | BPF_F_INNER_MAP
)

_U32 = struct.Struct("=I")
_pack_u32 = _U32.pack


class _ArrayBase(Map):
    resize = Resizable()  # m.resize(n): cloud profile only (ebpfmaps.resize)
    allowed_flags: ClassVar[int] = ARRAY_FLAGS
    kernel_batch: ClassVar[bool | None] = True
    can_delete: ClassVar[bool] = False
    fixed_key_size: ClassVar[int | None] = 4
    # lookup() of an index past the end answers None (no such element), like a missing hash key.
    _absent_key_errors: ClassVar[tuple[type[Exception], ...]] = (IndexOutOfRange,)

    @classmethod
    def with_entries(cls, value_size: int | None = None, max_entries: int | None = None, **kwargs: Any) -> Any:
        """The spelling of maps declared by size: ``ArrayMap.with_entries(value_size, max_entries)``."""
        return cls(value_size=value_size, max_entries=max_entries, **kwargs)

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        if spec.key_size != 4:
            raise InvalidKeySize(f"array keys are u32 indices: key_size must be 4, not {spec.key_size}", op="create")
        return super().prepare_spec(spec)

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(kcodec) is Codec:  # raw 4-byte keys become indices that know the bounds
            kcodec = IndexCodec(spec.max_entries)
        elif isinstance(kcodec, IndexCodec):
            kcodec.max_entries = spec.max_entries
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)

    def replace_kernel_map(self, fd: int, spec: MapSpec) -> None:
        super().replace_kernel_map(fd, spec)
        if isinstance(self._kcodec, IndexCodec):
            self._kcodec.max_entries = spec.max_entries

    def __len__(self) -> int:
        """max_entries: every index holds a value (once closed, :class:`MapClosed` as any other operation)."""
        if self._h.closed:
            raise self._h.closed_error("len")
        return self._spec.max_entries

    def check_packed_keys(self, keys: bytes, count: int) -> None:
        kcodec = self._kcodec
        if type(kcodec) is IndexCodec and kcodec.max_entries == self._spec.max_entries:
            return  # IndexCodec.encode_many has bounded every index already: skip a second pass
        if count:
            hi = max(struct.unpack_from(f"={count}I", keys))
            if hi >= self._spec.max_entries:
                raise IndexOutOfRange(f"index {hi} is outside the array (max_entries={self._spec.max_entries})",
                                      op="update_batch")

    def zero(self, key: Any) -> None:
        """Reset an element to zeros (array elements cannot be deleted)."""
        kb = self._encode_key(key)  # checked: exactly key_size bytes reach the kernel
        ret = _maps.map_update_elem(self._h, kb, bytes(self._vsize), 0)
        if ret:
            raise self._fail(ret, "update", key)


@map_class
class ArrayMap(_ArrayBase):
    """BPF_MAP_TYPE_ARRAY: preallocated, zero-initialised values indexed 0..max_entries-1.

    ``mmapable=True`` (BPF_F_MMAPABLE) lets the values be mapped into this process:
    :meth:`values_view`, :meth:`value_view` and :meth:`numpy` read and write them
    with no syscall, coherent with lookup/update and with programs (one shared copy
    in the kernel). Values sit :attr:`stride` bytes apart (value_size rounded up to 8,
    as the kernel lays them out).

    Lifetime: a view keeps the mapping, and with it the kernel map, alive. Closing the
    map unmaps at once when no view is left, and otherwise when the last view (or numpy
    array made from one) is released, so a view never points at unmapped memory.
    """

    map_type = MapType.ARRAY
    _mm: mmap.mmap | None = None  # the mapping, made on first use

    def __init__(self, key_size: int | None = None, value_size: int | None = None, max_entries: int | None = None,
                 *, mmapable: bool = False, flags: int = 0, **kwargs: Any) -> None:
        if mmapable:
            flags |= BPF_F_MMAPABLE
        super().__init__(key_size, value_size, max_entries, flags=flags, **kwargs)

    @property
    def mmapable(self) -> bool:
        return bool(self._spec.flags & BPF_F_MMAPABLE)

    @property
    def stride(self) -> int:
        """Bytes from one value to the next in the mapping (kernel/bpf/arraymap.c: round_up(value_size, 8))."""
        return (self._spec.value_size + 7) & ~7

    def _mapping(self) -> mmap.mmap:
        if not self.mmapable:
            raise NotSupported("this array was not created with mmapable=True (BPF_F_MMAPABLE); "
                               "its values can only be read with syscalls", op="mmap")
        with _MMAP_LOCK:
            mm = self._mm
            if mm is not None and not mm.closed:
                return mm
            if self._h.closed:
                raise self._h.closed_error("mmap")
            if not self._writable:
                # do_mmap drops VM_SHARED for a file not open for writing, and bpf_map_mmap refuses a
                # mapping without it (EINVAL): an fd opened (or a map created) read-only cannot be mapped.
                raise NotSupported("mmap: a map opened read-only (BPF_F_RDONLY fd) cannot be memory-mapped; "
                                   "open it writable (a frozen map is then mapped read-only)", op="mmap")
            length = -(-self.stride * self._spec.max_entries // mmap.PAGESIZE) * mmap.PAGESIZE
            # A frozen map can only be mapped read-only (bpf_map_mmap refuses VM_WRITE with EPERM).
            writable = not self.info().frozen
            prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
            try:
                # The mapping holds its own reference to the map; the number only has to stay ours meanwhile.
                with self._h.pinned("mmap") as fd:
                    mm = mmap.mmap(fd, length, mmap.MAP_SHARED, prot)
            except OSError as exc:
                raise from_errno(exc.errno or 0, "mmap", f"array of {length} bytes") from None
            self._mm = mm
            return mm

    def values_view(self) -> memoryview:
        """Every value, as one flat byte memoryview (``max_entries * stride`` bytes); writable unless the
        map is frozen or opened read-only. Element ``i`` starts at ``i * stride``."""
        mm = self._mapping()
        view = memoryview(mm)
        return view[: self.stride * self._spec.max_entries]

    def value_view(self, index: int) -> memoryview:
        """The ``value_size`` bytes of element ``index`` (checked before any access)."""
        n = self._spec.max_entries
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise IndexOutOfRange(f"index {index!r} is outside the array (max_entries={n})", op="value_view")
        start = index * self.stride
        return self.values_view()[start : start + self._spec.value_size]

    def numpy(self, dtype: Any = None) -> Any:
        """A numpy array over the mapped values (numpy is optional and imported here).

        Without ``dtype`` the value codec decides: a ctypes scalar/Structure or a
        one-field struct format gives a 1-D array of that type, anything else a 2-D
        ``uint8`` array of shape ``(max_entries, value_size)``. A ``dtype`` whose size
        divides value_size gives ``(max_entries, value_size // itemsize)`` (1-D when equal).
        """
        try:
            import numpy as np
        except ImportError:
            raise NotSupported("numpy is not installed (pip install 'ebpfmaps[numpy]')", op="numpy") from None
        view = self.values_view()
        n, vsize, stride = self._spec.max_entries, self._spec.value_size, self.stride
        dt = np.dtype(dtype) if dtype is not None else _numpy_dtype(np, self._vcodec)
        if dt is None:
            dt = np.dtype(np.uint8)
        if dt.itemsize == vsize:
            return np.ndarray((n,), dtype=dt, buffer=view, strides=(stride,))
        if dt.itemsize and vsize % dt.itemsize == 0:
            return np.ndarray((n, vsize // dt.itemsize), dtype=dt, buffer=view, strides=(stride, dt.itemsize))
        raise InvalidArgument(f"dtype {dt} ({dt.itemsize} bytes) does not divide value_size {vsize}", op="numpy")

    def _release_mapping(self) -> None:
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # views are alive: CPython unmaps when the last one is released

    def close(self) -> None:
        self._release_mapping()
        super().close()

    def replace_kernel_map(self, fd: int, spec: MapSpec) -> None:
        # Views made before a resize keep pointing at the old map's memory; new views map the new one.
        self._release_mapping()
        super().replace_kernel_map(fd, spec)

    def freeze(self) -> None:
        """BPF_MAP_FREEZE; the kernel refuses it (EBUSY) while a writable mapping exists."""
        self._release_mapping()
        try:
            super().freeze()
        except MapBusy as exc:
            raise MapBusy(f"freeze: a writable mapping of this array is still in use (release values_view()/numpy() "
                          f"views first): {exc}", errno=exc.errno, op="freeze") from None


_MMAP_LOCK = threading.Lock()


def _numpy_dtype(np: Any, codec: Codec) -> Any:
    """The numpy dtype matching a value codec, or None for raw bytes."""
    if isinstance(codec, CtypesCodec):
        return np.dtype(codec.ctype)
    if isinstance(codec, StructCodec) and codec.scalar and codec._char is not None and codec._char not in "sp?c":
        return np.dtype(codec.order.replace("@", "=").replace("!", ">") + codec._char)
    return None


@map_class
class PerCpuArrayMap(_ArrayBase):
    """BPF_MAP_TYPE_PERCPU_ARRAY: one value per possible CPU for each index."""

    map_type = MapType.PERCPU_ARRAY
    per_cpu = True
    # array_map_alloc_check: MMAPABLE and INNER_MAP are for plain arrays, and per-CPU values take no NUMA node.
    allowed_flags: ClassVar[int] = ARRAY_FLAGS & ~(BPF_F_MMAPABLE | BPF_F_INNER_MAP | BPF_F_NUMA_NODE)
