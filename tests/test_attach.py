"""Attach points end to end: each program writes a map that Python reads, on the real kernel.

kprobes, uprobes, tc (tcx links and netlink clsact filters), cgroup v2 programs (skb ingress/egress,
sock_create, connect4, bind4, sysctl, multi-attach), socket filters, SK_SKB/SK_MSG on sockmaps (the
kernel selftests' redirect scenario), perf events on software clocks, fentry/fexit and LSM. Where the
running kernel lacks a feature, a probe that names it skips the test.
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import asm, elfsyms, features, ksyms
from ebpfmaps.asm import R0, R1, R2, R3, R4, R6
from ebpfmaps.errors import InvalidArgument, InvalidFlags, NotSupported
from ebpfmaps.programs import BPF_F_ALLOW_MULTI, AttachType, Link, Program, ProgramType
from tests import attach_support
from tests.attach_support import ETH_P_EXPERIMENTAL, run_in_cgroup, send_frames
from tests.bpfbuild import c_program
from tests.conftest import bpftool_json
from tests.kernel_features import (
    require_bpf_lsm,
    require_kprobes,
    require_tracing_trampolines,
    require_uprobes,
)

# The shared fixtures, by the names the tests take.
cgroup = attach_support.cgroup
veth_pair = attach_support.veth_pair

# struct pt_regs on x86_64: ax is the 11th u64 (arch/x86/include/uapi/asm/ptrace.h).
PT_REGS_AX = 80


def _counter(entries: int = 1) -> ebpfmaps.Map:
    return ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=entries)


def _add(counter: ebpfmaps.Map, src: int, slot: int = 0) -> list[object]:
    """counter[slot] += src (clobbers R1)."""
    return [asm.ld_map_value(R1, counter, slot * 8), asm.atomic_add(8, R1, src, 0)]


def _count(counter: ebpfmaps.Map, *, tgid: int | None = None, ret: int = 0, prelude: list[object] | None = None
           ) -> list[object]:
    """counter[0] += 1 (when the current process is ``tgid``, if given), then return ``ret``."""
    body: list[object] = list(prelude or [])
    if tgid is not None:
        body += [asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32), asm.jne(R0, tgid, "out")]
    body += [asm.mov64(R2, 1), *_add(counter, R2), asm.label("out"), asm.mov64(R0, ret), asm.exit_()]
    return body


def _cgroup_programs(path: str) -> list[dict[str, object]] | None:
    """``bpftool cgroup show PATH``: the programs attached to the cgroup (bpftool prints nothing for none).

    None where this bpftool cannot query the running kernel (bpftool 7 asks BPF_PROG_QUERY for per-program
    attach flags, which kernels before 6.0 refuse): the counts the programs write still tell what ran.
    """
    exe = shutil.which("bpftool") or "/usr/sbin/bpftool"
    out = subprocess.run([exe, "-j", "cgroup", "show", path], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return None
    if not out.stdout.strip():
        return []
    shown = bpftool_json("cgroup", "show", path)
    assert isinstance(shown, list)
    return shown


def _names(shown: list[dict[str, object]] | None) -> list[object] | None:
    return None if shown is None else sorted(e["name"] for e in shown)  # type: ignore[type-var]


def _link_ids() -> set[int]:
    shown = bpftool_json("link", "show")
    return {int(e["id"]) for e in shown} if isinstance(shown, list) else set()


# ---------------------------------------------------------------------------------------------- kprobes


def _kprobe_symbol() -> str:
    table = ksyms.kallsyms()
    for name in ("do_sys_openat2", "do_sys_open"):
        if table.address_of(name) is not None:
            return name
    pytest.fail("neither do_sys_openat2 nor do_sys_open is in /proc/kallsyms")


@pytest.mark.parametrize("ret", [False, True], ids=["kprobe", "kretprobe"])
def test_kprobe_counts_this_process_opening_files(ret: bool) -> None:
    require_kprobes()
    symbol = _kprobe_symbol()
    counter = _counter()
    with Program.load("kprobe", _count(counter, tgid=os.getpid()), name="ebpfm_kprobe") as prog:
        with prog.attach_kprobe(symbol, ret=ret) as link:
            assert link.kind == ("kretprobe" if ret else "kprobe") and link.target == symbol
            for _ in range(5):
                os.close(os.open("/dev/null", os.O_RDONLY))
            seen = counter[0]
            assert seen >= 5
        os.close(os.open("/dev/null", os.O_RDONLY))
        assert counter[0] == seen, "the probe still fired after the link was closed"


def test_kprobe_link_pins_where_the_kernel_makes_perf_links(pin_path: Path) -> None:
    require_kprobes()
    counter = _counter()
    with Program.load("kprobe", _count(counter, tgid=os.getpid()), name="ebpfm_kpin") as prog:
        link = prog.attach_kprobe(_kprobe_symbol())
        if not features.perf_event_link_supported():
            with pytest.raises(NotSupported, match="PERF_EVENT_IOC_SET_BPF"):
                link.pin(pin_path)
            link.detach()
            return
        link.pin(pin_path)
        link.detach()  # the pin keeps the attachment
        os.close(os.open("/dev/null", os.O_RDONLY))
        assert counter[0] >= 1
        os.unlink(pin_path)
        # bpffs drops the pinned link after an RCU grace period (bpf_free_inode), which an emulated guest can
        # take a while to reach: the probe must stop firing soon after, and then stay off.
        deadline = time.monotonic() + 60
        while True:
            before = counter[0]
            os.close(os.open("/dev/null", os.O_RDONLY))
            if counter[0] == before:
                break
            assert time.monotonic() < deadline, "the kprobe still fires a minute after its pin was removed"
            time.sleep(0.05)
        time.sleep(0.1)
        os.close(os.open("/dev/null", os.O_RDONLY))
        assert counter[0] == before


def test_kprobe_arguments_are_checked_before_the_kernel() -> None:
    with Program.load("kprobe", _count(_counter()), name="ebpfm_kbad") as prog:
        with pytest.raises(InvalidArgument):
            prog.attach_kprobe("")
        with pytest.raises(InvalidArgument):
            prog.attach_kprobe("do sys", 0)
        with pytest.raises(InvalidArgument):
            prog.attach_kprobe("do_sys_openat2", -1)
        with pytest.raises(InvalidArgument, match="no offset"):
            prog.attach_kprobe("do_sys_openat2", 4, ret=True)
    with Program.load("socket_filter", [asm.mov64(R0, 0), asm.exit_()]) as other, \
            pytest.raises(InvalidArgument, match="kprobe program"):
        other.attach_kprobe("do_sys_openat2")


def test_kprobe_where_the_kernel_has_none_names_the_feature() -> None:
    """Without CONFIG_KPROBES the refusal names kprobes; with it the same call attaches."""
    with Program.load("kprobe", _count(_counter()), name="ebpfm_knone") as prog:
        if features.kprobes_supported():
            prog.attach_kprobe(_kprobe_symbol()).detach()
        else:
            with pytest.raises(NotSupported, match="kprobe"):
                prog.attach_kprobe("do_sys_openat2")


# ---------------------------------------------------------------------------------------------- uprobes


class _Target:
    """tests/c/uprobe_target.c, started and waiting on stdin until :meth:`go`."""

    def __init__(self, calls: int) -> None:
        self.exe = str(c_program("uprobe_target"))
        self.calls = calls
        self.proc = subprocess.Popen([self.exe, str(calls)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def go(self) -> int:
        out, _ = self.proc.communicate("go\n", timeout=60)
        assert self.proc.returncode == 0
        return int(out)


def test_uprobe_symbol_offset_matches_nm() -> None:
    exe = str(c_program("uprobe_target"))
    out = subprocess.run(["nm", exe], capture_output=True, text=True, check=True).stdout
    vaddr = next(int(line.split()[0], 16) for line in out.splitlines() if line.endswith(" probe_target_fn"))
    table = elfsyms.elf_symbols(exe)
    assert table.address_of("probe_target_fn") == vaddr
    assert elfsyms.symbol_file_offset(exe, "probe_target_fn") == table.vaddr_to_offset(vaddr)
    with pytest.raises(ebpfmaps.errors.KeyNotFound):
        elfsyms.symbol_file_offset(exe, "no_such_function_here")


def test_uprobe_by_symbol_counts_the_calls_of_one_process() -> None:
    require_uprobes()
    target = _Target(7)
    try:
        counter = _counter()
        with Program.load("kprobe", _count(counter, tgid=target.pid), name="ebpfm_uprobe") as prog, \
                prog.attach_uprobe(target.exe, "probe_target_fn") as link:
            assert link.kind == "uprobe"
            assert target.go() == 49
            assert counter[0] == 7
    finally:
        target.proc.kill()
        target.proc.wait()


def test_uprobe_by_offset_with_a_pid_filter_sees_only_that_process() -> None:
    require_uprobes()
    watched, other = _Target(3), _Target(5)
    try:
        offset = elfsyms.symbol_file_offset(watched.exe, "probe_target_fn")
        counter = _counter()
        with Program.load("kprobe", _count(counter), name="ebpfm_upid") as prog, \
                prog.attach_uprobe(watched.exe, offset, pid=watched.pid):
            assert other.go() == 25
            assert counter[0] == 0, "the pid filter let another process's calls through"
            assert watched.go() == 9
            assert counter[0] == 3
    finally:
        for t in (watched, other):
            t.proc.kill()
            t.proc.wait()


def test_uretprobe_reads_the_return_values() -> None:
    require_uprobes()
    if platform.machine() != "x86_64":
        pytest.skip(f"the test reads the return register at its x86_64 pt_regs offset; this is {platform.machine()}")
    target = _Target(6)
    try:
        total = _counter()
        code = [asm.mov64(R6, R1), asm.call("get_current_pid_tgid"), asm.rsh64(R0, 32),
                asm.jne(R0, target.pid, "out"), asm.ldx(8, R2, R6, PT_REGS_AX), *_add(total, R2),
                asm.label("out"), asm.mov64(R0, 0), asm.exit_()]
        with Program.load("kprobe", code, name="ebpfm_uret") as prog, \
                prog.attach_uprobe(target.exe, "probe_target_fn", ret=True) as link:
            assert link.kind == "uretprobe"
            assert target.go() == 36
            assert total[0] == 36  # sum of 2i+1 for i < 6, as the program saw each return
    finally:
        target.proc.kill()
        target.proc.wait()


def test_uprobe_arguments_are_checked_before_the_kernel() -> None:
    exe = str(c_program("uprobe_target"))
    with Program.load("kprobe", _count(_counter()), name="ebpfm_ubad") as prog:
        with pytest.raises(InvalidArgument, match="absolute"):
            prog.attach_uprobe("uprobe_target", "probe_target_fn")
        with pytest.raises(InvalidArgument):
            prog.attach_uprobe("/nonexistent/binary", "main")
        with pytest.raises(ebpfmaps.errors.KeyNotFound):
            prog.attach_uprobe(exe, "no_such_function_here")
        with pytest.raises(InvalidArgument):
            prog.attach_uprobe(exe, "probe_target_fn", pid=0)


# ---------------------------------------------------------------------------------------------- tc


def _tc_counter_prog(counter: ebpfmaps.Map, name: str) -> Program:
    code = [asm.mov64(R6, R1), asm.ld_abs(2, 12), asm.jne(R0, ETH_P_EXPERIMENTAL, "out"),
            asm.mov64(R2, 1), *_add(counter, R2), asm.label("out"), asm.mov64(R0, 0), asm.exit_()]
    return Program.load("sched_cls", code, name=name)


@pytest.mark.parametrize("mode", ["tcx", "netlink"])
def test_tc_ingress_and_egress_count_frames(veth_pair: tuple[str, str], mode: str) -> None:
    if mode == "tcx" and not features.tcx_supported():
        pytest.skip("the running kernel lacks tcx links (probe)")
    a, b = veth_pair
    egress_count, ingress_count = _counter(), _counter()
    with _tc_counter_prog(egress_count, "ebpfm_tc_eg") as eg, _tc_counter_prog(ingress_count, "ebpfm_tc_in") as ing:
        use_tcx = mode == "tcx"
        with eg.attach_tc(a, "egress", tcx=use_tcx) as l_eg, ing.attach_tc(b, "ingress", tcx=use_tcx) as l_in:
            assert l_eg.is_bpf_link == use_tcx and l_in.is_bpf_link == use_tcx
            if not use_tcx:
                tc = shutil.which("tc") or "/usr/sbin/tc"
                shown = subprocess.run([tc, "filter", "show", "dev", b, "ingress"], capture_output=True, text=True,
                                       check=True).stdout
                assert "ebpfm_tc_in" in shown and "direct-action" in shown
            send_frames(a, 4)
            deadline = time.monotonic() + 10
            while ingress_count[0] < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert egress_count[0] == 4
            assert ingress_count[0] == 4
        send_frames(a, 2)
        time.sleep(0.05)  # let any frame that would still count reach the peer before the final check
        assert (egress_count[0], ingress_count[0]) == (4, 4)
        if not use_tcx:
            shown = subprocess.run(["tc", "filter", "show", "dev", b, "ingress"], capture_output=True, text=True,
                                   check=True).stdout
            assert "ebpfm_tc_in" not in shown


def test_tc_arguments_are_checked_before_the_kernel() -> None:
    with _tc_counter_prog(_counter(), "ebpfm_tc_bad") as prog:
        with pytest.raises(InvalidArgument, match="direction"):
            prog.attach_tc("lo", "sideways")
        with pytest.raises(InvalidArgument, match="no interface"):
            prog.attach_tc("ebpfm-no-such-if")


# ---------------------------------------------------------------------------------------------- cgroups


UDP_ROUND_TRIP = """
import socket
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(b"x", r.getsockname())
for _ in range(3):
    r.recv(16)
