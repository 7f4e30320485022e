"""Core hot paths against C: single ops, batches, and a full iteration of a big hash map.

Every case uses one kernel map that both sides share (the C baseline inherits its
fd), with 4-byte keys and 8-byte values: raw ``bytes`` (no codec work beyond a
size check) and a typed variant with ctypes codecs (``c_uint32`` keys,
``c_uint64`` values), which is what most users write.
"""

from __future__ import annotations

import ctypes
import functools
import os
import statistics
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from harness import Result, c_baseline, make_result

import ebpfmaps
from ebpfmaps import map as map_module
from ebpfmaps._libbpf import fast

SINGLE_TARGET = 1.3  # target: a single op at most 1.3x C
BATCH_TARGET = 1.1  # target: batched, per element, at most 1.1x C
FLOOR_TARGET = 1.15  # target: a single op at most 1.15x the bare ctypes call with prebuilt arguments
WHOLE_MAP_TARGET = 1.5  # target: a whole map into Python objects, per element, at most 1.5x C's batch lookup
NUMPY_TARGET = 1.1  # target: a whole map into one numpy array, at most 1.1x C's batch lookup

_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")


def _iter_batch_size() -> int:
    """The batch size items() uses, so that C walks the map in the same steps."""
    return int(getattr(map_module, "ITER_BATCH", map_module.DEFAULT_BATCH))


def _make(kind: str, typed: bool, entries: int) -> ebpfmaps.Map:
    kw: dict[str, Any] = {"key_type": ctypes.c_uint32, "value_type": ctypes.c_uint64} if typed else {}
    if kind == "hash":
        if not typed:
            kw = {"key_size": 4, "value_size": 8}
        return ebpfmaps.HashMap(max_entries=entries, name="bench_hash", **kw)
    if not typed:
        kw = {"value_size": 8}  # array keys are int indices by default
    return ebpfmaps.ArrayMap(max_entries=entries, name="bench_array", **kw)


def _keys_values(kind: str, typed: bool, n: int) -> tuple[list[Any], list[Any]]:
    """What a user hands the map: ints when typed (and for array indices), else packed bytes."""
    keys: list[Any] = list(range(n)) if typed or kind == "array" else [_U32.pack(i) for i in range(n)]
    values: list[Any] = list(range(n)) if typed else [_U64.pack(i) for i in range(n)]
    return keys, values


def _fill(m: ebpfmaps.Map, keys: list[Any], values: list[Any]) -> None:
    m.update_batch(keys, values)


def single_ops(quick: bool) -> list[Result]:
    nkeys = 1000
    ops = 2_000 if quick else 50_000
    rounds = 3 if quick else 15
    cb = c_baseline()
    out: list[Result] = []
    for kind in ("hash", "array"):
        for typed in (False, True):
            m = _make(kind, typed, nkeys)
            keys, values = _keys_values(kind, typed, nkeys)
            _fill(m, keys, values)
            cb.share(m.fd)
            fd = m.fd
            reps = ops // nkeys
            seq_k = keys * reps
            seq_v = values * reps
            label = "typed" if typed else "bytes"

            def py_lookup(m: ebpfmaps.Map = m, seq_k: list[Any] = seq_k) -> int:
                for k in seq_k:
                    m.lookup(k)
                return len(seq_k)

            def py_update(m: ebpfmaps.Map = m, seq_k: list[Any] = seq_k, seq_v: list[Any] = seq_v) -> int:
                for k, v in zip(seq_k, seq_v):
                    m.update(k, v)
                return len(seq_k)

            c_lookup = functools.partial(cb.call, "lookup", fd, 4, 8, len(seq_k), nkeys)
            c_update = functools.partial(cb.call, "update", fd, 4, 8, len(seq_k), nkeys)

            out.append(make_result(f"{kind} lookup ({label})", "single op", py_lookup, c_lookup,
                                   rounds=rounds, elements=len(seq_k), target=SINGLE_TARGET))
            out.append(make_result(f"{kind} update ({label})", "single op", py_update, c_update,
                                   rounds=rounds, elements=len(seq_k), target=SINGLE_TARGET))
            if kind == "hash":
                out += _single_ops_vs_floor(m, keys, values, label, rounds)
            if kind == "hash" and typed:
                # The dict spelling users write most; same kernel work as lookup/update.
                def py_getitem(m: ebpfmaps.Map = m, seq_k: list[Any] = seq_k) -> int:
                    for k in seq_k:
                        m[k]
                    return len(seq_k)

                out.append(make_result(f"{kind} m[k] ({label})", "single op", py_getitem, c_lookup,
                                       rounds=rounds, elements=len(seq_k), target=SINGLE_TARGET))
            m.close()
    return out


