"""Fuzz target of the public API: random calls with hostile arguments on the real kernel.

Every call either succeeds or raises an ``ebpfmaps.errors.MapError`` subclass (a MapError that is also a
ValueError or KeyError is fine; a bare TypeError, ValueError, OverflowError, struct.error,
ctypes.ArgumentError or OSError is a defect). A refused call leaves the kernel as it was: the map's
contents, the pins in the private bpffs, and no new map held by this process (constructors).

Outcomes are counted per call: ``-s`` prints the table; it is also written as JSON to
``fuzz_api_counts.json`` under pytest's base temp dir (or to ``$FUZZ_REPORT``).
Examples: small by default; ``EBPFMAPS_DEEP=1`` runs long; ``FUZZ_SECONDS=N`` repeats runs with fresh seeds
for about N seconds (``make fuzz``).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

import ebpfmaps
from ebpfmaps import MapType, features
from ebpfmaps.errors import MapError
from tests.model._settings import DEEP

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "0") or 0)
EXAMPLES = 3000 if DEEP and not FUZZ_SECONDS else (300 if FUZZ_SECONDS else 120)
# FUZZ_COLLECT=1: no shrinking; every distinct finding is recorded (first example kept) and the test fails at the
# end with the whole list (shrinking many distinct failures of this target takes minutes).
COLLECT = bool(os.environ.get("FUZZ_COLLECT"))
PHASES = [p for p in Phase if not (p is Phase.shrink and COLLECT)]
FINDINGS: dict[str, str] = {}
COUNTS: Counter[tuple[str, str]] = Counter()
Call = tuple[str, str, Callable[[], Any], dict[str, Any]]  # op, target, the call, its arguments

# ---------------------------------------------------------------------------------------------- hostile values
HUGE_INTS = st.sampled_from([-1, -(2**31), 2**31, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64, 2**200, -(2**200)])
INTS = st.one_of(st.integers(min_value=-3, max_value=70), HUGE_INTS, st.integers())
FLOATS = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 1.5, -0.0, 4.0, 1e300]), st.floats())
TEXT = st.one_of(st.sampled_from(["", "\x00", "a\x00b", "hash", "1", "../x", "é" * 40, "x" * 300]), st.text(max_size=20))
BYTES = st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"\x00" * 4, b"\x00" * 8, b"\xff" * 1000]))


def _odd_objects() -> st.SearchStrategy[Any]:
    return st.sampled_from([object(), Ellipsis, 1j, ctypes.c_uint32(5), ctypes.c_double(1.0), bytearray(4),
                            memoryview(b"\x00" * 8), [1, 2], (1, 2), {1: 2}, {1}, range(3), True, False, type])


HOSTILE: st.SearchStrategy[Any] = st.one_of(st.none(), INTS, FLOATS, TEXT, BYTES, _odd_objects(),
                                            st.lists(INTS, max_size=4))
FLAGS = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 0x10, 0xFFFFFFFF, 2**32, 2**64, -1]), HOSTILE)
TYPE_KEYWORDS = [m.keyword for m in MapType if m is not MapType.UNSPEC]
MAP_TYPES = st.one_of(st.sampled_from(TYPE_KEYWORDS), st.sampled_from(list(MapType)), INTS, TEXT, FLOATS,
                      st.none(), st.sampled_from([4096, 4097, 2**31, True]))


def sometimes(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid argument most of the time, a hostile one otherwise (so calls get past the first check)."""
    return st.one_of(valid, valid, HOSTILE)


