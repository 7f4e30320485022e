"""Shared pieces of the attach tests: a veth pair, raw frames, a cgroup v2 directory, processes run inside it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator

import pytest

from ebpfmaps.pinning import mounts

ETH_P_EXPERIMENTAL = 0x88B5  # IEEE 802 local experimental ethertype: no stack on either end reacts to it


@pytest.fixture
def veth_pair() -> Iterator[tuple[str, str]]:
    """Two ends of a fresh veth pair in this network namespace, both up."""
    pyroute2 = pytest.importorskip("pyroute2")
    tag = uuid.uuid4().hex[:6]
    a, b = f"ebpfm{tag}a", f"ebpfm{tag}b"
    with pyroute2.IPRoute() as ipr:
        ipr.link("add", ifname=a, kind="veth", peer=b)
        try:
            for name in (a, b):
                ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
            yield a, b
        finally:
            idx = ipr.link_lookup(ifname=a)
            if idx:
                ipr.link("del", index=idx[0])


def send_frames(ifname: str, count: int) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + ETH_P_EXPERIMENTAL.to_bytes(2, "big") + b"\0" * 50
        for _ in range(count):
            s.send(frame)


@pytest.fixture
def cgroup() -> Iterator[str]:
    """A fresh cgroup v2 directory (in the mounted cgroup2 hierarchy, or a private mount of it)."""
    root = next((m.mount_point for m in mounts() if m.fstype == "cgroup2"), None)
    private = None
    if root is None:
        private = tempfile.mkdtemp(prefix="ebpfmaps-cg2-")
        subprocess.run(["mount", "-t", "cgroup2", "none", private], check=True)
        root = private
    path = os.path.join(root, f"ebpfm_{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        os.rmdir(path)
        if private is not None:
            subprocess.run(["umount", private], check=True)
            os.rmdir(private)


def run_in_cgroup(path: str, code: str) -> str:
    def enter() -> None:
        with open(os.path.join(path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    proc = subprocess.run([sys.executable, "-c", code], preexec_fn=enter, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
