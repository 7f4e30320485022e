"""Every rule of the shim, each with its negative test: type id partitioning, registration, bad input
refused before the syscall, provider contract violations, rollback, lifecycle (unregister, last close,
unpin, garbage collection), metadata seen by bpftool, and open_pinned/open_by_id."""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import inspect
import os
import pickle
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ebpfmaps_shim import (
    HIDDEN,
    DeleteReason,
    DuplicateProvider,
    ExtensibleMap,
    ExtensibleMapLike,
    MapProvider,
    ProviderBusy,
    ProviderContractError,
    ProviderError,
    ProviderNotFound,
    ProviderRefused,
    live_maps,
    providers,
    register_provider,
    unregister_provider,
)

import ebpfmaps
from ebpfmaps import (
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_NOEXIST,
    IncompatibleMap,
    InvalidFlags,
    InvalidKeySize,
    InvalidValueSize,
    MapSpec,
    MapType,
    NotSupported,
    OutOfMemory,
    PermissionDenied,
)
from ebpfmaps.errors import InvalidArgument, MapClosed
from ebpfmaps.maplike import DictProtocol, MapLike, SpecProperties
from tests.conftest import bpftool_json
from tests.shim_helpers import U32, next_type_id, recording_provider, val, xor


@pytest.fixture
def registered() -> Iterator[Any]:
    made: list[Any] = []

    def make(**kw: Any) -> Any:
        p = recording_provider(**kw)
        register_provider(p)
        made.append(p)
        return p

    yield make
    gc.collect()
    for p in made:
        with contextlib.suppress(ProviderBusy, ProviderNotFound):
            unregister_provider(p)


def new_map(p: Any, **kw: Any) -> ExtensibleMap:
    args: dict[str, Any] = {"key_type": ctypes.c_uint32, "value_size": 8, "max_entries": 16}
    args.update(kw)
    m = ebpfmaps.create(p.custom_map_type, **args)
    assert isinstance(m, ExtensibleMap)
    p.rec.take()
    return m


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---------------------------------------------------------------------- type ids and registration
@pytest.mark.parametrize("bad", [0, 1, int(MapType.HASH), 4095, -5])
def test_ids_below_4096_are_the_kernels(bad: int) -> None:
    p = recording_provider(type_id=bad)
    with pytest.raises(InvalidArgument, match="kernel"):
        register_provider(p)
    assert bad not in providers()


def test_id_must_be_an_int_that_fits_32_bits() -> None:
    for bad in (True, "4097", 1 << 32):
        p = recording_provider()
        p.custom_map_type = bad
        with pytest.raises(InvalidArgument):
            register_provider(p)


def test_duplicate_ids_are_refused_and_the_same_provider_twice_is_harmless(registered: Any) -> None:
    p = registered()
    assert register_provider(p) is p
    other = recording_provider(type_id=p.custom_map_type)
    with pytest.raises(DuplicateProvider, match=str(p.custom_map_type)):
        register_provider(other)
    assert providers()[p.custom_map_type] is p


@pytest.mark.parametrize("base", [MapType.PERCPU_HASH, MapType.RINGBUF, MapType.QUEUE])
def test_unsupported_base_types_are_refused(base: MapType) -> None:
    with pytest.raises(NotSupported, match="base map type"):
        register_provider(recording_provider(base=int(base)))


def test_a_transforming_provider_needs_update_and_find() -> None:
    for missing in ("find_element_notify", "update_element_notify"):
        callbacks = {"create_map_notify", "find_element_notify", "update_element_notify"} - {missing}
        with pytest.raises(InvalidArgument, match="transforms values"):
            register_provider(recording_provider(transforms=True, callbacks=callbacks))


def test_unknown_extensible_id_at_creation() -> None:
    tid = next_type_id()
    with pytest.raises(NotSupported, match=f"no extension provides map type {tid}"):
        ebpfmaps.create(tid, key_size=4, value_size=8, max_entries=4)


