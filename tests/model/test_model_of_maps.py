"""Model tests of array-of-maps and hash-of-maps: the values are inner maps, stored by fd and read back by id.

The model holds which of a few live inner maps each key refers to, and what each inner map holds; writes made
through an inner map read from the outer one must land in the very map stored there.
"""

from __future__ import annotations

import ctypes
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import ebpfmaps
from ebpfmaps import BPF_ANY, BPF_EXIST, BPF_NOEXIST, IncompatibleMap, KeyExists, KeyNotFound, OutOfMemory
from ebpfmaps.errors import BatchError, IndexOutOfRange, InvalidFlags, MapError, NotSupported
from tests.model._settings import model_settings

SLOTS = 5
POOL = 3
KEYS = st.integers(min_value=0, max_value=SLOTS + 1)  # the arrays' last two are out of range
INNER = st.integers(min_value=0, max_value=POOL - 1)
U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


def inner_map() -> ebpfmaps.Map:
    return ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4)


class OfMapsMachine(RuleBasedStateMachine):
    kind: ClassVar[str] = "hash-of-maps"
    array: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.pool = [inner_map() for _ in range(POOL)]
        self.odd = ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=4)
        kw: dict[str, Any] = {} if self.array else {"key_type": ctypes.c_uint32}
        self.m = ebpfmaps.create(self.kind, max_entries=SLOTS, inner_map=self.pool[0], **kw)
        self.model: dict[int, int] = {}  # key -> index in the pool
        self.inner: list[dict[int, int]] = [{} for _ in range(POOL)]

    def teardown(self) -> None:
        self.m.close()
        for p in self.pool:
            p.close()
        self.odd.close()

    def ids(self) -> dict[int, int]:
        return {k: self.pool[i].id for k, i in self.model.items()}

    def expected(self, model: dict[int, int], key: int, flags: int) -> type[MapError] | None:
        if self.array and flags != BPF_ANY:
            return InvalidFlags  # fd arrays take BPF_ANY only (every index exists); checked before the index
        if self.array and key >= SLOTS:
            return IndexOutOfRange
        present = key in model
        if flags == BPF_NOEXIST and present:
            return KeyExists
        if flags == BPF_EXIST and not present:
            return KeyNotFound
        if not self.array and not present and len(model) >= SLOTS:
            return OutOfMemory
        return None

    def refused(self, exc: Any, fn: Any, *args: Any) -> None:
        before = self.m.inner_ids()
        with pytest.raises(exc):
            fn(*args)
        assert self.m.inner_ids() == before == self.ids()

    @rule(key=KEYS, which=INNER, flags=st.sampled_from([BPF_ANY, BPF_NOEXIST, BPF_EXIST]), by_fd=st.booleans())
    def store(self, key: int, which: int, flags: int, by_fd: bool) -> None:
        value = self.pool[which].fd if by_fd else self.pool[which]
        exp = self.expected(self.model, key, flags)
        if exp is None:
            self.m.update(key, value, flags)
            self.model[key] = which
        else:
            self.refused(exp, self.m.update, key, value, flags)

    @rule(key=KEYS)
    def store_incompatible(self, key: int) -> None:
        self.refused(IncompatibleMap if not (self.array and key >= SLOTS) else (IncompatibleMap, IndexOutOfRange),
                     self.m.update, key, self.odd)

    @rule(key=KEYS)
    def lookup(self, key: int) -> None:
        got = self.m.lookup(key)
        if key not in self.model:
            assert got is None and self.m.inner_id(key) is None and self.m.get(key, "absent") == "absent"
            assert key not in self.m  # past the end of an array too, as for ArrayMap
            with pytest.raises(KeyNotFound):
                self.m[key]
            return
        try:
            assert got is not None and got.id == self.pool[self.model[key]].id
            assert self.m.inner_id(key) == got.id and key in self.m
        finally:
            if got is not None:
                got.close()

    @rule(key=KEYS, k=st.integers(min_value=0, max_value=3), v=U64)
    def write_through(self, key: int, k: int, v: int) -> None:
        """outer[key][k] = v writes into the inner map stored at key."""
        if key not in self.model:
            return
        with self.m[key] as inner:
            inner[k] = v
        self.inner[self.model[key]][k] = v

    @rule(key=KEYS)
    def delete(self, key: int) -> None:
        if key in self.model:
            del self.m[key]
            del self.model[key]
        else:
            self.refused(KeyNotFound, self.m.delete, key)

    @rule(key=KEYS)
    def lookup_and_delete_refused(self, key: int) -> None:
        self.refused(MapError, self.m.lookup_and_delete, key)

    @rule(pairs=st.lists(st.tuples(KEYS, INNER), max_size=5), flags=st.sampled_from([BPF_ANY, BPF_NOEXIST, BPF_EXIST]))
    def update_batch(self, pairs: list[tuple[int, int]], flags: int) -> None:
        ks, vs = [k for k, _ in pairs], [self.pool[i] for _, i in pairs]
        if self.array and flags != BPF_ANY:
            self.refused(InvalidFlags, self.m.update_batch, ks, vs, flags)  # even with no pairs
            return
        work = dict(self.model)
        error, failed_at = None, 0
        for n, (k, i) in enumerate(pairs):
            error = self.expected(work, k, flags)
            if error is not None:
                failed_at = n
                break
            work[k] = i
        if error is None:
            assert self.m.update_batch(ks, vs, flags) == len(ks)
            self.model = work
        elif self.array or flags != BPF_ANY:
            self.refused(error, self.m.update_batch, ks, vs, flags)  # indices checked first; flags undone
        else:  # a full hash-of-maps: the kernel's batch wrote the prefix before the failing element
            with pytest.raises((BatchError, OutOfMemory)) as info:
                self.m.update_batch(ks, vs, flags)
            if isinstance(info.value, BatchError):
                assert info.value.done == failed_at and isinstance(info.value.cause, OutOfMemory)
            else:
                assert failed_at == 0
            self.model = work
            assert self.m.inner_ids() == self.ids()

    @rule(ks=st.lists(KEYS, max_size=5))
    def delete_batch(self, ks: list[int]) -> None:
        if self.array and any(k >= SLOTS for k in ks):
            self.refused(IndexOutOfRange, self.m.delete_batch, ks)  # a bad key, checked before any delete
            return
        present = {k for k in ks if k in self.model}
        assert self.m.delete_batch(ks) == len(present)
        for k in present:
            del self.model[k]

    @rule()
    def clear(self) -> None:
        assert self.m.clear() == len(self.model)
        self.model = {}

    @invariant()
    def whole_map_matches(self) -> None:
        assert self.m.inner_ids() == self.ids()
        opened = list(self.m.items())
        try:
            assert {k: m.id for k, m in opened} == self.ids()
        finally:
            for _, m in opened:
                m.close()
        batch = self.m.lookup_batch()
        try:
            assert {k: m.id for k, m in batch.items()} == self.ids()
        finally:
            for m in batch.values():
                m.close()
        assert sorted(self.m.keys()) == sorted(self.model)  # empty array slots are absent keys
        assert len(self.m) == len(self.model)
        for i, p in enumerate(self.pool):
            assert p.to_dict() == self.inner[i]