def _timed_loop(loop: Callable[[], int]) -> Callable[[], tuple[int, int]]:
    """A Python loop as the harness's baseline side: ``(total ns, elements)``."""

    def run() -> tuple[int, int]:
        t0 = time.perf_counter_ns()
        n = loop()
        return time.perf_counter_ns() - t0, n

    return run


def _single_ops_vs_floor(m: ebpfmaps.Map, keys: list[Any], values: list[Any], label: str,
                         rounds: int) -> list[Result]:
    """lookup/update/delete against a bare ctypes call of the same libbpf function with prebuilt
    arguments (keys as packed bytes, one value buffer, the fd as an int), in the same run.

    The baseline is the plain ``CDLL`` call (the GIL released), as a user would write it; the
    library's element calls keep the GIL (ebpfmaps._libbpf.fast explains why), and the notes give
    the bare call of that kind too.
    """
    fd = m.fd
    nkeys = len(keys)
    packed = [_U32.pack(i) for i in range(nkeys)]
    vbytes = [_U64.pack(i) for i in range(nkeys)]
    buf = (ctypes.c_char * 8)()
    flags = fast.u64(0)
    rel, held = fast.released, fast
    reps = 10
    seq_k, seq_v, seq_p, seq_b = keys * reps, values * reps, packed * reps, vbytes * reps
    n = len(seq_k)

    def bare(call: Any, kind: str) -> Callable[[], int]:
        if kind == "lookup":
            def loop() -> int:
                for k in seq_p:
                    call(fd, k, buf)
                return n
        elif kind == "update":
            def loop() -> int:
                for k, v in zip(seq_p, seq_b):
                    call(fd, k, v, flags)
                return n
        else:
            def loop() -> int:
                for k in packed:
                    call(fd, k)
                return nkeys
        return loop

    def py_lookup() -> int:
        lookup = m.lookup
        for k in seq_k:
            lookup(k)
        return n

    def py_update() -> int:
        update = m.update
        for k, v in zip(seq_k, seq_v):
            update(k, v)
        return n

    def py_delete() -> int:
        delete = m.delete
        for k in keys:
            delete(k)
        return nkeys

    def refill() -> None:
        m.update_batch(keys, values)

    out = []
    for op, py, floor_rel, floor_held, setup in (
        ("lookup", py_lookup, rel.map_lookup_elem, held.map_lookup_elem, None),
        ("update", py_update, rel.map_update_elem, held.map_update_elem, None),
        ("delete", py_delete, rel.map_delete_elem, held.map_delete_elem, refill),
    ):
        samples = []
        for _ in range(3):
            if setup is not None:
                setup()
            ns, count = _timed_loop(bare(floor_held, op))()
            samples.append(ns / count)
        held_ns = statistics.median(samples)
        out.append(make_result(
            f"hash {op} ({label}) vs bare ctypes call", "single op floor", py, _timed_loop(bare(floor_rel, op)),
            rounds=rounds, elements=nkeys if op == "delete" else n, target=FLOOR_TARGET, setup=setup,
            notes=f"baseline column: the bare CDLL call with prebuilt arguments; the bare GIL-holding call "
                  f"(what the library uses) took {held_ns:.0f} ns",
        ))
    cb = c_baseline()
    out.append(make_result(f"hash delete ({label})", "single op", py_delete,
                           functools.partial(cb.call, "delete", fd, 4, 8, nkeys, nkeys), rounds=rounds,
                           elements=nkeys, target=SINGLE_TARGET, setup=refill))
    refill()  # the rows after these read the map
    return out


