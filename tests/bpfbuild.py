"""Build the tests' BPF C programs (tests/bpf/*.bpf.c, clang) and C helpers (tests/c/*.c, gcc) on demand.

Outputs are cached by a hash of the source, the compiler's version and the flags, in a per-user
directory under the system temp dir, so repeated test runs (and several test processes at once)
compile each source once. Each build writes to a temporary name and renames it into place, so a
concurrent reader never sees half a file.

    from tests.bpfbuild import bpf_object, c_program
    obj_path = bpf_object("prog_counter")          # tests/bpf/prog_counter.bpf.c -> .../prog_counter-<hash>.o
    exe = c_program("prog_loader", libs=["bpf"])   # tests/c/prog_loader.c -> executable
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BPF_DIR = HERE / "bpf"
C_DIR = HERE / "c"
# Debian keeps asm/types.h under the multiarch include dir, which clang -target bpf does not search.
MULTIARCH_INCLUDE = "/usr/include/x86_64-linux-gnu"
BPF_CFLAGS = ["-O2", "-g", "-target", "bpf", "-Wall", f"-I{MULTIARCH_INCLUDE}"]


class BuildError(AssertionError):
    """A compiler refused a test source (shown with its diagnostics)."""


def cache_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"ebpfmaps-build-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    return d


@functools.cache
def _tool_version(tool: str) -> str:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0] if out.stdout else tool


def _find(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        raise BuildError(f"{tool} is required to build the test programs (make setup installs it)")
    return exe


def _build(tool: str, src: Path, suffix: str, args: list[str], post: tuple[str, ...] = ()) -> Path:
    """Run ``tool args... -o OUT src post...`` unless a cached OUT for these exact inputs exists."""
    exe = _find(tool)
    if not src.is_file():
        raise BuildError(f"no such source: {src}")
    key = hashlib.sha256()
    key.update(src.read_bytes())
    key.update("\0".join([_tool_version(exe), *args, *post]).encode())
    out = cache_dir() / f"{src.name.split('.')[0]}-{key.hexdigest()[:16]}{suffix}"
    if out.exists():
        return out
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    proc = subprocess.run([exe, *args, "-o", str(tmp), str(src), *post], capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"{tool} failed on {src}:\n{proc.stderr}")
    os.replace(tmp, out)
    return out


def bpf_object(name: str, *, defines: dict[str, str] | None = None) -> Path:
    """Compile ``tests/bpf/NAME.bpf.c`` (or a path) with clang -target bpf; returns the .o path."""
    src = Path(name) if os.sep in name else BPF_DIR / f"{name}.bpf.c"
    extra = [f"-D{k}={v}" for k, v in sorted((defines or {}).items())]
    return _build("clang", src, ".bpf.o", [*BPF_CFLAGS, *extra, "-c"])


def c_program(name: str, *, libs: tuple[str, ...] | list[str] = ()) -> Path:
    """Compile ``tests/c/NAME.c`` (or a path) with gcc, linking ``-lLIB`` for each of ``libs``."""
    src = Path(name) if os.sep in name else C_DIR / f"{name}.c"
    # Libraries follow the source: the linker resolves a file's symbols from libraries named after it.
    return _build("gcc", src, "", ["-O2", "-Wall"], tuple(f"-l{lib}" for lib in libs))
