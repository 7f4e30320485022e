"""A configuration map: one entry holding a ctypes Structure.

Runs unchanged in both profiles. A C program would write the struct's raw bytes; with
``value_type=Config`` the map encodes and decodes the Structure itself, and the
raw bytes are still there for a C program or a BPF program reading the map.
"""

from __future__ import annotations

import ctypes

import ebpfmaps


class Config(ctypes.Structure):
    """``#[repr(C)] struct Config { enabled: u32, threshold: u32, timeout_ms: u32 }``."""

    _fields_ = [("enabled", ctypes.c_uint32), ("threshold", ctypes.c_uint32), ("timeout_ms", ctypes.c_uint32)]


def main() -> None:
    print(f"profile: {ebpfmaps.profile.active()}")
    # ArrayMap::with_entries(size_of::<Config>(), 1)
    config_map = ebpfmaps.ArrayMap.with_entries(value_type=Config, max_entries=1, name="config")
    assert config_map.value_size == ctypes.sizeof(Config) == 12

    config_map.update(0, Config(enabled=1, threshold=100, timeout_ms=5000), 0)

    cfg = config_map[0]
    print(f"config: enabled={cfg.enabled} threshold={cfg.threshold} timeout_ms={cfg.timeout_ms}")
    assert (cfg.enabled, cfg.threshold, cfg.timeout_ms) == (1, 100, 5000)
    # The same bytes a raw copy of the struct would hand over.
    raw = config_map.lookup_bytes(0)
    assert raw == bytes(Config(1, 100, 5000)), raw
    print(f"raw bytes: {raw.hex() if raw else None}")
    config_map.close()


if __name__ == "__main__":
    main()
