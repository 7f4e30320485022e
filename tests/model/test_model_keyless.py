"""Model tests of the keyless maps: queue and stack against a deque, bloom filter against a set."""

from __future__ import annotations

import ctypes
from collections import deque
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import ebpfmaps
from ebpfmaps import NotSupported, OutOfMemory
from ebpfmaps.errors import InvalidValueSize, MapError
from ebpfmaps.maptypes import MapType
from tests.kernel_features import require_map_type
from tests.model._settings import model_settings

U32 = st.integers(min_value=0, max_value=(1 << 32) - 1)
CAPACITY = 6

# Key-based calls make no sense on keyless maps: each must be refused before any syscall.
KEYED_CALLS: list[tuple[str, tuple[Any, ...]]] = [
    ("lookup", (1,)), ("update", (1, 2)), ("delete", (1,)), ("get", (1,)), ("lookup_and_delete", (1,)),
    ("pop_item", (1,)), ("__getitem__", (1,)), ("__setitem__", (1, 2)), ("__delitem__", (1,)),
    ("keys", ()), ("items", ()), ("values", ()), ("to_dict", ()), ("clear", ()), ("lookup_batch", ()),
    ("lookup_and_delete_batch", ()), ("update_batch", ([1], [2])), ("delete_batch", ([1],)), ("iter_batches", ()),
    ("__len__", ()),
]


class QueueMachine(RuleBasedStateMachine):
    kind: ClassVar[str] = "queue"

    def __init__(self) -> None:
        super().__init__()
        self.m = ebpfmaps.create(self.kind, value_type=ctypes.c_uint32, max_entries=CAPACITY)
        self.model: deque[int] = deque()  # oldest first

    def teardown(self) -> None:
        self.m.close()

    def take(self) -> int:
        """What pop() removes: the oldest element of a queue, the newest of a stack."""
        return self.model.popleft() if self.kind == "queue" else self.model.pop()

    def next_out(self) -> int:
        return self.model[0] if self.kind == "queue" else self.model[-1]

    def contents(self) -> list[int]:
        """The whole map, in pop order, read by draining it and pushing it back (the only way to see it)."""
        out = list(self.m.drain())
        again = out if self.kind == "queue" else out[::-1]
        assert self.m.push_many(again) == len(again)
        return out

    def expect_model(self) -> list[int]:
        return list(self.model) if self.kind == "queue" else list(reversed(self.model))

    def refused(self, exc: type[BaseException] | tuple[type[BaseException], ...], fn: Any, *args: Any) -> None:
        before = list(self.model)
        with pytest.raises(exc):
            fn(*args)
        assert list(self.model) == before and self.contents() == self.expect_model()

    @rule(value=U32, overwrite=st.booleans())
    def push(self, value: int, overwrite: bool) -> None:
        if len(self.model) >= CAPACITY and not overwrite:
            self.refused(OutOfMemory, lambda: self.m.push(value))
            return
        self.m.push(value, overwrite=overwrite)
        if len(self.model) >= CAPACITY:
            self.model.popleft()  # BPF_EXIST drops the oldest element, for a stack too
        self.model.append(value)

    @rule(values=st.lists(U32, max_size=CAPACITY + 2), overwrite=st.booleans())
    def push_many(self, values: list[int], overwrite: bool) -> None:
        room = CAPACITY - len(self.model)
        if overwrite or len(values) <= room:
            assert self.m.push_many(values, overwrite=overwrite) == len(values)
            for v in values:
                if len(self.model) >= CAPACITY:
                    self.model.popleft()
                self.model.append(v)
        else:  # documented: pushes in order and stops with the first failure
            with pytest.raises(OutOfMemory):
                self.m.push_many(values)
            self.model.extend(values[:room])

    @rule(with_default=st.booleans())
    def pop(self, with_default: bool) -> None:
        default = "empty" if with_default else None
        got = self.m.pop(default) if with_default else self.m.pop()
        assert got == (self.take() if self.model else default)

    @rule()
    def peek(self) -> None:
        assert self.m.peek("empty") == (self.next_out() if self.model else "empty")
        assert self.m.is_empty() == (not self.model)

    @rule(limit=st.integers(min_value=0, max_value=CAPACITY + 1))
    def drain(self, limit: int) -> None:
        want = [self.take() for _ in range(min(limit, len(self.model)))]
        assert list(self.m.drain(limit)) == want

    @rule(call=st.sampled_from(KEYED_CALLS))
    def keyed_calls_refused(self, call: tuple[str, tuple[Any, ...]]) -> None:
        name, args = call
        self.refused(NotSupported, lambda: getattr(self.m, name)(*args))

    @rule(value=st.one_of(st.binary(max_size=8).filter(lambda b: len(b) != 4), st.integers(min_value=1 << 32),
                          st.integers(max_value=-1)))
    def bad_value_refused(self, value: Any) -> None:
        self.refused(MapError, lambda: self.m.push(value, overwrite=True))

    @invariant()
    def contents_match(self) -> None:
        assert self.contents() == self.expect_model()


class StackMachine(QueueMachine):
    kind = "stack"


class BloomMachine(RuleBasedStateMachine):
    """No false negatives: every value added is reported present, whatever else was added."""

    def __init__(self) -> None:
        super().__init__()
        self.m = ebpfmaps.BloomFilterMap(value_type=ctypes.c_uint64, max_entries=16, nr_hashes=3)
        self.added: set[int] = set()

    def teardown(self) -> None:
        self.m.close()

    @rule(value=st.integers(min_value=0, max_value=(1 << 64) - 1))
    def add(self, value: int) -> None:
        self.m.add(value)
        self.added.add(value)
        assert value in self.m

    @rule(values=st.lists(st.integers(min_value=0, max_value=200), max_size=20))
    def add_many(self, values: list[int]) -> None:
        assert self.m.add_many(values) == len(values)
        self.added.update(values)

    @rule(value=st.integers(min_value=0, max_value=200))
    def contains(self, value: int) -> None:
        if value in self.added:
            assert value in self.m and self.m.might_contain(value)
        else:
            assert isinstance(value in self.m, bool)  # a false positive is allowed

    @rule(value=st.one_of(st.binary(max_size=12).filter(lambda b: len(b) != 8), st.integers(max_value=-1),
                          st.integers(min_value=1 << 64), st.none(), st.floats()))
    def bad_value_refused(self, value: Any) -> None:
        with pytest.raises(MapError):
            self.m.add(value)

    @rule(value=st.binary(max_size=12).filter(lambda b: len(b) != 8))
    def bad_size_lookup_refused(self, value: bytes) -> None:
        with pytest.raises(InvalidValueSize):
            value in self.m  # noqa: B015

    @rule(call=st.sampled_from([c for c in KEYED_CALLS if c[0] != "__len__"]))
    def keyed_calls_refused(self, call: tuple[str, tuple[Any, ...]]) -> None:
        name, args = call
        with pytest.raises(NotSupported):
            getattr(self.m, name)(*args)

    @invariant()
    def no_false_negatives(self) -> None:
        missing = [v for v in self.added if v not in self.m]
        assert not missing


TestQueue = QueueMachine.TestCase
TestQueue.settings = model_settings()
TestStack = StackMachine.TestCase
TestStack.settings = model_settings()


def test_bloom() -> None:
    require_map_type(MapType.BLOOM_FILTER)
    run_state_machine_as_test(BloomMachine, settings=model_settings())
