"""ebpfmaps.asm: encodings checked against LLVM's BPF assembler, semantics checked by running in the kernel."""

from __future__ import annotations

import ctypes
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ebpfmaps
from ebpfmaps import asm
from ebpfmaps.asm import R0, R1, R2, R3, R6, R10
from ebpfmaps.errors import AssemblerError, InvalidArgument
from ebpfmaps.programs import Program
from tests.kernel_features import require_atomic_fetch

U64 = (1 << 64) - 1

# (our instruction, the same instruction in LLVM's BPF assembly syntax). LLVM 14's assembler lacks syntax for mod,
# jset and store-immediate, which the kernel tests below cover instead.
LLVM_PAIRS: list[tuple[asm.Insn, str]] = [
    (asm.mov64(R0, 5), "r0 = 5"),
    (asm.mov64(R1, R2), "r1 = r2"),
    (asm.mov32(R3, -7), "w3 = -7"),
    (asm.add32(R1, R2), "w1 += w2"),
    (asm.add64(R1, -4), "r1 += -4"),
    (asm.sub64(R6, R1), "r6 -= r1"),
    (asm.mul64(R2, 3), "r2 *= 3"),
    (asm.div64(R2, R3), "r2 /= r3"),
    (asm.or64(R1, 0x10), "r1 |= 16"),
    (asm.and64(R1, R2), "r1 &= r2"),
    (asm.xor32(R1, R1), "w1 ^= w1"),
    (asm.lsh64(R1, 3), "r1 <<= 3"),
    (asm.rsh64(R1, R2), "r1 >>= r2"),
    (asm.arsh64(R1, 63), "r1 s>>= 63"),
    (asm.neg64(R1), "r1 = -r1"),
    (asm.to_be(R1, 16), "r1 = be16 r1"),
    (asm.to_le(R1, 64), "r1 = le64 r1"),
    (asm.ld_imm64(R1, 0x123456789), "r1 = 0x123456789 ll"),
    (asm.ldx(4, R0, R1, 4), "r0 = *(u32 *)(r1 + 4)"),
    (asm.ldx(8, R0, R10, -8), "r0 = *(u64 *)(r10 - 8)"),
    (asm.ldx(1, R2, R1, 0), "r2 = *(u8 *)(r1 + 0)"),
    (asm.stx(8, R10, R1, -8), "*(u64 *)(r10 - 8) = r1"),
    (asm.stx(2, R10, R1, -2), "*(u16 *)(r10 - 2) = r1"),
    (asm.atomic_add(8, R10, R1, -8), "lock *(u64 *)(r10 - 8) += r1"),
    (asm.atomic_add(4, R0, R1, 0), "lock *(u32 *)(r0 + 0) += w1"),
    (asm.jeq(R1, 0, 2), "if r1 == 0 goto +2"),
    (asm.jne(R1, R2, -3), "if r1 != r2 goto -3"),
    (asm.jgt32(R1, 3, 2), "if w1 > 3 goto +2"),
    (asm.jsge(R1, -1, 1), "if r1 s>= -1 goto +1"),
    (asm.jlt(R1, R2, 1), "if r1 < r2 goto +1"),
    (asm.ja(4), "goto +4"),
    (asm.call("map_lookup_elem"), "call 1"),
    (asm.call("bpf_get_current_pid_tgid"), "call 14"),
    (asm.exit_(), "exit"),
]


@pytest.mark.no_kernel
def test_encodings_match_llvm_assembler() -> None:
    llvm_mc = shutil.which("llvm-mc") or shutil.which("llvm-mc-14")
    if llvm_mc is None:
        pytest.fail("llvm-mc is needed to cross-check encodings (Debian's llvm package, in the Makefile)")
    text = "\n".join(src for _, src in LLVM_PAIRS) + "\n"
    out = subprocess.run([llvm_mc, "-triple", "bpfel", "-mcpu=v3", "-show-encoding"], input=text,
                         capture_output=True, text=True, check=True).stdout
    encodings = [bytes(int(b, 16) for b in m.split(",")) for m in re.findall(r"encoding: \[([^\]]*)\]", out)]
    assert len(encodings) == len(LLVM_PAIRS), out
    for (insn, src), expected in zip(LLVM_PAIRS, encodings):
        assert insn.encode() == expected, f"{src}: ours {insn.encode().hex()} llvm {expected.hex()}"


@pytest.mark.no_kernel
def test_labels_resolve_forward_and_backward_and_listing_names_them() -> None:
    prog = asm.assemble([
        asm.mov64(R0, 0),
        asm.label("top"),
        asm.add64(R0, 1),
        asm.ld_imm64(R2, 1),  # two slots: offsets must count them
        asm.jlt(R0, 3, "top"),
        asm.jeq(R0, 3, "done"),
        asm.mov64(R0, 99),
        asm.label("done"),
        asm.exit_(),
    ])
    assert len(prog) == 8
    # jlt at slot 4 jumps back to slot 1: off = 1 - 5 = -4; jeq at slot 5 to slot 7: +1
    assert struct.unpack_from("<h", prog.code, 4 * 8 + 2)[0] == -4
    assert struct.unpack_from("<h", prog.code, 5 * 8 + 2)[0] == 1
    listing = prog.disassemble()
    assert "top:" in listing and "goto -4 <top>" in listing and "goto +1 <done>" in listing
    # the raw bytes disassemble to the same instructions (without label names)
    raw = asm.disassemble(prog.code)
    assert "if r0 < 0x3 goto -4" in raw and "r2 = 0x1 ll" in raw


