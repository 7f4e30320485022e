"""Reading ``bpf_perf_event_output`` samples through a ``BPF_MAP_TYPE_PERF_EVENT_ARRAY``.

For every online CPU the reader opens a software perf event
(``PERF_TYPE_SOFTWARE``/``PERF_COUNT_SW_BPF_OUTPUT``, ``sample_type = PERF_SAMPLE_RAW``),
mmaps its ring (one metadata page plus ``pages`` data pages) and stores the event's fd into
the map at that CPU's index, which is where ``bpf_perf_event_output(ctx, &map,
BPF_F_CURRENT_CPU, ...)`` looks. This mirrors libbpf's perf_buffer (tools/lib/bpf/libbpf.c).

Ring protocol (include/uapi/linux/perf_event.h, ``struct perf_event_mmap_page``): the kernel
advances ``data_head`` (u64 at byte 1024 of the first page), we advance ``data_tail`` (byte
1032) after reading. Unlike the BPF ring buffer, the data pages are mapped once, so a record
that wraps is reassembled from two slices. Records are ``perf_event_header {u32 type; u16
misc; u16 size}`` followed by, for ``PERF_RECORD_SAMPLE`` with RAW, ``u32 size`` and the
bytes, and for ``PERF_RECORD_LOST``, ``u64 id; u64 lost``. The kernel pads raw data so the
record stays 8-byte aligned, so a sample's bytes may end with up to 7 padding bytes
(libbpf hands the same padded size to its callbacks): records should carry their own length.

Memory ordering is the same x86-64 TSO argument as in :mod:`ebpfmaps.readers.ringbuf`:
``data_head`` is read as one 8-byte load before the records, and ``data_tail`` is stored
as one 8-byte store after they were copied.

perf_event_open(2) and ``struct perf_event_attr`` are shared with the tracepoint attachment code
(:mod:`ebpfmaps.programs.tracing`).
"""

from __future__ import annotations

import ctypes
import mmap
import select
import struct
from array import array
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from itertools import repeat
from typing import Any, NamedTuple

from ebpfmaps import errors
from ebpfmaps._libbpf import perf
from ebpfmaps._libbpf.fd import FD
from ebpfmaps._libbpf.perf import PERF_EVENT_IOC_DISABLE, PERF_EVENT_IOC_ENABLE, PerfEventAttr
from ebpfmaps.codecs import split_packed
from ebpfmaps.cpus import online_cpus
from ebpfmaps.errors import InvalidArgument, MapClosed, NotSupported
from ebpfmaps.maptypes import MapType
from ebpfmaps.programs.tracing import PERF_ATTR_FLAG_WATERMARK, PERF_SAMPLE_RAW, PERF_TYPE_SOFTWARE
from ebpfmaps.readers._shared import PAGE_SIZE, Deadline, MapLike, Waiter, handed_out, map_shared, resolve_map
from ebpfmaps.spec import MapInfo

# include/uapi/linux/perf_event.h (the rest, and perf_event_attr, come with the tracepoint code)
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
_DATA_HEAD = 1024
_DATA_TAIL = 1032


class PerfSample(NamedTuple):
    """One ``bpf_perf_event_output`` record: the CPU whose ring held it and its (padded) bytes."""

    cpu: int
    data: bytes


SampleCallback = Callable[[int, bytes], object]
LostCallback = Callable[[int, int], object]


def _open_bpf_output(attr: PerfEventAttr, cpu: int) -> FD:
    try:
        return perf.perf_event_open(attr, pid=-1, cpu=cpu)
    except NotSupported as exc:
        raise NotSupported("the kernel has no PERF_COUNT_SW_BPF_OUTPUT event", errno=exc.errno,
                           op="perf_event_open") from None


class _CpuRing:
    """One CPU's perf event (owned through its handle) and its mmapped ring."""

    __slots__ = ("cpu", "data", "data_size", "event", "head", "mm", "tail")

    def __init__(self, cpu: int, event: FD, pages: int) -> None:
        self.cpu = cpu
        self.event = event
        self.data_size = pages * PAGE_SIZE
        with event.pinned("mmap") as fd:
            self.mm = map_shared(fd, (pages + 1) * PAGE_SIZE, mmap.PROT_READ | mmap.PROT_WRITE, 0, f"perf ring of CPU {cpu}")
        whole = memoryview(self.mm)
        self.head = whole[_DATA_HEAD:_DATA_HEAD + 8].cast("Q")
        self.tail = whole[_DATA_TAIL:_DATA_TAIL + 8].cast("Q")
        self.data = whole[PAGE_SIZE:]
        whole.release()

    def close(self) -> None:
        for view in (self.head, self.tail, self.data):
            view.release()
        self.mm.close()
        self.event.close()


