"""QUEUE and STACK maps: keyless FIFO/LIFO containers of fixed-size values.

The kernel gives them key_size 0 and maps the element syscalls with a NULL key
(Documentation/bpf/map_queue_stack.rst): update = push, lookup = peek,
lookup_and_delete = pop. ``get_next_key`` and ``delete`` are refused (EINVAL),
so these maps cannot be walked without consuming them: iterating a queue pops
it, and ``len()`` is not available. Key-based operations raise
:class:`NotSupported` before any syscall.
"""

from __future__ import annotations

import ctypes
import errno as E
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from ebpfmaps._lazy import lazy_module
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps.errors import InvalidFlags, InvalidKeySize, InvalidValueSize, NotSupported
from ebpfmaps.map import Map, map_class
from ebpfmaps.maptypes import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_F_WRONLY_PROG,
    MapType,
    type_name,
)
from ebpfmaps.spec import MapSpec

if TYPE_CHECKING:
    from ebpfmaps import features
else:
    features = lazy_module("ebpfmaps.features")  # the kernel is probed when a map of a newer type is created

BPF_F_ACCESS_MASK = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG

# kernel/bpf/queue_stack_maps.c, QUEUE_STACK_CREATE_FLAG_MASK.
QUEUE_STACK_FLAGS = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK


class LengthUnknown(NotSupported, TypeError):
    """``len()`` of a map whose size the kernel cannot report without consuming it.

    Also a ``TypeError`` so that ``list(q)`` and other length hints fall back to plain iteration.
    """


class KeylessMap(Map):
    """Base of maps with key_size 0 (queue, stack, bloom filter): every element syscall passes a NULL key."""

    fixed_key_size: ClassVar[int | None] = 0
    kernel_batch: ClassVar[bool | None] = False
    can_delete: ClassVar[bool] = False
    #: Whether elements have a value (ring buffers have neither keys nor values).
    needs_value: ClassVar[bool] = True

    def __init__(self, value_size: int | None = None, max_entries: int | None = None, *,
                 key_size: int | None = None, key_type: Any = None, **kwargs: Any) -> None:
        if key_size not in (None, 0) or key_type is not None:
            raise InvalidKeySize(f"{type(self).__name__} maps have no keys: key_size must be 0, not {key_size}",
                                 op="create")
        super().__init__(0, value_size, max_entries, **kwargs)

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        if spec.key_size != 0:
            raise InvalidKeySize(f"{type_name(spec.type)} maps have no keys: key_size must be 0", op="create")
        if self.needs_value and spec.value_size <= 0:
            raise InvalidValueSize(f"{type_name(spec.type)} maps need value_size > 0", op="create")
        if not self.needs_value and spec.value_size != 0:
            raise InvalidValueSize(f"{type_name(spec.type)} maps have no values: value_size must be 0", op="create")
        spec = super().prepare_spec(spec)
        features.require_map_type(spec.type)
        return spec

    # ---- keyed operations make no sense here: say so before any syscall
    def _no_keys(self, op: str) -> NoReturn:
        raise NotSupported(f"{op}: {type_name(self._spec.type)} maps have no keys; "
                           f"use {self._keyless_ops()}", op=op)

    def _keyless_ops(self) -> str:
        return "push/pop/peek"

    def lookup(self, key: Any, flags: int = 0) -> Any:
        self._no_keys("lookup")

    def lookup_bytes(self, key: Any) -> bytes | None:
        self._no_keys("lookup")

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        self._no_keys("update")

    def delete(self, key: Any) -> None:
        self._no_keys("delete")

    def next_key(self, key: Any = None) -> Any:
        self._no_keys("next_key")

    def next_key_bytes(self, key: bytes | None) -> bytes | None:
        self._no_keys("next_key")

    def lookup_and_delete(self, key: Any) -> Any:
        self._no_keys("lookup_and_delete")

    def pop_item(self, key: Any, default: Any = ...) -> Any:
        self._no_keys("pop_item")

    def __getitem__(self, key: Any) -> Any:
        self._no_keys("lookup")

    def __setitem__(self, key: Any, value: Any) -> None:
        self._no_keys("update")

    def __delitem__(self, key: Any) -> None:
        self._no_keys("delete")

    def get(self, key: Any, default: Any = None) -> Any:
        self._no_keys("get")

    def keys(self) -> Iterator[Any]:
        self._no_keys("keys")

    def items(self) -> Iterator[tuple[Any, Any]]:
        self._no_keys("items")

    def values(self) -> Iterator[Any]:
        self._no_keys("values")

    def to_dict(self) -> dict[Any, Any]:
        self._no_keys("to_dict")

    def clear(self) -> int:
        self._no_keys("clear")

    def lookup_batch(self, keys: Iterable[Any] | None = None, *, batch_size: int = 0) -> dict[Any, Any]:
        self._no_keys("lookup_batch")

    def lookup_and_delete_batch(self, *, batch_size: int = 0) -> dict[Any, Any]:
        self._no_keys("lookup_and_delete_batch")

    def update_batch(self, keys: Iterable[Any], values: Iterable[Any], flags: int = BPF_ANY) -> int:
        self._no_keys("update_batch")

    def delete_batch(self, keys: Iterable[Any]) -> int:
        self._no_keys("delete_batch")

    def iter_batches(self, batch_size: int = 0, *, delete: bool = False) -> Iterator[list[tuple[Any, Any]]]:
        self._no_keys("iter_batches")

    def iter_batches_raw(self, batch_size: int = 0, *, delete: bool = False) -> Iterator[tuple[bytes, bytes, int]]:
        self._no_keys("iter_batches")

    def __len__(self) -> int:
        raise LengthUnknown(f"{type_name(self._spec.type)} maps cannot report their length without being consumed",
                            op="len")

    def _value_buffer(self, value: Any) -> ctypes.Array[ctypes.c_char]:
        """The encoded value in a writable buffer of the map's real value size (the kernel may copy back into it).

        The encoding is checked to be bytes of exactly value_size first (a user codec's output is not
        trusted): copying value_size bytes out of a shorter object would read past its end.
        """
        return self._vtype.from_buffer_copy(self._encode_value(value))