@pytest.mark.no_kernel
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: asm.assemble([asm.ja("nowhere"), asm.exit_()]), "undefined label 'nowhere'"),
        (lambda: asm.assemble([asm.label("a"), asm.label("a"), asm.exit_()]), "defined twice"),
        (lambda: asm.assemble([asm.mov64(R0, 0)]), "must end with exit_()"),
        (lambda: asm.assemble([]), "no instructions"),
        (lambda: asm.mov64(R10, 1), "read-only frame pointer"),
        (lambda: asm.ldx(8, R10, R1, 0), "read-only frame pointer"),
        (lambda: asm.mov64(11, 1), "register r0..r10"),
        (lambda: asm.mov64(R0, 1 << 32), "does not fit in 32 bits"),
        (lambda: asm.ldx(8, R0, R1, 1 << 15), "signed 16-bit offset"),
        (lambda: asm.ldx(3, R0, R1, 0), "1, 2, 4 or 8"),
        (lambda: asm.atomic_add(2, R0, R1, 0), "4 or 8 bytes"),
        (lambda: asm.call("map_lookup_elm"), "did you mean map_lookup_elem"),
        (lambda: asm.div64(R1, 0), "division by the constant 0"),
        (lambda: asm.lsh64(R1, 64), "out of range"),
        (lambda: asm.ld_map_fd(R1, "counts"), "expected an ebpfmaps Map"),
        (lambda: asm.assemble([asm.mov64(R0, 0), "exit"]), "not an instruction"),
    ],
)
def test_bad_programs_are_refused_before_the_kernel(build: object, message: str) -> None:
    with pytest.raises(AssemblerError, match=re.escape(message)) as info:
        build()  # type: ignore[operator]
    assert isinstance(info.value, InvalidArgument)


@pytest.mark.no_kernel
def test_jump_too_far_is_refused() -> None:
    body = [asm.mov64(R0, 0)] * 40000
    with pytest.raises(AssemblerError, match="exceeds 16 bits"):
        asm.assemble([asm.ja("end"), *body, asm.label("end"), asm.exit_()])


def _result_map() -> ebpfmaps.Map:
    # One entry: direct value access (ld_map_value) works only on single-entry arrays.
    return ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=1)


def _run_store(results: ebpfmaps.Map, body: Sequence[object]) -> int:
    """Run ``body`` (which leaves a value in r0) in the kernel, store r0 in results[0], return it."""
    prog = Program.load("socket_filter", [
        *body,
        asm.ld_map_value(R1, results, 0),
        asm.stx(8, R1, R0, 0),
        asm.mov64(R0, 0),
        asm.exit_(),
    ])
    with prog:
        assert prog.test_run(data=b"\0" * 16).retval == 0
    return int(results[0])


ALU64: dict[str, tuple[Callable[[int, int], asm.Insn], Callable[[int, int], int]]] = {
    "add": (asm.add64, lambda a, b: (a + b) & U64),
    "sub": (asm.sub64, lambda a, b: (a - b) & U64),
    "mul": (asm.mul64, lambda a, b: (a * b) & U64),
    "div": (asm.div64, lambda a, b: a // b if b else 0),  # BPF defines x/0 = 0
    "mod": (asm.mod64, lambda a, b: a % b if b else a),  # and x%0 = x
    "or": (asm.or64, lambda a, b: a | b),
    "and": (asm.and64, lambda a, b: a & b),
    "xor": (asm.xor64, lambda a, b: a ^ b),
    "lsh": (asm.lsh64, lambda a, b: (a << (b & 63)) & U64),
    "rsh": (asm.rsh64, lambda a, b: a >> (b & 63)),
    "arsh": (asm.arsh64, lambda a, b: ((a - (1 << 64) if a >> 63 else a) >> (b & 63)) & U64),
}


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(sorted(ALU64)), a=st.integers(0, U64), b=st.integers(0, U64))
def test_alu64_register_ops_compute_what_python_computes(op: str, a: int, b: int) -> None:
    build, ref = ALU64[op]
    if op in ("lsh", "rsh", "arsh"):
        b &= 63
    with _result_map() as results:
        got = _run_store(results, [asm.ld_imm64(R0, a), asm.ld_imm64(R2, b), build(R0, R2)])
    assert got == ref(a, b)


@settings(max_examples=30, deadline=None)
@given(a=st.integers(0, U64), b=st.integers(-(1 << 31), (1 << 31) - 1))
def test_alu32_ops_zero_the_upper_half(a: int, b: int) -> None:
    with _result_map() as results:
        got = _run_store(results, [asm.ld_imm64(R0, a), asm.add32(R0, b)])
    assert got == (a + b) & 0xFFFFFFFF


