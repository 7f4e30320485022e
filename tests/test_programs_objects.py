"""BpfObject: clang-built ELF objects through libbpf, sharing maps with ebpfmaps both ways."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps.errors import IncompatibleMap, InvalidArgument, MapClosed, MapError, ProgramLoadError
from ebpfmaps.programs import BpfObject, Program, ProgramType
from tests.bpfbuild import bpf_object
from tests.conftest import bpftool_json, run_python

XDP_PASS = 2


@pytest.fixture(scope="module")
def share_obj() -> Path:
    return bpf_object("prog_share")


def test_names_types_and_map_classes(share_obj: Path, bpffs: Path) -> None:
    with BpfObject.open(share_obj, pin_root=bpffs) as obj:
        assert obj.map_names() == ["shared", "pinned_counts"]
        assert obj.program_names() == ["double_it", "bump", "count_first_byte"]
        assert obj.program_types() == {n: ProgramType.XDP for n in obj.program_names()}
        with pytest.raises(MapError, match="after load"):
            obj.maps["shared"]
        obj.load()
        shared = obj.maps["shared"]
        assert isinstance(shared, ebpfmaps.ArrayMap) and shared.value_size == 8
        typed = obj.map("shared", value_type=ctypes.c_uint64)  # the same kernel map with a codec
        assert typed.id == shared.id
        assert isinstance(obj.maps["pinned_counts"], ebpfmaps.HashMap)
        assert obj.maps["pinned_counts"].pin_path == str(bpffs / "pinned_counts")
        prog = obj.programs["bump"]
        assert isinstance(prog, Program) and prog.section == "xdp" and prog.type == ProgramType.XDP
        with pytest.raises(KeyError, match="has: double_it, bump"):
            obj.programs["nope"]
        # bpftool sees the program using the map ebpfmaps wrapped
        shown = bpftool_json("prog", "show", "id", str(prog.id))
        assert isinstance(shown, dict) and shared.id in shown["map_ids"]
    # maps and programs taken from the object outlive it: they hold their own fds
    assert prog.test_run(data=b"\0" * 32).retval == XDP_PASS
    # The object's BTF types the map (__u64 values); typed=False reads the bytes.
    assert typed[1] == 1 and shared[1] == 1 and shared.lookup_bytes(1) == (1).to_bytes(8, "little")
    with pytest.raises(MapClosed):
        obj.maps["shared"]


def test_reuse_a_live_map_handed_over(share_obj: Path, bpffs: Path) -> None:
    shared = ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4)
    shared[0] = 21
    with BpfObject.open(share_obj, pin_root=bpffs, reuse={"shared": shared}) as obj:
        obj.load()
        assert obj.maps["shared"] is shared  # the very object handed over
        assert obj.programs["double_it"].test_run(data=b"\0" * 32).retval == XDP_PASS
        assert shared[0] == 42
        shared[0] = 50
        obj.programs["double_it"].test_run(data=b"\0" * 32)
        assert shared[0] == 100
        shown = bpftool_json("prog", "show", "id", str(obj.programs["double_it"].id))
        assert isinstance(shown, dict) and shown["map_ids"][0] == shared.id


def test_reuse_refuses_an_incompatible_map_before_loading(share_obj: Path, bpffs: Path) -> None:
    wrong = ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=4)
    with pytest.raises(IncompatibleMap) as info:
        BpfObject.open(share_obj, pin_root=bpffs, reuse={"shared": wrong})
    diffs = " ".join(info.value.differences)
    assert "type: map has hash, the object declares array" in diffs and "value_size: map has 4" in diffs
    with pytest.raises(KeyError, match="no map named 'sharde'"):
        BpfObject.open(share_obj, pin_root=bpffs, reuse={"sharde": wrong})
    with pytest.raises(InvalidArgument, match="must be an ebpfmaps Map"):
        BpfObject.open(share_obj, pin_root=bpffs, reuse={"shared": 3})  # type: ignore[dict-item]


def test_pin_root_reuses_a_map_ebpfmaps_pinned_first(share_obj: Path, bpffs: Path) -> None:
    counts = ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=128,
                             name="pinned_counts")
    counts[9] = 1000
    counts.pin(bpffs / "pinned_counts")
    with BpfObject.open(share_obj, pin_root=bpffs) as obj:
        obj.load()
        assert obj.maps["pinned_counts"].id == counts.id  # libbpf reused our pinned map
        obj.programs["count_first_byte"].test_run(data=b"\x09" * 32, repeat=5)
    assert counts[9] == 1005


def test_pin_root_mismatch_is_reported_with_libbpfs_reason(share_obj: Path, bpffs: Path) -> None:
    wrong = ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=128)
    wrong.pin(bpffs / "pinned_counts")
    with BpfObject.open(share_obj, pin_root=bpffs) as obj, pytest.raises(ProgramLoadError) as info:
        obj.load()
    assert "pinned_counts" in str(info.value) and "mismatch" in info.value.log


def test_object_pins_a_map_that_another_process_opens(share_obj: Path, bpffs: Path) -> None:
    with BpfObject.open(share_obj, pin_root=bpffs) as obj:
        obj.load()
        obj.programs["count_first_byte"].test_run(data=b"\x03" * 32, repeat=11)
    out = run_python(
        "import sys, ctypes, ebpfmaps\n"
        "m = ebpfmaps.open_pinned(sys.argv[1], key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)\n"
        "print(type(m).__name__, m[3])\n",
        str(bpffs / "pinned_counts"),
    )
    assert out.stdout.split() == ["HashMap", "11"]


def test_pin_paths_and_max_entries_options(share_obj: Path, bpffs: Path) -> None:
    with BpfObject.open(share_obj, pin_root=bpffs, pin_paths={"shared": bpffs / "my_shared"},
                        max_entries={"shared": 16}) as obj:
        obj.load()
        assert obj.maps["shared"].max_entries == 16
    m = ebpfmaps.open_pinned(bpffs / "my_shared")
    assert isinstance(m, ebpfmaps.ArrayMap) and m.max_entries == 16


def test_verifier_refusal_reaches_the_exception(bpffs: Path) -> None:
    with BpfObject.open(bpf_object("prog_bad"), pin_root=bpffs) as obj:
        with pytest.raises(ProgramLoadError) as info:
            obj.load()
    exc = info.value
    assert "reads_past_the_packet" in exc.log
    assert "invalid access to packet" in exc.log and "invalid access to packet" in str(exc)


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no BPF object file"):
        BpfObject.open(tmp_path / "missing.o")
    junk = tmp_path / "junk.o"
    junk.write_bytes(b"not an ELF file at all")
    with pytest.raises(ProgramLoadError, match="cannot open"):
        BpfObject.open(junk)


def test_long_libbpf_messages_arrive_whole(tmp_path: Path, bpffs: Path) -> None:
    """A libbpf message longer than the first 1 KiB format buffer is formatted again in full (va_list copy)."""
    deep = tmp_path
    for i in range(6):
        deep = deep / (f"d{i}_" + "x" * 200)
    deep.mkdir(parents=True)
    obj_path = deep / "prog_bad.bpf.o"
    obj_path.write_bytes(bpf_object("prog_bad").read_bytes())
    assert len(str(obj_path)) > 1100
    with BpfObject.open(obj_path, pin_root=bpffs) as obj, pytest.raises(ProgramLoadError) as info:
        obj.load()
    # libbpf: "failed to load object '<path>'" — the whole path, past the first buffer
    assert any(str(obj_path) in line and len(line) > 1100 for line in info.value.log.splitlines())