def test_kernel_ids_never_reach_a_provider(registered: Any) -> None:
    registered()
    m = ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=4)
    assert not isinstance(m, ExtensibleMap) and m.type == int(MapType.HASH)
    m.close()


def test_unregister_with_live_maps_is_refused(registered: Any) -> None:
    p = registered()
    m = new_map(p)
    with pytest.raises(ProviderBusy, match=str(m.map_id)):
        unregister_provider(p)
    assert live_maps(p) == [m.map_id]
    m.close()
    assert live_maps(p) == []
    unregister_provider(p.custom_map_type)
    with pytest.raises(ProviderNotFound):
        unregister_provider(p)
    with pytest.raises(NotSupported):
        ebpfmaps.create(p.custom_map_type, key_size=4, value_size=8, max_entries=4)


# ---------------------------------------------------------------------- bad input, before the syscall
def test_bad_input_is_refused_before_any_callback(registered: Any) -> None:
    p = registered()
    m = new_map(p)
    with pytest.raises(InvalidKeySize):
        m[b"\x01\x02"] = val(1)
    with pytest.raises(InvalidValueSize):
        m[1] = b"short"
    with pytest.raises(InvalidFlags):
        m.update(1, val(1), BPF_F_LOCK)
    with pytest.raises(InvalidFlags):
        m.update(1, val(1), BPF_NOEXIST | BPF_EXIST)
    with pytest.raises(InvalidFlags):
        m.update(1, val(1), 0x100)
    with pytest.raises(InvalidFlags):
        m.lookup(1, BPF_F_LOCK)
    with pytest.raises(InvalidArgument):
        m.update_batch([1, 2], [val(1)])
    assert p.rec.take() == []
    assert len(m.base) == 0
    m.close()


def test_bad_creation_arguments(registered: Any) -> None:
    p = registered()
    tid = p.custom_map_type
    cases: list[dict[str, Any]] = [
        {"key_size": 4, "value_size": 8},  # no max_entries
        {"key_size": 4, "max_entries": 4},  # no value size
        {"value_size": 8, "max_entries": 4},  # no key size
        {"key_size": 4, "value_size": 8, "max_entries": 4, "inner_map": None},  # not for extensible maps
        {"key_size": 4, "value_size": 8, "max_entries": 4, "options": {"nope": 1}},  # unknown option
        {"key_size": 4, "value_size": 8, "max_entries": 4, "name": "bad name!"},  # the kernel's name rules
    ]
    for kw in cases:
        with pytest.raises(InvalidArgument):
            ebpfmaps.create(tid, **kw)
    with pytest.raises(InvalidFlags):
        ebpfmaps.create(tid, key_size=4, value_size=8, max_entries=4, flags=0x80000000)
    arr = registered(base=int(MapType.ARRAY))
    with pytest.raises(InvalidKeySize):
        ebpfmaps.create(arr.custom_map_type, key_size=8, value_size=8, max_entries=4)
    assert live_maps(p) == [] and live_maps(arr) == []


def test_option_values_are_checked() -> None:
    class WithOptions(MapProvider):
        custom_map_type = next_type_id()
        default_options = {"level": 3}

        def check_options(self, options: Any) -> None:
            if options["level"] > 9:
                raise InvalidArgument("level is 0..9")

    p = register_provider(WithOptions())
    try:
        for bad in (-1, 1 << 32, "3", True):
            with pytest.raises(InvalidArgument):
                ebpfmaps.create(p.custom_map_type, key_size=4, value_size=4, max_entries=2, options={"level": bad})
        with pytest.raises(InvalidArgument, match=r"0\.\.9"):
            ebpfmaps.create(p.custom_map_type, key_size=4, value_size=4, max_entries=2, options={"level": 10})
        m = ebpfmaps.create(p.custom_map_type, key_size=4, value_size=4, max_entries=2, options={"level": 7})
        assert isinstance(m, ExtensibleMap) and m.options == {"level": 7}
        m.close()
    finally:
        unregister_provider(p)


