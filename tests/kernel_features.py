"""Skips for features the running kernel lacks, each found by a probe of ``ebpfmaps.features`` and named.

Tests call these at their start (or from a fixture): on a kernel that has the feature they do nothing,
elsewhere the test is skipped with the feature's name. Never a version number.
"""

from __future__ import annotations

import errno
import functools

import pytest

import ebpfmaps
from ebpfmaps import BPF_ANY, BPF_EXIST, features
from ebpfmaps.errors import KeyNotFound, MapError
from ebpfmaps.maptypes import MapType


def require_map_type(map_type: MapType) -> None:
    if not features.map_type_supported(map_type):
        pytest.skip(f"the running kernel lacks {map_type.keyword} maps (probe)")


def require_helper(helper: str, prog_type: str = "xdp") -> None:
    if not features.helper_supported(helper, prog_type):
        pytest.skip(f"the running kernel lacks the bpf_{helper} helper for {prog_type} programs (probe)")


def require_atomic_fetch() -> None:
    if not features.atomic_fetch_supported():
        pytest.skip("the running kernel lacks BPF atomic fetch operations (probe)")


def require_lookup_and_delete(map_type: MapType) -> None:
    if not features.lookup_and_delete_supported(map_type):
        pytest.skip(f"the running kernel lacks lookup_and_delete on {map_type.keyword} maps (probe)")


def require_batch_ops(map_type: MapType) -> None:
    if not features.batch_ops_supported(map_type):
        pytest.skip(f"the running kernel lacks batch operations on {map_type.keyword} maps (probe)")


def require_perf_event_link() -> None:
    if not features.perf_event_link_supported():
        pytest.skip("the running kernel lacks perf-event BPF links (probe)")


@functools.cache
def lpm_update_flags_honoured() -> bool:
    """Probe: does the running kernel apply BPF_EXIST to LPM tries (ENOENT on an empty trie)?

    Kernels without the LPM trie fixes of early 2025 ignore BPF_EXIST/BPF_NOEXIST there.
    """
    with ebpfmaps.LpmTrieMap(data_size=4, value_size=4, max_entries=1) as m:
        try:
            m.update((32, bytes(4)), bytes(4), BPF_EXIST)
        except KeyNotFound:
            return True
        return False


@functools.cache
def lpm_full_inplace_update() -> bool:
    """Probe: can an element of a full LPM trie be overwritten? Kernels before the same fixes answer ENOSPC."""
    with ebpfmaps.LpmTrieMap(data_size=4, value_size=4, max_entries=1) as m:
        m.update((32, bytes(4)), bytes(4), BPF_ANY)
        try:
            m.update((32, bytes(4)), bytes(4), BPF_ANY)
        except MapError as exc:
            if exc.errno == errno.ENOSPC:
                return False
            raise
        return True


def require_kprobes() -> None:
    if not features.kprobes_supported():
        pytest.skip("the running kernel lacks kprobes (probe: no kprobe PMU; CONFIG_KPROBES off)")


def require_uprobes() -> None:
    if not features.uprobes_supported():
        pytest.skip("the running kernel lacks uprobes (probe: no uprobe PMU; CONFIG_UPROBE_EVENTS off)")


def require_tracing_trampolines() -> None:
    if not features.tracing_trampolines_supported():
        lockdown = features.kernel_lockdown()
        why = f"; the kernel is under lockdown={lockdown}" if lockdown not in ("", "none") else ""
        pytest.skip(f"the running kernel loads no fentry/fexit/LSM programs on BPF trampolines (probe{why})")


def require_bpf_lsm() -> None:
    require_tracing_trampolines()
    if not features.bpf_lsm_enabled():
        pytest.skip("the running kernel does not run BPF LSM programs (probe: 'bpf' is not in the active LSMs)")
