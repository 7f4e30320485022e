"""BTF read from clang objects, the kernel and vmlinux; typed maps; bpftool-identical dumps; C and Python output.

bpftool is the independent reader throughout: its ``formatted`` JSON and its ``format c`` text
are what ebpfmaps must reproduce for the same bytes and the same BTF.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ebpfmaps
from ebpfmaps import btf, cli
from ebpfmaps.btf import BtfCodec, BtfTypes, Kind, Record
from ebpfmaps.errors import InvalidArgument
from ebpfmaps.programs import BpfObject
from tests.bpfbuild import bpf_object
from tests.conftest import ROOT, bpftool_json

XDP_PASS = 2


@pytest.fixture(scope="module")
def types_obj() -> Path:
    return bpf_object("btf_types")


@pytest.fixture(scope="module")
def kinds_obj() -> Path:
    return bpf_object("btf_kinds")


@pytest.fixture
def loaded(types_obj: Path, bpffs: Path) -> Iterator[BpfObject]:
    with BpfObject.open(types_obj, pin_root=bpffs) as obj:
        obj.load()
        yield obj


def _bpftool(*args: str) -> str:
    exe = shutil.which("bpftool") or "/usr/sbin/bpftool"
    return subprocess.run([exe, *args], capture_output=True, text=True, check=True, timeout=60).stdout


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main(list(argv))
    return rc, out.getvalue()


def _formatted_by_bpftool(map_id: int) -> dict[bytes, Any]:
    """bpftool's formatted key and value of every entry, by raw key (per-CPU: the list of values)."""
    out: dict[bytes, Any] = {}
    dump = bpftool_json("map", "dump", "id", str(map_id))
    assert isinstance(dump, list)
    for e in dump:
        kb = bytes(int(x, 16) for x in e["key"])
        f = e["formatted"]
        value = [v["value"] for v in f["values"]] if "values" in f else f["value"]
        out[kb] = {"key": f["key"], "value": value}
    return out


# ---------------------------------------------------------------------------------------- reader
def test_reader_reads_every_kind_clang_emits(kinds_obj: Path, types_obj: Path) -> None:
    t = BtfTypes.from_elf(kinds_obj)
    kinds = {x.kind for x in t} | {x.kind for x in BtfTypes.from_elf(types_obj)}
    assert kinds >= set(Kind) - {Kind.VOID, Kind.ENUM64}  # clang 14 writes no ENUM64 (see the blob test)
    tagged = t.by_name("tagged", Kind.STRUCT)
    assert [m.name for m in tagged.members] == ["hits", "buf", "ratio", "half", "hidden", "ptr", "matrix", "big"]
    members = {m.name: m for m in tagged.members}
    assert t.c_name(members["matrix"].type_id) == "int[3][2]" or t.size_of(members["matrix"].type_id) == 24
    assert t.size_of(members["matrix"].type_id) == 24 and t.size_of(members["big"].type_id) == 0
    assert t.resolve(members["ratio"].type_id).kind is Kind.FLOAT and t.size_of(members["half"].type_id) == 4
    decl = [x for x in t if x.kind is Kind.DECL_TAG]
    assert [(d.name, d.ref, d.component_idx) for d in decl] == [("counter", tagged.id, 0)]
    buf_ptr = t[members["buf"].type_id]
    assert buf_ptr.kind is Kind.PTR and t[buf_ptr.ref].kind is Kind.TYPE_TAG and t[buf_ptr.ref].name == "user"
    hidden = t[t[members["hidden"].type_id].ref]
    assert hidden.kind is Kind.CONST and t[hidden.ref].kind is Kind.FWD and t[hidden.ref].name == "opaque"
    assert t.by_name("tagged_t").kind is Kind.TYPEDEF and t.resolve(t.by_name("tagged_t").id) == tagged
    sections = {x.name: [t[s.type_id].name for s in x.secinfo] for x in t if x.kind is Kind.DATASEC}
    assert sections[".bss"] == ["counter_in_bss"] and sections[".rodata"] == ["ro_setting"]
    proto = t[t.by_name("use_tagged", Kind.FUNC).ref]
    assert proto.kind is Kind.FUNC_PROTO and [p.name for p in proto.params] == ["t"]


