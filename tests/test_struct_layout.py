"""Every ctypes struct in ebpfmaps._libbpf.structs matches the installed C headers.

A C program generated from CHECKED_STRUCTS is compiled with gcc against the
system's <bpf/bpf.h>/<bpf/libbpf.h>/<linux/bpf.h> and prints sizeof and the
offsetof of every named field; the ctypes layout must agree. A wrong offset
here would mean libbpf reading our opts at the wrong place, silently.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from ebpfmaps._libbpf.structs import CHECKED_STRUCTS

pytestmark = pytest.mark.no_kernel


def _named_fields(cls: type[ctypes.Structure]) -> list[str]:
    # Fields starting with "_" stand for unnamed C members or padding: no offsetof exists for them.
    return [f[0] for f in cls._fields_ if not f[0].startswith("_")]


def _c_source() -> str:
    lines = [
        "#include <stddef.h>",
        "#include <stdio.h>",
        "#include <linux/bpf.h>",
        "#include <bpf/bpf.h>",
        "#include <bpf/libbpf.h>",
        "int main(void) {",
    ]
    for cname, cls in CHECKED_STRUCTS:
        lines.append(f'  printf("{cname} sizeof %zu\\n", sizeof(struct {cname}));')
        for field in _named_fields(cls):
            lines.append(f'  printf("{cname} {field} %zu\\n", offsetof(struct {cname}, {field}));')
    lines += ["  return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], int]:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.fail("gcc is required to check struct layouts (Makefile installs it)")
    d: Path = tmp_path_factory.mktemp("layout")
    src = d / "layout.c"
    exe = d / "layout"
    src.write_text(_c_source())
    build = subprocess.run([gcc, "-Wall", "-o", str(exe), str(src)], capture_output=True, text=True)
    assert build.returncode == 0, f"layout program failed to compile:\n{build.stderr}"
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    table: dict[tuple[str, str], int] = {}
    for line in out.splitlines():
        struct_name, field, number = line.split()
        table[(struct_name, field)] = int(number)
    return table


@pytest.mark.parametrize("cname,cls", CHECKED_STRUCTS, ids=[c for c, _ in CHECKED_STRUCTS])
def test_struct_matches_header(c_layout: dict[tuple[str, str], int], cname: str, cls: type[ctypes.Structure]) -> None:
    assert ctypes.sizeof(cls) == c_layout[(cname, "sizeof")], f"sizeof(struct {cname})"
    mismatches = []
    for field in _named_fields(cls):
        ours = getattr(cls, field).offset
        theirs = c_layout[(cname, field)]
        if ours != theirs:
            mismatches.append(f"{field}: ctypes {ours}, C {theirs}")
    assert not mismatches, f"struct {cname}: " + "; ".join(mismatches)


def test_every_checked_struct_is_a_structure() -> None:
    names = [c for c, _ in CHECKED_STRUCTS]
    assert len(names) == len(set(names))
    for _, cls in CHECKED_STRUCTS:
        assert issubclass(cls, ctypes.Structure)


def test_opts_structs_start_with_sz() -> None:
    # libbpf reads `sz` first in every *_opts struct to know how much of the struct the caller knows.
    for cname, cls in CHECKED_STRUCTS:
        if cname.endswith("_opts"):
            assert cls._fields_[0][0] == "sz" and cls.sz.offset == 0, cname
