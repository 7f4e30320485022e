"""ARRAY_OF_MAPS and HASH_OF_MAPS: round trips through the kernel, template checks, bpftool's view."""

from __future__ import annotations

import ctypes
import gc
import os
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import BPF_EXIST, MapSpec, MapType
from ebpfmaps.errors import IncompatibleMap, InvalidArgument, InvalidValueSize, KeyNotFound
from tests.conftest import run_python
from tests.types_support import bpftool, hex_bytes


def _inner() -> ebpfmaps.HashMap:
    return ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=16)


def test_array_of_maps_round_trip_by_id() -> None:
    template = _inner()
    with ebpfmaps.ArrayOfMaps(max_entries=4, inner_map=template, name="aom_rt") as outer:
        a, b = _inner(), _inner()
        a[1] = 100
        outer[0] = a
        outer[3] = b
        got = outer[0]
        assert isinstance(got, ebpfmaps.HashMap) and got.id == a.id == outer.inner_id(0)
        assert got[1] == 100  # the template's codecs decode the opened inner map
        got[2] = 200  # writing through the opened map writes the same kernel map
        assert a[2] == 200
        assert outer.lookup(1) is None and outer.get(2, "none") == "none"
        assert outer.inner_ids() == {0: a.id, 3: b.id}
        assert [k for k, _ in outer.items()] == [0, 3]
        del outer[3]
        assert outer.lookup(3) is None
        # The outer map holds its own reference: the inner map outlives our objects.
        a_id = a.id
        a.close()
        got.close()
        gc.collect()
        again = outer[0]
        assert again.id == a_id and again[1] == 100
        again.close()
        b.close()
    template.close()


def test_hash_of_maps_from_a_spec_and_iteration() -> None:
    spec = MapSpec(type=int(MapType.ARRAY), key_size=4, value_size=8, max_entries=4)
    with ebpfmaps.HashOfMaps(key_type="=Q", max_entries=8, inner_map=spec) as outer:
        assert outer.inner_spec == spec
        inners = {k: ebpfmaps.ArrayMap(value_type=ctypes.c_uint64, max_entries=4) for k in (10, 20, 30)}
        for k, m in inners.items():
            m[0] = k * 2
            outer[k] = m
        opened = {k: m for k, m in outer.items()}
        assert set(opened) == {10, 20, 30}
        for k, m in opened.items():
            assert isinstance(m, ebpfmaps.ArrayMap) and m.id == inners[k].id
            assert m.lookup_bytes(0) == (k * 2).to_bytes(8, "little")  # opened from a spec: raw values
        assert len(outer) == 3
        for m in [*inners.values(), *opened.values()]:
            m.close()


def test_incompatible_inner_maps_are_refused() -> None:
    template = _inner()
    with ebpfmaps.ArrayOfMaps(max_entries=2, inner_map=template) as outer:
        wrong = ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=16)
        with pytest.raises(IncompatibleMap, match="value_size"):
            outer[0] = wrong  # found before the syscall
        arr = ebpfmaps.ArrayMap(value_size=8, max_entries=16)
        with pytest.raises(IncompatibleMap, match="type"):
            outer[0] = arr
        assert outer.lookup(0) is None  # nothing was stored
        wrong.close()
        arr.close()
    template.close()
    with pytest.raises(InvalidArgument, match="inner_map"):
        ebpfmaps.ArrayOfMaps(max_entries=2)
    with pytest.raises(InvalidValueSize):
        ebpfmaps.HashOfMaps(key_size=4, value_size=8, max_entries=2, inner_map=_inner().spec)


def test_array_inner_max_entries_and_inner_map_flag() -> None:
    small = ebpfmaps.ArrayMap(value_size=4, max_entries=4)
    big = ebpfmaps.ArrayMap(value_size=4, max_entries=64)
    with ebpfmaps.ArrayOfMaps(max_entries=2, inner_map=small) as strict:
        with pytest.raises(IncompatibleMap, match="max_entries"):
            strict[0] = big
    flexible_template = ebpfmaps.ArrayMap(value_size=4, max_entries=4, flags=ebpfmaps.maptypes.BPF_F_INNER_MAP)
    flexible_big = ebpfmaps.ArrayMap(value_size=4, max_entries=64, flags=ebpfmaps.maptypes.BPF_F_INNER_MAP)
    with ebpfmaps.ArrayOfMaps(max_entries=2, inner_map=flexible_template) as flexible:
        flexible[0] = flexible_big  # BPF_F_INNER_MAP: the kernel lets max_entries differ
        assert flexible[0].max_entries == 64
    for m in (small, big, flexible_template, flexible_big):
        m.close()


def test_kernel_refusal_of_an_opened_outer_map_is_incompatible_map(pin_path: Path) -> None:
    template = _inner()
    with ebpfmaps.ArrayOfMaps(max_entries=2, inner_map=template) as outer:
        outer.pin(pin_path)
        reopened = ebpfmaps.open_pinned(pin_path)
        assert isinstance(reopened, ebpfmaps.ArrayOfMaps) and reopened.inner_spec is None
        wrong = ebpfmaps.HashMap(key_size=8, value_size=8, max_entries=16)
        with pytest.raises(IncompatibleMap, match="kernel refused"):
            reopened[0] = wrong  # no template known here: the kernel's check speaks
        reopened[1] = template
        assert reopened[1].id == template.id
        reopened.close()
        wrong.close()
    template.close()


def test_bpftool_and_another_process_see_the_inner_map(pin_path: Path) -> None:
    inner = _inner()
    inner[5] = 55
    with ebpfmaps.HashOfMaps(key_size=4, max_entries=4, inner_map=inner) as outer:
        outer[b"abcd"] = inner
        outer.pin(pin_path)
        dump = bpftool("map", "dump", "pinned", str(pin_path))
        assert [(hex_bytes(e["key"]), int.from_bytes(hex_bytes(e["value"]), "little")) for e in dump] == \
            [(b"abcd", inner.id)]
        assert bpftool("map", "show", "pinned", str(pin_path))["type"] == "hash_of_maps"
        out = run_python(
            "import sys, ebpfmaps\n"
            "outer = ebpfmaps.open_pinned(sys.argv[1])\n"
            "m = outer[b'abcd']\n"
            "print(m.id, int.from_bytes(m.lookup_bytes((5).to_bytes(4, 'little')), 'little'))\n",
            str(pin_path))
        assert out.stdout.split() == [str(inner.id), "55"]
    inner.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_failed_exist_batch_puts_back_inner_maps_held_only_by_the_outer_map() -> None:
    """The undo of a failed BPF_EXIST batch stores back the very inner maps it replaced (a lookup gives
    their ids, an update takes fds), even when nothing but the outer map held them."""
    with _inner() as b, ebpfmaps.HashOfMaps(key_type=ctypes.c_uint32, max_entries=4, inner_map=b) as outer:
        ids = {}
        for key in (0, 2):
            with _inner() as a:
                a[7] = key + 100
                outer[key] = a
                ids[key] = a.id
        before = _open_fds()
        with pytest.raises(KeyNotFound):
            outer.update_batch([0, 2, 3], [b, b, b], BPF_EXIST)  # 0 and 2 replaced, 3 absent: undone
        assert outer.inner_ids() == ids
        for key in (0, 2):
            with outer[key] as again:
                assert again.to_dict() == {7: key + 100}
        assert _open_fds() == before  # the inner maps held for the undo are closed again
