"""ebpfmaps.programs.Program: loading (verifier log on refusal), test_run, pinning, tracepoint and raw
tracepoint attachment and detachment — on the real kernel, cross-checked with bpftool."""

from __future__ import annotations

import ctypes
import os
import struct
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import asm, features
from ebpfmaps.asm import R0, R1, R2, R3, R4, R6
from ebpfmaps.errors import InvalidArgument, InvalidFlags, MapClosed, NotSupported, ProgramLoadError
from ebpfmaps.programs import BPF_F_TEST_RUN_ON_CPU, Program, ProgramType, tracefs
from tests.conftest import bpftool_json, run_python

XDP_PASS = 2
NR_GETPPID_X86_64 = 110  # arch/x86/entry/syscalls/syscall_64.tbl


def _counter() -> ebpfmaps.Map:
    # A single-entry array: programs address its value directly (ld_map_value), Python reads m[0].
    return ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=1)


def _count_if_our_tgid(counter: ebpfmaps.Map, prelude: Sequence[object] = ()) -> list[object]:
    """Instructions that add 1 to counter[0] when the current process is this test process."""
    return [
        *prelude,
        asm.call("get_current_pid_tgid"),
        asm.rsh64(R0, 32),
        asm.jne(R0, os.getpid(), "out"),
        asm.ld_map_value(R1, counter, 0),
        asm.mov64(R2, 1),
        asm.atomic_add(8, R1, R2, 0),
        asm.label("out"),
        asm.mov64(R0, 0),
        asm.exit_(),
    ]


# ---------------------------------------------------------------------------------------------- loading


def test_load_reports_name_type_and_tag_as_bpftool_does() -> None:
    with Program.load("socket_filter", [asm.mov64(R0, 0), asm.exit_()], name="ebpfm_ok") as prog:
        info = prog.info()
        assert info.name == "ebpfm_ok" and info.type == ProgramType.SOCKET_FILTER
        shown = bpftool_json("prog", "show", "id", str(info.id))
        assert isinstance(shown, dict)
        assert shown["name"] == "ebpfm_ok" and shown["type"] == "socket_filter" and shown["tag"] == info.tag
        with Program.open_by_id(info.id) as again:
            assert again.type == ProgramType.SOCKET_FILTER and again.name == "ebpfm_ok"
    with pytest.raises(MapClosed):
        prog.test_run(data=b"\0" * 16)


def test_verifier_refusal_carries_the_log_and_listing() -> None:
    bad = [asm.mov64(R0, R1), asm.ldx(8, R0, R2, 0), asm.exit_()]  # r2 is never initialised
    with pytest.raises(ProgramLoadError) as info:
        Program.load("socket_filter", bad, name="ebpfm_bad")
    exc = info.value
    assert "R2 !read_ok" in exc.log and "R2 !read_ok" in str(exc)
    assert "r0 = *(u64 *)(r2 +0)" in exc.disassembly and "--- program ---" in str(exc)
    assert exc.errno is not None


def test_gpl_only_helper_needs_gpl_license() -> None:
    # bpf_probe_read_kernel is gpl_only in kernel/trace/bpf_trace.c
    insns = [asm.mov64(R1, R6), asm.mov64(R1, 0), asm.mov64(R2, 0), asm.mov64(R3, 0), asm.call("probe_read_kernel"),
             asm.mov64(R0, 0), asm.exit_()]
    with pytest.raises(ProgramLoadError, match="GPL"):
        Program.load("raw_tracepoint", insns[1:], license="Proprietary")


