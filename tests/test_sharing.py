"""Proof that Python and kernel programs share maps .

1. A value written by Python is read and changed by a program, and Python sees the change.
2. Two processes and a program hammer one counter with atomic adds; no increment is lost.
   Python cannot add atomically through syscalls (lookup + update races), so each Python process
   drives the in-kernel atomic add with BPF_PROG_TEST_RUN(repeat=N); the total must be exact.
3. A map pinned by a plain libbpf C loader is opened by ebpfmaps in another process, and the
   other way round: the C loader reuses what Python wrote.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
import threading
from pathlib import Path

import ebpfmaps
from ebpfmaps import asm
from ebpfmaps.asm import R0, R1, R2, R3, R4, R10
from ebpfmaps.programs import Program
from tests.bpfbuild import bpf_object, c_program
from tests.conftest import ROOT, bpftool_json, run_python

XDP_PASS = 2


def test_python_writes_program_changes_python_sees() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=8) as m:
        m[5] = 7
        # value = value * 3 + 1, written back with bpf_map_update_elem from the program
        insns = [
            asm.st(4, R10, -4, 5),
            asm.mov64(R2, R10), asm.add64(R2, -4),
            asm.ld_map_fd(R1, m),
            asm.call("map_lookup_elem"),
            asm.jeq(R0, 0, "missing"),
            asm.ldx(8, R3, R0, 0),
            asm.mul64(R3, 3), asm.add64(R3, 1),
            asm.stx(8, R10, R3, -16),
            asm.ld_map_fd(R1, m),
            asm.mov64(R2, R10), asm.add64(R2, -4),
            asm.mov64(R3, R10), asm.add64(R3, -16),
            asm.mov64(R4, 0),  # BPF_ANY
            asm.call("map_update_elem"),
            asm.exit_(),  # r0 = update's result (0)
            asm.label("missing"),
            asm.mov64(R0, 99),
            asm.exit_(),
        ]
        with Program.load("socket_filter", insns) as prog:
            assert prog.test_run(data=b"\0" * 16).retval == 0
            assert m[5] == 22
            m[5] = 100  # Python changes it again; the program sees the new value
            assert prog.test_run(data=b"\0" * 16).retval == 0
            assert m[5] == 301
            del m[5]
            assert prog.test_run(data=b"\0" * 16).retval == 99
            assert 5 not in m


_HAMMER = """
import sys
from ebpfmaps.programs import Program
prog = Program.open_pinned(sys.argv[1])
rounds, repeat = int(sys.argv[2]), int(sys.argv[3])
for _ in range(rounds):
    assert prog.test_run(data=bytes(64), repeat=repeat).retval == 2
"""


def test_two_processes_and_a_program_lose_no_increment(bpffs: Path) -> None:
    rounds, repeat = 40, 5000  # per process: 200,000 atomic adds
    with ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=1) as counter:
        insns = [asm.ld_map_value(R1, counter, 0), asm.mov64(R2, 1), asm.atomic_add(8, R1, R2, 0),
                 asm.mov64(R0, XDP_PASS), asm.exit_()]
        with Program.load("xdp", insns, name="ebpfm_hammer") as prog:
            prog.pin(bpffs / "hammer")
            env_path = str(ROOT)
            procs = [
                subprocess.Popen([sys.executable, "-c", _HAMMER, str(bpffs / "hammer"), str(rounds), str(repeat)],
                                 env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"})
                for _ in range(2)
            ]
            # Meanwhile this process runs the program too and watches the counter only ever grow.
            seen: list[int] = []
            stop = threading.Event()

            def watch() -> None:
                while not stop.is_set():
                    seen.append(int(counter[0]))

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                for _ in range(rounds):
                    prog.test_run(data=bytes(64), repeat=repeat)
                codes = [p.wait(timeout=120) for p in procs]
            finally:
                stop.set()
                watcher.join()
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            assert codes == [0, 0]
            assert counter[0] == 3 * rounds * repeat
            assert seen == sorted(seen) and len(seen) > 1


def test_map_pinned_by_libbpf_c_loader_is_opened_by_ebpfmaps_elsewhere(bpffs: Path) -> None:
    loader = c_program("prog_loader", libs=["bpf"])
    obj = bpf_object("prog_share")
    out = subprocess.run([str(loader), str(obj), str(bpffs), "count_first_byte", "pinned_counts", "4", "25"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["count", "25"]
    pinned = bpffs / "pinned_counts"  # pinned by libbpf (LIBBPF_PIN_BY_NAME under pin_root_path)
    # Another process (the loader has exited) opens it with ebpfmaps, reads C's count, adds its own.
    res = run_python(
        "import sys, ctypes, ebpfmaps\n"
        "m = ebpfmaps.open_pinned(sys.argv[1], key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)\n"
        "print(type(m).__name__, m.name, m[4])\n"
        "m[4] = m[4] + 1000\n",
        str(pinned),
    )
    assert res.stdout.split() == ["HashMap", "pinned_counts", "25"]
    # bpftool reads what Python wrote
    dump = bpftool_json("map", "dump", "pinned", str(pinned))
    assert isinstance(dump, list)
    values = {int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little"):
              int.from_bytes(bytes(int(b, 16) for b in e["value"]), "little") for e in dump}
    assert values == {4: 1025}
    # and the C loader, run again, reuses the pinned map Python changed: 1025 + 25
    out = subprocess.run([str(loader), str(obj), str(bpffs), "count_first_byte", "pinned_counts", "4", "25"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["count", "1050"]
