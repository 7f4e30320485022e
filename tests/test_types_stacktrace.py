"""STACK_TRACE maps filled by a real program (bpf_get_stackid under BPF_PROG_TEST_RUN), resolved through
/proc/kallsyms; the kallsyms table; the features probes and their README table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import ksyms
from ebpfmaps.errors import InvalidValueSize, KeyNotFound, NotSupported
from ebpfmaps.features import TYPE_DOCS, map_type_supported, markdown_table, probe_all
from ebpfmaps.map import Map, class_for
from ebpfmaps.maps.stacktrace import max_stack_depth
from tests.conftest import ROOT
from tests.types_support import bpftool, run_once, stackid_program


def test_a_program_records_its_kernel_stack_and_we_resolve_it(pin_path: Path) -> None:
    with ebpfmaps.StackTraceMap(max_entries=32, depth=32, name="stk_types") as st:
        prog = stackid_program(st.fd)
        try:
            stack_id = run_once(prog)
            assert stack_id >= 0, f"bpf_get_stackid failed: {stack_id}"
            assert run_once(prog) == stack_id  # the same stack hashes to the same id
            table = ksyms.refresh()  # the program's own symbol is listed while it is loaded
        finally:
            os.close(prog)
        ips = st.trace(stack_id)
        assert 1 < len(ips) <= 32 and all(ip >= 0xFFFF800000000000 for ip in ips)  # kernel addresses
        names = st.symbols(stack_id)
        frames = [table.resolve(ip) for ip in ips]
        assert all(f is not None for f in frames)
        # The innermost frame is our program (kallsyms lists it as bpf_prog_<tag>_stackid [bpf]), and the
        # syscall path that ran it is below: BPF_PROG_TEST_RUN through the bpf() syscall.
        assert frames[0] is not None and frames[0].name.endswith("_stackid") and frames[0].module == "bpf"
        joined = " ".join(names)
        # The bpf() entry is __sys_bpf/__x64_sys_bpf on newer kernels, __do_sys_bpf on older ones.
        assert "bpf_prog_test_run" in joined and "sys_bpf" in joined, names
        assert list(st.keys()) == [stack_id] and st.traces() == {stack_id: ips}
        # bpftool reads the same addresses.
        st.pin(pin_path)
        dump = bpftool("map", "lookup", "pinned", str(pin_path), "key", *[str(b) for b in
                                                                              stack_id.to_bytes(4, "little")])
        raw = bytes(int(x, 16) for x in dump["value"])
        assert [int.from_bytes(raw[i : i + 8], "little") for i in range(0, 8 * len(ips), 8)] == list(ips)
        del st[stack_id]
        with pytest.raises(KeyNotFound):
            st.trace(stack_id)


def test_syscall_writes_are_refused_and_sizes_checked() -> None:
    with ebpfmaps.StackTraceMap(max_entries=4) as st:
        assert st.depth == max_stack_depth() and st.value_size == 8 * st.depth
        with pytest.raises(NotSupported, match="programs"):
            st[0] = (1, 2, 3)
    with pytest.raises(InvalidValueSize):
        ebpfmaps.StackTraceMap(value_size=12, max_entries=4)
    with pytest.raises(InvalidValueSize):
        ebpfmaps.StackTraceMap(depth=max_stack_depth() + 1, max_entries=4)
    with ebpfmaps.StackTraceMap(max_entries=4, depth=4, build_id=True) as bid:
        assert bid.value_size == 4 * 32 and bid.info().flags & ebpfmaps.maptypes.BPF_F_STACK_BUILD_ID


def test_kallsyms_resolution() -> None:
    table = ksyms.kallsyms()
    assert len(table) > 1000
    addr = table.address_of("__sys_bpf") or table.address_of("__x64_sys_bpf")
    assert addr is not None
    r = table.resolve(addr + 5)
    assert r is not None and r.offset == 5 and str(r).endswith("+0x5")
    assert table.resolve(0) is None
    assert table.format(1) == "0x1"
    # Cross-check a few entries against /proc/kallsyms read independently with grep.
    out = subprocess.run(["grep", "-m1", " T __sys_bpf$", "/proc/kallsyms"], capture_output=True, text=True)
    if out.stdout:
        assert int(out.stdout.split()[0], 16) == table.address_of("__sys_bpf")


def test_probes_and_the_readme_table() -> None:
    support = probe_all()
    assert support[ebpfmaps.MapType.HASH] and support[ebpfmaps.MapType.QUEUE]
    assert set(TYPE_DOCS) == set(support)
    for t, ok in support.items():
        assert map_type_supported(t) == ok
    table = markdown_table({int(t): cls.__name__ for t in ebpfmaps.MapType if (cls := class_for(t)) is not Map})
    assert table.count("\n| ") == len(support) + 1
    assert "`QueueMap`" in table and "`LpmTrieMap`" in table
    cli = subprocess.run([sys.executable, "-m", "ebpfmaps.features", "--markdown"], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert cli.stdout.strip() == table
