"""Helpers shared by the ported kernel selftests."""

from __future__ import annotations

from typing import Any

from ebpfmaps.errors import KeyNotFound


def next_key(m: Any, key: Any = None) -> Any:
    """bpf_map_get_next_key(fd, key, &next): the key after ``key`` (the first one for ``None``),
    ``None`` when the kernel answers ENOENT (no next key, whichever way the library reports it)."""
    try:
        nxt = m.next_key(key)
    except KeyNotFound as exc:
        if exc.errno is None:  # refused by the library before any syscall: not the kernel's ENOENT
            raise
        return None
    return nxt
