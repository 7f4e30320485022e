"""BpfObject attaches by section name (libbpf's auto-attach): clang-built programs, each counting into a map
Python reads; sections that name their target attach on their own, the rest take one from the caller."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
from pathlib import Path

import pytest

from ebpfmaps import Map, features
from ebpfmaps.errors import InvalidArgument
from ebpfmaps.programs import AttachType, BpfObject, parse_section
from tests import attach_support
from tests.attach_support import run_in_cgroup, send_frames
from tests.bpfbuild import bpf_object, c_program

cgroup = attach_support.cgroup
veth_pair = attach_support.veth_pair

SLOT_TP, SLOT_KPROBE, SLOT_CGROUP, SLOT_TC, SLOT_UPROBE, SLOT_SOCKET = range(6)
UDP_SEND = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3): s.sendto(b"x", ("127.0.0.1", 9))
"""


@pytest.fixture(scope="module")
def sections_obj() -> Path:
    return bpf_object("attach_sections")


def _u64_map(obj: BpfObject, name: str) -> Map:
    return obj.map(name, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)


def _open(path: Path) -> BpfObject:
    # Without kprobes the kernel refuses the kprobe program's load: leave it out there.
    return BpfObject.open(path, autoload={"on_open": features.kprobes_supported()})


def test_attach_all_attaches_the_sections_that_say_where(sections_obj: Path) -> None:
    with _open(sections_obj) as obj:
        obj.load()
        _u64_map(obj, "config")[0] = os.getpid()
        links = obj.attach_all()
        expected = {"on_getppid"} | ({"on_open"} if features.kprobes_supported() else set())
        assert set(links) == expected
        counts = _u64_map(obj, "counts")
        try:
            for _ in range(3):
                os.getppid()
            for _ in range(2):
                os.close(os.open("/dev/null", os.O_RDONLY))
            assert counts[SLOT_TP] == 3
            if "on_open" in links:
                assert links["on_open"].kind == "kprobe" and counts[SLOT_KPROBE] >= 2
        finally:
            for link in links.values():
                link.detach()
        os.getppid()
        assert counts[SLOT_TP] == 3


def test_attach_all_with_targets_for_the_sections_that_do_not(sections_obj: Path, cgroup: str,
                                                               veth_pair: tuple[str, str]) -> None:
    exe = str(c_program("uprobe_target"))
    target = subprocess.Popen([exe, "4"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("127.0.0.1", 0))
    try:
        with _open(sections_obj) as obj:
            obj.load()
            _u64_map(obj, "config")[0] = target.pid
            a, b = veth_pair
            targets = {"on_egress": cgroup, "on_tc": b, "on_socket": r, "on_uprobe": f"{exe}:probe_target_fn"}
            links = obj.attach_all(targets)
            try:
                assert set(targets) <= set(links)
                assert obj.programs["on_egress"].expected_attach_type == AttachType.CGROUP_INET_EGRESS
                counts = _u64_map(obj, "counts")
                run_in_cgroup(cgroup, UDP_SEND)
                send_frames(a, 2)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                    sender.sendto(b"hi", r.getsockname())
                assert r.recv(16) == b"hi"
                out, _ = target.communicate("go\n", timeout=60)
                assert int(out) == 16
                assert counts[SLOT_CGROUP] == 3
                assert counts[SLOT_TC] == 2
                assert counts[SLOT_SOCKET] == 1
                assert counts[SLOT_UPROBE] == 4
            finally:
                for link in links.values():
                    link.detach()
    finally:
        r.close()
        target.kill()
        target.wait()


def test_attach_by_section_asks_for_the_missing_target(sections_obj: Path) -> None:
    with _open(sections_obj) as obj:
        obj.load()
        with pytest.raises(InvalidArgument, match="interface"):
            obj.attach("on_tc")
        with pytest.raises(InvalidArgument, match="cgroup"):
            obj.attach("on_egress")
        with pytest.raises(KeyError):
            obj.attach_all({"no_such_program": "lo"})
        with pytest.raises(InvalidArgument, match="takes no target"):
            obj.attach("on_getppid", "lo")
        with obj.attach("on_getppid") as link:
            assert link.kind == "tracepoint" and link.target == "syscalls/sys_enter_getppid"


@pytest.mark.no_kernel
@pytest.mark.parametrize(("section", "kind", "fields"), [
    ("kprobe/do_unlinkat", "kprobe", {"name": "do_unlinkat"}),
    ("kretprobe/do_unlinkat", "kretprobe", {"name": "do_unlinkat"}),
    ("kprobe/tcp_v4_connect+0x10", "kprobe", {"name": "tcp_v4_connect", "offset": 16}),
    ("uprobe//usr/bin/bash:readline", "uprobe", {"binary": "/usr/bin/bash", "name": "readline"}),
    ("uretprobe//lib/libc.so.6:malloc", "uretprobe", {"binary": "/lib/libc.so.6", "name": "malloc"}),
    ("tracepoint/sched/sched_switch", "tracepoint", {"category": "sched", "name": "sched_switch"}),
    ("tp/syscalls/sys_enter_openat", "tracepoint", {"category": "syscalls", "name": "sys_enter_openat"}),
    ("raw_tp/sys_enter", "raw_tracepoint", {"name": "sys_enter"}),
    ("tc", "tc", {"direction": "ingress"}),
    ("tcx/egress", "tc", {"direction": "egress"}),
    ("cgroup_skb/ingress", "cgroup", {"attach_type": AttachType.CGROUP_INET_INGRESS}),
    ("cgroup/connect4", "cgroup", {"attach_type": AttachType.CGROUP_INET4_CONNECT}),
    ("cgroup/sysctl", "cgroup", {"attach_type": AttachType.CGROUP_SYSCTL}),
    ("cgroup/sock_create", "cgroup", {"attach_type": AttachType.CGROUP_INET_SOCK_CREATE}),
    ("sk_skb/stream_parser", "sockmap", {"attach_type": AttachType.SK_SKB_STREAM_PARSER}),
    ("sk_msg", "sockmap", {"attach_type": AttachType.SK_MSG_VERDICT}),
    ("socket", "socket", {}),
    ("perf_event", "perf_event", {}),
    ("fentry/do_unlinkat", "fentry", {"name": "do_unlinkat"}),
    ("lsm/file_open", "lsm", {"name": "file_open"}),
])
def test_section_names_parse_as_libbpf_spells_them(section: str, kind: str, fields: dict[str, object]) -> None:
    parsed = parse_section(section)
    assert parsed is not None and parsed.kind == kind
    for field, value in fields.items():
        assert getattr(parsed, field) == value


@pytest.mark.no_kernel
@pytest.mark.parametrize("section", ["xdp", "license", ".maps", "kprobe/", "tc/sideways", "cgroup/nonsense",
                                     "uprobe/no_colon", "tracepoint/onlyone", ""])
def test_sections_no_attach_call_follows(section: str) -> None:
    assert parse_section(section) is None
