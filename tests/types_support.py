"""Helpers for the map-type tests (tests/test_types_*.py): tiny real programs, cgroup v2, bpftool parsing."""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ebpfmaps._libbpf import lib, new_opts, structs

BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_FUNC_GET_STACKID = 27
BPF_PSEUDO_MAP_FD = 1


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One ``struct bpf_insn`` (8 bytes: opcode, dst/src registers, offset, immediate)."""
    return struct.pack("=BBhi", code, (src << 4) | dst, off, imm)


def ld_map_fd(reg: int, fd: int) -> bytes:
    """``reg = map`` (BPF_LD | BPF_DW | BPF_IMM with BPF_PSEUDO_MAP_FD: two instruction slots)."""
    return insn(0x18, reg, BPF_PSEUDO_MAP_FD, 0, fd) + insn(0)


MOV64_IMM = 0xB7
CALL = 0x85
EXIT = 0x95


def load_program(prog_type: int, insns: bytes, name: bytes = b"t") -> int:
    """Load a program; its fd (the caller closes it). A verifier refusal raises with the log."""
    log = ctypes.create_string_buffer(1 << 16)
    opts = new_opts(structs.BpfProgLoadOpts, log_level=1, log_size=len(log), log_buf=ctypes.addressof(log))
    fd = lib.bpf_prog_load(prog_type, name, b"GPL", insns, len(insns) // 8, ctypes.byref(opts))
    if fd < 0:
        raise OSError(-fd, f"bpf_prog_load: {os.strerror(-fd)}\n{log.value.decode(errors='replace')}")
    return int(fd)


def return_zero_program() -> int:
    """A socket filter that returns 0 (for prog arrays)."""
    return load_program(BPF_PROG_TYPE_SOCKET_FILTER, insn(MOV64_IMM, 0, 0, 0, 0) + insn(EXIT), b"ret0")


def stackid_program(stack_map_fd: int) -> int:
    """A raw tracepoint program returning ``bpf_get_stackid(ctx, map, 0)``: run, it records its kernel stack."""
    code = ld_map_fd(2, stack_map_fd) + insn(MOV64_IMM, 3, 0, 0, 0) + insn(CALL, imm=BPF_FUNC_GET_STACKID) + insn(EXIT)
    return load_program(BPF_PROG_TYPE_RAW_TRACEPOINT, code, b"stackid")


def run_once(prog_fd: int) -> int:
    """BPF_PROG_TEST_RUN once with no input; the program's return value (signed)."""
    opts = new_opts(structs.BpfTestRunOpts)
    ret = lib.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    if ret:
        raise OSError(-ret, f"bpf_prog_test_run_opts: {os.strerror(-ret)}")
    return int(ctypes.c_int32(opts.retval).value)


@contextmanager
def cgroup2_dir() -> Iterator[str]:
    """A cgroup v2 directory: an existing cgroup2 mount's root, or a private mount removed afterwards."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                yield left.split()[4]
                return
    d = tempfile.mkdtemp(prefix="ebpfmaps-cg2-")
    subprocess.run(["mount", "-t", "cgroup2", "none", d], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", d], check=False)
        os.rmdir(d)


def hex_bytes(values: list[str]) -> bytes:
    """bpftool's ``["0x0a", "0x00", ...]`` as bytes."""
    return bytes(int(v, 16) for v in values)


def bpftool_hex_args(data: bytes) -> list[str]:
    """bytes as bpftool command-line byte arguments."""
    return [f"0x{b:02x}" for b in data]


def bpftool(*args: str) -> Any:
    """``bpftool -j ARGS`` parsed (conftest's bpftool_json, typed for indexing)."""
    from tests.conftest import bpftool_json

    return bpftool_json(*args)