"""
SOCK_CREATE = "import socket\nfor _ in range(4): socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()\n"
CONNECT = """
import socket
for _ in range(3):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s: s.connect(("127.0.0.1", 9))
"""
BIND = """
import socket
for _ in range(2):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s: s.bind(("127.0.0.1", 0))
"""
SYSCTL_READ = """
import os
fd = os.open("/proc/sys/kernel/ostype", os.O_RDONLY)
for _ in range(4): os.pread(fd, 64, 0)
"""

CGROUP_CASES = [
    ("cgroup_skb", "egress", UDP_ROUND_TRIP, 3),
    ("cgroup_skb", "ingress", UDP_ROUND_TRIP, 3),
    ("cgroup_sock", "sock_create", SOCK_CREATE, 4),
    ("cgroup_sock_addr", "connect4", CONNECT, 3),
    ("cgroup_sock_addr", "bind4", BIND, 2),
    ("cgroup_sysctl", "sysctl", SYSCTL_READ, 4),
]


@pytest.mark.parametrize(("prog_type", "attach_type", "code", "expected"), CGROUP_CASES,
                         ids=[c[1] for c in CGROUP_CASES])
def test_cgroup_program_sees_exactly_the_cgroups_processes(cgroup: str, prog_type: str, attach_type: str, code: str,
                                                            expected: int) -> None:
    counter = _counter()
    with Program.load(prog_type, _count(counter, ret=1), name="ebpfm_cg", expected_attach_type=attach_type) as prog:
        with prog.attach_cgroup(cgroup) as link:
            assert link.is_bpf_link  # cgroup links exist on every kernel the suite runs on (Linux 5.7+)
            assert _names(_cgroup_programs(cgroup)) in (["ebpfm_cg"], None)
            run_in_cgroup(cgroup, code)
            assert counter[0] == expected
        run_in_cgroup(cgroup, code)
        assert counter[0] == expected, "the program still ran after its link was closed"
        assert _cgroup_programs(cgroup) in ([], None)


def test_cgroup_multi_attach_flags_run_every_program(cgroup: str) -> None:
    first, second = _counter(), _counter()
    with Program.load("cgroup_skb", _count(first, ret=1), name="ebpfm_cg1") as p1, \
            Program.load("cgroup_skb", _count(second, ret=1), name="ebpfm_cg2") as p2:
        l1 = p1.attach_cgroup(cgroup, "egress", flags=BPF_F_ALLOW_MULTI)
        l2 = p2.attach_cgroup(cgroup, AttachType.CGROUP_INET_EGRESS, flags=BPF_F_ALLOW_MULTI)
        try:
            assert not l1.is_bpf_link and not l2.is_bpf_link
            with pytest.raises(NotSupported):
                l1.fd  # noqa: B018 - an attachment without a link has no descriptor
            shown = _cgroup_programs(cgroup)
            assert _names(shown) in (["ebpfm_cg1", "ebpfm_cg2"], None)
            assert shown is None or {e["attach_flags"] for e in shown} == {"multi"}
            run_in_cgroup(cgroup, UDP_ROUND_TRIP)
            assert (first[0], second[0]) == (3, 3)
            l1.detach()
            assert _names(_cgroup_programs(cgroup)) in (["ebpfm_cg2"], None)
            run_in_cgroup(cgroup, UDP_ROUND_TRIP)
            assert (first[0], second[0]) == (3, 6)
        finally:
            l1.detach()
            l2.detach()
        assert _cgroup_programs(cgroup) in ([], None)


def test_cgroup_link_pin_keeps_the_program_attached(cgroup: str, pin_path: Path) -> None:
    counter = _counter()
    with Program.load("cgroup_sock", _count(counter, ret=1), name="ebpfm_cgpin",
                      expected_attach_type="sock_create") as prog:
        link = prog.attach_cgroup(cgroup)
        link.pin(pin_path)
        link.detach()
        run_in_cgroup(cgroup, SOCK_CREATE)
        assert counter[0] == 4
        os.unlink(pin_path)
        # The link goes with the pin's inode, after an RCU grace period (bpf_free_inode): wait for it.
        deadline = time.monotonic() + 60
        while True:
            before = counter[0]
            run_in_cgroup(cgroup, SOCK_CREATE)
            if counter[0] == before:
                break
            assert time.monotonic() < deadline, "the program still runs a minute after its pin was removed"
            time.sleep(0.05)


def test_cgroup_arguments_are_checked_before_the_kernel(cgroup: str) -> None:
    with Program.load("cgroup_skb", _count(_counter(), ret=1), name="ebpfm_cgbad") as prog:
        with pytest.raises(InvalidArgument, match="cgroup v2"):
            prog.attach_cgroup("/tmp", "egress")
        with pytest.raises(InvalidArgument, match="attach type"):
            prog.attach_cgroup(cgroup, "sideways")
        with pytest.raises(InvalidArgument, match="cgroup_sock_addr"):
            prog.attach_cgroup(cgroup, "connect4")
        with pytest.raises(InvalidFlags):
            prog.attach_cgroup(cgroup, "egress", flags=1 << 7)
        with pytest.raises(InvalidFlags):
            prog.attach_cgroup(cgroup, "egress", flags=3)
        with pytest.raises(InvalidArgument, match="attach type"):
            prog.attach_cgroup(cgroup)  # loaded without an expected attach type


# ---------------------------------------------------------------------------------------------- sockets


def _udp_pair() -> tuple[socket.socket, socket.socket]:
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))
    r.setblocking(False)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(r.getsockname())
    return r, s


def _recv_all(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(64))
        except BlockingIOError:
            return got


def test_socket_filter_counts_and_drops_then_detaches() -> None:
    counter = _counter()
    keep = [asm.mov64(R6, R1), asm.mov64(R2, 1), *_add(counter, R2), asm.ldx(4, R0, R6, 0), asm.exit_()]
    drop = _count(counter, ret=0)
    r, s = _udp_pair()
    with r, s:
        with Program.load("socket_filter", keep, name="ebpfm_sokeep") as prog, prog.attach_socket(r) as link:
            assert link.kind == "socket" and not link.is_bpf_link
            for i in range(3):
                s.send(b"m%d" % i)
            assert _recv_all(r) == [b"m0", b"m1", b"m2"]
            assert counter[0] == 3
        with Program.load("socket_filter", drop, name="ebpfm_sodrop") as prog:
            link = prog.attach_socket(r)
            s.send(b"dropped")
            assert _recv_all(r) == []
            assert counter[0] == 4
            link.detach()
            link.detach()  # idempotent
        s.send(b"after")
        assert _recv_all(r) == [b"after"]
        assert counter[0] == 4


def test_socket_filter_refuses_what_is_not_a_socket() -> None:
    with Program.load("socket_filter", _count(_counter()), name="ebpfm_sobad") as prog:
        with pytest.raises(InvalidArgument):
            prog.attach_socket("eth0")
        with open("/dev/null") as f, pytest.raises(ebpfmaps.errors.MapError):
            prog.attach_socket(f.fileno())


def _tcp_pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    c = socket.create_connection(listener.getsockname())
    s, _ = listener.accept()
    return c, s


def test_sockmap_stream_verdict_redirects_between_connections_like_the_selftests() -> None:
    """test_sockmap's redirect: bytes c1 sends reach s1, whose verdict program sends them out of c2 to s2."""
    verdicts = _counter()
    with ebpfmaps.SockMap(max_entries=2) as smap, socket.socket() as listener:
        parser_code = [asm.ldx(4, R0, R1, 0), asm.exit_()]  # the whole skb is one message: skb->len
        verdict_code = [asm.mov64(R6, R1), asm.mov64(R2, 1), *_add(verdicts, R2), asm.mov64(R1, R6),
                        asm.ld_map_fd(R2, smap), asm.mov64(R3, 1), asm.mov64(R4, 0), asm.call("sk_redirect_map"),
                        asm.exit_()]
        with Program.load("sk_skb", parser_code, name="ebpfm_parse",
                          expected_attach_type="stream_parser") as parser, \
                Program.load("sk_skb", verdict_code, name="ebpfm_verdict",
                             expected_attach_type="stream_verdict") as verdict:
            l_parse = parser.attach_sockmap(smap)
            l_verdict = verdict.attach_sockmap(smap, AttachType.SK_SKB_STREAM_VERDICT)
            with l_parse, l_verdict:
                listener.bind(("127.0.0.1", 0))
                listener.listen(4)
                c1, s1 = _tcp_pair(listener)
                c2, s2 = _tcp_pair(listener)
                with c1, s1, c2, s2:
                    smap[0] = s1.fileno()
                    smap[1] = c2.fileno()
                    c1.sendall(b"ping")
                    s2.settimeout(30)
                    assert s2.recv(16) == b"ping"
                    assert verdicts[0] >= 1
                    del smap[0], smap[1]


