"""Profile selection and the embedded profile's static pool, on the real kernel.

The pool is charged with each map's kernel memory; every charge is checked
against /proc/self/fdinfo (read here independently) and against bpftool's
``bytes_memlock`` for the same map id.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import pytest

import ebpfmaps
from ebpfmaps import StaticPool, features, profile
from ebpfmaps.errors import InvalidArgument, NotSupported, OutOfMemory
from ebpfmaps.maptypes import BPF_F_NO_PREALLOC
from ebpfmaps.pool import DEFAULT_POOL_SIZE, parse_size
from ebpfmaps.profile import estimate_memlock
from tests.conftest import bpftool_json
from tests.profile_helpers import embedded_pool, fdinfo_memlock, maps_named, retry_until, run, unique_name

# Map shapes the embedded profile accepts: (type, key_size, value_size, max_entries, extra kwargs).
SHAPES: list[tuple[str, int, int, int, dict[str, Any]]] = [
    ("array", 4, 4, 1, {}),
    ("array", 4, 8, 10, {}),
    ("array", 4, 24, 256, {}),
    ("array", 4, 8, 100, {"flags": ebpfmaps.BPF_F_MMAPABLE}),
    ("percpu-array", 4, 8, 100, {}),
    ("hash", 4, 8, 100, {}),
    ("hash", 16, 64, 100, {}),
    ("percpu-hash", 4, 8, 100, {}),
    ("queue", 0, 8, 100, {}),
    ("ringbuf", 0, 0, 4096, {}),
]


def _shape_id(shape: tuple[str, int, int, int, dict[str, Any]]) -> str:
    t, k, v, n, kw = shape
    return f"{t}-{k}x{v}x{n}" + ("-flags" if kw else "")


# ---------------------------------------------------------------------------------------- selection
@pytest.mark.no_kernel
def test_default_profile_is_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EBPFMAPS_PROFILE", raising=False)
    profile.use(None)
    assert profile.active() == "cloud"


@pytest.mark.no_kernel
def test_env_selects_profile_and_use_overrides_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EBPFMAPS_PROFILE", "Embedded")
    assert profile.active() == "embedded"
    profile.use("cloud")
    try:
        assert profile.active() == "cloud"
    finally:
        profile.use(None)
    assert profile.active() == "embedded"
    monkeypatch.setenv("EBPFMAPS_PROFILE", "tiny")
    with pytest.raises(InvalidArgument, match=r"EBPFMAPS_PROFILE.*'tiny'"):
        profile.active()
    with pytest.raises(InvalidArgument, match="unknown profile"):
        profile.use("desktop")


def test_profile_from_environment_in_a_fresh_process() -> None:
    code = "import ebpfmaps; print(ebpfmaps.profile.active(), ebpfmaps.StaticPool.total_size())"
    out = run(["-c", code], EBPFMAPS_PROFILE="embedded", EBPFMAPS_POOL_SIZE="128K")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["embedded", "131072"]
    out = run(["-c", code])
    assert out.stdout.split() == ["cloud", str(DEFAULT_POOL_SIZE)]
    bad = run(["-c", code], EBPFMAPS_POOL_SIZE="lots")
    assert bad.returncode != 0 and "EBPFMAPS_POOL_SIZE" in bad.stderr


@pytest.mark.no_kernel
def test_parse_size() -> None:
    assert parse_size("65536") == 65536
    assert parse_size("64K") == parse_size("64KiB") == parse_size("64kb") == 65536
    assert parse_size("1M") == 1 << 20
    with pytest.raises(InvalidArgument):
        parse_size("64 bananas")


# ---------------------------------------------------------------------------------------- accounting
@pytest.mark.parametrize("shape", SHAPES, ids=_shape_id)
def test_pool_is_charged_with_fdinfo_memlock(shape: tuple[str, int, int, int, dict[str, Any]]) -> None:
    kind, key_size, value_size, max_entries, kwargs = shape
    with embedded_pool():
        m = ebpfmaps.create(kind, key_size=key_size, value_size=value_size, max_entries=max_entries,
                            name=unique_name(), **kwargs)
        with m:
            memlock = fdinfo_memlock(m.fd)
            assert StaticPool.used() == memlock
            assert StaticPool.remaining() == DEFAULT_POOL_SIZE - memlock
            shown = bpftool_json("map", "show", "id", str(m.id))
            assert isinstance(shown, dict)
            assert shown["bytes_memlock"] == memlock  # bpftool reads the same kernel number
            (alloc,) = StaticPool.allocations()
            assert (alloc.offset, alloc.size, alloc.map_id) == (0, memlock, m.id)
            # The pre-syscall estimate is a true lower bound, so it never refuses a map that fits.
            from ebpfmaps.features import memlock_tracks_usage

            if not memlock_tracks_usage():
                pytest.skip("charged as the kernel reports; its memlock is a size formula (0 for a ring buffer), "
                            "not live usage, so the estimate cannot be checked as its lower bound (probe)")
            assert 0 < estimate_memlock(m.spec) <= memlock


def test_charges_accumulate_and_closing_returns_nothing() -> None:
    with embedded_pool():
        charged = []
        for shape in SHAPES[:6]:
            kind, key_size, value_size, max_entries, kwargs = shape
            m = ebpfmaps.create(kind, key_size=key_size, value_size=value_size, max_entries=max_entries, **kwargs)
            charged.append(fdinfo_memlock(m.fd))
            m.close()
            # A bump allocator: the bytes stay charged after the map is gone.
            assert StaticPool.used() == sum(charged)
        offsets = [a.offset for a in StaticPool.allocations()]
        assert offsets == [sum(charged[:i]) for i in range(len(charged))]
        assert StaticPool.remaining() == DEFAULT_POOL_SIZE - sum(charged)
        StaticPool.reset()
        assert StaticPool.remaining() == StaticPool.total_size() == DEFAULT_POOL_SIZE
        assert StaticPool.allocations() == []


def test_concurrent_creation_is_charged_exactly() -> None:
    made: list[ebpfmaps.Map] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(4):
            m = ebpfmaps.ArrayMap.with_entries(value_size=8, max_entries=50)
            with lock:
                made.append(m)

    with embedded_pool():
        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(made) == 16
        assert StaticPool.used() == sum(fdinfo_memlock(m.fd) for m in made)
        assert sorted(a.map_id or 0 for a in StaticPool.allocations()) == sorted(m.id for m in made)
        for m in made:
            m.close()


def test_opened_maps_are_not_charged_again(pin_path: Any) -> None:
    with ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=64) as m:
        m.pin(pin_path)
        with embedded_pool():
            with ebpfmaps.open_pinned(pin_path) as other:
                assert other.id == m.id
            assert StaticPool.used() == 0  # its creator (in the cloud profile) paid for it


@pytest.mark.no_kernel
def test_allocate_api_like_the_seed() -> None:
    with embedded_pool(4096):
        assert StaticPool.allocate(1024) == 0
        assert StaticPool.allocate(1000) == 1024
        assert StaticPool.allocate(4096) is None  # does not fit: nothing taken
        assert StaticPool.remaining() == 4096 - 2024
        with pytest.raises(InvalidArgument, match="in use"):
            StaticPool.configure(1000)
        StaticPool.configure(8192)
        assert StaticPool.remaining() == 8192 - 2024
        with pytest.raises(InvalidArgument):
            StaticPool.allocate(-1)
        StaticPool.reset()
        assert StaticPool.remaining() == 8192


# ---------------------------------------------------------------------------------------- refusals
def test_map_that_does_not_fit_is_refused_and_gone() -> None:
    """The estimate passes (only element storage) but the real memlock does not: created, measured, closed."""
    name = unique_name("pfoom")
    spec: dict[str, Any] = dict(key_size=4, value_size=8, max_entries=100)
    with ebpfmaps.HashMap(**spec) as probe:  # cloud: learn the real cost of this shape
        cost = fdinfo_memlock(probe.fd)
    estimate = 100 * (8 + 8)
    assert estimate < cost
    with embedded_pool(cost - 1):
        ids_before = set(ebpfmaps.map_ids())
        if features.memlock_tracks_usage():
            with pytest.raises(OutOfMemory, match="static pool exhausted") as info:
                ebpfmaps.HashMap(**spec, name=name)
            assert info.value.op == "pool"
        else:
            # memlock is a size formula here: where the pre-check computes it exactly (6.x) the map is refused
            # up front, where the kernel's formula counts more (5.x) it is created, charged, refused and closed.
            with pytest.raises(OutOfMemory, match=r"refused before creating it|static pool exhausted"):
                ebpfmaps.HashMap(**spec, name=name)
        assert StaticPool.used() == 0  # a refusal takes nothing
        assert maps_named(name) == []  # the map was closed before the error reached us
        new_ids = set(ebpfmaps.map_ids()) - ids_before
        # Other helpers create maps concurrently: none of the new ones may be ours.
        assert not [i for i in ebpfmaps.list_maps() if i.id in new_ids and i.name == name]

        # The global map count is back where it was (retry: other processes create maps too).
        def count_unchanged() -> bool:
            before = len(ebpfmaps.map_ids())
            try:
                ebpfmaps.HashMap(**spec, name=name)
            except OutOfMemory:
                pass
            return len(ebpfmaps.map_ids()) == before

        assert retry_until(count_unchanged)


def test_obviously_too_big_map_is_refused_before_the_syscall() -> None:
    name = unique_name("pfbig")
    with embedded_pool():
        with pytest.raises(OutOfMemory, match="refused before creating it") as info:
            ebpfmaps.ArrayMap.with_entries(value_size=8, max_entries=100_000, name=name)
        assert info.value.errno is None and info.value.op == "create"
        with pytest.raises(OutOfMemory, match="refused before"):
            ebpfmaps.create("percpu-hash", key_size=8, value_size=64, max_entries=1000)
        assert StaticPool.used() == 0
        assert maps_named(name) == []


@pytest.mark.parametrize("kind", ["lru-hash", "lru-percpu-hash"])
def test_lru_refused_in_embedded_and_allowed_in_cloud(kind: str) -> None:
    name = unique_name("pflru")
    with embedded_pool():
        with pytest.raises(NotSupported, match="LRU maps are cloud-only") as info:
            ebpfmaps.create(kind, key_size=4, value_size=8, max_entries=16, name=name)
        assert info.value.errno is None  # refused before the syscall
        with pytest.raises(NotSupported):
            ebpfmaps.LruHashMap(key_size=4, value_size=8, max_entries=16)
        assert StaticPool.used() == 0
        assert maps_named(name) == []
    with ebpfmaps.create(kind, key_size=4, value_size=8, max_entries=16, name=name) as m:
        assert m.info().type_name == kind


def test_no_prealloc_refused_in_embedded() -> None:
    with embedded_pool():
        with pytest.raises(NotSupported, match="BPF_F_NO_PREALLOC"):
            ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=16, flags=BPF_F_NO_PREALLOC)


# ---------------------------------------------------------------------------------------- resize presence
RESIZABLE = [ebpfmaps.HashMap, ebpfmaps.PerCpuHashMap, ebpfmaps.ArrayMap, ebpfmaps.PerCpuArrayMap]


@pytest.mark.parametrize("cls", RESIZABLE, ids=lambda c: c.__name__)
def test_resize_attribute_exists_only_in_cloud(cls: type[ebpfmaps.Map]) -> None:
    with embedded_pool():
        m = cls(key_size=4, value_type=ctypes.c_uint64, max_entries=8)
        assert not hasattr(m, "resize")
        assert not hasattr(cls, "resize")
        with pytest.raises(AttributeError, match="no attribute 'resize'"):
            m.resize(16)  # type: ignore[attr-defined]
        with profile.using("cloud"):
            # The attribute follows the active profile on every lookup.
            assert hasattr(m, "resize") and callable(getattr(m, "resize"))  # noqa: B009
        assert not hasattr(m, "resize")
        m.close()
    with cls(key_size=4, value_type=ctypes.c_uint64, max_entries=8) as m2:
        assert hasattr(m2, "resize")
        assert hasattr(ebpfmaps.LruHashMap(key_size=4, value_size=8, max_entries=8), "resize")


def test_embedded_profile_in_a_fresh_process() -> None:
    code = """
