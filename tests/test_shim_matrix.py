"""The callback matrix, in the style of eBPF-for-Windows' custom map tests.

Each case: a base type (hash, array, LRU hash) x transforming or not x a set of
callbacks (all, none, or all but one). One scenario runs every operation of the
Map API on a real kernel map and compares, after each step, the callbacks the
provider saw with those a small model of the semantics predicts, the values the
user gets, and the bytes the kernel holds (through the base map and bpftool).
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from typing import Any

import pytest
from ebpfmaps_shim import (
    CALLBACKS,
    DeleteReason,
    ExtensibleMap,
    ProgramAccessRefused,
    ProviderBusy,
    ProviderRefused,
    register_provider,
    unregister_provider,
)

import ebpfmaps
from ebpfmaps import BPF_EXIST, BPF_NOEXIST, KeyExists, KeyNotFound, MapType, NotSupported, PermissionDenied
from ebpfmaps.maplike import MapLike
from tests.conftest import bpftool_json
from tests.shim_helpers import U32, recording_provider, val, xor

BASES = {"hash": int(MapType.HASH), "array": int(MapType.ARRAY), "lru_hash": int(MapType.LRU_HASH)}
NEEDED_FOR_TRANSFORM = {"update_element_notify", "find_element_notify"}

VARIANTS: list[tuple[str, bool, frozenset[str]]] = [("all", False, frozenset(CALLBACKS)), ("none", False, frozenset())]
VARIANTS += [(f"no_{cb}", False, frozenset(CALLBACKS) - {cb}) for cb in CALLBACKS]
VARIANTS += [("T_all", True, frozenset(CALLBACKS))]
VARIANTS += [(f"T_no_{cb}", True, frozenset(CALLBACKS) - {cb}) for cb in CALLBACKS if cb not in NEEDED_FOR_TRANSFORM]

ARRAY_ENTRIES = 12
HASH_ENTRIES = 64


@pytest.fixture
def provider_for(request: pytest.FixtureRequest) -> Iterator[Any]:
    made: list[Any] = []

    def make(**kw: Any) -> Any:
        p = recording_provider(**kw)
        register_provider(p)
        made.append(p)
        return p

    yield make
    for p in made:
        # A failed test may still hold its map (in the traceback): then the provider stays registered
        # under its unique test id rather than hiding the failure behind a teardown error.
        with contextlib.suppress(ProviderBusy):
            unregister_provider(p)


class Model:
    """What the map should hold (stored bytes per int key) and which callbacks each step should cause."""

    def __init__(self, p: Any, base: int) -> None:
        self.has = {cb for cb in CALLBACKS if cb in type(p).__dict__}
        self.transforms = p.transforms_values
        self.array = base == int(MapType.ARRAY)
        self.stored: dict[int, bytes] = {i: bytes(8) for i in range(ARRAY_ENTRIES)} if self.array else {}

    def t(self, value: bytes) -> bytes:
        return xor(value) if self.transforms else value

    def u(self, stored: bytes) -> bytes:
        return xor(stored) if self.transforms else stored

    def update_events(self, k: int, v: bytes, flags: int = 0) -> list[tuple[Any, ...]]:
        old = self.stored.get(k)
        ev: list[tuple[Any, ...]] = []
        if "update_element_notify" in self.has:
            ev.append(("update", k, v, flags))
        if old is not None and "delete_element_notify" in self.has:
            ev.append(("delete", k, old, DeleteReason.REPLACED))
        self.stored[k] = self.t(v)
        return ev

    def visible(self) -> dict[int, bytes]:
        return {k: self.u(s) for k, s in self.stored.items()}


def check_iteration_events(model: Model, events: list[tuple[Any, ...]]) -> None:
    if "get_next_key_and_value_notify" in model.has:
        assert [e[0] for e in events] == ["next"] * len(model.stored)
        assert events[0][1] is None  # the walk starts without a previous key
        for before, after in zip(events, events[1:]):
            assert after[1] == before[2]  # each step names the key visited before it
        assert {e[2]: e[3] for e in events} == model.stored
    elif "find_element_notify" in model.has:
        assert sorted(events) == sorted(("find", k, s) for k, s in model.stored.items())
    else:
        assert events == []


def bpftool_stored(map_id: int) -> dict[int, bytes]:
    """The base map's contents as bpftool reads them (keys as ints, the stored bytes through our BTF)."""
    out: dict[int, bytes] = {}
    rows = bpftool_json("map", "dump", "id", str(map_id))
    assert isinstance(rows, list)
    for row in rows:
        key = bytes(int(x, 16) for x in row["key"])
        value = bytes(int(x, 16) for x in row["value"])
        # bpftool also formats the value with the map's BTF: our record's struct with its one member
        assert bytes(row["formatted"]["value"]["stored"]) == value
        out[U32.unpack(key)[0]] = value
    return out


