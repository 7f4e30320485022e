"""A map's entries read in one pass as integer counters, per-CPU values summed.

Counters, histograms and byte totals kept by BPF programs are unsigned integers in a value
(one ``u64``, or a struct of several). The front ends that show or export them (``watch``,
``hist``, the Prometheus exporter) read the whole map with :meth:`Map.raw_chunks` -- kernel
batch lookups where the type has them -- and decode the packed values with one precompiled
:class:`struct.Struct` per chunk, never a Python object per CPU and element.

A per-CPU map's value holds one slot per possible CPU, each rounded up to 8 bytes; the
counters of each field are summed over the CPUs, and kept per CPU on request.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ebpfmaps.codecs import round8
from ebpfmaps.errors import InvalidArgument
from ebpfmaps.map import Map

UNSIGNED_FORMATS = {1: "B", 2: "H", 4: "I", 8: "Q"}
SIGNED_FORMATS = {1: "b", 2: "h", 4: "i", 8: "q"}


@dataclass(frozen=True)
class CounterField:
    """One integer in a map value: its name, byte offset and size (1, 2, 4 or 8), little or native endian."""

    name: str
    offset: int = 0
    size: int = 8
    signed: bool = False

    def __post_init__(self) -> None:
        if self.size not in UNSIGNED_FORMATS:
            raise InvalidArgument(f"counter field {self.name!r}: size {self.size} is not 1, 2, 4 or 8 bytes")
        if self.offset < 0:
            raise InvalidArgument(f"counter field {self.name!r}: offset {self.offset} is negative")

    @property
    def format(self) -> str:
        return (SIGNED_FORMATS if self.signed else UNSIGNED_FORMATS)[self.size]


def default_fields(value_size: int) -> tuple[CounterField, ...]:
    """The whole value as one unsigned counter, for values of 1, 2, 4 or 8 bytes."""
    if value_size not in UNSIGNED_FORMATS:
        raise InvalidArgument(
            f"a {value_size}-byte value is not one integer counter: name its fields (offset and size of each)")
    return (CounterField("value", 0, value_size),)


def record_format(fields: Sequence[CounterField], value_size: int, slots: int, slot_size: int) -> struct.Struct:
    """A struct that unpacks ``slots`` values of ``slot_size`` bytes into the fields of each, in field order."""
    for f in fields:
        if f.offset + f.size > value_size:
            raise InvalidArgument(
                f"counter field {f.name!r} (offset {f.offset}, size {f.size}) ends past the {value_size}-byte value")
    ordered = sorted(range(len(fields)), key=lambda i: fields[i].offset)
    if ordered != list(range(len(fields))):
        raise InvalidArgument("counter fields must be listed in offset order")
    one = ""
    pos = 0
    for f in fields:
        if f.offset < pos:
            raise InvalidArgument(f"counter field {f.name!r} overlaps the field before it")
        one += "x" * (f.offset - pos) + f.format
        pos = f.offset + f.size
    one += "x" * (slot_size - pos)
    return struct.Struct("=" + one * slots)


@dataclass
class CounterSnapshot:
    """Every entry of a map at one moment: raw keys and, per key, the summed value of each field."""

    keys: list[bytes]
    totals: list[tuple[int, ...]]
    per_cpu: list[tuple[tuple[int, ...], ...]] | None = None
    taken: float = field(default_factory=time.monotonic)

    def as_dict(self) -> dict[bytes, tuple[int, ...]]:
        return dict(zip(self.keys, self.totals))


def is_per_cpu_stride(stride: int, value_size: int) -> bool:
    return stride != value_size


def read_counters(m: Map, fields: Sequence[CounterField] | None = None, *, per_cpu: bool = False) -> CounterSnapshot:
    """All entries of ``m`` with the counters in ``fields`` (default: the whole value) summed over CPUs.

    ``per_cpu`` also keeps each CPU's counters (``snapshot.per_cpu[i][cpu]``). Raises
    :class:`InvalidArgument` before reading when the fields do not fit the value.
    """
    value_size = m.value_size
    fields = tuple(fields) if fields is not None else default_fields(value_size)
    # The codec's size is the bytes the kernel writes per element: the per-CPU slots included.
    stride = m.value_codec.size
    if is_per_cpu_stride(stride, value_size):
        slot = round8(value_size)
        slots = stride // slot
    else:
        slot, slots = value_size, 1
    rec = record_format(fields, value_size, slots, slot)
    nf = len(fields)
    ks = m.key_size
    keys: list[bytes] = []
    totals: list[tuple[int, ...]] = []
    cpus: list[tuple[tuple[int, ...], ...]] | None = [] if per_cpu else None
    for kblob, vblob, count in m.raw_chunks():
        keys.extend(kblob[i * ks : (i + 1) * ks] for i in range(count))
        rows = rec.iter_unpack(vblob[: count * stride])
        if slots == 1:
            totals.extend(rows)
        elif nf == 1:
            if cpus is None:
                totals.extend((sum(r),) for r in rows)
            else:
                for r in rows:
                    totals.append((sum(r),))
                    cpus.append(tuple((v,) for v in r))
        else:
            for r in rows:
                totals.append(tuple(sum(r[j::nf]) for j in range(nf)))
                if cpus is not None:
                    cpus.append(tuple(r[c * nf : (c + 1) * nf] for c in range(slots)))
    if cpus is not None and slots == 1:
        cpus = [(t,) for t in totals]
    return CounterSnapshot(keys, totals, cpus)


__all__ = ["CounterField", "CounterSnapshot", "default_fields", "read_counters", "record_format"]
