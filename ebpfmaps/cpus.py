"""CPU counts that size per-CPU values: the *possible* CPUs, not the online ones."""

from __future__ import annotations

import functools

from ebpfmaps._libbpf import maps as _maps


def parse_cpu_list(text: str) -> list[int]:
    """``"0-3,5"`` -> ``[0, 1, 2, 3, 5]`` (the format of /sys/devices/system/cpu/*)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-")
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


@functools.lru_cache(maxsize=1)
def possible_cpus() -> int:
    """How many CPUs the kernel sizes per-CPU map values for (libbpf_num_possible_cpus)."""
    return _maps.num_possible_cpus()


def online_cpus() -> list[int]:
    with open("/sys/devices/system/cpu/online") as f:
        return parse_cpu_list(f.read())