# ---------------------------------------------------------------------- provider contract
def test_create_map_notify_refusal_and_bad_answers() -> None:
    class Sizes(MapProvider):
        custom_map_type = next_type_id()
        answer: Any = None

        def create_map_notify(self, spec: MapSpec) -> int | None:
            if spec.value_size == 3:
                raise ValueError("odd sizes are refused")
            return self.answer  # type: ignore[no-any-return]

    p = register_provider(Sizes())
    try:
        with pytest.raises(ProviderRefused, match="odd sizes"):
            ebpfmaps.create(p.custom_map_type, key_size=4, value_size=3, max_entries=2)
        for answer in (0, -1, "8", 2.5):
            p.answer = answer
            with pytest.raises(ProviderError):
                ebpfmaps.create(p.custom_map_type, key_size=4, value_size=8, max_entries=2)
        p.answer = 16  # a different stored size needs transforms_values = True
        with pytest.raises(ProviderError, match="transforms_values"):
            ebpfmaps.create(p.custom_map_type, key_size=4, value_size=8, max_entries=2)
        assert live_maps(p) == []
    finally:
        unregister_provider(p)


class _Answers(MapProvider):
    """A provider whose update and find answers are chosen by the test (to break the contract)."""

    def __init__(self, transforms: bool) -> None:
        self.custom_map_type = next_type_id()
        self.transforms_values = transforms
        self.update_answer: Any = None
        self.find_answer: Any = None

    def update_element_notify(self, m: Any, key: bytes, value: bytes, flags: int) -> bytes | None:
        return value if self.update_answer is None else self.update_answer

    def find_element_notify(self, m: Any, key: bytes, stored: bytes) -> bytes | None:
        return stored if self.find_answer is None else self.find_answer


@pytest.mark.parametrize("transforms", [False, True])
def test_provider_answers_are_checked_and_leave_the_map_unchanged(transforms: bool) -> None:
    p = register_provider(_Answers(transforms))
    try:
        m = ebpfmaps.create(p.custom_map_type, key_type=ctypes.c_uint32, value_size=8, max_entries=4)
        assert isinstance(m, ExtensibleMap)
        m[1] = val(1)
        # An int is not bytes: 8 must not become bytes(8); nor may a str, a list or HIDDEN be stored.
        bad_updates: list[tuple[Any, str]] = [(b"xx", "stored value size is 8"), (8, "returned int"),
                                              ("12345678", "returned str"), ([0] * 8, "returned list"),
                                              (HIDDEN, "returned Hidden")]
        if not transforms:
            bad_updates.append((val(2), "transforms_values"))
        for answer, match in bad_updates:
            p.update_answer = answer
            with pytest.raises(ProviderContractError, match=match) as caught:
                m[1] = val(5)
            assert caught.value.callback == "update_element_notify"
            assert m.base.lookup_bytes(U32.pack(1)) == val(1)
        p.update_answer = None
        bad_finds: list[tuple[Any, str]] = [(b"123", "value size"), (8, "returned int")]
        if not transforms:
            bad_finds.append((val(9), "transforms_values"))
        for answer, match in bad_finds:
            p.find_answer = answer
            with pytest.raises(ProviderContractError, match=match) as caught:
                m.lookup(1)
            assert caught.value.callback == "find_element_notify"
            with pytest.raises(ProviderError, match=match):
                list(m.items())
            with pytest.raises(ProviderError, match=match):
                m.lookup_and_delete(1)
            assert m.base.lookup_bytes(U32.pack(1)) == val(1)  # nothing removed that was not returned
        m.close()
    finally:
        unregister_provider(p)


