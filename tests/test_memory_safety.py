"""Memory-safety regressions: what reaches the kernel is sized by the map, never by a codec's say-so.

Each test here failed before its fix: the kernel read past the end of a Python object (a user codec's
short output), or a closed object's memory was touched instead of raising the library's error.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

import ebpfmaps
from ebpfmaps.codecs import Codec
from ebpfmaps.errors import InvalidKeySize, InvalidValueSize
from ebpfmaps.maps.lpm import LpmKeyCodec
from ebpfmaps.maptypes import MapType
from tests.kernel_features import require_map_type


class ShortCodec(Codec):
    """A user codec that claims ``size`` bytes but encodes only one."""

    def encode(self, value: Any) -> bytes:
        return b"x"


class ShortLpmKey(LpmKeyCodec):
    """An LPM key codec whose output lost its last bytes."""

    def encode(self, value: Any) -> bytes:
        return super().encode(value)[:2]


def test_keyless_maps_refuse_short_codec_output_before_the_syscall() -> None:
    # The kernel copies value_size bytes from the buffer; a 1-byte encoding used to be padded with
    # whatever followed it in the Python heap, and that heap content came back out of pop().
    with ebpfmaps.QueueMap(value_type=ShortCodec(256, "value"), max_entries=4) as q:
        with pytest.raises(InvalidValueSize):
            q.push(1)
        assert q.is_empty()
    require_map_type(MapType.BLOOM_FILTER)
    with ebpfmaps.BloomFilterMap(value_type=ShortCodec(256, "value"), max_entries=16) as bloom:
        with pytest.raises(InvalidValueSize):
            bloom.add(1)
        with pytest.raises(InvalidValueSize):
            1 in bloom  # noqa: B015 - the lookup itself must refuse
    with ebpfmaps.BloomFilterMap(value_size=8, max_entries=16) as bloom:
        assert b"12345678" not in bloom  # library codecs are unaffected


def test_lpm_lookups_refuse_short_key_codec_output() -> None:
    with ebpfmaps.LpmTrieMap(key_type=ShortLpmKey(4), value_size=4, max_entries=8) as t:
        for op in (lambda: t.lookup("10.0.0.0/8"), lambda: t.longest_match("10.1.2.3"),
                   lambda: t.longest_prefix("10.1.2.3"), lambda: t.update("10.0.0.0/8", b"abcd")):
            with pytest.raises(InvalidKeySize):
                op()


def test_array_zero_refuses_short_key_codec_output() -> None:
    with ebpfmaps.ArrayMap(key_type=ShortCodec(4, "key"), value_type=ctypes.c_uint64, max_entries=4) as a:
        with pytest.raises(InvalidKeySize):
            a.zero(0)


def _lookup_program(m: Any) -> list[Any]:
    from ebpfmaps import asm
    from ebpfmaps.asm import R0, R1, R2, R10

    return [asm.st(4, R10, -4, 7), asm.mov64(R2, R10), asm.add64(R2, -4), asm.ld_map_fd(R1, m),
            asm.call("map_lookup_elem"), asm.mov64(R0, 0), asm.exit_()]


def test_program_load_refuses_instructions_naming_a_closed_map() -> None:
    from ebpfmaps.errors import MapClosed
    from ebpfmaps.programs import Program

    m = ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=4)
    insns = _lookup_program(m)
    m.close()
    # The closed map's fd number is free again; the next map usually gets it, and the program used to
    # load against that unrelated map without a word.
    with ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=4):
        with pytest.raises(MapClosed):
            Program.load("socket_filter", insns)
    with ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=4) as m2:
        insns = _lookup_program(m2)
        with Program.load("socket_filter", insns) as prog:  # the map is live: fine
            assert prog.test_run(data=bytes(16)).retval == 0
        m2.resize(8)  # resize dup2()s the new map onto the same fd: the code follows the map
        with Program.load("socket_filter", insns) as prog:
            shown = prog.info()
            assert shown.map_ids_count == 1


def test_extensible_map_after_close_raises_map_closed() -> None:
    from ebpfmaps_shim import register_provider, unregister_provider

    from ebpfmaps.errors import MapClosed
    from tests.shim_helpers import recording_provider

    provider = recording_provider()
    register_provider(provider)
    try:
        m: Any = ebpfmaps.create(provider.custom_map_type, key_size=4, value_size=8, max_entries=8)
        m[b"aaaa"] = b"12345678"
        m.close()
        for op in (lambda: m.lookup(b"aaaa"), lambda: m.update(b"aaaa", b"87654321"), lambda: list(m),
                   lambda: m.find_element(b"aaaa"), lambda: list(m.stored_items()), lambda: m.locked(b"aaaa"),
                   lambda: m.lookup_batch(), lambda: m.delete_batch([b"aaaa"])):
            with pytest.raises(MapClosed):
                op()
    finally:
        unregister_provider(provider)