def gil_choice(quick: bool) -> list[Result]:
    """Element calls holding the GIL (PyDLL) against releasing it (CDLL): 1 and 2 threads.

    The same bare lookup loop (1,000 keys, prebuilt arguments) in one thread and in two threads
    at once, with the process allowed on every CPU for the two-thread case. The py column is the
    GIL-holding call, the baseline column the releasing one; both are ns per lookup of the whole
    process (for two threads: wall time / lookups of both threads, so lower is more throughput).
    """
    nkeys = 1000
    reps = 5 if quick else 40
    rounds = 3 if quick else 9
    m = _make("hash", False, nkeys)
    keys, values = _keys_values("hash", False, nkeys)
    _fill(m, keys, values)
    fd = m.fd

    def loop(call: Any) -> None:
        buf = (ctypes.c_char * 8)()
        for _ in range(reps):
            for k in keys:
                call(fd, k, buf)

    def threaded(call: Any, threads: int) -> Callable[[], int]:
        def run() -> int:
            workers = [threading.Thread(target=loop, args=(call,)) for _ in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            return threads * reps * nkeys
        return run

    def as_baseline(fn: Callable[[], int]) -> Callable[[], tuple[int, int]]:
        def run() -> tuple[int, int]:
            t0 = time.perf_counter_ns()
            n = fn()
            return time.perf_counter_ns() - t0, n
        return run

    out = []
    pinned = os.sched_getaffinity(0)
    try:
        for threads in (1, 2):
            if threads == 2:
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) & _allowed_cpus())
            cpus = len(os.sched_getaffinity(0))
            out.append(make_result(
                f"GIL held vs released, {threads} thread{'s' if threads > 1 else ''}", "GIL",
                threaded(fast.map_lookup_elem, threads), as_baseline(threaded(fast.released.map_lookup_elem, threads)),
                rounds=rounds, elements=threads * reps * nkeys, target=None,
                notes=f"hash lookups, prebuilt args, {cpus} CPU(s) allowed; ratio < 1: holding the GIL is faster",
            ))
    finally:
        os.sched_setaffinity(0, pinned)
        m.close()
    return out


def _allowed_cpus() -> set[int]:
    """Every CPU the machine has online (the harness pinned this process to one)."""
    with open("/sys/devices/system/cpu/online") as f:
        spec = f.read().strip()
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def batch_ops(quick: bool) -> list[Result]:
    n = 5_000 if quick else 100_000
    rounds = 3 if quick else 9
    cb = c_baseline()
    out: list[Result] = []
    for kind in ("hash", "array"):
        for typed in (False, True):
            m = _make(kind, typed, n)
            keys, values = _keys_values(kind, typed, n)
            _fill(m, keys, values)
            cb.share(m.fd)
            fd = m.fd
            label = "typed" if typed else "bytes"

            def py_lookup_batch(m: ebpfmaps.Map = m) -> int:
                return len(m.lookup_batch())

            def py_update_batch(m: ebpfmaps.Map = m, keys: list[Any] = keys, values: list[Any] = values) -> int:
                return m.update_batch(keys, values)

            def c_lookup_batch(fd: int = fd) -> tuple[int, int]:
                return cb.call("lookup_batch", fd, 4, 8, map_module.DEFAULT_BATCH)

            def c_update_batch(fd: int = fd) -> tuple[int, int]:
                return cb.call("update_batch", fd, 4, 8, n)

            out.append(make_result(f"{kind} lookup_batch ({label})", "batch", py_lookup_batch, c_lookup_batch,
                                   rounds=rounds, elements=n, target=BATCH_TARGET,
                                   notes="whole map into a dict"))
            out.append(make_result(f"{kind} update_batch ({label})", "batch", py_update_batch, c_update_batch,
                                   rounds=rounds, elements=n, target=BATCH_TARGET,
                                   notes="from lists of keys and values"))
            if kind == "hash" and not typed:
                # The same kernel work without per-element Python objects: packed buffers in and
                # out (for numpy or struct consumers). This is the library's own overhead on a
                # batch; the rows above add the codecs and building the dict.
                packed_k, packed_v = b"".join(keys), b"".join(values)

                def py_raw_batches(m: ebpfmaps.Map = m) -> int:
                    return sum(count for _, _, count in m.iter_batches_raw(map_module.DEFAULT_BATCH))

                def py_packed_update(m: ebpfmaps.Map = m, kb: bytes = packed_k, vb: bytes = packed_v) -> int:
                    return m.update_batch(kb, vb)

                out.append(make_result(f"{kind} iter_batches_raw ({label}, packed)", "batch", py_raw_batches,
                                       c_lookup_batch, rounds=rounds, elements=n, target=BATCH_TARGET,
                                       notes="packed keys/values per kernel batch, no decoding"))
                out.append(make_result(f"{kind} update_batch ({label}, packed)", "batch", py_packed_update,
                                       c_update_batch, rounds=rounds, elements=n, target=BATCH_TARGET,
                                       notes="keys and values given as one packed buffer each"))
            m.close()
    return out


