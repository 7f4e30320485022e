"""ebpfmaps against bcc's table API on one shared kernel map: lookup, update and full iteration.

bcc creates a ``BPF_HASH(u32 -> u64)`` and ebpfmaps opens the very same map by id, both typed
(bcc: ctypes ``c_uint32``/``c_uint64`` keys and leaves, prepared in advance so bcc pays no
key construction; ebpfmaps: ``key_type=c_uint32, value_type=c_uint64``, taking and returning
Python ints). The target is for ebpfmaps to be at least 1.5x faster: here the "C" column holds bcc's
time and the target ratio (ebpfmaps / bcc) is 1/1.5 = 0.67. Iteration is compared with bcc's
``items()`` (get_next_key + lookup per key) and, in its own row, ``items_lookup_batch()``.

bcc needs kernel headers; mk/bcc.mk builds them (make bench depends on it) and
BCC_KERNEL_SOURCE points at them here.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

from harness import Result, make_result

import ebpfmaps
from ebpfmaps.programs import BpfObject
from ebpfmaps.readers import PerfEventReader, RingBufReader

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1 / 1.4  # single ops: ebpfmaps at least 1.4x faster than bcc
EVENTS_TARGET = 1 / 3  # event readers: at least 3x faster than bcc's callback paths
FLOOR_BYTES_TARGET = 3.0  # samples as bytes: at most 3x the list-comprehension floor
FLOOR_CALLBACK_TARGET = 5.0  # samples through a callback: at most 5x that floor
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.bpfbuild builds the producer objects


def run(quick: bool) -> list[Result]:
    os.environ.setdefault("BCC_KERNEL_SOURCE", str(ROOT / ".cache" / "bcc-headers"))
    from bcc import BPF

    entries = 1_000 if quick else 10_000
    rounds = 3 if quick else 9
    b = BPF(text=f"BPF_HASH(bench, u32, u64, {entries}); BPF_PERF_OUTPUT(bcc_events);".encode())
    results: list[Result] = []
    try:
        table = b[b"bench"]
        m = ebpfmaps.open_by_id(_map_id(table.map_fd),
                                key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
        keys = list(range(entries))
        ct_keys = [ctypes.c_uint32(k) for k in keys]
        ct_vals = [ctypes.c_uint64(k * 3) for k in keys]
        for k in keys:
            m[k] = k * 3

        def eb_lookup() -> int:
            for k in keys:
                m[k]
            return entries

        key_t, leaf_t = table.Key, table.Leaf

        def bcc_lookup() -> tuple[int, int]:
            return _timed(lambda: [table[key_t(k)].value for k in keys], entries)

        def bcc_lookup_prebuilt() -> tuple[int, int]:
            return _timed(lambda: [table[k] for k in ct_keys], entries)

        def eb_update() -> int:
            for k in keys:
                m[k] = k
            return entries

        def bcc_update() -> tuple[int, int]:
            def go() -> None:
                for k in keys:
                    table[key_t(k)] = leaf_t(k)
            return _timed(go, entries)

        def bcc_update_prebuilt() -> tuple[int, int]:
            def go() -> None:
                for k, v in zip(ct_keys, ct_vals):
                    table[k] = v
            return _timed(go, entries)

        def eb_items() -> int:
            return sum(1 for _ in m.items())

        def bcc_items() -> tuple[int, int]:
            return _timed(lambda: table.items(), entries)

        def bcc_items_batch() -> tuple[int, int]:
            return _timed(lambda: list(table.items_lookup_batch()), entries)

        note = f"baseline column is bcc's table API (not C); {entries} entries, u32 -> u64"
        # The rows with a target compare like for like: Python ints in, Python ints out on both
        # sides (bcc: table[Key(k)].value). The "prebuilt" rows hand bcc ready-made ctypes keys
        # and leaves and keep its ctypes results: bcc's best case, shown without a target.
        for name, eb, other, target in (
            ("lookup vs bcc table[Key(k)].value", eb_lookup, bcc_lookup, TARGET),
            ("update vs bcc table[Key(k)] = Leaf(v)", eb_update, bcc_update, TARGET),
            ("full iteration vs bcc items()", eb_items, bcc_items, TARGET),
            ("full iteration vs bcc items_lookup_batch()", eb_items, bcc_items_batch, None),
            ("lookup vs bcc, prebuilt ctypes keys", eb_lookup, bcc_lookup_prebuilt, None),
            ("update vs bcc, prebuilt ctypes keys/leaves", eb_update, bcc_update_prebuilt, None),
        ):
            results.append(make_result(name, "bcc", eb, other, rounds=rounds, elements=entries, target=target,
                                       notes=note))
        m.close()
        results += _ring_buffer_vs_bcc(b, quick)
        results += _perf_buffer_vs_bcc(b, quick)
    finally:
        b.cleanup()
    return results


class _RbRecord(ctypes.Structure):
    """The ring buffer producer's 64-byte record (tests/bpf/rb_producer.bpf.c)."""

    _fields_ = [("seq", ctypes.c_uint64), ("size", ctypes.c_uint32), ("magic", ctypes.c_uint32),
                ("rest", ctypes.c_uint8 * 48)]


