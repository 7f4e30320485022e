"""The name of one type in a kernel BTF object, found by walking the records without parsing them.

Cheaper than :class:`~ebpfmaps.btf.reader.BtfTypes` (which builds every type) when one name is all a
caller needs: whether a map's value type marks it as an extensible map, for one.
"""

from __future__ import annotations

import struct

from ebpfmaps import errors
from ebpfmaps._libbpf import maps as _maps

__all__ = ["type_name", "type_name_in"]

_HEADER = struct.Struct("=HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
_TYPE = struct.Struct("=III")  # name_off, info (vlen 0-15, kind 24-28), size or type
_MAGIC = 0xEB9F
# Bytes after the 12-byte record, per kind (include/uapi/linux/btf.h): a fixed part and a part per member.
_EXTRA: dict[int, tuple[int, int]] = {
    1: (4, 0), 2: (0, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 7: (0, 0), 8: (0, 0), 9: (0, 0),
    10: (0, 0), 11: (0, 0), 12: (0, 0), 13: (0, 8), 14: (4, 0), 15: (0, 12), 16: (0, 0), 17: (4, 0), 18: (0, 0),
    19: (0, 12),
}

_cache: dict[tuple[int, int], str | None] = {}
_CACHE_SIZE = 256


def type_name_in(blob: bytes, type_id: int) -> str | None:
    """The name of type ``type_id`` in a raw BTF blob (``""`` for an anonymous type); None when the blob is
    not BTF, has no such type or uses a kind this walker does not know (a newer kernel's)."""
    if type_id <= 0 or len(blob) < _HEADER.size:
        return None
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(blob)
    if magic != _MAGIC:
        return None
    start = hdr_len + type_off
    end = min(start + type_len, len(blob))
    pos, current = start, 0
    while pos + _TYPE.size <= end:
        current += 1
        name_off, info, _ = _TYPE.unpack_from(blob, pos)
        if current == type_id:
            strings = hdr_len + str_off
            if name_off >= str_len:
                return None
            first = strings + name_off
            last = blob.find(b"\0", first, strings + str_len)
            return blob[first: last if last >= 0 else strings + str_len].decode(errors="replace")
        extra = _EXTRA.get((info >> 24) & 0x1F)
        if extra is None:
            return None
        pos += _TYPE.size + extra[0] + extra[1] * (info & 0xFFFF)
    return None


def type_name(btf_id: int, type_id: int) -> str | None:
    """The name of type ``type_id`` of kernel BTF object ``btf_id``; None when it cannot be told (the object
    is gone or unreadable here, or see :func:`type_name_in`). Cached: a BTF object never changes."""
    key = (btf_id, type_id)
    if key in _cache:
        return _cache[key]
    try:
        h = _maps.btf_get_fd_by_id(btf_id)
    except (errors.KeyNotFound, errors.PermissionDenied):
        return None  # not cached: it may be readable later, with more privileges
    try:
        name = type_name_in(_maps.btf_info_blob(h), type_id)
    finally:
        h.close()
    if len(_cache) >= _CACHE_SIZE:
        _cache.clear()
    _cache[key] = name
    return name
