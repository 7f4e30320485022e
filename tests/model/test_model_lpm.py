"""Model test of the LPM trie: exact dict semantics for m[net], longest-prefix match for longest_match()."""

from __future__ import annotations

import ctypes
import ipaddress
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import ebpfmaps
from ebpfmaps import BPF_ANY, BPF_EXIST, BPF_NOEXIST, KeyExists, KeyNotFound, NotSupported, OutOfMemory
from ebpfmaps.errors import BatchError
from tests.kernel_features import lpm_full_inplace_update, lpm_update_flags_honoured
from tests.model._settings import model_settings

CAPACITY = 6
ADDRESSES = ["0.0.0.0", "10.0.0.0", "10.1.0.0", "10.1.2.0", "10.1.2.3", "10.200.0.1", "192.168.1.1"]
NETS = st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False),
                 st.sampled_from(ADDRESSES), st.sampled_from([0, 8, 12, 16, 24, 31, 32]))
PROBES = st.one_of(st.sampled_from(ADDRESSES), st.sampled_from(["10.1.2.4", "10.1.9.9", "11.0.0.1", "10.1.2.2"]))
U32 = st.integers(min_value=0, max_value=(1 << 32) - 1)
FLAGS = st.sampled_from([BPF_ANY, BPF_NOEXIST, BPF_EXIST])

# A full trie: the kernel's ENOSPC is reported as OutOfMemory, as for a full hash map.
FULL = (OutOfMemory,)


def longest(model: dict[Any, int], address: str) -> tuple[Any, int] | None:
    addr = ipaddress.ip_address(address)
    matches = [n for n in model if addr in n]
    if not matches:
        return None
    best = max(matches, key=lambda n: n.prefixlen)
    return best, model[best]


class LpmMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.m = ebpfmaps.LpmTrieMap(family="ipv4", value_type=ctypes.c_uint32, max_entries=CAPACITY)
        self.model: dict[Any, int] = {}

    def teardown(self) -> None:
        self.m.close()

    def expected(self, model: dict[Any, int], net: Any, flags: int) -> tuple[type[BaseException], ...] | None:
        present = net in model
        if len(model) >= CAPACITY and not lpm_full_inplace_update():
            return FULL  # kernels without the LPM trie fixes of 2025 refuse every update of a full trie (probe)
        if not lpm_update_flags_honoured():
            flags = BPF_ANY  # ... and ignore BPF_EXIST/BPF_NOEXIST (probe)
        if flags == BPF_NOEXIST and present:
            return (KeyExists,)
        if flags == BPF_EXIST and not present:
            return (KeyNotFound,)
        if not present and len(model) >= CAPACITY:
            return FULL
        return None

    def refused(self, exc: Any, fn: Any, *args: Any) -> pytest.ExceptionInfo[Any]:
        before = self.m.to_dict()
        with pytest.raises(exc) as info:
            fn(*args)
        assert self.m.to_dict() == before == self.model
        return info

    @rule(net=NETS, value=U32, flags=FLAGS, as_str=st.booleans())
    def update(self, net: Any, value: int, flags: int, as_str: bool) -> None:
        key = str(net) if as_str else net
        exp = self.expected(self.model, net, flags)
        if exp is None:
            self.m.update(key, value, flags)
            self.model[net] = value
        else:
            self.refused(exp, self.m.update, key, value, flags)

    @rule(net=NETS)
    def delete(self, net: Any) -> None:
        if net in self.model:
            del self.m[net]
            del self.model[net]
        else:
            self.refused(KeyNotFound, self.m.delete, net)

    @rule(net=NETS)
    def exact_lookup(self, net: Any) -> None:
        assert self.m.lookup(net) == self.model.get(net)
        assert (net in self.m) == (net in self.model)
        assert self.m.get(net, "absent") == self.model.get(net, "absent")

    @rule(address=PROBES)
    def longest_match(self, address: str) -> None:
        want = longest(self.model, address)
        assert self.m.longest_match(address, "none") == ("none" if want is None else want[1])
        assert self.m.longest_prefix(address) == want

    @rule(net=NETS)
    def lookup_and_delete_refused(self, net: Any) -> None:
        self.refused(NotSupported, self.m.lookup_and_delete, net)

    @rule(pairs=st.lists(st.tuples(NETS, U32), max_size=6), flags=FLAGS)
    def update_batch(self, pairs: list[tuple[Any, int]], flags: int) -> None:
        work = dict(self.model)
        failed_at, error = None, None
        for i, (net, v) in enumerate(pairs):
            error = self.expected(work, net, flags)
            if error is not None:
                failed_at = i
                break
            work[net] = v
        ks, vs = [n for n, _ in pairs], [v for _, v in pairs]
        if failed_at is None:
            assert self.m.update_batch(ks, vs, flags) == len(pairs)
            self.model = work
        elif flags == BPF_ANY:
            # No kernel batch for tries: element by element, stopping at the failure with BatchError (done=i).
            try:
                self.m.update_batch(ks, vs, flags)
            except BatchError as exc:
                assert exc.done == failed_at and isinstance(exc.cause, error)
            except error:
                assert failed_at == 0
            else:
                raise AssertionError("update_batch did not fail")
            self.model = work
        else:
            self.refused(error, self.m.update_batch, ks, vs, flags)
        assert self.m.to_dict() == self.model

    @rule(nets=st.lists(NETS, max_size=6))
    def delete_batch(self, nets: list[Any]) -> None:
        present = {n for n in nets if n in self.model}
        assert self.m.delete_batch(nets) == len(present)
        for n in present:
            del self.model[n]

    @rule()
    def clear(self) -> None:
        assert self.m.clear() == len(self.model)
        self.model = {}

    @rule()
    def lookup_and_delete_batch_refused(self) -> None:
        self.refused(NotSupported, self.m.lookup_and_delete_batch)

    @invariant()
    def whole_trie_matches(self) -> None:
        items = list(self.m.items())
        assert len(items) == len({k for k, _ in items})
        assert dict(items) == self.model
        assert set(self.m.keys()) == set(self.model)
        assert self.m.lookup_batch() == self.model
        assert len(self.m) == len(self.model)


TestLpm = LpmMachine.TestCase
TestLpm.settings = model_settings()


def test_full_trie_is_out_of_memory() -> None:
    with ebpfmaps.LpmTrieMap(family="ipv4", value_type=ctypes.c_uint32, max_entries=1) as m:
        m["10.0.0.0/8"] = 1
        with pytest.raises(OutOfMemory):
            m["11.0.0.0/8"] = 2
        assert m.to_dict() == {ipaddress.ip_network("10.0.0.0/8"): 1}
