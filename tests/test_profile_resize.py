"""``resize`` by migration in the cloud profile, on the real kernel.

Every resize is checked by reading the map back, by the kernel's own info
(max_entries, id) and by bpftool; pinned maps are checked by opening the pin,
including from another process that keeps opening it during resizes.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import ebpfmaps
from ebpfmaps import ResizeWarning, profile
from ebpfmaps.errors import (
    IndexOutOfRange,
    InvalidArgument,
    KeyNotFound,
    MapClosed,
    MapError,
    NotSupported,
    PermissionDenied,
)
from ebpfmaps.maptypes import BPF_F_NO_COMMON_LRU, BPF_F_RDONLY_PROG, BPF_F_ZERO_SEED
from ebpfmaps.resize import resize
from tests.conftest import bpftool_json
from tests.profile_helpers import python_env, unique_name

NCPU = ebpfmaps.possible_cpus()
KINDS = ["hash", "lru-hash", "percpu-hash", "lru-percpu-hash", "array", "percpu-array"]


@pytest.fixture(autouse=True)
def _cloud() -> Any:
    with profile.using("cloud"):
        yield


def _is_array(kind: str) -> bool:
    return kind.endswith("array")


def _value(kind: str, key: int) -> Any:
    base = key * 7 + 1
    return [base + cpu for cpu in range(NCPU)] if kind.startswith(("percpu", "lru-percpu")) else base


def _make(kind: str, max_entries: int, **kwargs: Any) -> Any:
    # Arrays keep their default index keys, whose bound must follow the new size.
    key_type = None if _is_array(kind) else ctypes.c_uint32
    return ebpfmaps.create(kind, key_type=key_type, value_type=ctypes.c_uint64, max_entries=max_entries,
                           name=kwargs.pop("name", unique_name("rs")), **kwargs)


def _fill(m: Any, kind: str, keys: list[int]) -> dict[int, Any]:
    m.update_batch(keys, [_value(kind, k) for k in keys])
    return {k: _value(kind, k) for k in keys}


def _kernel_max_entries(map_id: int) -> int:
    shown = bpftool_json("map", "show", "id", str(map_id))
    assert isinstance(shown, dict)
    return int(shown["max_entries"])


def _gone(map_id: int) -> bool:
    try:
        ebpfmaps.open_by_id(map_id).close()
    except KeyNotFound:
        return True
    return False


@pytest.mark.parametrize("kind", KINDS)
def test_grow_keeps_every_entry(kind: str) -> None:
    with _make(kind, 64) as m:
        old_id = m.id
        if _is_array(kind):
            expected = _fill(m, kind, list(range(64)))
        else:
            expected = _fill(m, kind, list(range(1000, 1040)))
            assert m.to_dict() == expected
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResizeWarning)  # growing drops nothing, so no warning
            result = m.resize(256)
        assert (result.old_max_entries, result.new_max_entries, result.dropped) == (64, 256, {})
        assert result.copied == len(expected) and result.migrated
        assert m.max_entries == 256 and m.info().max_entries == 256
        assert result.new_id == m.id != old_id
        assert _kernel_max_entries(m.id) == 256  # bpftool sees the new map
        assert _gone(old_id)  # nothing else held the old map
        got = m.to_dict()
        if _is_array(kind):
            zero = [0] * NCPU if kind == "percpu-array" else 0
            assert got == {**{i: zero for i in range(256)}, **expected}
            m[255] = _value(kind, 255)  # the index bound followed the new size
            assert m[255] == _value(kind, 255)
        else:
            assert got == expected
            m[5000] = _value(kind, 5000)
            assert m[5000] == _value(kind, 5000)


@pytest.mark.parametrize("kind", KINDS)
def test_shrink_keeps_what_fits_and_reports_the_rest(kind: str) -> None:
    n_old, n_new = 128, 48
    with _make(kind, n_old) as m:
        keys = list(range(n_old)) if _is_array(kind) else list(range(500, 500 + 100))
        expected = _fill(m, kind, keys)
        if kind.startswith("lru"):
            expected = m.to_dict()  # an LRU map may already have evicted some before the resize
        else:
            assert m.to_dict() == expected
        with pytest.warns(ResizeWarning, match=f"{n_old} -> {n_new}"):
            result = m.resize(n_new)
        assert m.info().max_entries == n_new == _kernel_max_entries(m.id)
        got = m.to_dict()
        if _is_array(kind):
            assert got == {k: v for k, v in expected.items() if k < n_new}
            assert result.dropped == {k: v for k, v in expected.items() if k >= n_new}
            with pytest.raises(IndexOutOfRange):
                m[n_new] = _value(kind, 0)
            assert m.lookup(n_new) is None
        else:
            # Kept and dropped split the old entries exactly, every value intact.
            assert set(got).isdisjoint(result.dropped)
            assert {**got, **result.dropped} == expected
            if kind.startswith("lru"):
                assert 0 < len(got) <= n_new  # the LRU may evict before it is full
            else:
                assert len(got) == n_new
        assert result.copied == len(got)


def test_lru_with_per_cpu_lists_is_copied_across_cpus() -> None:
    """BPF_F_NO_COMMON_LRU: a syscall insert uses the calling CPU's share (max_entries / possible CPUs).

    The copy is spread over the CPUs the process may use, so a map that holds
    more entries than one CPU's share still fits when the total does.
    """
    allowed = len(os.sched_getaffinity(0))
    share = 500
    count = int(share * 1.2) if allowed >= 2 else share - 100
    with _make("lru-hash", 2 * share * NCPU, flags=BPF_F_NO_COMMON_LRU) as m:
        expected = _fill(m, "lru-hash", list(range(count)))
        assert m.to_dict() == expected
        result = m.resize(share * NCPU)
        assert result.dropped == {}
        assert m.to_dict() == expected
        assert m.info().flags & BPF_F_NO_COMMON_LRU


def test_resize_keeps_name_flags_and_frozen_state() -> None:
    name = unique_name("rsfz")
    with ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=32, name=name,
                          flags=BPF_F_ZERO_SEED) as m:
        m.update_batch(range(10), range(10))
        m.freeze()
        m.resize(64)
        info = m.info()
        assert (info.name, info.flags, info.frozen, info.max_entries) == (name, BPF_F_ZERO_SEED, True, 64)
        assert m.to_dict() == {i: i for i in range(10)}
        with pytest.raises(PermissionDenied, match="frozen"):
            m[1] = 2
    with ebpfmaps.ArrayMap(value_type=ctypes.c_uint32, max_entries=4, flags=BPF_F_RDONLY_PROG) as a:
        a[3] = 9
        a.resize(8)
        assert a.info().flags == BPF_F_RDONLY_PROG and a[3] == 9


def test_resize_keeps_btf(pin_path: Path) -> None:
    from ebpfmaps.btf import spin_lock_value_btf

    b = spin_lock_value_btf()
    with ebpfmaps.HashMap(key_size=4, value_size=b.value_size, max_entries=8, btf=b.btf,
                          btf_key_type_id=b.key_type_id, btf_value_type_id=b.value_type_id) as m:
        value = bytes(8) + (77).to_bytes(8, "little")  # lock word and padding, then the u64 counter
        m[b"\x01\0\0\0"] = value
        m.pin(pin_path)
        before = m.info()
        # A map opened from its pin knows only BTF ids; resize fetches the BTF object by id.
        with ebpfmaps.open_pinned(pin_path) as other:
            other.resize(16)  # type: ignore[attr-defined]  # open_pinned returns Map
            after = other.info()
        assert (after.btf_id, after.btf_key_type_id, after.btf_value_type_id) == (
            before.btf_id, before.btf_key_type_id, before.btf_value_type_id)
        assert after.max_entries == 16
        with ebpfmaps.open_pinned(pin_path) as again:
            assert again.lookup(b"\x01\0\0\0", flags=ebpfmaps.BPF_F_LOCK)[8:] == value[8:]


def test_bad_resizes_are_refused_before_touching_the_kernel(pin_path: Path) -> None:
    with _make("hash", 16) as m:
        m[1] = 1
        old_id = m.id
        for bad in (0, -1, 1 << 32, True):
            with pytest.raises(InvalidArgument):
                m.resize(bad)
        with pytest.raises(InvalidArgument):
            m.resize(1.5)
        same = m.resize(16)
        assert not same.migrated and m.id == old_id
        m.pin(pin_path)
        with ebpfmaps.open_pinned(pin_path, readonly=True) as ro:
            with pytest.raises(PermissionDenied):
                ro.resize(32)  # type: ignore[attr-defined]
    with pytest.raises(MapClosed):
        m.resize(32)
    with ebpfmaps.create("queue", key_size=0, value_size=8, max_entries=4) as q:
        assert not hasattr(q, "resize")
        with pytest.raises(NotSupported, match="cannot be resized"):
            resize(q, 8)


def test_failed_resize_leaves_map_and_pin_as_they_were(pin_path: Path) -> None:
    with ebpfmaps.ArrayMap(value_size=4096, max_entries=16, name=unique_name("rsfail")) as m:
        m[3] = b"\x05" * 4096
        m.pin(pin_path)
        old_id = m.id
        with pytest.raises(MapError):
            m.resize(0xFFFFFFFF)  # 16 TiB of values: the kernel refuses to create it
        assert m.id == old_id and m.max_entries == 16 and m.info().max_entries == 16
        assert m[3] == b"\x05" * 4096
        with ebpfmaps.open_pinned(pin_path) as p:
            assert p.id == old_id
        assert [f for f in os.listdir(pin_path.parent) if "_resize_" in f] == []


def test_pinned_map_is_repinned_atomically(pin_path: Path) -> None:
    with _make("hash", 32) as m:
        expected = _fill(m, "hash", list(range(20)))
        m.pin(pin_path)
        old_id = m.id
        result = m.resize(128)
        assert result.repinned == str(pin_path)
        with ebpfmaps.open_pinned(pin_path, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64) as p:
            assert p.id == m.id != old_id
            assert p.max_entries == 128 and p.to_dict() == expected
        shown = bpftool_json("map", "show", "pinned", str(pin_path))
        assert isinstance(shown, dict) and shown["id"] == m.id and shown["max_entries"] == 128
        # bpftool reads the entries through the pin, independently of ebpfmaps.
        dumped = bpftool_json("map", "dump", "pinned", str(pin_path))
        assert isinstance(dumped, list)
        as_ints = {int.from_bytes(bytes(int(b, 16) for b in row["key"]), "little"):
                   int.from_bytes(bytes(int(b, 16) for b in row["value"]), "little") for row in dumped}
        assert as_ints == expected
        # No temporary pin is left next to the real one.
        assert [f for f in os.listdir(pin_path.parent) if "_resize_" in f] == []
        assert _gone(old_id)


def test_pin_taken_over_by_another_map_is_left_alone(pin_path: Path) -> None:
    with _make("hash", 8) as m, _make("hash", 8) as intruder:
        m.pin(pin_path)
        os.unlink(pin_path)
        intruder.pin(pin_path)
        with pytest.warns(ResizeWarning, match="left alone"):
            result = m.resize(16)
        assert result.repinned is None
        with ebpfmaps.open_pinned(pin_path) as p:
            assert p.id == intruder.id


def test_threads_keep_working_during_resizes() -> None:
    """Threads using the object while it migrates never see an error: the new map takes over the same fd."""
    with _make("hash", 128) as m:
        expected = _fill(m, "hash", list(range(100)))
        stop = threading.Event()
        problems: list[str] = []
        reads = [0]

        def reader() -> None:
            while not stop.is_set():
                try:
                    for k in (0, 50, 99):
                        if m[k] != expected[k]:
                            problems.append(f"m[{k}] = {m[k]}")
                    reads[0] += 1
                except Exception as exc:
                    problems.append(repr(exc))
                    return

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for size in [256, 128, 512, 128] * 5:
                m.resize(size)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert problems == []
        assert reads[0] > 0 and m.to_dict() == expected


_READER = r"""
import ctypes, json, os, sys, time
import ebpfmaps
from ebpfmaps.errors import PinNotFound

