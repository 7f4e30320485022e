"""Port of tools/testing/selftests/bpf/test_lpm_map.c (map_tests/lpm_trie_map_basic_ops.c in newer trees).

The C checks the kernel's LPM trie against "tlpm", a trivial longest-prefix match over a list; ``Tlpm``
below is that reference. Lookups the C makes with ``bpf_map_lookup_elem`` (a longest-prefix match in
the kernel) are ``longest_match`` here; the library's ``m[key]`` is an exact lookup. LPM tries have no
lookup_and_delete: none of these scenarios uses it.

Sizes: test_lpm_map makes 65536 random lookups per key size (x2, around a delete); from Python that
is minutes, so ``N_LOOKUPS`` is scaled down. Everything else keeps the C's counts.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import random
import threading

import pytest

import ebpfmaps
from ebpfmaps import BPF_ANY, BPF_EXIST, BPF_F_LOCK, BPF_NOEXIST
from ebpfmaps.errors import InvalidFlags, KeyExists, KeyNotFound, MapError, OutOfMemory
from tests.kernel_features import lpm_full_inplace_update, lpm_update_flags_honoured
from tests.selftests._support import next_key

N_NODES = 1 << 8
N_LOOKUPS = 1 << 8  # 1 << 16 in the C


class Tlpm:
    """test_lpm_map.c: tlpm_add / tlpm_match / tlpm_delete / tlpm_clear.

    Nodes are ``(key bytes, n_bits)``, newest first like the C list (an equivalent node is overwritten
    in place). Matching compares the first bits as integers, which is what the C's bit loop does.
    """

    def __init__(self) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}  # (n_bits, masked key) -> key, insertion ordered

    @staticmethod
    def _masked(key: bytes, n_bits: int) -> int:
        """The first ``n_bits`` bits of ``key`` as an integer."""
        return int.from_bytes(key, "big") >> (8 * len(key) - n_bits)

    def add(self, key: bytes, n_bits: int) -> None:
        self._nodes[(n_bits, self._masked(key, n_bits))] = key

    def nodes(self) -> list[tuple[bytes, int]]:
        """Newest first, as the C list is walked from its head."""
        return [(key, n_bits) for (n_bits, _), key in reversed(self._nodes.items())]

    def match(self, key: bytes, n_bits: int) -> tuple[bytes, int] | None:
        width = 8 * len(key)
        q = int.from_bytes(key, "big")
        best: tuple[bytes, int] | None = None
        for (node_bits, masked), node_key in self._nodes.items():
            if node_bits > min(n_bits, width) or (best is not None and node_bits <= best[1]):
                continue
            if q >> (width - node_bits) == masked:
                best = (node_key, node_bits)
        return best

    def delete(self, key: bytes, n_bits: int) -> None:
        best = self.match(key, n_bits)
        if best is None or best[1] != n_bits:
            return
        for ident, node_key in self._nodes.items():
            if ident[0] == n_bits and node_key == best[0]:
                del self._nodes[ident]
                return

    def clear(self) -> None:
        self._nodes.clear()


def bits_equal(a: bytes, b: bytes, n_bits: int) -> bool:
    """The C's ``(a[j / 8] & (1 << (7 - j % 8))) == (b[j / 8] & ...)`` for every j < n_bits."""
    return Tlpm._masked(a, n_bits) == Tlpm._masked(b, n_bits)


@pytest.mark.no_kernel
def test_lpm_basic() -> None:
    """test_lpm_map.c: test_lpm_basic: very basic, static tests that tlpm works as expected."""
    t = Tlpm()
    assert t.match(b"\xff", 8) is None
    t.add(b"\xff", 8)
    t1 = (b"\xff", 8)
    assert t.match(b"\xff", 8) == t1
    assert t.match(b"\xff\xff", 16) == t1
    assert t.match(b"\xff\x00", 16) == t1
    assert t.match(b"\x7f", 8) is None
    assert t.match(b"\xfe", 8) is None
    assert t.match(b"\xff", 7) is None

    t.add(b"\xff\xff", 16)
    t2 = (b"\xff\xff", 16)
    assert t.match(b"\xff", 8) == t1
    assert t.match(b"\xff\xff", 16) == t2
    assert t.match(b"\xff\xff", 15) == t1
    assert t.match(b"\x7f\xff", 16) is None

    t.delete(b"\xff\xff", 16)
    assert t.match(b"\xff", 8) == t1
    assert t.match(b"\xff\xff", 16) == t1
    t.delete(b"\xff", 8)
    assert t.match(b"\xff", 8) is None
    t.clear()


