"""A BPF assembler in Python: build programs from instructions and labels, get bytes and a listing.

>>> from ebpfmaps import asm
>>> from ebpfmaps.asm import R0, R1, R2, R10
>>> prog = asm.assemble([
...     asm.mov64(R0, 0),
...     asm.jeq(R1, 0, "out"),      # labels instead of hand-counted offsets
...     asm.mov64(R0, 1),
...     asm.label("out"),
...     asm.exit_(),
... ])
>>> len(prog), prog.code[:8].hex()
(4, 'b700000000000000')

Instruction encoding follows the kernel's ``Documentation/bpf/standardization/instruction-set.rst``
(and the uapi ``linux/bpf.h``): each instruction is 8 bytes, ``code:8 dst:4 src:4 off:16 imm:32``
little-endian on x86; a 64-bit immediate load takes two slots. Operand order of the memory
builders follows the kernel's macros (``BPF_LDX_MEM(SIZE, DST, SRC, OFF)``,
``BPF_STX_MEM(SIZE, DST, SRC, OFF)``, ``BPF_ST_MEM(SIZE, DST, OFF, IMM)``), so code read in kernel
selftests translates one to one. Sizes are byte counts: 1, 2, 4 or 8.

Everything that can be checked here is checked before the kernel sees the program (registers,
immediate and offset ranges, unknown helpers and labels, writes to the read-only frame pointer),
and each :class:`~ebpfmaps.errors.AssemblerError` shows the listing around the faulty instruction.
"""

from __future__ import annotations

import difflib
import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, Union

from ebpfmaps.errors import AssemblerError

__all__ = [
    "FP", "HELPERS", "R0", "R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "Assembled", "Insn", "Label",
    "Reg", "add32", "add64", "and32", "and64", "arsh32", "arsh64", "assemble", "atomic_add", "atomic_and",
    "atomic_cmpxchg", "atomic_or", "atomic_xchg", "atomic_xor", "bswap", "call", "call_local", "disassemble", "div32",
    "div64", "exit_", "helper_id", "ja", "jeq", "jeq32", "jge", "jge32", "jgt", "jgt32", "jle", "jle32", "jlt", "jlt32",
    "jne", "jne32", "jset", "jset32", "jsge", "jsge32", "jsgt", "jsgt32", "jsle", "jsle32", "jslt", "jslt32", "label",
    "ld_abs", "ld_imm64", "ld_ind", "ld_map_fd", "ld_map_value", "ldx", "lsh32", "lsh64", "mod32", "mod64", "mov32",
    "mov64", "mul32", "mul64", "neg32", "neg64", "or32", "or64", "rsh32", "rsh64", "st", "stx", "sub32", "sub64",
    "to_be", "to_le", "xor32", "xor64",
]

# ---------------------------------------------------------------------------------------------- opcodes
# Instruction classes (low 3 bits of code).
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = range(8)
# Sizes (bits 3-4) and modes (bits 5-7) of load/store classes.
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_ATOMIC = 0x00, 0x20, 0x40, 0x60, 0xC0
# Operand source (bit 3) of ALU/JMP classes.
BPF_K, BPF_X = 0x00, 0x08
# ALU operations (bits 4-7).
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
BPF_NEG, BPF_MOD, BPF_XOR, BPF_MOV, BPF_ARSH, BPF_END = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0
BPF_TO_LE, BPF_TO_BE = 0x00, 0x08
# Jump operations (bits 4-7).
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE, BPF_JSGT, BPF_JSGE = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
BPF_CALL, BPF_EXIT, BPF_JLT, BPF_JLE, BPF_JSLT, BPF_JSLE = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0
# Atomic operations live in imm; BPF_FETCH asks for the old value back in src.
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH
# src_reg values of a 64-bit immediate load / a call (uapi linux/bpf.h).
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_CALL = 1

_SIZE_CODE = {1: BPF_B, 2: BPF_H, 4: BPF_W, 8: BPF_DW}
_SIZE_OF_CODE = {v: k for k, v in _SIZE_CODE.items()}
_S16 = (-(1 << 15), (1 << 15) - 1)

