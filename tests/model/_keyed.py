"""A state machine of a keyed BPF map (hash family, arrays) against a dict model.

Every rule compares what the map does with what the model predicts: the value returned, the
exception raised (``KeyExists``, ``KeyNotFound``, ``OutOfMemory``...), and the whole map afterwards.
A refused operation must leave the map exactly as it was. Subclasses say which map they create and
how its semantics differ (arrays: every index present, no delete; LRU: entries may vanish).
"""

from __future__ import annotations

import ctypes
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import ebpfmaps
from ebpfmaps import BPF_ANY, BPF_EXIST, BPF_NOEXIST, KeyExists, KeyNotFound, NotSupported, OutOfMemory, features
from ebpfmaps.errors import BatchError, MapError

NCPUS = ebpfmaps.possible_cpus()
U64 = st.integers(min_value=0, max_value=(1 << 64) - 1)
FLAGS = st.sampled_from([BPF_ANY, BPF_NOEXIST, BPF_EXIST])
KEYS = st.integers(min_value=0, max_value=11)
# An int, or one value per CPU (per-CPU maps take both; other maps use the first).
VALUES = st.one_of(U64, st.lists(U64, min_size=NCPUS, max_size=NCPUS))


def plain(value: Any) -> Any:
    """A value as the model holds it: per-CPU values as a list, anything else as it is."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "PerCpuValues":
        return [int(x) for x in value]
    return value


class KeyedMachine(RuleBasedStateMachine):
    """A hash map that can fill: keys 0..11, room for 8."""

    kind: ClassVar[str] = "hash"
    capacity: ClassVar[int] = 8
    create_flags: ClassVar[int] = 0
    #: LRU maps: an entry may be evicted (vanish) whenever another one is inserted.
    lru: ClassVar[bool] = False
    per_cpu: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.m = self.create_map()
        self.model: dict[int, Any] = self.initial_model()

    def create_map(self) -> Any:
        return ebpfmaps.create(self.kind, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64,
                               max_entries=self.capacity, flags=self.create_flags)

    def initial_model(self) -> dict[int, Any]:
        return {}

    def teardown(self) -> None:
        self.m.close()

    # ------------------------------------------------------------------ model semantics
    def to_model(self, value: Any) -> Any:
        if self.per_cpu:
            return [int(x) for x in value] if isinstance(value, list) else [value] * NCPUS
        return value

    def expected_update(self, model: dict[int, Any], key: int, flags: int) -> type[MapError] | None:
        """What the kernel makes of one update against ``model`` (None: it succeeds)."""
        present = key in model
        if flags == BPF_NOEXIST and present:
            return KeyExists
        if flags == BPF_EXIST and not present:
            return KeyNotFound
        if not present and not self.lru and len(model) >= self.capacity:
            return OutOfMemory
        return None

    def snapshot(self) -> dict[int, Any]:
        return {k: plain(v) for k, v in self.m.items()}

    def sync(self) -> None:
        """Compare the map with the model. LRU maps may have evicted entries: forget those (a value
        that changed, or a key the model does not know, is still an error)."""
        actual = self.snapshot()
        if self.lru:
            for k, v in actual.items():
                assert k in self.model, f"key {k} appeared from nowhere"
                assert self.model[k] == v, f"key {k}: {v!r}, expected {self.model[k]!r}"
            self.model = {k: self.model[k] for k in actual}
        else:
            assert actual == self.model

    def refused(self, exc: type[BaseException] | tuple[type[BaseException], ...], fn: Any, *args: Any,
                **kwargs: Any) -> pytest.ExceptionInfo[Any]:
        """Run a call that must raise ``exc`` and leave the map (and the model) as they were."""
        before = self.snapshot()
        model_before = dict(self.model)
        with pytest.raises(exc) as info:
            fn(*args, **kwargs)
        after = self.snapshot()
        assert self.model == model_before
        if self.lru:  # an insert undone after it evicted something: nothing new, nothing changed
            assert all(k in before and before[k] == v for k, v in after.items())
        else:
            assert after == before
        self.sync()
        return info

    # ------------------------------------------------------------------ rules
    def value_for(self, raw: Any) -> Any:
        if self.per_cpu:
            return raw
        return raw[0] if isinstance(raw, list) else raw

    @rule(key=KEYS, raw=VALUES, flags=FLAGS)
    def update(self, key: int, raw: Any, flags: int) -> None:
        self.sync()
        value = self.value_for(raw)
        if self.lru:
            self.lru_update(key, value, flags)
            return
        expected = self.expected_update(self.model, key, flags)
        if expected is None:
            self.m.update(key, value, flags)
            self.model[key] = self.to_model(value)
            assert plain(self.m[key]) == self.model[key]
        else:
            self.refused(expected, self.m.update, key, value, flags)

    def lru_update(self, key: int, value: Any, flags: int) -> None:
        """An LRU update takes a free node (evicting if need be) before it looks the key up, so the
        eviction may take the key itself: BPF_EXIST may then fail with KeyNotFound and BPF_NOEXIST
        may succeed on a key that was present. Either way no value other than the new one appears."""
        present = key in self.model
        may_fail: tuple[type[MapError], ...] = ()
        if flags == BPF_NOEXIST and present:
            may_fail = (KeyExists,)
        elif flags == BPF_EXIST:
            may_fail = (KeyNotFound,)
        must_fail = flags == BPF_EXIST and not present
        before = self.snapshot()
        try:
            self.m.update(key, value, flags)
        except may_fail:
            after = self.snapshot()
            assert all(k in before and before[k] == v for k, v in after.items())
            self.sync()
            return
        assert not must_fail, "BPF_EXIST created an absent key"
        self.model[key] = self.to_model(value)
        assert plain(self.m[key]) == self.model[key]
        self.sync()

    @rule(key=KEYS, raw=VALUES)
    def setitem(self, key: int, raw: Any) -> None:
        self.sync()
        value = self.value_for(raw)
        expected = self.expected_update(self.model, key, BPF_ANY)
        if self.lru:
            self.lru_update(key, value, BPF_ANY)
        elif expected is None:
            self.m[key] = value
            self.model[key] = self.to_model(value)
        else:
            self.refused(expected, self.m.__setitem__, key, value)

    @rule(key=KEYS, use_del=st.booleans())
    def delete(self, key: int, use_del: bool) -> None:
        self.sync()
        op = self.m.__delitem__ if use_del else self.m.delete
        if key in self.model:
            op(key)
            del self.model[key]
        else:
            self.refused(KeyNotFound, op, key)

    @rule(key=KEYS)
    def lookup(self, key: int) -> None:
        self.sync()
        want = self.model.get(key)
        assert plain(self.m.lookup(key)) == want
        assert (key in self.m) == (want is not None)
        sentinel = object()
        got = self.m.get(key, sentinel)
        assert (got is sentinel) if want is None else plain(got) == want
        if want is None:
            with pytest.raises(KeyNotFound):
                self.m[key]
        else:
            assert plain(self.m[key]) == want

    @rule(key=KEYS, with_default=st.booleans())
    def lookup_and_delete(self, key: int, with_default: bool) -> None:
        self.sync()
        if isinstance(self.m, ebpfmaps.Map) and not features.lookup_and_delete_supported(self.m.type):
            # The kernel has no keyed lookup_and_delete for this type (hash maps before Linux 5.14).
            self.refused(NotSupported, *((self.m.pop_item, key, None) if with_default
                                         else (self.m.lookup_and_delete, key)))
            return
        if key in self.model:
            got = self.m.pop_item(key, None) if with_default else self.m.lookup_and_delete(key)
            assert plain(got) == self.model.pop(key)
        elif with_default:
            assert self.m.pop_item(key, "absent") == "absent"
        else:
            self.refused(KeyNotFound, self.m.lookup_and_delete, key)

    @rule(pairs=st.lists(st.tuples(KEYS, VALUES), max_size=10), flags=FLAGS)
    def update_batch(self, pairs: list[tuple[int, Any]], flags: int) -> None:
        self.sync()
        ks = [k for k, _ in pairs]
        vs = [self.value_for(v) for _, v in pairs]
        if self.lru and flags != BPF_ANY:
            self.lru_update_batch(ks, vs, flags)
            return
        work = dict(self.model)
        failed_at, error = None, None
        for i, (k, v) in enumerate(zip(ks, vs)):
            error = self.expected_update(work, k, flags)
            if error is not None:
                failed_at = i
                break
            work[k] = self.to_model(v)
        if failed_at is None:
            assert self.m.update_batch(ks, vs, flags) == len(pairs)
            self.model = work
        elif flags == BPF_ANY and failed_at > 0:
            # The kernel's batch wrote a prefix and says how many: BatchError, documented.
            with pytest.raises(BatchError) as info:
                self.m.update_batch(ks, vs, flags)
            assert info.value.done == failed_at and isinstance(info.value.cause, error)
            self.model = work
        else:
            # One element refused: BPF_NOEXIST/BPF_EXIST batches undo what they wrote.
            self.refused(error, self.m.update_batch, ks, vs, flags)
        self.sync()

    def lru_update_batch(self, ks: list[int], vs: list[Any], flags: int) -> None:
        """Element by element with an undo: each insert may evict (see lru_update), so the batch may fail
        where the model says it succeeds and the reverse; the map never holds a value not written."""
        before = self.snapshot()
        try:
            done = self.m.update_batch(ks, vs, flags)
        except (KeyExists, KeyNotFound):
            after = self.snapshot()
            assert all(k in before and before[k] == v for k, v in after.items())
            self.sync()
            return
        assert done == len(ks)
        if flags == BPF_EXIST:
            assert all(k in self.model for k in ks), "BPF_EXIST created an absent key"
        for k, v in zip(ks, vs):
            self.model[k] = self.to_model(v)
        self.sync()

    @rule(ks=st.lists(KEYS, max_size=10))
    def delete_batch(self, ks: list[int]) -> None:
        self.sync()
        present = {k for k in ks if k in self.model}
        assert self.m.delete_batch(ks) == len(present)
        for k in present:
            del self.model[k]

    @rule(ks=st.lists(KEYS, max_size=10))
    def lookup_batch_keys(self, ks: list[int]) -> None:
        self.sync()
        got = {k: plain(v) for k, v in self.m.lookup_batch(ks).items()}
        assert got == {k: self.model[k] for k in ks if k in self.model}

    @rule(batch_size=st.integers(min_value=1, max_value=16))
    def iter_batches(self, batch_size: int) -> None:
        self.sync()
        if isinstance(self.m, ebpfmaps.Map) and not features.batch_ops_supported(self.m.type):
            self.refused(NotSupported, lambda: list(self.m.iter_batches(batch_size=batch_size)))
            return
        seen: dict[int, Any] = {}
        for chunk in self.m.iter_batches(batch_size=batch_size):
            assert 0 < len(chunk)
            for k, v in chunk:
                assert k not in seen
                seen[k] = plain(v)
        assert seen == self.model

    @rule(batch_size=st.integers(min_value=1, max_value=16))
    def lookup_and_delete_batch(self, batch_size: int) -> None:
        self.sync()
        if isinstance(self.m, ebpfmaps.Map) and not features.batch_ops_supported(self.m.type):
            self.refused(NotSupported, self.m.lookup_and_delete_batch, batch_size=batch_size)
            return
        got = self.m.lookup_and_delete_batch(batch_size=batch_size)
        assert {k: plain(v) for k, v in got.items()} == self.model
        self.model = {}

    @rule()
    def clear(self) -> None:
        self.sync()
        assert self.m.clear() == len(self.model)
        self.model = {}

    @invariant()
    def whole_map_matches(self) -> None:
        self.sync()
        items = list(self.m.items())
        assert len(items) == len({k for k, _ in items})  # no key twice
        assert {k: plain(v) for k, v in items} == self.model
        assert sorted(self.m.keys()) == sorted(self.model)
        assert sorted(map(str, map(plain, self.m.values()))) == sorted(map(str, self.model.values()))
        assert {k: plain(v) for k, v in self.m.lookup_batch().items()} == self.model
        assert len(self.m) == len(self.model)