def test_sk_msg_verdict_sees_every_send() -> None:
    sends = _counter()
    with ebpfmaps.SockMap(max_entries=1) as smap, socket.socket() as listener:
        with Program.load("sk_msg", _count(sends, ret=1), name="ebpfm_skmsg", expected_attach_type="sk_msg") as prog, \
                prog.attach_sockmap(smap) as link:
            assert link.kind == "sockmap"
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            c, s = _tcp_pair(listener)
            with c, s:
                smap[0] = c.fileno()
                for i in range(3):
                    c.sendall(b"msg%d" % i)
                s.settimeout(30)
                got = b""
                while len(got) < 12:
                    got += s.recv(64)
                assert got == b"msg0msg1msg2"
                assert sends[0] == 3
                del smap[0]


def test_sockmap_attach_checks_map_and_type() -> None:
    with Program.load("sk_msg", _count(_counter(), ret=1), name="ebpfm_skbad", expected_attach_type="sk_msg") as prog:
        with _counter() as not_a_sockmap, pytest.raises(InvalidArgument, match="SockMap"):
            prog.attach_sockmap(not_a_sockmap)
        with ebpfmaps.SockMap(max_entries=1) as smap, pytest.raises(InvalidArgument, match="sk_skb"):
            prog.attach_sockmap(smap, "stream_parser")


