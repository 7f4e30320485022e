"""The callback contract: None means unchanged everywhere, hiding is explicit (HIDDEN or KeyNotFound),
lookup_and_delete never removes what it does not return, every provider exception is wrapped with the
callback's name, and reconcile()/observe() deliver changes made outside the shim once, in batches."""

from __future__ import annotations

import contextlib
import ctypes
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from ebpfmaps_shim import (
    HIDDEN,
    DeleteReason,
    ExtensibleMap,
    ExternalChange,
    MapProvider,
    ProviderContractError,
    ProviderError,
    ProviderNotificationFailed,
    ProviderRefused,
    register_provider,
    unregister_provider,
)

import ebpfmaps
from ebpfmaps import BPF_NOEXIST, KeyExists, KeyNotFound, MapType
from ebpfmaps.errors import InvalidArgument
from tests.shim_helpers import U32, next_type_id, val


class Counting(MapProvider):
    """The first provider anyone writes: it counts calls and returns nothing."""

    def __init__(self, base: int = int(MapType.HASH)) -> None:
        self.custom_map_type = next_type_id()
        self.base_map_type = base
        self.calls: dict[str, int] = {}
        self.deleted: list[tuple[int, bytes, DeleteReason]] = []
        self.changes: list[list[ExternalChange]] = []
        self.delivered = threading.Event()

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def find_element_notify(self, m: Any, key: bytes, stored: bytes) -> None:
        self._count("find")

    def update_element_notify(self, m: Any, key: bytes, value: bytes, flags: int) -> None:
        self._count("update")

    def get_next_key_and_value_notify(self, m: Any, key: bytes | None, next_key: bytes, stored: bytes) -> None:
        self._count("next")

    def delete_element_notify(self, m: Any, key: bytes, stored: bytes, reason: DeleteReason) -> None:
        self.deleted.append((U32.unpack(key)[0], stored, reason))


class Batched(Counting):
    def external_change_notify(self, m: Any, changes: list[ExternalChange]) -> None:
        self.changes.append(list(changes))
        self.delivered.set()


@pytest.fixture
def provider() -> Iterator[Any]:
    made: list[Any] = []

    def make(cls: type[Counting] = Counting, **kw: Any) -> Any:
        p = register_provider(cls(**kw))
        made.append(p)
        return p

    yield make
    for p in made:
        with contextlib.suppress(Exception):
            unregister_provider(p)


def _map(p: Any, **kw: Any) -> ExtensibleMap:
    args: dict[str, Any] = {"key_type": ctypes.c_uint32, "value_size": 8, "max_entries": 16}
    args.update(kw)
    m = ebpfmaps.create(p.custom_map_type, **args)
    assert isinstance(m, ExtensibleMap)
    return m


def test_a_provider_that_returns_nothing_hides_and_destroys_nothing(provider: Any) -> None:
    p = provider()
    with _map(p) as m:
        m[1], m[2] = val(1), val(2)
        assert m.lookup(1) == val(1) and 1 in m and m.get(2) == val(2)
        assert len(m) == 2
        assert sorted(m.items()) == [(1, val(1)), (2, val(2))]
        assert m.lookup_batch() == {1: val(1), 2: val(2)}
        with pytest.raises(KeyExists):
            m.update(1, val(9), BPF_NOEXIST)  # exists, and lookup agrees
        assert m.lookup_and_delete(1) == val(1)  # the value comes back with its removal
        assert p.deleted == [(1, val(1), DeleteReason.USER_DELETE)]
        assert m.lookup_and_delete_batch() == {2: val(2)}
        assert p.calls["find"] >= 4 and p.calls["next"] >= 2 and p.calls["update"] == 2


class Hiding(Counting):
    """Hides key 3 with HIDDEN and key 4 by raising KeyNotFound; refuses to read key 5."""

    def find_element_notify(self, m: Any, key: bytes, stored: bytes) -> Any:
        k = U32.unpack(key)[0]
        if k == 3:
            return HIDDEN
        if k == 4:
            raise KeyNotFound("expired")
        if k == 5:
            raise RuntimeError("key 5 is unreadable")
        return None

    def get_next_key_and_value_notify(self, m: Any, key: bytes | None, next_key: bytes, stored: bytes) -> Any:
        return self.find_element_notify(m, next_key, stored)