@pytest.mark.no_kernel
def test_lpm_order() -> None:
    """test_lpm_map.c: test_lpm_order: tlpm answers the same whatever the insertion order."""
    rng = random.Random(0xF00BA1)
    l1, l2 = Tlpm(), Tlpm()
    for _ in range(1 << 12):
        l1.add(bytes([rng.randrange(0xFF), rng.randrange(0xFF)]), rng.randrange(16) + 1)
    for key, n_bits in l1.nodes():  # newest first: l2 gets the reverse order
        l2.add(key, n_bits)
    for _ in range(1 << 8):
        key = bytes([rng.randrange(0xFF), rng.randrange(0xFF)])
        t1, t2 = l1.match(key, 16), l2.match(key, 16)
        assert (t1 is None) == (t2 is None)
        if t1 is not None and t2 is not None:
            assert t1[1] == t2[1] and bits_equal(t1[0], t2[0], t1[1])


def _check_lookups(m: ebpfmaps.LpmTrieMap, ref: Tlpm, keysize: int, rng: random.Random) -> int:
    matches = 0
    for _ in range(N_LOOKUPS):
        data = bytes(rng.getrandbits(8) for _ in range(keysize))
        t = ref.match(data, 8 * keysize)
        value = m.longest_match(data)  # bpf_map_lookup_elem with prefixlen = 8 * keysize
        assert (t is None) == (value is None), data.hex()
        if t is not None:
            matches += 1
            assert value[keysize] == t[1]
            assert bits_equal(t[0], value, t[1])
    return matches


