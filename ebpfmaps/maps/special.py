"""The kernel's remaining map types: fd arrays, network redirect maps, socket maps, storages, struct_ops, arena.

Each class fixes the sizes and flags its type needs, so ``create("cpumap")`` or
``SockMap(max_entries=8)`` just works, and checks what the kernel would refuse
before the syscall. Creating a type the running kernel lacks raises
:class:`NotSupported` from a probe (:mod:`ebpfmaps.features`).

Values that are file descriptors (programs, sockets, cgroups, AF_XDP sockets)
are written as fds, from an ``int``, a :class:`Map`, or any object with
``fileno()`` or an ``fd`` attribute; reading them back gives what the kernel
reports instead of the fd: a program id, a socket cookie (with 8-byte values),
or nothing at all (``NotSupported``) for types whose reads the kernel refuses.

Local storages (sk/inode/task/cgroup) need BTF for their key and value; the
minimal BTF (an ``int`` key and a byte-array value) is built here when the
caller gives none, so ``SkStorage(value_size=8)`` works without a compiler.
"""

from __future__ import annotations

import errno as E
import mmap
import os
import struct
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from ebpfmaps._lazy import lazy_module
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps._libbpf import progs as _progs
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.codecs import Codec, IndexCodec, StructCodec, make_codec
from ebpfmaps.cpus import possible_cpus
from ebpfmaps.errors import (
    IndexOutOfRange,
    InvalidArgument,
    InvalidFlags,
    InvalidKeySize,
    InvalidValueSize,
    KeyNotFound,
    MapError,
    NotSupported,
    from_errno,
)
from ebpfmaps.map import ITER_BATCH, Map, element_flags, map_class, require_ints
from ebpfmaps.maps.queue import BPF_F_ACCESS_MASK, LengthUnknown
from ebpfmaps.maptypes import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_CLONE,
    BPF_F_LINK,
    BPF_F_LOCK,
    BPF_F_MMAPABLE,
    BPF_F_NO_PREALLOC,
    BPF_F_NO_USER_CONV,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_SEGV_ON_FAULT,
    BPF_F_WRONLY,
    BPF_NOEXIST,
    MapType,
    type_name,
)
from ebpfmaps.spec import MapInfo, MapSpec

if TYPE_CHECKING:
    from ebpfmaps import features
else:
    features = lazy_module("ebpfmaps.features")  # the kernel is probed when a map of a newer type is created

PAGE_SIZE = mmap.PAGESIZE
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_I32 = struct.Struct("=i")

# Flag masks, from the kernel sources named in each comment.
FD_ARRAY_FLAGS = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY  # arraymap.c fd_array_map_alloc_check
DEV_FLAGS = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY  # devmap.c DEV_CREATE_FLAG_MASK
CPUMAP_FLAGS = BPF_F_NUMA_NODE  # cpumap.c cpu_map_alloc
XSK_FLAGS = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY  # xskmap.c xsk_map_alloc
SOCK_FLAGS = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY  # sock_map.c SOCK_CREATE_FLAG_MASK
REUSEPORT_FLAGS = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK  # reuseport_array.c → array_map_alloc_check
CGROUP_STORAGE_FLAGS = BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK  # local_storage.c LOCAL_STORAGE_CREATE_FLAG_MASK
LOCAL_STORAGE_FLAGS = BPF_F_NO_PREALLOC | BPF_F_CLONE  # bpf_local_storage.c bpf_local_storage_map_alloc_check
STRUCT_OPS_FLAGS = BPF_F_LINK  # bpf_struct_ops.c (BPF_F_VTYPE_BTF_OBJ_FD needs a module BTF fd we don't take)
ARENA_FLAGS = BPF_F_MMAPABLE | BPF_F_SEGV_ON_FAULT | BPF_F_NO_USER_CONV  # arena.c arena_map_alloc


def fd_of(obj: Any, what: str = "value") -> int:
    """The file descriptor behind ``obj``: an int, a Map, or an object with ``fd`` or ``fileno()``."""
    if isinstance(obj, bool):
        raise InvalidArgument(f"{what} must be a file descriptor or an object that has one, not {obj!r}", op="encode")
    if isinstance(obj, int):
        fd = obj
    elif isinstance(obj, Map):
        fd = obj.fd
    elif isinstance(getattr(obj, "fd", None), int):
        fd = int(obj.fd)
    elif callable(getattr(obj, "fileno", None)):
        fd = int(obj.fileno())
    else:
        raise InvalidArgument(f"{what} must be a file descriptor or an object with fileno()/fd, "
                              f"not {type(obj).__name__}", op="encode")
    if not 0 <= fd <= _FD_MAX:
        raise InvalidArgument(f"{what}: {fd} is not an open file descriptor (fds are 0..{_FD_MAX})", op="encode")
    return fd


_FD_MAX = 2**31 - 1  # a descriptor is a C int