def test_hiding_is_explicit_and_lookup_and_delete_keeps_what_it_does_not_return(provider: Any) -> None:
    p = provider(Hiding)
    with _map(p) as m:
        for k in (1, 3, 4, 5):
            m[k] = val(k)
        assert m.lookup(3) is None and 3 not in m and m.lookup(4) is None
        for k in (3, 4):
            with pytest.raises(KeyNotFound):
                m.lookup_and_delete(k)
            assert m.base.lookup_bytes(U32.pack(k)) == val(k)  # still stored: not returned, not removed
        with pytest.raises(ProviderRefused, match="key 5 is unreadable") as caught:
            m.lookup_and_delete(5)
        assert caught.value.callback == "find_element_notify"
        assert isinstance(caught.value.__cause__, RuntimeError)
        assert m.base.lookup_bytes(U32.pack(5)) == val(5)
        with pytest.raises(ProviderRefused) as caught:
            m.lookup(5)
        with pytest.raises(ProviderRefused) as caught:
            list(m.items())
        assert caught.value.callback == "get_next_key_and_value_notify"
        del m[5]
        assert p.deleted == [(5, val(5), DeleteReason.USER_DELETE)]
        assert sorted(m.keys()) == [1]
        assert m.lookup_and_delete_batch() == {1: val(1)}  # drains what it shows...
        assert sorted(U32.unpack(k)[0] for k, _ in m.base.raw_pairs(values=False)) == [3, 4]  # ...keeps the rest
        with pytest.raises(KeyExists):
            m.update(3, val(0), BPF_NOEXIST)  # a hidden element still occupies its key (documented)


class Failing(Counting):
    def delete_element_notify(self, m: Any, key: bytes, stored: bytes, reason: DeleteReason) -> None:
        raise OSError("disk full")


def test_a_failing_notification_says_the_change_stands(provider: Any) -> None:
    p = provider(Failing)
    with _map(p) as m:
        m[1] = val(1)
        with pytest.raises(ProviderNotificationFailed, match="disk full") as caught:
            del m[1]
        assert caught.value.callback == "delete_element_notify" and isinstance(caught.value, ProviderError)
        assert 1 not in m  # a notification comes after the change


def _bpftool(*args: str) -> None:
    subprocess.run(["bpftool", "map", *args], check=True, capture_output=True, timeout=60)


def _hex(data: bytes) -> list[str]:
    return [f"0x{b:02x}" for b in data]


def test_reconcile_sees_bpftool_writes_once_and_not_the_shims_own(provider: Any) -> None:
    p = provider(Batched)
    with _map(p) as m:
        m[1], m[2] = val(1), val(2)
        assert m.reconcile() == []  # the baseline
        m[3] = val(3)
        del m[1]
        assert m.reconcile() == []  # writes through the shim are not outside changes
        mid = str(m.map_id)
        _bpftool("update", "id", mid, "key", *_hex(U32.pack(2)), "value", *_hex(val(20)))
        _bpftool("update", "id", mid, "key", *_hex(U32.pack(9)), "value", *_hex(val(9)))
        _bpftool("delete", "id", mid, "key", *_hex(U32.pack(3)))
        changes = m.reconcile()
        assert sorted((U32.unpack(c.key)[0], c.old, c.new, c.reason) for c in changes) == [
            (2, val(2), val(20), DeleteReason.EXTERNAL_UPDATE),
            (3, val(3), None, DeleteReason.EXTERNAL_DELETE),
            (9, None, val(9), DeleteReason.EXTERNAL_UPDATE),
        ]
        assert p.changes == [changes] and m.reconcile() == []
        assert p.deleted == [(1, val(1), DeleteReason.USER_DELETE)]  # the batch callback took the rest


