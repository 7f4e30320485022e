"""LPM_TRIE maps: exact dict semantics, longest-prefix matches in IPv4 and IPv6, iteration, bpftool's view."""

from __future__ import annotations

import ctypes
import ipaddress
import random
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps.errors import InvalidArgument, InvalidKeySize, KeyNotFound
from ebpfmaps.maps.lpm import LpmKeyCodec
from tests.types_support import bpftool, hex_bytes

V4_ROUTES = {"0.0.0.0/0": 1, "10.0.0.0/8": 2, "10.1.0.0/16": 3, "10.1.2.0/24": 4, "10.1.2.128/25": 5,
             "192.168.0.0/16": 6, "192.168.1.1/32": 7}
V6_ROUTES = {"::/0": 10, "2001:db8::/32": 11, "2001:db8:1::/48": 12, "2001:db8:1:2::/64": 13,
             "2001:db8:1:2::1/128": 14, "fe80::/10": 15}


def reference_match(routes: dict[str, int], address: str) -> tuple[str, int] | None:
    """The longest prefix containing ``address``, computed with the ipaddress module alone."""
    addr = ipaddress.ip_address(address)
    best: tuple[int, str, int] | None = None
    for net, value in routes.items():
        n = ipaddress.ip_network(net)
        if n.version == addr.version and addr in n and (best is None or n.prefixlen > best[0]):
            best = (n.prefixlen, net, value)
    return None if best is None else (best[1], best[2])


@pytest.mark.parametrize(("family", "routes", "probes"), [
    ("ipv4", V4_ROUTES, ["10.1.2.200", "10.1.2.3", "10.1.9.9", "10.200.0.1", "192.168.1.1", "192.168.1.2",
                         "8.8.8.8"]),
    ("ipv6", V6_ROUTES, ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:3::", "2001:db8:ffff::1", "fe80::1",
                         "2002::1"]),
])
def test_longest_prefix_of_overlapping_networks(family: str, routes: dict[str, int], probes: list[str]) -> None:
    with ebpfmaps.LpmTrieMap(family=family, value_type=ctypes.c_uint32, max_entries=64) as t:
        for net, value in routes.items():
            t[net] = value
        for address in probes:
            want = reference_match(routes, address)
            assert want is not None
            assert t.longest_match(address) == want[1], address
            got = t.longest_prefix(address)
            assert got == (ipaddress.ip_network(want[0]), want[1]), address
        assert dict(t.items()) == {ipaddress.ip_network(k): v for k, v in routes.items()}
        assert len(t) == len(routes)


def test_random_routes_against_the_reference() -> None:
    rng = random.Random(7)
    routes: dict[str, int] = {}
    while len(routes) < 200:
        plen = rng.randint(0, 32)
        net = ipaddress.ip_network((rng.getrandbits(32), plen), strict=False)
        routes[str(net)] = len(routes)
    with ebpfmaps.LpmTrieMap(family="ipv4", value_type=ctypes.c_uint32, max_entries=256) as t:
        t.update_batch(list(routes), list(routes.values()))
        for _ in range(300):
            address = str(ipaddress.IPv4Address(rng.getrandbits(32)))
            want = reference_match(routes, address)
            assert t.longest_match(address) == (None if want is None else want[1])


def test_exact_lookup_is_not_a_prefix_match() -> None:
    with ebpfmaps.LpmTrieMap(family="ipv4", value_type=ctypes.c_uint32, max_entries=8) as t:
        t["10.0.0.0/8"] = 1
        t["10.1.2.0/24"] = 3
        assert "10.1.0.0/16" not in t  # the kernel's lookup would answer the /8's value here
        assert t.lookup("10.1.0.0/16") is None and t.longest_match("10.1.0.0/16") == 1
        assert t["10.1.2.0/24"] == 3 and t[ipaddress.ip_network("10.0.0.0/8")] == 1
        with pytest.raises(KeyNotFound):
            t["10.1.0.0/16"]
        with pytest.raises(KeyNotFound):
            del t["10.1.0.0/16"]  # delete is exact in the kernel too
        del t["10.0.0.0/8"]
        assert t.longest_match("10.9.9.9") is None and t.longest_match("10.1.2.9") == 3
        assert list(t.keys()) == [ipaddress.ip_network("10.1.2.0/24")]