def check_fd_array_flags(flags: Any, type_id: int, op: str = "update") -> int:
    """``flags`` for an update of an fd array (prog, cgroup, map-of-maps arrays): only BPF_ANY.

    bpf_fd_array_map_update_elem refuses any other flag (EINVAL): every index always exists, an
    update replaces what the slot held, so BPF_NOEXIST and BPF_EXIST have no meaning there.
    """
    checked = element_flags(flags, op)
    if checked:
        raise InvalidFlags(f"{op}: {type_name(type_id)} maps accept only BPF_ANY, not {flag_names_update(checked)}: "
                           "the kernel refuses BPF_NOEXIST/BPF_EXIST on fd arrays (every index exists; an update "
                           "replaces the slot)", op=op)
    return checked


def flag_names_update(flags: int) -> str:
    """Element flags by name (``BPF_NOEXIST``...), the unnamed bits in hex."""
    names = {BPF_NOEXIST: "BPF_NOEXIST", BPF_EXIST: "BPF_EXIST", BPF_F_LOCK: "BPF_F_LOCK"}
    out = [name for bit, name in names.items() if flags & bit]
    rest = flags & ~(BPF_NOEXIST | BPF_EXIST | BPF_F_LOCK)
    if rest:
        out.append(f"{rest:#x}")
    return " | ".join(out)


def _decode_each(codec: Codec, data: bytes | memoryview, count: int) -> list[Any]:
    """decode_many through ``codec.decode`` (the base Codec's decode_many returns raw bytes)."""
    s = codec.size
    return [codec.decode(bytes(data[i * s : (i + 1) * s])) for i in range(count)]


class FdCodec(Codec):
    """Values written as file descriptors (u32, or u64 where the type allows it); read back as an int.

    What the int means on reading is the map type's business: a program id
    (prog arrays), a map id (maps of maps), a socket cookie (socket maps).
    """

    def __init__(self, size: int = 4, role: Any = "value") -> None:
        if size not in (4, 8):
            raise InvalidValueSize(f"fd values are 4 or 8 bytes, not {size}", op="create")
        super().__init__(size, role)
        self._st = _U32 if size == 4 else _U64

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return super().encode(value)
        return self._st.pack(fd_of(value, self.role))

    def decode(self, data: bytes) -> int:
        return int(self._st.unpack_from(data)[0])

    def decode_many(self, data: bytes | memoryview, count: int) -> list[Any]:
        return [int(self._st.unpack_from(data, i * self.size)[0]) for i in range(count)]


class _Probed(Map):
    """Checks that the running kernel has the type before creating (NotSupported from a probe)."""

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        spec = super().prepare_spec(spec)
        features.require_map_type(spec.type)
        return spec


class IndexKeyedMap(_Probed):
    """Types keyed by a u32 index below max_entries (fd arrays, devmap, cpumap, xskmap, sockmap...).

    An index past the end is no element, as for arrays: ``lookup`` answers None and ``in`` False.
    """

    fixed_key_size: ClassVar[int | None] = 4
    _absent_key_errors: ClassVar[tuple[type[Exception], ...]] = (IndexOutOfRange,)

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        if spec.key_size != 4:
            raise InvalidKeySize(f"{type_name(spec.type)} keys are u32 indices: key_size must be 4, "
                                 f"not {spec.key_size}", op="create")
        return super().prepare_spec(spec)

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(kcodec) is Codec:
            kcodec = IndexCodec(spec.max_entries)
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)


class _FdValued(Map):
    """Values are fds on writing; ``value_size`` 4, or 8 where :attr:`fd_value_sizes` allows."""

    fd_value_sizes: ClassVar[tuple[int, ...]] = (4,)
    default_value_size: ClassVar[int] = 4

    def __init__(self, key_size: int | None = None, value_size: int | None = None,
                 max_entries: int | None = None, *, value_type: Any = None, **kwargs: Any) -> None:
        if value_type is None:
            vs = self.default_value_size if value_size is None else value_size
            if vs not in self.fd_value_sizes:
                raise InvalidValueSize(f"{type(self).__name__} values are "
                                       f"{' or '.join(map(str, self.fd_value_sizes))} bytes, not {vs}", op="create")
            value_type = self._value_codec(vs)
        super().__init__(key_size, value_size, max_entries, value_type=value_type, **kwargs)

    def _value_codec(self, size: int) -> Codec:
        return FdCodec(size)

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        if spec.value_size not in self.fd_value_sizes:
            raise InvalidValueSize(f"{type_name(spec.type)} values are "
                                   f"{' or '.join(map(str, self.fd_value_sizes))} bytes, not {spec.value_size}",
                                   op="create")
        return super().prepare_spec(spec)

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(vcodec) is Codec:
            vcodec = self._value_codec(spec.value_size)
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)


# ---------------------------------------------------------------------------------- fd arrays
@map_class
class ProgArray(_FdValued, IndexKeyedMap):
    """BPF_MAP_TYPE_PROG_ARRAY: tail-call targets. Write a program fd; reading gives the program's id."""

    map_type = MapType.PROG_ARRAY
    allowed_flags: ClassVar[int] = FD_ARRAY_FLAGS

    def update(self, key: Any, value: Any, flags: int = 0) -> None:
        super().update(key, value, check_fd_array_flags(flags, self._spec.type))

    def update_batch(self, keys: Iterable[Any], values: Iterable[Any], flags: int = 0) -> int:
        return super().update_batch(keys, values, check_fd_array_flags(flags, self._spec.type, "update_batch"))

    def program_id(self, index: int) -> int | None:
        """The id of the program at ``index`` (``None`` when the slot is empty)."""
        value = self.lookup(index)
        return None if value is None else int(value)