def test_reconcile_batches_and_falls_back_to_delete_notifications(provider: Any) -> None:
    batched = provider(Batched)
    with _map(batched, max_entries=64) as m:
        m.reconcile()
        m.base.update_batch(b"".join(U32.pack(k) for k in range(10)), b"".join(val(k) for k in range(10)))
        changes = m.reconcile(batch_size=4)
        assert [len(b) for b in batched.changes] == [4, 4, 2] and len(changes) == 10
    plain = provider()
    with _map(plain) as m:
        m[1] = val(1)
        m.reconcile()
        m.base.update(U32.pack(1), val(11))
        m.base.delete(U32.pack(1))
        assert [c.reason for c in m.reconcile()] == [DeleteReason.EXTERNAL_DELETE]
        # the stored value that left is told through delete_element_notify, with the change's reason
        assert plain.deleted == [(1, val(1), DeleteReason.EXTERNAL_DELETE)]


def test_lru_evictions_are_told_as_evicted(provider: Any) -> None:
    p = provider(Batched, base=int(MapType.LRU_HASH))
    with _map(p, max_entries=64) as m:
        for k in range(64):
            m[k] = val(k)
        m.reconcile()
        # Writes behind the shim's back into a full LRU map: the kernel evicts old keys to make room.
        for k in range(1000, 1200):
            m.base.update(U32.pack(k), val(k))
        changes = m.reconcile()
        gone = [c for c in changes if c.new is None]
        assert gone and all(c.reason is DeleteReason.EVICTED for c in gone)
        stored = {k for k, _ in m.base.raw_pairs(values=False)}
        assert {c.key for c in changes if c.new is not None} <= stored
        assert {c.key for c in gone}.isdisjoint(stored)


def test_observe_runs_reconcile_in_the_background_until_stopped(provider: Any) -> None:
    p = provider(Batched)
    m = _map(p)
    try:
        m.reconcile()
        observer = m.observe(interval=0.01)
        assert observer is not None and observer.running
        m.base.update(U32.pack(7), val(7))
        assert p.delivered.wait(120), "the observer never delivered the outside write"
        assert [(c.key, c.reason) for batch in p.changes for c in batch] == [
            (U32.pack(7), DeleteReason.EXTERNAL_UPDATE)]
        assert m.observe(None) is None and not observer.running
        with pytest.raises(InvalidArgument):
            m.observe(interval=0)
        again = m.observe(interval=3600)
        assert again is not None
    finally:
        m.close()  # stops the observer
    assert not again.running


def test_reconcile_on_an_array_base_reports_updates_only(provider: Any) -> None:
    p = provider(Batched, base=int(MapType.ARRAY))
    with _map(p, max_entries=4) as m:
        m.reconcile()
        m.base.update(U32.pack(2), val(5))
        changes = m.reconcile()
        assert [(c.key, c.old, c.new, c.reason) for c in changes] == [
            (U32.pack(2), bytes(8), val(5), DeleteReason.EXTERNAL_UPDATE)]


def test_returns_of_the_wrong_type_never_become_bytes(provider: Any) -> None:
    class IntReturning(Counting):
        def get_next_key_and_value_notify(self, m: Any, key: bytes | None, next_key: bytes, stored: bytes) -> Any:
            return 8

    p = provider(IntReturning)
    with _map(p) as m:
        m[1] = val(1)
        with pytest.raises(ProviderContractError, match="returned int"):
            list(m.values())


def test_reconcile_from_inside_a_write_callback_does_not_deadlock(provider: Any) -> None:
    class Reconciling(Batched):
        def delete_element_notify(self, m: Any, key: bytes, stored: bytes, reason: DeleteReason) -> None:
            super().delete_element_notify(m, key, stored, reason)
            if reason is DeleteReason.REPLACED:
                m.reconcile()  # this thread holds the key's stripe: reconcile must not wait for it

    p = provider(Reconciling)
    with _map(p) as m:
        m[1] = val(1)
        m.reconcile()
        m.base.update(U32.pack(2), val(2))
        m[1] = val(10)  # REPLACED -> the callback reconciles: finds key 2, not the shim's own write
        assert [(c.key, c.new) for batch in p.changes for c in batch] == [(U32.pack(2), val(2))]
