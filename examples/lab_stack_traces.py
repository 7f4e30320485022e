#!/usr/bin/env python3
"""Lab: a stack trace collector. A tracepoint program records the kernel stack of every event in a
stack trace map (bpf_get_stackid) and counts each distinct stack in a hash map; Python prints the
hottest stacks with symbols from /proc/kallsyms (a stack trace map).

    python examples/lab_stack_traces.py --seconds 2 [--tracepoint syscalls/sys_enter_openat] [--pid PID]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import ebpfmaps
from ebpfmaps import asm
from ebpfmaps.asm import R0, R1, R2, R3, R4, R6, R10
from ebpfmaps.maps.stacktrace import StackTraceMap
from ebpfmaps.programs import Program

BPF_NOEXIST = 1
STACK_DEPTH = 32


@dataclass
class Stack:
    stack_id: int
    count: int
    frames: list[str]  # innermost first, "symbol+0xoff [module]"


def collector_program(stacks: StackTraceMap, counts: ebpfmaps.Map, pid: int | None) -> list[object]:
    """counts[bpf_get_stackid(ctx, stacks, 0)] += 1, optionally only for process ``pid``."""
    only_pid = [] if pid is None else [
        asm.call("get_current_pid_tgid"),
        asm.rsh64(R0, 32),
        asm.jne(R0, pid, "done"),
    ]
    return [
        asm.mov64(R6, R1),  # keep ctx: helper calls clobber r1-r5
        *only_pid,
        asm.mov64(R1, R6),
        asm.ld_map_fd(R2, stacks),
        asm.mov64(R3, 0),  # flags 0: the kernel stack, skipping no frames
        asm.call("get_stackid"),
        asm.jslt(R0, 0, "done"),  # no stack (e.g. -EEXIST on a hash collision): skip
        asm.stx(4, R10, R0, -4),
        asm.ld_map_fd(R1, counts),
        asm.mov64(R2, R10),
        asm.add64(R2, -4),
        asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "insert"),
        asm.mov64(R1, 1),
        asm.atomic_add(8, R0, R1, 0),
        asm.ja("done"),
        asm.label("insert"),
        asm.st(4, R10, -16, 1),
        asm.st(4, R10, -12, 0),
        asm.ld_map_fd(R1, counts),
        asm.mov64(R2, R10),
        asm.add64(R2, -4),
        asm.mov64(R3, R10),
        asm.add64(R3, -16),
        asm.mov64(R4, BPF_NOEXIST),
        asm.call("map_update_elem"),  # losing an insert race drops one count; fine for a profile
        asm.label("done"),
        asm.mov64(R0, 0),
        asm.exit_(),
    ]


def collect(workload: Callable[[], None], *, tracepoint: str = "syscalls/sys_enter_openat",
            pid: int | None = None) -> list[Stack]:
    """Attach, run ``workload``, detach; the stacks seen, most frequent first, symbolized."""
    category, _, name = tracepoint.partition("/")
    with StackTraceMap(max_entries=1024, depth=STACK_DEPTH, name="lab_stacks") as stacks, \
            ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=1024,
                             name="lab_stack_cnt") as counts:
        with Program.load("tracepoint", collector_program(stacks, counts, pid), name="stack_collect") as prog:
            with prog.attach_tracepoint(category, name):
                workload()
        out = []
        for stack_id, count in counts.items():
            try:
                frames = stacks.symbols(int(stack_id))
            except ebpfmaps.KeyNotFound:
                continue
            out.append(Stack(int(stack_id), int(count), frames))
        return sorted(out, key=lambda s: (-s.count, s.stack_id))


# An idle machine makes few or no openat() calls while the lab collects.
IDLE_HINT = ("nothing was collected: generate load while the lab runs, e.g. `find /usr > /dev/null` in another "
             "terminal, or pass --self-test 1000 to open /dev/null 1000 times from the lab itself")


def report(stacks: list[Stack], top: int) -> str:
    lines: list[str] = []
    for s in stacks[:top]:
        lines.append(f"stack {s.stack_id}: {s.count} events")
        lines += [f"    {frame}" for frame in s.frames]
    lines.append(f"{len(stacks)} distinct kernel stacks, {sum(s.count for s in stacks)} events")
    if not stacks:
        lines.append(IDLE_HINT)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--tracepoint", default="syscalls/sys_enter_openat")
    parser.add_argument("--pid", type=int, default=None, help="only this process")
    parser.add_argument("--self-test", type=int, default=0, metavar="N",
                        help="open /dev/null N times from this process while collecting")
    args = parser.parse_args(argv)

    def workload() -> None:
        for _ in range(args.self_test):
            os.close(os.open("/dev/null", os.O_RDONLY))
        time.sleep(args.seconds)

    print(report(collect(workload, tracepoint=args.tracepoint, pid=args.pid), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