import ctypes, ebpfmaps
from ebpfmaps.fdinfo import memlock
from ebpfmaps.errors import NotSupported
m = ebpfmaps.ArrayMap.with_entries(value_size=8, max_entries=100)
assert ebpfmaps.StaticPool.used() == memlock(m.fd), (ebpfmaps.StaticPool.used(), memlock(m.fd))
assert not hasattr(m, "resize")
try:
    ebpfmaps.LruHashMap(key_size=4, value_size=4, max_entries=4)
except NotSupported:
    print("lru refused")
print(ebpfmaps.profile.active(), ebpfmaps.StaticPool.remaining())
"""
    out = run(["-c", code], EBPFMAPS_PROFILE="embedded", EBPFMAPS_POOL_SIZE="32K")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "lru refused"
    prof, remaining = lines[1].split()
    assert prof == "embedded" and 0 < int(remaining) < 32 * 1024


def test_summary_names_the_profile() -> None:
    with profile.using("cloud"):
        assert profile.summary().startswith("cloud")
    with embedded_pool():
        m = ebpfmaps.ArrayMap.with_entries(value_size=8, max_entries=4)
        assert profile.summary().startswith(f"embedded: static pool {fdinfo_memlock(m.fd)} of {DEFAULT_POOL_SIZE}")
        m.close()
