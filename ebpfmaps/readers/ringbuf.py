"""Consuming a BPF ring buffer (``BPF_MAP_TYPE_RINGBUF``) from Python through its shared memory.

Layout, as the kernel maps it (kernel/bpf/ringbuf.c, the same one libbpf's ringbuf.c reads):

* offset 0, one page, mapped read-write: ``consumer_pos`` (u64 at byte 0), written only by us;
* offset one page, one page, mapped read-only: ``producer_pos`` (u64 at byte 0);
* then the data area of ``max_entries`` bytes, which the kernel maps *twice* back to back,
  so a record that wraps past the end of the area is still contiguous in our mapping.

Each record is an 8-byte header (``u32 len`` whose bit 31 means "busy: reserved, not yet
committed" and bit 30 "discarded"; ``u32 pg_off`` for the kernel's own use) followed by
``len`` bytes, the whole rounded up to 8 bytes. Positions only grow; ``pos & (size-1)`` is
the offset in the area.

Memory ordering. libbpf reads ``producer_pos`` and each header with load-acquire and writes
``consumer_pos`` with store-release. Python cannot issue barriers, so this module relies on
x86-64's TSO model, where every plain load already has acquire semantics (loads are not
reordered with older loads) and every plain store has release semantics (stores are not
reordered with older loads or stores). What we must and do guarantee ourselves:

* each position is read and written as one aligned 8-byte access, and each header as one
  aligned 4-byte access (through ``memoryview.cast('Q'/'I')`` element access, which CPython
  implements with a fixed-size ``memcpy`` the compiler turns into a single ``mov``; a
  byte-by-byte store of ``consumer_pos`` could let the kernel see a torn, too-large value and
  overwrite unread data);
* in program order, a record's bytes are copied (or the caller's zero-copy callback has
  returned) *before* ``consumer_pos`` is advanced past it, so the kernel never reuses space we
  are still reading.

On weakly ordered CPUs (arm64) the same program order is kept but hardware reordering is
not prevented; there the reader is best-effort and libbpf's C consumer is the safe choice.

Busy records: the producer reserved space but has not committed yet. Records must be
consumed in order, so the reader stops there. The kernel wakes the epoll waiter when a
record is committed at the position the consumer waits on, but epoll also reports
"data available" while the busy record is pending, so :meth:`RingBufReader.poll` waits for a
busy record by spinning briefly and then sleeping in growing steps (up to 1 ms).
"""

from __future__ import annotations

import asyncio
import select
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator
from itertools import takewhile
from typing import Any

from ebpfmaps.codecs import Codec, CtypesCodec, StructCodec, make_codec
from ebpfmaps.errors import InvalidArgument, MapClosed, NotSupported
from ebpfmaps.maptypes import MapType
from ebpfmaps.readers._shared import (
    Deadline,
    MapLike,
    RingMapping,
    Waiter,
    handed_out,
    release_views,
    resolve_map,
)

# Header bits and size, from include/uapi/linux/bpf.h (BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT,
# BPF_RINGBUF_HDR_SZ).
BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
LEN_MASK = DISCARD_BIT - 1
HDR_SIZE = 8

# Spin this many times on a busy record before sleeping between checks.
_BUSY_SPINS = 200
_BUSY_SLEEP_MAX = 0.001
# Records copied out of the ring together (one memcpy) and released to the kernel together. Small
# enough that a slow callback does not keep a large part of the ring from the producer.
_RUN_MAX = 512

RecordCallback = Callable[[Any], object]


def record_span(length: int) -> int:
    """Bytes a record of ``length`` payload bytes occupies in the ring (header included, 8-aligned)."""
    return (length + HDR_SIZE + 7) & ~7