# ---------------------------------------------------------------------------------------------- kernel state
def own_map_ids() -> set[int]:
    """Ids of the maps this process holds an fd to."""
    out: set[int] = set()
    for fd in os.listdir("/proc/self/fdinfo"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
                if line.startswith("map_id:"):
                    out.add(int(line.split()[1]))
    return out


def leaked(before_ids: set[int], own_before: set[int]) -> set[int]:
    """Maps that appeared system-wide during a refused call and that this process still holds.

    Other processes create maps meanwhile (parallel test runs), so only maps this process holds count."""
    return (set(ebpfmaps.map_ids()) - before_ids) & (own_map_ids() - own_before)


class Maps:
    """The maps one example works on, with a snapshot of each (None: cannot be read without changing it)."""

    def __init__(self) -> None:
        c = ctypes
        self.template = ebpfmaps.HashMap(key_type=c.c_uint32, value_type=c.c_uint64, max_entries=4)
        self.maps: dict[str, Any] = {
            "hash": ebpfmaps.HashMap(key_type=c.c_uint32, value_type=c.c_uint64, max_entries=8),
            "hash_raw": ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=8),
            "lru": ebpfmaps.LruHashMap(key_type=c.c_uint32, value_type=c.c_uint64, max_entries=8),
            "array": ebpfmaps.ArrayMap(value_type=c.c_uint64, max_entries=4),
            "percpu": ebpfmaps.PerCpuHashMap(key_type=c.c_uint32, value_type=c.c_uint64, max_entries=8),
            "lpm": ebpfmaps.LpmTrieMap(family="ipv4", value_type=c.c_uint32, max_entries=8),
            "queue": ebpfmaps.QueueMap(value_type=c.c_uint32, max_entries=4),
            "hash_of_maps": ebpfmaps.HashOfMaps(key_type=c.c_uint32, max_entries=4, inner_map=self.template),
            "closed": ebpfmaps.HashMap(key_type=c.c_uint32, value_type=c.c_uint64, max_entries=4),
        }
        if features.map_type_supported(MapType.BLOOM_FILTER):  # kernels before 5.16 have none (probe)
            self.maps["bloom"] = ebpfmaps.BloomFilterMap(value_type=c.c_uint64, max_entries=8)
        self.maps["hash"].update_batch([1, 2], [10, 20])
        self.maps["hash_raw"][b"\x01\x00\x00\x00"] = b"\x02" * 8
        self.maps["lpm"]["10.0.0.0/8"] = 1
        self.maps["queue"].push(7)
        self.maps["hash_of_maps"][1] = self.template
        self.maps["closed"].close()

    def close(self) -> None:
        for m in self.maps.values():
            m.close()
        self.template.close()

    def snapshot(self, name: str) -> Any:
        m = self.maps[name]
        if name in ("bloom", "closed"):
            return None
        if name == "queue":
            vals = list(m.drain())
            m.push_many(vals)
            return vals
        return sorted(m.raw_pairs())


def valid_key(name: str) -> st.SearchStrategy[Any]:
    return {
        "lpm": st.sampled_from(["10.0.0.0/8", "10.1.0.0/16", "0.0.0.0/0", (8, b"\x0a\0\0\0")]),
        "hash_raw": st.binary(min_size=4, max_size=4),
        "array": st.integers(min_value=0, max_value=5),
    }.get(name, st.integers(min_value=0, max_value=10))


def valid_value(name: str, maps: Maps) -> st.SearchStrategy[Any]:
    if name == "hash_raw":
        return st.binary(min_size=8, max_size=8)
    if name == "hash_of_maps":
        return st.just(maps.template)
    if name == "percpu":
        return st.one_of(st.integers(0, 9), st.lists(st.integers(0, 9), min_size=ebpfmaps.possible_cpus(),
                                                     max_size=ebpfmaps.possible_cpus()))
    return st.integers(min_value=0, max_value=1000)


ELEMENT_OPS = ["lookup", "get", "contains", "getitem", "update", "setitem", "delete", "delitem", "lookup_and_delete",
               "pop_item", "update_batch", "lookup_batch", "delete_batch", "lookup_and_delete_batch", "iter_batches",
               "items", "keys", "values", "len", "clear", "push", "pop", "peek", "add", "longest_match",
               "lookup_bytes", "zero", "inner_id"]


# Ops whose method has another name (the dict protocol); the others are called by their name.
ATTRIBUTE = {"contains": "__contains__", "getitem": "__getitem__", "setitem": "__setitem__", "delitem": "__delitem__",
             "len": "__len__"}