def test_c_output_equals_bpftool(kinds_obj: Path, types_obj: Path) -> None:
    for obj in (kinds_obj, types_obj):
        rc, text = _cli("btf", str(obj))
        assert rc == 0
        theirs = _bpftool("btf", "dump", "file", str(obj), "format", "c")
        # The system libbpf marks an 8-byte enum's size, which the libbpf bpftool was built with does not.
        assert text.replace(" __attribute__((mode(word)))", "") == theirs


def test_vmlinux_and_a_maps_kernel_btf(loaded: BpfObject) -> None:
    v = BtfTypes.vmlinux()
    lh = v.by_name("list_head", Kind.STRUCT)
    assert [m.name for m in lh.members] == ["next", "prev"] and lh.size == 16
    assert v.by_name("task_struct", Kind.STRUCT).size > 1000
    # An enum64 (pahole writes them for 64-bit enums) decodes and formats like any enum.
    for t in v:
        if t.kind is Kind.ENUM64 and t.values:
            c = BtfCodec(v, t.id)
            first = t.values[0]
            assert c.decode(c.encode(first.value)) == first.value
            assert btf.bpftool_value(v, t.id, c.encode(first.name)) == first.name
            break
    m = loaded.maps["records"]
    info = m.info()
    kt = BtfTypes.from_kernel(info.btf_id)
    assert kt.c_name(info.btf_value_type_id) == "struct record"
    assert str(m.key_type) == "struct task_key" and str(m.value_type) == "struct record"
    assert ("kind", "unsigned int:3") in m.value_type.fields  # type: ignore[union-attr]
    rc, text = _cli("btf", "--id", str(m.id))  # the map's key and value types, as bpftool prints them
    assert rc == 0
    theirs = _bpftool("btf", "dump", "map", "id", str(m.id), "format", "c")
    assert text.replace(" __attribute__((mode(word)))", "") == theirs and "struct record {" in theirs


def _enum64_blob() -> bytes:
    """A hand-written blob: a signed 8-byte ENUM64 (kind flag set) and an unsigned 4-byte ENUM."""
    strings = b"\0e64\0NEG\0HIGH\0e32\0TOP\0"
    off = {s: strings.index(s.encode() + b"\0") for s in ("e64", "NEG", "HIGH", "e32", "TOP")}
    types = struct.pack("<III", off["e64"], (19 << 24) | (1 << 31) | 2, 8)
    types += struct.pack("<III", off["NEG"], -5 & 0xFFFFFFFF, 0xFFFFFFFF)
    types += struct.pack("<III", off["HIGH"], 0, 0x40000000)
    types += struct.pack("<III", off["e32"], (6 << 24) | 1, 4)
    types += struct.pack("<II", off["TOP"], 0xFFFFFFF0)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def test_enum64_and_enum_signedness() -> None:
    t = BtfTypes(_enum64_blob())
    e64, e32 = t[1], t[2]
    assert e64.kind is Kind.ENUM64 and e64.signed and [(v.name, v.value) for v in e64.values] == [
        ("NEG", -5), ("HIGH", 0x40000000 << 32)]
    assert e32.kind is Kind.ENUM and not e32.signed and e32.values[0].value == 0xFFFFFFF0
    c = BtfCodec(t, 1)
    assert c.decode(struct.pack("<q", -5)).name == "NEG" and c.encode("HIGH") == struct.pack("<Q", 0x40000000 << 32)
    assert c.decode(struct.pack("<q", 3)) == 3  # no enumerator: the number
    assert btf.bpftool_value(t, 1, struct.pack("<q", -5)) == "NEG"
    assert btf.bpftool_value(t, 2, struct.pack("<I", 0xFFFFFFF0)) == "TOP"
    assert btf.bpftool_value(t, 2, struct.pack("<I", 0xFFFFFFF1)) == -15  # bpftool reads enums signed
    with pytest.raises(InvalidArgument, match="not an enumerator"):
        c.encode("LOW")


