"""An XSKMAP-style map: queue index -> AF_XDP socket, on a hash base.

Like the kernel's socket maps, the user writes a socket *fd* and reads back the
socket's *cookie* (``SO_COOKIE``, the same number ``bpf_get_socket_cookie()``
gives a BPF program): fds are only meaningful inside one process, a cookie names
the socket everywhere. The provider validates each fd (it must be a socket of
the map's family, AF_XDP unless the ``family`` option says otherwise; 0 accepts
any socket) and stores a socket entry: cookie, inode, family, type, protocol.

Keys are u32 queue indices below ``max_entries``, values 8 bytes (a u64 fd on
write, a u64 cookie on read), as with BPF_MAP_TYPE_SOCKHASH's 8-byte values.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from ebpfmaps.errors import InvalidArgument, InvalidKeySize, InvalidValueSize
from ebpfmaps.maptypes import MapType
from ebpfmaps.spec import MapSpec

from ..provider import ExtensibleMapLike, MapProvider

__all__ = ["AF_XDP", "XSK_MAP_TYPE", "SocketEntry", "XskMapProvider"]

XSK_MAP_TYPE = 4097
AF_XDP = 44  # include/linux/socket.h
SO_COOKIE = 57  # include/uapi/asm-generic/socket.h
_ENTRY = struct.Struct("=QQHHHxx")  # cookie, inode, family, type, protocol (+2 bytes padding: 24 bytes)
_U64 = struct.Struct("=Q")
_U32 = struct.Struct("=I")


@dataclass(frozen=True)
class SocketEntry:
    """What the map stores for one queue."""

    cookie: int
    inode: int
    family: int
    type: int
    protocol: int


def describe_socket(fd: int) -> SocketEntry:
    """The entry for socket ``fd``; InvalidArgument if it is not an open socket."""
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise InvalidArgument(f"fd {fd} is not open in this process: {exc.strerror}", op="update") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise InvalidArgument(f"fd {fd} is not a socket", op="update")
    # A socket object only to call getsockopt on a dup of the fd. The family/type given here are placeholders:
    # with them Python does not probe the socket itself (its probe calls getsockname, which AF_XDP refuses).
    sock = socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        opt = sock.getsockopt
        cookie = _U64.unpack(opt(socket.SOL_SOCKET, SO_COOKIE, 8))[0]
        family = opt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        kind = opt(socket.SOL_SOCKET, socket.SO_TYPE)
        protocol = opt(socket.SOL_SOCKET, socket.SO_PROTOCOL)
        return SocketEntry(cookie, st.st_ino, family, kind, protocol)
    except OSError as exc:
        raise InvalidArgument(f"fd {fd}: cannot read the socket's identity: {exc.strerror}", op="update") from None
    finally:
        sock.close()


class XskMapProvider(MapProvider):
    """Queue index -> AF_XDP socket: write an fd, read the socket cookie; sockets are validated."""

    custom_map_type = XSK_MAP_TYPE
    base_map_type = int(MapType.HASH)
    transforms_values = True
    default_options: ClassVar[Mapping[str, int]] = {"family": AF_XDP}

    def create_map_notify(self, spec: MapSpec) -> int | None:
        if spec.key_size != 4:
            raise InvalidKeySize(f"XSK maps are indexed by u32 queue ids: key_size must be 4, not {spec.key_size}",
                                 op="create")
        if spec.value_size != 8:
            raise InvalidValueSize(f"XSK map values are u64 (an fd written, a socket cookie read): value_size must be"
                                   f" 8, not {spec.value_size}", op="create")
        return _ENTRY.size

    def update_element_notify(self, m: ExtensibleMapLike, key: bytes, value: bytes, flags: int) -> bytes | None:
        queue = _U32.unpack(key)[0]
        if queue >= m.max_entries:
            raise InvalidArgument(f"queue {queue} is beyond the map's {m.max_entries} queues", op="update")
        fd = _U64.unpack(value)[0]
        if fd > 0x7FFFFFFF:
            raise InvalidArgument(f"{fd} is not a file descriptor", op="update")
        entry = describe_socket(fd)
        family = m.options.get("family", AF_XDP)
        if family and entry.family != family:
            raise InvalidArgument(f"fd {fd} is a socket of family {entry.family}; this map holds family {family}"
                                  f"{' (AF_XDP)' if family == AF_XDP else ''} sockets", op="update")
        return _ENTRY.pack(entry.cookie, entry.inode, entry.family, entry.type, entry.protocol)

    def find_element_notify(self, m: ExtensibleMapLike, key: bytes, stored: bytes) -> bytes:
        return stored[:8]  # the cookie

    def get_next_key_and_value_notify(self, m: ExtensibleMapLike, key: bytes | None, next_key: bytes,
                                      stored: bytes) -> bytes:
        return stored[:8]

    @staticmethod
    def entry(m: ExtensibleMapLike, queue: object) -> SocketEntry | None:
        """The socket entry stored for ``queue`` (client service find_element), or None."""
        stored = m.find_element(queue)
        return None if stored is None else SocketEntry(*_ENTRY.unpack(stored))