@map_class
class CgroupArray(_FdValued, IndexKeyedMap):
    """BPF_MAP_TYPE_CGROUP_ARRAY: cgroup v2 directory fds for bpf_current_task_under_cgroup / skb_under_cgroup.

    The kernel does not let syscalls read it back (lookups raise NotSupported).
    """

    map_type = MapType.CGROUP_ARRAY
    allowed_flags: ClassVar[int] = FD_ARRAY_FLAGS

    def update(self, key: Any, value: Any, flags: int = 0) -> None:
        super().update(key, value, check_fd_array_flags(flags, self._spec.type))

    def update_batch(self, keys: Iterable[Any], values: Iterable[Any], flags: int = 0) -> int:
        return super().update_batch(keys, values, check_fd_array_flags(flags, self._spec.type, "update_batch"))


# ---------------------------------------------------------------------------------- XDP redirect maps
class DevMapValue(NamedTuple):
    """``struct bpf_devmap_val``: the target ifindex and the id of the program run on redirect (0: none)."""

    ifindex: int
    prog_id: int = 0


class DevMapValueCodec(Codec):
    """DEVMAP values: an ifindex (or interface name); with 8 bytes also ``(ifindex, program fd)``."""

    def __init__(self, size: int) -> None:
        if size not in (4, 8):
            raise InvalidValueSize(f"devmap values are 4 (ifindex) or 8 (struct bpf_devmap_val) bytes, not {size}",
                                   op="create")
        super().__init__(size, "value")

    @staticmethod
    def _ifindex(dev: Any) -> int:
        if isinstance(dev, str):
            import socket  # only here: socket pulls in selectors, a cost every import would pay

            try:
                return socket.if_nametoindex(dev)
            except OSError:
                raise InvalidArgument(f"no network interface named {dev!r}", op="encode") from None
        if isinstance(dev, int) and not isinstance(dev, bool) and dev > 0:
            return dev
        raise InvalidArgument(f"a device is an ifindex > 0 or an interface name, not {dev!r}", op="encode")

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return super().encode(value)
        if isinstance(value, tuple):
            if self.size != 8:
                raise InvalidValueSize("(ifindex, program) values need value_size=8", op="encode")
            dev, prog = value
            prog_fd = -1 if prog is None else fd_of(prog, "program")  # -1: no program (devmap.c)
            return _U32.pack(self._ifindex(dev)) + _I32.pack(prog_fd)
        ifindex = self._ifindex(value)
        return _U32.pack(ifindex) + (_I32.pack(-1) if self.size == 8 else b"")

    def decode(self, data: bytes) -> Any:
        ifindex = _U32.unpack_from(data)[0]
        if self.size == 4:
            return ifindex
        return DevMapValue(ifindex, _U32.unpack_from(data, 4)[0])

    def decode_many(self, data: bytes | memoryview, count: int) -> list[Any]:
        return _decode_each(self, data, count)


def _restorable_prog_slot(previous: bytes, held: list[FD]) -> bytes:
    """An 8-byte devmap/cpumap value as read (``prog_id`` at offset 4) made writable again: the program
    the id names is opened and held, and its fd takes the id's place (0, no program, stays 0)."""
    if len(previous) != 8:
        return previous
    prog_id = _U32.unpack_from(previous, 4)[0]
    if not prog_id:
        return previous
    prog = _progs.prog_open_by_id(prog_id)
    held.append(prog)
    return previous[:4] + _I32.pack(int(prog))


class _DevMapBase(_Probed):
    allowed_flags: ClassVar[int] = DEV_FLAGS

    def _restorable_value(self, previous: bytes, held: list[FD]) -> bytes:
        return _restorable_prog_slot(previous, held)

    def __init__(self, key_size: int | None = None, value_size: int | None = None,
                 max_entries: int | None = None, *, value_type: Any = None, **kwargs: Any) -> None:
        if value_type is None:
            value_type = DevMapValueCodec(4 if value_size is None else value_size)
        super().__init__(key_size, value_size, max_entries, value_type=value_type, **kwargs)
        # dev_map_alloc adds BPF_F_RDONLY_PROG itself (programs get a pointer to the ifindex and must not
        # write it) yet refuses it from the caller; keep the spec equal to what the kernel reports.
        self._spec = self._spec.replace(flags=self._spec.flags | BPF_F_RDONLY_PROG)

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(vcodec) is Codec:
            vcodec = DevMapValueCodec(spec.value_size)
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)


@map_class
class DevMap(_DevMapBase, IndexKeyedMap):
    """BPF_MAP_TYPE_DEVMAP: index → net device for bpf_redirect_map; values are ifindexes or names."""

    map_type = MapType.DEVMAP


