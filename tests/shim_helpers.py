"""Helpers of the shim tests: providers that record every callback, built with a chosen set of callbacks."""

from __future__ import annotations

import itertools
import os
import struct
import threading
from collections.abc import Iterable
from typing import Any

from ebpfmaps_shim import CALLBACKS, DeleteReason, MapProvider

from ebpfmaps.maptypes import MapType
from ebpfmaps.spec import MapSpec

U64 = struct.Struct("=Q")
U32 = struct.Struct("=I")
XOR = 0x5A

# Type ids for test providers: unique per process, far from the example providers' 4097-4101.
_ids = itertools.count(20000 + (os.getpid() % 1000) * 40)
_ids_lock = threading.Lock()


def next_type_id() -> int:
    with _ids_lock:
        return next(_ids)


def xor(data: bytes) -> bytes:
    """The test transformation: every byte XOR 0x5A (same size, so every base type fits)."""
    return bytes(b ^ XOR for b in data)


def val(n: int) -> bytes:
    return U64.pack(n)


def key_int(kb: bytes | None) -> int | None:
    return None if kb is None else int(U32.unpack(kb)[0])


class _Recorder:
    """State shared by the recording methods (events in call order, thread-safe)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def add(self, *event: Any) -> None:
        with self.lock:
            self.events.append(event)

    def take(self) -> list[tuple[Any, ...]]:
        with self.lock:
            out, self.events = self.events, []
        return out


def _create_map_notify(self: Any, spec: MapSpec) -> int | None:
    self.rec.add("create", spec.type, spec.key_size, spec.value_size)
    return None


def _delete_map_notify(self: Any, m: Any) -> None:
    self.rec.add("delete_map", m.map_id)


def _associate_program(self: Any, m: Any, program_type: Any) -> None:
    self.rec.add("associate", program_type)
    if program_type == "forbidden":
        raise ValueError("this test provider refuses 'forbidden' programs")


def _find_element_notify(self: Any, m: Any, key: bytes, stored: bytes) -> bytes | None:
    self.rec.add("find", key_int(key), stored)
    return xor(stored) if self.transforms_values else stored


def _update_element_notify(self: Any, m: Any, key: bytes, value: bytes, flags: int) -> bytes | None:
    self.rec.add("update", key_int(key), value, flags)
    if value == self.refused_value:
        raise ValueError("the test provider refuses this value")
    return xor(value) if self.transforms_values else None


def _delete_element_notify(self: Any, m: Any, key: bytes, stored: bytes, reason: DeleteReason) -> None:
    self.rec.add("delete", key_int(key), stored, reason)


def _get_next_key_and_value_notify(self: Any, m: Any, key: bytes | None, next_key: bytes,
                                   stored: bytes) -> bytes | None:
    self.rec.add("next", key_int(key), key_int(next_key), stored)
    return xor(stored) if self.transforms_values else stored


def _external_change_notify(self: Any, m: Any, changes: list[Any]) -> None:
    self.rec.add("external", [(key_int(c.key), c.old, c.new, c.reason) for c in changes])


_IMPLEMENTATIONS = {
    "create_map_notify": _create_map_notify,
    "delete_map_notify": _delete_map_notify,
    "associate_program": _associate_program,
    "find_element_notify": _find_element_notify,
    "update_element_notify": _update_element_notify,
    "delete_element_notify": _delete_element_notify,
    "get_next_key_and_value_notify": _get_next_key_and_value_notify,
    "external_change_notify": _external_change_notify,
}
assert set(_IMPLEMENTATIONS) == set(CALLBACKS)


def recording_provider(*, base: int = int(MapType.HASH), transforms: bool = False,
                       callbacks: Iterable[str] = CALLBACKS, type_id: int | None = None) -> Any:
    """A provider whose class defines exactly ``callbacks``, each recording its call in ``p.rec``."""
    chosen = set(callbacks)
    body: dict[str, Any] = {name: fn for name, fn in _IMPLEMENTATIONS.items() if name in chosen}
    body.update(custom_map_type=type_id if type_id is not None else next_type_id(), base_map_type=int(base),
                transforms_values=transforms, refused_value=val(0xBAD))
    cls = type(f"Recording_{'T' if transforms else 'P'}_{len(chosen)}", (MapProvider,), body)
    p = cls()
    p.rec = _Recorder()
    return p