# ---------------------------------------------------------------------------------------------- perf events


def test_perf_event_cpu_clock_samples_on_every_cpu() -> None:
    counter = _counter()
    cpus = ebpfmaps.cpus.online_cpus()
    with Program.load("perf_event", _count(counter, tgid=os.getpid()), name="ebpfm_perf") as prog:
        with prog.attach_perf_event("cpu-clock", sample_freq=1000) as link:
            assert len(link.members) == len(cpus) - 1
            if features.perf_event_link_supported():
                assert link.is_bpf_link and all(m.is_bpf_link for m in link.members)
                assert {_fd_link_id(m) for m in [link, *link.members]} <= _link_ids()
            deadline = time.monotonic() + 30
            spins = 0
            while counter[0] == 0 and time.monotonic() < deadline:
                spins += sum(range(10000))  # burn CPU time: cpu-clock samples only a running task
            assert counter[0] > 0
        seen = counter[0]
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            sum(range(10000))
        assert counter[0] == seen


def _fd_link_id(link: Link) -> int:
    with open(f"/proc/self/fdinfo/{link.fd}") as f:
        for line in f:
            if line.startswith("link_id:"):
                return int(line.split()[1])
    raise AssertionError("no link_id in fdinfo")


def test_perf_event_on_one_cpu_and_bad_arguments() -> None:
    with Program.load("perf_event", _count(_counter()), name="ebpfm_perf1") as prog:
        with prog.attach_perf_event(cpu=0, sample_period=1_000_000) as link:
            assert link.members == [] and link.target == "cpu-clock cpu 0"
        with pytest.raises(InvalidArgument, match="exactly one"):
            prog.attach_perf_event()
        with pytest.raises(InvalidArgument, match="unknown software event"):
            prog.attach_perf_event("cycles-ish", sample_freq=10)
        with pytest.raises(InvalidArgument, match="online"):
            prog.attach_perf_event(cpu=4096, sample_freq=10)