@pytest.mark.parametrize("keysize", range(1, 17))
def test_lpm_map(keysize: int) -> None:
    """test_lpm_map.c: test_lpm_map(keysize) for 8..128-bit prefixes: random prefixes in the trie and in
    tlpm, random lookups answer alike, then again after deleting the first half of the nodes."""
    rng = random.Random(0xF00BA1 + keysize)
    ref = Tlpm()
    with ebpfmaps.LpmTrieMap(data_size=keysize, value_size=keysize + 1, max_entries=4096) as m:
        for _ in range(N_NODES):
            value = bytes(rng.getrandbits(8) for _ in range(keysize)) + bytes([rng.randrange(8 * keysize + 1)])
            ref.add(value[:keysize], value[keysize])
            m.update((value[keysize], value[:keysize]), value, BPF_ANY)
        matches = _check_lookups(m, ref, keysize, rng)

        # Remove the first half of the (distinct) nodes from both, then look up again.
        nodes = ref.nodes()
        for key, n_bits in nodes[: len(nodes) // 2]:
            m.delete((n_bits, key))
            ref.delete(key, n_bits)
        assert ref.nodes()
        _check_lookups(m, ref, keysize, rng)
    # With 255 random nodes, most lookups of short keys match something.
    if keysize == 1:
        assert matches > N_LOOKUPS // 2


def test_lpm_ipaddr() -> None:
    """test_lpm_map.c: test_lpm_ipaddr: some real-world IPv4 and IPv6 ranges."""
    u64 = ctypes.c_uint64
    with ebpfmaps.LpmTrieMap(family="ipv4", value_type=u64, max_entries=100) as v4, \
            ebpfmaps.LpmTrieMap(family="ipv6", value_type=u64, max_entries=100) as v6:
        v4.update("192.168.0.0/16", 1, 0)
        v4.update("192.168.0.0/24", 2, 0)
        v4.update("192.168.128.0/24", 3, 0)
        v4.update("192.168.1.0/24", 5, 0)
        v4.update("192.168.0.0/23", 4, 0)
        # 2a00:1450:4001:814::200e with prefixlen 64: the trie ignores the bits past the prefix.
        v6.update((64, "2a00:1450:4001:814::200e"), 0xDEADBEEF, 0)

        # Lookups with the maximum prefix length that come back with a value.
        assert v4.longest_match("192.168.128.23") == 3
        assert v4.longest_match("192.168.0.1") == 2
        assert v6.longest_match("2a00:1450:4001:814::") == 0xDEADBEEF
        assert v6.longest_match("2a00:1450:4001:814::1") == 0xDEADBEEF
        # Lookups that match no entry (ENOENT).
        assert v4.longest_match("10.0.0.1") is None
        assert v4.longest_match("11.11.11.11") is None
        assert v6.longest_match("2a00:ffff::") is None


def test_lpm_delete() -> None:
    """test_lpm_map.c: test_lpm_delete: leaf, intermediate-parent and root deletions.

            (1)            192.168.0.0/16   (1)
           /   \\           192.168.0.0/24   (2)
        (IM)    (3)        192.168.128.0/24 (3)
       /   \\               192.168.1.0/24   (4)
     (2)   (4)
    """
    with ebpfmaps.LpmTrieMap(family="ipv4", value_type=ctypes.c_uint64, max_entries=100) as m:
        m.update("192.168.0.0/16", 1, 0)
        m.update("192.168.0.0/24", 2, 0)
        m.update("192.168.128.0/24", 3, 0)
        m.update("192.168.1.0/24", 4, 0)

        # Remove non-existent nodes.
        assert m.longest_match("10.0.0.1") is None
        with pytest.raises(KeyNotFound) as exc:
            m.delete((30, "192.255.0.0"))  # unused prefix so far
        assert exc.value.errno == errno.ENOENT
        with pytest.raises(KeyNotFound):
            m.delete((16, "192.255.0.0"))  # same prefix length as the root node
        assert m.longest_match("192.168.0.1") == 2

        m.delete("192.168.0.0/24")  # leaf node
        assert m.longest_match("192.168.0.1") == 1
        m.delete("192.168.1.0/24")  # leaf (and intermediary) node
        assert m.longest_match("192.168.1.1") == 1
        m.delete("192.168.0.0/16")  # root node
        assert m.longest_match("192.168.128.1") == 3
        m.delete("192.168.128.0/24")  # last node
        assert m.longest_match("192.168.128.1") is None


N = ipaddress.IPv4Network
GET_NEXT_KEY_STEPS = [
    # (element added, the whole walk after it: post order)
    ("192.168.0.0/16", ["192.168.0.0/16"]),
    ("192.168.128.0/24", ["192.168.128.0/24", "192.168.0.0/16"]),
    ("192.168.0.0/24", ["192.168.0.0/24", "192.168.128.0/24", "192.168.0.0/16"]),
    ("192.168.1.0/24", ["192.168.0.0/24", "192.168.1.0/24", "192.168.128.0/24", "192.168.0.0/16"]),
    ("192.168.1.128/28",
     ["192.168.0.0/24", "192.168.1.128/28", "192.168.1.0/24", "192.168.128.0/24", "192.168.0.0/16"]),
]


def test_lpm_get_next_key() -> None:
    """test_lpm_map.c: test_lpm_get_next_key, through the library's walk (get_next_key in post order
    for LPM tries): after each insert the whole walk is the C's expected sequence."""
    with ebpfmaps.LpmTrieMap(family="ipv4", value_type=ctypes.c_uint32, max_entries=100) as m:
        assert list(m.keys()) == []  # empty tree: ENOENT
        for added, walk in GET_NEXT_KEY_STEPS:
            m.update(added, 0, 0)
            assert list(m.keys()) == [N(k) for k in walk]


def test_lpm_get_next_key_by_key() -> None:
    """test_lpm_map.c: test_lpm_get_next_key, key by key with bpf_map_get_next_key."""
    with ebpfmaps.LpmTrieMap(family="ipv4", value_type=ctypes.c_uint32, max_entries=100) as m:
        assert next_key(m, None) is None
        for added, walk in GET_NEXT_KEY_STEPS:
            m.update(added, 0, 0)
            key = next_key(m, None)
            assert key == N(walk[0])
            for expected in walk[1:]:
                key = next_key(m, key)
                assert key == N(expected)
            assert next_key(m, key) is None
        # No exact matching key: the walk starts over at the first node in post order.
        assert next_key(m, (22, "192.168.1.0")) == N("192.168.0.0/24")


MT_KEYS = ["192.168.0.0/16", "192.168.0.0/24", "192.168.128.0/24", "192.168.1.0/24"]
MT_ITER = 200  # 2000 in the C


def test_lpm_multi_thread() -> None:
    """test_lpm_map.c: test_lpm_multi_thread: four threads update, delete, look up and walk the same
    trie (keys forward for the first half of the iterations, backward for the second)."""
    errors: list[BaseException] = []

    with ebpfmaps.LpmTrieMap(family="ipv4", value_type=ctypes.c_uint32, max_entries=100) as m:
        def command(cmd: int) -> None:
            try:
                for it in range(MT_ITER):
                    for i in range(len(MT_KEYS)):
                        j = i if it < MT_ITER // 2 else len(MT_KEYS) - i - 1
                        key = MT_KEYS[j]
                        if cmd == 0:
                            m.update(key, j, 0)  # update must succeed
                        elif cmd == 1:
                            try:
                                m.delete(key)
                            except KeyNotFound:
                                pass
                        elif cmd == 2:
                            m.longest_match(ipaddress.IPv4Network(key).network_address)
                        else:
                            try:  # the walk is get_next_key; the kernel may answer ENOMEM under churn
                                list(m.keys())
                            except OutOfMemory:
                                pass
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=command, args=(cmd,)) for cmd in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