def _bcc_ringbuf_callback(user: Any) -> Any:
    """What bcc's RingBuf.open_ring_buffer wraps a user callback in (bcc/table.py), around ``user``."""
    from bcc import table as bcc_table

    def ringbuf_cb_(ctx: Any, data: Any, size: int) -> int:
        try:
            ret = user(ctx, data, size)
            try:
                ret = int(ret)
            except Exception:
                ret = 0
        except OSError as e:
            if e.errno == errno.EPIPE:
                raise SystemExit() from None
            raise
        return int(ret)

    return bcc_table._RINGBUF_CB_TYPE(ringbuf_cb_)


def _ring_buffer_vs_bcc(b: Any, quick: bool) -> list[Result]:
    """Ring buffer records: RingBufReader against bcc's ring_buffer_poll callback path, same map, same records.

    The producer (tests/bpf/rb_producer.bpf.c) fills the ring before every round, untimed. bcc
    consumes through its libbpf ring buffer manager and a ctypes callback per record, as
    ``open_ring_buffer`` sets it up, here on the very map the Python reader reads. Target:
    ebpfmaps at least 3x faster (ratio <= 1/3).
    """
    from tests.bpfbuild import bpf_object

    records = 5_000 if quick else 50_000
    rounds = 3 if quick else 9
    ring_size = 1 << 22
    rb = ebpfmaps.create("ringbuf", key_size=0, value_size=0, max_entries=ring_size, name="bcc_rb")
    state = ebpfmaps.create("array", key_size=4, value_size=8, max_entries=2, name="bcc_rb_state")
    obj = BpfObject.open(str(bpf_object("rb_producer")), reuse={"rb": rb, "rb_state": state})
    obj.load()
    prog = obj.programs["rb_produce"]
    packet = struct.pack("<IIII", 1, records, 64, 0).ljust(64, b"\0")  # reserve+submit 64-byte records
    reader = RingBufReader(rb)
    typed = RingBufReader(rb, record_type=_RbRecord)
    got: list[Any] = []
    string_at, cast, rec_ptr = ctypes.string_at, ctypes.cast, ctypes.POINTER(_RbRecord)
    bytes_cb = _bcc_ringbuf_callback(lambda ctx, data, size: got.append(string_at(data, size)))
    b._open_ring_buffer(rb.fd, bytes_cb, None)
    mgr_bytes = b._ringbuf_manager
    b._ringbuf_manager = None
    typed_cb = _bcc_ringbuf_callback(lambda ctx, data, size: got.append(cast(data, rec_ptr).contents))
    b._open_ring_buffer(rb.fd, typed_cb, None)
    mgr_typed = b._ringbuf_manager
    from bcc import lib as bcc_lib

    def fill() -> None:
        got.clear()
        prog.test_run(data=packet)

    def bcc_poll(mgr: Any) -> tuple[int, int]:
        t0 = time.perf_counter_ns()
        bcc_lib.bpf_poll_ringbuf(mgr, 0)  # what BPF.ring_buffer_poll(0) calls
        ns = time.perf_counter_ns() - t0
        if len(got) != records:
            raise RuntimeError(f"bcc ring_buffer_poll delivered {len(got)} records of {records}")
        return ns, records

    def eb_read() -> int:
        return len(reader.read())

    def eb_callback() -> int:
        return reader.consume(lambda rec: got.append(rec))

    def eb_typed() -> int:
        return typed.consume(got.append)

    note = (f"{records} 64-byte records per round; baseline column: bcc ring_buffer_poll with "
            "open_ring_buffer's callback wrapper on the same map")
    out = []
    try:
        for name, eb, mgr in (
            ("ringbuf read() bytes vs bcc ring_buffer_poll + ct.string_at", eb_read, mgr_bytes),
            ("ringbuf consume(callback) bytes vs bcc ring_buffer_poll + ct.string_at", eb_callback, mgr_bytes),
            ("ringbuf record_type=ctypes callback vs bcc ring_buffer_poll + event cast", eb_typed, mgr_typed),
        ):
            out.append(make_result(name, "bcc events", eb, functools.partial(bcc_poll, mgr), rounds=rounds,
                                   elements=records, target=EVENTS_TARGET, setup=fill, notes=note))
    finally:
        bcc_lib.bpf_free_ringbuf(mgr_bytes)
        bcc_lib.bpf_free_ringbuf(mgr_typed)
        b._ringbuf_manager = None
        typed.close()
        reader.close()
        obj.close()
        rb.close()
        state.close()
    return out


