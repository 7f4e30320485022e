"""Arguments of the wrong type or range reach the library's checks, not Python's or ctypes': each is a
MapError subclass raised before any syscall, and the map is left as it was."""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import ebpfmaps
from ebpfmaps import BPF_ANY, errors


@pytest.fixture
def m() -> Iterator[ebpfmaps.HashMap]:
    with ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=8) as h:
        h.update_batch([1, 2], [10, 20])
        yield h


BATCH_READS: dict[str, Callable[[Any, Any], Any]] = {
    "lookup_batch": lambda m, n: m.lookup_batch(batch_size=n),
    "iter_batches": lambda m, n: list(m.iter_batches(n)),
    "iter_batches_raw": lambda m, n: list(m.iter_batches_raw(n)),
    "raw_chunks": lambda m, n: list(m.raw_chunks(batch_size=n)),
    "lookup_and_delete_batch": lambda m, n: m.lookup_and_delete_batch(batch_size=n),
}


@pytest.mark.parametrize("op", sorted(BATCH_READS))
@pytest.mark.parametrize("size", [2**32, 2**40, 2**64, 2**200])
def test_huge_batch_size_is_capped_at_what_the_map_holds(m: ebpfmaps.HashMap, op: str, size: int) -> None:
    # Without the cap, batch_size x (key + value) bytes would be allocated (12 TB for 2**40).
    got = BATCH_READS[op](m, size)
    flat = got if isinstance(got, dict) else {}
    if op == "iter_batches":
        flat = dict(pair for chunk in got for pair in chunk)
    elif op in ("iter_batches_raw", "raw_chunks"):
        assert sum(count for _, _, count in got) == 2
        return
    assert flat == {1: 10, 2: 20}


@pytest.mark.parametrize("op", sorted(BATCH_READS))
@pytest.mark.parametrize("size", ["x", None, math.inf, 1.5, True, 0, -1, -(2**70)])
def test_batch_size_must_be_a_positive_int(m: ebpfmaps.HashMap, op: str, size: Any) -> None:
    with pytest.raises(errors.InvalidArgument):
        BATCH_READS[op](m, size)
    assert m.to_dict() == {1: 10, 2: 20}


def test_batch_size_on_a_map_of_maps_and_an_extensible_shaped_walk() -> None:
    with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=2) as tmpl, \
            ebpfmaps.HashOfMaps(key_type=ctypes.c_uint32, max_entries=4, inner_map=tmpl) as outer:
        with pytest.raises(errors.InvalidArgument):
            outer.lookup_batch(batch_size="x")  # type: ignore[arg-type]
        assert outer.lookup_batch(batch_size=2**40) == {}


@pytest.mark.parametrize("bad", [None, 1.5, 7, object()], ids=["None", "float", "int", "object"])
def test_batch_keys_and_values_that_are_not_iterable(m: ebpfmaps.HashMap, bad: Any) -> None:
    calls = [lambda: m.delete_batch(bad), lambda: m.update_batch(bad, [1]), lambda: m.update_batch([1], bad)]
    if bad is not None:  # lookup_batch(None) reads every entry
        calls.append(lambda: m.lookup_batch(bad))
    for call in calls:
        with pytest.raises(errors.InvalidArgument):
            call()
    assert m.to_dict() == {1: 10, 2: 20}


@pytest.mark.parametrize("bad", [[2], [], "", "x", 0.0, 2.0, False, (), b""])
def test_flags_of_another_type_are_invalid_flags(m: ebpfmaps.HashMap, bad: Any) -> None:
    # None and the int 0 are "no flags"; every other spelling, empty or false ones included, is refused.
    with pytest.raises(errors.InvalidFlags):
        m.update(1, 99, bad)
    with pytest.raises(errors.InvalidFlags):
        m.update_batch([1], [99], bad)
    with pytest.raises(errors.InvalidFlags):
        m.lookup(1, bad)
    assert m.to_dict() == {1: 10, 2: 20}
    m.update(3, 30, BPF_ANY)
    m.update(4, 40, None)  # type: ignore[arg-type]
    assert m.lookup(3, 0) == 30


@pytest.mark.parametrize("path", [0, None, object(), 6469693231, b"/sys/fs/bpf/x", 1.5],
                         ids=["zero", "None", "object", "big-int", "bytes", "float"])
def test_pin_paths_that_are_not_str_are_invalid_arguments(m: ebpfmaps.HashMap, path: Any, bpffs: Path) -> None:
    before = sorted(bpffs.iterdir())
    for call in (lambda: m.pin(path), lambda: ebpfmaps.unpin(path), lambda: ebpfmaps.open_pinned(path)):
        with pytest.raises(errors.InvalidArgument):
            call()
    if path is not None:  # m.unpin(None) means "this map's own pin"
        with pytest.raises(errors.InvalidArgument):
            m.unpin(path)
    assert sorted(bpffs.iterdir()) == before and m.pin_path is None


@pytest.mark.parametrize("fmt", ["../x", "é", "Q\x00", "9999999999999999999999Q", "=Z"])
@pytest.mark.parametrize("role", ["key_type", "value_type"])
def test_bad_struct_format_as_a_type_is_invalid_argument(fmt: str, role: str) -> None:
    kw: dict[str, Any] = {"key_size": 4, "value_size": 8, "max_entries": 4}
    kw[role] = fmt
    del kw[role.replace("_type", "_size")]
    with pytest.raises(errors.InvalidArgument, match="struct format"):
        ebpfmaps.create("hash", **kw)


@pytest.mark.parametrize("address", [-(2**200), -1, 2**32, 2**200])
def test_lpm_integer_address_out_of_range_is_invalid_argument(address: int) -> None:
    with ebpfmaps.LpmTrieMap(family="ipv4", value_type=ctypes.c_uint32, max_entries=4) as t:
        t["10.0.0.0/8"] = 1
        with pytest.raises(errors.InvalidArgument):
            t.longest_match(address)
        assert t.longest_match(0x0A010203) == 1


@pytest.mark.parametrize("kind", [0, "hash", "array"])
@pytest.mark.parametrize("bad", [bytearray(4), b"\x04", [4], 4.0], ids=["bytearray", "bytes", "list", "float"])
def test_non_numeric_create_sizes_are_invalid_arguments(kind: Any, bad: Any) -> None:
    for field in ("key_size", "value_size", "max_entries"):
        kw: dict[str, Any] = {"key_size": 4, "value_size": 4, "max_entries": 4, field: bad}
        with pytest.raises(errors.InvalidArgument):
            ebpfmaps.create(kind, **kw)


@pytest.mark.parametrize(("kind", "extra"), [("hash", {"family": 6}), ("lru-percpu-hash", {"nr_hashes": 3}),
                                             ("devmap", {"mmapable": True}), (0, {"family": "ipv4"})])
def test_create_with_an_argument_the_type_does_not_take(kind: Any, extra: dict[str, Any]) -> None:
    with pytest.raises(errors.InvalidArgument, match="takes no"):
        ebpfmaps.create(kind, key_size=4, value_size=4, max_entries=4, **extra)