# ---------------------------------------------------------------------------------------------- newer C tests
def int_key(prefixlen: int, data: int) -> tuple[int, bytes]:
    """struct lpm_trie_int_key { __u32 prefixlen; __u32 data; } with data = htobe32(data)."""
    return prefixlen, data.to_bytes(4, "big")


def require_lpm_update_flags() -> None:
    if not lpm_update_flags_honoured():
        pytest.skip("the running kernel ignores BPF_EXIST/BPF_NOEXIST on LPM tries (probe; kernels without the LPM trie fixes of early 2025)")


def require_lpm_full_inplace_update() -> None:
    if not lpm_full_inplace_update():
        pytest.skip("the running kernel refuses to overwrite an element of a full LPM trie (probe; kernels without the LPM trie fixes of early 2025)")


def test_lpm_trie_update_flags() -> None:
    """test_lpm_map.c: test_lpm_trie_update_flags: BPF_NOEXIST / BPF_EXIST / BPF_ANY on an LPM trie."""
    require_lpm_update_flags()
    require_lpm_full_inplace_update()  # it overwrites elements of a full trie
    with ebpfmaps.LpmTrieMap(data_size=4, value_type=ctypes.c_uint32, max_entries=3, name="lpm_trie") as m:
        # Invalid flags (EINVAL; the library refuses first).
        with pytest.raises(InvalidFlags):
            m.update(int_key(32, 0), 0, BPF_F_LOCK)
        with pytest.raises(InvalidFlags):
            m.update(int_key(32, 0), 0, BPF_NOEXIST | BPF_EXIST)
        # Overwrite an empty trie (ENOENT).
        with pytest.raises(KeyNotFound) as exc:
            m.update(int_key(32, 0), 2, BPF_EXIST)
        assert exc.value.errno == errno.ENOENT
        # Add a new node.
        m.update(int_key(16, 0), 1, BPF_NOEXIST)
        assert m.lookup(int_key(16, 0)) == 1
        # Add the same node as a new node (EEXIST).
        with pytest.raises(KeyExists):
            m.update(int_key(16, 0), 1, BPF_NOEXIST)
        # Overwrite the existing node.
        m.update(int_key(16, 0), 4, BPF_EXIST)
        assert m.lookup(int_key(16, 0)) == 4
        m.update(int_key(16, 0), 1, BPF_ANY)
        assert m.lookup(int_key(16, 0)) == 1
        # Overwrite a non-existent node which is the prefix of the first node (ENOENT).
        with pytest.raises(KeyNotFound):
            m.update(int_key(8, 0), 2, BPF_EXIST)
        # Add a new node which is the prefix of the first node.
        m.update(int_key(8, 0), 2, BPF_NOEXIST)
        assert m.lookup(int_key(8, 0)) == 2
        # Add another new node which will be the sibling of the first node.
        m.update(int_key(9, 1 << 23), 5, BPF_NOEXIST)
        assert m.lookup(int_key(9, 1 << 23)) == 5
        m.update(int_key(9, 1 << 23), 3, BPF_ANY)
        assert m.lookup(int_key(9, 1 << 23)) == 3
        # Delete the second node to make it an intermediate node, which cannot be overwritten (ENOENT).
        m.delete(int_key(8, 0))
        with pytest.raises(KeyNotFound):
            m.update(int_key(8, 0), 2, BPF_EXIST)


def _fill_three(m: ebpfmaps.LpmTrieMap) -> None:
    for key, value in ((int_key(16, 0), 0), (int_key(8, 0), 1), (int_key(9, 1 << 23), 2)):
        m.update(key, value, BPF_NOEXIST)
        assert m.lookup(key) == value


def test_lpm_trie_update_full_map() -> None:
    """test_lpm_map.c: test_lpm_trie_update_full_map: a full trie refuses new nodes (ENOSPC) and
    still lets existing ones be overwritten with BPF_EXIST and BPF_ANY."""
    require_lpm_update_flags()
    require_lpm_full_inplace_update()
    with ebpfmaps.LpmTrieMap(data_size=4, value_type=ctypes.c_int, max_entries=3, name="lpm_trie") as m:
        _fill_three(m)
        with pytest.raises(MapError) as exc:
            m.update(int_key(32, 0), 3, BPF_ANY)
        assert exc.value.errno == errno.ENOSPC
        m.update(int_key(16, 0), 4, BPF_EXIST)
        assert m.lookup(int_key(16, 0)) == 4
        m.update(int_key(9, 1 << 23), 5, BPF_ANY)
        assert m.lookup(int_key(9, 1 << 23)) == 5
        assert len(m) == 3


