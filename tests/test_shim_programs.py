"""Extensible maps and kernel programs: every program ebpfmaps loads that uses an extensible map is
associated with it automatically (assembled code, BpfObject reuse), a refusal fails the load and
unloads the program, and reconcile() sees what the program wrote behind the provider's back."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ebpfmaps_shim import (
    DeleteReason,
    ExtensibleMap,
    ExternalChange,
    MapProvider,
    ProgramAccessRefused,
    ProviderRefused,
    register_provider,
    unregister_provider,
)

import ebpfmaps
from ebpfmaps import asm
from ebpfmaps.asm import R0, R1, R2, R10
from ebpfmaps.maptypes import MapType
from ebpfmaps.programs import BpfObject, Program
from tests.bpfbuild import bpf_object
from tests.conftest import bpftool_json
from tests.shim_helpers import U32, U64, next_type_id, xor


class _Gate(MapProvider):
    """Records the program types it is asked about and refuses those in ``refused``."""

    def __init__(self, *, base: int = int(MapType.HASH), transforms: bool = False, see_stored: bool = False) -> None:
        self.custom_map_type = next_type_id()
        self.base_map_type = base
        self.transforms_values = transforms
        self.programs_see_stored = see_stored
        self.asked: list[Any] = []
        self.refused: set[Any] = set()
        self.changes: list[ExternalChange] = []

    def associate_program(self, m: Any, program_type: Any) -> None:
        self.asked.append(program_type)
        if program_type in self.refused:
            raise ValueError(f"no {program_type} programs here")

    def update_element_notify(self, m: Any, key: bytes, value: bytes, flags: int) -> bytes | None:
        return xor(value) if self.transforms_values else None

    def find_element_notify(self, m: Any, key: bytes, stored: bytes) -> bytes | None:
        return xor(stored) if self.transforms_values else None

    def external_change_notify(self, m: Any, changes: list[ExternalChange]) -> None:
        self.changes.extend(changes)


@pytest.fixture
def gate() -> Iterator[Any]:
    made: list[_Gate] = []

    def make(**kw: Any) -> _Gate:
        p = register_provider(_Gate(**kw))
        made.append(p)
        return p

    yield make
    for p in made:
        with contextlib.suppress(Exception):
            unregister_provider(p)


def _counter(m: Any) -> list[Any]:
    """A socket filter that adds 1 to key 7's u64 (returns 1), or returns 2 when key 7 is missing."""
    return [
        asm.st(4, R10, -4, 7), asm.mov64(R2, R10), asm.add64(R2, -4), asm.ld_map_fd(R1, m),
        asm.call("map_lookup_elem"), asm.jeq(R0, 0, "missing"), asm.mov64(R1, 1), asm.atomic_add(8, R0, R1, 0),
        asm.mov64(R0, 1), asm.exit_(), asm.label("missing"), asm.mov64(R0, 2), asm.exit_(),
    ]


def _programs_using(map_id: int) -> list[int]:
    """Ids of the loaded programs that use map ``map_id``, as bpftool (an independent reader) lists them."""
    shown = bpftool_json("prog", "show")
    assert isinstance(shown, list)
    return [p["id"] for p in shown if map_id in p.get("map_ids", [])]


def test_loading_assembled_code_associates_the_map(gate: Any) -> None:
    p = gate()
    m = ebpfmaps.create(p.custom_map_type, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=8)
    try:
        assert isinstance(m, ExtensibleMap)
        m[7] = 100
        with Program.load("socket_filter", _counter(m)) as prog:
            assert p.asked == ["socket_filter"]  # nobody called m.associate_program()
            assert prog.test_run(data=b"\0" * 16, repeat=5).retval == 1
            assert _programs_using(m.map_id) == [prog.id]
        assert m[7] == 105
        # The program's writes bypassed the provider; reconcile() delivers them (the first pass is the baseline).
        assert m.reconcile() == []
        with Program.load("socket_filter", _counter(m)) as prog:
            prog.test_run(data=b"\0" * 16, repeat=3)
        changes = m.reconcile()
        assert changes == [ExternalChange(U32.pack(7), U64.pack(105),
                                          U64.pack(108), DeleteReason.EXTERNAL_UPDATE)]
        assert p.changes == changes
        assert m.reconcile() == []  # each change once
    finally:
        m.close()


def test_a_refusal_fails_the_load_and_nothing_stays_loaded(gate: Any) -> None:
    p = gate()
    p.refused.add("socket_filter")
    m = ebpfmaps.create(p.custom_map_type, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=8)
    try:
        with pytest.raises(ProviderRefused, match="no socket_filter programs") as caught:
            Program.load("socket_filter", _counter(m))
        assert isinstance(caught.value, ProgramAccessRefused)
        assert caught.value.callback == "associate_program"
        assert _programs_using(m.map_id) == []
        assert m.associate_program("xdp") is m.base  # other types are fine
    finally:
        m.close()


def test_transforming_providers_are_refused_unless_programs_see_the_stored_form(gate: Any) -> None:
    hidden = gate(transforms=True)
    m = ebpfmaps.create(hidden.custom_map_type, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=8)
    try:
        with pytest.raises(ProgramAccessRefused, match="programs_see_stored"):
            Program.load("socket_filter", _counter(m))
        assert _programs_using(m.map_id) == []
    finally:
        m.close()
    open_ = gate(transforms=True, see_stored=True)
    m = ebpfmaps.create(open_.custom_map_type, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=8)
    try:
        m[7] = 1
        with Program.load("socket_filter", _counter(m)) as prog:
            assert prog.test_run(data=b"\0" * 16).retval == 1  # it added 1 to the stored (xor-ed) bytes
        assert open_.asked == ["socket_filter"]
        assert m.base.lookup_bytes(U32.pack(7)) == (int.from_bytes(xor(U64.pack(1)), "little") + 1).to_bytes(8, "little")
    finally:
        m.close()


def test_a_bpf_object_reusing_the_base_map_is_associated(gate: Any, bpffs: Path) -> None:
    p = gate(base=int(MapType.ARRAY))
    m = ebpfmaps.create(p.custom_map_type, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4)
    try:
        assert isinstance(m, ExtensibleMap)
        m[0] = 21
        m.reconcile()
        with BpfObject.open(bpf_object("prog_share"), pin_root=bpffs, reuse={"shared": m.base}) as obj:
            obj.load()
            assert p.asked == ["xdp", "xdp"]  # double_it and bump use it (count_first_byte does not)
            obj.programs["double_it"].test_run(data=b"\0" * 32)
        assert m[0] == 42
        assert [(c.old, c.new, c.reason) for c in m.reconcile()] == [
            (U64.pack(21), U64.pack(42), DeleteReason.EXTERNAL_UPDATE)]
        # refused: the object's load fails and none of its programs stays loaded
        p.refused.add("xdp")
        obj = BpfObject.open(bpf_object("prog_share"), pin_root=bpffs, reuse={"shared": m.base})
        with pytest.raises(ProgramAccessRefused):
            obj.load()
        assert obj.closed
        assert _programs_using(m.map_id) == []
    finally:
        m.close()
