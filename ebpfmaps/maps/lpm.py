"""LPM_TRIE maps: longest-prefix-match tables, keyed by IP networks or (prefixlen, bytes).

The kernel key is ``struct bpf_lpm_trie_key_u8 { __u32 prefixlen; __u8 data[]; }``:
the prefix length in host order, then the data (network byte order for IP
addresses). The kernel requires BPF_F_NO_PREALLOC, which is set for the user.

Two lookups exist, and they differ:

* ``m[net]``, ``m.lookup(net)``, ``net in m`` are **exact**, like a dict: the
  entry stored for exactly that network. The kernel's lookup syscall is a
  longest-prefix match, so exactness is confirmed with ``get_next_key`` (which
  only finds exact nodes: it answers the node after an exact match in its
  post-order walk, and the first node when there is no exact match).
* ``m.longest_match(addr)`` is what a program's ``bpf_map_lookup_elem`` does:
  the value of the longest stored prefix containing ``addr``.
  ``m.longest_prefix(addr)`` also says which network matched.

An exact lookup costs up to three syscalls and is not atomic with respect to
concurrent writers (an entry added between them may be missed, as with any
read racing a write).
"""

from __future__ import annotations

import errno as E
import ipaddress
import struct
from typing import TYPE_CHECKING, Any, ClassVar, Union

from ebpfmaps._lazy import lazy_module
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.codecs import Codec
from ebpfmaps.errors import InvalidArgument, InvalidKeySize, InvalidValueSize
from ebpfmaps.map import NO_FLAGS, Map, map_class, require_ints
from ebpfmaps.maps.queue import BPF_F_ACCESS_MASK
from ebpfmaps.maptypes import BPF_F_NO_PREALLOC, BPF_F_NUMA_NODE, MapType
from ebpfmaps.spec import MapSpec

if TYPE_CHECKING:
    from ebpfmaps import features
else:
    features = lazy_module("ebpfmaps.features")  # the kernel is probed when a map of a newer type is created

# kernel/bpf/lpm_trie.c: LPM_CREATE_FLAG_MASK, LPM_DATA_SIZE_MIN/MAX (1..256 bytes of data).
LPM_FLAGS = BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK
DATA_SIZE_MIN = 1
DATA_SIZE_MAX = 256
_PREFIXLEN = struct.Struct("=I")
_AF_INET, _AF_INET6 = 2, 10  # Linux's address family numbers (socket.AF_INET...: socket costs an import)

IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


def _family_data_size(family: Any) -> int:
    if family in (4, "ipv4", "inet", "IPv4", _AF_INET):
        return 4
    if family in (6, "ipv6", "inet6", "IPv6", _AF_INET6):
        return 16
    raise InvalidArgument(f"family must be 'ipv4' or 'ipv6' (or 4/6, AF_INET/AF_INET6), not {family!r}", op="create")


def _mask(data: bytes, prefixlen: int) -> bytes:
    """``data`` with every bit after the first ``prefixlen`` cleared."""
    full, rest = divmod(prefixlen, 8)
    out = bytearray(data)
    if full < len(out):
        if rest:
            out[full] &= (0xFF << (8 - rest)) & 0xFF
            full += 1
        for i in range(full, len(out)):
            out[i] = 0
    return bytes(out)