def percpu_batches(quick: bool) -> list[Result]:
    """Per-CPU hash batches: every element carries one 8-byte slot per possible CPU."""
    n = 5_000 if quick else 50_000
    rounds = 3 if quick else 7
    cb = c_baseline()
    m = ebpfmaps.PerCpuHashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=n,
                               name="bench_percpu")
    keys, values = list(range(n)), list(range(n))
    _fill(m, keys, values)
    cb.share(m.fd)
    vs = m.value_codec.size  # ncpus x 8: what the kernel copies per element

    def py_lookup_batch() -> int:
        return len(m.lookup_batch())

    def py_update_batch() -> int:
        return m.update_batch(keys, values)

    notes = f"{ebpfmaps.possible_cpus()} possible CPUs; one int per element, written to every CPU"
    out = [
        make_result("percpu_hash lookup_batch (typed)", "batch", py_lookup_batch,
                    functools.partial(cb.call, "lookup_batch", m.fd, 4, vs, map_module.DEFAULT_BATCH),
                    rounds=rounds, elements=n, target=BATCH_TARGET, notes=notes),
        make_result("percpu_hash update_batch (typed)", "batch", py_update_batch,
                    functools.partial(cb.call, "update_batch", m.fd, 4, vs, n),
                    rounds=rounds, elements=n, target=BATCH_TARGET, notes=notes),
    ]
    m.close()
    return out


def iteration(quick: bool) -> list[Result]:
    n = 20_000 if quick else 1_000_000
    rounds = 3 if quick else 5
    cb = c_baseline()
    out: list[Result] = []
    for typed in (False, True):
        m = _make("hash", typed, n)
        keys, values = _keys_values("hash", typed, n)
        _fill(m, keys, values)
        del keys, values
        cb.share(m.fd)
        fd = m.fd
        label = "typed" if typed else "bytes"

        def py_items(m: ebpfmaps.Map = m) -> int:
            # The loop a user writes, with an empty body: what the library costs per element.
            for _k, _v in m.items():
                pass
            return n

        got = sum(1 for _ in m.items())
        if got != n:
            raise RuntimeError(f"items() walked {got} entries of {n}")

        def c_walk(fd: int = fd) -> tuple[int, int]:
            return cb.call("lookup_batch", fd, 4, 8, _iter_batch_size())

        notes = f"C walks with lookup_batch({_iter_batch_size()})"
        if not quick and not typed:
            # For scale: the get_next_key + lookup walk a C program without batches would do.
            total, count = cb.call("next_key", fd, 4, 8)
            notes += f"; C get_next_key+lookup walk: {total / max(count, 1):.0f} ns/element"
        out.append(make_result(f"hash items() {n:,} entries ({label})", "iteration", py_items, c_walk,
                               rounds=rounds, elements=n, target=WHOLE_MAP_TARGET, notes=notes))

        def py_lookup_batch(m: ebpfmaps.Map = m) -> int:
            return len(m.lookup_batch(batch_size=_iter_batch_size()))

        def py_to_dict(m: ebpfmaps.Map = m) -> int:
            return len(m.to_dict())

        def py_to_numpy(m: ebpfmaps.Map = m) -> int:
            return len(m.to_numpy())

        out.append(make_result(f"hash lookup_batch() {n:,} entries ({label})", "iteration", py_lookup_batch, c_walk,
                               rounds=rounds, elements=n, target=WHOLE_MAP_TARGET, notes=notes + "; into a dict"))
        out.append(make_result(f"hash to_dict() {n:,} entries ({label})", "iteration", py_to_dict, c_walk,
                               rounds=rounds, elements=n, target=WHOLE_MAP_TARGET, notes=notes))
        out.append(make_result(f"hash to_numpy() {n:,} entries ({label})", "iteration", py_to_numpy, c_walk,
                               rounds=rounds, elements=n, target=NUMPY_TARGET,
                               notes=notes + "; one structured array (key, value)"))
        # The Python side of lookup_batch()/to_dict() alone: the same packed batches, read from the kernel
        # beforehand, decoded into new key and value objects and put into a new dict. Their ratio cannot
        # go below 1 + this row's ratio.
        chunks = list(m.iter_batches_raw(_iter_batch_size()))
        kdm, vdm = m.key_codec.decode_many, m.value_codec.decode_many

        def py_dict_only(chunks: list[tuple[bytes, bytes, int]] = chunks, kdm: Any = kdm, vdm: Any = vdm) -> int:
            d: dict[Any, Any] = {}
            for kb, vb, count in chunks:
                d.update(zip(kdm(kb, count), vdm(vb, count)))
            return len(d)

        out.append(make_result(f"hash dict from {n:,} entries already read ({label})", "iteration floor",
                               py_dict_only, c_walk, rounds=rounds, elements=n, target=None,
                               notes=notes + "; lookup_batch() without its syscalls: new key and value objects "
                                             "and the dict; the floor of lookup_batch()/to_dict() is 1 + this ratio"))
        del chunks
        m.close()
    return out


