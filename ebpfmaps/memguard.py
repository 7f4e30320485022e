"""Refusing a map the machine cannot hold, before the kernel tries to allocate it.

The kernel allocates a preallocated map in full at creation: a per-CPU array of
32 KiB values and a million entries asks for 32 GiB per possible CPU. Such a
request does not fail politely: it can push the machine (or the memory cgroup)
into the OOM killer, which kills unrelated processes. :func:`check` compares an
estimate of what the kernel will allocate (:meth:`MapType.memlock_estimate`, a
lower bound: headers and locks come on top) with the memory available to this
process, and raises :class:`~ebpfmaps.errors.OutOfMemory` when it does not fit:

- ``MemAvailable`` from ``/proc/meminfo``;
- the memory cgroup of this process when it sets a lower limit: for cgroup v2,
  ``memory.max`` minus ``memory.current``; for cgroup v1, ``memory.limit_in_bytes``
  minus ``memory.usage_in_bytes``; taken at every level from the process's cgroup
  up to the hierarchy's root, since each ancestor's limit applies too.

Creating with ``allow_overcommit=True`` (``MapSpec.allow_overcommit``) skips the check, and so
does an estimate under :data:`MIN_CHECKED` (1 MiB), so small maps cost no extra reads.
"""

from __future__ import annotations

import os
from collections import namedtuple

from ebpfmaps.cpus import possible_cpus
from ebpfmaps.errors import OutOfMemory
from ebpfmaps.maptypes import map_type_of, type_name
from ebpfmaps.pinning import unescape_mountinfo

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import NamedTuple

    from ebpfmaps.spec import MapSpec

MEMINFO = "/proc/meminfo"
# Maps estimated below this are not checked: they cannot take a machine down, and reading the
# memory figures would cost more than creating them.
MIN_CHECKED = 1 << 20
_U32_MAX = 0xFFFFFFFF
# cgroup v1 reports "no limit" as a huge page-aligned number (PAGE_COUNTER_MAX pages).
_NO_LIMIT = 1 << 62


if TYPE_CHECKING:
    class Available(NamedTuple):
        """Memory a new map may take: ``bytes``, and where the figure comes from (``source``)."""

        bytes: int
        source: str
else:
    Available = namedtuple("Available", ["bytes", "source"])  # typing's NamedTuple needs typing


def format_bytes(n: int) -> str:
    """``n`` bytes in a readable unit, with the exact count: ``"32.0 GiB (34359738368 bytes)"``."""
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit} ({n} bytes)"
        value /= 1024
    return f"{value:.1f} TiB ({n} bytes)"


def mem_available(path: str = MEMINFO) -> int | None:
    """``MemAvailable`` in bytes (None when the kernel does not report it)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _read_int(path: str) -> int | None:
    """An integer file of a cgroup (``max`` reads as no limit: None)."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return None if value >= _NO_LIMIT else value


def _mountinfo() -> list[tuple[str, str, str, str]]:
    """``(root, mount point, fstype, super options)`` of each mount this process sees."""
    out: list[tuple[str, str, str, str]] = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields, rfields = left.split(), right.split()
                if len(fields) >= 5 and len(rfields) >= 3:
                    out.append((unescape_mountinfo(fields[3]), unescape_mountinfo(fields[4]), rfields[0], rfields[2]))
    except OSError:
        pass
    return out


def _memory_cgroup() -> tuple[str, str, str] | None:
    """``(version, directory, mount point)`` of this process's memory cgroup (version ``"v1"`` or ``"v2"``).

    Finding the directory means reading the mount table, so the answer is kept for as long as
    ``/proc/self/cgroup`` reads the same (a process moved to another cgroup reads differently).
    """
    try:
        with open("/proc/self/cgroup") as f:
            text = f.read()
    except OSError:
        return None
    cached = _cgroup_cache.get(text)
    if cached is not None and os.path.isdir(cached[1]):
        return cached
    found = _find_memory_cgroup(text.splitlines())
    _cgroup_cache.clear()
    if found is not None:
        _cgroup_cache[text] = found
    return found