def test_byte_swaps_and_negation() -> None:
    with _result_map() as results:
        assert _run_store(results, [asm.ld_imm64(R0, 0x1122334455667788), asm.to_be(R0, 64)]) == 0x8877665544332211
        assert _run_store(results, [asm.ld_imm64(R0, 0x1122334455667788), asm.to_be(R0, 16)]) == 0x8877
        assert _run_store(results, [asm.mov64(R0, 5), asm.neg64(R0)]) == (-5) & U64


def test_conditional_jumps_and_store_immediate() -> None:
    with _result_map() as results:
        jset = [asm.mov64(R0, 1), asm.mov64(R1, 0b100), asm.jset(R1, 0b110, "hit"), asm.mov64(R0, 0),
                asm.label("hit")]
        assert _run_store(results, jset) == 1
        signed = [asm.mov64(R0, 1), asm.mov64(R1, -5), asm.jsgt(R1, 0, "positive"), asm.mov64(R0, 2),
                  asm.label("positive")]
        assert _run_store(results, signed) == 2  # -5 is not s> 0 (though it is > 0 unsigned)
        stored = [asm.st(4, R10, -4, 0x1234), asm.ldx(4, R0, R10, -4)]
        assert _run_store(results, stored) == 0x1234


def test_atomics_in_the_kernel() -> None:
    """add/fetch-add/or/and/xor/xchg/cmpxchg on a map value, results read back from Python."""
    require_atomic_fetch()
    with ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64 * 8, max_entries=1) as cells:
        cells[0] = (ctypes.c_uint64 * 8)(10, 0b1100, 7, 5)
        prog = [
            asm.ld_map_value(R6, cells, 0),
            asm.mov64(R1, 32),
            asm.atomic_add(8, R6, R1, 0, fetch=True),  # m[0]: 10 -> 42, r1 = 10
            asm.stx(8, R6, R1, 8 * 4),  # m[4] = 10 (the fetched old value)
            asm.mov64(R1, 0b0011),
            asm.atomic_or(8, R6, R1, 8),  # m[1] = 0b1111
            asm.mov64(R1, 0b1010),
            asm.atomic_and(8, R6, R1, 8),  # m[1] = 0b1010
            asm.mov64(R1, 0b0110),
            asm.atomic_xor(8, R6, R1, 8),  # m[1] = 0b1100
            asm.mov64(R1, 99),
            asm.atomic_xchg(8, R6, R1, 16),  # m[2] = 99, r1 = 7
            asm.stx(8, R6, R1, 8 * 5),  # m[5] = 7
            asm.mov64(R0, 5),
            asm.mov64(R2, 123),
            asm.atomic_cmpxchg(8, R6, R2, 24),  # m[3] == r0 (5): m[3] = 123, r0 = 5
            asm.stx(8, R6, R0, 8 * 6),  # m[6] = 5
            asm.mov64(R0, 1),
            asm.mov64(R2, 456),
            asm.atomic_cmpxchg(8, R6, R2, 24),  # m[3] != 1: unchanged, r0 = 123
            asm.stx(8, R6, R0, 8 * 7),  # m[7] = 123
            asm.mov64(R0, 0),
            asm.exit_(),
        ]
        with Program.load("socket_filter", prog) as p:
            assert p.test_run(data=b"\0" * 16).retval == 0
        assert list(cells[0]) == [42, 0b1100, 99, 123, 10, 7, 5, 123]


def test_helper_call_lookup_and_atomic_add_by_label() -> None:
    """A counter: look a key up, add to it atomically, skip when missing (labels, not offsets)."""
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as m:
        m[7] = 100
        insns = [
            asm.st(4, R10, -4, 7),
            asm.mov64(R2, R10),
            asm.add64(R2, -4),
            asm.ld_map_fd(R1, m),
            asm.call("map_lookup_elem"),
            asm.jeq(R0, 0, "missing"),
            asm.mov64(R1, 1),
            asm.atomic_add(8, R0, R1, 0),
            asm.mov64(R0, 1),
            asm.exit_(),
            asm.label("missing"),
            asm.mov64(R0, 2),
            asm.exit_(),
        ]
        with Program.load("socket_filter", insns) as p:
            assert p.test_run(data=b"\0" * 16, repeat=50).retval == 1
            assert m[7] == 150
            del m[7]
            assert p.test_run(data=b"\0" * 16).retval == 2


def test_local_call_subprogram() -> None:
    insns = [
        asm.mov64(R1, 20),
        asm.call_local("double"),
        asm.add64(R0, 2),
        asm.exit_(),
        asm.label("double"),
        asm.mov64(R0, R1),
        asm.add64(R0, R1),
        asm.exit_(),
    ]
    with Program.load("socket_filter", insns) as p:
        assert p.test_run(data=b"\0" * 16).retval == 42
        assert "call pc+2 <double>" in p.disassembly