path, stop, n, progress = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
expected = {k: k * 7 + 1 for k in range(n)}
ids, sizes, problems, opens = set(), set(), [], 0
print("ready", flush=True)
deadline = time.monotonic() + 60
while not os.path.exists(stop) and time.monotonic() < deadline:
    try:
        m = ebpfmaps.open_pinned(path, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
    except PinNotFound as exc:
        problems.append(f"PinNotFound: {exc}")
        continue
    with m:
        got = m.lookup_batch()
        info = m.info()
        if got != expected:
            problems.append(f"map id {info.id} (max_entries {info.max_entries}) has {len(got)} entries, not {n}")
        ids.add(info.id)
        sizes.add(info.max_entries)
        opens += 1
    with open(progress, "w") as f:  # how many maps the reader has seen, for the resizer to wait on
        f.write(str(len(ids)))
print(json.dumps({"opens": opens, "ids": len(ids), "sizes": sorted(sizes), "problems": problems[:10]}))
"""


def test_resize_under_a_reader_in_another_process(pin_path: Path, tmp_path: Path) -> None:
    """Another process opens the pin in a loop: it never finds it missing and always sees every entry."""
    n = 100
    stop_file = tmp_path / "stop"
    progress = tmp_path / "progress"

    def maps_seen() -> int:
        try:
            return int(progress.read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    with _make("hash", 128) as m:
        _fill(m, "hash", list(range(n)))
        m.pin(pin_path)
        proc = subprocess.Popen([sys.executable, "-c", _READER, str(pin_path), str(stop_file), str(n), str(progress)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env())
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            sizes = [256, 128, 1024, 160]
            started = time.monotonic()
            resizes = 0
            # Keep migrating for a while so that many of the reader's opens race with a rename, and
            # until the reader has seen several maps: under emulation (the VM suite) it starts slowly.
            while (resizes < 40 or time.monotonic() - started < 1.0 or maps_seen() < 3) \
                    and time.monotonic() - started < 45:
                m.resize(sizes[resizes % len(sizes)])
                resizes += 1
            stop_file.touch()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["problems"] == []
    assert summary["opens"] > 0
    assert summary["ids"] >= 2, summary  # the reader really saw the map change under it
    assert set(summary["sizes"]) <= {128, 256, 1024, 160}


def test_concurrent_resizes_of_one_object_are_serialised() -> None:
    with _make("hash", 128) as m:
        expected = _fill(m, "hash", list(range(100)))
        errors: list[BaseException] = []

        def resizer(size: int) -> None:
            try:
                for _ in range(5):
                    m.resize(size)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=resizer, args=(s,)) for s in (128, 256, 512, 1024)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert m.info().max_entries == m.max_entries in (128, 256, 512, 1024)
        assert m.to_dict() == expected


def test_resize_function_refuses_in_embedded() -> None:
    with _make("array", 8) as m, profile.using("embedded"):
        with pytest.raises(NotSupported, match="embedded"):
            resize(m, 16)
        assert m.info().max_entries == 8


def test_kernel_program_keeps_the_old_map() -> None:
    """What the docs say plainly: a program loaded against the map keeps writing to the old one after a resize."""
    from ebpfmaps import asm
    from ebpfmaps.asm import R0, R1, R2, R3, R4, R10
    from ebpfmaps.programs import Program

    with _make("hash", 16) as m:
        m[1] = 10
        old_id = m.id
        insns = [
            asm.st(4, R10, -4, 7),          # key 7 on the stack
            asm.st(8, R10, -16, 99),        # value 99
            asm.ld_map_fd(R1, m),
            asm.mov64(R2, R10), asm.add64(R2, -4),
            asm.mov64(R3, R10), asm.add64(R3, -16),
            asm.mov64(R4, 0),
            asm.call("map_update_elem"),
            asm.mov64(R0, 0),
            asm.exit_(),
        ]
        with Program.load("socket_filter", insns) as prog:
            m.resize(64)
            assert prog.test_run(data=b"\0" * 16).retval == 0
            shown = bpftool_json("prog", "show", "id", str(prog.info().id))
            assert isinstance(shown, dict) and shown["map_ids"] == [old_id]
            assert m.to_dict() == {1: 10}  # the program's write did not reach the new map
            with ebpfmaps.open_by_id(old_id, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64) as old:
                assert old.to_dict() == {1: 10, 7: 99} and old.max_entries == 16


def test_mmapable_array_resize_maps_the_new_memory() -> None:
    with ebpfmaps.ArrayMap(value_type=ctypes.c_uint64, max_entries=16, mmapable=True) as a:
        a[3] = 33
        a.resize(32)
        assert a.info().flags & ebpfmaps.BPF_F_MMAPABLE
        a[20] = 5
        view = a.values_view()  # a mapping of the new map: copied values and new ones
        assert len(view) == 32 * 8
        assert int.from_bytes(view[24:32], "little") == 33
        assert int.from_bytes(view[160:168], "little") == 5
        del view
