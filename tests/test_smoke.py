"""The minimum: a real map round-trips a value, and bpftool sees it."""

import ctypes

import ebpfmaps
from tests.conftest import bpftool_json


def test_hash_roundtrip_seen_by_bpftool(pin_path):
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=8, name="smoke") as m:
        m[7] = 42
        assert m[7] == 42
        m.pin(pin_path)
        dump = bpftool_json("map", "dump", "pinned", str(pin_path))
        assert len(dump) == 1
        entry = dump[0]
        assert int.from_bytes(bytes(int(b, 16) for b in entry["key"]), "little") == 7
        assert int.from_bytes(bytes(int(b, 16) for b in entry["value"]), "little") == 42