class _QueueStackBase(KeylessMap):
    allowed_flags: ClassVar[int] = QUEUE_STACK_FLAGS

    def push(self, value: Any, *, overwrite: bool = False) -> None:
        """Add ``value``. A full map raises :class:`OutOfMemory`; with ``overwrite=True`` (BPF_EXIST) the
        oldest element is dropped to make room instead (for a stack too: the bottom one)."""
        buf = self._value_buffer(value)
        ret = _maps.map_update_elem(self._h, None, buf, BPF_EXIST if overwrite else BPF_ANY, "push")
        if ret:
            self._check_writable("push")
            raise self._fail(ret, "push")

    def push_many(self, values: Iterable[Any], *, overwrite: bool = False) -> int:
        """Push each value in order; returns how many were pushed (stops with the error of the first failure)."""
        n = 0
        for v in values:
            self.push(v, overwrite=overwrite)
            n += 1
        return n

    def pop(self, default: Any = None) -> Any:
        """Remove and return the next element (oldest for a queue, newest for a stack); ``default`` when empty."""
        self._check_writable("pop")
        buf = self._vtype()
        ret = _maps.map_lookup_and_delete_elem(self._h, None, buf, "pop")
        if ret == 0:
            return self._vdec(buf.raw[: self._vsize])
        if ret == -E.ENOENT:
            return default
        raise self._fail(ret, "pop")

    def peek(self, default: Any = None) -> Any:
        """The element ``pop()`` would return, left in place; ``default`` when empty."""
        buf = self._vtype()
        ret = _maps.map_lookup_elem(self._h, None, buf, "peek")
        if ret == 0:
            return self._vdec(buf.raw[: self._vsize])
        if ret == -E.ENOENT:
            return default
        raise self._fail(ret, "peek")

    def is_empty(self) -> bool:
        """True when nothing is queued now (a peek; another producer may push right after)."""
        buf = self._vtype()
        ret = _maps.map_lookup_elem(self._h, None, buf, "peek")
        if ret == -E.ENOENT:
            return True
        if ret:
            raise self._fail(ret, "peek")
        return False

    def drain(self, limit: int | None = None) -> Iterator[Any]:
        """Pop elements until the map is empty (or ``limit`` were popped). Consuming and lazy."""
        if limit is not None and limit < 0:
            raise InvalidFlags("drain: limit must be >= 0", op="drain")
        sentinel = object()
        n = 0
        while limit is None or n < limit:
            v = self.pop(sentinel)
            if v is sentinel:
                return
            n += 1
            yield v

    def __iter__(self) -> Iterator[Any]:
        """Iterating a queue or stack consumes it (there is no way to walk it in place)."""
        return self.drain()

    def __contains__(self, key: Any) -> bool:
        self._no_keys("contains")


@map_class
class QueueMap(_QueueStackBase):
    """BPF_MAP_TYPE_QUEUE: FIFO. ``push`` appends, ``pop`` takes the oldest."""

    map_type = MapType.QUEUE


@map_class
class StackMap(_QueueStackBase):
    """BPF_MAP_TYPE_STACK: LIFO. ``push`` appends, ``pop`` takes the newest."""

    map_type = MapType.STACK
