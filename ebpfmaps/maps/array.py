"""The array family: ARRAY and PERCPU_ARRAY (keys are u32 indices below max_entries)."""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from ebpfmaps.codecs import Codec
from ebpfmaps.errors import IndexOutOfRange, InvalidArgument, InvalidKeySize
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
from ebpfmaps.resize import Resizable
from ebpfmaps.spec import MapSpec

# kernel/bpf/arraymap.c, ARRAY_CREATE_FLAG_MASK, less what array_map_alloc_check refuses for
# these two types: PRESERVE_ELEMS is for perf event arrays only.
ARRAY_FLAGS = (
    BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG
    | BPF_F_WRONLY_PROG | BPF_F_INNER_MAP
)

_U32 = struct.Struct("=I")


class IndexCodec(Codec):
    """u32 array indices: ints (or 4 raw bytes), checked against max_entries before any syscall."""

    def __init__(self, max_entries: int | None = None) -> None:
        super().__init__(4, "key")
        self.max_entries = max_entries

    def __repr__(self) -> str:
        return f"IndexCodec(max_entries={self.max_entries})"

    def encode(self, value: Any) -> bytes:
        if type(value) is int:
            if 0 <= value < (self.max_entries if self.max_entries is not None else 1 << 32):
                return _U32.pack(value)
            raise IndexOutOfRange(f"index {value} is outside the array (max_entries={self.max_entries})", op="encode")
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            if len(data) != 4:
                raise InvalidKeySize(f"array keys are 4-byte u32 indices, got {len(data)} bytes", op="encode")
            # Raw keys are bounds-checked too: the kernel would answer E2BIG, which reads as "map full".
            index = _U32.unpack(data)[0]
            if self.max_entries is not None and index >= self.max_entries:
                raise IndexOutOfRange(f"index {index} is outside the array (max_entries={self.max_entries})",
                                      op="encode")
            return data
        if hasattr(value, "__index__"):
            return self.encode(value.__index__())
        raise InvalidArgument(f"array keys are int indices, not {type(value).__name__}", op="encode")

    def decode(self, data: bytes) -> int:
        return int(_U32.unpack(data)[0])

    def encode_many(self, values: Any) -> tuple[bytes, int]:
        if isinstance(values, (bytes, bytearray, memoryview)):
            return super().encode_many(values)
        items = values if isinstance(values, (list, tuple)) else list(values)
        if items and all(type(v) is int for v in items):
            hi = self.max_entries if self.max_entries is not None else 1 << 32
            lo_v, hi_v = min(items), max(items)
            if lo_v < 0 or hi_v >= hi:
                bad = lo_v if lo_v < 0 else hi_v
                raise IndexOutOfRange(f"index {bad} is outside the array (max_entries={self.max_entries})", op="encode")
            return struct.pack(f"={len(items)}I", *items), len(items)
        return b"".join([self.encode(v) for v in items]), len(items)

    def decode_many(self, data: bytes | memoryview, count: int) -> list[Any]:
        return list(struct.unpack_from(f"={count}I", data))


class _ArrayBase(Map):
    resize = Resizable()  # m.resize(n): cloud profile only (ebpfmaps.resize)
    allowed_flags: ClassVar[int] = ARRAY_FLAGS
    kernel_batch: ClassVar[bool | None] = True
    can_delete: ClassVar[bool] = False
    fixed_key_size: ClassVar[int | None] = 4

    @classmethod
    def with_entries(cls, value_size: int | None = None, max_entries: int | None = None, **kwargs: Any) -> Any:
        """The seed's spelling: ``ArrayMap.with_entries(value_size, max_entries)``."""
        return cls(value_size=value_size, max_entries=max_entries, **kwargs)

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        if spec.key_size != 4:
            raise InvalidKeySize(f"array keys are u32 indices: key_size must be 4, not {spec.key_size}", op="create")
        return super().prepare_spec(spec)

    def _init_from_fd(self, fd: int, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(kcodec) is Codec:  # raw 4-byte keys become indices that know the bounds
            kcodec = IndexCodec(spec.max_entries)
        elif isinstance(kcodec, IndexCodec):
            kcodec.max_entries = spec.max_entries
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)

    def _swap_fd(self, fd: int, spec: MapSpec) -> None:
        super()._swap_fd(fd, spec)
        if isinstance(self._kcodec, IndexCodec):
            self._kcodec.max_entries = spec.max_entries

    def lookup(self, key: Any, flags: int = 0) -> Any:
        try:
            return super().lookup(key, flags)
        except IndexOutOfRange:
            return None

    def __len__(self) -> int:
        return self._spec.max_entries

    def _check_batch_keys(self, keys: bytes, count: int) -> None:
        if count:
            hi = max(struct.unpack_from(f"={count}I", keys))
            if hi >= self._spec.max_entries:
                raise IndexOutOfRange(f"index {hi} is outside the array (max_entries={self._spec.max_entries})",
                                      op="update_batch")

    def zero(self, key: Any) -> None:
        """Reset an element to zeros (array elements cannot be deleted)."""
        from ebpfmaps._libbpf import lib

        kb = self._kenc(key)
        ret = lib.bpf_map_update_elem(self.fd, kb, bytes(self._vsize), 0)
        if ret:
            raise self._fail(ret, "update", key)


@map_class
class ArrayMap(_ArrayBase):
    """BPF_MAP_TYPE_ARRAY: preallocated, zero-initialised values indexed 0..max_entries-1."""

    map_type = MapType.ARRAY


@map_class
class PerCpuArrayMap(_ArrayBase):
    """BPF_MAP_TYPE_PERCPU_ARRAY: one value per possible CPU for each index."""

    map_type = MapType.PERCPU_ARRAY
    per_cpu = True
    # array_map_alloc_check: MMAPABLE and INNER_MAP are for plain arrays, and per-CPU values take no NUMA node.
    allowed_flags: ClassVar[int] = ARRAY_FLAGS & ~(BPF_F_MMAPABLE | BPF_F_INNER_MAP | BPF_F_NUMA_NODE)