def test_log_level_keeps_the_log_and_grows_a_small_buffer() -> None:
    insns = [asm.mov64(R0, 0), *[asm.add64(R0, 1) for _ in range(200)], asm.exit_()]
    with Program.load("socket_filter", insns, log_level=2, log_size=128) as prog:
        # 128 bytes cannot hold a level-2 log of 200 instructions: the loader retried with doubled buffers.
        assert "processed 202 insns" in prog.verifier_log
        assert prog.test_run(data=b"\0" * 16).retval == 200


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"prog_type": "nope"}, InvalidArgument, "unknown program type"),
        ({"name": "a_name_longer_than_15"}, InvalidArgument, "15 characters"),
        ({"name": "bad-name"}, InvalidArgument, "15 characters"),
        ({"license": "GPL\0x"}, InvalidArgument, "NUL"),
        ({"insns": b"\0" * 12}, InvalidArgument, "multiple of 8"),
        ({"log_size": 16}, InvalidArgument, "log_size"),
        ({"log_level": 9}, InvalidArgument, "log_level"),
    ],
)
def test_bad_load_arguments_refused_before_the_syscall(kwargs: dict[str, object], error: type[Exception],
                                                       message: str) -> None:
    args: dict[str, object] = {"prog_type": "socket_filter", "insns": [asm.mov64(R0, 0), asm.exit_()]}
    args.update(kwargs)
    prog_type, insns = args.pop("prog_type"), args.pop("insns")
    with pytest.raises(error, match=message):
        Program.load(prog_type, insns, **args)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- test_run


def test_xdp_test_run_changes_the_packet() -> None:
    insns = [
        asm.ldx(4, R2, R1, 0),  # xdp_md.data
        asm.ldx(4, R3, R1, 4),  # xdp_md.data_end
        asm.mov64(R4, R2),
        asm.add64(R4, 1),
        asm.jgt(R4, R3, "short"),
        asm.st(1, R2, 0, 0xAB),
        asm.label("short"),
        asm.mov64(R0, XDP_PASS),
        asm.exit_(),
    ]
    with Program.load(ProgramType.XDP, insns) as prog:
        packet = bytes(range(64))
        run = prog.test_run(data=packet)
        assert run.retval == XDP_PASS
        assert run.data_out == b"\xab" + packet[1:]
        assert run.ctx_out is None


def test_sched_cls_ctx_in_and_out() -> None:
    # struct __sk_buff: mark at offset 8. The kernel hands back its whole struct: 192 bytes since hwtstamp
    # joined it (Linux 5.16), 184 before.
    insns = [asm.ldx(4, R0, R1, 8), asm.add64(R0, 1), asm.stx(4, R1, R0, 8), asm.mov64(R0, 0), asm.exit_()]
    with Program.load("sched_cls", insns) as prog:
        ctx = struct.pack("<III", 0, 0, 41)  # len, pkt_type (must be 0), mark
        run = prog.test_run(data=b"\0" * 64, ctx=ctx)
        assert run.retval == 0
        assert run.ctx_out is not None and len(run.ctx_out) in (184, 192)
        assert struct.unpack_from("<I", run.ctx_out, 8)[0] == 42


def test_repeat_runs_the_program_that_many_times() -> None:
    with _counter() as counter:
        insns = [asm.ld_map_value(R1, counter, 0), asm.mov64(R2, 1), asm.atomic_add(8, R1, R2, 0),
                 asm.mov64(R0, XDP_PASS), asm.exit_()]
        with Program.load("xdp", insns) as prog:
            run = prog.test_run(data=b"\0" * 64, repeat=5000)
            assert counter[0] == 5000
            assert run.retval == XDP_PASS and 0 <= run.duration_ns < 10_000_000


def test_raw_tracepoint_test_run_gets_its_arguments() -> None:
    # ctx is struct bpf_raw_tracepoint_args: the u64 arguments
    insns = [asm.ldx(8, R0, R1, 0), asm.ldx(8, R2, R1, 8), asm.add64(R0, R2), asm.exit_()]
    with Program.load("raw_tracepoint", insns) as prog:
        run = prog.test_run(ctx=struct.pack("<QQ", 40, 2), flags=BPF_F_TEST_RUN_ON_CPU, cpu=0)
        assert run.retval == 42 and run.data_out is None
        with pytest.raises(InvalidArgument, match="no data"):
            prog.test_run(data=b"x")
        with pytest.raises(InvalidArgument, match="repeat=1"):
            prog.test_run(ctx=b"\0" * 16, repeat=3)


def test_test_run_argument_errors_before_the_syscall() -> None:
    with Program.load("xdp", [asm.mov64(R0, XDP_PASS), asm.exit_()]) as prog:
        with pytest.raises(InvalidArgument, match="repeat"):
            prog.test_run(data=b"\0" * 64, repeat=0)
        with pytest.raises(InvalidFlags):
            prog.test_run(data=b"\0" * 64, flags=1 << 7)
        with pytest.raises(InvalidFlags, match="cpu="):
            prog.test_run(data=b"\0" * 64, cpu=1)