@map_class
class DevMapHash(_DevMapBase):
    """BPF_MAP_TYPE_DEVMAP_HASH: sparse u32 keys (often the ifindex itself) → net device."""

    map_type = MapType.DEVMAP_HASH
    fixed_key_size: ClassVar[int | None] = 4
    default_key_type: ClassVar[Any] = "=I"

    @classmethod
    def _implicit_key_type(cls, key_size: int | None) -> Any:
        return "=I" if key_size in (None, 4) else None


class CpuMapValue(NamedTuple):
    """``struct bpf_cpumap_val``: the queue size and the id of the program run on the target CPU (0: none)."""

    qsize: int
    prog_id: int = 0


class CpuMapValueCodec(Codec):
    """CPUMAP values: a queue size; with 8 bytes also ``(qsize, program fd)``."""

    def __init__(self, size: int) -> None:
        if size not in (4, 8):
            raise InvalidValueSize(f"cpumap values are 4 (qsize) or 8 (struct bpf_cpumap_val) bytes, not {size}",
                                   op="create")
        super().__init__(size, "value")

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return super().encode(value)
        prog: Any = None
        if isinstance(value, tuple):
            if self.size != 8:
                raise InvalidValueSize("(qsize, program) values need value_size=8", op="encode")
            value, prog = value
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= CPUMAP_MAX_QSIZE:
            # cpumap.c refuses qsize 0 (EINVAL) and above 16384 (EOVERFLOW).
            raise InvalidArgument(f"cpumap qsize must be 1..{CPUMAP_MAX_QSIZE}, not {value!r}", op="encode")
        out = _U32.pack(value)
        if self.size == 8:
            out += _I32.pack(-1 if prog is None else fd_of(prog, "program"))
        return out

    def decode(self, data: bytes) -> Any:
        qsize = _U32.unpack_from(data)[0]
        if self.size == 4:
            return qsize
        return CpuMapValue(qsize, _U32.unpack_from(data, 4)[0])

    def decode_many(self, data: bytes | memoryview, count: int) -> list[Any]:
        return _decode_each(self, data, count)


CPUMAP_MAX_QSIZE = 16384


@map_class
class CpuMap(IndexKeyedMap):
    """BPF_MAP_TYPE_CPUMAP: CPU index → queue (and program) for XDP redirect to another CPU.

    ``max_entries`` defaults to the possible CPUs; writing an entry starts a kernel thread for that CPU.
    """

    map_type = MapType.CPUMAP
    allowed_flags: ClassVar[int] = CPUMAP_FLAGS

    def __init__(self, key_size: int | None = None, value_size: int | None = None,
                 max_entries: int | None = None, *, value_type: Any = None, **kwargs: Any) -> None:
        if value_type is None:
            value_type = CpuMapValueCodec(4 if value_size is None else value_size)
        super().__init__(key_size, value_size, max_entries, value_type=value_type, **kwargs)

    @classmethod
    def _default_max_entries(cls) -> int:
        return possible_cpus()

    def _restorable_value(self, previous: bytes, held: list[FD]) -> bytes:
        return _restorable_prog_slot(previous, held)

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(vcodec) is Codec:
            vcodec = CpuMapValueCodec(spec.value_size)
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)


@map_class
class XskMap(_FdValued, IndexKeyedMap):
    """BPF_MAP_TYPE_XSKMAP: queue index → AF_XDP socket fd. The kernel refuses syscall reads (NotSupported)."""

    map_type = MapType.XSKMAP
    allowed_flags: ClassVar[int] = XSK_FLAGS


# ---------------------------------------------------------------------------------- socket maps
class _SocketValued(_FdValued):
    """Socket fds in; socket cookies out (the kernel answers lookups only for 8-byte values)."""

    fd_value_sizes: ClassVar[tuple[int, ...]] = (4, 8)
    default_value_size: ClassVar[int] = 8

    def _no_lookups(self, op: str, errno: int | None = None) -> NotSupported:
        # sock_map_lookup_sys, sock_hash_lookup_sys and reuseport_array_lookup_elem answer ENOSPC to any
        # syscall lookup unless value_size is 8: what they return is the socket's 8-byte cookie.
        return NotSupported(f"{op}: the kernel answers syscall lookups of {type_name(self._spec.type)} maps only "
                            f"when value_size is 8 (the value read back is the socket cookie); this map has "
                            f"value_size {self._spec.value_size}, so its sockets can be written and deleted "
                            "but not read", errno=errno, op=op)

    def lookup(self, key: Any, flags: int = 0) -> Any:
        if self._spec.value_size != 8:
            raise self._no_lookups("lookup")
        return super().lookup(key, flags)

    def lookup_bytes(self, key: Any) -> bytes | None:
        if self._spec.value_size != 8:
            raise self._no_lookups("lookup")
        return super().lookup_bytes(key)

    def _fail(self, ret: int, op: str, key: Any = None) -> MapError:
        if -ret == E.ENOSPC and op in ("lookup", "lookup_batch") and not self._h.closed:
            return self._no_lookups(op, E.ENOSPC)
        return super()._fail(ret, op, key)

    def update_batch(self, keys: Iterable[Any], values: Iterable[Any], flags: int = BPF_ANY) -> int:
        """As :meth:`Map.update_batch`, but not with BPF_EXIST: a socket replaced by the batch could not be put
        back if a later element failed (a lookup gives the socket's cookie, and no fd comes from a cookie)."""
        checked = element_flags(flags, "update_batch")
        if checked & BPF_EXIST:
            raise NotSupported(f"update_batch: BPF_EXIST on {type_name(self._spec.type)} maps cannot be undone if an "
                               "element fails (a replaced socket cannot be put back: a lookup gives its cookie); "
                               "update the elements one by one", op="update_batch")
        return super().update_batch(keys, values, checked)

    def cookie(self, key: Any) -> int | None:
        """The socket cookie (SO_COOKIE) of the socket stored at ``key``, or ``None``."""
        if self._spec.value_size != 8:
            raise NotSupported("the kernel reports socket cookies only for maps with value_size=8", op="lookup")
        value = self.lookup(key)
        return None if value is None else int(value)


