"""Hypothesis stateful tests: hash, array and per-CPU maps on the real kernel against a Python dict model.

Keys come from a small range so that updates with each flag hit both present and absent keys.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import ebpfmaps
from ebpfmaps import BPF_ANY, BPF_EXIST, BPF_NOEXIST, KeyExists, KeyNotFound, NotSupported

KEYS = st.integers(min_value=0, max_value=15)
VALUES = st.integers(min_value=0, max_value=(1 << 64) - 1)
FLAGS = st.sampled_from([BPF_ANY, BPF_NOEXIST, BPF_EXIST])
NCPUS = ebpfmaps.possible_cpus()

SETTINGS = settings(max_examples=60, stateful_step_count=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _expected_update(model: dict[int, Any], key: int, flags: int) -> type[Exception] | None:
    """What the kernel's flag semantics make of an update (None: it succeeds)."""
    if flags == BPF_NOEXIST and key in model:
        return KeyExists
    if flags == BPF_EXIST and key not in model:
        return KeyNotFound
    return None


class HashMachine(RuleBasedStateMachine):
    """A hash map that never fills (max_entries covers every key) checked against a dict."""

    kind = "hash"

    def __init__(self) -> None:
        super().__init__()
        self.m = ebpfmaps.create(self.kind, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=16)
        self.model: dict[int, Any] = {}

    def to_model(self, value: Any) -> Any:
        return value

    @rule(key=KEYS, value=VALUES, flags=FLAGS)
    def update(self, key: int, value: int, flags: int) -> None:
        expected = _expected_update(self.model, key, flags)
        if expected is None:
            self.m.update(key, value, flags)
            self.model[key] = self.to_model(value)
        else:
            with pytest.raises(expected):
                self.m.update(key, value, flags)

    @rule(key=KEYS)
    def delete(self, key: int) -> None:
        if key in self.model:
            self.m.delete(key)
            del self.model[key]
        else:
            with pytest.raises(KeyNotFound):
                self.m.delete(key)

    @rule(key=KEYS)
    def lookup(self, key: int) -> None:
        assert self.m.lookup(key) == self.model.get(key)
        assert (key in self.m) == (key in self.model)

    @rule(items=st.dictionaries(KEYS, VALUES, max_size=16))
    def update_batch(self, items: dict[int, int]) -> None:
        assert self.m.update_batch(list(items), list(items.values())) == len(items)
        for k, v in items.items():
            self.model[k] = self.to_model(v)

    @rule(items=st.dictionaries(KEYS, VALUES, min_size=1, max_size=16))
    def update_batch_noexist(self, items: dict[int, int]) -> None:
        if any(k in self.model for k in items):
            before = self.m.lookup_batch()
            with pytest.raises(KeyExists):
                self.m.update_batch(list(items), list(items.values()), flags=BPF_NOEXIST)
            assert self.m.lookup_batch() == before  # all or nothing
        else:
            self.m.update_batch(list(items), list(items.values()), flags=BPF_NOEXIST)
            for k, v in items.items():
                self.model[k] = self.to_model(v)

    @rule(keys=st.lists(KEYS, max_size=16, unique=True))
    def delete_batch(self, keys: list[int]) -> None:
        present = [k for k in keys if k in self.model]
        assert self.m.delete_batch(keys) == len(present)
        for k in present:
            del self.model[k]

    @invariant()
    def iteration_matches(self) -> None:
        items = list(self.m.items())
        assert len(items) == len({k for k, _ in items})
        assert dict(items) == self.model
        assert sorted(self.m.keys()) == sorted(self.model)
        assert self.m.lookup_batch() == self.model

    def teardown(self) -> None:
        self.m.close()


class PerCpuHashMachine(HashMachine):
    """The same on a per-CPU hash: a single value lands on every CPU; lists are per CPU."""

    kind = "percpu-hash"

    def to_model(self, value: Any) -> Any:
        return list(value) if isinstance(value, list) else [value] * NCPUS

    @rule(key=KEYS, values=st.lists(VALUES, min_size=NCPUS, max_size=NCPUS))
    def update_per_cpu(self, key: int, values: list[int]) -> None:
        self.m[key] = values
        self.model[key] = list(values)

    @rule(key=KEYS)
    def sum_matches(self, key: int) -> None:
        if key in self.model:
            assert self.m[key].sum() == sum(self.model[key])


class ArrayMachine(RuleBasedStateMachine):
    """An array: every index exists (zero at first), NOEXIST always fails, delete is refused."""

    size = 8

    def __init__(self) -> None:
        super().__init__()
        self.m = ebpfmaps.create("array", value_type=ctypes.c_uint64, max_entries=self.size)
        self.model = dict.fromkeys(range(self.size), 0)

    @rule(key=st.integers(0, 7), value=VALUES, flags=FLAGS)
    def update(self, key: int, value: int, flags: int) -> None:
        if flags == BPF_NOEXIST:
            with pytest.raises(KeyExists):
                self.m.update(key, value, flags)
        else:
            self.m.update(key, value, flags)
            self.model[key] = value

    @rule(key=st.integers(0, 7))
    def delete_is_refused(self, key: int) -> None:
        with pytest.raises(NotSupported):
            self.m.delete(key)

    @rule(key=st.integers(0, 7))
    def lookup(self, key: int) -> None:
        assert self.m[key] == self.model[key]

    @rule(items=st.dictionaries(st.integers(0, 7), VALUES, max_size=8))
    def update_batch(self, items: dict[int, int]) -> None:
        self.m.update_batch(list(items), list(items.values()))
        self.model.update(items)

    @invariant()
    def iteration_matches(self) -> None:
        assert list(self.m.items()) == sorted(self.model.items())
        assert self.m.lookup_batch() == self.model

    def teardown(self) -> None:
        self.m.close()


TestHashMachine = HashMachine.TestCase
TestHashMachine.settings = SETTINGS
TestPerCpuHashMachine = PerCpuHashMachine.TestCase
TestPerCpuHashMachine.settings = SETTINGS
TestArrayMachine = ArrayMachine.TestCase
TestArrayMachine.settings = SETTINGS
