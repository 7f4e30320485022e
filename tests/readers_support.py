"""Helpers for the reader, XDP and bcc tests: build the BPF C sources in tests/bpf and load them.

Objects are compiled by clang at test time (DESIGN §5 gives the command line) into
tests/bpf/*.o, atomically, so concurrent test processes never see half-written files.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BPF_DIR = ROOT / "tests" / "bpf"
CLANG_ARGS = ["-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-Wall", "-Werror"]


def build_bpf(name: str) -> Path:
    """Compile tests/bpf/NAME.bpf.c into tests/bpf/NAME.o unless the object is up to date."""
    src = BPF_DIR / f"{name}.bpf.c"
    obj = BPF_DIR / f"{name}.o"
    if obj.exists() and obj.stat().st_mtime >= src.stat().st_mtime:
        return obj
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".o", dir=BPF_DIR)
    os.close(fd)
    try:
        proc = subprocess.run(["clang", *CLANG_ARGS, "-c", str(src), "-o", tmp], capture_output=True, text=True)
        if proc.returncode != 0:
            raise AssertionError(f"clang failed on {src}:\n{proc.stderr}")
        os.replace(tmp, obj)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return obj


def load_object(name: str, maps: dict[str, Any] | None = None) -> Any:
    """Open and load tests/bpf/NAME.bpf.c with ebpfmaps.programs.BpfObject, reusing ``maps`` by name.

    Returns the loaded BpfObject (close it, or use it as a context manager).
    """
    from ebpfmaps.programs import BpfObject

    obj = BpfObject.open(str(build_bpf(name)), reuse=dict(maps or {}))
    try:
        obj.load()
    except BaseException:
        obj.close()
        raise
    return obj


class Loaded:
    """Programs of a loaded object by name, plus whatever must stay alive with them."""

    def __init__(self, programs: dict[str, Any], owner: Any = None) -> None:
        self.programs = programs
        self._owner = owner

    def __getitem__(self, name: str) -> Any:
        return self.programs[name]

    def close(self) -> None:
        for prog in self.programs.values():
            prog.close()
        if self._owner is not None:
            self._owner.close()

    def __enter__(self) -> Loaded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_programs(name: str, bpffs: Path, maps: dict[str, Any] | None = None) -> Loaded:
    """Load tests/bpf/NAME.bpf.c with its maps replaced by ``maps`` (ebpfmaps Maps, by map name)."""
    try:
        from ebpfmaps.programs import BpfObject
    except ImportError:
        BpfObject = None
    if BpfObject is not None:
        obj = load_object(name, maps)
        return Loaded(dict(obj.programs), obj)
    # Interim path while ebpfmaps.programs.BpfObject is being written: bpftool loads, ebpfmaps runs.
    from ebpfmaps.programs.program import Program

    obj_path = build_bpf(name)
    prog_dir = bpffs / f"progs_{name}_{os.getpid()}"
    args = ["bpftool", "prog", "loadall", str(obj_path), str(prog_dir)]
    for map_name, m in (maps or {}).items():
        pin = bpffs / f"map_{map_name}_{os.getpid()}_{id(m)}"
        if not pin.exists():
            m.pin(str(pin))
        args += ["map", "name", map_name, "pinned", str(pin)]
    subprocess.run(args, check=True, capture_output=True, text=True)
    progs = {p.name: Program.open_pinned(p) for p in prog_dir.iterdir()}
    return Loaded(progs)