def element_call(data: st.DataObject, maps: Maps) -> Call:
    name = data.draw(st.sampled_from(sorted(maps.maps)), label="map")
    m = maps.maps[name]
    op = data.draw(st.sampled_from([o for o in ELEMENT_OPS if hasattr(m, ATTRIBUTE.get(o, o))]), label="op")
    key = data.draw(sometimes(valid_key(name)), label="key")
    value = data.draw(sometimes(valid_value(name, maps)), label="value")
    flags = data.draw(st.one_of(st.just(0), FLAGS), label="flags")
    keys = data.draw(st.one_of(st.lists(sometimes(valid_key(name)), max_size=5), HOSTILE), label="keys")
    values = data.draw(st.one_of(st.lists(sometimes(valid_value(name, maps)), max_size=5), HOSTILE), label="values")
    # Huge batch sizes included: the buffers are capped at what the map can hold.
    size = data.draw(st.one_of(st.integers(min_value=1, max_value=8), st.integers(min_value=-(2**70), max_value=0),
                               st.integers(min_value=9, max_value=2**20), HUGE_INTS, FLOATS, TEXT, st.none()),
                     label="batch_size")
    calls: dict[str, Callable[[], Any]] = {
        "lookup": lambda: m.lookup(key, flags), "get": lambda: m.get(key, value), "contains": lambda: key in m,
        "getitem": lambda: m[key], "update": lambda: m.update(key, value, flags),
        "setitem": lambda: m.__setitem__(key, value), "delete": lambda: m.delete(key),
        "delitem": lambda: m.__delitem__(key), "lookup_and_delete": lambda: m.lookup_and_delete(key),
        "pop_item": lambda: m.pop_item(key, value), "update_batch": lambda: m.update_batch(keys, values, flags),
        "lookup_batch": lambda: m.lookup_batch(keys if flags else None, batch_size=size),
        "delete_batch": lambda: m.delete_batch(keys),
        "lookup_and_delete_batch": lambda: m.lookup_and_delete_batch(batch_size=size),
        "iter_batches": lambda: list(m.iter_batches(size)), "items": lambda: list(m.items()),
        "keys": lambda: list(m.keys()), "values": lambda: list(m.values()), "len": lambda: len(m),
        "clear": lambda: m.clear(), "push": lambda: m.push(value, overwrite=bool(flags)),
        "pop": lambda: m.pop(value), "peek": lambda: m.peek(value), "add": lambda: m.add(value),
        "longest_match": lambda: m.longest_match(key, value), "lookup_bytes": lambda: m.lookup_bytes(key),
        "zero": lambda: m.zero(key), "inner_id": lambda: m.inner_id(key),
    }
    return op, name, calls[op], {"values": values, "keys": keys, "key": key, "flags": flags, "batch_size": size}


def create_call(data: st.DataObject, maps: Maps) -> Call:
    kind = data.draw(MAP_TYPES, label="map_type")
    kw: dict[str, Any] = {}
    for arg, valid in (("key_size", st.sampled_from([None, 0, 4, 8])), ("value_size", st.sampled_from([None, 0, 4, 8])),
                       ("max_entries", st.sampled_from([None, 1, 4, 4096]))):
        v = data.draw(sometimes(valid), label=arg)
        if v is not None:
            kw[arg] = v
    extras = {"flags": FLAGS, "name": st.one_of(st.sampled_from(["m", "x" * 15]), TEXT),
              "map_extra": HOSTILE, "numa_node": HOSTILE, "key_type": st.one_of(st.just(ctypes.c_uint32), HOSTILE),
              "value_type": st.one_of(st.sampled_from([ctypes.c_uint64, "=Q"]), HOSTILE),
              "inner_map": st.one_of(st.just(maps.template), st.just(maps.template.spec), HOSTILE),
              "btf": HOSTILE, "family": st.one_of(st.sampled_from(["ipv4", 6]), HOSTILE),
              "nr_hashes": HOSTILE, "mmapable": HOSTILE}
    chosen = data.draw(st.lists(st.sampled_from(sorted(extras)), max_size=3, unique=True), label="extras")
    for arg in chosen:
        kw[arg] = data.draw(extras[arg], label=arg)

    def call() -> Any:
        created = ebpfmaps.create(kind, **kw)
        created.close()  # an accepted combination: fine, it is not what is tested here
        return created

    return "create", repr(kind)[:30], call, dict(kw, map_type=kind)


def pin_call(data: st.DataObject, maps: Maps, bpffs: Path) -> Call:
    name = data.draw(st.sampled_from(["hash", "array", "queue", "closed"]), label="map")
    m = maps.maps[name]
    path = data.draw(st.one_of(
        st.builds(lambda s: str(bpffs / f"p{s}"), st.integers(0, 3)),
        st.builds(lambda t: str(bpffs) + "/" + t, TEXT),
        st.sampled_from([str(bpffs / "missing" / "x"), "/tmp/not-bpffs-pin", "", "relative", b"/sys/fs/bpf/x",
                         str(bpffs / "p0") + "/"]),
        HOSTILE), label="path")
    op = data.draw(st.sampled_from(["pin", "unpin", "map.unpin", "open_pinned", "open_by_id"]), label="op")
    args = {"path": path}
    if op == "pin":
        return op, name, lambda: m.pin(path), args
    if op == "unpin":
        return op, "-", lambda: ebpfmaps.unpin(path), args
    if op == "map.unpin":
        return op, name, lambda: m.unpin(path), args
    if op == "open_pinned":
        kw = data.draw(st.fixed_dictionaries({}, optional={"readonly": HOSTILE, "spec": HOSTILE,
                                                           "key_type": HOSTILE, "value_type": HOSTILE}), label="kw")

        def opened() -> Any:
            ebpfmaps.open_pinned(path, **kw).close()

        return op, "-", opened, dict(kw, path=path)
    map_id = data.draw(st.one_of(st.just(maps.maps["hash"].id), HOSTILE), label="map_id")
    ro = data.draw(st.one_of(st.booleans(), HOSTILE), label="readonly")

    def by_id() -> Any:
        ebpfmaps.open_by_id(map_id, readonly=ro).close()

    return op, "-", by_id, {"map_id": map_id, "readonly": ro}