class RingBufReader:
    """Reads records that BPF programs write into a ring buffer map.

    ``callback`` (optional) receives each record as ``bytes`` from :meth:`consume` and
    :meth:`poll`; without one, use :meth:`read`, iteration, or pass a callback per call.

    ``record_type`` (optional: a ctypes ``Structure``, a :mod:`struct` format or a codec, as a
    map's ``value_type``) decodes the records of exactly its size before they are handed out
    (by :meth:`read`, :meth:`consume`, :meth:`poll`, iteration and :meth:`stream`), a run of
    records at a time in C where the codec allows it; a record of another size is handed out
    as ``bytes``, never dropped. Zero-copy views and :meth:`read_array` are not decoded.

    >>> reader = RingBufReader(rb)                      # doctest: +SKIP
    >>> reader.poll(timeout=1.0, callback=print)        # doctest: +SKIP
    >>> for record in reader: ...                       # what is available now, as bytes
    """

    def __init__(self, ringbuf: MapLike, callback: RecordCallback | None = None, *,
                 record_type: Any = None) -> None:
        self._decoder = _RunDecoder(make_codec(record_type, None, "value")) if record_type is not None else None
        ref, info = resolve_map(ringbuf, MapType.RINGBUF, "RingBufReader")
        try:
            # Consumer page: ours to write. Producer page + twice the data area: read-only.
            self._ring = RingMapping(ref.handle, info, python_consumes=True)
            try:
                self._waiter = Waiter([ref.handle], select.EPOLLIN)
            except BaseException:
                self._ring.close()
                raise
        except BaseException:
            ref.release()
            raise
        self._map = ref
        self.map_id = info.id
        self.data_size = self._ring.size
        self._mask = self.data_size - 1
        self.callback = callback
        self._busy_seen = False
        # The hot paths read these attributes directly.
        self._cons, self._prod, self._data, self._hdr = self._ring.cons, self._ring.prod, self._ring.data, self._ring.hdr
        self._closed = False
        # The zero-copy view currently lent to the caller (views() or a zero_copy callback): close()
        # releases it, so a reader closed mid-record leaves no live window into the ring.
        self._lent: memoryview | None = None
        # The copied records being handed to a callback: close() ends the hand-out (see _deliver).
        self._delivering: Iterator[Any] | None = None
        self._handed_at_close = 0
        self._run_at = (0, 0)

    # ------------------------------------------------------------------ state
    @property
    def consumer_pos(self) -> int:
        """Bytes consumed since the ring was created (the kernel's ``consumer_pos``)."""
        self._check_open()
        return int(self._cons[0])

    @property
    def producer_pos(self) -> int:
        """Bytes produced (reserved) since the ring was created."""
        self._check_open()
        return int(self._prod[0])

    def available(self) -> int:
        """Bytes between the consumer and the producer (records, headers and busy space)."""
        self._check_open()
        return int(self._prod[0] - self._cons[0])

    def fileno(self) -> int:
        """An epoll fd that is readable when data is available (for select/selectors/asyncio)."""
        return self._waiter.fileno()

    def _check_open(self) -> None:
        if self._closed:
            raise MapClosed("the ring buffer reader is closed", op="ringbuf")
        if self._map.handle.num < 0:
            # The Map was closed under the reader: the reader ends with it (its number may be reused).
            self.close()
            raise MapClosed("the ring buffer reader's map is closed", op="ringbuf")

    # ------------------------------------------------------------------ consuming
    def consume(self, callback: RecordCallback | None = None, *, limit: int | None = None,
                zero_copy: bool = False) -> int:
        """Hand every committed record to ``callback`` (or the reader's) without waiting; returns how many.

        Discarded records are skipped (they are not counted). Consumption stops at a busy
        record (not yet committed) and at ``limit`` records. With ``zero_copy=True`` the
        callback gets a read-only ``memoryview`` into the ring itself, valid only until the
        callback returns: the record's space is released to the kernel right after, and the
        view is released so that a stale access raises instead of reading reused memory.
        A record whose callback raises counts as consumed (libbpf does the same), so one bad
        record cannot wedge the reader; the exception propagates.
        """
        cb = callback if callback is not None else self.callback
        if cb is None:
            raise InvalidArgument("consume() needs a callback (or give the reader one); read() returns records", op="consume")
        if limit is not None and limit < 0:
            raise InvalidArgument(f"limit must be >= 0, not {limit}", op="consume")
        self._check_open()
        return self._drain(cb, -1 if limit is None else limit, zero_copy)

    def _drain(self, cb: RecordCallback, limit: int, zero_copy: bool) -> int:
        if not zero_copy:
            return self._drain_copies(cb, None, limit)
        cons_q = self._cons
        prod_q = self._prod
        hdr = self._hdr
        data = self._data
        mask = self._mask
        cons = cons_q[0]
        done = 0
        self._busy_seen = False
        while done != limit:
            prod = prod_q[0]  # acquire: the headers below were written before producer_pos moved
            if cons >= prod:
                break
            while cons < prod and done != limit:
                off = cons & mask
                length = hdr[off >> 2]
                if length & BUSY_BIT:
                    self._busy_seen = True
                    return done
                size = length & LEN_MASK
                cons += (size + 15) & ~7  # record_span(size), inlined on the hot path
                if length & DISCARD_BIT:
                    cons_q[0] = cons
                    continue
                done += 1
                start = off + HDR_SIZE
                view = self._lent = data[start:start + size]
                try:
                    cb(view)
                finally:
                    self._lent = None
                    view.release()
                    if not self._closed:  # closed by the callback: the record stays in the ring
                        cons_q[0] = cons  # release: after the caller is done with the bytes
                if self._closed:
                    return done  # the callback closed the reader: our views into the ring are gone
        return done

    def _drain_copies(self, cb: RecordCallback | None, out: list[Any] | None, limit: int) -> int:
        """Copy the committed records out of the ring in runs, hand them to ``cb`` or append them to ``out``.

        A run is a sequence of records with the very same header (same length, committed, not
        discarded), which is what a producer of fixed-size events writes: its headers are read in
        one strided slice of the ring, its bytes copied in one ``memcpy``, its records cut out of
        that copy by one list comprehension (and decoded together, with ``record_type``), and it
        is released to the kernel in one store of ``consumer_pos``. Records of mixed sizes make
        runs of one record, which is the record-by-record walk. The headers are read from the
        ring *before* the bytes are copied: a committed header guarantees that its record was
        written before it.
        """
        cons_q, prod_q, hdr, data, mask = self._cons, self._prod, self._hdr, self._data, self._mask
        decoder = self._decoder
        cons = cons_q[0]
        done = 0
        self._busy_seen = False
        while done != limit:
            prod = prod_q[0]  # acquire: the headers below were written before producer_pos moved
            if cons >= prod:
                break
            off = cons & mask
            length = hdr[off >> 2]
            if length & BUSY_BIT:
                self._busy_seen = True
                break
            size = length & LEN_MASK
            span = (size + 15) & ~7  # record_span(size)
            if length & DISCARD_BIT:
                cons += span
                cons_q[0] = cons
                continue
            n = (prod - cons) // span
            if n > _RUN_MAX:
                n = _RUN_MAX
            if 0 <= limit - done < n:
                n = limit - done
            if n > 1:
                # The headers where the run's records would start; the run ends at the first other one
                # (a record of another size, a busy or a discarded one).
                step = span >> 2
                heads = hdr[(off >> 2):(off >> 2) + n * step:step].tolist()
                if heads.count(length) != n:
                    n = sum(1 for _ in takewhile(length.__eq__, heads))
            end = n * span
            block = data[off:off + end].tobytes()  # the double mapping keeps a wrapping run contiguous
            if decoder is not None and size == decoder.size:
                records = decoder.decode(block, n, span)
            else:
                records = [block[i:i + size] for i in range(HDR_SIZE, end, span)]
            if cb is None:
                assert out is not None
                out += records
                cons += end
                cons_q[0] = cons  # release: the copy above is complete
                done += n
                continue
            # The hand-out loop carries no per-record bookkeeping: where it stopped is read back from
            # the list iterator (its pickle state holds the index) when a callback raises, and
            # close() from a callback ends the loop by moving the iterator to its end.
            it = iter(records)
            self._run_at = cons, span  # for close() from a callback: what was handed out is consumed
            self._delivering = it
            try:
                for record in it:
                    cb(record)
            finally:
                self._delivering = None
                if not self._closed:
                    # A record whose callback raised counts as consumed (as libbpf does); the rest of
                    # the run stays in the ring for the next call.
                    taken = handed_out(it, n)
                    cons += taken * span
                    cons_q[0] = cons  # release: the records handed out were copied before
            if self._closed:
                return done + self._handed_at_close  # closed by a callback: the ring is unmapped
            done += n
        return done

    def read(self, limit: int | None = None) -> list[Any]:
        """Copies of the committed records available now (up to ``limit``), in order; releases them."""
        out: list[bytes] = []
        if limit is not None and limit < 0:
            raise InvalidArgument(f"limit must be >= 0, not {limit}", op="read")
        self._check_open()
        self._drain_copies(None, out, -1 if limit is None else limit)
        return out

    def __iter__(self) -> Iterator[bytes]:
        """The records available now (copies); does not wait."""
        return iter(self.read())

    def read_array(self, record_size: int, dtype: Any = None, *, limit: int | None = None) -> Any:
        """Decode a run of fixed-size records at once into a numpy array (needs numpy).

        Reads consecutive committed records of exactly ``record_size`` bytes (skipping
        discarded ones) and returns them as an array of ``dtype`` (a numpy dtype whose
        itemsize is ``record_size``, e.g. a structured dtype) or, without one, a
        ``(n, record_size)`` uint8 array. The array is a strided view into one private copy
        of the ring's bytes (records keep the ring's 8-byte headers between them), so it stays
        valid after the space is released; ``np.ascontiguousarray`` packs it if needed. Stops before the first record of another size or
        a busy one; :meth:`consume` handles those. This is the batch decoding path: the
        headers are checked and the payloads copied by numpy, not record by record in Python.
        """
        try:
            # Imported on first use: numpy is an optional dependency (the [numpy] extra).
            import numpy as np
        except ImportError as exc:  # pragma: no cover - numpy is in the [numpy]/[dev] extras
            raise NotSupported("read_array needs numpy (pip install 'ebpfmaps[numpy]')", op="read_array") from exc
        if record_size <= 0 or record_size > LEN_MASK:
            raise InvalidArgument(f"record_size must be in 1..{LEN_MASK}, not {record_size}", op="read_array")
        out_dtype = np.dtype(np.uint8) if dtype is None else np.dtype(dtype)
        if dtype is not None and out_dtype.itemsize != record_size:
            raise InvalidArgument(
                f"dtype itemsize {out_dtype.itemsize} differs from record_size {record_size}", op="read_array"
            )
        self._check_open()
        span = record_span(record_size)
        cons = int(self._cons[0])
        prod = int(self._prod[0])
        count = min((prod - cons) // span, self.data_size // span)
        if limit is not None:
            count = min(count, limit)
        self._busy_seen = False
        if count <= 0:
            return np.empty((0, record_size), np.uint8) if dtype is None else np.empty(0, out_dtype)
        off = cons & self._mask
        # Contiguous even across the end of the area thanks to the double mapping. Headers are
        # read first, from the live ring: a committed header guarantees its record's bytes were
        # written before it, whatever order the bulk copy below then reads them in.
        hdr_view = np.dtype({"names": ["len"], "formats": ["<u4"], "offsets": [0], "itemsize": span})
        headers = np.frombuffer(self._data, hdr_view, count, off)["len"].copy()
        plain = (headers & ~np.uint32(DISCARD_BIT)) == record_size
        good = count if plain.all() else int(np.argmin(plain))
        if good < count and headers[good] & BUSY_BIT:
            self._busy_seen = True
        # One memcpy of the whole run; records keep their ring stride (header + padding) in it.
        block = np.frombuffer(self._data, np.uint8, good * span, off).copy()
        self._cons[0] = cons + good * span  # release: the copy above is complete
        if dtype is None:
            result = block.reshape(good, span)[:, HDR_SIZE:HDR_SIZE + record_size]
        else:
            wrapped = np.dtype({"names": ["r"], "formats": [out_dtype], "offsets": [HDR_SIZE], "itemsize": span})
            result = block.view(wrapped)["r"]
        discarded = (headers[:good] & np.uint32(DISCARD_BIT)) != 0
        return result[~discarded] if discarded.any() else result

    # ------------------------------------------------------------------ waiting
    def poll(self, timeout: float | None = None, callback: RecordCallback | None = None, *,
             limit: int | None = None, zero_copy: bool = False) -> int:
        """Wait up to ``timeout`` seconds (None: forever, 0: not at all) for records and consume them.

        Returns the number of records handed to the callback; 0 means the timeout passed
        with nothing to deliver. A busy record at the head is waited for within the timeout.
        """
        deadline = Deadline(timeout)
        cb = callback if callback is not None else self.callback
        if cb is None:
            raise InvalidArgument("poll() needs a callback (or give the reader one); see read()/wait()", op="poll")
        while True:
            done = self.consume(cb, limit=limit, zero_copy=zero_copy)
            if done:
                return done
            if not self.wait(deadline.remaining()):
                return 0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a committed record is at the head (True) or ``timeout`` passes (False)."""
        self._check_open()
        deadline = Deadline(timeout)
        spins = 0
        pause = 0.00002
        while True:
            cons = self._cons[0]
            if cons < self._prod[0]:
                length = self._hdr[(cons & self._mask) >> 2]
                if not length & BUSY_BIT:
                    return True
                # Busy: committed soon by a running program (reservations cannot outlive one run).
                if deadline.expired():
                    return False
                spins += 1
                if spins > _BUSY_SPINS:
                    remaining = deadline.remaining()
                    time.sleep(pause if remaining is None else min(pause, remaining))
                    pause = min(pause * 2, _BUSY_SLEEP_MAX)
                continue
            if deadline.expired():
                return False
            self._waiter.wait(deadline.remaining())
            self._check_open()  # another thread may have closed the reader meanwhile
            if deadline.expired() and self._cons[0] >= self._prod[0]:
                return False

    # ------------------------------------------------------------------ asyncio
    async def wait_async(self) -> None:
        """Wait in the running event loop until a committed record is available."""
        pause = 0.00002
        while True:
            self._check_open()
            cons = self._cons[0]
            if cons < self._prod[0]:
                if not self._hdr[(cons & self._mask) >> 2] & BUSY_BIT:
                    return
                await asyncio.sleep(pause)  # busy record: let the loop run while it is committed
                pause = min(pause * 2, _BUSY_SLEEP_MAX)
                continue
            await self._waiter.wait_async()

    async def read_async(self, limit: int | None = None) -> list[bytes]:
        """Wait (without blocking the loop) for records, then return copies of those available."""
        while True:
            await self.wait_async()
            records = self.read(limit)
            if records:
                return records

    async def poll_async(self, callback: RecordCallback | None = None, *, limit: int | None = None) -> int:
        """asyncio counterpart of :meth:`poll` without a timeout (wrap it in ``asyncio.wait_for``)."""
        cb = callback if callback is not None else self.callback
        if cb is None:
            raise InvalidArgument("poll_async() needs a callback (or give the reader one)", op="poll")
        while True:
            await self.wait_async()
            done = self.consume(cb, limit=limit)
            if done:
                return done

    def __aiter__(self) -> AsyncIterator[bytes]:
        """``async for record in reader``: endless stream of records as they arrive."""
        return self._stream_async()

    async def _stream_async(self) -> AsyncIterator[bytes]:
        while True:
            for record in await self.read_async():
                yield record

    def stream(self, timeout: float | None = None) -> Iterator[bytes]:
        """Records as they arrive; ends when ``timeout`` seconds pass without a record (None: never)."""
        while True:
            records = self.read()
            if records:
                yield from records
                continue
            if not self.wait(timeout):
                return

    # ------------------------------------------------------------------ zero copy
    def views(self, limit: int | None = None) -> Iterator[memoryview]:
        """Zero-copy iteration over the records available now.

        Each item is a read-only ``memoryview`` into the ring. A record is released to the
        kernel (and its view released, so later use raises ``ValueError``) when the next
        item is requested or the iteration ends; copy what must outlive that.
        """
        self._check_open()
        cons_q, prod_q, hdr, data, mask = self._cons, self._prod, self._hdr, self._data, self._mask
        cons = cons_q[0]
        given = 0
        while limit is None or given < limit:
            self._check_open()  # closed while the caller held the previous record
            if cons >= prod_q[0]:
                return
            off = cons & mask
            length = hdr[off >> 2]
            if length & BUSY_BIT:
                self._busy_seen = True
                return
            size = length & LEN_MASK
            cons += record_span(size)
            if length & DISCARD_BIT:
                cons_q[0] = cons
                continue
            view = self._lent = data[off + HDR_SIZE:off + HDR_SIZE + size]
            try:
                given += 1
                yield view
            finally:
                self._lent = None
                view.release()
                if not self._closed:  # a reader closed mid-record leaves the record in the ring
                    cons_q[0] = cons

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Unmap the ring and close the epoll fd (the map itself stays open). Idempotent; every later
        call raises :class:`~ebpfmaps.errors.MapClosed`.

        A zero-copy view lent at that moment is released (its record stays in the ring, unconsumed).
        If the caller still holds slices made from such a view, the ring stays mapped until they are
        gone, so no view ever points at unmapped memory.
        """
        if self._closed:
            return
        self._closed = True
        delivering, self._delivering = self._delivering, None
        if delivering is not None:
            # Closed by a callback: hand out no more copied records, and release to the kernel the
            # ones handed out (the callback's own record included), as a record-by-record walk does.
            self._handed_at_close = handed_out(delivering, 0)
            delivering.__setstate__(1 << 62)  # type: ignore[attr-defined]
            cons, span = self._run_at
            self._cons[0] = cons + self._handed_at_close * span
        self._waiter.close()
        lent, self._lent = self._lent, None
        release_views([lent] if lent is not None else [])
        self._ring.close()
        self._map.release()

    def __copy__(self) -> RingBufReader:
        raise TypeError("a RingBufReader cannot be copied: a ring has one consumer position; share the reader")

    def __deepcopy__(self, memo: dict[int, Any]) -> RingBufReader:
        return self.__copy__()

    def __reduce__(self) -> Any:
        raise TypeError("a RingBufReader cannot be pickled")

    def __enter__(self) -> RingBufReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"available={self.available()}"
        return f"<RingBufReader map_id={self.map_id} size={self.data_size} {state}>"


class _RunDecoder:
    """Decodes a run of same-size records straight out of a copy of the ring (headers included).

    A :mod:`struct` codec unpacks the whole run in C (one struct per record stride that skips the
    header and the padding); a ctypes codec copies each record into an instance; any other codec
    (a BTF one, a user's) decodes record by record with its ``decode``.
    """

    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        self.size = codec.size
        self._strided: dict[int, struct.Struct] = {}

    def decode(self, block: bytes, count: int, span: int) -> list[Any]:
        codec, size = self.codec, self.size
        kind = type(codec)
        if kind is StructCodec:
            assert isinstance(codec, StructCodec)
            st = self._strided.get(span)
            if st is None:
                body = codec.struct.format.lstrip("@=<>!")
                st = self._strided[span] = struct.Struct(f"{codec.order}{HDR_SIZE}x{body}{span - HDR_SIZE - size}x")
            if st.size == span:
                if codec.scalar:
                    return [t[0] for t in st.iter_unpack(block)]
                return list(st.iter_unpack(block))
        if kind is CtypesCodec:
            assert isinstance(codec, CtypesCodec)
            copy = codec.ctype.from_buffer_copy  # type: ignore[attr-defined]
            return [copy(block, i) for i in range(HDR_SIZE, count * span, span)]
        dec = codec.decode
        return [dec(block[i:i + size]) for i in range(HDR_SIZE, count * span, span)]
