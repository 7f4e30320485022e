"""XDP attach/detach through netlink with pyroute2, and a veth pair between two private network namespaces.

Attaching sets ``IFLA_XDP`` on the interface (``link('set', index=..., xdp_fd=fd)``; fd -1
detaches), as ``ip link set dev X xdp ...`` does. pyroute2 is an optional dependency
(``pip install 'ebpfmaps[net]'``).

:class:`VethPair` is for tests, examples and labs: it creates two network namespaces with
unique names, joins them with a veth pair, gives each end an address (by default in
10.77.0.0/24, which exists only inside those namespaces) and a static neighbour entry so
no ARP traffic disturbs exact packet counts, and removes everything on exit even when the
body raised. Deleting a namespace destroys the interfaces in it, and with them any XDP
program attached there.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterable
from typing import Any, Union

from ebpfmaps._libbpf.fd import FD
from ebpfmaps.errors import InvalidArgument, InvalidFlags, NotSupported, from_errno

# include/uapi/linux/if_link.h
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
XDP_FLAGS_HW_MODE = 1 << 3
XDP_FLAGS_REPLACE = 1 << 4
_MODES = {"auto": 0, "generic": XDP_FLAGS_SKB_MODE, "skb": XDP_FLAGS_SKB_MODE, "driver": XDP_FLAGS_DRV_MODE,
          "native": XDP_FLAGS_DRV_MODE, "offload": XDP_FLAGS_HW_MODE, "hw": XDP_FLAGS_HW_MODE}
# IFLA_XDP_ATTACHED values (XDP_ATTACHED_*)
ATTACHED_MODES = {0: None, 1: "driver", 2: "generic", 3: "offload", 4: "multi"}

Interface = Union[int, str]


def _pyroute2() -> Any:
    try:
        # Imported on first use: pyroute2 is an optional dependency (the [net] extra).
        import pyroute2
    except ImportError as exc:
        raise NotSupported("XDP attachment needs pyroute2 (pip install 'ebpfmaps[net]')", op="xdp") from exc
    return pyroute2


def _ipr(netns: str | None) -> Any:
    pr2 = _pyroute2()
    return pr2.NetNS(netns) if netns else pr2.IPRoute()


def _index(ipr: Any, interface: Interface) -> int:
    if isinstance(interface, int) and not isinstance(interface, bool):
        if interface <= 0:
            raise InvalidArgument(f"interface index must be > 0, not {interface}", op="xdp")
        return interface
    if not isinstance(interface, str) or not interface:
        raise InvalidArgument(f"interface must be an index or a name, not {interface!r}", op="xdp")
    found = ipr.link_lookup(ifname=interface)
    if not found:
        raise InvalidArgument(f"no interface named {interface!r}", op="xdp")
    return int(found[0])


def _mode_flags(mode: str) -> int:
    try:
        return _MODES[mode]
    except KeyError:
        raise InvalidFlags(f"XDP mode {mode!r} is not one of {sorted(_MODES)}", op="xdp") from None


def _set_xdp(interface: Interface, fd: int, flags: int, netns: str | None, op: str) -> None:
    attrs: list[tuple[str, int]] = [("IFLA_XDP_FD", fd)]
    if flags:
        attrs.append(("IFLA_XDP_FLAGS", flags))
    pr2 = _pyroute2()
    with _ipr(netns) as ipr:
        index = _index(ipr, interface)
        try:
            ipr.link("set", index=index, xdp={"attrs": attrs})
        except pr2.NetlinkError as exc:
            raise from_errno(exc.code, op, f"interface {interface!r}: {exc}") from exc


def _prog_handle(program: Any) -> FD | int:
    """The program's handle (entered around the netlink request) or, for a bare fd, the caller's number."""
    handle = getattr(program, "handle", None)
    if isinstance(handle, FD):
        return handle
    fd = getattr(program, "fd", program)
    if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
        raise InvalidArgument(f"attach() needs a Program or a program fd, not {program!r}", op="xdp_attach")
    return fd


def attach(interface: Interface, program: Any, *, mode: str = "auto", netns: str | None = None,
           replace: bool = True) -> None:
    """Attach an XDP ``program`` (an :class:`ebpfmaps.programs.Program` or fd) to ``interface``.

    ``mode``: "auto" (driver mode where the driver supports it), "generic"/"skb", "driver"/"native"
    or "offload". ``netns``: the named network namespace holding the interface. With
    ``replace=False`` an interface that already has a program is refused (EBUSY becomes the
    library's error).
    """
    flags = _mode_flags(mode) | (0 if replace else XDP_FLAGS_UPDATE_IF_NOEXIST)
    target = _prog_handle(program)
    if isinstance(target, int):
        _set_xdp(interface, target, flags, netns, "xdp_attach")
        return
    # The number goes into a netlink message: hold the program open until the kernel has taken it.
    with target.pinned("xdp_attach") as fd:
        _set_xdp(interface, fd, flags, netns, "xdp_attach")


def detach(interface: Interface, *, mode: str = "auto", netns: str | None = None) -> None:
    """Remove the XDP program of ``mode`` from ``interface`` (no error when none is attached)."""
    _set_xdp(interface, -1, _mode_flags(mode), netns, "xdp_detach")


def attached(interface: Interface, *, netns: str | None = None) -> tuple[str | None, int | None]:
    """(mode, program id) of the XDP program on ``interface``, or (None, None)."""
    with _ipr(netns) as ipr:
        index = _index(ipr, interface)
        link = ipr.get_links(index)[0]
    xdp = link.get_attr("IFLA_XDP")
    if xdp is None:
        return None, None
    raw_mode = xdp.get_attr("IFLA_XDP_ATTACHED")
    mode = raw_mode if isinstance(raw_mode, str) or raw_mode is None else ATTACHED_MODES.get(int(raw_mode))
    if mode in ("xdp", "xdpdrv"):
        mode = "driver"
    elif mode == "xdpgeneric":
        mode = "generic"
    elif mode == "xdpoffload":
        mode = "offload"
    prog_id = xdp.get_attr("IFLA_XDP_PROG_ID")
    return (mode or None), (int(prog_id) if prog_id else None)


class XdpAttachment:
    """``with XdpAttachment(ifname, prog): ...`` attaches for the block and always detaches."""

    def __init__(self, interface: Interface, program: Any, *, mode: str = "auto", netns: str | None = None) -> None:
        self.interface = interface
        self.mode = mode
        self.netns = netns
        attach(interface, program, mode=mode, netns=netns)

    def detach(self) -> None:
        detach(self.interface, mode=self.mode, netns=self.netns)

    def __enter__(self) -> XdpAttachment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


class VethPair:
    """Two fresh network namespaces joined by a veth pair, removed again by :meth:`close`.

    Attributes: ``ns_a``/``ns_b`` (namespace names), ``if_a``/``if_b`` (interface names),
    ``index_a``/``index_b``, ``addr_a``/``addr_b`` (IPv4 addresses), ``mac_a``/``mac_b``.
    """

    def __init__(self, subnet: str = "10.77.0", prefix: str = "ebpfm") -> None:
        pr2 = _pyroute2()
        tag = uuid.uuid4().hex[:8]
        self.ns_a, self.ns_b = f"{prefix}-{tag}-a", f"{prefix}-{tag}-b"
        self.if_a, self.if_b = f"ve{tag}a", f"ve{tag}b"  # 11 characters: under IFNAMSIZ
        self.addr_a, self.addr_b = f"{subnet}.1", f"{subnet}.2"
        self._created: list[str] = []
        try:
            for ns in (self.ns_a, self.ns_b):
                pr2.netns.create(ns)
                self._created.append(ns)
            with pr2.NetNS(self.ns_a) as ipr:
                ipr.link("add", ifname=self.if_a, kind="veth", peer={"ifname": self.if_b, "net_ns_fd": self.ns_b})
            self.index_a, self.mac_a = self._configure(self.ns_a, self.if_a, self.addr_a)
            self.index_b, self.mac_b = self._configure(self.ns_b, self.if_b, self.addr_b)
            # Static neighbours: no ARP exchange, so the only frames are the ones a test sends
            # (IPv6 autoconfiguration may still send a few, which IPv4 filters ignore).
            self._neighbour(self.ns_a, self.index_a, self.addr_b, self.mac_b)
            self._neighbour(self.ns_b, self.index_b, self.addr_a, self.mac_a)
        except BaseException:
            self.close()
            raise

    def _configure(self, ns: str, ifname: str, addr: str) -> tuple[int, str]:
        pr2 = _pyroute2()
        with pr2.NetNS(ns) as ipr:
            index = int(ipr.link_lookup(ifname=ifname)[0])
            ipr.addr("add", index=index, address=addr, prefixlen=24)
            ipr.link("set", index=index, state="up")
            lo = ipr.link_lookup(ifname="lo")
            if lo:
                ipr.link("set", index=lo[0], state="up")
            mac = str(ipr.get_links(index)[0].get_attr("IFLA_ADDRESS"))
        return index, mac

    @staticmethod
    def _neighbour(ns: str, index: int, addr: str, mac: str) -> None:
        pr2 = _pyroute2()
        with pr2.NetNS(ns) as ipr:
            ipr.neigh("add", dst=addr, lladdr=mac, ifindex=index, state=0x80)  # NUD_PERMANENT

    def socket(self, side: str = "a", kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """An IPv4 socket living in namespace ``side`` ("a" or "b")."""
        ns = {"a": self.ns_a, "b": self.ns_b}.get(side)
        if ns is None:
            raise InvalidArgument(f"side must be 'a' or 'b', not {side!r}", op="veth")
        sock: socket.socket = _pyroute2().netns.create_socket(ns, socket.AF_INET, kind)
        return sock

    def send_udp(self, payloads: Iterable[bytes], port: int, *, from_side: str = "a") -> int:
        """Send each payload as one UDP datagram to the other side's address; returns how many."""
        dst = self.addr_b if from_side == "a" else self.addr_a
        sent = 0
        with self.socket(from_side) as sock:
            for payload in payloads:
                sock.sendto(payload, (dst, port))
                sent += 1
        return sent

    def namespaces_exist(self) -> bool:
        names = set(_pyroute2().netns.listnetns())
        return self.ns_a in names or self.ns_b in names

    def close(self) -> None:
        """Delete both namespaces (and with them the veth pair and any XDP program on it)."""
        pr2 = _pyroute2()
        errors: list[str] = []
        for ns in self._created:
            try:
                pr2.netns.remove(ns)
            except OSError as exc:
                errors.append(f"{ns}: {exc}")
        self._created = []
        if errors:
            raise OSError("could not remove network namespaces: " + "; ".join(errors))

    def __enter__(self) -> VethPair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<VethPair {self.ns_a}:{self.if_a}={self.addr_a} <-> {self.ns_b}:{self.if_b}={self.addr_b}>"

