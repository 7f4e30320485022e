#!/usr/bin/env python3
"""Lab: a process counter. A tracepoint program counts openat() calls per process into a hash map
that Python reads (counters in maps, built with ebpfmaps.asm, no C compiler needed).

    python examples/lab_process_counter.py --seconds 3 [--top 10] [--tracepoint syscalls/sys_enter_openat]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from collections.abc import Callable

import ebpfmaps
from ebpfmaps import asm
from ebpfmaps.asm import R0, R1, R2, R3, R4, R10
from ebpfmaps.programs import Program

BPF_NOEXIST = 1


def counter_program(counts: ebpfmaps.Map) -> list[object]:
    """counts[tgid] += 1 for the current process (the insert-or-add idiom)."""
    return [
        asm.call("get_current_pid_tgid"),
        asm.rsh64(R0, 32),  # the upper half is the tgid: the process id as user space knows it
        asm.stx(4, R10, R0, -4),
        asm.label("lookup"),
        asm.ld_map_fd(R1, counts),
        asm.mov64(R2, R10),
        asm.add64(R2, -4),
        asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "insert"),
        asm.mov64(R1, 1),
        asm.atomic_add(8, R0, R1, 0),
        asm.ja("done"),
        asm.label("insert"),
        asm.st(4, R10, -16, 1),  # a u64 1 on the stack (two u32 stores: low 1, high 0)
        asm.st(4, R10, -12, 0),
        asm.ld_map_fd(R1, counts),
        asm.mov64(R2, R10),
        asm.add64(R2, -4),
        asm.mov64(R3, R10),
        asm.add64(R3, -16),
        asm.mov64(R4, BPF_NOEXIST),
        asm.call("map_update_elem"),
        # Another CPU inserted the same tgid first (EEXIST): count on its entry instead.
        asm.jne(R0, 0, "lookup_again"),
        asm.ja("done"),
        asm.label("lookup_again"),
        asm.ld_map_fd(R1, counts),
        asm.mov64(R2, R10),
        asm.add64(R2, -4),
        asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "done"),  # evicted meanwhile (map full): drop this event
        asm.mov64(R1, 1),
        asm.atomic_add(8, R0, R1, 0),
        asm.label("done"),
        asm.mov64(R0, 0),
        asm.exit_(),
    ]


def count_events(workload: Callable[[], None], *, tracepoint: str = "syscalls/sys_enter_openat",
                 max_entries: int = 4096) -> dict[int, int]:
    """Attach, run ``workload`` (or sleep), detach, and return {pid: events} read from the map."""
    category, _, name = tracepoint.partition("/")
    with ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=max_entries,
                          name="proc_counts") as counts:
        with Program.load("tracepoint", counter_program(counts), name="proc_counter") as prog:
            with prog.attach_tracepoint(category, name):
                workload()
        return {int(k): int(v) for k, v in counts.items()}


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "(exited)"


# An idle machine makes few or no openat() calls while the lab counts.
IDLE_HINT = ("nothing was counted: generate load while the lab runs, e.g. `find /usr > /dev/null` in another "
             "terminal, or pass --self-test 1000 to open /dev/null 1000 times from the lab itself")


def report(counts: dict[int, int], top: int, tracepoint: str) -> str:
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    lines = [f"{'PID':>8}  {'COMM':<16} {tracepoint.split('/')[-1]}"]
    lines += [f"{pid:>8}  {process_name(pid):<16} {n}" for pid, n in rows]
    lines.append(f"{len(counts)} processes, {sum(counts.values())} events")
    if not counts:
        lines.append(IDLE_HINT)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--tracepoint", default="syscalls/sys_enter_openat")
    parser.add_argument("--self-test", type=int, default=0, metavar="N",
                        help="also open /dev/null N times from this process while counting")
    args = parser.parse_args(argv)

    def workload() -> None:
        for _ in range(args.self_test):
            os.close(os.open("/dev/null", os.O_RDONLY))
        time.sleep(args.seconds)

    counts = count_events(workload, tracepoint=args.tracepoint)
    print(report(counts, args.top, args.tracepoint))
    if args.self_test:
        print(f"this process ({os.getpid()}): {counts.get(os.getpid(), 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
