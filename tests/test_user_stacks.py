"""User stacks symbolized: a uprobe program records the user stack of each call (bpf_get_stackid with
BPF_F_USER_STACK, and build-id stacks), and StackTraceMap.symbols(stack_id, pid=...) names the frames through
/proc/PID/maps and the ELF symbol tables, cross-checked with nm."""

from __future__ import annotations

import ctypes
import os
import subprocess

import pytest

import ebpfmaps
from ebpfmaps import asm, elfsyms
from ebpfmaps.asm import R0, R1, R2, R3, R6
from ebpfmaps.errors import InvalidArgument
from ebpfmaps.maps.stacktrace import StackTraceMap
from ebpfmaps.programs import Program
from tests.bpfbuild import c_program
from tests.kernel_features import require_uprobes

BPF_F_USER_STACK = 1 << 8


def _stack_program(stacks: StackTraceMap, ids: ebpfmaps.Map, failures: ebpfmaps.Map, pid: int) -> list[object]:
    """ids[0] = bpf_get_stackid(ctx, stacks, BPF_F_USER_STACK) for process ``pid``; failures[0] counts failures."""
    return [
        asm.mov64(R6, R1),
        asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.jne(R0, pid, "out"),
        asm.mov64(R1, R6), asm.ld_map_fd(R2, stacks), asm.mov64(R3, BPF_F_USER_STACK), asm.call("get_stackid"),
        asm.jslt(R0, 0, "failed"),
        asm.ld_map_value(R1, ids, 0), asm.stx(8, R1, R0, 0), asm.ja("out"),
        asm.label("failed"), asm.ld_map_value(R1, failures, 0), asm.mov64(R2, 1), asm.atomic_add(8, R1, R2, 0),
        asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
    ]


def _run_and_read(build_id: bool) -> tuple[list[str], str, subprocess.Popen[str]]:
    exe = str(c_program("uprobe_target"))
    proc = subprocess.Popen([exe, "2"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    ids, failures = (ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=1)
                     for _ in range(2))
    ids[0] = 1 << 40
    with StackTraceMap(max_entries=64, depth=16, build_id=build_id) as stacks, \
            Program.load("kprobe", _stack_program(stacks, ids, failures, proc.pid), name="ebpfm_ustack") as prog, \
            prog.attach_uprobe(exe, "probe_target_fn"):
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert int(proc.stdout.readline()) == 4
        assert failures[0] == 0 and ids[0] != 1 << 40, "the program recorded no stack"
        return stacks.symbols(ids[0], pid=proc.pid), exe, proc


def test_user_frames_resolve_through_the_process_mappings() -> None:
    require_uprobes()
    frames, exe, proc = _run_and_read(build_id=False)
    try:
        base = os.path.basename(exe)
        # The probe fires at the function's first instruction: the innermost frame is its start.
        assert frames[0] == f"probe_target_fn+0x0 [{base}]", frames
        table = elfsyms.elf_symbols(exe)
        assert table.build_id is not None and table.build_id.ljust(20, b"\0") in elfsyms.cached_build_ids()
    finally:
        proc.kill()
        proc.wait()


def test_build_id_frames_resolve_through_the_cache() -> None:
    require_uprobes()
    frames, exe, proc = _run_and_read(build_id=True)
    try:
        base = os.path.basename(exe)
        # A frame the kernel could read the build id for names the function; one it could not is an address
        # that the process's mappings resolve: either way the innermost frame is probe_target_fn.
        assert frames[0] == f"probe_target_fn+0x0 [{base}]", frames
    finally:
        proc.kill()
        proc.wait()


def test_user_addresses_without_a_pid_stay_addresses_and_bad_pids_are_refused() -> None:
    with StackTraceMap(max_entries=4, depth=4) as stacks:
        with pytest.raises(InvalidArgument):
            stacks.symbols(0, pid=0)
    with pytest.raises(ebpfmaps.KeyNotFound):
        elfsyms.process_maps(1 << 30)


def test_resolve_user_names_a_libc_function_of_this_process() -> None:
    libc = ctypes.CDLL(None)
    address = ctypes.cast(libc.getpid, ctypes.c_void_p).value
    assert address is not None
    sym = elfsyms.resolve_user(os.getpid(), address)
    assert sym is not None and sym.name is not None and "getpid" in sym.name and sym.offset == 0, sym