@pytest.mark.parametrize("variant,transforms,callbacks", VARIANTS, ids=[v[0] for v in VARIANTS])
@pytest.mark.parametrize("base_name", list(BASES))
def test_callback_matrix(provider_for: Any, base_name: str, variant: str, transforms: bool,
                         callbacks: frozenset[str]) -> None:
    base = BASES[base_name]
    p = provider_for(base=base, transforms=transforms, callbacks=callbacks)
    model = Model(p, base)
    has = model.has
    assert has == set(callbacks)
    rec = p.rec
    tid = p.custom_map_type

    kwargs: dict[str, Any] = {"value_size": 8, "max_entries": ARRAY_ENTRIES if model.array else HASH_ENTRIES}
    if not model.array:
        kwargs["key_type"] = ctypes.c_uint32
    m = ebpfmaps.create(tid, **kwargs)
    assert isinstance(m, ExtensibleMap) and isinstance(m, MapLike) and not isinstance(m, ebpfmaps.Map)
    assert (m.spec.type, m.type, m.base.type, m.value_size, m.stored_value_size) == (tid, tid, base, 8, 8)
    assert m.info().type == tid and m.base.info().type == base
    assert rec.take() == ([("create", tid, 4, 8)] if "create_map_notify" in has else [])

    # updates, one replacing
    for k, n in ((1, 11), (2, 22), (1, 33)):
        ev = model.update_events(k, val(n))
        m[k] = val(n)
        assert rec.take() == ev
        assert m.base.lookup_bytes(U32.pack(k)) == model.stored[k]  # the kernel holds the stored bytes

    # lookups and the dict protocol
    for k in (1, 2, 5):
        got = m.lookup(k)
        stored = model.stored.get(k)
        if stored is None:
            assert got is None and rec.take() == []
            assert k not in m and m.get(k, b"dflt") == b"dflt"
            with pytest.raises(KeyNotFound):
                m[k]
            assert rec.take() == []
        else:
            assert got == model.u(stored) and m[k] == got
            assert rec.take() == ([("find", k, stored)] * 2 if "find_element_notify" in has else [])
    assert m.find_element(1) == model.stored[1] and rec.take() == []  # client service: no callbacks

    # iteration: items, keys, values, len, lookup_batch, iter_batches
    assert dict(m.items()) == model.visible()
    check_iteration_events(model, rec.take())
    assert sorted(m.keys()) == sorted(model.stored) and sorted(m) == sorted(model.stored)
    rec.take()
    assert sorted(m.values()) == sorted(model.visible().values())
    check_iteration_events(model, rec.take())
    assert len(m) == len(model.stored)
    check_iteration_events(model, rec.take())
    assert m.lookup_batch() == model.visible()
    check_iteration_events(model, rec.take())
    assert {k: v for chunk in m.iter_batches(batch_size=2) for k, v in chunk} == model.visible()
    check_iteration_events(model, rec.take())

    # delete
    if model.array:
        with pytest.raises(NotSupported):
            del m[2]
        assert rec.take() == []
    else:
        old = model.stored.pop(2)
        del m[2]
        assert rec.take() == ([("delete", 2, old, DeleteReason.USER_DELETE)] if "delete_element_notify" in has else [])
        assert m.base.lookup_bytes(U32.pack(2)) is None
        with pytest.raises(KeyNotFound):
            del m[2]
        assert rec.take() == []

    # update flags are checked against what is stored before the provider is asked
    with pytest.raises(KeyExists):
        m.update(1, val(44), BPF_NOEXIST)
    assert rec.take() == []
    if model.array:
        ev = model.update_events(6, val(66), BPF_EXIST)
        m.update(6, val(66), BPF_EXIST)
        assert rec.take() == ev
    else:
        with pytest.raises(KeyNotFound):
            m.update(6, val(66), BPF_EXIST)
        assert rec.take() == []
        ev = model.update_events(6, val(66), BPF_NOEXIST)
        m.update(6, val(66), BPF_NOEXIST)
        assert rec.take() == ev

    # a refused update leaves the map as it was
    if "update_element_notify" in has:
        before = m.base.lookup_bytes(U32.pack(3))
        with pytest.raises(ProviderRefused):
            m[3] = val(0xBAD)
        assert rec.take() == [("update", 3, val(0xBAD), 0)]
        assert m.base.lookup_bytes(U32.pack(3)) == before

    # batches: every element's callbacks; the updates first, then one REPLACED per replaced value
    olds = {k: model.stored.get(k) for k in (7, 1)}
    exp: list[tuple[Any, ...]] = []
    if "update_element_notify" in has:
        exp += [("update", 7, val(77), 0), ("update", 1, val(88), 0)]
    if "delete_element_notify" in has:
        exp += [("delete", k, olds[k], DeleteReason.REPLACED) for k in (7, 1) if olds[k] is not None]
    model.stored[7], model.stored[1] = model.t(val(77)), model.t(val(88))
    assert m.update_batch([7, 1], [val(77), val(88)]) == 2
    assert rec.take() == exp
    if "update_element_notify" in has:  # all or nothing: element 1 refused, element 0 rolled back
        before8 = m.base.lookup_bytes(U32.pack(8))
        with pytest.raises(ProviderRefused):
            m.update_batch([8, 9], [val(10), val(0xBAD)])
        exp = [("update", 8, val(10), 0), ("update", 9, val(0xBAD), 0)]
        if "delete_element_notify" in has:
            exp.append(("delete", 8, model.t(val(10)), DeleteReason.ROLLBACK))
        assert rec.take() == exp
        assert m.base.lookup_bytes(U32.pack(8)) == before8
    if model.array:
        with pytest.raises(NotSupported):
            m.delete_batch([7])
    else:
        old7 = model.stored.pop(7)
        assert m.delete_batch([7, 99]) == 1
        assert rec.take() == ([("delete", 7, old7, DeleteReason.USER_DELETE)]
                              if "delete_element_notify" in has else [])
    assert rec.take() == []

    # bpftool, an independent reader, sees the base map holding the stored bytes
    assert bpftool_stored(m.map_id) == model.stored

    # kernel programs: refused for transforming providers, else the provider decides
    if transforms:
        with pytest.raises(ProgramAccessRefused):
            m.associate_program("xdp")
        assert rec.take() == []
    else:
        assert m.associate_program("xdp") is m.base
        assert rec.take() == ([("associate", "xdp")] if "associate_program" in has else [])
        if "associate_program" in has:
            with pytest.raises(ProgramAccessRefused):
                m.associate_program("forbidden")
            rec.take()

    # the kernel refuses a write the provider accepted (frozen map): ROLLBACK, and the map is unchanged
    m.freeze()
    with pytest.raises(PermissionDenied):
        m[1] = val(99)
    exp = []
    if "update_element_notify" in has:
        exp.append(("update", 1, val(99), 0))
    if "delete_element_notify" in has:
        exp.append(("delete", 1, model.t(val(99)), DeleteReason.ROLLBACK))
    assert rec.take() == exp
    assert m.base.lookup_bytes(U32.pack(1)) == model.stored[1]

    # the last close of a map nobody else holds: MAP_CLEANUP per element, then delete_map_notify
    map_id = m.map_id
    m.close()
    m.close()  # idempotent
    events = rec.take()
    cleanup = sorted(e for e in events if e[0] == "delete")
    assert cleanup == (sorted(("delete", k, s, DeleteReason.MAP_CLEANUP) for k, s in model.stored.items())
                       if "delete_element_notify" in has else [])
    assert [e for e in events if e[0] != "delete"] == ([("delete_map", map_id)] if "delete_map_notify" in has else [])
    if events and "delete_map_notify" in has:
        assert events[-1] == ("delete_map", map_id)
