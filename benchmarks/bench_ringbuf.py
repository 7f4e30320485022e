"""Ring buffer consumption: RingBufReader against libbpf's C consumer on the same producer, same run.

One ring buffer map is shared by fd with a C program (rb_consumer.c: ring_buffer__new +
ring_buffer__consume). Before every round, untimed, the producer program
(tests/bpf/rb_producer.bpf.c, reserve + submit of 64-byte records in a bpf_loop) fills the
ring through BPF_PROG_TEST_RUN; then one side drains it, timed. Both sides copy each
record out of the ring ("decode"). The target for the Python reader, decoding in batches, is to reach at least a third of C's rate: per record, at most 3x C's time (target 3.0).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import Result, make_result

import ebpfmaps
from ebpfmaps.programs import BpfObject
from ebpfmaps.readers import RingBufReader
from ebpfmaps.readers.ringbuf import record_span

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = HERE / "build"
RECORD = 64
TARGET = 3.0  # python time per record / C time per record; a third of C's rate
MODE_RESERVE = 1
FLOOR_BYTES_TARGET = 3.0  # read() as bytes: at most 3x the list-comprehension floor
FLOOR_CALLBACK_TARGET = 5.0  # a callback with a decoded record: at most 5x the floor


class RbRecord(ctypes.Structure):
    """The producer's 64-byte record (tests/bpf/rb_producer.bpf.c), as a ctypes type."""

    _fields_ = [("seq", ctypes.c_uint64), ("size", ctypes.c_uint32), ("magic", ctypes.c_uint32),
                ("rest", ctypes.c_uint8 * 48)]


def _build_consumer() -> Path:
    src = HERE / "rb_consumer.c"
    exe = BUILD / "rb_consumer"
    if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
        return exe
    BUILD.mkdir(parents=True, exist_ok=True)
    cc = os.environ.get("CC") or shutil.which("gcc") or "cc"
    tmp = exe.with_name(f".rb_consumer.{os.getpid()}")
    subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), str(src), "-lbpf"], check=True, capture_output=True)
    tmp.replace(exe)
    return exe


class _CConsumer:
    def __init__(self, map_fd: int) -> None:
        self.proc = subprocess.Popen([str(_build_consumer()), str(map_fd)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, pass_fds=(map_fd,), bufsize=1)

    def consume(self) -> tuple[int, int]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("consume\n")
        self.proc.stdin.flush()
        words = self.proc.stdout.readline().split()
        if not words or words[0] != "ok":
            raise RuntimeError(f"rb_consumer failed: {words}")
        return int(words[1]), int(words[2])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def run(quick: bool) -> list[Result]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import numpy as np

    from tests.bpfbuild import bpf_object

    records = 5_000 if quick else 100_000
    rounds = 3 if quick else 15
    ring_size = 1 << 20 if quick else 1 << 23  # 72 bytes a record: 100k records take 7.2 MB of 8 MiB
    rb = ebpfmaps.create("ringbuf", key_size=0, value_size=0, max_entries=ring_size, name="rb")
    state = ebpfmaps.create("array", key_size=4, value_size=8, max_entries=2, name="rb_state")
    obj = BpfObject.open(str(bpf_object("rb_producer")), reuse={"rb": rb, "rb_state": state})
    obj.load()
    prog = obj.programs["rb_produce"]
    packet = struct.pack("<IIII", MODE_RESERVE, records, RECORD, 0).ljust(64, b"\0")
    reader = RingBufReader(rb)
    consumer = _CConsumer(rb.fd)
    dtype = np.dtype([("seq", "<u8"), ("size", "<u4"), ("magic", "<u4"), ("rest", "u1", 48)])
    rec_struct = struct.Struct("<QII48s")

    def fill() -> None:
        prog.test_run(data=packet)

    def py_batch() -> int:
        arr = reader.read_array(RECORD, dtype)
        return int(arr.shape[0])

    def py_records() -> int:
        return len(reader.read())

    decoded: list[Any] = []

    def py_callback() -> int:
        decoded.clear()
        unpack = rec_struct.unpack
        return reader.consume(lambda rec: decoded.append(unpack(rec)))

    typed_reader = RingBufReader(rb, record_type=rec_struct)
    ctypes_reader = RingBufReader(rb, record_type=RbRecord)

    def py_typed_callback() -> int:
        decoded.clear()
        return typed_reader.consume(decoded.append)

    def py_ctypes_callback() -> int:
        decoded.clear()
        return ctypes_reader.consume(decoded.append)

    # The floor: the same records as they lie in the ring (header, payload, padding), cut out of one
    # bytes buffer by a list comprehension. No reader can hand out bytes objects cheaper than that.
    fill()
    span = record_span(RECORD)
    avail = reader.available()
    image = bytes(reader._data[: avail])
    reader.read()
    n_floor = avail // span

    def floor() -> tuple[int, int]:
        t0 = time.perf_counter_ns()
        out = [image[i:i + RECORD] for i in range(8, n_floor * span, span)]
        return time.perf_counter_ns() - t0, len(out)

    results = []
    notes = f"{RECORD}-byte records, ring {ring_size >> 20} MiB"
    try:
        for name, fn, target in (
            ("ringbuf consume, numpy batch decode", py_batch, TARGET),
            ("ringbuf read(), bytes per record", py_records, None),
            ("ringbuf consume, callback + struct.unpack", py_callback, None),
            ("ringbuf consume, record_type=struct, callback", py_typed_callback, None),
        ):
            results.append(make_result(
                name, "ring buffer", fn, consumer.consume, rounds=rounds, elements=records, target=target,
                setup=fill, notes=notes + "; C: libbpf ring_buffer__consume",
            ))
        # The per-record paths against the floor (same run, same records): the targets.
        for name, fn, target in (
            ("ringbuf read(), bytes per record vs floor", py_records, FLOOR_BYTES_TARGET),
            ("ringbuf consume, callback + struct.unpack vs floor", py_callback, FLOOR_CALLBACK_TARGET),
            ("ringbuf consume, record_type=struct vs floor", py_typed_callback, FLOOR_CALLBACK_TARGET),
            ("ringbuf consume, record_type=ctypes vs floor", py_ctypes_callback, FLOOR_CALLBACK_TARGET),
        ):
            results.append(make_result(
                name, "ring buffer floor", fn, floor, rounds=rounds, elements=records, target=target, setup=fill,
                notes=notes + "; baseline column: [buf[i:i+64] for i in ...] over one bytes copy of the records",
            ))
        dropped = int.from_bytes(state[1], "little")
        if dropped:
            results[-1].notes += f"; producer dropped {dropped} records (ring full)"
    finally:
        consumer.close()
        typed_reader.close()
        ctypes_reader.close()
        reader.close()
        obj.close()
        rb.close()
        state.close()
    return results