# Helper function ids: the order of ``__BPF_FUNC_MAPPER`` in uapi linux/bpf.h (Linux 6.1 headers, as installed by
# Debian's linux-libc-dev); 210 and 211 were added in 6.2 (cgroup local storage).
HELPERS: dict[str, int] = {
    "map_lookup_elem": 1, "map_update_elem": 2, "map_delete_elem": 3, "probe_read": 4, "ktime_get_ns": 5,
    "trace_printk": 6, "get_prandom_u32": 7, "get_smp_processor_id": 8, "skb_store_bytes": 9, "l3_csum_replace": 10,
    "l4_csum_replace": 11, "tail_call": 12, "clone_redirect": 13, "get_current_pid_tgid": 14,
    "get_current_uid_gid": 15, "get_current_comm": 16, "get_cgroup_classid": 17, "skb_vlan_push": 18,
    "skb_vlan_pop": 19, "skb_get_tunnel_key": 20, "skb_set_tunnel_key": 21, "perf_event_read": 22, "redirect": 23,
    "get_route_realm": 24, "perf_event_output": 25, "skb_load_bytes": 26, "get_stackid": 27, "csum_diff": 28,
    "skb_get_tunnel_opt": 29, "skb_set_tunnel_opt": 30, "skb_change_proto": 31, "skb_change_type": 32,
    "skb_under_cgroup": 33, "get_hash_recalc": 34, "get_current_task": 35, "probe_write_user": 36,
    "current_task_under_cgroup": 37, "skb_change_tail": 38, "skb_pull_data": 39, "csum_update": 40,
    "set_hash_invalid": 41, "get_numa_node_id": 42, "skb_change_head": 43, "xdp_adjust_head": 44,
    "probe_read_str": 45, "get_socket_cookie": 46, "get_socket_uid": 47, "set_hash": 48, "setsockopt": 49,
    "skb_adjust_room": 50, "redirect_map": 51, "sk_redirect_map": 52, "sock_map_update": 53, "xdp_adjust_meta": 54,
    "perf_event_read_value": 55, "perf_prog_read_value": 56, "getsockopt": 57, "override_return": 58,
    "sock_ops_cb_flags_set": 59, "msg_redirect_map": 60, "msg_apply_bytes": 61, "msg_cork_bytes": 62,
    "msg_pull_data": 63, "bind": 64, "xdp_adjust_tail": 65, "skb_get_xfrm_state": 66, "get_stack": 67,
    "skb_load_bytes_relative": 68, "fib_lookup": 69, "sock_hash_update": 70, "msg_redirect_hash": 71,
    "sk_redirect_hash": 72, "lwt_push_encap": 73, "lwt_seg6_store_bytes": 74, "lwt_seg6_adjust_srh": 75,
    "lwt_seg6_action": 76, "rc_repeat": 77, "rc_keydown": 78, "skb_cgroup_id": 79, "get_current_cgroup_id": 80,
    "get_local_storage": 81, "sk_select_reuseport": 82, "skb_ancestor_cgroup_id": 83, "sk_lookup_tcp": 84,
    "sk_lookup_udp": 85, "sk_release": 86, "map_push_elem": 87, "map_pop_elem": 88, "map_peek_elem": 89,
    "msg_push_data": 90, "msg_pop_data": 91, "rc_pointer_rel": 92, "spin_lock": 93, "spin_unlock": 94,
    "sk_fullsock": 95, "tcp_sock": 96, "skb_ecn_set_ce": 97, "get_listener_sock": 98, "skc_lookup_tcp": 99,
    "tcp_check_syncookie": 100, "sysctl_get_name": 101, "sysctl_get_current_value": 102,
    "sysctl_get_new_value": 103, "sysctl_set_new_value": 104, "strtol": 105, "strtoul": 106, "sk_storage_get": 107,
    "sk_storage_delete": 108, "send_signal": 109, "tcp_gen_syncookie": 110, "skb_output": 111,
    "probe_read_user": 112, "probe_read_kernel": 113, "probe_read_user_str": 114, "probe_read_kernel_str": 115,
    "tcp_send_ack": 116, "send_signal_thread": 117, "jiffies64": 118, "read_branch_records": 119,
    "get_ns_current_pid_tgid": 120, "xdp_output": 121, "get_netns_cookie": 122,
    "get_current_ancestor_cgroup_id": 123, "sk_assign": 124, "ktime_get_boot_ns": 125, "seq_printf": 126,
    "seq_write": 127, "sk_cgroup_id": 128, "sk_ancestor_cgroup_id": 129, "ringbuf_output": 130,
    "ringbuf_reserve": 131, "ringbuf_submit": 132, "ringbuf_discard": 133, "ringbuf_query": 134, "csum_level": 135,
    "skc_to_tcp6_sock": 136, "skc_to_tcp_sock": 137, "skc_to_tcp_timewait_sock": 138,
    "skc_to_tcp_request_sock": 139, "skc_to_udp6_sock": 140, "get_task_stack": 141, "load_hdr_opt": 142,
    "store_hdr_opt": 143, "reserve_hdr_opt": 144, "inode_storage_get": 145, "inode_storage_delete": 146,
    "d_path": 147, "copy_from_user": 148, "snprintf_btf": 149, "seq_printf_btf": 150, "skb_cgroup_classid": 151,
    "redirect_neigh": 152, "per_cpu_ptr": 153, "this_cpu_ptr": 154, "redirect_peer": 155, "task_storage_get": 156,
    "task_storage_delete": 157, "get_current_task_btf": 158, "bprm_opts_set": 159, "ktime_get_coarse_ns": 160,
    "ima_inode_hash": 161, "sock_from_file": 162, "check_mtu": 163, "for_each_map_elem": 164, "snprintf": 165,
    "sys_bpf": 166, "btf_find_by_name_kind": 167, "sys_close": 168, "timer_init": 169, "timer_set_callback": 170,
    "timer_start": 171, "timer_cancel": 172, "get_func_ip": 173, "get_attach_cookie": 174, "task_pt_regs": 175,
    "get_branch_snapshot": 176, "trace_vprintk": 177, "skc_to_unix_sock": 178, "kallsyms_lookup_name": 179,
    "find_vma": 180, "loop": 181, "strncmp": 182, "get_func_arg": 183, "get_func_ret": 184, "get_func_arg_cnt": 185,
    "get_retval": 186, "set_retval": 187, "xdp_get_buff_len": 188, "xdp_load_bytes": 189, "xdp_store_bytes": 190,
    "copy_from_user_task": 191, "skb_set_tstamp": 192, "ima_file_hash": 193, "kptr_xchg": 194,
    "map_lookup_percpu_elem": 195, "skc_to_mptcp_sock": 196, "dynptr_from_mem": 197, "ringbuf_reserve_dynptr": 198,
    "ringbuf_submit_dynptr": 199, "ringbuf_discard_dynptr": 200, "dynptr_read": 201, "dynptr_write": 202,
    "dynptr_data": 203, "tcp_raw_gen_syncookie_ipv4": 204, "tcp_raw_gen_syncookie_ipv6": 205,
    "tcp_raw_check_syncookie_ipv4": 206, "tcp_raw_check_syncookie_ipv6": 207, "ktime_get_tai_ns": 208,
    "user_ringbuf_drain": 209, "cgrp_storage_get": 210, "cgrp_storage_delete": 211,
}
_HELPER_NAMES = {v: k for k, v in HELPERS.items()}