# ---------------------------------------------------------------------------------------------- fentry and LSM


@pytest.mark.parametrize("kind", ["fentry", "fexit"])
def test_fentry_and_fexit_see_arguments_and_return_value(kind: str) -> None:
    """The kernel's own test target: test-running a tracing program calls bpf_fentry_test1(1), which returns 2."""
    require_tracing_trampolines()
    seen = _counter()
    arg_slot = 1 if kind == "fexit" else 0  # fexit's context is the arguments followed by the return value
    # Both are C ints in 8-byte slots: only the low 32 bits are defined (5.10's trampolines leave the
    # caller's upper register bits there), so a 32-bit move keeps just those.
    code = [asm.ldx(8, R2, R1, arg_slot * 8), asm.mov32(R2, R2), *_add(seen, R2), asm.mov64(R0, 0), asm.exit_()]
    with Program.load("tracing", code, name=f"ebpfm_{kind}", attach_to="bpf_fentry_test1",
                      expected_attach_type=kind) as prog:
        assert prog.expected_attach_type == (AttachType.TRACE_FEXIT if kind == "fexit" else AttachType.TRACE_FENTRY)
        with prog.attach_fentry() as link:
            assert link.is_bpf_link and link.target == "bpf_fentry_test1"
            prog.test_run()
            assert seen[0] == (2 if kind == "fexit" else 1)
        prog.test_run()
        assert seen[0] == (2 if kind == "fexit" else 1)


