"""XDP with pyroute2: a program counting packets and a size histogram into pinned maps, on a veth pair
between two network namespaces this test creates (tests/bpf/xdp_pktsize.bpf.c)."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import xdp
from ebpfmaps.errors import InvalidArgument, InvalidFlags
from ebpfmaps.xdp import VethPair, XdpAttachment
from tests.conftest import bpftool_json, run_python
from tests.readers_support import Loaded, load_programs

PORT = 9999


def frame_len(payload: int) -> int:
    return 14 + 20 + 8 + payload  # Ethernet + IPv4 (no options) + UDP headers


class Counter:
    """The XDP program and its three maps, pinned in the test's private bpffs."""

    def __init__(self, bpffs: Path, port: int) -> None:
        u32, u64 = ctypes.c_uint32, ctypes.c_uint64
        self.counts = ebpfmaps.create("array", key_type=u32, value_type=u64, max_entries=3, name="xdp_counts")
        self.hist = ebpfmaps.create("array", key_type=u32, value_type=u64, max_entries=32, name="xdp_hist")
        self.cfg = ebpfmaps.create("array", key_type=u32, value_type=u32, max_entries=1, name="xdp_cfg")
        self.cfg[0] = port
        self.counts.pin(str(bpffs / "xdp_counts"))
        self.hist.pin(str(bpffs / "xdp_hist"))
        self.loaded: Loaded = load_programs(
            "xdp_pktsize", bpffs, {"xdp_counts": self.counts, "xdp_hist": self.hist, "xdp_cfg": self.cfg})
        self.prog = self.loaded["xdp_pktsize"]

    def close(self) -> None:
        self.loaded.close()
        for m in (self.counts, self.hist, self.cfg):
            m.close()


@pytest.fixture
def veth() -> Iterator[VethPair]:
    pytest.importorskip("pyroute2")  # in the [dev] extra; CI has it
    with VethPair() as pair:
        yield pair
    assert not pair.namespaces_exist()


@pytest.fixture
def counter(bpffs: Path) -> Iterator[Counter]:
    c = Counter(bpffs, PORT)
    yield c
    c.close()


def le(hex_bytes: list[str]) -> int:
    """bpftool -j shows a map without BTF as a list of hex bytes."""
    return int.from_bytes(bytes(int(b, 16) for b in hex_bytes), "little")


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Frames cross the veth in softirq context, a moment after sendto() returns."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_counts_and_histogram_from_real_traffic(veth: VethPair, counter: Counter, bpffs: Path) -> None:
    sizes = [10] * 5 + [100] * 7 + [1000] * 3
    with XdpAttachment(veth.if_b, counter.prog, netns=veth.ns_b):
        mode, prog_id = xdp.attached(veth.if_b, netns=veth.ns_b)
        assert mode == "driver"  # veth has native XDP
        assert prog_id == counter.prog.id
        veth.send_udp((bytes(n) for n in sizes), PORT)
        veth.send_udp([bytes(50)] * 4, PORT + 1)  # another port: seen, not counted
        assert wait_for(lambda: counter.counts[1] == len(sizes))
        assert wait_for(lambda: counter.counts[0] >= len(sizes) + 4)
    assert xdp.attached(veth.if_b, netns=veth.ns_b) == (None, None)
    assert counter.counts[2] == sum(frame_len(n) for n in sizes)
    hist = {slot: n for slot, n in counter.hist.items() if n}
    # 52-byte frames land in [32, 64), 142 in [128, 256), 1042 in [1024, 2048).
    assert hist == {5: 5, 7: 7, 10: 3}
    # bpftool reads the same pinned map; another process opens the pin with ebpfmaps.
    dumped = bpftool_json("map", "dump", "pinned", str(bpffs / "xdp_hist"))
    assert isinstance(dumped, list)
    assert {le(e["key"]): le(e["value"]) for e in dumped if le(e["value"])} == hist
    out = run_python("import sys, ebpfmaps, ctypes\n"
                     "m = ebpfmaps.open_pinned(sys.argv[1], key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)\n"
                     "print(m[1], m[2])\n", str(bpffs / "xdp_counts"))
    assert out.stdout.split() == [str(len(sizes)), str(sum(frame_len(n) for n in sizes))]
    # Detached: more traffic changes nothing.
    veth.send_udp([bytes(10)] * 3, PORT)
    time.sleep(0.2)
    assert counter.counts[1] == len(sizes)


def test_generic_mode_and_replace(veth: VethPair, counter: Counter) -> None:
    xdp.attach(veth.if_b, counter.prog, mode="generic", netns=veth.ns_b)
    try:
        assert xdp.attached(veth.if_b, netns=veth.ns_b) == ("generic", counter.prog.id)
        veth.send_udp([bytes(100)] * 2, PORT)
        assert wait_for(lambda: counter.counts[1] == 2)
        with pytest.raises(ebpfmaps.errors.MapError):
            xdp.attach(veth.if_b, counter.prog, mode="generic", netns=veth.ns_b, replace=False)
    finally:
        xdp.detach(veth.if_b, mode="generic", netns=veth.ns_b)
    assert xdp.attached(veth.if_b, netns=veth.ns_b) == (None, None)


def test_bad_input(veth: VethPair, counter: Counter) -> None:
    with pytest.raises(InvalidFlags):
        xdp.attach(veth.if_b, counter.prog, mode="turbo", netns=veth.ns_b)
    with pytest.raises(InvalidArgument):
        xdp.attach("no-such-if0", counter.prog, netns=veth.ns_b)
    with pytest.raises(InvalidArgument):
        xdp.attach(veth.if_b, "prog", netns=veth.ns_b)
    assert xdp.attached(veth.if_b, netns=veth.ns_b) == (None, None)


def test_namespaces_are_removed_when_the_body_fails() -> None:
    pytest.importorskip("pyroute2")
    made: list[VethPair] = []
    with pytest.raises(RuntimeError), VethPair() as pair:
        made.append(pair)
        assert pair.namespaces_exist()
        raise RuntimeError("test body failed")
    assert len(made) == 1 and not made[0].namespaces_exist()
