"""Every Python example of README.md and docs/ runs on the real kernel and prints what the text says it prints.

Each example (or chain of examples marked ``continue``) runs in a fresh interpreter, so a provider registered or a
profile chosen by one cannot leak into another. Pin paths under /sys/fs/bpf/ are moved into a private bpffs
mounted for the test, so runs of the suite in parallel never share a pin. Blocks marked ``skip`` must say why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ebpfmaps.maptypes import MapType, parse_map_type
from tests.doc_examples import ROOT, SEPARATOR, Chain, chains_of, markdown_files
from tests.kernel_features import require_map_type

CHAINS: list[Chain] = []
SKIPPED = []
for _path in markdown_files():
    _chains, _skipped = chains_of(_path)
    CHAINS += _chains
    SKIPPED += _skipped


def test_the_docs_have_examples() -> None:
    assert len(CHAINS) >= 20, [c.where for c in CHAINS]
    assert {c.blocks[0].path.name for c in CHAINS} >= {"README.md", "getting-started.md", "ring-buffers.md"}


@pytest.mark.no_kernel
@pytest.mark.parametrize("block", SKIPPED, ids=[b.where for b in SKIPPED])
def test_a_skipped_example_says_why(block: object) -> None:
    reason = getattr(block, "skip", "")
    assert reason and len(reason.split()) >= 3, f"{getattr(block, 'where', '')}: 'example: skip' needs a reason"


@pytest.mark.parametrize("chain", CHAINS, ids=[c.where for c in CHAINS])
def test_example_runs(chain: Chain, bpffs: Path, tmp_path: Path) -> None:
    for keyword in chain.requires:
        require_map_type(MapType(parse_map_type(keyword)))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("EBPFMAPS_PROFILE", None)
    out = subprocess.run([sys.executable, "-c", chain.script(str(bpffs))], capture_output=True, text=True,
                         cwd=tmp_path, env=env, timeout=300)
    assert out.returncode == 0, f"{chain.where} failed:\n{out.stdout}\n{out.stderr}"
    outputs = out.stdout.split(SEPARATOR + "\n")
    assert len(outputs) == len(chain.blocks), out.stdout
    for block, printed in zip(chain.blocks, outputs):
        if block.expected is not None:
            assert printed.splitlines() == block.expected, f"{block.where} printed:\n{printed}"