# perf_event_header {u32 type; u16 misc; u16 size}, then (for a RAW sample) the u32 size of the raw data.
_SAMPLE_HEAD = struct.Struct("=IHHI")
_HEADER = struct.Struct("=IHH")
_LOST = struct.Struct("=QQ")


def _uniform_samples(block: bytes, pending: int) -> tuple[list[bytes], range] | None:
    """The samples of ``block`` when it holds nothing but samples with the very same header and raw
    size (what one program's fixed-size output makes), cut out in C by cached structs; else None.

    The check compares the header words of every record at once: strided views of the block seen
    as u32 words against one repeated word, so it costs no Python work per record either.
    """
    rtype, _misc, rsize, raw_size = _SAMPLE_HEAD.unpack_from(block, 0)
    if rtype != PERF_RECORD_SAMPLE or rsize < 16 or rsize & 7 or pending % rsize or 12 + raw_size > rsize:
        return None
    n = pending // rsize
    if n < 2:
        return None
    words = memoryview(block).cast("I")
    step = rsize >> 2
    for field in range(3):  # type, misc | size << 16, raw size
        column = words[field::step]
        if column != array("I", (column[0],)) * n:
            return None
    samples = split_packed(block, raw_size, n, skip=12, pad=rsize - 12 - raw_size)
    return samples, range(rsize, pending + 1, rsize)