def test_key_forms_and_errors() -> None:
    with ebpfmaps.LpmTrieMap(family="ipv4", value_size=1, max_entries=8) as t:
        t[(16, bytes([172, 16, 0, 0]))] = b"a"
        t[(24, "172.16.5.0")] = b"b"
        t[ipaddress.ip_address("172.16.5.9")] = b"c"  # an address is its /32
        assert t.longest_prefix("172.16.5.9") == (ipaddress.ip_network("172.16.5.9/32"), b"c")
        assert t.longest_match(bytes([172, 16, 9, 9])) == b"a"
        assert t.longest_match(int(ipaddress.ip_address("172.16.5.1"))) == b"b"
        # A network bounds the match to prefixes no longer than its own.
        assert t.longest_match("172.16.5.0/20") == b"a"
        for bad in ("10.0.0.1/8", "2001:db8::/32", (33, bytes(4)), (8, bytes(3)), "not an ip"):
            with pytest.raises((InvalidArgument, InvalidKeySize)):
                t[bad] = b"x"
    with pytest.raises(InvalidArgument):
        ebpfmaps.LpmTrieMap(value_size=4, max_entries=4)  # no family/key size
    with pytest.raises(InvalidKeySize):
        ebpfmaps.LpmTrieMap(family="ipv4", key_size=20, value_size=4, max_entries=4)
    with pytest.raises(InvalidKeySize):
        ebpfmaps.LpmTrieMap(data_size=257, value_size=4, max_entries=4)


def test_raw_data_tries_and_no_prealloc_set_for_the_user() -> None:
    with ebpfmaps.LpmTrieMap(data_size=3, value_size=2, max_entries=8) as t:
        assert t.info().flags & ebpfmaps.BPF_F_NO_PREALLOC
        t[(12, b"\xab\xc0\x00")] = b"12"
        t[(20, b"\xab\xcd\xe0")] = b"20"
        assert t.longest_prefix(b"\xab\xcd\xef") == ((20, b"\xab\xcd\xe0"), b"20")
        assert t.longest_prefix(b"\xab\xc1\x00") == ((12, b"\xab\xc0\x00"), b"12")
        assert t.longest_match(b"\xff\xff\xff") is None


def test_pinned_trie_reopens_with_network_keys_and_bpftool_dumps_it(pin_path: Path) -> None:
    with ebpfmaps.LpmTrieMap(family="ipv6", value_type=ctypes.c_uint32, max_entries=8, name="lpm6") as t:
        t["2001:db8::/32"] = 11
        t["2001:db8:1::/48"] = 12
        t.pin(pin_path)
        again = ebpfmaps.open_pinned(pin_path)
        assert isinstance(again, ebpfmaps.LpmTrieMap) and isinstance(again.key_codec, LpmKeyCodec)
        assert again.longest_match("2001:db8:1::5") == (12).to_bytes(4, "little")  # raw values: no codec given
        again.close()
        dump = bpftool("map", "dump", "pinned", str(pin_path))
        seen = set()
        for entry in dump:
            key = hex_bytes(entry["key"])
            plen = int.from_bytes(key[:4], "little")
            seen.add((str(ipaddress.IPv6Network((key[4:], plen))), int.from_bytes(hex_bytes(entry["value"]), "little")))
        assert seen == {("2001:db8::/32", 11), ("2001:db8:1::/48", 12)}
        assert bpftool("map", "show", "pinned", str(pin_path))["type"] == "lpm_trie"