def test_rollback_when_the_kernel_map_is_full(registered: Any) -> None:
    p = registered(transforms=True)
    m = new_map(p, max_entries=2)
    m[1], m[2] = val(1), val(2)
    p.rec.take()
    with pytest.raises(OutOfMemory):
        m[3] = val(3)
    assert p.rec.take() == [("update", 3, val(3), 0), ("delete", 3, xor(val(3)), DeleteReason.ROLLBACK)]
    assert sorted(m.keys()) == [1, 2]
    # a batch that overflows is undone entirely: 4 replaced 1... then 5 did not fit
    with pytest.raises(OutOfMemory):
        m.update_batch([1, 5], [val(10), val(50)])
    assert m.to_dict() == {1: val(1), 2: val(2)}
    events = p.rec.take()
    assert [e for e in events if e[0] == "delete"] == [
        ("delete", 1, xor(val(10)), DeleteReason.ROLLBACK), ("delete", 5, xor(val(50)), DeleteReason.ROLLBACK)]
    m.close()


def test_readonly_handles_refuse_writes_before_the_provider(registered: Any, pin_path: Path) -> None:
    p = registered()
    m = new_map(p)
    m[1] = val(1)
    m.pin(pin_path)
    ro = ebpfmaps.open_pinned(pin_path, readonly=True, key_type=ctypes.c_uint32)
    assert isinstance(ro, ExtensibleMap)
    p.rec.take()
    with pytest.raises(PermissionDenied):
        ro[2] = val(2)
    with pytest.raises(PermissionDenied):
        del ro[1]
    assert p.rec.take() == []
    assert ro[1] == val(1)
    ro.close()
    m.close()


# ---------------------------------------------------------------------- lifecycle
def test_last_close_cleans_up_exactly_once(registered: Any) -> None:
    p = registered()
    m = new_map(p)
    m[1], m[2] = val(1), val(2)
    p.rec.take()
    other = ebpfmaps.open_by_id(m.map_id, key_type=ctypes.c_uint32)  # a second handle in this process
    assert isinstance(other, ExtensibleMap) and other.map_id == m.map_id
    # binding a handle validates the sizes again (the provider may have changed since the map was made)
    assert p.rec.take() == [("create", p.custom_map_type, 4, 8)]
    m.close()
    assert p.rec.take() == []  # still held by `other`
    assert other[1] == val(1)
    p.rec.take()
    other.close()
    events = p.rec.take()
    assert sorted(events[:-1]) == [("delete", 1, val(1), DeleteReason.MAP_CLEANUP),
                                   ("delete", 2, val(2), DeleteReason.MAP_CLEANUP)]
    assert events[-1] == ("delete_map", m.map_id)
    other.close()
    assert p.rec.take() == []


def test_pinned_map_is_cleaned_up_when_unpinned_and_nobody_holds_it(registered: Any, pin_path: Path) -> None:
    p = registered()
    m = new_map(p)
    m[7] = val(7)
    m.pin(pin_path)
    map_id = m.map_id
    p.rec.take()
    m.close()
    assert p.rec.take() == []  # pinned: the map lives on
    ebpfmaps.unpin(pin_path)  # the core's unpin, not the shim's
    events = p.rec.take()
    # the unpin opened a handle (create_map_notify validates it), then its close found the map gone
    assert events == [("create", p.custom_map_type, 4, 8), ("delete", 7, val(7), DeleteReason.MAP_CLEANUP),
                      ("delete_map", map_id)]
    assert [e[0] for e in events].count("delete_map") == 1


def test_unpin_while_held_does_not_clean_up(registered: Any, pin_path: Path) -> None:
    p = registered()
    m = new_map(p)
    m.pin(pin_path)
    m.unpin()
    # the unpin hook looked at the map (a handle: create_map_notify), found it held by `m`: no cleanup
    assert p.rec.take() == [("create", p.custom_map_type, 4, 8)] and not pin_path.exists()
    m[1] = val(1)
    p.rec.take()
    m.close()
    assert p.rec.take()[-1] == ("delete_map", m.map_id)