class PerfEventReader:
    """Per-CPU perf rings attached to a perf event array map.

    ``callback(cpu, data)`` gets each sample, ``lost_callback(cpu, count)`` each report of
    samples the kernel dropped because a ring was full (also summed in :attr:`lost`).
    ``pages`` data pages per CPU (a power of 2); ``wakeup_events`` samples per wakeup, or
    ``wakeup_bytes`` to wake when that many bytes are pending instead.
    """

    def __init__(self, perf_map: MapLike, callback: SampleCallback | None = None,
                 lost_callback: LostCallback | None = None, *, pages: int = 8, wakeup_events: int = 1,
                 wakeup_bytes: int | None = None, cpus: list[int] | None = None) -> None:
        ref, info = resolve_map(perf_map, MapType.PERF_EVENT_ARRAY, "PerfEventReader")
        try:
            self._setup(info, pages, wakeup_events, wakeup_bytes, cpus)
        except BaseException:
            ref.release()
            raise
        self._map = ref
        self.map_id = info.id
        self.callback = callback
        self.lost_callback = lost_callback
        self.lost: dict[int, int] = {}
        self._rings: list[_CpuRing] = []
        self._closed = False
        self._delivering: Iterator[bytes] | None = None  # samples being handed to a callback
        self._handed_at_close = 0
        attr = PerfEventAttr()
        attr.type = PERF_TYPE_SOFTWARE
        attr.size = ctypes.sizeof(PerfEventAttr)
        attr.config = PERF_COUNT_SW_BPF_OUTPUT
        attr.sample_period = 1
        attr.sample_type = PERF_SAMPLE_RAW
        if wakeup_bytes is not None:
            attr.flags = PERF_ATTR_FLAG_WATERMARK
            attr.wakeup_events = wakeup_bytes  # the union's wakeup_watermark with the watermark flag
        else:
            attr.wakeup_events = wakeup_events
        try:
            for cpu in self._cpus:
                event = _open_bpf_output(attr, cpu)
                try:
                    ring = _CpuRing(cpu, event, pages)
                except BaseException:
                    event.close()
                    raise
                self._rings.append(ring)
                perf.perf_ioctl(event, PERF_EVENT_IOC_ENABLE, "PerfEventReader", f"enable CPU {cpu}")
                perf.set_event_slot(ref.handle, cpu, event)
            self._waiter = Waiter([r.event for r in self._rings], select.EPOLLIN)
        except BaseException:
            self._release_rings()
            ref.release()
            raise

    def _setup(self, info: MapInfo, pages: int, wakeup_events: int, wakeup_bytes: int | None,
               cpus: list[int] | None) -> None:
        """Check the arguments against the map; sets the CPUs to open rings on."""
        if pages <= 0 or pages & (pages - 1):
            raise InvalidArgument(f"pages must be a power of 2, not {pages}", op="PerfEventReader")
        if wakeup_events < 1:
            raise InvalidArgument(f"wakeup_events must be >= 1, not {wakeup_events}", op="PerfEventReader")
        if wakeup_bytes is not None and not 0 < wakeup_bytes < pages * PAGE_SIZE:
            raise InvalidArgument(f"wakeup_bytes must be in 1..{pages * PAGE_SIZE - 1}", op="PerfEventReader")
        if info.key_size != 4 or info.value_size != 4:
            raise InvalidArgument(
                f"a perf event array has 4-byte keys and values; map id {info.id} has "
                f"{info.key_size}/{info.value_size}", op="PerfEventReader",
            )
        online = online_cpus()
        if cpus is None:
            cpus = online
            too_high = [c for c in cpus if c >= info.max_entries]
            if too_high:
                raise InvalidArgument(
                    f"the perf event array has {info.max_entries} entries but CPUs {too_high} are online; programs "
                    "running there would lose their samples (create it with max_entries >= possible CPUs)",
                    op="PerfEventReader",
                )
        else:
            bad = [c for c in cpus if c not in online or c >= info.max_entries]
            if bad:
                raise InvalidArgument(f"CPUs {bad} are offline or beyond the map's {info.max_entries} entries",
                                      op="PerfEventReader")
        self._cpus = cpus

    @property
    def cpus(self) -> list[int]:
        """The CPUs with a ring."""
        return [r.cpu for r in self._rings]

    def fileno(self) -> int:
        """An epoll fd readable when any CPU's ring woke us (select/selectors/asyncio)."""
        return self._waiter.fileno()

    def _check_open(self) -> None:
        if self._closed:
            raise MapClosed("the perf event reader is closed", op="perf")
        if self._map.handle.num < 0:
            # The Map was closed under the reader: the reader ends with it (its number may be reused).
            self.close()
            raise MapClosed("the perf event reader's map is closed", op="perf")

    # ------------------------------------------------------------------ reading
    def _drain_ring(self, ring: _CpuRing, cb: SampleCallback | None, out: list[PerfSample] | None) -> int:
        """Hand every pending sample of one CPU's ring to ``cb`` (or append it to ``out``); returns how many.

        The pending bytes are copied out of the ring at once (two copies when they wrap past the
        end of the area) and the samples cut out of that copy; the space is released to the kernel
        as the samples are handed out. A sample whose callback raises counts as read (the later
        ones stay in the ring); a lost-samples record is counted (and reported) in its place in
        the stream.
        """
        head = ring.head[0]  # acquire: records up to head are complete
        tail = ring.tail[0]
        if tail >= head:
            return 0
        data = ring.data
        size = ring.data_size
        cpu = ring.cpu
        start = tail % size
        pending = head - tail
        if start + pending <= size:
            block = data[start:start + pending].tobytes()
        else:
            block = data[start:size].tobytes() + data[:start + pending - size].tobytes()
        unpack_head = _SAMPLE_HEAD.unpack_from
        done = 0
        pos = 0
        while pos < pending:
            samples: list[bytes] = []
            ends: list[int] = []
            stops: Sequence[int] = ends  # where each sample's record ends in the block
            lost = 0
            uniform = _uniform_samples(block, pending) if pos == 0 else None
            if uniform is not None:
                samples, stops = uniform
                pos = pending
            while pos < pending:
                # Headers are 8-byte aligned and the area a multiple of 8: a header is never split.
                if pos + 16 <= pending:
                    rtype, _misc, rsize, raw_size = unpack_head(block, pos)
                else:  # a header-only record at the very end
                    (rtype, _misc, rsize), raw_size = _HEADER.unpack_from(block, pos), 0
                if rsize < 8 or pos + rsize > pending or (rtype == PERF_RECORD_SAMPLE and 12 + raw_size > rsize):
                    # A corrupt ring would loop forever (or hand out a neighbour's bytes) otherwise.
                    raise errors.MapError(f"perf ring of CPU {cpu} holds a record of size {rsize}", op="perf read")
                if rtype == PERF_RECORD_SAMPLE:
                    samples.append(block[pos + 12:pos + 12 + raw_size])
                    pos += rsize
                    ends.append(pos)
                    continue
                pos += rsize
                if rtype == PERF_RECORD_LOST:
                    lost = _LOST.unpack_from(block, pos - rsize + 8)[1]
                    break  # the samples before it are handed out first, then the loss is reported
            if out is not None:
                out += map(tuple.__new__, repeat(PerfSample), zip(repeat(cpu), samples))
                done += len(samples)
            elif samples:
                # As in the ring buffer reader: no bookkeeping per sample; where a raising callback
                # stopped is read back from the list iterator, and close() from a callback moves it to
                # its end.
                it = iter(samples)
                self._delivering = it
                try:
                    for sample in it:
                        cb(cpu, sample)  # type: ignore[misc]
                except BaseException:
                    if not self._closed:  # release up to the sample whose callback raised
                        ring.tail[0] = tail + stops[handed_out(it, len(samples)) - 1]
                    raise
                finally:
                    self._delivering = None
                if self._closed:
                    return done + self._handed_at_close  # a callback closed the reader: the rings are unmapped
                done += len(samples)
            if self._closed:
                return done
            ring.tail[0] = tail + pos  # release: every record before pos is copied and handed out
            if lost:
                self.lost[cpu] = self.lost.get(cpu, 0) + lost
                if self.lost_callback is not None:
                    self.lost_callback(cpu, lost)
                if self._closed:
                    return done
        return done

    def _drain_all(self, cb: SampleCallback | None, out: list[PerfSample] | None = None) -> int:
        done = 0
        for ring in self._rings:
            if self._closed:
                break  # closed by a callback
            done += self._drain_ring(ring, cb, out)
        return done

    def consume(self, callback: SampleCallback | None = None) -> int:
        """Read every pending record of every CPU without waiting; returns the number of samples."""
        cb = callback if callback is not None else self.callback
        if cb is None:
            raise InvalidArgument("consume() needs a callback (or give the reader one); read() returns samples",
                                  op="consume")
        self._check_open()
        return self._drain_all(cb)

    def read(self) -> list[PerfSample]:
        """The pending samples of every CPU (CPU by CPU, in order within a CPU); releases them."""
        out: list[PerfSample] = []
        self._check_open()
        self._drain_all(None, out)
        return out

    def pending(self) -> int:
        """Bytes not yet read, summed over all CPUs."""
        self._check_open()
        return sum(int(r.head[0] - r.tail[0]) for r in self._rings)

    def poll(self, timeout: float | None = None, callback: SampleCallback | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: forever) for samples, then read them; returns how many."""
        cb = callback if callback is not None else self.callback
        if cb is None:
            raise InvalidArgument("poll() needs a callback (or give the reader one)", op="poll")
        deadline = Deadline(timeout)
        while True:
            done = self.consume(cb)
            if done:
                return done
            if deadline.expired():
                return 0
            if not self._waiter.wait(deadline.remaining()) and deadline.expired():
                return 0

    async def read_async(self) -> list[PerfSample]:
        """Wait in the running asyncio loop for samples, then return them."""
        while True:
            samples = self.read()
            if samples:
                return samples
            await self._waiter.wait_async()

    def __aiter__(self) -> AsyncIterator[PerfSample]:
        return self._stream_async()

    async def _stream_async(self) -> AsyncIterator[PerfSample]:
        while True:
            for sample in await self.read_async():
                yield sample

    # ------------------------------------------------------------------ lifetime
    def _release_rings(self) -> None:
        for ring in self._rings:
            # Empty the map slot first so programs stop writing to a ring nobody reads (skipped, through the
            # handle, when the caller closed the map first: its number may belong to something else by now).
            perf.clear_event_slot(self._map.handle, ring.cpu)
            try:
                perf.perf_ioctl(ring.event, PERF_EVENT_IOC_DISABLE, "PerfEventReader")
            except errors.MapError:
                pass
            ring.close()
        self._rings = []

    def close(self) -> None:
        """Remove the events from the map, unmap the rings and close their fds."""
        if self._closed:
            return
        self._closed = True
        delivering, self._delivering = self._delivering, None
        if delivering is not None:  # closed by a callback: hand out no more copied samples
            self._handed_at_close = handed_out(delivering, 0)
            delivering.__setstate__(1 << 62)  # type: ignore[attr-defined]
        self._waiter.close()
        self._release_rings()
        self._map.release()

    def __copy__(self) -> PerfEventReader:
        raise TypeError("a PerfEventReader cannot be copied: its rings have one reader; share the reader")

    def __deepcopy__(self, memo: dict[int, Any]) -> PerfEventReader:
        return self.__copy__()

    def __reduce__(self) -> Any:
        raise TypeError("a PerfEventReader cannot be pickled")

    def __enter__(self) -> PerfEventReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PerfEventReader map_id={self.map_id} cpus={self.cpus} lost={sum(self.lost.values())}>"
