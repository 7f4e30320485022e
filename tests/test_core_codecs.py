"""Typed codecs on real maps: ctypes scalars and Structures, struct formats, raw bytes; the bytes the
kernel stores are checked through an untyped view of the same map, and bad input fails before any syscall."""

from __future__ import annotations

import ctypes
import struct
from typing import Any

import pytest

import ebpfmaps
from ebpfmaps import Codec, InvalidKeySize, InvalidValueSize, Map
from ebpfmaps.codecs import make_codec
from ebpfmaps.errors import InvalidArgument


def _raw_view(m: Map) -> Map:
    """The same kernel map opened again without codecs: what is really stored, as bytes."""
    return ebpfmaps.open_by_id(m.info().id, typed=False)


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int32), ("y", ctypes.c_int32), ("tag", ctypes.c_uint8)]


class FlowKey(ctypes.Structure):
    _fields_ = [("saddr", ctypes.c_uint32), ("daddr", ctypes.c_uint32), ("sport", ctypes.c_uint16),
                ("dport", ctypes.c_uint16)]


@pytest.mark.parametrize(
    "ctype,value,fmt",
    [
        (ctypes.c_uint8, 200, "=B"),
        (ctypes.c_int16, -5, "=h"),
        (ctypes.c_uint32, 0xDEADBEEF, "=I"),
        (ctypes.c_int64, -(1 << 40), "=q"),
        (ctypes.c_uint64, (1 << 64) - 1, "=Q"),
        (ctypes.c_double, 2.5, "=d"),
        (ctypes.c_bool, True, "=?"),
    ],
)
def test_ctypes_scalar_values(ctype: Any, value: Any, fmt: str) -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctype, max_entries=4) as m:
        assert m.value_size == ctypes.sizeof(ctype)
        m[1] = value
        assert m[1] == value
        with _raw_view(m) as raw:
            assert raw[struct.pack("=I", 1)] == struct.pack(fmt, value)


def test_ctypes_structure_keys_and_values() -> None:
    with ebpfmaps.create("hash", key_type=FlowKey, value_type=Point, max_entries=8) as m:
        assert (m.key_size, m.value_size) == (ctypes.sizeof(FlowKey), ctypes.sizeof(Point)) == (12, 12)
        k = FlowKey(0x0A000001, 0x0A000002, 1234, 80)
        m[k] = Point(-1, 2, 3)
        got = m[k]
        assert isinstance(got, Point) and (got.x, got.y, got.tag) == (-1, 2, 3)
        m[FlowKey(1, 2, 3, 4)] = (7, 8, 9)  # a tuple builds the Structure
        assert m[FlowKey(1, 2, 3, 4)].y == 8
        keys = list(m.keys())
        assert all(isinstance(kk, FlowKey) for kk in keys)
        assert {(kk.saddr, kk.dport) for kk in keys} == {(0x0A000001, 80), (1, 4)}
        with _raw_view(m) as raw:
            assert raw[bytes(k)] == bytes(Point(-1, 2, 3))


def test_ctypes_array_keys() -> None:
    key_t = ctypes.c_uint8 * 16
    with ebpfmaps.create("hash", key_type=key_t, value_size=8, max_entries=4) as m:
        k = key_t(*range(16))
        m[k] = b"8 bytes!"
        assert m[k] == b"8 bytes!"
        assert bytes(next(iter(m.keys()))) == bytes(range(16))


def test_struct_format_one_field_is_scalar_several_are_tuples() -> None:
    with ebpfmaps.create("hash", key_type="<I", value_type="<IhQ", max_entries=4) as m:
        assert m.key_size == 4 and m.value_size == struct.calcsize("<IhQ") == 14
        m[5] = (1, -2, 3)
        assert m[5] == (1, -2, 3)
        assert list(m.items()) == [(5, (1, -2, 3))]
        with _raw_view(m) as raw:
            assert raw[struct.pack("<I", 5)] == struct.pack("<IhQ", 1, -2, 3)
    with ebpfmaps.create("array", value_type=struct.Struct(">H"), max_entries=4) as a:
        a[2] = 0x1234
        assert a[2] == 0x1234
        with _raw_view(a) as raw:
            assert raw[2] == b"\x12\x34"  # big-endian as the format says


def test_int_codec_uses_the_given_size() -> None:
    with ebpfmaps.create("hash", key_type=int, key_size=2, value_type=int, value_size=8, max_entries=4) as m:
        m[65535] = 1 << 63
        assert m[65535] == 1 << 63
    with pytest.raises(InvalidKeySize):
        ebpfmaps.create("hash", key_type=int, key_size=3, value_size=8, max_entries=4)


def test_raw_bytes_in_any_bytes_like_form() -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=4) as m:
        m[b"abcd"] = bytearray(b"1234")
        m[bytearray(b"efgh")] = memoryview(b"5678")
        assert m[memoryview(b"abcd")] == b"1234" and m[b"efgh"] == b"5678"
        assert all(type(k) is bytes for k in m.keys())


def test_typed_codecs_also_take_raw_bytes_of_the_right_size() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=Point, max_entries=4) as m:
        m[struct.pack("=I", 3)] = bytes(Point(4, 5, 6))
        assert m[3].y == 5


