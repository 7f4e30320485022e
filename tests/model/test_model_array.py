"""Model tests of arrays (and per-CPU arrays): every index exists from the start (zeroed), BPF_NOEXIST always
fails, elements cannot be deleted, and an index at or past max_entries is refused before the syscall."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import rule

import ebpfmaps
from ebpfmaps import BPF_ANY, BPF_EXIST, BPF_NOEXIST, KeyExists, NotSupported
from ebpfmaps.errors import IndexOutOfRange, MapError
from tests.model._keyed import FLAGS, NCPUS, VALUES, KeyedMachine, plain
from tests.model._settings import model_settings

SIZE = 8
INDICES = st.integers(min_value=0, max_value=SIZE + 1)  # the last two are out of range


class ArrayMachine(KeyedMachine):
    kind = "array"
    capacity = SIZE

    def create_map(self) -> Any:
        # Without key_type the keys are indices (IndexCodec, which knows the bounds).
        return ebpfmaps.create(self.kind, value_type=ctypes.c_uint64, max_entries=SIZE)

    def initial_model(self) -> dict[int, Any]:
        return {i: self.to_model(0) for i in range(SIZE)}

    def expected_update(self, model: dict[int, Any], key: int, flags: int) -> type[MapError] | None:
        if key >= SIZE:
            return IndexOutOfRange
        if flags == BPF_NOEXIST:
            return KeyExists
        return None

    # Rules of the base class redefined for arrays (same names replace them).
    @rule(key=INDICES, raw=VALUES, flags=FLAGS)
    def update(self, key: int, raw: Any, flags: int) -> None:
        KeyedMachine.update(self, key, raw, flags)

    @rule(key=INDICES, raw=VALUES)
    def setitem(self, key: int, raw: Any) -> None:
        KeyedMachine.setitem(self, key, raw)

    @rule(key=INDICES)
    def lookup(self, key: int) -> None:
        KeyedMachine.lookup(self, key)

    @rule(key=INDICES, use_del=st.booleans())
    def delete(self, key: int, use_del: bool) -> None:
        self.refused(NotSupported, self.m.__delitem__ if use_del else self.m.delete, key)

    @rule(key=INDICES, with_default=st.booleans())
    def lookup_and_delete(self, key: int, with_default: bool) -> None:
        if key >= SIZE:  # an index past the end is an error, with or without a default
            if with_default:
                self.refused(IndexOutOfRange, self.m.pop_item, key, "absent")
            else:
                self.refused(IndexOutOfRange, self.m.lookup_and_delete, key)
        elif with_default:
            self.refused(NotSupported, self.m.pop_item, key, None)
        else:
            self.refused(NotSupported, self.m.lookup_and_delete, key)

    @rule(key=INDICES)
    def zero(self, key: int) -> None:
        if key >= SIZE:
            self.refused(IndexOutOfRange, self.m.zero, key)
        else:
            self.m.zero(key)
            self.model[key] = self.to_model(0)

    @rule(pairs=st.lists(st.tuples(INDICES, VALUES), max_size=10), flags=FLAGS)
    def update_batch(self, pairs: list[tuple[int, Any]], flags: int) -> None:
        ks = [k for k, _ in pairs]
        vs = [self.value_for(v) for _, v in pairs]
        if any(k >= SIZE for k in ks):
            self.refused(IndexOutOfRange, self.m.update_batch, ks, vs, flags)  # every index checked first
        elif ks and flags == BPF_NOEXIST:
            self.refused(KeyExists, self.m.update_batch, ks, vs, flags)
        else:
            assert self.m.update_batch(ks, vs, flags) == len(ks)
            for k, v in zip(ks, vs):
                self.model[k] = self.to_model(v)

    @rule(ks=st.lists(INDICES, max_size=10))
    def delete_batch(self, ks: list[int]) -> None:
        self.refused(NotSupported, self.m.delete_batch, ks)

    @rule(ks=st.lists(INDICES, max_size=10))
    def lookup_batch_keys(self, ks: list[int]) -> None:
        got = {k: plain(v) for k, v in self.m.lookup_batch(ks).items()}
        assert got == {k: self.model[k] for k in ks if k in self.model}

    @rule(batch_size=st.integers(min_value=1, max_value=16))
    def lookup_and_delete_batch(self, batch_size: int) -> None:
        self.refused(NotSupported, self.m.lookup_and_delete_batch, batch_size=batch_size)

    @rule()
    def clear(self) -> None:
        self.refused(NotSupported, self.m.clear)


class PerCpuArrayMachine(ArrayMachine):
    kind = "percpu-array"
    per_cpu = True

    @rule(key=st.integers(min_value=0, max_value=SIZE - 1))
    def sum_matches(self, key: int) -> None:
        assert self.m[key].sum() == sum(self.model[key])
        assert len(self.m[key]) == NCPUS


TestArray = ArrayMachine.TestCase
TestArray.settings = model_settings()
TestPerCpuArray = PerCpuArrayMachine.TestCase
TestPerCpuArray.settings = model_settings()


def test_typed_array_index_past_the_end() -> None:
    with ebpfmaps.ArrayMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as a:
        with pytest.raises(IndexOutOfRange):
            a.update(4, 1, BPF_ANY)
        with pytest.raises(IndexOutOfRange):
            a.update(4, 1, BPF_EXIST)
        assert a.to_dict() == dict.fromkeys(range(4), 0)