def test_fentry_attach_to_is_looked_up_in_the_kernel_btf() -> None:
    require_tracing_trampolines()
    with pytest.raises(NotSupported, match="no function"):
        Program.load("tracing", [asm.mov64(R0, 0), asm.exit_()], attach_to="ebpfm_no_such_function")
    with pytest.raises(InvalidArgument, match="tracing or LSM"):
        Program.load("kprobe", [asm.mov64(R0, 0), asm.exit_()], attach_to="bpf_fentry_test1")


AF_INET = 2


def test_lsm_socket_create_hook_counts_this_process() -> None:
    require_bpf_lsm()
    counter = _counter()
    # bpf_lsm_socket_create(int family, int type, int protocol, int kern): count AF_INET sockets we create.
    code = [asm.ldx(8, R2, R1, 0), asm.jne(R2, AF_INET, "out"), *_count(counter, tgid=os.getpid())[:-3],
            asm.label("out"), asm.mov64(R0, 0), asm.exit_()]
    with Program.load("lsm", code, name="ebpfm_lsm", attach_to="socket_create") as prog:
        assert prog.expected_attach_type == AttachType.LSM_MAC
        with prog.attach_lsm() as link:
            assert link.kind == "lsm"
            for _ in range(3):
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
            assert counter[0] == 3
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()
        assert counter[0] == 3


def test_program_types_keep_their_attach_calls_apart() -> None:
    with Program.load("socket_filter", [asm.mov64(R0, 0), asm.exit_()], name="ebpfm_sf") as prog:
        assert prog.type == ProgramType.SOCKET_FILTER
        for call in (lambda: prog.attach_tc("lo"), lambda: prog.attach_fentry(), lambda: prog.attach_lsm(),
                     lambda: prog.attach_perf_event(sample_freq=1), lambda: prog.attach_uprobe("/bin/sh", 0)):
            with pytest.raises(InvalidArgument, match="needs a"):
                call()
