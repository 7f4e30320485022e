"""Map keys as Prometheus label values.

A metric's ``labels`` split the key into fields, each decoded on its own: an integer, an IPv4
or IPv6 address (network byte order), an LPM trie key as a CIDR (``10.0.0.0/8``), a kernel
address as its kallsyms symbol, an interface index as its name, a NUL-terminated string, or hex;
``names`` then renames values (protocol numbers to names, say). With ``decode: btf`` the
key's own BTF struct names the fields. The layout is resolved against the map's real key size
when the map is opened, and a field that does not fit is reported with its place in the config.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ebpfmaps import ksyms
from ebpfmaps.errors import MapError
from ebpfmaps.exporter.btfkey import KeyMember, key_members
from ebpfmaps.exporter.config import FIXED_SIZES, LABEL_NAME, RESERVED_LABELS, ConfigError, LabelSpec
from ebpfmaps.map import Map

Decoder = Callable[[bytes], str]


@dataclass(frozen=True)
class KeyField:
    """A label resolved against a real key: its bytes are ``key[offset:offset + size]``."""

    name: str
    decode: str
    offset: int
    size: int
    byte_order: str = "little"
    signed: bool = False
    names: tuple[tuple[str, str], ...] = ()


def _int_decoder(f: KeyField) -> Decoder:
    order = "<" if f.byte_order == "little" else ">"
    fmt = {1: "B", 2: "H", 4: "I", 8: "Q"}[f.size]
    unpack = struct.Struct(order + (fmt.lower() if f.signed else fmt)).unpack
    return lambda raw: str(unpack(raw)[0])


def _ksym(raw: bytes) -> str:
    address = int.from_bytes(raw, "little")
    try:
        found = ksyms.resolve(address)
    except MapError:  # kallsyms hidden (no CAP_SYSLOG): the address is all there is
        found = None
    return found.name if found is not None else f"{address:#x}"


def _cidr(raw: bytes) -> str:
    prefixlen = int.from_bytes(raw[:4], "little")
    data = raw[4:]
    if len(data) in (4, 16):
        return f"{ipaddress.ip_address(data)}/{prefixlen}"
    return f"{data.hex()}/{prefixlen}"


def _string(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _ifname(raw: bytes) -> str:
    index = int.from_bytes(raw, "little")
    try:
        return socket.if_indextoname(index)
    except OSError:  # gone, or in another network namespace: the index is all there is
        return str(index)


def decoder_for(f: KeyField) -> Decoder:
    """The decoder of ``f``, renaming values through ``f.names`` when it has any."""
    dec = _base_decoder(f)
    if not f.names:
        return dec
    names = dict(f.names)

    def renamed(raw: bytes) -> str:
        text = dec(raw)
        return names.get(text, text)

    return renamed


def _base_decoder(f: KeyField) -> Decoder:
    if f.decode == "ifname":
        return _ifname
    if f.decode == "int":
        return _int_decoder(f)
    if f.decode in ("ipv4", "ipv6"):
        return lambda raw: str(ipaddress.ip_address(raw))
    if f.decode == "cidr":
        return _cidr
    if f.decode == "ksym":
        return _ksym
    if f.decode == "string":
        return _string
    return bytes.hex


def resolve_fields(specs: Sequence[LabelSpec], key_size: int, *, where: str, map_name: str,
                   members: Sequence[KeyMember] | None = None) -> list[KeyField]:
    """Place each label in a ``key_size``-byte key, or raise :class:`ConfigError` naming each field that does not fit."""
    problems: list[str] = []
    fields: list[KeyField] = []
    pos = 0
    for i, spec in enumerate(specs):
        place = f"{where}.labels[{i}]"
        if spec.decode == "btf":
            if members is None:
                problems.append(f"{place}: {map_name} has no BTF for its key (created without BTF); "
                                "describe the fields with offset, size and decode instead")
                continue
            for mem in members:
                fields.append(KeyField(spec.name + mem.name, mem.decode, mem.offset, mem.size, "little", mem.signed))
            pos = key_size
            continue
        offset = spec.offset if spec.offset is not None else pos
        if spec.decode == "cidr":
            size = spec.size if spec.size is not None else key_size - offset
            if size < 5:
                problems.append(f"{place}: an LPM key (u32 prefix length, then the address) needs more than "
                                f"{size} bytes")
                continue
        elif spec.size is not None:
            size = spec.size
        elif spec.decode in FIXED_SIZES:
            size = FIXED_SIZES[spec.decode]
        elif spec.decode == "int":
            size = key_size - offset
            if size not in (1, 2, 4, 8):
                problems.append(f"{place}: the rest of the {key_size}-byte key after byte {offset} is {size} "
                                "bytes, not an int; give the label a size")
                continue
        else:
            size = key_size - offset
        if offset + size > key_size or size <= 0:
            problems.append(f"{place}: bytes {offset}..{offset + size} do not fit the {key_size}-byte key of "
                            f"{map_name}")
            continue
        fields.append(KeyField(spec.name, spec.decode, offset, size, spec.byte_order, spec.signed, spec.names))
        pos = offset + size
    seen: set[str] = set()
    for f in fields:
        # BTF members name their own labels: C names may still clash with Prometheus' rules or each other.
        if not LABEL_NAME.match(f.name) or f.name.startswith("__") or f.name in RESERVED_LABELS:
            problems.append(f"{where}.labels: the key field {f.name!r} of {map_name} is not a usable label name "
                            "(reserved, or not letters, digits and _); give a prefix with name, or list the fields")
        elif f.name in seen:
            problems.append(f"{where}.labels: label {f.name!r} comes twice from the key of {map_name}")
        seen.add(f.name)
    if problems:
        raise ConfigError(problems, "the config")
    return fields


def key_decoder(fields: Sequence[KeyField]) -> Callable[[bytes], tuple[str, ...]]:
    """One function from key bytes to the tuple of label values."""
    parts = [(f.offset, f.offset + f.size, decoder_for(f)) for f in fields]
    if len(parts) == 1:
        (a, b, dec), = parts
        return lambda key: (dec(key[a:b]),)
    return lambda key: tuple(dec(key[a:b]) for a, b, dec in parts)


def btf_members_of(m: Map) -> list[KeyMember] | None:
    """The map key's BTF struct members (None when the map was created without key BTF)."""
    info = m.info()
    if not info.btf_id or not info.btf_key_type_id:
        return None
    return key_members(info.btf_id, info.btf_key_type_id)


__all__ = ["KeyField", "btf_members_of", "decoder_for", "key_decoder", "resolve_fields"]