def test_tracepoint_programs_cannot_be_test_run() -> None:
    with Program.load("tracepoint", [asm.mov64(R0, 0), asm.exit_()]) as prog, pytest.raises(NotSupported):
        prog.test_run(ctx=b"\0" * 8)


# ---------------------------------------------------------------------------------------------- pinning


def test_pinned_program_runs_in_another_process(bpffs: Path) -> None:
    with _counter() as counter:
        insns = [asm.ld_map_value(R1, counter, 0), asm.mov64(R2, 3), asm.atomic_add(8, R1, R2, 0),
                 asm.mov64(R0, XDP_PASS), asm.exit_()]
        path = bpffs / "ebpfm_prog"
        with Program.load("xdp", insns, name="ebpfm_pinned") as prog:
            prog.pin(path)
            assert prog.pin_path == str(path)
        shown = bpftool_json("prog", "show", "pinned", str(path))
        assert isinstance(shown, dict) and shown["name"] == "ebpfm_pinned" and shown["type"] == "xdp"
        run_python(
            "import sys\nfrom ebpfmaps.programs import Program\n"
            "p = Program.open_pinned(sys.argv[1])\nassert p.name == 'ebpfm_pinned', p\n"
            "assert p.test_run(data=bytes(64), repeat=10).retval == 2\n",
            str(path),
        )
        assert counter[0] == 30
        ebpfmaps.unpin(path)


# ---------------------------------------------------------------------------------------------- attaching


def _links() -> list[dict[str, object]]:
    links = bpftool_json("link", "show")
    assert isinstance(links, list)
    return links


def test_raw_tracepoint_counts_our_syscalls_then_detaches(bpffs: Path) -> None:
    with _counter() as counter:
        # sys_enter's arguments: args[0] = struct pt_regs *, args[1] = syscall number
        prelude = [asm.ldx(8, R6, R1, 8), asm.jne(R6, NR_GETPPID_X86_64, "out")]
        with Program.load("raw_tracepoint", _count_if_our_tgid(counter, prelude)) as prog:
            with prog.attach_raw_tracepoint("sys_enter") as link:
                links = bpftool_json("link", "show")
                assert isinstance(links, list)
                ours = [x for x in links if x.get("prog_id") == prog.id]
                assert ours and ours[0]["type"] == "raw_tracepoint" and ours[0]["tp_name"] == "sys_enter"
                for _ in range(123):
                    os.getppid()
                assert counter[0] == 123
            assert not link.attached
            for _ in range(50):
                os.getppid()
            assert counter[0] == 123  # detached: no more counting

            # A pinned link keeps the program attached after the Python object lets go, until unpinned.
            link = prog.attach_raw_tracepoint("sys_enter")
            link.pin(bpffs / "ebpfm_link")
            link.detach()
            for _ in range(7):
                os.getppid()
            assert counter[0] == 130
            ebpfmaps.unpin(bpffs / "ebpfm_link")
            # The kernel frees the link when the pin's inode goes, which it may do a moment later.
            deadline = time.monotonic() + 5
            while any(x.get("prog_id") == prog.id for x in _links()):
                assert time.monotonic() < deadline, "the link outlived its unpinning"
                time.sleep(0.01)
            before = counter[0]
            for _ in range(7):
                os.getppid()
            assert counter[0] == before >= 130


def test_tracepoint_via_perf_event_counts_exactly_and_detaches() -> None:
    assert os.path.isdir(os.path.join(tracefs(), "events", "syscalls", "sys_enter_getppid"))
    with _counter() as counter, Program.load("tracepoint", _count_if_our_tgid(counter)) as prog:
        with prog.attach_tracepoint("syscalls", "sys_enter_getppid") as link:
            # A perf_event BPF link where the kernel has them (probe), else the ioctl binding.
            assert link.is_bpf_link == features.perf_event_link_supported()
            links = bpftool_json("link", "show")
            assert isinstance(links, list)
            assert any(x.get("prog_id") == prog.id for x in links) == link.is_bpf_link
            for _ in range(77):
                os.getppid()
            assert counter[0] == 77
        for _ in range(10):
            os.getppid()
        assert counter[0] == 77
        links = bpftool_json("link", "show")
        assert isinstance(links, list) and not any(x.get("prog_id") == prog.id for x in links)


