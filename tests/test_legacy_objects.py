"""Legacy SEC("maps") objects (struct bpf_map_def), which libbpf 1.x refuses, load through LegacyObject:
maps created from their definitions, map loads relocated, programs run and attached — checked with bpftool."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps.errors import IncompatibleMap, ProgramLoadError
from ebpfmaps.maptypes import MapType
from ebpfmaps.programs import BpfObject, LegacyObject, ProgramType, open_object
from tests.bpfbuild import bpf_object
from tests.conftest import bpftool_json


@pytest.fixture(scope="module")
def legacy_obj() -> Path:
    return bpf_object("legacy_maps")


def test_libbpf_refuses_it_and_says_what_to_use(legacy_obj: Path) -> None:
    with pytest.raises(ProgramLoadError, match="legacy map definitions") as info:
        BpfObject.open(legacy_obj)
    assert "LegacyObject" in str(info.value)


def test_maps_are_created_from_their_definitions(legacy_obj: Path) -> None:
    with LegacyObject.open(legacy_obj) as obj:
        assert obj.map_names() == ["packets", "by_length", "getppid_calls"]
        assert obj.program_names() == ["count_packets", "count_getppid"]
        obj.load()
        expected = {"packets": (MapType.ARRAY, 4, 8, 4, 0), "by_length": (MapType.HASH, 4, 8, 64, 1),
                    "getppid_calls": (MapType.PERCPU_ARRAY, 4, 8, 1, 0)}
        for name, (mtype, ks, vs, entries, flags) in expected.items():
            m = obj.maps[name]
            shown = bpftool_json("map", "show", "id", str(m.info().id))
            assert isinstance(shown, dict)
            assert (m.map_type, shown["bytes_key"], shown["bytes_value"], shown["max_entries"], shown["flags"]) == \
                (mtype, ks, vs, entries, flags)
            assert shown["name"] == name[:15]
        prog = obj.programs["count_packets"]
        assert prog.type == ProgramType.XDP and prog.section == "xdp"
        # The program refers to the maps ebpfmaps created: bpftool lists their ids in the program's.
        shown_prog = bpftool_json("prog", "show", "id", str(prog.id))
        assert isinstance(shown_prog, dict)
        assert set(shown_prog["map_ids"]) == {obj.maps["packets"].info().id, obj.maps["by_length"].info().id}


def test_programs_write_the_maps_python_reads(legacy_obj: Path) -> None:
    with LegacyObject.open(legacy_obj) as obj:
        obj.load()
        packets = obj.map("packets", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
        by_length = obj.map("by_length", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
        run = obj.programs["count_packets"].test_run(b"\0" * 64, repeat=3)
        assert run.retval == 2  # XDP_PASS
        obj.programs["count_packets"].test_run(b"\0" * 100)
        assert packets[0] == 4
        assert dict(by_length.items()) == {64: 3, 100: 1}
        links = obj.attach_all()
        assert set(links) == {"count_getppid"}
        calls = obj.map("getppid_calls", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
        with links["count_getppid"]:
            before = sum(calls[0])
            for _ in range(3):
                os.getppid()
            assert sum(calls[0]) - before >= 3


def test_reuse_hands_a_live_map_to_the_program(legacy_obj: Path) -> None:
    mine = ebpfmaps.ArrayMap(key_size=4, value_size=8, max_entries=4)
    with LegacyObject.open(legacy_obj, reuse={"packets": mine}) as obj:
        obj.load()
        assert obj.maps["packets"] is mine
        obj.programs["count_packets"].test_run(b"\0" * 64, repeat=5)
        assert int.from_bytes(mine[0], "little") == 5
    wrong = ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=4)
    with pytest.raises(IncompatibleMap, match="value_size"):
        LegacyObject.open(legacy_obj, reuse={"packets": wrong})


def test_open_object_picks_the_loader(legacy_obj: Path) -> None:
    with open_object(legacy_obj) as obj:
        assert isinstance(obj, LegacyObject)
    with open_object(bpf_object("prog_share")) as other:
        assert isinstance(other, BpfObject)
