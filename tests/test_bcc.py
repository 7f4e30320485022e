"""bcc and ebpfmaps share pinned maps in both directions.

bcc (Debian's python3-bpfcc) compiles C at run time against kernel headers; mk/bcc.mk merges
Debian's split 6.1 headers into one tree and these tests point BCC_KERNEL_SOURCE at it (the VM
guests set it to their own kernel's merged headers). Under CI
they must run; elsewhere they skip only when bcc or the headers are truly unavailable.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ebpfmaps
from ebpfmaps.programs import Program
from tests.conftest import IN_CI, ROOT, bpftool_json, run_python

HEADERS = ROOT / ".cache" / "bcc-headers"


def bcc_problem() -> str | None:
    """None when bcc can compile programs here, else why not (after trying to build the headers)."""
    if "BCC_KERNEL_SOURCE" not in os.environ:
        if not (HEADERS / ".complete").exists():
            proc = subprocess.run(["make", "-s", "-C", str(ROOT), "bcc-headers"], capture_output=True, text=True,
                                  timeout=600)
            if proc.returncode != 0:
                return f"make bcc-headers failed: {proc.stdout[-500:]}{proc.stderr[-500:]}"
        os.environ["BCC_KERNEL_SOURCE"] = str(HEADERS)
    source = Path(os.environ["BCC_KERNEL_SOURCE"])
    if not (source / "include" / "linux" / "kconfig.h").exists():
        # bcc would fall back to extracting /sys/kernel/kheaders.tar.xz, slow and often absent: say so instead.
        return f"BCC_KERNEL_SOURCE={source} holds no kernel headers (include/linux/kconfig.h is missing)"
    try:
        import bcc  # noqa: F401
    except Exception as exc:
        return f"cannot import bcc (python3-bpfcc): {exc}"
    return None


@pytest.fixture(scope="module")
def bcc_mod() -> Any:
    problem = bcc_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true and bcc cannot run: {problem}")
        pytest.skip(problem)
    import bcc

    return bcc


@pytest.fixture
def bcc_programs(bcc_mod: Any) -> Iterator[list[Any]]:
    """BPF objects made in a test, cleaned up (programs unloaded, tables closed) afterwards."""
    made: list[Any] = []
    yield made
    for b in made:
        b.cleanup()


class Stats(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


BCC_COUNTER = r"""
BPF_TABLE_PINNED("hash", u32, u64, shared, 128, "%(pin)s");
int bump(struct __sk_buff *skb) {
    u32 one = 1, three = 3;
    u64 thirty_three = 33;
    u64 *v = shared.lookup(&one);
    if (v)
        __sync_fetch_and_add(v, 5);
    shared.update(&three, &thirty_three);
    return 0;
}
"""


def test_bcc_uses_a_map_pinned_by_ebpfmaps(bcc_programs: list[Any], pin_path: Path) -> None:
    from bcc import BPF

    m = ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=128, name="shared")
    m.pin(str(pin_path))
    m[1] = 10
    m[2] = 20
    b = BPF(text=(BCC_COUNTER % {"pin": pin_path}).encode())
    bcc_programs.append(b)
    table = b[b"shared"]
    # Same kernel map, not a copy: bcc opened our pin.
    assert m.info().id == ebpfmaps.open_by_id(m.info().id).info().id
    assert table[ctypes.c_uint32(2)].value == 20  # bcc reads what ebpfmaps wrote
    fn = b.load_func(b"bump", BPF.SOCKET_FILTER)
    with Program.from_fd(os.dup(fn.fd)) as prog:
        prog.test_run(data=bytes(64), repeat=2)  # the bcc-compiled program updates the shared map
    table[ctypes.c_uint32(4)] = ctypes.c_uint64(44)  # bcc's table API writes
    assert dict(m.items()) == {1: 20, 2: 20, 3: 33, 4: 44}
    # bpftool, a third reader, agrees on the map bcc's program references.
    dumped = bpftool_json("map", "dump", "pinned", str(pin_path))
    assert isinstance(dumped, list) and len(dumped) == 4


BCC_STATS = r"""
struct stats { u64 packets; u64 bytes; };
BPF_TABLE_PINNED("array", u32, struct stats, stats, 8, "%(pin)s");
int account(struct __sk_buff *skb) {
    u32 slot = 2;
    struct stats *s = stats.lookup(&slot);
    if (s) {
        __sync_fetch_and_add(&s->packets, 1);
        __sync_fetch_and_add(&s->bytes, skb->len);
    }
    return 0;
}
"""


def test_ebpfmaps_opens_a_map_bcc_created_and_pinned(bcc_programs: list[Any], pin_path: Path) -> None:
    from bcc import BPF

    assert not pin_path.exists()
    b = BPF(text=(BCC_STATS % {"pin": pin_path}).encode())  # the path does not exist: bcc creates the map and pins it
    bcc_programs.append(b)
    assert pin_path.exists()
    fn = b.load_func(b"account", BPF.SOCKET_FILTER)
    with Program.from_fd(os.dup(fn.fd)) as prog:
        prog.test_run(data=bytes(100), repeat=3)
    table = b[b"stats"]
    table[ctypes.c_uint32(5)] = table.Leaf(7, 700)
    # Another process opens bcc's pin with ebpfmaps, reads both writers, and writes back.
    out = run_python(
        "import sys, ctypes, ebpfmaps\n"
        "class Stats(ctypes.Structure):\n"
        "    _fields_ = [('packets', ctypes.c_uint64), ('bytes', ctypes.c_uint64)]\n"
        "m = ebpfmaps.open_pinned(sys.argv[1], value_type=Stats)\n"
        "print(type(m).__name__, m.info().max_entries)\n"
        "for i in (2, 5):\n"
        "    print(i, m[i].packets, m[i].bytes)\n"
        "m[6] = Stats(61, 6100)\n",
        str(pin_path),
    )
    lines = out.stdout.splitlines()
    # A socket filter sees skb->len without the 14-byte Ethernet header test_run pulls off.
    assert lines == ["ArrayMap 8", f"2 3 {3 * (100 - 14)}", "5 7 700"]
    six = table[ctypes.c_uint32(6)]  # bcc's table API sees the other process's write
    assert (six.packets, six.bytes) == (61, 6100)
    with ebpfmaps.open_pinned(pin_path, value_type=Stats) as m:
        assert m.spec.value_size == ctypes.sizeof(Stats) == ctypes.sizeof(table.Leaf)
        assert [(k, v.packets) for k, v in m.items() if v.packets] == [(2, 3), (5, 7), (6, 61)]