# ---------------------------------------------------------------------------------------- typed maps
def test_object_maps_are_typed(loaded: BpfObject) -> None:
    m = loaded.maps["records"]
    assert loaded.programs["fill"].test_run(data=b"\0" * 64).retval == XDP_PASS
    (k, v), = list(m.items())
    assert isinstance(k, Record) and (k.pid, k.cpu) == (42, 0)
    assert isinstance(v, Record) and v._text("comm") == "kernel" and v.comm == b"kernel".ljust(16, b"\0")
    assert v.color.name == "BLUE" and int(v.color) == 7
    assert (v.origin.x, v.origin.y, v.path[2].dx, v.num.s, v.num.u, v.delta) == (-5, 300, -1, -2, 0xFFFFFFFE,
                                                                                    -123456789)
    assert (v.kind, v.level, v.wide, v.on) == (5, -9, 0xABCDE, True)
    assert v.pair.b == 9 and v.as_int == 0x00020001 and v.halves == (1, 2)  # anonymous union members, as in C
    assert v.grid == ((0, 0, 0), (0, 0, 0)) and v.raw == bytes(4)
    d = v.to_dict()
    assert d["origin"] == {"x": -5, "y": 300, "dx": 0, "flags": 0} and d["path"][2]["dx"] == -1
    # What was read writes back to the same bytes.
    raw = m.lookup_bytes(k)
    m[k] = v
    assert m.lookup_bytes(k) == raw
    m[k] = v._replace(level=15, comm=b"x")
    got = m[k]
    assert got.level == 15 and got._text("comm") == "x" and got.kind == 5
    # A dict names only some fields (the rest are zero), nested and C's anonymous members included.
    m[{"pid": 7, "cpu": 1}] = {"comm": "bash", "color": "GREEN", "origin": {"x": -1}, "level": -3,
                               "grid": [[1, 2, 3], [4, 5, 6]], "halves": [1, 2], "path": [{"y": 2}]}
    w = m[{"pid": 7, "cpu": 1}]
    assert (w._text("comm"), w.color.name, w.origin.x, w.origin.y, w.level, w.kind) == ("bash", "GREEN", -1, 0, -3, 0)
    assert w.grid == ((1, 2, 3), (4, 5, 6)) and w.as_int == 0x00020001 and w.path[0].y == 2 and w.path[1].y == 0
    # Bad values are refused before any syscall, and the map is unchanged.
    before = m.lookup_bytes({"pid": 7, "cpu": 1})
    for bad, why in (({"level": 16}, "level"), ({"nope": 1}, "no field 'nope'"), ({"color": "PINK"}, "enumerator"),
                     ({"comm": "x" * 17}, "do not fit"), ({"origin": {"x": 1 << 31}}, "outside")):
        with pytest.raises(InvalidArgument, match=why):
            m[{"pid": 7, "cpu": 1}] = bad
    assert m.lookup_bytes({"pid": 7, "cpu": 1}) == before
    # typed=False: bytes, as without BTF.
    raw_map = loaded.map("records", typed=False)
    assert raw_map[bytes(struct.pack("<II", 7, 1))] == before


def test_listed_maps_know_their_types_and_open_typed(loaded: BpfObject) -> None:
    records = loaded.maps["records"]
    records[{"pid": 99, "cpu": 3}] = {"comm": "listed", "level": -1}
    listed = {info.id: info for info in ebpfmaps.list_maps()}
    info = listed[records.id]
    assert str(info.key_type) == "struct task_key" and str(info.value_type) == "struct record"
    assert info.key_type.size == info.key_size  # type: ignore[union-attr]
    with info.open(readonly=True) as m:
        v = m[{"pid": 99, "cpu": 3}]
        assert isinstance(v, Record) and v._text("comm") == "listed" and v.level == -1
        assert all(isinstance(k, Record) for k in m.keys())
    with info.open(readonly=True, typed=False) as raw:
        assert all(type(key) is bytes for key in raw.keys())
    with ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=2) as plain:  # no BTF
        bare = {i.id: i for i in ebpfmaps.list_maps()}[plain.id]
        assert bare.key_type is None and bare.value_type is None
    del records[{"pid": 99, "cpu": 3}]


