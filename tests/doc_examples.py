"""The Python examples of README.md and docs/: found, grouped and checked against the output they state.

Every fenced ```python block is an example. The line before a block may hold one marker:

* ``<!-- example: skip: WHY -->`` -- the block is not run; WHY (required) says what it needs that an example
  cannot have on its own (a compiled object file, a running program producing events...).
* ``<!-- example: continue -->`` -- the block runs in the same process as the previous block of the file,
  after it (it uses the names that block defined).
* ``<!-- example: requires: bloom-filter user-ringbuf -->`` -- map types (``create()`` keywords) the block
  needs; on a kernel that lacks one, a probe says so and the block is skipped with the type named.

Items combine with ``;``: ``<!-- example: continue; requires: bloom-filter -->``.

Lines of the form ``#> TEXT`` inside a block state what the block prints: when a block has any, its standard
output must be exactly those lines, in order. Other comments are commentary and are not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!--\s*example:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
# Printed between the blocks of one chain, so each block's output can be told apart.
SEPARATOR = "----- ebpfmaps doc example block boundary -----"


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None = None  # why, when the block is not run
    continues: bool = False
    requires: list[str] = field(default_factory=list)  # map type keywords

    @property
    def expected(self) -> list[str] | None:
        """The output the block states with ``#>`` lines, or None when it states none."""
        lines = [ln.strip() for ln in self.code.splitlines() if ln.strip().startswith("#>")]
        if not lines:
            return None
        return [_strip_one_space(ln[2:]) for ln in lines]

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _strip_one_space(text: str) -> str:
    return text[1:] if text.startswith(" ") else text


@dataclass
class Chain:
    """Blocks that run in one process, in order."""

    blocks: list[Block] = field(default_factory=list)

    @property
    def where(self) -> str:
        return self.blocks[0].where

    @property
    def requires(self) -> list[str]:
        return [kw for block in self.blocks for kw in block.requires]

    def script(self, bpffs: str) -> str:
        """One program: the blocks in order, separated by a printed boundary; pin paths moved into ``bpffs``."""
        parts = []
        for i, block in enumerate(self.blocks):
            if i:
                parts.append(f"print({SEPARATOR!r}, flush=True)")
            parts.append(block.code.replace("/sys/fs/bpf/", bpffs.rstrip("/") + "/"))
        return "\n".join(parts) + "\n"


def blocks_of(path: Path) -> list[Block]:
    """Every ```python block of a Markdown file, with its marker."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or m.group(2) == "":
            i += 1
            continue
        indent, lang = m.group(1), m.group(2)
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        if lang not in ("python", "py"):
            continue
        block = Block(path, start + 1, "\n".join(body) + "\n")
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        marker = MARKER.match(lines[prev].strip()) if prev >= 0 else None
        for item in marker.group(1).split(";") if marker else ():
            word, _, rest = item.strip().partition(":")
            if word == "skip":
                block.skip = rest.strip()
            elif word == "continue":
                block.continues = True
            elif word == "requires":
                block.requires += rest.split()
            else:
                raise ValueError(f"{block.where}: unknown example marker item {item.strip()!r}")
        found.append(block)
    return found


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def chains_of(path: Path) -> tuple[list[Chain], list[Block]]:
    """The runnable chains of a file, and its skipped blocks."""
    chains: list[Chain] = []
    skipped: list[Block] = []
    previous: Block | None = None
    for block in blocks_of(path):
        if block.skip is not None:
            skipped.append(block)
        elif block.continues:
            if previous is None or previous.skip is not None:
                raise ValueError(f"{block.where}: 'example: continue' needs a run block right before it")
            chains[-1].blocks.append(block)
        else:
            chains.append(Chain([block]))
        previous = block
    return chains, skipped