def breakdown(quick: bool) -> list[Result]:
    """Where a single op's time goes: each piece of a hash lookup measured on its own."""
    import os

    from ebpfmaps._libbpf import fast, lib

    nkeys = 1000
    reps = 2 if quick else 50
    rounds = 3 if quick else 15
    cb = c_baseline()
    out: list[Result] = []
    m = _make("hash", False, nkeys)
    keys, values = _keys_values("hash", False, nkeys)
    _fill(m, keys, values)
    cb.share(m.fd)
    fd = m.fd
    seq = keys * reps
    n = len(seq)
    vtype = ctypes.c_char * 8
    buf = vtype()
    noop = lib.libbpf_major_version
    raw_lookup = fast.map_lookup_elem

    def py_noop() -> int:
        for _ in seq:
            noop()
        return n

    def py_getppid() -> int:
        getppid = os.getppid
        for _ in seq:
            getppid()
        return n

    def py_raw_lookup() -> int:
        for k in seq:
            raw_lookup(fd, k, buf)
        return n

    ints = list(range(nkeys)) * reps
    packed = _U64.pack(7)
    pack_u32, unpack_u64 = _U32.pack, _U64.unpack_from

    def py_codec() -> int:
        for i in ints:
            pack_u32(i)
            unpack_u64(packed)
        return n

    def py_alloc() -> int:
        for _ in seq:
            vtype()
        return n

    pool = [vtype()]

    def py_pool() -> int:
        for _ in seq:
            b = pool.pop()
            pool.append(b)
        return n

    group = "breakdown"
    out.append(make_result("ctypes call that does nothing (libbpf_major_version)", group, py_noop, None,
                           rounds=rounds, elements=n, target=None))
    out.append(make_result("trivial syscall: os.getppid() vs C syscall(SYS_getppid)", group, py_getppid,
                           functools.partial(cb.call, "getppid", n), rounds=rounds, elements=n, target=None))
    out.append(make_result("hash lookup through ctypes, arguments prebuilt", group, py_raw_lookup,
                           functools.partial(cb.call, "lookup", fd, 4, 8, n, nkeys), rounds=rounds, elements=n,
                           target=None, notes="the floor for Map.lookup through ctypes"))
    out.append(make_result("codec work: pack u32 key + unpack u64 value", group, py_codec, None,
                           rounds=rounds, elements=n, target=None, notes="no syscall"))
    out.append(make_result("value buffer: new ctypes array", group, py_alloc, None,
                           rounds=rounds, elements=n, target=None))
    out.append(make_result("value buffer: per-map free list pop+append", group, py_pool, None,
                           rounds=rounds, elements=n, target=None, notes="what Map.lookup does"))
    m.close()
    return out


CASES: list[Callable[[bool], list[Result]]] = [single_ops, gil_choice, batch_ops, percpu_batches, iteration,
                                               breakdown]


def run(quick: bool) -> list[Result]:
    results: list[Result] = []
    for case in CASES:
        results.extend(case(quick))
    return results
