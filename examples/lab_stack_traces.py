#!/usr/bin/env python3
"""Lab: a stack trace collector. A tracepoint program records the kernel stack of every event in a
stack trace map (bpf_get_stackid) and counts each distinct stack in a hash map; with ``--pid`` it also
records the user stack that made the call (BPF_F_USER_STACK). Python prints the hottest stacks: kernel
frames from /proc/kallsyms, user frames from the process's mappings and ELF symbol tables.

    python examples/lab_stack_traces.py --seconds 2 [--tracepoint syscalls/sys_enter_openat] [--pid PID]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ebpfmaps
from ebpfmaps import asm
from ebpfmaps.asm import R0, R1, R2, R3, R4, R6, R10
from ebpfmaps.maps.stacktrace import StackTraceMap
from ebpfmaps.programs import Program

BPF_ANY, BPF_NOEXIST = 0, 1
BPF_F_USER_STACK = 1 << 8
STACK_DEPTH = 32


@dataclass
class Stack:
    stack_id: int
    count: int
    frames: list[str]  # innermost first, "symbol+0xoff [module]"
    user_frames: list[str] = field(default_factory=list)  # the user stack of the last such event, "fn+0xoff [binary]"


def collector_program(stacks: StackTraceMap, counts: ebpfmaps.Map, pid: int | None,
                      user_of: ebpfmaps.Map | None = None) -> list[object]:
    """counts[bpf_get_stackid(ctx, stacks, 0)] += 1, optionally only for process ``pid``; with ``user_of``,
    also user_of[kernel stack id] = the user stack id (BPF_F_USER_STACK)."""
    only_pid = [] if pid is None else [
        asm.call("get_current_pid_tgid"),
        asm.rsh64(R0, 32),
        asm.jne(R0, pid, "done"),
    ]
    user_stack = [] if user_of is None else [
        asm.mov64(R1, R6),
        asm.ld_map_fd(R2, stacks),
        asm.mov64(R3, BPF_F_USER_STACK),
        asm.call("get_stackid"),
        asm.jslt(R0, 0, "count"),  # no user stack (a kernel thread, or no frame could be read)
        asm.stx(4, R10, R0, -8),
        asm.ld_map_fd(R1, user_of),
        asm.mov64(R2, R10),
        asm.add64(R2, -4),
        asm.mov64(R3, R10),
        asm.add64(R3, -8),
        asm.mov64(R4, BPF_ANY),
        asm.call("map_update_elem"),
        asm.label("count"),
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
        *user_stack,
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
    """Attach, run ``workload``, detach; the stacks seen, most frequent first, symbolized.

    With ``pid``, each kernel stack also carries the user stack of process ``pid`` that led to it.
    """
    category, _, name = tracepoint.partition("/")
    with StackTraceMap(max_entries=1024, depth=STACK_DEPTH, name="lab_stacks") as stacks, \
            ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=1024,
                             name="lab_stack_cnt") as counts, \
            ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=1024,
                             name="lab_user_of") as user_of:
        code = collector_program(stacks, counts, pid, user_of if pid is not None else None)
        with Program.load("tracepoint", code, name="stack_collect") as prog:
            with prog.attach_tracepoint(category, name):
                workload()
        out = []
        for stack_id, count in counts.items():
            try:
                frames = stacks.symbols(int(stack_id))
            except ebpfmaps.KeyNotFound:
                continue
            user_frames: list[str] = []
            user_id = user_of.get(int(stack_id))
            if user_id is not None and pid is not None:
                try:
                    user_frames = stacks.symbols(int(user_id), pid=pid)
                except ebpfmaps.KeyNotFound:
                    pass
            out.append(Stack(int(stack_id), int(count), frames, user_frames))
        return sorted(out, key=lambda s: (-s.count, s.stack_id))


# An idle machine makes few or no openat() calls while the lab collects.
IDLE_HINT = ("nothing was collected: generate load while the lab runs, e.g. `find /usr > /dev/null` in another "
             "terminal, or pass --self-test 1000 to open /dev/null 1000 times from the lab itself")


def report(stacks: list[Stack], top: int) -> str:
    lines: list[str] = []
    for s in stacks[:top]:
        lines.append(f"stack {s.stack_id}: {s.count} events")
        lines += [f"    {frame}" for frame in s.frames]
        if s.user_frames:
            lines.append("    -- user --")
            lines += [f"    {frame}" for frame in s.user_frames]
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
