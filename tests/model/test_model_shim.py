"""Model test of an extensible map whose provider transforms values (XOR on the way in and out).

The user sees what was written; the kernel base map holds the transformed bytes; a value the provider
refuses leaves the map as it was. Runs the keyed-map rules (tests/model/_keyed.py) on a hash base and an LRU hash base.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any, ClassVar

from ebpfmaps_shim import ProviderRefused, register_provider, unregister_provider
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

import ebpfmaps
from ebpfmaps import MapType
from tests.model._keyed import FLAGS, KEYS, KeyedMachine
from tests.model._settings import model_settings
from tests.shim_helpers import recording_provider, val, xor

_U64 = struct.Struct("=Q")
_U32 = struct.Struct("=I")
REFUSED = val(0xBAD)  # the test provider refuses this value


class TransformingHashMachine(KeyedMachine):
    base_type: ClassVar[int] = int(MapType.HASH)

    def __init__(self) -> None:
        self.p = register_provider(recording_provider(base=self.base_type, transforms=True))
        super().__init__()

    def create_map(self) -> Any:
        return ebpfmaps.create(self.p.custom_map_type, key_type=ctypes.c_uint32, value_size=8,
                               max_entries=self.capacity)

    def teardown(self) -> None:
        super().teardown()
        unregister_provider(self.p)

    def value_for(self, raw: Any) -> Any:
        return _U64.pack(raw[0] if isinstance(raw, list) else raw)

    def sync(self) -> None:
        self.p.rec.take()  # the recorded callbacks are checked by test_shim_matrix; keep memory flat
        super().sync()

    @rule(key=KEYS)
    def refused_value(self, key: int) -> None:
        self.sync()
        self.refused(ProviderRefused, self.m.update, key, REFUSED)

    @rule(pairs=st.lists(st.tuples(KEYS, st.integers(min_value=0, max_value=1000)), min_size=1, max_size=6),
          at=st.integers(min_value=0, max_value=5))
    def refused_in_batch(self, pairs: list[tuple[int, int]], at: int) -> None:
        """One refused value anywhere in a batch: the batch is all or nothing."""
        self.sync()
        ks = [k for k, _ in pairs]
        vs = [val(v) for _, v in pairs]
        vs[min(at, len(vs) - 1)] = REFUSED
        if len(set(ks)) + len(self.model.keys() - set(ks)) > self.capacity and not self.lru:
            return  # might fill the map first: another error than the provider's
        self.refused(ProviderRefused, self.m.update_batch, ks, vs)

    @rule(pairs=st.lists(st.tuples(KEYS, st.integers(min_value=0, max_value=(1 << 64) - 1)), max_size=10),
          flags=FLAGS)
    def update_batch(self, pairs: list[tuple[int, int]], flags: int) -> None:
        """Extensible maps make every batch all or nothing (BPF_ANY too: no BatchError with a prefix), and
        check the flags of every element before writing, so the error may come from any failing element."""
        if self.lru:
            KeyedMachine.update_batch(self, pairs, flags)
            return
        self.sync()
        ks, vs = [k for k, _ in pairs], [self.value_for(v) for _, v in pairs]
        work = dict(self.model)
        errors = {self.expected_update(self.model, k, flags) for k in ks} - {None}
        failed = False
        for k, v in zip(ks, vs):
            error = self.expected_update(work, k, flags)
            if error is not None:
                errors.add(error)
                failed = True
                break
            work[k] = v
        if failed:
            self.refused(tuple(errors), self.m.update_batch, ks, vs, flags)
        else:
            assert self.m.update_batch(ks, vs, flags) == len(ks)
            self.model = work

    @invariant()
    def base_holds_transformed_bytes(self) -> None:
        base = {_U32.unpack(k)[0]: v for k, v in self.m.base.raw_pairs()}
        assert base == {k: xor(v) for k, v in self.model.items()}


class TransformingLruMachine(TransformingHashMachine):
    base_type = int(MapType.LRU_HASH)
    lru = True


TestTransformingHash = TransformingHashMachine.TestCase
TestTransformingHash.settings = model_settings()
TestTransformingLru = TransformingLruMachine.TestCase
TestTransformingLru.settings = model_settings(examples=15)