def pins(bpffs: Path) -> list[str]:
    return sorted(str(p.relative_to(bpffs)) for p in bpffs.rglob("*"))


def run_one(data: st.DataObject, maps: Maps, bpffs: Path) -> None:
    kind = data.draw(st.sampled_from(["element", "element", "element", "create", "pin"]), label="kind")
    if kind == "element":
        op, target, call, args = element_call(data, maps)
    elif kind == "create":
        op, target, call, args = create_call(data, maps)
    else:
        op, target, call, args = pin_call(data, maps, bpffs)
    snap_names = [target] if target in maps.maps else []
    if "hash_of_maps" not in snap_names:
        snap_names.append("hash_of_maps")  # its template is passed around as an inner map
    before = {n: maps.snapshot(n) for n in snap_names}
    pins_before = pins(bpffs)
    ids_before, own_before = set(ebpfmaps.map_ids()), own_map_ids()
    try:
        call()
    except MapError as exc:
        COUNTS[(op, type(exc).__name__)] += 1
        if COLLECT:
            problems = [f"{op} on {n} refused but changed the map" for n in snap_names
                        if maps.snapshot(n) != before[n]]
            problems += [f"{op} refused but changed the pins"] if pins(bpffs) != pins_before else []
            problems += [f"{op} refused but left a map open"] if leaked(ids_before, own_before) else []
            for problem in problems:
                FINDINGS.setdefault(f"{problem} ({type(exc).__name__})", repr(args)[:300])
            return
        for n in snap_names:
            assert maps.snapshot(n) == before[n], f"{op} on {n} refused ({exc!r}) but changed the map"
        assert pins(bpffs) == pins_before, f"{op} refused ({exc!r}) but changed the pins"
        assert not leaked(ids_before, own_before), f"{op} refused ({exc!r}) but left a map open"
    except Exception as exc:
        COUNTS[(op, f"BAD {type(exc).__name__}")] += 1
        if COLLECT:
            FINDINGS.setdefault(f"{op} on {target}: {type(exc).__name__}: {str(exc)[:80]}", repr(args)[:300])
            return
        raise AssertionError(f"{op} on {target} with {args!r} raised {type(exc).__module__}."
                             f"{type(exc).__name__}, not a MapError: {exc!r}") from exc
    else:
        COUNTS[(op, "ok")] += 1


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Counter[tuple[str, str]]]:
    COUNTS.clear()
    started = time.monotonic()
    yield COUNTS
    total = sum(COUNTS.values())
    lines = [f"fuzz_api: {total} calls in {time.monotonic() - started:.1f}s"]
    lines += [f"  {n:6d}  {op:24s} {outcome}" for (op, outcome), n in sorted(COUNTS.items())]
    print("\n" + "\n".join(lines))
    out = Path(os.environ.get("FUZZ_REPORT") or tmp_path_factory.getbasetemp() / "fuzz_api_counts.json")
    out.write_text(json.dumps({"calls": total, "outcomes": {f"{op} -> {o}": n for (op, o), n in
                                                            sorted(COUNTS.items())}}, indent=1))


def test_fuzz_api(report: Counter[tuple[str, str]], bpffs: Path) -> None:
    deadline = time.monotonic() + FUZZ_SECONDS
    rounds = 0
    while True:
        @seed(random.getrandbits(64) if FUZZ_SECONDS else 20240601 + rounds)
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False, phases=PHASES,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.function_scoped_fixture])
        @given(st.data())
        def one_round(data: st.DataObject) -> None:
            maps = Maps()
            try:
                for _ in range(data.draw(st.integers(min_value=1, max_value=6), label="calls")):
                    run_one(data, maps, bpffs)
            finally:
                maps.close()
                for p in pins(bpffs):  # pins made by accepted calls: start the next example clean
                    with contextlib.suppress(OSError):
                        os.unlink(bpffs / p)

        one_round()
        rounds += 1
        if time.monotonic() >= deadline:
            break
    assert sum(report.values()) > 0
    assert not FINDINGS, "findings:\n" + "\n".join(f"{k}\n    e.g. {v}" for k, v in sorted(FINDINGS.items()))