class LpmKeyCodec(Codec):
    """LPM trie keys: ``ipaddress`` networks/addresses (or their strings), ``(prefixlen, data)`` or raw bytes.

    Data sizes 4 and 16 decode to IPv4/IPv6 networks (``ip=True``, the default);
    other sizes decode to ``(prefixlen, bytes)``. Networks are strict: host bits
    set after the prefix are an error, not silently dropped.
    """

    def __init__(self, data_size: int, *, ip: bool = True) -> None:
        if not DATA_SIZE_MIN <= data_size <= DATA_SIZE_MAX:
            raise InvalidKeySize(f"LPM trie data is {DATA_SIZE_MIN}..{DATA_SIZE_MAX} bytes, not {data_size}",
                                 op="create")
        super().__init__(4 + data_size, "key")
        self.data_size = data_size
        self.max_prefixlen = 8 * data_size
        self.version: int | None = {4: 4, 16: 6}.get(data_size) if ip else None

    def __repr__(self) -> str:
        return f"LpmKeyCodec(data_size={self.data_size}, version={self.version})"

    def _pack(self, prefixlen: int, data: bytes) -> bytes:
        if isinstance(prefixlen, bool) or not isinstance(prefixlen, int) or not 0 <= prefixlen <= self.max_prefixlen:
            raise InvalidKeySize(f"prefix length must be 0..{self.max_prefixlen}, not {prefixlen!r}", op="encode")
        if len(data) != self.data_size:
            raise InvalidKeySize(f"LPM key data is {len(data)} bytes, the trie's data size is {self.data_size}",
                                 op="encode")
        return _PREFIXLEN.pack(prefixlen) + data

    def _check_version(self, version: int, what: object) -> None:
        want = {4: 4, 16: 6}.get(self.data_size)
        if want != version:
            kind = f"IPv{want}" if want else f"{self.data_size}-byte"
            raise InvalidKeySize(f"{what} is IPv{version}, but this is an {kind} LPM trie", op="encode")

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            self._check_version(value.version, value)
            return self._pack(value.prefixlen, value.network_address.packed)
        if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            self._check_version(value.version, value)
            return self._pack(self.max_prefixlen, value.packed)
        if isinstance(value, str):
            return self.encode(parse_ip(value))
        if isinstance(value, tuple):
            if len(value) != 2:
                raise InvalidArgument(f"an LPM key tuple is (prefixlen, data), not {value!r}", op="encode")
            prefixlen, data = value
            if isinstance(data, str):
                data = parse_ip(data)
            if isinstance(data, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
                self._check_version(data.version, data)
                data = data.packed
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise InvalidArgument(f"LPM key data must be bytes or an IP address, not {type(data).__name__}",
                                      op="encode")
            return self._pack(prefixlen, bytes(data))
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if len(raw) != self.size:
                raise self._wrong(raw)
            return self._pack(_PREFIXLEN.unpack_from(raw)[0], raw[4:])
        raise InvalidArgument(
            f"LPM keys are ipaddress networks/addresses, strings, (prefixlen, data) or {self.size} raw bytes, "
            f"not {type(value).__name__}", op="encode")

    def decode(self, data: bytes) -> Any:
        prefixlen = _PREFIXLEN.unpack_from(data)[0]
        body = bytes(data[4 : 4 + self.data_size])
        if self.version == 4:
            return ipaddress.IPv4Network((body, prefixlen), strict=False)
        if self.version == 6:
            return ipaddress.IPv6Network((body, prefixlen), strict=False)
        return (prefixlen, _mask(body, prefixlen))

    def decode_many(self, data: bytes | memoryview, count: int) -> list[Any]:
        s = self.size
        mv = memoryview(data)
        return [self.decode(bytes(mv[i * s : (i + 1) * s])) for i in range(count)]


def parse_ip(text: str, *, strict: bool = True) -> IPNetwork | IPAddress:
    """``"10.0.0.0/8"`` → network (strict: no host bits), ``"10.1.2.3"`` → address; a bad string is
    :class:`InvalidArgument`."""
    try:
        if "/" in text:
            return ipaddress.ip_network(text, strict=strict)
        return ipaddress.ip_address(text)
    except ValueError as exc:
        raise InvalidArgument(f"not an IP network or address: {text!r} ({exc})", op="encode") from None


@map_class
class LpmTrieMap(Map):
    """BPF_MAP_TYPE_LPM_TRIE: exact dict operations plus ``longest_match(addr)``.

    >>> routes = LpmTrieMap(family="ipv4", value_type="=I", max_entries=1024)
    >>> routes["10.0.0.0/8"] = 1; routes["10.1.0.0/16"] = 2
    >>> routes.longest_match("10.1.2.3"), routes.longest_match("10.9.9.9")
    (2, 1)
    """

    map_type = MapType.LPM_TRIE
    allowed_flags: ClassVar[int] = LPM_FLAGS
    # lpm_trie.c has the generic batch operations on newer kernels (seen on 6.18): probed on first use.
    kernel_batch: ClassVar[bool | None] = None

    def __init__(self, key_size: int | None = None, value_size: int | None = None, max_entries: int | None = None,
                 *, family: Any = None, data_size: int | None = None, key_type: Any = None, **kwargs: Any) -> None:
        require_ints("create", key_size=key_size, value_size=value_size, max_entries=max_entries, data_size=data_size)
        sizes = []
        if family is not None:
            sizes.append(("family", _family_data_size(family)))
        if data_size is not None:
            sizes.append(("data_size", data_size))
        if key_size is not None:
            sizes.append(("key_size", key_size - 4))
        if len({s for _, s in sizes}) > 1:
            raise InvalidKeySize("LPM trie sizes disagree: " + ", ".join(f"{n} gives {s} data bytes" for n, s in sizes),
                                 op="create")
        if key_type is None:
            if not sizes:
                raise InvalidArgument("LpmTrieMap needs family='ipv4'/'ipv6', data_size= or key_size= "
                                      "(key_size = 4 + data bytes)", op="create")
            key_type = LpmKeyCodec(sizes[0][1])
        super().__init__(key_size, value_size, max_entries, key_type=key_type, **kwargs)

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        if not 4 + DATA_SIZE_MIN <= spec.key_size <= 4 + DATA_SIZE_MAX:
            raise InvalidKeySize(f"LPM trie key_size is 4 + {DATA_SIZE_MIN}..{DATA_SIZE_MAX} data bytes, "
                                 f"not {spec.key_size}", op="create")
        if spec.value_size <= 0:
            raise InvalidValueSize("LPM trie maps need value_size > 0", op="create")
        # The kernel refuses preallocated tries (EINVAL); set the flag rather than make every caller know.
        spec = super().prepare_spec(spec.replace(flags=spec.flags | BPF_F_NO_PREALLOC))
        features.require_map_type(spec.type)
        return spec

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(kcodec) is Codec:  # raw keys (open_pinned, open_by_id) become networks/prefix tuples
            kcodec = LpmKeyCodec(spec.key_size - 4)
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)

    @property
    def data_size(self) -> int:
        return self._spec.key_size - 4

    @property
    def max_prefixlen(self) -> int:
        return 8 * self.data_size

    # ------------------------------------------------------------------ exact lookups
    def _first_key(self) -> bytes | None:
        first = self._ktype()
        ret = _maps.map_get_next_key(self._h, None, first)
        if ret == -E.ENOENT:
            return None
        if ret:
            raise self._fail(ret, "get_next_key")
        return first.raw[: self._ksize]

    def _is_exact(self, kb: bytes, first: bytes | None) -> bool:
        """Whether a node with exactly this prefix is stored (see the module docstring)."""
        nxt = self._ktype()
        ret = _maps.map_get_next_key(self._h, kb, nxt)
        if ret == -E.ENOENT:
            return first is not None  # the last node in post-order (an empty trie has no first node)
        if ret:
            raise self._fail(ret, "get_next_key")
        return nxt.raw[: self._ksize] != first

    def _raw_lookup(self, kb: bytes) -> bytes | None:
        buf = self._vtype()
        ret = _maps.map_lookup_elem(self._h, kb, buf)
        if ret == 0:
            return buf.raw[: self._vsize]
        if ret == -E.ENOENT:
            return None
        raise self._fail(ret, "lookup")

    def lookup_bytes(self, key: Any) -> bytes | None:
        kb = self._encode_key(key)
        vb = self._raw_lookup(kb)
        if vb is None or not self._is_exact(kb, self._first_key()):
            return None
        return vb

    def lookup(self, key: Any, flags: int = 0) -> Any:
        """The value stored for exactly ``key`` (a network), or ``None``; see :meth:`longest_match`."""
        if flags is not NO_FLAGS:
            self._check_lookup_flags(flags)
        vb = self.lookup_bytes(key)
        return None if vb is None else self._vdec(vb)

    # ------------------------------------------------------------------ longest-prefix lookups
    def _address_key(self, address: Any) -> bytes:
        """An address (or network: its prefix bounds the match) as a key of the trie's full length."""
        if isinstance(address, str):
            # "addr/len" bounds the match at len; host bits are fine here (this is an address, not a key).
            address = parse_ip(address, strict=False)
        if isinstance(address, int) and not isinstance(address, bool):
            codec = self._kcodec
            version = getattr(codec, "version", None)
            if version is None:
                raise InvalidArgument("integer addresses need an IPv4 or IPv6 trie", op="longest_match")
            cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
            try:
                address = cls(address)
            except ValueError:
                bits = 32 if version == 4 else 128
                raise InvalidArgument(f"integer address {address} is outside the IPv{version} range "
                                      f"(0..2**{bits}-1)", op="longest_match") from None
        if isinstance(address, (bytes, bytearray, memoryview)) and len(address) == self.data_size:
            return self._encode_key((self.max_prefixlen, bytes(address)))
        return self._encode_key(address)

    def longest_match(self, address: Any, default: Any = None) -> Any:
        """The value of the longest stored prefix containing ``address`` (what a program's lookup returns).

        ``address``: an ``ipaddress`` address or network (a network limits the match
        to prefixes no longer than its own), a string, an int for IP tries, or the
        trie's data bytes.
        """
        vb = self._raw_lookup(self._address_key(address))
        return default if vb is None else self._vdec(vb)

    def longest_prefix(self, address: Any) -> tuple[Any, Any] | None:
        """``(network, value)`` of the longest stored prefix containing ``address``, or ``None``.

        Finds the network by testing exact presence from the longest prefix down
        (one ``get_next_key`` per length tried).
        """
        kb = self._address_key(address)
        if self._raw_lookup(kb) is None:
            return None
        first = self._first_key()
        plen = _PREFIXLEN.unpack_from(kb)[0]
        data = kb[4:]
        for p in range(plen, -1, -1):
            candidate = _PREFIXLEN.pack(p) + _mask(data, p)
            if self._is_exact(candidate, first):
                vb = self._raw_lookup(candidate)
                if vb is not None:
                    return self._kdec(candidate), self._vdec(vb)
        return None  # the matching entry was deleted meanwhile


__all__ = ["LpmKeyCodec", "LpmTrieMap", "parse_ip"]
