"""Port of tools/testing/selftests/bpf/map_tests/{htab,array,lpm_trie}_map_batch_ops.c.

The C calls bpf_map_lookup_batch / bpf_map_lookup_and_delete_batch with ``count = step`` and follows
the batch cursor; the library's ``iter_batches(batch_size=step, delete=...)`` is that loop (one list per
kernel call). A hash bucket holding more than ``step`` elements makes the kernel answer ENOSPC: the C
gives up on that step ("go with large steps"), the library grows the batch and goes on, so every step
here checks the whole map.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress

import pytest

import ebpfmaps
from ebpfmaps.errors import NotSupported
from ebpfmaps.maptypes import MapType
from tests.kernel_features import require_batch_ops

MAX_ENTRIES = 10
NR_CPUS = ebpfmaps.possible_cpus()


def _chunked(seq: list[int], step: int) -> list[list[int]]:
    return [seq[i:i + step] for i in range(0, len(seq), step)]


# ---------------------------------------------------------------------------------------------- hash
def _htab_batch_update(m: ebpfmaps.Map, is_pcpu: bool) -> tuple[list[int], list[object]]:
    """htab_map_batch_ops.c: map_batch_update: keys i+1, values i+2 (+j on CPU j), one update_batch."""
    keys = [i + 1 for i in range(MAX_ENTRIES)]
    values: list[object] = [[i + 2 + j for j in range(NR_CPUS)] if is_pcpu else i + 2 for i in range(MAX_ENTRIES)]
    assert m.update_batch(keys, values) == MAX_ENTRIES
    return keys, values


def _htab_batch_verify(pairs: list[tuple[int, object]], is_pcpu: bool) -> None:
    """htab_map_batch_ops.c: map_batch_verify: value = key + 1 (+j on CPU j), every key visited once."""
    visited = {}
    for key, value in pairs:
        if is_pcpu:
            assert list(value) == [key + 1 + j for j in range(NR_CPUS)], key  # type: ignore[call-overload]
        else:
            assert value == key + 1, key
        visited[key] = visited.get(key, 0) + 1
    assert visited == {k: 1 for k in range(1, MAX_ENTRIES + 1)}


@pytest.mark.parametrize("is_pcpu", [False, True], ids=["htab_map_batch_ops", "htab_percpu_map_batch_ops"])
def test_htab_map_batch_ops(is_pcpu: bool) -> None:
    """htab_map_batch_ops.c: __test_map_lookup_and_delete_batch (htab_map_batch_ops, htab_percpu_map_batch_ops)."""
    cls = ebpfmaps.PerCpuHashMap if is_pcpu else ebpfmaps.HashMap
    with cls(key_type=ctypes.c_int, value_type=ctypes.c_int, max_entries=MAX_ENTRIES, name="hash_map") as m:
        # test 1: lookup/delete an empty hash table: ENOENT, nothing returned.
        assert m.lookup_and_delete_batch(batch_size=MAX_ENTRIES) == {}
        assert list(m.iter_batches(MAX_ENTRIES, delete=True)) == []

        _htab_batch_update(m, is_pcpu)
        # test 2 (count = 0) has no spelling here: batch_size is at least 1.
        # test 3: lookup/delete with count = max_entries.
        got = m.lookup_and_delete_batch(batch_size=MAX_ENTRIES)
        assert len(got) == MAX_ENTRIES
        _htab_batch_verify(list(got.items()), is_pcpu)
        # The map is empty afterwards (get_next_key would answer ENOENT).
        assert list(m.keys()) == []

        # test 4: lookup, delete, lookup-and-delete in a loop with various steps.
        for step in range(1, MAX_ENTRIES):
            keys, _ = _htab_batch_update(m, is_pcpu)
            chunks = list(m.iter_batches(step))
            assert all(chunks)
            pairs = [p for chunk in chunks for p in chunk]
            assert len(pairs) == MAX_ENTRIES, f"lookup with steps: step {step}"
            _htab_batch_verify(pairs, is_pcpu)

            # delete_batch with 'step' keys each, in the order the lookup returned them.
            looked_up = [k for k, _ in pairs]
            total = sum(m.delete_batch(chunk) for chunk in _chunked(looked_up, step))
            assert total == MAX_ENTRIES, f"delete with steps: step {step}"
            assert list(m.keys()) == []

            _htab_batch_update(m, is_pcpu)
            chunks = list(m.iter_batches(step, delete=True))
            pairs = [p for chunk in chunks for p in chunk]
            assert len(pairs) == MAX_ENTRIES, f"lookup/delete with steps: step {step}"
            _htab_batch_verify(pairs, is_pcpu)
            assert list(m.keys()) == []
            assert sorted(keys) == sorted(k for k, _ in pairs)


# ---------------------------------------------------------------------------------------------- array
def _array_batch_update(m: ebpfmaps.Map, is_pcpu: bool) -> None:
    """array_map_batch_ops.c: map_batch_update: keys i, values i+1 (+j on CPU j)."""
    keys = list(range(MAX_ENTRIES))
    values: list[object] = [[i + 1 + j for j in range(NR_CPUS)] if is_pcpu else i + 1 for i in range(MAX_ENTRIES)]
    assert m.update_batch(keys, values) == MAX_ENTRIES


def _array_batch_verify(pairs: list[tuple[int, object]], is_pcpu: bool) -> None:
    """array_map_batch_ops.c: map_batch_verify: value = key + 1 (+j on CPU j), every index visited once."""
    for key, value in pairs:
        if is_pcpu:
            assert list(value) == [key + j + 1 for j in range(NR_CPUS)], key  # type: ignore[call-overload]
        else:
            assert value == key + 1, key
    assert sorted(k for k, _ in pairs) == list(range(MAX_ENTRIES))


@pytest.mark.parametrize("is_pcpu", [False, True], ids=["array_map_batch_ops", "array_percpu_map_batch_ops"])
def test_array_map_batch_ops(is_pcpu: bool) -> None:
    """array_map_batch_ops.c: __test_map_lookup_and_update_batch (array_map_batch_ops, array_percpu_map_batch_ops)."""
    cls = ebpfmaps.PerCpuArrayMap if is_pcpu else ebpfmaps.ArrayMap
    require_batch_ops(MapType.PERCPU_ARRAY if is_pcpu else MapType.ARRAY)
    with cls(value_type=ctypes.c_int64, max_entries=MAX_ENTRIES, name="array_map") as m:
        for step in range(1, MAX_ENTRIES):
            _array_batch_update(m, is_pcpu)
            chunks = list(m.iter_batches(step))
            # Arrays have no buckets: each kernel call returns exactly 'step' elements, in index order.
            assert [len(c) for c in chunks] == [len(c) for c in _chunked(list(range(MAX_ENTRIES)), step)]
            pairs = [p for chunk in chunks for p in chunk]
            assert [k for k, _ in pairs] == list(range(MAX_ENTRIES)), f"lookup with steps: step {step}"
            _array_batch_verify(pairs, is_pcpu)
        # Arrays cannot lose elements: the kernel has no (lookup_and_)delete batch for them.
        with pytest.raises(NotSupported):
            m.delete_batch([0])


# ---------------------------------------------------------------------------------------------- lpm trie
def _lpm_keys() -> list[ipaddress.IPv4Network]:
    """lpm_trie_map_batch_ops.c: map_batch_update keys: 192.168.1.(i+1)/32."""
    return [ipaddress.IPv4Network(f"192.168.1.{i + 1}/32") for i in range(MAX_ENTRIES)]


def _lpm_batch_verify(pairs: list[tuple[ipaddress.IPv4Network, int]]) -> None:
    """lpm_trie_map_batch_ops.c: map_batch_verify: the last address byte is the value, each key once."""
    for net, value in pairs:
        assert net.prefixlen == 32
        assert net.network_address.packed[:3] == bytes([192, 168, 1])
        assert net.network_address.packed[3] == value
    assert sorted(v for _, v in pairs) == list(range(1, MAX_ENTRIES + 1))


def _lpm_map() -> ebpfmaps.LpmTrieMap:
    return ebpfmaps.LpmTrieMap(family="ipv4", value_type=ctypes.c_int, max_entries=MAX_ENTRIES, name="lpm_trie_map")


def test_lpm_trie_map_batch_ops() -> None:
    """lpm_trie_map_batch_ops.c: test_lpm_trie_map_batch_ops: update_batch, lookup_batch by steps, delete_batch."""
    require_batch_ops(MapType.LPM_TRIE)
    with _lpm_map() as m:
        for step in range(1, MAX_ENTRIES):
            keys = _lpm_keys()
            assert m.update_batch(keys, [i + 1 for i in range(MAX_ENTRIES)]) == MAX_ENTRIES
            chunks = list(m.iter_batches(step))
            assert all(0 < len(c) <= step for c in chunks)
            pairs = [p for chunk in chunks for p in chunk]
            assert len(pairs) == MAX_ENTRIES, f"lookup with steps: step {step}"
            _lpm_batch_verify(pairs)
            total = sum(m.delete_batch(chunk) for chunk in _chunked([k for k, _ in pairs], step))  # type: ignore[misc]
            assert total == MAX_ENTRIES
            assert list(m.keys()) == []


def test_lpm_trie_map_batch_ops_whole_map() -> None:
    """lpm_trie_map_batch_ops.c: test_lpm_trie_map_batch_ops through the calls that work on LPM tries
    today: update_batch, lookup_batch() of the whole map, delete_batch by steps, the map empty after."""
    with _lpm_map() as m:
        for step in range(1, MAX_ENTRIES):
            keys = _lpm_keys()
            assert m.update_batch(keys, [i + 1 for i in range(MAX_ENTRIES)]) == MAX_ENTRIES
            got = m.lookup_batch()
            assert len(got) == MAX_ENTRIES
            _lpm_batch_verify(list(got.items()))
            total = sum(m.delete_batch(chunk) for chunk in _chunked(list(got), step))  # type: ignore[arg-type]
            assert total == MAX_ENTRIES, f"delete with steps: step {step}"
            # The map is empty: get_next_key answers ENOENT.
            assert list(m.keys()) == [] and len(m) == 0
        # Deleting keys that are gone: skipped (the kernel's ENOENT), nothing deleted.
        assert m.delete_batch(_lpm_keys()) == 0


def test_lpm_trie_map_batch_ops_error_codes() -> None:
    """Beside lpm_trie_map_batch_ops.c: update_batch on a full trie fails with the kernel's ENOSPC, the trie unchanged."""
    with _lpm_map() as m:
        m.update_batch(_lpm_keys(), list(range(1, MAX_ENTRIES + 1)))
        with pytest.raises(ebpfmaps.MapError) as exc:
            m.update_batch([ipaddress.IPv4Network("10.0.0.0/8")], [1])
        assert exc.value.errno == errno.ENOSPC
        assert len(m) == MAX_ENTRIES