def test_attach_errors() -> None:
    with Program.load("socket_filter", [asm.mov64(R0, 0), asm.exit_()]) as prog:
        with pytest.raises(InvalidArgument, match="tracepoint program"):
            prog.attach_tracepoint("syscalls", "sys_enter_getppid")
        with pytest.raises(InvalidArgument, match="raw_tracepoint"):
            prog.attach_raw_tracepoint("sys_enter")
        with pytest.raises(InvalidArgument, match="needs a kprobe program"):
            prog.attach("kprobe/do_sys_open")
        with pytest.raises(InvalidArgument, match="cannot attach by section"):
            prog.attach("xdp_or_nothing")
    with Program.load("tracepoint", [asm.mov64(R0, 0), asm.exit_()]) as prog:
        with pytest.raises(NotSupported, match="no tracepoint"):
            prog.attach_tracepoint("syscalls", "sys_enter_no_such_call")
        with pytest.raises(InvalidArgument, match="bad tracepoint"):
            prog.attach_tracepoint("..", "x")
    with Program.load("raw_tracepoint", [asm.mov64(R0, 0), asm.exit_()]) as prog:
        with pytest.raises(NotSupported, match="no raw tracepoint"):
            prog.attach_raw_tracepoint("no_such_tracepoint_here")


@pytest.mark.no_kernel
def test_perf_event_attr_layout_matches_the_header(tmp_path: Path) -> None:
    """PerfEventAttr (used for tracepoint attachment) against <linux/perf_event.h>, compiled with gcc."""
    import shutil
    import subprocess

    from ebpfmaps.programs import PerfEventAttr

    named = [f[0] for f in PerfEventAttr._fields_ if not f[0].startswith("_") and f[0] != "flags"]
    src = tmp_path / "attr.c"
    src.write_text("#include <stdio.h>\n#include <stddef.h>\n#include <linux/perf_event.h>\nint main(void) {\n"
                   + 'printf("sizeof %zu\\n", sizeof(struct perf_event_attr));\n'
                   + "".join(f'printf("{n} %zu\\n", offsetof(struct perf_event_attr, {n}));\n' for n in named)
                   + "return 0; }\n")
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed (Makefile installs it)"
    subprocess.run([gcc, "-o", str(tmp_path / "attr"), str(src)], check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "attr")], check=True, capture_output=True, text=True).stdout
    table = {k: int(v) for k, v in (line.split() for line in out.splitlines())}
    # Newer headers append fields (config3 in 6.3); ours stops at sig_data (PERF_ATTR_SIZE_VER7).
    assert table["sizeof"] >= ctypes.sizeof(PerfEventAttr) == 128
    for n in named:
        assert getattr(PerfEventAttr, n).offset == table[n], n
    # the bit-field word sits between read_format and the wakeup union
    assert PerfEventAttr.flags.offset == table["read_format"] + 8


@pytest.mark.no_kernel
def test_prog_info_prefix_layout_matches_the_header(tmp_path: Path) -> None:
    """BpfProgInfo declares only a prefix of struct bpf_prog_info; its offsets must match <linux/bpf.h>."""
    import shutil
    import subprocess

    from ebpfmaps._libbpf.structs import BpfProgInfo

    named = [f[0] for f in BpfProgInfo._fields_]
    src = tmp_path / "info.c"
    src.write_text("#include <stdio.h>\n#include <stddef.h>\n#include <linux/bpf.h>\nint main(void) {\n"
                   + "".join(f'printf("{n} %zu\\n", offsetof(struct bpf_prog_info, {n}));\n' for n in named)
                   + "return 0; }\n")
    gcc = shutil.which("gcc")
    assert gcc, "gcc is needed (Makefile installs it)"
    subprocess.run([gcc, "-o", str(tmp_path / "info"), str(src)], check=True, capture_output=True)
    out = subprocess.run([str(tmp_path / "info")], check=True, capture_output=True, text=True).stdout
    table = {k: int(v) for k, v in (line.split() for line in out.splitlines())}
    for n in named:
        assert getattr(BpfProgInfo, n).offset == table[n], n