class Reg(enum.IntEnum):
    """The eleven BPF registers. r0 return value, r1-r5 arguments (clobbered by calls),
    r6-r9 callee-saved, r10 the read-only frame pointer."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10


R0, R1, R2, R3, R4, R5 = Reg.R0, Reg.R1, Reg.R2, Reg.R3, Reg.R4, Reg.R5
R6, R7, R8, R9, R10 = Reg.R6, Reg.R7, Reg.R8, Reg.R9, Reg.R10
FP = Reg.R10

#: A jump target: a label name, or a raw offset in instructions relative to the next one.
Target = Union[str, int]


@dataclass(frozen=True)
class Label:
    """A position in the program that jumps and local calls can name."""

    name: str


def label(name: str) -> Label:
    """Mark the position of the next instruction as ``name``."""
    if not isinstance(name, str) or not name:
        raise AssemblerError(f"a label name must be a non-empty string, not {name!r}", op="assemble")
    return Label(name)


@dataclass(frozen=True)
class Insn:
    """One instruction (two slots for a 64-bit immediate load).

    ``off`` may be a label name (jumps) and ``imm`` a label name (local calls); :func:`assemble`
    resolves them. ``ref`` keeps an object such as a :class:`~ebpfmaps.Map` alive for as long as
    the instruction refers to its fd.
    """

    code: int
    dst: int = 0
    src: int = 0
    off: int | str = 0
    imm: int | str = 0
    imm_hi: int | None = None  # second half of a 64-bit immediate; None for one-slot instructions
    ref: Any = None

    @property
    def slots(self) -> int:
        return 1 if self.imm_hi is None else 2

    def encode(self) -> bytes:
        if isinstance(self.off, str) or isinstance(self.imm, str):
            raise AssemblerError(f"unresolved label in {self!r}; use assemble()", op="assemble")
        regs = (self.src << 4) | self.dst
        first = struct.pack("<BBhi", self.code, regs, self.off, _s32(self.imm))
        if self.imm_hi is None:
            return first
        return first + struct.pack("<BBhi", 0, 0, 0, _s32(self.imm_hi))


Item = Union[Insn, Label]


def _s32(value: int) -> int:
    # Immediates are 32 bits; accept the unsigned spelling (0xffffffff) as the same bits.
    return value - (1 << 32) if value >= 1 << 31 else value


def _reg(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise AssemblerError(f"{what} must be a register r0..r10 (ebpfmaps.asm.R0...), not {value!r}", op="assemble")
    return int(value)


def _dst(value: Any, what: str = "destination") -> int:
    reg = _reg(value, what)
    if reg == 10:
        raise AssemblerError("r10 is the read-only frame pointer and cannot be written", op="assemble")
    return reg


def _imm(value: Any, what: str = "immediate") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 31) <= value < 1 << 32:
        raise AssemblerError(f"{what} {value!r} does not fit in 32 bits", op="assemble")
    return int(value)


def _off(value: Any, what: str = "offset") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not _S16[0] <= value <= _S16[1]:
        raise AssemblerError(f"{what} {value!r} does not fit in a signed 16-bit offset", op="assemble")
    return int(value)


def _size(size: Any) -> int:
    if size not in _SIZE_CODE:
        raise AssemblerError(f"memory access size must be 1, 2, 4 or 8 bytes, not {size!r}", op="assemble")
    return _SIZE_CODE[size]


def _target(target: Any) -> int | str:
    if isinstance(target, str):
        return target
    return _off(target, "jump offset")


# ---------------------------------------------------------------------------------------------- ALU


class _AluFn(Protocol):
    def __call__(self, dst: int, src: int) -> Insn: ...


def _alu_fn(op: int, cls: int) -> _AluFn:
    def build(dst: int, src: int) -> Insn:
        d = _dst(dst)
        if isinstance(src, Reg):
            return Insn(cls | op | BPF_X, d, int(src))
        if op in (BPF_DIV, BPF_MOD) and src == 0:
            raise AssemblerError("division by the constant 0", op="assemble")
        if op in (BPF_LSH, BPF_RSH, BPF_ARSH) and isinstance(src, int) and not 0 <= src < (64 if cls == BPF_ALU64 else 32):
            raise AssemblerError(f"shift by {src} is out of range", op="assemble")
        return Insn(cls | op | BPF_K, d, 0, 0, _imm(src))

    return build


# 64-bit (``r``) and 32-bit (``w``, upper half zeroed) ALU operations. ``src`` is a :class:`Reg` or
# an int immediate (a plain int is always an immediate, so write R1, not 1, for a register).
add64, add32 = _alu_fn(BPF_ADD, BPF_ALU64), _alu_fn(BPF_ADD, BPF_ALU)
sub64, sub32 = _alu_fn(BPF_SUB, BPF_ALU64), _alu_fn(BPF_SUB, BPF_ALU)
mul64, mul32 = _alu_fn(BPF_MUL, BPF_ALU64), _alu_fn(BPF_MUL, BPF_ALU)
div64, div32 = _alu_fn(BPF_DIV, BPF_ALU64), _alu_fn(BPF_DIV, BPF_ALU)
mod64, mod32 = _alu_fn(BPF_MOD, BPF_ALU64), _alu_fn(BPF_MOD, BPF_ALU)
or64, or32 = _alu_fn(BPF_OR, BPF_ALU64), _alu_fn(BPF_OR, BPF_ALU)
and64, and32 = _alu_fn(BPF_AND, BPF_ALU64), _alu_fn(BPF_AND, BPF_ALU)
xor64, xor32 = _alu_fn(BPF_XOR, BPF_ALU64), _alu_fn(BPF_XOR, BPF_ALU)
lsh64, lsh32 = _alu_fn(BPF_LSH, BPF_ALU64), _alu_fn(BPF_LSH, BPF_ALU)
rsh64, rsh32 = _alu_fn(BPF_RSH, BPF_ALU64), _alu_fn(BPF_RSH, BPF_ALU)
arsh64, arsh32 = _alu_fn(BPF_ARSH, BPF_ALU64), _alu_fn(BPF_ARSH, BPF_ALU)
mov64, mov32 = _alu_fn(BPF_MOV, BPF_ALU64), _alu_fn(BPF_MOV, BPF_ALU)


def neg64(dst: int) -> Insn:
    return Insn(BPF_ALU64 | BPF_NEG, _dst(dst))


def neg32(dst: int) -> Insn:
    return Insn(BPF_ALU | BPF_NEG, _dst(dst))


def _bits(bits: int) -> int:
    if bits not in (16, 32, 64):
        raise AssemblerError(f"byte swap width must be 16, 32 or 64, not {bits!r}", op="assemble")
    return bits


def to_be(dst: int, bits: int) -> Insn:
    """Convert the low ``bits`` of ``dst`` between host order and big endian."""
    return Insn(BPF_ALU | BPF_END | BPF_TO_BE, _dst(dst), 0, 0, _bits(bits))


def to_le(dst: int, bits: int) -> Insn:
    """Convert the low ``bits`` of ``dst`` between host order and little endian (truncates on x86)."""
    return Insn(BPF_ALU | BPF_END | BPF_TO_LE, _dst(dst), 0, 0, _bits(bits))


def bswap(dst: int, bits: int) -> Insn:
    """Unconditional byte swap (instruction set v4, Linux 6.6+)."""
    return Insn(BPF_ALU64 | BPF_END | BPF_TO_LE, _dst(dst), 0, 0, _bits(bits))


# ---------------------------------------------------------------------------------------------- immediates


def ld_imm64(dst: int, value: int) -> Insn:
    """Load a full 64-bit constant (two slots)."""
    if isinstance(value, bool) or not isinstance(value, int) or not -(1 << 63) <= value < 1 << 64:
        raise AssemblerError(f"64-bit immediate {value!r} does not fit in 64 bits", op="assemble")
    value &= (1 << 64) - 1
    return Insn(BPF_LD | BPF_DW | BPF_IMM, _dst(dst), 0, 0, value & 0xFFFFFFFF, value >> 32)


def _map_fd(m: Any) -> int:
    fd = m if isinstance(m, int) and not isinstance(m, bool) else getattr(m, "fd", None)
    if not isinstance(fd, int) or fd < 0:
        raise AssemblerError(f"expected an ebpfmaps Map (or a map fd), not {m!r}", op="assemble")
    return fd


def ld_map_fd(dst: int, m: Any) -> Insn:
    """``dst = &map`` for helper calls: a BPF_PSEUDO_MAP_FD load the kernel rewrites to the map's address.

    ``m`` is an ebpfmaps :class:`~ebpfmaps.Map` (kept alive by the instruction) or a raw map fd.
    """
    fd = _map_fd(m)
    return Insn(BPF_LD | BPF_DW | BPF_IMM, _dst(dst), BPF_PSEUDO_MAP_FD, 0, fd, 0, ref=m)


def ld_map_value(dst: int, m: Any, offset: int = 0) -> Insn:
    """``dst = &value + offset`` (BPF_PSEUDO_MAP_VALUE): direct access to the value of a single-entry array
    map (the kernel's ``array_map_direct_value_addr`` refuses arrays with more entries), no lookup needed."""
    fd = _map_fd(m)
    spec = getattr(m, "spec", None)
    if spec is not None:
        if spec.type != 2 or spec.max_entries != 1:  # BPF_MAP_TYPE_ARRAY
            raise AssemblerError(f"direct value access needs an array map with max_entries=1, not {m!r}",
                                 op="assemble")
        if not 0 <= offset < spec.value_size:
            raise AssemblerError(f"offset {offset} is outside the {spec.value_size}-byte value", op="assemble")
    return Insn(BPF_LD | BPF_DW | BPF_IMM, _dst(dst), BPF_PSEUDO_MAP_VALUE, 0, fd, _imm(offset, "map value offset"),
                ref=m)


# ---------------------------------------------------------------------------------------------- memory


def ldx(size: int, dst: int, src: int, off: int) -> Insn:
    """``dst = *(uSIZE *)(src + off)``."""
    return Insn(BPF_LDX | BPF_MEM | _size(size), _dst(dst), _reg(src, "base register"), _off(off))


def stx(size: int, dst: int, src: int, off: int) -> Insn:
    """``*(uSIZE *)(dst + off) = src``."""
    return Insn(BPF_STX | BPF_MEM | _size(size), _reg(dst, "base register"), _reg(src, "source"), _off(off))


def st(size: int, dst: int, off: int, imm: int) -> Insn:
    """``*(uSIZE *)(dst + off) = imm``."""
    return Insn(BPF_ST | BPF_MEM | _size(size), _reg(dst, "base register"), 0, _off(off), _imm(imm))


def ld_abs(size: int, imm: int) -> Insn:
    """Legacy socket-filter packet load ``r0 = ntoh(*(uSIZE *)(skb->data + imm))``."""
    if size == 8:
        raise AssemblerError("packet loads are 1, 2 or 4 bytes", op="assemble")
    return Insn(BPF_LD | BPF_ABS | _size(size), 0, 0, 0, _imm(imm))


def ld_ind(size: int, src: int, imm: int) -> Insn:
    """Legacy socket-filter packet load ``r0 = ntoh(*(uSIZE *)(skb->data + src + imm))``."""
    if size == 8:
        raise AssemblerError("packet loads are 1, 2 or 4 bytes", op="assemble")
    return Insn(BPF_LD | BPF_IND | _size(size), 0, _reg(src, "index register"), 0, _imm(imm))


# ---------------------------------------------------------------------------------------------- atomics


def _atomic(size: int, op: int, dst: int, src: int, off: int) -> Insn:
    if size not in (4, 8):
        raise AssemblerError(f"atomic operations work on 4 or 8 bytes, not {size!r}", op="assemble")
    return Insn(BPF_STX | BPF_ATOMIC | _SIZE_CODE[size], _reg(dst, "base register"), _reg(src, "source"), _off(off), op)


def atomic_add(size: int, dst: int, src: int, off: int, *, fetch: bool = False) -> Insn:
    """``lock *(uSIZE *)(dst + off) += src``; with ``fetch`` the old value lands in ``src``."""
    if fetch:
        _dst(src, "fetch register")
    return _atomic(size, BPF_ADD | (BPF_FETCH if fetch else 0), dst, src, off)


def atomic_or(size: int, dst: int, src: int, off: int, *, fetch: bool = False) -> Insn:
    return _atomic(size, BPF_OR | (BPF_FETCH if fetch else 0), dst, src, off)


def atomic_and(size: int, dst: int, src: int, off: int, *, fetch: bool = False) -> Insn:
    return _atomic(size, BPF_AND | (BPF_FETCH if fetch else 0), dst, src, off)


def atomic_xor(size: int, dst: int, src: int, off: int, *, fetch: bool = False) -> Insn:
    return _atomic(size, BPF_XOR | (BPF_FETCH if fetch else 0), dst, src, off)


def atomic_xchg(size: int, dst: int, src: int, off: int) -> Insn:
    """Swap ``*(uSIZE *)(dst + off)`` and ``src`` atomically."""
    _dst(src, "exchange register")
    return _atomic(size, BPF_XCHG, dst, src, off)


def atomic_cmpxchg(size: int, dst: int, src: int, off: int) -> Insn:
    """If ``*(dst + off) == r0`` store ``src``; r0 always receives the old value."""
    return _atomic(size, BPF_CMPXCHG, dst, src, off)


# ---------------------------------------------------------------------------------------------- jumps and calls


class _JumpFn(Protocol):
    def __call__(self, dst: int, src: int, target: Target) -> Insn: ...


def _jump_fn(op: int, cls: int) -> _JumpFn:
    def build(dst: int, src: int, target: Target) -> Insn:
        d = _reg(dst, "compared register")
        if isinstance(src, Reg):
            return Insn(cls | op | BPF_X, d, int(src), _target(target))
        return Insn(cls | op | BPF_K, d, 0, _target(target), _imm(src, "compared immediate"))

    return build


# Conditional jumps: ``if dst OP src goto target``; ``src`` a :class:`Reg` or an immediate. The
# ``*32`` forms compare the low 32 bits. Unsigned: gt ge lt le; signed: sgt sge slt sle.
jeq, jeq32 = _jump_fn(BPF_JEQ, BPF_JMP), _jump_fn(BPF_JEQ, BPF_JMP32)
jne, jne32 = _jump_fn(BPF_JNE, BPF_JMP), _jump_fn(BPF_JNE, BPF_JMP32)
jgt, jgt32 = _jump_fn(BPF_JGT, BPF_JMP), _jump_fn(BPF_JGT, BPF_JMP32)
jge, jge32 = _jump_fn(BPF_JGE, BPF_JMP), _jump_fn(BPF_JGE, BPF_JMP32)
jlt, jlt32 = _jump_fn(BPF_JLT, BPF_JMP), _jump_fn(BPF_JLT, BPF_JMP32)
jle, jle32 = _jump_fn(BPF_JLE, BPF_JMP), _jump_fn(BPF_JLE, BPF_JMP32)
jsgt, jsgt32 = _jump_fn(BPF_JSGT, BPF_JMP), _jump_fn(BPF_JSGT, BPF_JMP32)
jsge, jsge32 = _jump_fn(BPF_JSGE, BPF_JMP), _jump_fn(BPF_JSGE, BPF_JMP32)
jslt, jslt32 = _jump_fn(BPF_JSLT, BPF_JMP), _jump_fn(BPF_JSLT, BPF_JMP32)
jsle, jsle32 = _jump_fn(BPF_JSLE, BPF_JMP), _jump_fn(BPF_JSLE, BPF_JMP32)
jset, jset32 = _jump_fn(BPF_JSET, BPF_JMP), _jump_fn(BPF_JSET, BPF_JMP32)


def ja(target: Target) -> Insn:
    """Unconditional jump."""
    return Insn(BPF_JMP | BPF_JA, 0, 0, _target(target))


def helper_id(helper: str | int) -> int:
    """The id of a helper named like ``"map_lookup_elem"`` or ``"bpf_map_lookup_elem"`` (ints pass through)."""
    if isinstance(helper, int) and not isinstance(helper, bool):
        if helper <= 0:
            raise AssemblerError(f"helper ids start at 1, not {helper}", op="assemble")
        return helper
    if not isinstance(helper, str):
        raise AssemblerError(f"a helper is a name or an id, not {helper!r}", op="assemble")
    name = helper[4:] if helper.startswith("bpf_") else helper
    if name not in HELPERS:
        close = difflib.get_close_matches(name, HELPERS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise AssemblerError(f"unknown BPF helper {helper!r}{hint}", op="assemble")
    return HELPERS[name]


def call(helper: str | int) -> Insn:
    """Call a kernel helper by name (``"map_lookup_elem"``) or number; arguments in r1-r5, result in r0."""
    return Insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper_id(helper))


def call_local(target: str) -> Insn:
    """Call a BPF-to-BPF subprogram that starts at label ``target``."""
    if not isinstance(target, str):
        raise AssemblerError("call_local takes a label name", op="assemble")
    return Insn(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_CALL, 0, target)


def exit_() -> Insn:
    """Return r0 to the caller."""
    return Insn(BPF_JMP | BPF_EXIT)


# ---------------------------------------------------------------------------------------------- assembling


@dataclass(frozen=True)
class Assembled:
    """An assembled program: ``code`` for the kernel, ``insns`` with labels resolved, and a listing."""

    code: bytes
    insns: tuple[Insn, ...]
    labels: dict[str, int]  # label -> slot index
    refs: tuple[Any, ...]  # objects (maps) the code refers to by fd, kept alive with it

    def __len__(self) -> int:
        """The number of 8-byte instruction slots."""
        return len(self.code) // 8

    def __bytes__(self) -> bytes:
        return self.code

    def disassemble(self) -> str:
        return _listing(self.insns, self.labels)


def _items(program: Iterable[Any]) -> list[Item]:
    out: list[Item] = []
    for item in program:
        if isinstance(item, (Insn, Label)):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            out.extend(_items(item))  # sub-sequences from helper functions splice in place
        else:
            raise AssemblerError(f"not an instruction or label: {item!r}", op="assemble")
    return out


def assemble(program: Iterable[Any]) -> Assembled:
    """Resolve labels and encode ``program`` (instructions, labels, and nested lists of them)."""
    items = _items(program)
    labels: dict[str, int] = {}
    slot = 0
    for item in items:
        if isinstance(item, Label):
            if item.name in labels:
                raise AssemblerError(f"label {item.name!r} is defined twice", op="assemble")
            labels[item.name] = slot
        else:
            slot += item.slots
    if slot == 0:
        raise AssemblerError("the program has no instructions", op="assemble")
    resolved: list[Insn] = []
    slot = 0
    for item in items:
        if isinstance(item, Label):
            continue
        insn = item
        for field in ("off", "imm"):
            name = getattr(insn, field)
            if isinstance(name, str):
                if name not in labels:
                    close = difflib.get_close_matches(name, labels, n=3)
                    hint = f"; defined labels close to it: {', '.join(close)}" if close else ""
                    raise AssemblerError(
                        f"instruction {slot} refers to undefined label {name!r}{hint}\n{_listing(resolved, labels)}",
                        op="assemble",
                    )
                delta = labels[name] - (slot + 1)
                if field == "off" and not _S16[0] <= delta <= _S16[1]:
                    raise AssemblerError(f"jump from {slot} to label {name!r} ({delta:+d}) exceeds 16 bits",
                                         op="assemble")
                insn = replace(insn, **{field: delta})
        resolved.append(insn)
        slot += insn.slots
    last = resolved[-1]
    if last.code not in (BPF_JMP | BPF_EXIT, BPF_JMP | BPF_JA):
        raise AssemblerError("the program must end with exit_() (or a jump); the verifier refuses falling off the "
                             f"end\n{_listing(resolved, labels)}", op="assemble")
    code = b"".join(i.encode() for i in resolved)
    refs = tuple(i.ref for i in resolved if i.ref is not None)
    return Assembled(code, tuple(resolved), labels, refs)


# ---------------------------------------------------------------------------------------------- disassembling

_ALU_SYM = {BPF_ADD: "+=", BPF_SUB: "-=", BPF_MUL: "*=", BPF_DIV: "/=", BPF_OR: "|=", BPF_AND: "&=",
            BPF_LSH: "<<=", BPF_RSH: ">>=", BPF_MOD: "%=", BPF_XOR: "^=", BPF_MOV: "=", BPF_ARSH: "s>>="}
_JMP_SYM = {BPF_JEQ: "==", BPF_JGT: ">", BPF_JGE: ">=", BPF_JSET: "&", BPF_JNE: "!=", BPF_JSGT: "s>",
            BPF_JSGE: "s>=", BPF_JLT: "<", BPF_JLE: "<=", BPF_JSLT: "s<", BPF_JSLE: "s<="}
_ATOMIC_NAME = {BPF_ADD: "add", BPF_OR: "or", BPF_AND: "and", BPF_XOR: "xor"}


def _decode(code: bytes) -> list[Insn]:
    if len(code) % 8:
        raise AssemblerError(f"BPF code is a multiple of 8 bytes, not {len(code)}", op="disassemble")
    out: list[Insn] = []
    i = 0
    while i < len(code):
        op, regs, off, imm = struct.unpack_from("<BBhi", code, i)
        if op == BPF_LD | BPF_DW | BPF_IMM and i + 16 <= len(code):
            hi = struct.unpack_from("<i", code, i + 12)[0]
            out.append(Insn(op, regs & 0xF, regs >> 4, off, imm, hi & 0xFFFFFFFF))
            i += 16
        else:
            out.append(Insn(op, regs & 0xF, regs >> 4, off, imm))
            i += 8
    return out


def _text(insn: Insn, slot: int, names: dict[int, str]) -> str:
    code, cls = insn.code, insn.code & 7
    d, s, off = insn.dst, insn.src, insn.off
    imm = insn.imm if isinstance(insn.imm, int) else 0
    if isinstance(off, str):
        off = 0
    if cls in (BPF_ALU, BPF_ALU64):
        r = "r" if cls == BPF_ALU64 else "w"
        op = code & 0xF0
        operand = f"{r}{s}" if code & BPF_X else str(imm)
        if op == BPF_NEG:
            return f"{r}{d} = -{r}{d}"
        if op == BPF_END:
            kind = "bswap" if cls == BPF_ALU64 else ("be" if code & BPF_TO_BE else "le")
            return f"r{d} = {kind}{imm} r{d}"
        return f"{r}{d} {_ALU_SYM.get(op, f'?op{op:#x}')} {operand}"
    if cls in (BPF_JMP, BPF_JMP32):
        op = code & 0xF0
        target = slot + 1 + off
        where = f"{off:+d}" + (f" <{names[target]}>" if target in names else "")
        if op == BPF_EXIT:
            return "exit"
        if op == BPF_CALL:
            if s == BPF_PSEUDO_CALL:
                t = slot + 1 + imm
                return f"call pc{imm:+d}" + (f" <{names[t]}>" if t in names else "")
            return f"call bpf_{_HELPER_NAMES.get(imm, '?')}#{imm}"
        if op == BPF_JA:
            return f"goto {where}"
        r = "r" if cls == BPF_JMP else "w"
        operand = f"{r}{s}" if code & BPF_X else hex(imm & 0xFFFFFFFF)
        return f"if {r}{d} {_JMP_SYM.get(op, '?')} {operand} goto {where}"
    size = _SIZE_OF_CODE.get(code & 0x18, 0) * 8
    mode = code & 0xE0
    mem = f"(u{size} *)(r{d} {off:+d})"
    if cls == BPF_LDX:
        return f"r{d} = *(u{size} *)(r{s} {off:+d})"
    if cls == BPF_ST:
        return f"*{mem} = {imm}"
    if cls == BPF_STX and mode == BPF_ATOMIC:
        width = "64" if size == 64 else ""
        if imm == BPF_XCHG:
            return f"r{s} = atomic{width}_xchg({mem}, r{s})"
        if imm == BPF_CMPXCHG:
            return f"r0 = atomic{width}_cmpxchg({mem}, r0, r{s})"
        name = _ATOMIC_NAME.get(imm & ~BPF_FETCH, "?")
        if imm & BPF_FETCH:
            return f"r{s} = atomic{width}_fetch_{name}({mem}, r{s})"
        return f"lock *{mem} {_ALU_SYM.get(imm, '?=')} r{s}"
    if cls == BPF_STX:
        return f"*{mem} = r{s}"
    if cls == BPF_LD and mode == BPF_IMM:
        hi = insn.imm_hi or 0
        if s == BPF_PSEUDO_MAP_FD:
            return f"r{d} = map[fd:{imm}] ll"
        if s == BPF_PSEUDO_MAP_VALUE:
            return f"r{d} = map_value[fd:{imm}] + {hi} ll"
        return f"r{d} = {((hi & 0xFFFFFFFF) << 32) | (imm & 0xFFFFFFFF):#x} ll"
    if cls == BPF_LD and mode in (BPF_ABS, BPF_IND):
        index = f"r{s} + " if mode == BPF_IND else ""
        return f"r0 = *(u{size} *)skb[{index}{imm}]"
    return f"<unknown opcode {code:#04x}>"


def _listing(insns: Sequence[Insn], labels: dict[str, int]) -> str:
    names = {slot: name for name, slot in labels.items()}
    lines: list[str] = []
    slot = 0
    for insn in insns:
        for name, at in labels.items():
            if at == slot:
                lines.append(f"{name}:")
        lines.append(f"{slot:5d}: {_text(insn, slot, names)}")
        slot += insn.slots
    for name, at in labels.items():
        if at == slot:
            lines.append(f"{name}:")
    return "\n".join(lines)


def disassemble(program: Assembled | bytes | Iterable[Any]) -> str:
    """A readable listing (the verifier's notation) of assembled code, raw bytes or instructions."""
    if isinstance(program, Assembled):
        return program.disassemble()
    if isinstance(program, (bytes, bytearray, memoryview)):
        return _listing(_decode(bytes(program)), {})
    return assemble(program).disassemble()