def test_lpm_trie_update_full_map_error_type() -> None:
    """test_lpm_map.c: test_lpm_trie_update_full_map: "add to full trie" is the library's map-full error."""
    with ebpfmaps.LpmTrieMap(data_size=4, value_type=ctypes.c_int, max_entries=3) as m:
        _fill_three(m)
        with pytest.raises(MapError) as exc:
            m.update(int_key(32, 0), 3, BPF_ANY)
        assert isinstance(exc.value, OutOfMemory), type(exc.value).__name__


STRS = ["ab", "abO", "abc", "abo", "abS", "abcd"]


def str_key(s: str) -> tuple[int, bytes]:
    """struct lpm_trie_bytes_key { __u32 prefixlen; unsigned char data[8]; }, the trailing '\\0' counted."""
    return (len(s) + 1) * 8, s.encode().ljust(8, b"\0")


def _fill_strs(m: ebpfmaps.LpmTrieMap) -> None:
    require_lpm_update_flags()
    require_lpm_full_inplace_update()  # the last overwrite is on a full trie
    for i, s in enumerate(STRS):
        m.update(str_key(s), i + 100, BPF_NOEXIST if i % 2 else BPF_ANY)
        assert m.lookup(str_key(s)) == i + 100
        with pytest.raises(KeyExists):
            m.update(str_key(s), i + 100, BPF_NOEXIST)  # re-add
        m.update(str_key(s), i, BPF_ANY if i % 2 else BPF_EXIST)  # overwrite
        for j in range(i + 1):
            assert m.lookup(str_key(STRS[j])) == j
    # Add an element to a full trie (ENOSPC).
    with pytest.raises(MapError) as exc:
        m.update((64, bytes(8)), 0, BPF_ANY)
    assert exc.value.errno == errno.ENOSPC


def test_lpm_trie_iterate_strs() -> None:
    """test_lpm_map.c: test_lpm_trie_iterate_strs: strings (with their '\\0') come back sorted; then
    deleting each key found leaves the trie empty."""
    with ebpfmaps.LpmTrieMap(data_size=8, value_type=ctypes.c_uint32, max_entries=len(STRS), name="lpm_trie") as m:
        _fill_strs(m)
        assert list(m.keys()) == [str_key(s) for s in sorted(STRS)]
        for key in m.keys():
            m.delete(key)
        assert list(m.keys()) == []


def test_lpm_trie_iterate_strs_get_next_key() -> None:
    """test_lpm_map.c: test_lpm_trie_iterate_strs, key by key: the sorted walk, then a walk deleting the
    key just found (get_next_key of a deleted key restarts at the new smallest)."""
    with ebpfmaps.LpmTrieMap(data_size=8, value_type=ctypes.c_uint32, max_entries=len(STRS)) as m:
        _fill_strs(m)
        cur = None
        for s in sorted(STRS):
            cur = next_key(m, cur)
            assert cur == str_key(s)
        assert next_key(m, cur) is None
        cur = None
        for s in sorted(STRS):
            cur = next_key(m, cur)
            assert cur == str_key(s)
            m.delete(cur)
        assert next_key(m, cur) is None


ITER_INTS = 4096


def test_lpm_trie_iterate_ints() -> None:
    """test_lpm_map.c: test_lpm_trie_iterate_ints: /32 big-endian integers come back in numeric order."""
    with ebpfmaps.LpmTrieMap(data_size=4, value_type=ctypes.c_bool, max_entries=ITER_INTS, name="lpm_trie") as m:
        for i in range(ITER_INTS):
            m.update(int_key(32, i), True, BPF_NOEXIST)
        walked = list(m.keys())
        assert [(k.prefixlen, int(k.network_address)) for k in walked] == [(32, i) for i in range(ITER_INTS)]


def test_lpm_trie_iterate_ints_get_next_key() -> None:
    """test_lpm_map.c: test_lpm_trie_iterate_ints, key by key, deleting the smallest after each step."""
    with ebpfmaps.LpmTrieMap(data_size=4, value_type=ctypes.c_bool, max_entries=ITER_INTS) as m:
        for i in range(ITER_INTS):
            m.update(int_key(32, i), True, BPF_NOEXIST)
        cur = None
        for i in range(ITER_INTS):
            cur = next_key(m, cur)
            assert cur is not None and cur.prefixlen == 32 and int(cur.network_address) == i
            m.delete(cur)
        assert next_key(m, cur) is None
        assert next_key(m, None) is None