class _SocketSlots(_SocketValued):
    """Index-keyed socket maps: get_next_key walks every index, holding a socket or not, so only a
    lookup tells the occupied slots, and ``len()``/``keys()``/``items()`` count only those (with
    value_size 4 the kernel answers no lookups: they raise :class:`NotSupported`)."""

    kernel_batch: ClassVar[bool | None] = False

    def raw_chunks(self, values: bool = True, batch_size: int = ITER_BATCH) -> Iterator[tuple[bytes, bytes, int]]:
        if self._spec.value_size != 8:
            raise self._no_lookups("keys" if not values else "items")
        for keys, vals, count in super().raw_chunks(values=True, batch_size=batch_size):  # the lookups drop the empty slots
            yield keys, (vals if values else b""), count

    def __len__(self) -> int:
        if self._spec.value_size != 8:
            exc = self._no_lookups("len")
            raise LengthUnknown(exc.message, op="len")
        return super().__len__()


@map_class
class SockMap(_SocketSlots, IndexKeyedMap):
    """BPF_MAP_TYPE_SOCKMAP: index → TCP/UDP/unix socket for sk_msg/sk_skb redirection.

    ``len()``, ``keys()`` and ``items()`` count the slots that hold a socket.
    """

    map_type = MapType.SOCKMAP
    allowed_flags: ClassVar[int] = SOCK_FLAGS


@map_class
class SockHash(_SocketValued, _Probed):
    """BPF_MAP_TYPE_SOCKHASH: any key → socket, like SockMap with hash keys."""

    map_type = MapType.SOCKHASH
    allowed_flags: ClassVar[int] = SOCK_FLAGS


@map_class
class ReuseportSockArray(_SocketSlots, IndexKeyedMap):
    """BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: index → SO_REUSEPORT socket for sk_reuseport programs."""

    map_type = MapType.REUSEPORT_SOCKARRAY
    allowed_flags: ClassVar[int] = REUSEPORT_FLAGS


# ---------------------------------------------------------------------------------- cgroup storage (legacy)
class _CgroupStorageBase(_Probed):
    """Per-cgroup storage of programs attached to cgroups; entries exist only while such a program is attached.

    max_entries must be 0 (the kernel sizes it). Keys are ``(cgroup inode id, attach type)``
    (key_size 16, ``struct bpf_cgroup_storage_key``) or the cgroup inode id alone (key_size 8).
    """

    allowed_flags: ClassVar[int] = CGROUP_STORAGE_FLAGS
    kernel_batch: ClassVar[bool | None] = False

    def __init__(self, key_size: int | None = None, value_size: int | None = None,
                 max_entries: int | None = None, *, key_type: Any = None, **kwargs: Any) -> None:
        if max_entries not in (None, 0):
            raise InvalidArgument(f"{type(self).__name__} needs max_entries=0 (the kernel sizes cgroup storage)",
                                  op="create")
        if key_type is None:
            ks = 16 if key_size is None else key_size
            key_type = self._key_codec(ks)
        super().__init__(key_size, value_size, 0, key_type=key_type, **kwargs)

    @staticmethod
    def _key_codec(size: int) -> Codec:
        if size == 16:
            return StructCodec("=QI4x", "key")
        if size == 8:
            return StructCodec("=Q", "key")
        raise InvalidKeySize(f"cgroup storage keys are 16 bytes (struct bpf_cgroup_storage_key) or 8 (u64), "
                             f"not {size}", op="create")

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(kcodec) is Codec:
            kcodec = self._key_codec(spec.key_size)
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)


@map_class
class CgroupStorage(_CgroupStorageBase):
    """BPF_MAP_TYPE_CGROUP_STORAGE (deprecated by CGRP_STORAGE, still in the kernel)."""

    map_type = MapType.CGROUP_STORAGE


@map_class
class PerCpuCgroupStorage(_CgroupStorageBase):
    """BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE: cgroup storage with one value per possible CPU."""

    map_type = MapType.PERCPU_CGROUP_STORAGE
    per_cpu = True


# ---------------------------------------------------------------------------------- minimal BTF
BTF_MAGIC = 0xEB9F
BTF_KIND_INT = 1
BTF_KIND_ARRAY = 3
BTF_KIND_STRUCT = 4
BTF_INT_SIGNED = 1