def test_dump_json_equals_bpftool_formatted(loaded: BpfObject) -> None:
    rnd = random.Random(13)
    records = loaded.map("records", typed=False)
    assert loaded.programs["fill"].test_run(data=b"\0" * 64).retval == XDP_PASS
    for i in range(40):  # every bit pattern: unknown enum values, non-string char arrays, odd bitfields
        records[struct.pack("<II", 1000 + i, i)] = rnd.randbytes(records.value_size)
    typed = loaded.maps["records"]
    typed[{"pid": 1, "cpu": 2}] = {"comm": "quote\"slash/", "color": "NEGATIVE", "big": 1, "level": -16}
    points = loaded.maps["points"]
    points[1] = {"x": -3, "dx": -2, "flags": 255}
    points[2] = [{"x": c, "y": -c} for c in range(len(points[0]))]
    colors = loaded.maps["by_color"]
    colors["BLUE"] = -1
    colors[5] = 1 << 40
    for name in ("records", "points", "by_color"):
        m = loaded.maps[name]
        expected = _formatted_by_bpftool(m.id)
        rc, text = _cli("dump", f"id:{m.id}", "--json")
        assert rc == 0
        mine = json.loads(text)
        fmtr = btf.map_formatter(m.info(), per_cpu=m.per_cpu)
        assert fmtr is not None
        assert len(mine) == len(expected) > 0
        by_key = {kb: fmtr.entry(kb, vb) for kb, vb in m.raw_pairs()}
        assert by_key == expected, name
        assert sorted(map(json.dumps, mine)) == sorted(map(json.dumps, expected.values()))


@pytest.mark.parametrize(("key_type", "value_type"), [
    (ctypes.c_uint8, ctypes.c_int8), (ctypes.c_int16, ctypes.c_uint16),
    (ctypes.c_int32, ctypes.c_uint64), (ctypes.c_uint32, ctypes.c_int64),
])
def test_dump_json_of_integer_maps_equals_bpftool(key_type: Any, value_type: Any) -> None:
    # Integer keys and values are formatted a whole batch at a time: every width, sign and extreme.
    kbits, vbits = 8 * ctypes.sizeof(key_type), 8 * ctypes.sizeof(value_type)
    ksigned, vsigned = key_type(-1).value == -1, value_type(-1).value == -1
    kmin, kmax = (-(1 << (kbits - 1)), (1 << (kbits - 1)) - 1) if ksigned else (0, (1 << kbits) - 1)
    vmin, vmax = (-(1 << (vbits - 1)), (1 << (vbits - 1)) - 1) if vsigned else (0, (1 << vbits) - 1)
    keys = sorted({kmin, kmax, 0, 1, kmax // 3} | ({-1, kmin + 1} if ksigned else {kmax - 1}))
    with ebpfmaps.create("hash", key_type=key_type, value_type=value_type, max_entries=64) as m:
        for i, k in enumerate(keys):
            m[k] = (vmin, vmax, 0, -1 if vsigned else 1, vmax // 7, vmin + 1, 2, 3)[i]
        fmtr = btf.map_formatter(m.info(), per_cpu=m.per_cpu)
        assert fmtr is not None and fmtr._packed_ints is not None  # the whole-batch path
        rc, text = _cli("dump", f"id:{m.id}", "--json")
        assert rc == 0
        mine = json.loads(text)
        assert sorted(map(json.dumps, mine)) == sorted(map(json.dumps, _formatted_by_bpftool(m.id).values()))
        assert {e["key"]: e["value"] for e in mine} == m.lookup_batch()


def test_dump_and_get_show_field_names(loaded: BpfObject, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # a table as wide as the values (rich wraps to the terminal)
    m = loaded.maps["records"]
    assert loaded.programs["fill"].test_run(data=b"\0" * 64).retval == XDP_PASS
    rc, text = _cli("dump", f"id:{m.id}")
    assert rc == 0 and 'comm="kernel"' in text and "color=BLUE" in text and "1 entry" in text
    rc, text = _cli("get", f"id:{m.id}", '{"pid": 42}')
    assert rc == 0 and text.startswith('{comm="kernel", color=BLUE, ') and "level=-9" in text
    assert "path=[{x=0, y=0, dx=0, flags=0}, " in text and "raw=00 00 00 00" in text
    rc, text = _cli("get", f"id:{m.id}", '{"pid": 43}')
    assert rc == 1


# ---------------------------------------------------------------------------------------- maps made in Python
class Inner(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint16), ("b", ctypes.c_int8)]


class Mixed(ctypes.Union):
    _fields_ = [("word", ctypes.c_uint32), ("bytes", ctypes.c_uint8 * 4)]


class Value(ctypes.Structure):
    _fields_ = [("count", ctypes.c_uint64), ("name", ctypes.c_char * 8), ("inner", Inner * 2), ("mixed", Mixed),
                ("flag", ctypes.c_uint32, 1), ("level", ctypes.c_int32, 6), ("ok", ctypes.c_bool)]


def test_ctypes_maps_get_btf_bpftool_formats(pin_path: Path) -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=Value, max_entries=8) as m:
        v = Value(count=5, name=b"abc", level=-7, flag=1, ok=True)
        v.inner[1].b = -2
        v.mixed.word = 0x01020304
        m[3] = v
        m.pin(pin_path)
        info = m.info()
        assert info.btf_id and str(m.value_type) == "struct Value" and str(m.key_type) == "unsigned int"
        shown = bpftool_json("map", "dump", "pinned", str(pin_path))
        assert isinstance(shown, list)
        assert shown[0]["formatted"] == {"key": 3, "value": {
            "count": 5, "name": "abc", "inner": [{"a": 0, "b": 0}, {"a": 0, "b": -2}],
            "mixed": {"word": 0x01020304, "bytes": [4, 3, 2, 1]}, "flag": "0x1", "level": "0x39", "ok": True}}
        # Reopened from the pin, the values come back as records with the ctypes field names.
        with ebpfmaps.open_pinned(pin_path) as again:
            r = again[3]
            assert (r.count, r._text("name"), r.inner[1].b, r.mixed.word, r.flag, r.level, r.ok) == (
                5, "abc", -2, 0x01020304, 1, -7, True)
    with ebpfmaps.create("array", value_type="<IhxxQ", max_entries=4) as s:  # a struct format: fields f0, f1, f2
        s[1] = (7, -1, 9)
        shown = bpftool_json("map", "lookup", "id", str(s.info().id), "key", "1", "0", "0", "0")
        assert isinstance(shown, dict) and shown["formatted"]["value"] == {"f0": 7, "f1": -1, "f2": 9}
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=4) as raw:  # bytes: no BTF, as before
        assert raw.info().btf_id == 0 and raw.key_type is None
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_double, max_entries=4) as f:
        assert f.info().btf_id == 0  # bpftool's JSON dump fails on float BTF: such maps get none


