"""The labs that run tracepoint programs: the process counter and the stack trace collector."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from typing import Any

import pytest

from ebpfmaps.features import syscall_tracepoint_kernel_stacks
from tests.conftest import ROOT, run_python

EXAMPLES = ROOT / "examples"


def _lab(name: str) -> dict[str, Any]:
    return runpy.run_path(str(EXAMPLES / f"{name}.py"))


def _open_dev_null(times: int) -> None:
    for _ in range(times):
        os.close(os.open("/dev/null", os.O_RDONLY))


def test_process_counter_counts_this_process_exactly_and_a_child() -> None:
    lab = _lab("lab_process_counter")
    child_opens = 40
    child_pid: list[int] = []

    def workload() -> None:
        _open_dev_null(25)
        code = f"import os\nfor _ in range({child_opens}): os.close(os.open('/dev/null', os.O_RDONLY))\n"
        proc = subprocess.run([sys.executable, "-S", "-c", code + "print(os.getpid())"], capture_output=True,
                              text=True, check=True, timeout=60)
        child_pid.append(int(proc.stdout))
        _open_dev_null(25)

    counts = lab["count_events"](workload)
    assert counts[os.getpid()] == 50  # only os.open ran in this process while attached
    # the child's interpreter opens files while starting too: at least our 40
    assert counts[child_pid[0]] >= child_opens


def test_process_counter_runs_as_a_program() -> None:
    out = run_python(f"import runpy, sys\nsys.argv = ['lab', '--seconds', '0.1', '--self-test', '7']\n"
                     f"runpy.run_path({str(EXAMPLES / 'lab_process_counter.py')!r}, run_name='__main__')\n")
    assert "PID" in out.stdout and "COMM" in out.stdout
    match = re.search(r"this process \((\d+)\): (\d+)", out.stdout)
    assert match and match.group(2) == "7", out.stdout


def _kallsyms_names() -> set[str]:
    with open("/proc/kallsyms") as f:
        return {line.split()[2] for line in f}


def test_stack_collector_symbolizes_kernel_stacks_of_our_syscalls() -> None:
    if not syscall_tracepoint_kernel_stacks():
        pytest.skip("the running kernel gives syscall tracepoint programs no kernel stack (probe)")
    lab = _lab("lab_stack_traces")
    stacks = lab["collect"](lambda: _open_dev_null(9), pid=os.getpid())
    assert sum(s.count for s in stacks) == 9
    frames = [f for s in stacks for f in s.frames]
    assert frames, stacks
    # Each frame resolved to a symbol that /proc/kallsyms (read independently here) names.
    names = _kallsyms_names()
    symbols = [f.split("+")[0] for f in frames]
    assert all(sym in names for sym in symbols), frames
    assert any("syscall" in sym for sym in symbols), frames  # the openat entry path
    # The tracepoint fires inside the syscall's entry: the outermost frame is the syscall entry.
    assert any(s.frames[-1].startswith("entry_SYSCALL") for s in stacks), frames


def test_stack_collector_shows_the_user_frames_that_made_the_calls() -> None:
    if not syscall_tracepoint_kernel_stacks():
        pytest.skip("the running kernel gives syscall tracepoint programs no kernel stack (probe)")
    lab = _lab("lab_stack_traces")
    stacks = lab["collect"](lambda: _open_dev_null(5), pid=os.getpid())
    with_user = [s for s in stacks if s.user_frames]
    assert with_user, stacks
    # The innermost user frame is libc's open wrapper, at its syscall instruction (named through libc's
    # dynamic symbol table, as /proc/self/maps maps it); kernel frames come first, as before.
    innermost = with_user[0].user_frames[0]
    assert "open" in innermost.split("+")[0] and "[libc.so" in innermost, with_user[0].user_frames
    assert "-- user --" in lab["report"](stacks, 5)


def test_stack_collector_runs_as_a_program() -> None:
    if not syscall_tracepoint_kernel_stacks():
        pytest.skip("the running kernel gives syscall tracepoint programs no kernel stack (probe)")
    out = run_python(f"import runpy, sys, os\nsys.argv = ['lab', '--seconds', '0.1', '--self-test', '3', "
                     f"'--pid', str(os.getpid())]\n"
                     f"runpy.run_path({str(EXAMPLES / 'lab_stack_traces.py')!r}, run_name='__main__')\n")
    assert re.search(r"stack \d+: 3 events", out.stdout), out.stdout
    assert "distinct kernel stacks, 3 events" in out.stdout


@pytest.mark.parametrize("lab", ["lab_process_counter", "lab_stack_traces"])
def test_labs_refuse_a_missing_tracepoint(lab: str) -> None:
    from ebpfmaps.errors import NotSupported

    fn = _lab(lab)["count_events" if lab == "lab_process_counter" else "collect"]
    with pytest.raises(NotSupported, match="no tracepoint"):
        fn(lambda: None, tracepoint="syscalls/sys_enter_does_not_exist")


@pytest.mark.no_kernel
def test_labs_that_counted_nothing_say_how_to_generate_load() -> None:
    counter, stacks = _lab("lab_process_counter"), _lab("lab_stack_traces")
    idle = counter["report"]({}, 10, "syscalls/sys_enter_openat")
    assert idle.splitlines()[-2:] == ["0 processes, 0 events", counter["IDLE_HINT"]]
    assert "--self-test" in counter["IDLE_HINT"] and "find /usr" in counter["IDLE_HINT"]
    assert stacks["report"]([], 5).splitlines()[-1] == stacks["IDLE_HINT"]
    assert counter["IDLE_HINT"] not in counter["report"]({os.getpid(): 3}, 10, "syscalls/sys_enter_openat")