def test_a_collected_handle_is_released(registered: Any) -> None:
    p = registered()
    m = new_map(p)
    m[3] = val(3)
    map_id = m.map_id
    p.rec.take()
    del m
    gc.collect()
    assert p.rec.take() == [("delete", 3, val(3), DeleteReason.MAP_CLEANUP), ("delete_map", map_id)]
    assert live_maps(p) == []


# ---------------------------------------------------------------------- opening, metadata, bpftool
def test_open_pinned_and_by_id_bind_to_the_provider(registered: Any, pin_path: Path) -> None:
    p = registered(transforms=True)
    m = new_map(p, name="shim_rules")
    m[1] = val(1)
    m.pin(pin_path)
    spec = MapSpec(type=p.custom_map_type, key_size=4, value_size=8, max_entries=16)
    for opened in (ebpfmaps.open_pinned(pin_path, spec=spec, key_type=ctypes.c_uint32),
                   ebpfmaps.open_by_id(m.map_id, key_type=ctypes.c_uint32)):
        assert isinstance(opened, ExtensibleMap)
        assert opened.spec.type == p.custom_map_type and opened.provider is p
        assert opened.value_size == 8 and opened.stored_value_size == 8
        assert opened[1] == val(1)
        opened.close()
    with pytest.raises(IncompatibleMap, match="value_size"):
        ebpfmaps.open_pinned(pin_path, spec=spec.replace(value_size=16))
    with pytest.raises(IncompatibleMap, match="type"):
        ebpfmaps.open_pinned(pin_path, spec=spec.replace(type=int(MapType.HASH)))
    with pytest.raises(InvalidValueSize):
        ebpfmaps.open_pinned(pin_path, value_type=ctypes.c_uint32)
    m.close()
    ebpfmaps.unpin(pin_path)


def test_opening_without_a_provider_fails_clearly_and_leaks_nothing(registered: Any, pin_path: Path) -> None:
    p = registered()
    m = new_map(p)
    m.pin(pin_path)
    m.close()
    unregister_provider(p)
    before = open_fds()
    with pytest.raises(ProviderNotFound, match=str(p.custom_map_type)):
        ebpfmaps.open_pinned(pin_path)
    assert open_fds() == before
    register_provider(p)
    again = ebpfmaps.open_pinned(pin_path)
    assert isinstance(again, ExtensibleMap)
    again.close()
    ebpfmaps.unpin(pin_path)


def test_bpftool_sees_the_base_map_and_the_record(registered: Any, pin_path: Path) -> None:
    p = registered(transforms=True)
    m = ebpfmaps.create(p.custom_map_type, key_size=4, value_size=24, max_entries=8, name="shim_bpftool")
    assert isinstance(m, ExtensibleMap)
    m.pin(pin_path)
    shown = bpftool_json("map", "show", "pinned", str(pin_path))
    assert isinstance(shown, dict)
    assert (shown["type"], shown["name"], shown["bytes_key"], shown["bytes_value"]) == ("hash", "shim_bpftool", 4, 24)
    assert shown["id"] == m.map_id
    dump = subprocess.run(["bpftool", "btf", "dump", "id", str(shown["btf_id"])], capture_output=True, text=True,
                          check=True).stdout
    assert "STRUCT 'ebpfmaps_shim_value' size=24" in dump
    assert f"'EBPFMAPS_SHIM_TYPE' val={p.custom_map_type}" in dump
    assert "'EBPFMAPS_SHIM_VALUE_SIZE' val=24" in dump
    m.close()


def test_maps_with_foreign_btf_are_not_claimed(pin_path: Path) -> None:
    from ebpfmaps.btf import spin_lock_value_btf

    r = spin_lock_value_btf()
    m = ebpfmaps.HashMap(key_size=4, value_size=r.value_size, max_entries=4, btf=r.btf,
                         btf_key_type_id=r.key_type_id, btf_value_type_id=r.value_type_id)
    m.pin(pin_path)
    opened = ebpfmaps.open_pinned(pin_path)
    assert type(opened) is ebpfmaps.HashMap
    opened.close()
    m.close()
    r.btf.close()