# ---------------------------------------------------------------------------------------- generated Python
def test_gen_types_module_is_exact_and_mypy_clean(types_obj: Path, loaded: BpfObject, tmp_path: Path) -> None:
    rc, source = _cli("gen-types", str(types_obj))
    assert rc == 0
    path = tmp_path / "btf_types_gen.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("btf_types_gen", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    kt, vt = mod.MAPS["records"]
    assert (ctypes.sizeof(kt), ctypes.sizeof(vt)) == (8, 120)
    assert loaded.programs["fill"].test_run(data=b"\0" * 64).retval == XDP_PASS
    m = loaded.map("records", key_type=kt, value_type=vt)
    (k, v), = list(m.items())
    assert (k.pid, v.comm, v.color, v.origin.x, v.path[2].dx, v.level, v.wide, v.as_int) == (
        42, b"kernel", mod.color.BLUE, -5, -1, -9, 0xABCDE, 0x00020001)
    assert ctypes.sizeof(mod.MAPS["points"][1]) == 8
    # From a map id: the map's key and value types only.
    rc, one = _cli("gen-types", "--id", str(m.id))
    assert rc == 0 and "class record(ctypes.Structure)" in one and "'records'" in one
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, MYPYPATH=""))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_damaged_blobs_raise_invalid_argument(types_obj: Path) -> None:
    """A cut or corrupted blob never escapes as IndexError, struct.error or RecursionError."""
    from ebpfmaps.btf.reader import elf_section

    blob = elf_section(types_obj.read_bytes(), ".BTF")
    rnd = random.Random(5)
    outcomes = {"parsed": 0, "refused": 0}
    for i in range(200):
        data = bytearray(blob[: rnd.randrange(len(blob))] if i % 4 == 0 else blob)
        for _ in range(rnd.randrange(1, 8)):
            if len(data) > 24:
                data[rnd.randrange(24, len(data))] = rnd.randrange(256)
        try:
            t = BtfTypes(bytes(data))
            for x in t:
                with contextlib.suppress(InvalidArgument):
                    t.c_name(x.id)
                    if t.size_of(x.id) < 1 << 16:
                        BtfCodec(t, x.id).decode(bytes(t.size_of(x.id)))
            outcomes["parsed"] += 1
        except InvalidArgument:
            outcomes["refused"] += 1
    assert outcomes["parsed"] and outcomes["refused"]
