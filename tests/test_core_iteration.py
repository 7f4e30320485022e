"""Iteration: keys/values/items are lazy, always terminate, and stay correct while another process
deletes (and re-inserts) entries: no exception, no key twice, every key never deleted is yielded.
Both paths are exercised: kernel batch lookups and the get_next_key fallback."""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import Map
from tests.conftest import run_python

# How long the other process churns; the parent iterates over and over meanwhile.
CHURN_SECONDS = 2.0


def _force_next_key(m: Map) -> None:
    # The fallback used for types without kernel batch ops; forced here on a hash map.
    m._batch_ok = False


@pytest.mark.parametrize("path", ["batch", "next_key"])
def test_iterators_are_lazy(path: str) -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=10_000) as m:
        if path == "next_key":
            _force_next_key(m)
        m.update_batch(list(range(10_000)), list(range(10_000)))
        for it in (m.keys(), m.values(), m.items(), iter(m)):
            assert isinstance(it, Iterator) and not isinstance(it, (list, tuple))
            first = list(islice(it, 5))
            assert len(first) == 5
        # Entries inserted after an iterator was created but before it was first advanced are seen:
        # nothing is read until the first next().
        it = m.keys()
        m.clear()
        m[123456] = 1
        assert list(it) == [123456]


@pytest.mark.parametrize("path", ["batch", "next_key"])
@pytest.mark.parametrize("kind", ["hash", "array", "percpu-hash", "lru-hash"])
def test_full_iteration_equals_contents(path: str, kind: str) -> None:
    n = 3000
    with ebpfmaps.create(kind, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=n) as m:
        if path == "next_key":
            _force_next_key(m)
        expected = {i: i * 3 for i in range(0, n, 2)}
        for k, v in expected.items():
            m[k] = v
        if kind == "array":
            expected = {i: expected.get(i, 0) for i in range(n)}
        items = list(m.items())
        keys = [k for k, _ in items]
        assert len(keys) == len(set(keys))
        if kind == "percpu-hash":
            assert {k: v.sum() // ebpfmaps.possible_cpus() for k, v in items} == expected
        else:
            assert dict(items) == expected
        assert sorted(m.keys()) == sorted(expected)
        assert len(list(m.values())) == len(expected)


def test_empty_map_iteration_terminates() -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=4) as m:
        assert list(m.items()) == [] and list(m.keys()) == []
        _force_next_key(m)
        assert list(m.items()) == []


@pytest.mark.parametrize("path", ["batch", "next_key"])
def test_iteration_terminates_while_this_process_deletes(path: str) -> None:
    # Deleting every key just yielded makes get_next_key restart from the first key over and over.
    n = 2000
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=n) as m:
        if path == "next_key":
            _force_next_key(m)
        m.update_batch(list(range(n)), list(range(n)))
        seen = []
        for k in m.keys():
            seen.append(k)
            if k % 2:
                del m[k]
        assert len(seen) == len(set(seen))
        assert set(range(0, n, 2)) <= set(seen)
        assert sorted(m.keys()) == list(range(0, n, 2))


_CHURN = """
import sys, time, ebpfmaps
path, marker, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
m = ebpfmaps.open_pinned(path, key_type="=I", value_type="=I")
odd = list(range(1, int(sys.argv[4]), 2))
rounds = 0
open(marker, "w").close()
end = time.monotonic() + seconds
while time.monotonic() < end:
    for k in odd:                 # one syscall per key: many interleavings with the reader
        m.delete(k)
    for k in odd:
        m[k] = k
    rounds += 1
print(rounds)
"""


@pytest.mark.parametrize("path", ["batch", "next_key"])
def test_iteration_while_another_process_deletes(path: str, bpffs: Path) -> None:
    n = 4000
    pin = bpffs / "churn"
    marker = bpffs.parent / f"{bpffs.name}.started"
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=n) as m:
        if path == "next_key":
            _force_next_key(m)
        m.update_batch(list(range(n)), list(range(n)))
        m.pin(pin)
        result: dict[str, str] = {}

        def churn() -> None:
            proc = run_python(_CHURN, str(pin), str(marker), str(CHURN_SECONDS), str(n))
            result["rounds"] = proc.stdout.strip()

        worker = threading.Thread(target=churn)
        worker.start()
        try:
            deadline = time.monotonic() + 180
            while not marker.exists():
                assert time.monotonic() < deadline, "the churning process never started"
                time.sleep(0.01)
            never_deleted = set(range(0, n, 2))
            universe = set(range(n))
            passes = 0
            while worker.is_alive() or passes == 0:
                items = list(m.items())  # must not raise
                keys = [k for k, _ in items]
                assert len(keys) == len(set(keys)), "a key was yielded twice"
                assert never_deleted <= set(keys), f"missed {len(never_deleted - set(keys))} never-deleted keys"
                assert set(keys) <= universe
                assert all(v == k for k, v in items)
                passes += 1
        finally:
            worker.join()
            marker.unlink(missing_ok=True)
        assert int(result["rounds"]) >= 1
        assert passes >= 2
        m.unpin()