# ---------------------------------------------------------------------- the map protocol, copies, closed handles
def _protocol_members(proto: type) -> set[str]:
    """The members a Protocol class declares (its own body, not typing's machinery)."""
    return {name for name, obj in vars(proto).items()
            if isinstance(obj, property) or (inspect.isfunction(obj) and name not in ("__init__", "__subclasshook__"))}


def test_extensible_map_implements_maplike_without_being_a_map(registered: Any) -> None:
    assert not issubclass(ExtensibleMap, ebpfmaps.Map)
    members = _protocol_members(MapLike) | _protocol_members(ExtensibleMapLike)
    for proto in (MapLike, ExtensibleMapLike):
        for name in _protocol_members(proto):
            declared, ours = vars(proto)[name], getattr(ExtensibleMap, name, None)
            assert ours is not None, f"ExtensibleMap lacks {name}"
            assert isinstance(ours, property) == isinstance(declared, property), name
            if inspect.isfunction(declared):
                assert list(inspect.signature(ours).parameters) == list(inspect.signature(declared).parameters), name
    assert {"spec", "closed", "__enter__", "__exit__", "find_element", "locked"} <= members
    p = registered()
    m = new_map(p)
    assert isinstance(m, MapLike) and isinstance(m, ExtensibleMapLike) and isinstance(m.base, MapLike)
    with m as same:
        assert same is m and m.fd == m.base.fd and m.handle is m.base.handle and m.id == m.map_id
    assert m.closed and m.base.closed


def test_every_public_map_member_is_implemented_or_refused(registered: Any) -> None:
    """ExtensibleMap inherits nothing from Map: each public member of Map is ExtensibleMap's own (or from
    the metadata properties both share, read from each object's own spec), or listed here as a fact of
    kernel map classes that has no meaning for it."""
    kernel_class_facts = {
        # what a kernel map class is created with (extensible maps are created by ebpfmaps.create and their
        # provider, never by a Map constructor)
        "allowed_flags", "default_key_type", "fixed_key_size", "fixed_value_size", "kernel_batch", "map_type",
        "prepare_spec",
        # how a kernel map class wraps a new kernel map or a descriptor (extensible maps come from their extension)
        "create_kernel_map", "adopt_fd",
    }
    public = {name for name in dir(ebpfmaps.Map) if not name.startswith("_")}
    public |= {"__getitem__", "__setitem__", "__delitem__", "__contains__", "__iter__", "__len__", "__bool__",
               "__enter__", "__exit__", "__copy__", "__deepcopy__", "__reduce__", "__repr__"}
    assert ebpfmaps.Map not in ExtensibleMap.__mro__
    ours = {name for name in public if name in vars(ExtensibleMap) or name in vars(SpecProperties)
            or name in vars(DictProtocol)}
    missing = public - ours - kernel_class_facts
    assert not missing, f"ExtensibleMap must implement or refuse these Map members: {sorted(missing)}"
    assert not kernel_class_facts & set(vars(ExtensibleMap))
    assert ExtensibleMap.per_cpu is False
    p = registered()
    m = new_map(p)
    with pytest.raises(NotSupported, match="replace_kernel_map"):
        m.replace_kernel_map(m.base.handle.dup_number(), m.spec)
    assert m.check_packed_keys(U32.pack(1), 1) is None
    m.close()


def test_from_spec_creates_through_the_provider(registered: Any) -> None:
    p = registered()
    spec = MapSpec(type=p.custom_map_type, key_size=4, value_size=8, max_entries=4, name="from_spec")
    m = ExtensibleMap.from_spec(spec, key_type=ctypes.c_uint32)
    assert isinstance(m, ExtensibleMap) and m.provider is p and m.name == "from_spec"
    assert p.rec.take() == [("create", p.custom_map_type, 4, 8)]
    m[1] = val(1)
    assert m.base.lookup_bytes(U32.pack(1)) == val(1)
    m.close()
    with pytest.raises(InvalidArgument, match="kernel map type"):
        ExtensibleMap.from_spec(spec.replace(type=int(MapType.HASH)))