def _perf_buffer_vs_bcc(b: Any, quick: bool) -> list[Result]:
    """Perf event array samples: PerfEventReader against bcc's perf_buffer_poll, the same samples.

    bcc reads its own BPF_PERF_OUTPUT map (its perf buffers are bound to it); the producer
    (tests/bpf/perf_producer.bpf.c) is loaded twice, once writing to that map and once to the
    map PerfEventReader reads, and each copy writes the same samples before a round, untimed.
    The last row measures the reader against the floor: the same samples cut out of one bytes
    copy of the ring by a list comprehension.
    """
    from tests.bpfbuild import bpf_object

    samples = 2_000 if quick else 20_000
    rounds = 3 if quick else 9
    pages = 512  # 2 MiB per CPU: 20,000 samples of 48 bytes fit
    size = 32
    cpu = os.sched_getaffinity(0)
    (this_cpu,) = cpu if len(cpu) == 1 else (min(cpu),)
    bcc_table = b[b"bcc_events"]
    bcc_map = ebpfmaps.open_by_id(_map_id(bcc_table.map_fd))
    ours = ebpfmaps.create("perf_event_array", key_size=4, value_size=4, max_entries=ebpfmaps.possible_cpus(),
                           name="bench_events")
    objs = []
    for events in (ours, bcc_map):
        st = ebpfmaps.create("array", key_size=4, value_size=8, max_entries=2, name="bench_perf_st")
        obj = BpfObject.open(str(bpf_object("perf_producer")), reuse={"events": events, "perf_state": st})
        obj.load()
        objs.append((obj, st))
    ours_prog = objs[0][0].programs["perf_produce"]
    bcc_prog = objs[1][0].programs["perf_produce"]
    packet = struct.pack("<I", size).ljust(64, b"\0")
    got: list[Any] = []
    reader = PerfEventReader(ours, pages=pages, cpus=[this_cpu])
    bcc_table.open_perf_buffer(lambda cpu, data, sz: got.append(ctypes.string_at(data, sz)), page_cnt=pages)

    def fill() -> None:
        # Untimed before every round of either side: both readers' rings empty, then the same samples in each.
        reader.read()
        b.perf_buffer_poll(0)
        got.clear()
        ours_prog.test_run(data=packet, repeat=samples)
        bcc_prog.test_run(data=packet, repeat=samples)

    def bcc_poll() -> tuple[int, int]:
        t0 = time.perf_counter_ns()
        b.perf_buffer_poll(0)
        ns = time.perf_counter_ns() - t0
        if len(got) != samples:
            raise RuntimeError(f"bcc perf_buffer_poll delivered {len(got)} samples of {samples}")
        return ns, samples

    def eb_callback() -> int:
        return reader.consume(lambda cpu, data: got.append(data))

    def eb_read() -> int:
        return len(reader.read())

    # The floor: the samples as they lie in the ring (header, u32 size, data), from one bytes copy.
    fill()
    ring = reader._rings[0]
    pending = reader.pending()
    image = bytes(ring.data[:pending])
    stride = pending // samples
    raw = stride - 12

    def floor() -> tuple[int, int]:
        t0 = time.perf_counter_ns()
        out = [image[i:i + raw] for i in range(12, samples * stride, stride)]
        return time.perf_counter_ns() - t0, len(out)

    note = f"{samples} {size}-byte samples per round, {pages} pages per CPU"
    out = []
    try:
        for name, eb in (("perf consume(callback) vs bcc perf_buffer_poll + ct.string_at", eb_callback),
                         ("perf read() vs bcc perf_buffer_poll + ct.string_at", eb_read)):
            out.append(make_result(name, "bcc events", eb, bcc_poll, rounds=rounds, elements=samples,
                                   target=EVENTS_TARGET, setup=fill, notes=note))
        for name, eb, target in (("perf read() vs floor", eb_read, FLOOR_BYTES_TARGET),
                                 ("perf consume(callback) vs floor", eb_callback, FLOOR_CALLBACK_TARGET)):
            out.append(make_result(name, "bcc events", eb, floor, rounds=rounds, elements=samples, target=target,
                                   setup=fill, notes=note + "; baseline column: [buf[i:i+n] for i in ...] over one "
                                   "bytes copy of the samples"))
    finally:
        reader.close()
        for obj, st in objs:
            obj.close()
            st.close()
        ours.close()
        bcc_map.close()
    return out


def _map_id(fd: int) -> int:
    """The kernel id of the map behind bcc's fd (so ebpfmaps opens the same map, not a copy)."""
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("map_id:"):
                return int(line.split()[1])
    raise RuntimeError(f"fd {fd} is not a BPF map")


def _timed(fn: object, elements: int) -> tuple[int, int]:
    import time

    assert callable(fn)
    t0 = time.perf_counter_ns()
    fn()
    return time.perf_counter_ns() - t0, elements