class ArrayOfMapsMachine(OfMapsMachine):
    kind = "array-of-maps"
    array = True


TestHashOfMaps = OfMapsMachine.TestCase
TestHashOfMaps.settings = model_settings()
TestArrayOfMaps = ArrayOfMapsMachine.TestCase
TestArrayOfMaps.settings = model_settings()


def test_array_of_maps_delete_batch() -> None:
    with inner_map() as tmpl, ebpfmaps.ArrayOfMaps(max_entries=4, inner_map=tmpl) as outer:
        outer[0] = tmpl
        outer[2] = tmpl
        assert outer.delete_batch([0, 1, 2]) == 2
        assert outer.inner_ids() == {}


@pytest.mark.parametrize("flags", [BPF_NOEXIST, BPF_EXIST])
def test_array_of_maps_flags(flags: int) -> None:
    with inner_map() as tmpl, ebpfmaps.ArrayOfMaps(max_entries=4, inner_map=tmpl) as outer:
        with pytest.raises((InvalidFlags, NotSupported)):
            outer.update(1, tmpl, flags)
        assert outer.inner_ids() == {}


def test_hash_of_maps_exist_batch_undo() -> None:
    with inner_map() as a, inner_map() as b, \
            ebpfmaps.HashOfMaps(key_type=ctypes.c_uint32, max_entries=4, inner_map=a) as outer:
        outer[0] = a
        with pytest.raises(KeyNotFound):
            outer.update_batch([0, 1], [b, b], BPF_EXIST)  # 0 is replaced, then 1 is absent: undo
        assert outer.inner_ids() == {0: a.id}


def test_index_past_the_end_is_not_in() -> None:
    with inner_map() as tmpl, ebpfmaps.ArrayOfMaps(max_entries=4, inner_map=tmpl) as outer:
        assert outer.lookup(9) is None
        assert 9 not in outer