_cgroup_cache: dict[str, tuple[str, str, str]] = {}


def _find_memory_cgroup(lines: list[str]) -> tuple[str, str, str] | None:
    v1_path: str | None = None
    v2_path: str | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, where = parts
        if hid == "0" and controllers == "":
            v2_path = where
        elif "memory" in controllers.split(","):
            v1_path = where
    # The memory controller is on a v1 hierarchy when one names it, else on the unified (v2) one.
    version, path = ("v1", v1_path) if v1_path is not None else ("v2", v2_path)
    if path is None:
        return None
    for root, point, fstype, options in _mountinfo():
        if (fstype == "cgroup" and "memory" in options.split(",")) if version == "v1" else fstype == "cgroup2":
            found = _join(point, root, path)
            if found is not None:
                return version, found, point
    return None


def _join(point: str, root: str, path: str) -> str | None:
    """The directory of cgroup ``path`` under a mount of the hierarchy at ``point`` whose root is ``root``."""
    root = root.rstrip("/")
    if root and not (path == root or path.startswith(root + "/")):
        return None
    rel = path[len(root):].lstrip("/")
    d = os.path.join(point, rel) if rel else point
    return d if os.path.isdir(d) else None


def cgroup_available() -> Available | None:
    """What this process's memory cgroup still allows (its tightest level), None when nothing limits it."""
    found = _memory_cgroup()
    if found is None:
        return None
    version, directory, top = found
    limit_file, usage_file = ("memory.max", "memory.current") if version == "v2" else \
        ("memory.limit_in_bytes", "memory.usage_in_bytes")
    best: Available | None = None
    d = directory
    while True:
        limit = _read_int(os.path.join(d, limit_file))  # absent where the controller is not enabled
        if limit is not None:
            usage = _read_int(os.path.join(d, usage_file)) or 0
            left = max(limit - usage, 0)
            if best is None or left < best.bytes:
                best = Available(left, f"cgroup {version} {d}: {limit_file} {format_bytes(limit)} minus "
                                       f"{usage_file} {format_bytes(usage)}")
        if d.rstrip("/") == top.rstrip("/") or not d.startswith(top):
            return best
        d = os.path.dirname(d)


def available() -> Available | None:
    """The memory a new map may take now: MemAvailable, or the cgroup's room when that is lower."""
    mem = mem_available()
    best = Available(mem, f"MemAvailable in {MEMINFO}") if mem is not None else None
    cg = cgroup_available()
    if cg is not None and (best is None or cg.bytes < best.bytes):
        best = cg
    return best


def estimate(spec: MapSpec) -> int:
    """A lower bound of what the kernel allocates to create ``spec`` (see :meth:`MapType.memlock_estimate`)."""
    t = map_type_of(spec.type)
    if t is None:
        return 0
    return t.memlock_estimate(spec.key_size, spec.value_size, spec.max_entries, spec.flags, possible_cpus(),
                              spec.map_extra)


def check(spec: MapSpec) -> None:
    """Raise :class:`OutOfMemory` when ``spec``'s estimate exceeds the memory available (see the module docs)."""
    if spec.allow_overcommit:
        return
    if not all(0 <= v <= _U32_MAX for v in (spec.key_size, spec.value_size, spec.max_entries)):
        return  # not a map the kernel could be asked for: the syscall layer's range checks say why
    need = estimate(spec)
    if need < MIN_CHECKED:
        return
    room = available()
    if room is None or need <= room.bytes:
        return
    per_cpu = ""
    t = map_type_of(spec.type)
    if t is not None and t.is_per_cpu:
        per_cpu = f" ({possible_cpus()} possible CPUs, one value each)"
    raise OutOfMemory(
        f"create: {type_name(spec.type)} map of {spec.max_entries} entries x {spec.value_size}-byte values"
        f"{per_cpu} needs at least {format_bytes(need)} of kernel memory (an estimate, a lower bound), more than "
        f"the {format_bytes(room.bytes)} available ({room.source}); refused before creating it. "
        f"Pass allow_overcommit=True to create it anyway",
        op="create",
    )