def _btf_type(name_off: int, kind: int, vlen: int, size_or_type: int) -> bytes:
    # struct btf_type { __u32 name_off; __u32 info; union { __u32 size; __u32 type; }; }, info: kind at bits 24..28.
    return struct.pack("=III", name_off, (kind << 24) | vlen, size_or_type)


def storage_btf_blob(value_size: int) -> bytes:
    """Raw BTF with ``[1] int`` (the fd key), ``[2] unsigned char``, ``[3] unsigned char[value_size]``.

    The layout is the kernel's (Documentation/bpf/btf.rst): a 24-byte header,
    the type section, the string section.
    """
    strings = b"\0int\0unsigned char\0"
    types = (
        _btf_type(1, BTF_KIND_INT, 0, 4) + struct.pack("=I", (BTF_INT_SIGNED << 24) | 32)
        + _btf_type(5, BTF_KIND_INT, 0, 1) + struct.pack("=I", 8)
        + _btf_type(0, BTF_KIND_ARRAY, 0, 0) + struct.pack("=III", 2, 1, value_size)
    )
    header = struct.pack("=HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


STORAGE_BTF_KEY_ID = 1
STORAGE_BTF_VALUE_ID = 3


def load_btf(blob: bytes) -> int:
    """Load raw BTF into the kernel; the BTF object's fd (the caller closes it)."""
    h, err, _ = _maps.btf_load(blob)
    if h is None:
        raise from_errno(err, "btf_load", call="bpf_btf_load")
    return h.detach()


class FdKeyCodec(Codec):
    """Keys that are file descriptors (local storages): an int fd or an object with ``fileno()``/``fd``."""

    def __init__(self) -> None:
        super().__init__(4, "key")

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return super().encode(value)
        return _I32.pack(fd_of(value, "key"))

    def decode(self, data: bytes) -> int:
        return int(_I32.unpack_from(data)[0])

    def decode_many(self, data: bytes | memoryview, count: int) -> list[Any]:
        return _decode_each(self, data, count)


class _LocalStorage(_Probed):
    """Storage attached to a kernel object (socket, inode, task, cgroup), addressed from user space by an fd.

    max_entries is 0, BPF_F_NO_PREALLOC is required and set for you, and the key
    and value need BTF: without ``btf=`` a minimal BTF is built and loaded. The
    kernel cannot list the objects that have storage, so there is no iteration.
    """

    allowed_flags: ClassVar[int] = BPF_F_NO_PREALLOC
    kernel_batch: ClassVar[bool | None] = False
    fixed_key_size: ClassVar[int | None] = 4

    def __init__(self, key_size: int | None = None, value_size: int | None = None,
                 max_entries: int | None = None, *, key_type: Any = None, btf: Any = None,
                 btf_key_type_id: int = 0, btf_value_type_id: int = 0, **kwargs: Any) -> None:
        require_ints("create", key_size=key_size, value_size=value_size, max_entries=max_entries)
        if max_entries not in (None, 0):
            raise InvalidArgument(f"{type(self).__name__} needs max_entries=0 (storage lives on the kernel objects)",
                                  op="create")
        if key_size not in (None, 4):
            raise InvalidKeySize(f"{type(self).__name__} keys are fds: key_size must be 4, not {key_size}",
                                 op="create")
        if key_type is None:
            key_type = FdKeyCodec()
        own_btf = -1
        if btf is None:
            vt = kwargs.get("value_type")
            vs = make_codec(vt, value_size, "value").size if vt is not None else value_size
            if not vs:
                raise InvalidValueSize(f"{type(self).__name__} needs value_size > 0", op="create")
            own_btf = load_btf(storage_btf_blob(vs))
            btf, btf_key_type_id, btf_value_type_id = own_btf, STORAGE_BTF_KEY_ID, STORAGE_BTF_VALUE_ID
        elif not (btf_key_type_id and btf_value_type_id):
            raise InvalidArgument(f"{type(self).__name__} with btf= also needs btf_key_type_id and btf_value_type_id",
                                  op="create")
        try:
            super().__init__(4, value_size, 0, key_type=key_type, btf=btf, btf_key_type_id=btf_key_type_id,
                             btf_value_type_id=btf_value_type_id, **kwargs)
        finally:
            if own_btf >= 0:
                os.close(own_btf)  # the map holds its own reference to the BTF object
        if own_btf >= 0:
            self._btf = None
            self._spec = self._spec.replace(btf_fd=None)

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        if spec.max_entries != 0:
            raise InvalidArgument(f"{type_name(spec.type)} maps need max_entries=0", op="create")
        if spec.value_size <= 0:
            raise InvalidValueSize(f"{type_name(spec.type)} maps need value_size > 0", op="create")
        return super().prepare_spec(spec.replace(flags=spec.flags | BPF_F_NO_PREALLOC))

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(kcodec) is Codec:
            kcodec = FdKeyCodec()
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)

    def _no_walk(self, op: str) -> NotSupported:
        return NotSupported(f"{op}: {type_name(self._spec.type)} maps cannot be listed from user space "
                            "(the kernel has no get_next_key for them); look up by object", op=op)

    def keys(self) -> Iterator[Any]:
        raise self._no_walk("keys")

    def next_key_bytes(self, key: bytes | None) -> bytes | None:
        raise self._no_walk("next_key")

    def values(self) -> Iterator[Any]:
        raise self._no_walk("values")

    def items(self) -> Iterator[tuple[Any, Any]]:
        raise self._no_walk("items")

    def __iter__(self) -> Iterator[Any]:
        raise self._no_walk("iteration")

    def __len__(self) -> int:
        raise LengthUnknown(f"{type_name(self._spec.type)} maps cannot report their length", op="len")