def test_copies_are_second_handles_and_pickling_is_refused(registered: Any) -> None:
    p = registered()
    m = new_map(p)
    m[1] = val(1)
    for dup in (copy.copy(m), copy.deepcopy(m)):
        assert isinstance(dup, ExtensibleMap) and dup is not m and dup.provider is p
        assert dup.base is not m.base and dup.fd != m.fd and dup.map_id == m.map_id
        assert dup.context is m.context and dup.options == m.options
        assert dup[1] == val(1)
        dup[2] = val(2)
        assert m[2] == val(2)
        dup.close()
        assert not m.closed and m[1] == val(1)
    p.rec.take()
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(m)
    last = copy.copy(m)
    m.close()
    assert p.rec.take() == []  # the copy still holds the map
    with pytest.raises(MapClosed):
        copy.copy(m)
    last.close()
    events = p.rec.take()
    assert events[-1] == ("delete_map", m.map_id) and len(events) == 3


def test_a_closed_map_never_reaches_its_base(registered: Any, pin_path: Path) -> None:
    p = registered()
    m = new_map(p)
    m[1] = val(1)
    m.close()
    assert m.closed and m.base.closed and m.handle.closed
    p.rec.take()
    ops: list[Any] = [
        lambda: m.fd, lambda: m.id, m.info, lambda: m.lookup(1), lambda: m.lookup_bytes(1), lambda: m[1],
        lambda: 1 in m, lambda: m.get(1), lambda: m.update(1, val(2)), lambda: m.__setitem__(1, val(2)),
        lambda: m.delete(1), lambda: m.lookup_and_delete(1), lambda: m.pop_item(1, None), lambda: list(m),
        lambda: list(m.keys()), lambda: list(m.values()), lambda: list(m.items()), m.to_dict, lambda: len(m),
        m.clear, m.lookup_batch, lambda: m.lookup_batch([1]), m.lookup_and_delete_batch,
        lambda: m.update_batch([1], [val(1)]), lambda: m.delete_batch([1]), lambda: list(m.iter_batches()),
        lambda: list(m.iter_batches_raw()), lambda: list(m.raw_pairs()), lambda: m.find_element(1),
        lambda: m.remove_element(1), lambda: list(m.stored_items()), lambda: m.locked(1), m.freeze,
        lambda: m.pin(pin_path), lambda: m.associate_program("xdp"),
    ]
    for op in ops:
        with pytest.raises(MapClosed):
            op()
    assert p.rec.take() == [] and not pin_path.exists()
    assert "closed" in repr(m) and m.map_id > 0
    m.close()  # idempotent


def test_map_from_spec_creates_extensible_types_through_their_provider(registered: Any) -> None:
    p = registered()
    spec = MapSpec(type=p.custom_map_type, key_size=4, value_size=8, max_entries=4, name="core_from_spec")
    m = ebpfmaps.Map.from_spec(spec, key_type=ctypes.c_uint32)
    try:
        assert isinstance(m, ExtensibleMap) and m.provider is p and m.spec.type == p.custom_map_type
        assert p.rec.take() == [("create", p.custom_map_type, 4, 8)]
    finally:
        m.close()


def test_an_extensible_map_as_inner_map_asks_for_its_base(registered: Any) -> None:
    p = registered()
    m = new_map(p)
    try:
        with pytest.raises(ebpfmaps.errors.InvalidArgument, match=r"\.base"):
            ebpfmaps.ArrayOfMaps(max_entries=2, inner_map=m)  # type: ignore[arg-type]
        with ebpfmaps.ArrayOfMaps(max_entries=2, inner_map=m.base) as outer:
            outer[0] = m.base
            assert outer[0] is not None
    finally:
        m.close()
