"""RINGBUF and USER_RINGBUF maps: the classes (creation, size checks, pinning).

A ring buffer has no keys and no values (key_size and value_size 0); its
``max_entries`` is the size of the data area in bytes, which the kernel requires
to be a power of two and a multiple of the page size (ringbuf_map_alloc in
kernel/bpf/ringbuf.c). Records are read through a memory mapping of the
consumer, producer and data pages, which is the reader's business (another
module); the element syscalls are all refused by the kernel, and here before it.
"""

from __future__ import annotations

import mmap
from typing import Any, ClassVar

from ebpfmaps.errors import InvalidArgument
from ebpfmaps.map import map_class
from ebpfmaps.maps.queue import KeylessMap
from ebpfmaps.maptypes import BPF_F_NUMA_NODE, MapType, type_name
from ebpfmaps.spec import MapSpec

PAGE_SIZE = mmap.PAGESIZE
# kernel/bpf/ringbuf.c, RINGBUF_CREATE_FLAG_MASK (shared by the user ring buffer).
RINGBUF_FLAGS = BPF_F_NUMA_NODE


def valid_ring_size(size: int) -> bool:
    """A power of two that is a multiple of the page size."""
    return size >= PAGE_SIZE and size & (size - 1) == 0 and size % PAGE_SIZE == 0


def round_ring_size(size: int) -> int:
    """The smallest valid ring size that holds ``size`` bytes."""
    n = max(int(size), PAGE_SIZE)
    return 1 << (n - 1).bit_length()


class _RingBase(KeylessMap):
    allowed_flags: ClassVar[int] = RINGBUF_FLAGS
    needs_value: ClassVar[bool] = False
    fixed_value_size: ClassVar[int | None] = 0

    def __init__(self, size: int | None = None, *, max_entries: int | None = None, key_size: int | None = None,
                 value_size: int | None = None, **kwargs: Any) -> None:
        if size is not None and max_entries is not None and size != max_entries:
            raise InvalidArgument(f"size={size} and max_entries={max_entries} disagree (a ring buffer's "
                                  "max_entries is its size in bytes)", op="create")
        if value_size not in (None, 0):
            raise InvalidArgument(f"{type(self).__name__} has no values: value_size must be 0", op="create")
        n = size if size is not None else max_entries
        if n is None:
            raise InvalidArgument(f"{type(self).__name__} needs a size in bytes (a power of two, "
                                  f"a multiple of {PAGE_SIZE})", op="create")
        super().__init__(0, n, key_size=key_size, **kwargs)

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        if not valid_ring_size(spec.max_entries):
            raise InvalidArgument(
                f"{type_name(spec.type)} size {spec.max_entries} must be a power of two and a multiple of the "
                f"page size ({PAGE_SIZE}); {round_ring_size(spec.max_entries)} would do", op="create")
        return super().prepare_spec(spec)

    def _keyless_ops(self) -> str:
        return "a ring buffer reader/producer (ebpfmaps.readers)"

    @property
    def size(self) -> int:
        """Bytes in the data area (max_entries)."""
        return self._spec.max_entries


@map_class
class RingBufMap(_RingBase):
    """BPF_MAP_TYPE_RINGBUF (Linux 5.8+): programs produce records, user space consumes them."""

    map_type = MapType.RINGBUF


@map_class
class UserRingBufMap(_RingBase):
    """BPF_MAP_TYPE_USER_RINGBUF (Linux 6.1+): user space produces records, programs drain them."""

    map_type = MapType.USER_RINGBUF


__all__ = ["PAGE_SIZE", "RingBufMap", "UserRingBufMap", "round_ring_size", "valid_ring_size"]