@map_class
class SkStorage(_LocalStorage):
    """BPF_MAP_TYPE_SK_STORAGE: a value per socket; keys are sockets (or their fds).

    ``flags=BPF_F_CLONE`` copies the value to sockets cloned from a listener.
    """

    map_type = MapType.SK_STORAGE
    allowed_flags: ClassVar[int] = LOCAL_STORAGE_FLAGS


@map_class
class InodeStorage(_LocalStorage):
    """BPF_MAP_TYPE_INODE_STORAGE: a value per inode (BPF LSM); keys are open files (or their fds)."""

    map_type = MapType.INODE_STORAGE


@map_class
class TaskStorage(_LocalStorage):
    """BPF_MAP_TYPE_TASK_STORAGE: a value per task; keys are pidfds (see :meth:`lookup_pid`)."""

    map_type = MapType.TASK_STORAGE

    def lookup_pid(self, pid: int) -> Any:
        """The value stored for process ``pid`` (through a pidfd opened for the call), or ``None``."""
        pidfd = os.pidfd_open(pid)
        try:
            return self.lookup(pidfd)
        finally:
            os.close(pidfd)

    def update_pid(self, pid: int, value: Any, flags: int = 0) -> None:
        """Store ``value`` for process ``pid``."""
        pidfd = os.pidfd_open(pid)
        try:
            self.update(pidfd, value, flags)
        finally:
            os.close(pidfd)

    def delete_pid(self, pid: int) -> None:
        pidfd = os.pidfd_open(pid)
        try:
            self.delete(pidfd)
        finally:
            os.close(pidfd)


@map_class
class CgrpStorage(_LocalStorage):
    """BPF_MAP_TYPE_CGRP_STORAGE: a value per cgroup v2; keys are open cgroup directories (fds)."""

    map_type = MapType.CGRP_STORAGE