def test_custom_codec_instance() -> None:
    class Upper(Codec):
        def encode(self, value: Any) -> bytes:
            return super().encode(value.upper().encode())

        def decode(self, data: bytes) -> Any:
            return data.decode().lower()

    with ebpfmaps.create("hash", key_size=4, value_type=Upper(3), max_entries=4) as m:
        m[b"kkkk"] = "abc"
        assert m[b"kkkk"] == "abc"
        with _raw_view(m) as raw:
            assert raw[b"kkkk"] == b"ABC"


# ------------------------------------------------------------------------------------------- errors


def _assert_before_syscall(err: pytest.ExceptionInfo[Any]) -> None:
    assert err.value.errno is None, "the library must refuse this itself, before the kernel sees it"


@pytest.mark.parametrize("key", [b"abc", b"abcde", bytearray(b""), memoryview(b"123456789")])
def test_wrong_key_size_before_syscall(key: Any) -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=4) as m:
        m[b"good"] = b"12345678"
        for op in (lambda: m.update(key, bytes(8)), lambda: m.lookup(key), lambda: m.delete(key),
                   lambda: key in m):
            with pytest.raises(InvalidKeySize) as err:
                op()
            _assert_before_syscall(err)
        assert m.to_dict() == {b"good": b"12345678"}


@pytest.mark.parametrize("value", [b"", b"1234567", b"123456789", bytearray(100)])
def test_wrong_value_size_before_syscall(value: Any) -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=4) as m:
        m[b"good"] = b"12345678"
        with pytest.raises(InvalidValueSize) as err:
            m[b"good"] = value
        _assert_before_syscall(err)
        assert m[b"good"] == b"12345678"


@pytest.mark.parametrize(
    "key_type,value_type,key,value,exc",
    [
        (None, None, 1, b"12345678", InvalidArgument),  # an int where raw bytes are needed
        (None, None, "abcd", b"12345678", InvalidArgument),  # str is not bytes
        (None, None, b"abcd", [1, 2], InvalidArgument),
        (ctypes.c_uint32, ctypes.c_uint64, "x", 1, InvalidArgument),
        (ctypes.c_uint32, ctypes.c_uint64, -1, 1, InvalidArgument),
        (ctypes.c_uint32, ctypes.c_uint64, 1 << 32, 1, InvalidArgument),
        (ctypes.c_uint32, ctypes.c_uint64, 1, 1.5, InvalidArgument),
        (ctypes.c_uint32, Point, 1, FlowKey(), InvalidArgument),  # the wrong Structure
        (ctypes.c_uint32, Point, 1, 5, InvalidArgument),
        (ctypes.c_uint32, Point, 1, b"short", InvalidValueSize),
        ("=I", "=IQ", 1, (1,), InvalidArgument),
        ("=I", "=IQ", 1, 7, InvalidArgument),
    ],
)
def test_wrong_kinds_before_syscall(key_type: Any, value_type: Any, key: Any, value: Any,
                                    exc: type[Exception]) -> None:
    sizes: dict[str, int] = {}
    if key_type is None:
        sizes["key_size"] = 4
    if value_type is None:
        sizes["value_size"] = 8
    with ebpfmaps.create("hash", key_type=key_type, value_type=value_type, max_entries=4, **sizes) as m:
        with pytest.raises(exc) as err:
            m.update(key, value)
        _assert_before_syscall(err)
        assert list(m.keys()) == []


def test_codec_and_size_disagreeing_at_create() -> None:
    with pytest.raises(InvalidKeySize):
        ebpfmaps.create("hash", key_type=ctypes.c_uint64, key_size=4, value_size=8, max_entries=4)
    with pytest.raises(InvalidValueSize):
        ebpfmaps.create("hash", key_size=4, value_type=Point, value_size=8, max_entries=4)
    with pytest.raises(InvalidValueSize):
        ebpfmaps.create("hash", key_size=4, max_entries=4)  # no value size at all
    with pytest.raises(InvalidArgument):
        make_codec(dict, None, "value")


def test_batch_encoding_matches_single_encoding() -> None:
    with ebpfmaps.create("hash", key_type=FlowKey, value_type="=IQ", max_entries=100) as m:
        keys = [FlowKey(i, i + 1, i % 65536, 80) for i in range(100)]
        values = [(i, i * i) for i in range(100)]
        m.update_batch(keys, values)
        for k, v in zip(keys, values):
            assert m[k] == v
        # ctypes Structures are unhashable, so batches of them come as (key, value) lists, decoded to instances.
        pairs = [pair for chunk in m.iter_batches(batch_size=16) for pair in chunk]
        assert all(isinstance(k, FlowKey) for k, _ in pairs)
        assert {(k.saddr, k.daddr): v for k, v in pairs} == {(i, i + 1): (i, i * i) for i in range(100)}


def test_batch_decoding_of_ctypes_values() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=Point, max_entries=50) as m:
        m.update_batch(list(range(50)), [Point(i, -i, i % 7) for i in range(50)])
        got = m.lookup_batch()
        assert all(isinstance(v, Point) for v in got.values())
        assert {k: (v.x, v.y, v.tag) for k, v in got.items()} == {i: (i, -i, i % 7) for i in range(50)}
        with pytest.raises(InvalidArgument) as err:
            m.update_batch([1, 2], [Point(), FlowKey()])  # a wrong Structure inside a batch
        _assert_before_syscall(err)