# ---------------------------------------------------------------------------------- struct_ops
def _vmlinux_struct(name: str, path: str = "/sys/kernel/btf/vmlinux") -> tuple[int, int]:
    """``(type id, size)`` of ``struct name`` in the kernel's BTF, read straight from the raw BTF.

    Walks the type section (Documentation/bpf/btf.rst gives each kind's trailing
    data) looking for a STRUCT whose name offset is that of ``name``.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise NotSupported(f"struct_ops needs the kernel's BTF ({path}): {exc}", op="create") from None
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("=HBBIIIII", data)
    if magic != BTF_MAGIC:
        raise NotSupported(f"{path} is not BTF", op="create")
    strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
    needle = b"\0" + name.encode() + b"\0"
    at = strings.find(needle)
    if at < 0:
        raise KeyNotFound(f"the kernel's BTF has no struct {name}", op="create")
    name_off = at + 1
    # Bytes that follow each kind's 12-byte header: fixed, or per member (vlen).
    fixed = {1: 4, 3: 12, 12: 0, 14: 4, 17: 4}  # INT, ARRAY, FUNC, VAR, DECL_TAG
    per_member = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # STRUCT, UNION, ENUM, FUNC_PROTO, DATASEC, ENUM64
    pos = hdr_len + type_off
    end = pos + type_len
    type_id = 1
    unpack = struct.Struct("=III").unpack_from
    while pos < end:
        noff, info, size = unpack(data, pos)
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        if kind == BTF_KIND_STRUCT and noff == name_off:
            return type_id, size
        pos += 12 + fixed.get(kind, 0) + per_member.get(kind, 0) * vlen
        type_id += 1
    raise KeyNotFound(f"the kernel's BTF has no struct {name}", op="create")


@map_class
class StructOpsMap(_Probed):
    """BPF_MAP_TYPE_STRUCT_OPS: one kernel ``struct <name>`` (e.g. ``tcp_congestion_ops``) implemented by programs.

    Created from the struct's name: the value type ``bpf_struct_ops_<name>`` and its
    size come from the kernel's BTF. Filling the function pointers with programs
    and registering it is a loader's job (libbpf's bpf_map__attach_struct_ops).
    """

    map_type = MapType.STRUCT_OPS
    allowed_flags: ClassVar[int] = STRUCT_OPS_FLAGS
    kernel_batch: ClassVar[bool | None] = False
    fixed_key_size: ClassVar[int | None] = 4

    def __init__(self, struct_name: str | None = None, *, key_size: int | None = None,
                 value_size: int | None = None, max_entries: int | None = None,
                 btf_vmlinux_value_type_id: int = 0, **kwargs: Any) -> None:
        if max_entries not in (None, 1):
            raise InvalidArgument("struct_ops maps hold exactly one struct: max_entries must be 1", op="create")
        if key_size not in (None, 4):
            raise InvalidKeySize("struct_ops keys are u32 (key_size 4)", op="create")
        if struct_name is not None:
            short = struct_name.removeprefix("struct ").removeprefix("bpf_struct_ops_")
            type_id, size = _vmlinux_struct("bpf_struct_ops_" + short)
            if value_size not in (None, size):
                raise InvalidValueSize(f"struct bpf_struct_ops_{short} is {size} bytes, not {value_size}", op="create")
            btf_vmlinux_value_type_id, value_size = type_id, size
        if not btf_vmlinux_value_type_id:
            raise InvalidArgument("StructOpsMap needs struct_name= (e.g. 'tcp_congestion_ops')", op="create")
        # map_create insists on a valid btf_fd whenever btf_vmlinux_value_type_id is set (syscall.c);
        # any BTF object will do, the value type itself is looked up in vmlinux.
        own_btf = load_btf(storage_btf_blob(1))
        self.struct_name = struct_name
        try:
            super().__init__(4, value_size, 1, btf=own_btf, btf_vmlinux_value_type_id=btf_vmlinux_value_type_id,
                             **kwargs)
        finally:
            os.close(own_btf)
        self._btf = None
        self._spec = self._spec.replace(btf_fd=None)

    @classmethod
    def _implicit_key_type(cls, key_size: int | None) -> Any:
        return "=I"  # the one key is the u32 0

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(kcodec) is Codec:
            kcodec = StructCodec("=I", "key")
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)

    def _after_adopt(self, info: MapInfo) -> None:
        self.struct_name = None


# ---------------------------------------------------------------------------------- arena
@map_class
class ArenaMap(_Probed):
    """BPF_MAP_TYPE_ARENA (Linux 6.9+): ``max_entries`` pages of memory shared by programs and user space.

    There are no keys or values (key_size and value_size 0); ``map_extra`` is the
    user-space address the arena should be mapped at (0: anywhere). BPF_F_MMAPABLE
    is required and set for you. :meth:`view` maps the pages.
    """

    map_type = MapType.ARENA
    allowed_flags: ClassVar[int] = ARENA_FLAGS
    kernel_batch: ClassVar[bool | None] = False
    fixed_key_size: ClassVar[int | None] = 0
    fixed_value_size: ClassVar[int | None] = 0

    def __init__(self, pages: int | None = None, *, max_entries: int | None = None, key_size: int | None = None,
                 value_size: int | None = None, **kwargs: Any) -> None:
        if pages is not None and max_entries is not None and pages != max_entries:
            raise InvalidArgument("pages and max_entries disagree (an arena's max_entries is its page count)",
                                  op="create")
        if key_size not in (None, 0) or value_size not in (None, 0):
            raise InvalidArgument("arena maps have key_size 0 and value_size 0", op="create")
        self._mm: mmap.mmap | None = None
        super().__init__(0, 0, pages if pages is not None else max_entries, **kwargs)

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        return super().prepare_spec(spec.replace(flags=spec.flags | BPF_F_MMAPABLE))

    def _after_adopt(self, info: MapInfo) -> None:
        self._mm = None

    @property
    def pages(self) -> int:
        return self._spec.max_entries

    def view(self) -> memoryview:
        """The arena's pages, read-write (pages are allocated on first touch)."""
        if self._mm is None:
            try:
                # The mapping holds its own reference to the arena; the number only has to stay ours meanwhile.
                with self._h.pinned("mmap") as fd:
                    self._mm = mmap.mmap(fd, self.pages * PAGE_SIZE, mmap.MAP_SHARED,
                                         mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as exc:  # e.g. EACCES on an fd opened read-only
                raise from_errno(exc.errno or E.EINVAL, "mmap", f"arena of {self.pages} pages") from None
        return memoryview(self._mm)

    def close(self) -> None:
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # views still exist: the mapping (and the arena) lives until they are released
        super().close()

    def _refuse(self, op: str) -> NotSupported:
        return NotSupported(f"{op}: arena maps have no elements; use view()", op=op)

    def lookup(self, key: Any, flags: int = 0) -> Any:
        raise self._refuse("lookup")

    def update(self, key: Any, value: Any, flags: int = 0) -> None:
        raise self._refuse("update")


__all__ = [
    "ArenaMap",
    "CgroupArray",
    "CgroupStorage",
    "CgrpStorage",
    "CpuMap",
    "CpuMapValue",
    "DevMap",
    "DevMapHash",
    "DevMapValue",
    "FdCodec",
    "FdKeyCodec",
    "IndexKeyedMap",
    "InodeStorage",
    "PerCpuCgroupStorage",
    "ProgArray",
    "ReuseportSockArray",
    "SkStorage",
    "SockHash",
    "SockMap",
    "StructOpsMap",
    "TaskStorage",
    "XskMap",
    "fd_of",
    "storage_btf_blob",
]
