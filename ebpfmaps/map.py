"""The live map object: :class:`Map` owns one kernel map fd and does what a map does.

Subclasses, one per kernel map type and grouped by family in ``ebpfmaps.maps``,
fix the type, its defaults and checks. The operations here are shared by all.

Hot paths (lookup, update, delete) keep Python work small: the key is encoded by
the map's codec and handed to libbpf without a copy; the value buffer is a
ctypes array sized from the map's real value size, taken from a per-map free
list so that threads never share one buffer (ctypes drops the GIL during the
call, so a single shared buffer would be a data race).
"""

from __future__ import annotations

import _thread
import ctypes
import errno as E
import os
import struct
import time
from _weakrefset import WeakSet  # what weakref.WeakSet is, without importing the rest of weakref at start-up
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, dropwhile, repeat
from operator import length_hint, not_

from ebpfmaps import errors, extension, pinning
from ebpfmaps._lazy import lazy_module, loaded
from ebpfmaps._libbpf import fast
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.codecs import (
    Codec,
    CtypesCodec,
    IndexCodec,
    PerCpuCodec,
    StructCodec,
    as_items,
    make_codec,
    split_packed,
)
from ebpfmaps.cpus import possible_cpus
from ebpfmaps.errors import (
    InvalidArgument,
    InvalidFlags,
    MapClosed,
    NotSupported,
    PermissionDenied,
)
from ebpfmaps.fdinfo import read_fdinfo
from ebpfmaps.mapmixins import DictProtocol, SpecProperties
from ebpfmaps.maptypes import (
    BPF_ANY,
    BPF_EXIST,
    BPF_F_LOCK,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_RDONLY_PROG,
    BPF_F_WRONLY,
    BPF_F_WRONLY_PROG,
    BPF_NOEXIST,
    EXTENSIBLE_MIN,
    TYPED_MAP_TYPES,
    MapType,
    flag_names,
    map_type_of,
    parse_map_type,
    type_name,
)
from ebpfmaps.spec import MapInfo, MapSpec

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import Any, ClassVar, TypeVar

    from ebpfmaps import memguard, profile

    _M = TypeVar("_M", bound="Map")
    from ebpfmaps.btf import fromcodec as btf_fromcodec
    from ebpfmaps.btf import maps as btf_maps
    from ebpfmaps.btf.maps import TypeRef
else:
    # BTF loads when a map first needs it (codecs described in BTF at creation, types read from a map's BTF):
    # a map of raw bytes or ctypes values opened by a one-shot command never does.
    btf_fromcodec = lazy_module("ebpfmaps.btf.fromcodec")
    btf_maps = lazy_module("ebpfmaps.btf.maps")
    # The profile's and the memory guard's checks run when a map is created, not when one is opened.
    memguard = lazy_module("ebpfmaps.memguard")
    profile = lazy_module("ebpfmaps.profile")

_BTF_CODEC_MODULE = "ebpfmaps.btf.codec"


# Per-element calls go through the argtypes-free entry points (see ebpfmaps._libbpf.fast for
# why and for the argument rules: int fd, bytes in, ctypes arrays out, c_uint64 flags).
_lookup = fast.map_lookup_elem
_lookup_flags = fast.map_lookup_elem_flags
_update = fast.map_update_elem
_delete = fast.map_delete_elem
_get_next_key = fast.map_get_next_key
_u64 = fast.u64
_FLAGS_ANY = fast.u64(BPF_ANY)

_ENOENT = -E.ENOENT
_EPERM = -E.EPERM
# A write refused by a map frozen for a resize follows the pin this many times at most, waiting up to
# PIN_FOLLOW_WAIT seconds each time for the resize to rename its new map over the pin.
_PIN_RETRIES = 8
PIN_FOLLOW_WAIT = 30.0
_UPDATE_FLAGS = BPF_ANY | BPF_NOEXIST | BPF_EXIST | BPF_F_LOCK
DEFAULT_BATCH = 4096
# Batch size of items()/keys()/values() walks: big enough that the per-syscall cost is spread
# thin, small enough that a chunk's bytes stay in cache while they are decoded (4096 x 12 bytes
# for 4/8-byte entries). Measured in benchmarks/ (bench_core "hash items()").
ITER_BATCH = 4096
# Bytes to_numpy() may allocate up front for the array before the first batch (pages never written are
# never committed; past this, the array grows by doubling).
_NUMPY_PREALLOC = 64 << 20
# Elements per chunk when iteration falls back to the get_next_key walk.
_WALK_CHUNK = 64

# How lookup() turns the value buffer into the user's value (chosen once per map in _init_from_fd).
_VDEC_RAW = 0  # raw bytes codec: buf.raw
_VDEC_SCALAR = 1  # struct codec with one field: unpack_from(buf)[0]
_VDEC_TUPLE = 2  # struct codec with several fields: unpack_from(buf)
_VDEC_CTYPES = 3  # ctypes Structure/Array: from_buffer_copy(buf)
_VDEC_CODEC = 4  # anything else: codec.decode(buf.raw)
_VDEC_BUFFER = 5  # a codec that reads the buffer itself (BTF records): codec.decode_buffer(buf)
# Exceptions struct.Struct.pack raises for a bad value; the codec's encode then reports them properly.
_PACK_ERRORS = (struct.error, TypeError, OverflowError, ValueError)
BPF_OBJ_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")

# Map classes by kernel type id, filled by @map_class in each family module as it loads.
MAP_CLASSES: dict[int, type[Map]] = {}
# Imports the family module of a type id (the package registers it: it knows where each family lives), so a
# family loads the first time a map of its types is created or opened.
_family_loader: Callable[[int], None] | None = None


def set_family_loader(loader: Callable[[int], None]) -> None:
    global _family_loader
    _family_loader = loader


def class_for(type_id: int) -> type[Map]:
    """The class for a kernel map type (the generic :class:`Map` if none is specific), its family loaded."""
    cls = MAP_CLASSES.get(type_id)
    if cls is None and _family_loader is not None:
        _family_loader(type_id)
        cls = MAP_CLASSES.get(type_id)
    return Map if cls is None else cls


def map_class(cls: type[_M]) -> type[_M]:
    """Register ``cls`` as the class for its ``map_type`` (used by create/open_pinned)."""
    assert cls.map_type is not None
    MAP_CLASSES[int(cls.map_type)] = cls
    return cls


def validate_name(name: str) -> bytes:
    """A map name as the kernel accepts it: up to 15 chars of [A-Za-z0-9_.]."""
    if len(name) > 15:
        raise InvalidArgument(f"map name {name!r} is longer than 15 characters (BPF_OBJ_NAME_LEN)", op="create")
    bad = set(name) - BPF_OBJ_NAME_CHARS
    if bad:
        raise InvalidArgument(f"map name {name!r} has characters the kernel refuses: {sorted(bad)}", op="create")
    return name.encode()


def require_ints(op: str, **fields: Any) -> None:
    """:class:`InvalidArgument` for the first of ``fields`` that is neither None nor an int (bools,
    floats and strings are refused rather than truncated or converted)."""
    for name, value in fields.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidArgument(f"{op}: {name} must be an int, not {type(value).__name__} ({value!r})", op=op)


def element_flags(flags: Any, op: str) -> int:
    """The flags of an element or batch operation as an int.

    One rule for every operation that takes flags (lookup, update, update_batch, and the same on
    extensible maps): ``None`` or ``0`` means no flags; anything else must be an int (a bool, float,
    string or list, even an empty one, is :class:`InvalidFlags`).
    """
    if flags is None:
        return 0
    if isinstance(flags, bool) or not isinstance(flags, int):
        raise InvalidFlags(f"{op}: flags must be an int (or None/0 for none), not {type(flags).__name__} "
                           f"({flags!r})", op=op)
    return flags


def batch_size_arg(batch_size: Any, op: str) -> int:
    """``batch_size`` of a batch read checked: a positive int (a bool, float, string or None is
    :class:`InvalidArgument`). Any size is accepted; the buffers are sized by what the map can hold."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise InvalidArgument(f"{op}: batch_size must be an int, not {type(batch_size).__name__} ({batch_size!r})",
                              op=op)
    if batch_size < 1:
        raise InvalidArgument(f"{op}: batch_size must be at least 1, not {batch_size}", op=op)
    return batch_size


# The int 0 (one object in CPython): hot paths skip their flags check with one identity test when flags
# is it; anything else (another spelling of 0 included) goes through element_flags.
NO_FLAGS = 0


def map_info_from_fd(fd: int) -> MapInfo:
    """BPF_OBJ_GET_INFO_BY_FD plus fdinfo (memlock, frozen) for a map fd the caller holds open."""
    info = _maps.map_info(fd)
    try:
        fdi = read_fdinfo(fd)
    except OSError:
        fdi = {}
    owner = fdi.get("owner_prog_type")
    return MapInfo(
        id=info.id,
        name=info.name.decode(errors="replace"),
        type=info.type,
        key_size=info.key_size,
        value_size=info.value_size,
        max_entries=info.max_entries,
        flags=info.map_flags,
        map_extra=info.map_extra,
        memlock=int(fdi["memlock"]) if "memlock" in fdi else None,
        frozen=fdi.get("frozen", "0") == "1",
        btf_id=info.btf_id,
        btf_key_type_id=info.btf_key_type_id,
        btf_value_type_id=info.btf_value_type_id,
        ifindex=info.ifindex,
        owner_prog_type=int(owner) if owner is not None else None,
    )


# Every Map object of this process, so that a layer can find all the objects on one kernel map
# (a resize moves them all to the new map): see maps_on().
_live: WeakSet[Map] = WeakSet()
_live_lock = _thread.allocate_lock()


def maps_on(map_id: int) -> list[Map]:
    """Every open :class:`Map` object of this process on kernel map ``map_id``.

    Each object's id is looked up once (one syscall) and kept until its kernel map is replaced.
    Part of the small API that layers over a map (resize) build on.
    """
    with _live_lock:
        candidates = list(_live)
    out: list[Map] = []
    for m in candidates:
        if m.closed:
            continue
        kid = m._kernel_id
        if kid is None:
            try:
                kid = m._kernel_id = _maps.map_info(m._h, "maps_on").id
            except errors.MapError:
                continue
        if kid == map_id:
            out.append(m)
    return out


class Map(SpecProperties, DictProtocol):
    """A kernel BPF map. Create one through a subclass (``HashMap(...)``) or :func:`ebpfmaps.create`.

    Keys and values are bytes unless ``key_type``/``value_type`` give a codec
    (see :mod:`ebpfmaps.codecs`). Every size, flag and type is checked before the
    syscall; a failed operation leaves the map unchanged. A map whose estimated kernel
    memory exceeds what the process may use is refused (:mod:`ebpfmaps.memguard`) unless
    created with ``allow_overcommit=True``.
    """

    #: The kernel type this class creates; ``None`` for the generic class.
    map_type: ClassVar[int | None] = None
    #: One value per possible CPU.
    per_cpu: ClassVar[bool] = False
    #: Creation flags this type accepts (the kernel checks too; we check first to explain).
    allowed_flags: ClassVar[int] = 0xFFFFFFFF
    #: Whether the kernel implements batch ops for this type (None: probe on first use).
    kernel_batch: ClassVar[bool | None] = None
    #: Whether elements can be deleted.
    can_delete: ClassVar[bool] = True
    #: Default key codec when neither key_size nor key_type is given.
    default_key_type: ClassVar[Any] = None
    #: Sizes fixed by the type (e.g. 4 for array keys); None lets the user choose.
    fixed_key_size: ClassVar[int | None] = None
    fixed_value_size: ClassVar[int | None] = None

    _h: FD
    _users: list[None]
    _spec: MapSpec
    _kcodec: Codec
    _vcodec: Codec
    _kernel_id: int | None

    # ------------------------------------------------------------------ creation
    def __init__(
        self,
        key_size: int | None = None,
        value_size: int | None = None,
        max_entries: int | None = None,
        *,
        key_type: Any = None,
        value_type: Any = None,
        flags: int = 0,
        name: str = "",
        map_extra: int = 0,
        numa_node: int | None = None,
        map_type: int | MapType | str | None = None,
        inner_map: Map | MapSpec | None = None,
        btf: Any = None,
        btf_key_type_id: int = 0,
        btf_value_type_id: int = 0,
        btf_vmlinux_value_type_id: int = 0,
        ifindex: int = 0,
        allow_overcommit: bool = False,
    ) -> None:
        require_ints("create", key_size=key_size, value_size=value_size, max_entries=max_entries, flags=flags,
                     map_extra=map_extra, numa_node=numa_node, btf_key_type_id=btf_key_type_id,
                     btf_value_type_id=btf_value_type_id, btf_vmlinux_value_type_id=btf_vmlinux_value_type_id,
                     ifindex=ifindex)
        if map_type is None:
            if self.map_type is None:
                raise InvalidArgument("the generic Map needs map_type=; or use a typed class such as HashMap", op="create")
            tid = int(self.map_type)
        else:
            tid = parse_map_type(map_type)
            if self.map_type is not None and tid != self.map_type:
                raise InvalidArgument(f"{type(self).__name__} creates {type_name(self.map_type)} maps, not {type_name(tid)}", op="create")
        if key_size is None and key_type is None:
            key_size = self.fixed_key_size
            if key_size is None and self.default_key_type is not None:
                key_type = self.default_key_type
        if value_size is None and value_type is None:
            value_size = self.fixed_value_size
        kcodec = make_codec(key_type if key_type is not None else self._implicit_key_type(key_size), key_size, "key")
        vcodec = make_codec(value_type, value_size, "value")
        if max_entries is None:
            max_entries = self._default_max_entries()
        inner_spec: MapSpec | None
        if isinstance(inner_map, Map):
            inner_spec = inner_map.spec
        elif inner_map is None or isinstance(inner_map, MapSpec):
            inner_spec = inner_map
        else:
            raise InvalidArgument(f"inner_map must be a kernel Map or a MapSpec, not {type(inner_map).__name__} "
                                  "(a map layered over a kernel map, such as an extensible map, passes its .base)",
                                  op="create")
        if (btf is None and not btf_key_type_id and not btf_value_type_id and not btf_vmlinux_value_type_id
                and tid in TYPED_MAP_TYPES and not _raw_codecs(kcodec, vcodec)):
            # Describe ctypes/struct codecs in BTF, so bpftool and other tools show the entries formatted.
            generated = btf_fromcodec.btf_for_codecs(kcodec, vcodec, name,
                                       index_key=tid in (MapType.ARRAY, MapType.PERCPU_ARRAY))
            if generated is not None:
                btf = generated.btf
                btf_key_type_id, btf_value_type_id = generated.key_type_id, generated.value_type_id
        else:
            generated = None
        btf_fd = getattr(btf, "fd", btf)
        spec = MapSpec(
            type=tid,
            key_size=kcodec.size,
            value_size=vcodec.size,
            max_entries=int(max_entries),
            flags=int(flags),
            name=name,
            map_extra=int(map_extra),
            numa_node=numa_node,
            inner_map=inner_spec,
            btf_fd=btf_fd,
            btf_key_type_id=btf_key_type_id,
            btf_value_type_id=btf_value_type_id,
            btf_vmlinux_value_type_id=btf_vmlinux_value_type_id,
            ifindex=ifindex,
            allow_overcommit=bool(allow_overcommit),
        )
        spec = self.prepare_spec(spec)
        self._btf = btf  # keep a BTF object alive as long as the map refers to it
        if isinstance(inner_map, Map):
            with inner_map.handle.pinned("create") as inner_fd:  # the template stays open for the syscall
                fd = self.create_kernel_map(spec, inner_fd)
        else:
            try:
                fd = self.create_kernel_map(spec)
            finally:
                if generated is not None:
                    # The kernel map holds its own reference to the BTF: no descriptor is kept for it.
                    generated.btf.close()
                    self._btf = None
        self._init_from_fd(fd, spec, kcodec, vcodec, writable=True)
        try:
            profile.after_create(self)
        except BaseException:
            self.close()
            raise

    @classmethod
    def _implicit_key_type(cls, key_size: int | None) -> Any:
        return None

    @classmethod
    def _default_max_entries(cls) -> int:
        raise InvalidArgument(f"{cls.__name__} needs max_entries", op="create")

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        """Check ``spec`` for this type and fill in defaults; subclasses extend this."""
        kind = map_type_of(spec.type)
        if spec.max_entries <= 0 and not (kind is not None and kind.allows_zero_entries):
            raise InvalidArgument(f"max_entries must be > 0, not {spec.max_entries}", op="create")
        if spec.flags < 0 or spec.flags > 0xFFFFFFFF:
            raise InvalidFlags(f"map flags {spec.flags:#x} do not fit in 32 bits", op="create")
        # numa_node= implies the flag; add it before the type check so types that refuse NUMA say so.
        if spec.numa_node is not None and not spec.flags & BPF_F_NUMA_NODE:
            spec = spec.replace(flags=spec.flags | BPF_F_NUMA_NODE)
        extra = spec.flags & ~self.allowed_flags
        if extra:
            raise InvalidFlags(
                f"{type_name(spec.type)} maps do not accept flags {flag_names(extra)} ({extra:#x})", op="create"
            )
        # The kernel's bpf_map_flags_access_ok() refuses each pair set together (EINVAL).
        for pair, names in _EXCLUSIVE_FLAGS:
            if spec.flags & pair == pair:
                raise InvalidFlags(f"map flags {names} exclude each other", op="create")
        if spec.flags & BPF_F_NUMA_NODE and spec.numa_node is None:
            raise InvalidArgument("BPF_F_NUMA_NODE needs numa_node=", op="create")
        if spec.map_extra < 0 or spec.map_extra >= 1 << 64:
            raise InvalidArgument("map_extra must fit in 64 bits", op="create")
        validate_name(spec.name)
        return spec

    @staticmethod
    def create_kernel_map(spec: MapSpec, inner_fd: int | None = None) -> int:
        """Create the kernel map ``spec`` describes (after the profile's checks) and return its fd,
        which the caller owns: hand it to :meth:`adopt_fd` or close it.

        A map whose estimated kernel memory exceeds what this process may still use is refused
        with :class:`~ebpfmaps.errors.OutOfMemory` before the syscall, unless
        ``spec.allow_overcommit`` (see :mod:`ebpfmaps.memguard`).

        Part of the small API that layers over a map (resize, the factory) build on.
        """
        profile.before_create(spec)
        memguard.check(spec)
        h = _maps.map_create(
            spec.type, spec.name, spec.key_size, spec.value_size, spec.max_entries, flags=spec.flags,
            map_extra=spec.map_extra, numa_node=spec.numa_node or 0, ifindex=spec.ifindex, btf_fd=spec.btf_fd,
            btf_key_type_id=spec.btf_key_type_id, btf_value_type_id=spec.btf_value_type_id,
            btf_vmlinux_value_type_id=spec.btf_vmlinux_value_type_id, inner_map_fd=inner_fd,
        )
        return h.detach()  # callers (and resize) take a number they own

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        # An FD is shared as it is (a view on a map whose handle another object owns).
        self._h = fd if isinstance(fd, FD) else FD(fd, "map")
        # The handle's in-flight list, kept here so the element ops count themselves in flight with a
        # bare append/pop (ebpfmaps._libbpf.fd explains the protocol).
        self._users = self._h.users
        self._spec = spec
        self._pin_path: str | None = None
        self._writable = writable and not spec.flags & BPF_F_RDONLY
        self._readable = not spec.flags & BPF_F_WRONLY  # adopt_fd(readable=False) for a write-only fd
        self._kcodec = kcodec
        if self.per_cpu and not isinstance(vcodec, PerCpuCodec):
            vcodec = PerCpuCodec(vcodec, possible_cpus())
        self._vcodec = vcodec
        self._ksize = kcodec.size
        self._vsize = vcodec.size
        self._kenc: Callable[[Any], bytes] = kcodec.encode
        self._kdec: Callable[[bytes], Any] = kcodec.decode
        self._venc: Callable[[Any], bytes] = vcodec.encode
        self._vdec: Callable[[bytes], Any] = vcodec.decode
        self._vtype = ctypes.c_char * max(self._vsize, 1)
        self._ktype = ctypes.c_char * max(self._ksize, 1)
        self._vpool: list[Any] = []
        self._init_fast_paths()
        # Whether this kernel has batch operations for the type: False when the type never has them,
        # else found out by the first batch call (per-CPU arrays got them only in Linux 5.13).
        self._batch_ok: bool | None = False if self.kernel_batch is False else None
        self._lock = _thread.allocate_lock()
        self._kernel_id: int | None = None  # this object's kernel map id, looked up by maps_on()
        with _live_lock:
            _live.add(self)

    def _init_fast_paths(self) -> None:
        """Pick the cheapest correct encode/decode for this map's codecs (used by the element ops).

        Only the library's own codec classes, used exactly (not subclassed), get a shortcut:
        their output is known to be ``bytes`` of exactly the codec's size. A user codec goes
        through its ``encode`` and the result is checked (type and size) before any syscall.
        """
        kcodec, vcodec = self._kcodec, self._vcodec
        # Raw codecs: bytes of exactly the size pass through untouched (the common raw case).
        self._kraw = type(kcodec) is Codec
        self._vraw = type(vcodec) is Codec
        # struct.Struct.pack directly for one-field struct codecs: skips the codec's Python frame.
        self._kpack = _struct_packer(kcodec)
        self._vpack = _struct_packer(vcodec)
        self._ktrusted = _trusted_codec(kcodec)
        self._vtrusted = _trusted_codec(vcodec)
        vt = type(vcodec)
        self._vunpack: Callable[[Any], Any] | None = None
        self._vctype: Any = None
        if self._vsize == 0:
            self._vdec_mode = _VDEC_CODEC  # a 1-byte buffer stands for "no value": decode b"" properly
        elif vt is Codec:
            self._vdec_mode = _VDEC_RAW
        elif vt is StructCodec:
            assert isinstance(vcodec, StructCodec)
            self._vunpack = vcodec.struct.unpack_from
            self._vdec_mode = _VDEC_SCALAR if vcodec.scalar else _VDEC_TUPLE
        elif vt is CtypesCodec:
            assert isinstance(vcodec, CtypesCodec)
            self._vctype = vcodec.ctype
            self._vdec_mode = _VDEC_CTYPES
        elif _is_btf_codec_class(vt):
            self._vunpack = vcodec.decode_buffer  # type: ignore[attr-defined]
            self._vdec_mode = _VDEC_BUFFER
        else:
            self._vdec_mode = _VDEC_CODEC

    def _encode_key(self, key: Any) -> bytes:
        """The key's bytes, exactly key_size long, or the codec's error (before any syscall)."""
        pack = self._kpack
        if pack is not None:
            try:
                return pack(key)
            except _PACK_ERRORS:
                pass  # the codec's encode below raises the library's error for this key
        kb = self._kenc(key)
        if not self._ktrusted and (type(kb) is not bytes or len(kb) != self._ksize):
            kb = _checked_bytes(kb, self._ksize, "key")
        return kb

    def _encode_value(self, value: Any) -> bytes:
        """The value's bytes, exactly value_size long (the kernel reads that many), or an error."""
        pack = self._vpack
        if pack is not None:
            try:
                return pack(value)
            except _PACK_ERRORS:
                pass
        vb = self._venc(value)
        if not self._vtrusted and (type(vb) is not bytes or len(vb) != self._vsize):
            vb = _checked_bytes(vb, self._vsize, "value")
        return vb

    def _decode_value(self, buf: Any) -> Any:
        """The user's value from a filled value buffer (the slow-path twin of lookup's inline decode)."""
        mode = self._vdec_mode
        if mode == _VDEC_RAW:
            return buf.raw
        if mode == _VDEC_SCALAR:
            return self._vunpack(buf)[0]  # type: ignore[misc]
        if mode == _VDEC_TUPLE or mode == _VDEC_BUFFER:
            return self._vunpack(buf)  # type: ignore[misc]
        if mode == _VDEC_CTYPES:
            return self._vctype.from_buffer_copy(buf)
        return self._vdec(buf.raw[: self._vsize])

    #: Key-encoding errors that mean "this key cannot be in the map" for lookups (arrays: an
    #: index past the end), so lookup() answers None instead of raising.
    _absent_key_errors: ClassVar[tuple[type[Exception], ...]] = ()

    @classmethod
    def adopt_fd(
        cls: type[_M],
        fd: int,
        info: MapInfo | None = None,
        *,
        key_type: Any = None,
        value_type: Any = None,
        writable: bool = True,
        readable: bool = True,
        pin_path: str | None = None,
    ) -> _M:
        """Wrap a map fd the caller owns (from a pin, an id, an object file); sizes come from the kernel.

        The object owns ``fd`` from here on (it is closed if wrapping fails). ``pin_path`` records
        where the map is pinned, when it was opened from a pin. Part of the small API that layers
        over a map (the factory, resize, programs) build on.
        """
        try:
            if info is None:
                info = map_info_from_fd(fd)
            self = cls.__new__(cls)
            spec = info.to_spec()
            ksize: int | None = info.key_size
            kt = key_type
            if kt is None and cls.default_key_type is not None and info.key_size == 4:
                kt = cls.default_key_type
            kcodec = make_codec(kt, ksize, "key")
            vsize = info.value_size
            vcodec = make_codec(value_type, vsize, "value")
            self._btf = None
            self._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)
            self._pin_path = pin_path
            self._readable = self._readable and readable
            self._after_adopt(info)
            return self
        except BaseException:
            os.close(fd)
            raise

    def _after_adopt(self, info: MapInfo) -> None:
        """Hook for subclasses that need more state when wrapping an existing map."""

    @classmethod
    def from_spec(cls, spec: MapSpec, *, key_type: Any = None, value_type: Any = None, inner_map: Map | None = None) -> Map:
        """Create a map from a :class:`MapSpec` (the class is chosen by ``spec.type``)."""
        target = class_for(spec.type) if cls is Map else cls
        kwargs: dict[str, Any] = dict(
            key_size=spec.key_size,
            value_size=spec.value_size,
            max_entries=spec.max_entries,
            key_type=key_type,
            value_type=value_type,
            flags=spec.flags,
            name=spec.name,
            map_extra=spec.map_extra,
            numa_node=spec.numa_node,
            btf=spec.btf_fd,
            btf_key_type_id=spec.btf_key_type_id,
            btf_value_type_id=spec.btf_value_type_id,
            btf_vmlinux_value_type_id=spec.btf_vmlinux_value_type_id,
            ifindex=spec.ifindex,
        )
        if spec.allow_overcommit:
            kwargs["allow_overcommit"] = True
        if inner_map is not None or spec.inner_map is not None:
            kwargs["inner_map"] = inner_map if inner_map is not None else spec.inner_map
        if spec.type >= EXTENSIBLE_MIN:
            # An extensible type: its extension creates it, as create() does, from the fields the spec sets
            # (kernel-only fields left at their defaults are not the extension's business).
            unset = {"btf": None, "btf_key_type_id": 0, "btf_value_type_id": 0, "btf_vmlinux_value_type_id": 0,
                     "ifindex": 0, "numa_node": None, "map_extra": 0, "flags": 0, "name": ""}
            return extension.create_extensible(spec.type, {k: v for k, v in kwargs.items()
                                                           if not (k in unset and v == unset[k])})
        if target is Map:
            kwargs["map_type"] = spec.type
        return target(**kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def fd(self) -> int:
        """The map's file descriptor number now (raises :class:`MapClosed` once closed).

        The number is only valid while the map is open: hand it to something that takes its own
        reference (a program load, ``os.dup``) right away, and keep the :class:`Map` (or
        :attr:`handle`) rather than the number.
        """
        return int(self._h)

    @property
    def handle(self) -> FD:
        """The :class:`~ebpfmaps._libbpf.fd.FD` that owns the descriptor; closed together with the map."""
        return self._h










    @property
    def closed(self) -> bool:
        return self._h.closed

    @property
    def writable(self) -> bool:
        return self._writable

    @property
    def pin_path(self) -> str | None:
        return self._pin_path

    @property
    def id(self) -> int:
        return self.info().id

    def __repr__(self) -> str:
        state = "closed" if self._h.closed else f"fd={self._h.num}"
        s = self._spec
        name = f" {s.name!r}" if s.name else ""
        return (f"<{type(self).__name__}{name} {state} key_size={s.key_size} value_size={s.value_size} "
                f"max_entries={s.max_entries}>")

    def info(self) -> MapInfo:
        """What the kernel reports now: ids, sizes, flags, memlock and frozen state."""
        with self._h.pinned("info") as fd:
            return map_info_from_fd(fd)

    @property
    def key_type(self) -> TypeRef | None:
        """The key's type as the map's BTF describes it (``str()`` gives its C name), or None without BTF."""
        return btf_maps.type_refs(self.info())[0]

    @property
    def value_type(self) -> TypeRef | None:
        """The value's type as the map's BTF describes it (one CPU's value for per-CPU maps), or None."""
        return btf_maps.type_refs(self.info())[1]

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the map (idempotent). A pinned map lives on in bpffs.

        Every later operation, through this object or anything holding it (iterators, readers,
        views, other threads), raises :class:`MapClosed`; calls already in flight finish on this
        map before the descriptor is released.
        """
        self._h.close()



    def replace_kernel_map(self, fd: int, spec: MapSpec) -> None:
        """Make this object the map behind ``fd`` (which it takes over), described by ``spec``.

        The descriptor number stays the same (``dup2``), so operations in flight, iterators and
        readers carry on with the new map: what a resize by migration needs.
        """
        self._h.replace(fd)
        self._spec = spec
        self._kernel_id = None

    def __copy__(self: _M) -> _M:
        """A second object on the same kernel map, with its own duplicated descriptor and codecs."""
        other = type(self).adopt_fd(self._h.dup_number(), key_type=self._kcodec, value_type=self._vcodec,
                                    writable=self._writable, pin_path=self._pin_path)
        other._btf = self._btf
        return other

    def __deepcopy__(self: _M, memo: dict[int, Any]) -> _M:
        """As :meth:`__copy__`: the kernel map is shared (a map's contents are not Python data to copy)."""
        return self.__copy__()

    def __reduce__(self) -> Any:
        raise TypeError("a Map cannot be pickled: pin it and open_pinned() it in the other process")

    def freeze(self) -> None:
        """Make the map read-only for syscalls (BPF_MAP_FREEZE); programs may still write."""
        _maps.map_freeze(self._h)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin into a bpf filesystem; the map outlives this process until unpinned."""
        self._pin_path = pinning.pin_fd(self._h, path)

    def unpin(self, path: str | os.PathLike[str] | None = None) -> None:
        """Remove the pin (this map's own, or ``path``)."""
        target = path if path is not None else self._pin_path
        if target is None:
            raise InvalidArgument("the map is not pinned by this object; pass the path", op="unpin")
        extension.unpin(target)
        if path is None or os.fspath(path) == self._pin_path:
            self._pin_path = None

    # ------------------------------------------------------------------ errors
    def _fail(self, ret: int, op: str, key: Any = None) -> errors.MapError:
        """The library's exception for a failed map syscall (``ret`` is -errno), naming the libbpf call."""
        exc = self._explain(-ret, op, key)
        if exc.call is None:
            exc.call = _OP_CALLS.get(op)
        return exc

    def _explain(self, err: int, op: str, key: Any) -> errors.MapError:
        if self._h.closed:
            return MapClosed(f"{op}: the map is closed", errno=err, op=op)
        if err == E.EPERM and not self._writable and op in ("update", "delete", "lookup_and_delete", "push", "pop"):
            return PermissionDenied(f"{op}: the map is read-only for this process (opened or created with BPF_F_RDONLY)",
                                    errno=err, op=op)
        if err == E.EPERM and not self._readable and op in _READ_OPS:
            how = "created with BPF_F_WRONLY" if self._spec.flags & BPF_F_WRONLY else "opened write-only"
            return PermissionDenied(f"{op}: the map was {how}: this fd cannot read it", errno=err, op=op)
        if err == E.EPERM and op in ("update", "delete"):
            try:
                frozen = self.info().frozen
            except errors.MapError:
                frozen = False
            if frozen:
                return PermissionDenied(f"{op}: the map is frozen (BPF_MAP_FREEZE): syscalls cannot write it",
                                        errno=err, op=op)
        if err == E.E2BIG and op.startswith("update"):
            kind = map_type_of(self._spec.type)
            if kind is not None and kind.is_index_keyed:
                # Index-keyed types answer an index past the end with E2BIG, which would read as "map full".
                where = f"index {key!r}" if key is not None else "an index"
                return errors.IndexOutOfRange(f"{op}: {where} is outside the {type_name(self._spec.type)} "
                                              f"(max_entries={self._spec.max_entries}) (E2BIG)", errno=err, op=op)
        detail = f"key {key!r}" if key is not None and err == E.ENOENT else ""
        return errors.from_errno(err, op, detail)

    def _reenter_with(self, buf: Any, op: str) -> int:
        """The hot paths' slow branch: wait out a hold (a resize) and return the number, or give the
        value buffer back to the pool and raise :class:`MapClosed`."""
        try:
            return self._h.reenter(op)
        except BaseException:
            self._vpool.append(buf)
            raise

    def _write_via_pin(self, op: str, key: Any, kb: bytes, vb: bytes | None = None, cflags: Any = None) -> None:
        """An update (``vb`` given) or delete refused with EPERM on a map opened from a pin: follow the
        pin and retry (bounded). A separate method, so the hot paths keep their plain locals.

        When another process resized the map, the old map is frozen and the pin names the new one:
        :meth:`_follow_pin` moves this object there and the write is made again. Any other EPERM
        (a map frozen for good, no permission) is raised as before.
        """
        ret = _EPERM
        for _ in range(_PIN_RETRIES):
            if not self._follow_pin(op):
                break
            with self._h.pinned(op) as fd:
                ret = _update(fd, kb, vb, cflags) if vb is not None else _delete(fd, kb)
            if ret != _EPERM:
                break
        if ret:
            raise self._fail(ret, op, key)

    def _follow_pin(self, op: str) -> bool:
        """After a write to this object's map failed with EPERM: True when a retry may now succeed.

        That is when the map was frozen by a resize in another process that pinned a new map in its
        place: this object takes the pinned map over (same fd number, as a resize in this process
        does) and the caller retries. While a resize is between freezing the old map and renaming
        the new pin over it (its temporary pin is in the pin's directory, see
        :func:`ebpfmaps.pinning.migration_in_progress`), wait for the rename, up to
        ``PIN_FOLLOW_WAIT`` seconds. False when the map is not frozen, the pin still names it and no
        resize is under way, or the pin now holds a map of another kind.
        """
        path = self._pin_path
        if path is None or not self._writable:
            return False
        deadline = time.monotonic() + PIN_FOLLOW_WAIT
        pause = 1e-3
        while True:
            # Looked at before the pin is resolved: a resize makes its temporary pin before freezing
            # the old map and removes it by the rename, so a map seen frozen with no temporary pin
            # around has either been renamed away already (the pin resolves to the new map) or was
            # frozen for good.
            migrating = pinning.migration_in_progress(path)
            try:
                h = pinning.obj_get_handle(path, kind="map")
            except errors.MapError:
                return False
            try:
                with h.pinned(op) as pfd:
                    pinned = map_info_from_fd(pfd)
                mine = self.info()
                if pinned.id != mine.id:
                    s = self._spec
                    if (pinned.type, pinned.key_size, pinned.value_size) != (s.type, s.key_size, s.value_size):
                        return False
                    self.replace_kernel_map(h.detach(), s.replace(max_entries=pinned.max_entries))
                    return True
                if not mine.frozen:
                    return True  # already moved to the pinned map (by another thread): retry there
            finally:
                h.close()
            if not migrating or time.monotonic() > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _check_writable(self, op: str) -> None:
        if not self._writable:
            raise PermissionDenied(f"{op}: the map is read-only for this process (opened or created with BPF_F_RDONLY)",
                                   op=op)

    # ------------------------------------------------------------------ element operations
    def lookup(self, key: Any, flags: int = 0) -> Any:
        """The value for ``key``, or ``None`` when the key is absent.

        ``flags=BPF_F_LOCK`` reads a value holding a ``bpf_spin_lock`` under the lock (None or 0: no flags).
        """
        # Hot path: every line here is paid per call (see benchmarks/). Raw keys of the right
        # size are used as they are; anything else goes through the codec and its checks.
        if self._kraw and type(key) is bytes and len(key) == self._ksize:
            kb = key
        elif (kpack := self._kpack) is not None:
            # One-field struct key (c_uint32...): pack inline; a bad key takes the codec's path,
            # which raises the library's error.
            try:
                kb = kpack(key)
            except _PACK_ERRORS:
                kb = self._encode_key(key)
        else:
            try:
                kb = self._encode_key(key)
            except self._absent_key_errors:
                return None
        # A buffer of the map's own value size from this map's free list: list.pop/append are
        # atomic under the GIL, so two threads never hold the same buffer (ctypes drops the GIL during the call).
        if flags is not NO_FLAGS:
            flags = self._check_lookup_flags(flags)
        pool = self._vpool
        buf = pool.pop() if pool else self._vtype()
        # In flight on the handle for the syscall: a concurrent close() cannot hand the number to
        # another map until this call is done (ebpfmaps._libbpf.fd).
        h = self._h
        users = self._users
        users.append(None)
        try:
            fd = h.num
            if fd < 0:
                fd = self._reenter_with(buf, "lookup")
            ret = _lookup_flags(fd, kb, buf, _u64(flags)) if flags else _lookup(fd, kb, buf)
        finally:
            users.pop()
            if h.num < 0:
                h.settle()
        if ret == 0:
            mode = self._vdec_mode
            if mode == _VDEC_RAW:
                out = buf.raw
            elif mode == _VDEC_SCALAR:
                out = self._vunpack(buf)[0]  # type: ignore[misc]
            else:
                out = self._decode_value(buf)
            pool.append(buf)
            return out
        pool.append(buf)
        if ret == _ENOENT:
            return None
        raise self._fail(ret, "lookup", key)

    def __getitem__(self, key: Any) -> Any:
        """``m[key]``: :meth:`lookup`'s hot path inlined (one Python frame instead of two), raising
        :class:`KeyNotFound` for an absent key. Subclasses that override :meth:`lookup` get the
        generic spelling (``__init_subclass__``), which calls their lookup."""
        if self._kraw and type(key) is bytes and len(key) == self._ksize:
            kb = key
        elif (kpack := self._kpack) is not None:
            try:
                kb = kpack(key)
            except _PACK_ERRORS:
                return DictProtocol.__getitem__(self, key)  # the codec's path raises the library's error
        else:
            return DictProtocol.__getitem__(self, key)
        pool = self._vpool
        buf = pool.pop() if pool else self._vtype()
        h = self._h
        users = self._users
        users.append(None)  # in flight, as in lookup()
        try:
            fd = h.num
            if fd < 0:
                fd = self._reenter_with(buf, "lookup")
            ret = _lookup(fd, kb, buf)
        finally:
            users.pop()
            if h.num < 0:
                h.settle()
        if ret == 0:
            mode = self._vdec_mode
            if mode == _VDEC_RAW:
                out = buf.raw
            elif mode == _VDEC_SCALAR:
                out = self._vunpack(buf)[0]  # type: ignore[misc]
            else:
                out = self._decode_value(buf)
            pool.append(buf)
            return out
        pool.append(buf)
        if ret == _ENOENT:
            raise errors.KeyNotFound(f"lookup: key {key!r} not found", errno=E.ENOENT, op="lookup")
        raise self._fail(ret, "lookup", key)

    def next_key(self, key: Any = None) -> Any:
        """The key after ``key`` in the kernel's order (BPF_MAP_GET_NEXT_KEY), decoded by the key codec.

        ``None`` starts the walk: the first key. The last key gives ``None``. A key that is not in
        the map gives the first key on hash maps (the kernel's rule; arrays give the index after
        it, and an index past the end the first one). Each call is one syscall and sees the map as
        it is then; :meth:`keys` is the walk that copes with concurrent deletes.
        """
        kb: bytes | None = None
        if key is not None:
            try:
                kb = self._encode_key(key)
            except self._absent_key_errors:
                kb = None  # an index past the end: the kernel starts over at the first one
        out = self.next_key_bytes(kb)
        return None if out is None else self._kdec(out)

    def next_key_bytes(self, key: bytes | None) -> bytes | None:
        """:meth:`next_key` with raw key bytes in and out, no codec (``None``: from the start / no more).

        Part of the small API that layers over a map (extensible maps) build on.
        """
        if key is not None and (type(key) is not bytes or len(key) != self._ksize):
            got = f"{len(key)} bytes" if isinstance(key, (bytes, bytearray)) else type(key).__name__
            raise errors.InvalidKeySize(f"get_next_key: the key is {got}, the map's key_size is {self._ksize}",
                                        op="get_next_key")
        nxt = self._ktype()
        ret = _maps.map_get_next_key(self._h, key, nxt)
        if ret == _ENOENT:
            return None
        if ret:
            raise self._fail(ret, "get_next_key", key)
        return nxt.raw[: self._ksize]

    def lookup_bytes(self, key: Any) -> bytes | None:
        """The raw value bytes (no value codec), or ``None``."""
        if self._kraw and type(key) is bytes and len(key) == self._ksize:
            kb = key
        else:
            try:
                kb = self._encode_key(key)
            except self._absent_key_errors:
                return None
        pool = self._vpool  # same per-map free list as lookup(): `key in m` is a hot path too
        buf = pool.pop() if pool else self._vtype()
        h = self._h
        users = self._users
        users.append(None)
        try:
            fd = h.num
            if fd < 0:
                fd = self._reenter_with(buf, "lookup")
            ret = _lookup(fd, kb, buf)
        finally:
            users.pop()
            if h.num < 0:
                h.settle()
        if ret == 0:
            out = buf.raw[: self._vsize]
            pool.append(buf)
            return out
        pool.append(buf)
        if ret == _ENOENT:
            return None
        raise self._fail(ret, "lookup", key)

    def _check_lookup_flags(self, flags: int) -> int:
        flags = element_flags(flags, "lookup")
        if flags & ~BPF_F_LOCK:
            raise InvalidFlags(f"lookup accepts only BPF_F_LOCK, not {flags:#x}", op="lookup")
        self._check_lock_flag(flags, "lookup")
        return flags

    def _check_lock_flag(self, flags: int, op: str) -> None:
        if flags & BPF_F_LOCK and not self._spec.btf_value_type_id:
            raise InvalidFlags(f"{op}: BPF_F_LOCK needs a value type with a bpf_spin_lock (a map created with BTF)", op=op)

    def _check_update_flags(self, flags: int, op: str = "update") -> int:
        flags = element_flags(flags, op)
        if flags & ~_UPDATE_FLAGS:
            raise InvalidFlags(f"{op} accepts BPF_ANY, BPF_NOEXIST, BPF_EXIST and BPF_F_LOCK, not {flags:#x}", op=op)
        if flags & BPF_NOEXIST and flags & BPF_EXIST:
            raise InvalidFlags(f"{op}: BPF_NOEXIST and BPF_EXIST exclude each other", op=op)
        if flags & BPF_F_LOCK:
            self._check_lock_flag(flags, op)
        return flags

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        """Insert or replace (``BPF_ANY``), insert only (``BPF_NOEXIST``), replace only (``BPF_EXIST``).

        ``flags`` None or 0 means ``BPF_ANY``, as everywhere flags are taken.
        """
        if flags is NO_FLAGS:
            cflags = _FLAGS_ANY
        else:
            checked = self._check_update_flags(flags)
            cflags = _u64(checked) if checked else _FLAGS_ANY
        if self._kraw and type(key) is bytes and len(key) == self._ksize:
            kb = key
        elif (kpack := self._kpack) is not None:
            try:
                kb = kpack(key)
            except _PACK_ERRORS:
                kb = self._encode_key(key)
        else:
            kb = self._encode_key(key)
        if self._vraw and type(value) is bytes and len(value) == self._vsize:
            vb = value
        elif (vpack := self._vpack) is not None:
            try:
                vb = vpack(value)
            except _PACK_ERRORS:
                vb = self._encode_value(value)
        else:
            vb = self._encode_value(value)
        h = self._h
        users = self._users
        users.append(None)
        try:
            fd = h.num
            if fd < 0:
                fd = h.reenter("update")  # waits out a resize's hold; raises once closed
            ret = _update(fd, kb, vb, cflags)
        finally:
            users.pop()
            if h.num < 0:
                h.settle()
        if ret:
            if not self._writable:
                self._check_writable("update")
            if ret == _EPERM and self._pin_path is not None:
                self._write_via_pin("update", key, kb, vb, cflags)
                return
            raise self._fail(ret, "update", key)

    def delete(self, key: Any) -> None:
        """Remove ``key``; raises :class:`KeyNotFound` when it is absent."""
        if not self.can_delete:
            raise NotSupported(f"{type_name(self._spec.type)} maps do not support deleting elements", op="delete")
        kb = key if self._kraw and type(key) is bytes and len(key) == self._ksize else self._encode_key(key)
        h = self._h
        users = self._users
        users.append(None)
        try:
            fd = h.num
            if fd < 0:
                fd = h.reenter("delete")
            ret = _delete(fd, kb)
        finally:
            users.pop()
            if h.num < 0:
                h.settle()
        if ret:
            if not self._writable:
                self._check_writable("delete")
            if ret == _EPERM and self._pin_path is not None:
                self._write_via_pin("delete", key, kb)
                return
            raise self._fail(ret, "delete", key)

    # ``m[k] = v`` and ``del m[k]`` are update() and delete() themselves (no extra frame).
    if TYPE_CHECKING:
        def __setitem__(self, key: Any, value: Any) -> None: ...
        def __delitem__(self, key: Any) -> None: ...
    else:
        __setitem__ = update
        __delitem__ = delete

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass that overrides lookup/update/delete gets the dict spellings that call its own
        methods (Map's are those methods' hot paths, inlined or aliased)."""
        super().__init_subclass__(**kwargs)
        for op, dunder in (("lookup", "__getitem__"), ("update", "__setitem__"), ("delete", "__delitem__")):
            if getattr(cls, op) is not getattr(Map, op) and getattr(cls, dunder) is getattr(Map, dunder):
                setattr(cls, dunder, getattr(DictProtocol, dunder))

    def lookup_and_delete(self, key: Any) -> Any:
        """Remove ``key`` and return its value atomically (hash types on Linux 5.14+)."""
        if self._h.closed:
            raise self._h.closed_error("lookup_and_delete")
        self._check_writable("lookup_and_delete")
        kb = self._encode_key(key)
        buf = self._vtype()
        ret = _maps.map_lookup_and_delete_elem(self._h, kb, buf)
        if ret:
            raise self._fail(ret, "lookup_and_delete", key)
        return self._decode_value(buf)


    # ------------------------------------------------------------------ dict protocol






    def __len__(self) -> int:
        """Entries now in the map (a full walk: O(n) syscalls/batches)."""
        return sum(n for _, _, n in self.raw_chunks(values=False))


    # keys()/values()/items() decode a whole kernel batch at once (codec.decode_many) and hand
    # out its elements through C-level iterators (chain, zip): no Python frame runs per element.
    # They stay lazy: the next batch is read only when the previous one is used up.
    def keys(self) -> Iterator[Any]:
        """Lazy keys; never raises or loops when entries are deleted meanwhile."""
        kdm = self._kcodec.decode_many
        return chain.from_iterable(kdm(kb, n) for kb, _, n in self.raw_chunks(values=False))

    def values(self) -> Iterator[Any]:
        vdm = _lazy_decoder(self._vcodec)
        return chain.from_iterable(vdm(vb, n) for _, vb, n in self.raw_chunks(values=True))

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Lazy ``(key, value)`` pairs, read in kernel batches where the type supports them."""
        kdm, vdm = _lazy_decoder(self._kcodec), _lazy_decoder(self._vcodec)
        return chain.from_iterable(zip(kdm(kb, n), vdm(vb, n)) for kb, vb, n in self.raw_chunks(values=True))


    def clear(self) -> int:
        """Delete every entry; returns how many were deleted."""
        self._check_writable("clear")
        if not self.can_delete:
            raise NotSupported(f"{type_name(self._spec.type)} maps do not support deleting elements", op="clear")
        n = 0
        while True:
            keys = [kb for kb, _ in self.raw_pairs(values=False)]
            if not keys:
                return n
            n += self._delete_raw_keys(keys)

    # ------------------------------------------------------------------ iteration machinery
    def raw_chunks(self, values: bool = True, batch_size: int = ITER_BATCH) -> Iterator[tuple[bytes, bytes, int]]:
        """The whole map as packed ``(keys, values, count)`` chunks: kernel batches where the
        kernel has them for the type, else the get_next_key walk grouped into chunks (``values``
        empty when not ``values``).

        Part of the small API that layers over a map (resize, extensible maps) build on.
        """
        batch_size_arg(batch_size, "raw_chunks")
        if self._batch_ok is not False:
            it = self._iter_batches_raw(batch_size, delete=False)
            try:
                first = next(it)
            except StopIteration:
                return
            except _BatchUnsupported:
                self._batch_ok = False
            else:
                yield first
                yield from it
                return
        keys: list[bytes] = []
        vals: list[bytes] = []
        # Small chunks: the walk costs two syscalls per element anyway, and a small chunk keeps
        # what a consumer sees close to the kernel's current state. The walk lists every index of
        # a type whose slots may be empty: only a lookup tells the occupied ones.
        kind = map_type_of(self._spec.type)
        lookups = values or (kind is not None and kind.has_empty_slots)
        for kb, vb in self._iter_next_key(lookups):
            keys.append(kb)
            vals.append(vb if values else b"")
            if len(keys) == _WALK_CHUNK:
                yield b"".join(keys), b"".join(vals), len(keys)
                keys.clear()
                vals.clear()
        if keys:
            yield b"".join(keys), b"".join(vals), len(keys)

    def raw_pairs(self, values: bool = True) -> Iterator[tuple[bytes, bytes]]:
        """``(key bytes, value bytes)`` pairs of the whole map, no codecs (``b""`` values when not ``values``).

        Part of the small API that layers over a map (extensible maps, resize) build on: lazy,
        bounded, safe under concurrent deletes, and :class:`MapClosed` once the map is closed.
        """
        ks, vs = self._ksize, self._vsize
        for keys, vals, count in self.raw_chunks(values):
            for i in range(count):
                yield keys[i * ks : (i + 1) * ks], (vals[i * vs : (i + 1) * vs] if values else b"")

    def _iter_next_key(self, values: bool) -> Iterator[tuple[bytes, bytes]]:
        """get_next_key walk, bounded and duplicate-free.

        When the current key is deleted meanwhile, the kernel's hash maps answer
        get_next_key with the *first* key (htab_map_get_next_key), so a naive walk
        starts over and, under steady deletes, never reaches the keys at the end.
        A restart is recognised (the answer is a key already seen and equals the
        map's first key) and the walk resumes from the most recent yielded key that
        still exists. ``seen`` keeps us from yielding twice and the step bound (as
        cilium/ebpf bounds its iterator) guarantees termination under any churn.
        """
        h = self._h
        ks = self._ksize
        nxt = self._ktype()
        first = self._ktype()
        vbuf = self._vtype()
        seen: set[bytes] = set()
        trail: list[bytes] = []  # yielded keys in walk order: where to resume after a restart
        cur: bytes | None = None
        limit = 4 * max(self._spec.max_entries, 1) + 64
        for _ in range(limit):
            out: tuple[bytes, bytes] | None = None
            # Each step is in flight on the handle; between steps (while the consumer holds a
            # yielded pair) the map may be closed, and the next step raises MapClosed.
            fd = h.enter("get_next_key")
            try:
                ret = _get_next_key(fd, cur, nxt)
                if ret == _ENOENT:
                    return
                if ret:
                    raise self._fail(ret, "get_next_key")
                kb = nxt.raw[:ks]
                if kb in seen:
                    if cur is not None and _get_next_key(fd, None, first) == 0 and first.raw[:ks] == kb:
                        # ``cur`` vanished and the kernel started over: resume from the latest
                        # yielded key still present (deleted ones are dropped from the trail).
                        while trail and _lookup(fd, trail[-1], vbuf) == _ENOENT:
                            trail.pop()
                        if trail and trail[-1] != cur:
                            cur = trail[-1]
                            continue
                    cur = kb
                    continue
                cur = kb
                seen.add(kb)
                trail.append(kb)
                if values:
                    r = _lookup(fd, kb, vbuf)
                    if r == _ENOENT:
                        continue  # deleted between get_next_key and lookup
                    if r:
                        raise self._fail(r, "lookup", kb)
                    out = kb, vbuf.raw[: self._vsize]
                else:
                    out = kb, b""
            finally:
                h.leave()
            yield out

    def _iter_batches_raw(self, batch_size: int, delete: bool) -> Iterator[tuple[bytes, bytes, int]]:
        """Kernel batch lookup (or lookup-and-delete), yielding ``(keys, values, count)`` chunks as bytes."""
        ks, vs = self._ksize, self._vsize
        string_at = ctypes.string_at
        for kbuf, vbuf, got in self._kernel_batches(batch_size, delete):
            # One copy of just the filled part (kbuf.raw[:x] would copy the whole buffer first).
            yield string_at(kbuf, got * ks), string_at(vbuf, got * vs), got

    def _kernel_batches(self, batch_size: int, delete: bool) -> Iterator[tuple[Any, Any, int]]:
        """Kernel batch lookup (or lookup-and-delete): ``(key buffer, value buffer, count)`` per
        non-empty batch. The two ctypes buffers are reused: their first ``count`` elements are
        valid only until the next step.

        The batch cursor moves monotonically through buckets (or indices), so the walk
        terminates and never restarts when entries are deleted meanwhile. ENOSPC
        (one hash bucket larger than the batch) is cured by growing the batch.
        """
        h = self._h
        op = "lookup_and_delete_batch" if delete else "lookup_batch"
        ks, vs = self._ksize, self._vsize
        # The kernel never hands back more elements than the map holds: a larger batch would only be
        # allocated (batch_size x (key + value) bytes) and never filled.
        n = min(batch_size_arg(batch_size, op), max(self._spec.max_entries, 1))
        cursor_size = max(ks, 8)
        cur_in = (ctypes.c_char * cursor_size)()
        cur_out = (ctypes.c_char * cursor_size)()
        kbuf = (ctypes.c_char * (ks * n))()
        vbuf = (ctypes.c_char * (vs * n))()
        first = True
        while True:
            # In flight per batch: the map may be closed between two chunks.
            ret, got = _maps.map_lookup_batch(h, None if first else cur_in, cur_out, kbuf, vbuf, n, delete=delete)
            if ret == 0 or ret == _ENOENT:
                if got:
                    yield kbuf, vbuf, got
                if ret == _ENOENT:
                    return
                ctypes.memmove(cur_in, cur_out, cursor_size)
                first = False
                continue
            if ret == -E.ENOSPC and got == 0:
                n *= 2  # one hash bucket holds more than n elements (the kernel's word for it, even past the cap)
                kbuf = (ctypes.c_char * (ks * n))()
                vbuf = (ctypes.c_char * (vs * n))()
                continue
            if first and ret in (-E.EINVAL, -E.EOPNOTSUPP, -errors.ENOTSUPP) and self._batch_ok is None:
                raise _BatchUnsupported()
            raise self._fail(ret, op)

    # ------------------------------------------------------------------ batches
    def iter_batches(self, batch_size: int = DEFAULT_BATCH, *, delete: bool = False) -> Iterator[list[tuple[Any, Any]]]:
        """Lazy chunks of decoded ``(key, value)`` pairs straight from kernel batch ops."""
        kdm, vdm = self._kcodec.decode_many, self._vcodec.decode_many
        for keys, vals, count in self.iter_batches_raw(batch_size, delete=delete):
            yield list(zip(kdm(keys, count), vdm(vals, count)))

    def iter_batches_raw(self, batch_size: int = DEFAULT_BATCH, *, delete: bool = False) -> Iterator[tuple[bytes, bytes, int]]:
        """Lazy ``(keys, values, count)`` with packed bytes, for numpy or struct consumers.

        :class:`NotSupported` when the kernel has no batch operations for the type.
        """
        op = "lookup_and_delete_batch" if delete else "lookup_batch"
        self._require_batch(op)
        try:
            yield from self._iter_batches_raw(batch_size, delete)
        except _BatchUnsupported:
            self._batch_ok = False
            self._require_batch(op)

    def _require_batch(self, op: str) -> None:
        if self._batch_ok is False:
            raise NotSupported(f"{op}: {type_name(self._spec.type)} maps have no kernel batch operations", op=op)

    def lookup_batch(self, keys: Iterable[Any] | None = None, *, batch_size: int = DEFAULT_BATCH) -> dict[Any, Any]:
        """All entries (``keys=None``) read with kernel batch ops, or the values of ``keys``.

        The kernel has no keyed batch lookup, so with ``keys`` each one is looked up
        and absent keys are left out of the result.
        """
        batch_size_arg(batch_size, "lookup_batch")
        if keys is not None:
            out: dict[Any, Any] = {}
            for k in as_items(keys, "key"):
                v = self.lookup(k)
                if v is not None:
                    out[k] = v
            return out
        if self._batch_ok is False:
            return dict(self.items())
        kdm, vdm = self._kcodec.decode_many, self._vcodec.decode_many
        result: dict[Any, Any] = {}
        try:
            for kb, vb, count in self._iter_batches_raw(batch_size, delete=False):
                result.update(zip(kdm(kb, count), vdm(vb, count)))
        except _BatchUnsupported:
            self._batch_ok = False
            return dict(self.items())
        self._batch_ok = True
        return result

    def to_numpy(self, *, batch_size: int = ITER_BATCH) -> Any:
        """The whole map as one numpy structured array with fields ``key`` and ``value`` (needs numpy).

        The field types come from the codecs (:meth:`~ebpfmaps.codecs.Codec.numpy_spec`): numbers
        for scalar struct and ctypes-scalar codecs, the layout of a ctypes ``Structure``, raw
        ``V<size>`` bytes otherwise, and per-CPU values as one slot per possible CPU. The map is
        read in kernel batches (the get_next_key walk where there are none) straight into the
        array: no Python object is made per element.
        """
        np, dtype = self._numpy_dtype("to_numpy")
        # Room for the whole map up front (capped): pages numpy never writes are never committed, and
        # growing by copies would cost more than the batches themselves.
        out = np.empty(min(max(self._spec.max_entries, 1), max(_NUMPY_PREALLOC // dtype.itemsize, 1 << 10)), dtype)
        filled = 0
        chunks: Iterable[tuple[Any, Any, int]]
        if self._batch_ok is not False:
            chunks = self._kernel_batches(batch_size, delete=False)  # copied straight out of the kernel's buffers
        else:
            chunks = self.raw_chunks(values=bool(self._vsize), batch_size=batch_size)
        try:
            for kb, vb, count in chunks:
                if filled + count > len(out):
                    out = np.resize(out, max(2 * len(out), filled + count))
                self._fill_rows(np, out[filled:filled + count], kb, vb, count)
                filled += count
        except _BatchUnsupported:
            self._batch_ok = False
            return self.to_numpy(batch_size=batch_size)
        return out[:filled].copy() if filled < len(out) // 2 else out[:filled]

    def iter_numpy(self, *, batch_size: int = ITER_BATCH) -> Iterator[Any]:
        """The map as a stream of numpy structured arrays (the dtype :meth:`to_numpy` gives), one per
        kernel batch of at most ``batch_size`` entries (the get_next_key walk's chunks where the type
        has no batches): memory stays bounded however large the map is."""
        batch_size_arg(batch_size, "iter_numpy")  # checked now, not at the first next()
        np, dtype = self._numpy_dtype("iter_numpy")
        return self._numpy_batches(np, dtype, batch_size)

    def _numpy_batches(self, np: Any, dtype: Any, batch_size: int) -> Iterator[Any]:
        for kb, vb, count in self.raw_chunks(values=bool(self._vsize), batch_size=batch_size):
            part = np.empty(count, dtype)
            self._fill_rows(np, part, kb, vb, count)
            yield part

    def _fill_rows(self, np: Any, rows: Any, keys: Any, values: Any, count: int) -> None:
        """Copy ``count`` packed keys and values into the structured array ``rows`` (fields key, value)."""
        rows["key"] = np.frombuffer(keys, rows.dtype["key"], count)
        if self._vsize:
            rows["value"] = np.frombuffer(values, rows.dtype["value"], count)

    def _numpy_dtype(self, op: str) -> tuple[Any, Any]:
        """numpy and the structured dtype of this map's elements: fields ``key`` and ``value``."""
        try:
            # Imported on first use: numpy is an optional dependency (the [numpy] extra).
            import numpy as np
        except ImportError as exc:  # pragma: no cover - numpy is in the [numpy]/[dev] extras
            raise NotSupported(f"{op} needs numpy (pip install 'ebpfmaps[numpy]')", op=op) from exc
        fields = [("key", _numpy_field(np, self._kcodec, self._ksize))]
        if self._vsize:
            fields.append(("value", _numpy_field(np, self._vcodec, self._vsize)))
        return np, np.dtype(fields)

    def lookup_many(self, keys: Iterable[Any]) -> list[Any]:
        """The values of ``keys``, in order, ``None`` for an absent key: one lookup syscall per key.

        The kernel has no keyed batch lookup, so this is the bulk form of :meth:`lookup`: the keys
        are encoded together (``encode_many``), the syscalls made by a C-level ``map()`` into one
        shared value buffer, and the values decoded together (``decode_many``), so no Python code
        runs per key.
        """
        items = as_items(keys, "key")
        kb, n = self._kcodec.encode_many(items)
        kb = _check_packed(kb, n, self._ksize, "key")
        self.check_packed_keys(kb, n)
        if n == 0:
            return []
        ks, vs = self._ksize, self._vsize
        vbuf = (ctypes.c_char * max(vs * n, 1))()
        # One pointer per slot of the shared buffer (each exactly value_size bytes: what the kernel writes).
        slots = [ctypes.byref(vbuf, i * vs) for i in range(n)] if vs else [vbuf] * n
        split = split_packed(kb, ks, n)
        with self._h.pinned("lookup") as fd:
            rets = list(map(_lookup, repeat(fd, n), split, slots))
        found = rets.count(0)
        if found + rets.count(_ENOENT) != n:
            for i, r in enumerate(rets):  # only on a refusal: find which key
                if r and r != _ENOENT:
                    raise self._fail(r, "lookup_many", items[i])
        values = self._vcodec.decode_many(ctypes.string_at(vbuf, vs * n), n)
        if found == n:
            return values
        return [v if r == 0 else None for v, r in zip(values, rets)]

    def update_many(self, keys: Iterable[Any], values: Iterable[Any], flags: int = BPF_ANY) -> int:
        """Write many entries with one update syscall each; returns how many were written.

        The bulk form of :meth:`update` for maps without a kernel batch (and for per-element
        flags): keys and values are encoded together and the syscalls made by a C-level
        ``map()``, which stops at the first refusal. ``BPF_NOEXIST``/``BPF_EXIST`` failures undo
        what the call wrote (as :meth:`update_batch`); with ``BPF_ANY`` the elements before the
        refused one stay written and :class:`BatchError` says how many.
        """
        flags = element_flags(flags, "update_many")
        self._check_update_flags(flags, "update_many")
        self._check_writable("update_many")
        kb, nk = self._kcodec.encode_many(keys)
        vb, nv = self._vcodec.encode_many(values)
        if nk != nv:
            raise InvalidArgument(f"update_many: {nk} keys but {nv} values", op="update_many")
        kb = _check_packed(kb, nk, self._ksize, "key")
        vb = _check_packed(vb, nv, self._vsize, "value")
        self.check_packed_keys(kb, nk)
        if nk == 0:
            return 0
        if flags & (BPF_NOEXIST | BPF_EXIST):
            return self._update_each_undoable(kb, vb, nk, flags)
        return self._update_each(kb, vb, nk, flags, "update_many")

    def lookup_and_delete_batch(self, *, batch_size: int = DEFAULT_BATCH) -> dict[Any, Any]:
        """Drain the map: every entry is returned and removed, in kernel batches."""
        self._check_writable("lookup_and_delete_batch")
        if not self.can_delete:
            raise NotSupported(f"{type_name(self._spec.type)} maps do not support deleting elements",
                               op="lookup_and_delete_batch")
        kdm, vdm = self._kcodec.decode_many, self._vcodec.decode_many
        result: dict[Any, Any] = {}
        try:
            for kb, vb, count in self._iter_batches_raw(batch_size, delete=True):
                result.update(zip(kdm(kb, count), vdm(vb, count)))
        except _BatchUnsupported:
            raise NotSupported(f"{type_name(self._spec.type)} maps have no kernel lookup_and_delete_batch",
                               op="lookup_and_delete_batch") from None
        return result

    def update_batch(self, keys: Iterable[Any], values: Iterable[Any], flags: int = BPF_ANY) -> int:
        """Write many entries in one syscall per chunk; returns how many were written.

        ``keys``/``values`` are sequences of what the codecs accept, or packed
        bytes-like buffers. ``BPF_NOEXIST``/``BPF_EXIST`` are applied element by
        element (the kernel's batch update accepts only ``BPF_F_LOCK``), and a failure
        part way undoes what this call changed, so the map is left as it was; with
        ``BPF_ANY`` the kernel has already written a prefix, and :class:`BatchError`
        says how many. ``flags`` None means ``BPF_ANY``, as in :meth:`update`.
        """
        flags = element_flags(flags, "update_batch")
        self._check_update_flags(flags, "update_batch")
        self._check_writable("update_batch")
        kb, nk = self._kcodec.encode_many(keys)
        vb, nv = self._vcodec.encode_many(values)
        if nk != nv:
            raise InvalidArgument(f"update_batch: {nk} keys but {nv} values", op="update_batch")
        kb = _check_packed(kb, nk, self._ksize, "key")  # the kernel reads count x size bytes of each
        vb = _check_packed(vb, nv, self._vsize, "value")
        self.check_packed_keys(kb, nk)
        if nk == 0:
            return 0
        if flags & (BPF_NOEXIST | BPF_EXIST):
            # generic_map_update_batch refuses any elem_flags bit but BPF_F_LOCK with EINVAL
            # (measured on 6.18), leaving ``count`` as we passed it.
            return self._update_each_undoable(kb, vb, nk, flags)
        ret, left = _maps.map_update_batch(self._h, kb, vb, nk, elem_flags=flags)
        for _ in range(_PIN_RETRIES):
            # A frozen map refuses the whole batch (EPERM, nothing written): a resize may have moved the pin.
            if ret != _EPERM or self._pin_path is None or left not in (0, nk) or not self._follow_pin("update_batch"):
                break
            ret, left = _maps.map_update_batch(self._h, kb, vb, nk, elem_flags=flags)
        if ret == 0:
            return nk
        # The kernel writes back how many elements it processed; an early refusal leaves our own
        # count untouched, which must not be read as "all done".
        done = left if left < nk else 0
        if ret in (-E.EINVAL, -E.EOPNOTSUPP, -errors.ENOTSUPP) and done == 0 and self._batch_ok is not True:
            if self._batch_ok is False or not self._probe_update_batch():
                return self._update_each(kb, vb, nk, flags)
        cause = self._fail(ret, "update_batch")
        if done:
            raise errors.BatchError(f"update_batch stopped at element {done} of {nk}: {cause}", done=done, cause=cause)
        raise cause

    def _update_each_undoable(self, kb: bytes, vb: bytes, n: int, flags: int) -> int:
        """Element-wise update with ``flags``; on a failure, restore what this call changed, then raise.

        With BPF_EXIST each element's previous value is read first and kept restorable: for types
        whose lookup answers something other than what an update takes (an inner map's id where
        its fd is written...), :meth:`_restorable_value` holds the object it names open until the
        batch is done, so the undo writes back that very object.
        """
        ks, vs = self._ksize, self._vsize
        h = self._h
        held: list[FD] = []  # objects the previous values name, kept alive for the undo
        with h.pinned("update_batch"):  # the whole undoable run on one map
            old = self._vtype()
            undo: list[tuple[bytes, bytes | None]] = []  # (key, previous value or None when it was absent)
            try:
                for i in range(n):
                    key = kb[i * ks : (i + 1) * ks]
                    previous: bytes | None = None
                    try:
                        if flags & BPF_EXIST:
                            r = _maps.map_lookup_elem(h, key, old, "update_batch")
                            if r == 0:
                                previous = self._restorable_value(old.raw[:vs], held)
                            elif r != _ENOENT:
                                raise self._fail(r, "lookup", key)
                        ret = _maps.map_update_elem(h, key, vb[i * vs : (i + 1) * vs], flags, "update_batch")
                        if ret:
                            raise self._fail(ret, "update_batch", key)
                    except errors.MapError as cause:
                        for done_key, value in reversed(undo):
                            if value is None:
                                _maps.map_delete_elem(h, done_key, "update_batch")
                            else:
                                _maps.map_update_elem(h, done_key, value, BPF_EXIST, "update_batch")
                        if undo:
                            cause.message += f" (element {i} of {n}; the {len(undo)} written before it were undone)"
                        raise
                    undo.append((key, previous))
                return n
            finally:
                for obj in held:
                    obj.close()

    def _restorable_value(self, previous: bytes, held: list[FD]) -> bytes:
        """The bytes an update takes to put back ``previous``, a value as a lookup returned it.

        The same bytes for plain values. Types that store objects (maps of maps, programs in
        devmaps and cpumaps) read back an id where an update takes an fd: they open the object by
        its id, append the handle to ``held`` (kept open until the batch is done) and give its fd.
        """
        return previous

    def _probe_update_batch(self) -> bool:
        return False

    def _update_each(self, kb: bytes, vb: bytes, n: int, flags: int, op: str = "update_batch") -> int:
        """One update syscall per element, made by a C-level ``map()`` that stops at the first refusal
        (``dropwhile``); where it stopped is read back from the keys' list iterator."""
        split_k = iter(split_packed(kb, self._ksize, n))
        split_v = split_packed(vb, self._vsize, n)
        with self._h.pinned(op) as fd:
            ret = next(dropwhile(not_, map(_update, repeat(fd, n), split_k, split_v, repeat(_u64(flags), n))), 0)
        if ret:
            i = n - length_hint(split_k) - 1
            cause = self._fail(ret, op)
            if i == 0:  # nothing written: the error itself, as the kernel's batch path gives it
                raise cause
            raise errors.BatchError(f"{op} stopped at element {i} of {n}: {cause}", done=i, cause=cause)
        return n

    def check_packed_keys(self, keys: bytes, count: int) -> None:
        """Check ``count`` packed keys before a batch write (arrays check indices); raises the library's error.

        Layers that write packed keys themselves (extensible maps) call it before touching the map.
        """

    def delete_batch(self, keys: Iterable[Any]) -> int:
        """Delete many keys; keys already absent are skipped. Returns how many were deleted."""
        self._check_writable("delete_batch")
        if not self.can_delete:
            raise NotSupported(f"{type_name(self._spec.type)} maps do not support deleting elements", op="delete_batch")
        kb, n = self._kcodec.encode_many(keys)
        ks = self._ksize
        kb = _check_packed(kb, n, ks, "key")
        return self._delete_raw_keys([kb[i * ks : (i + 1) * ks] for i in range(n)])

    def _delete_raw_keys(self, keys: list[bytes]) -> int:
        deleted = 0
        h = self._h
        with h.pinned("delete_batch") as fd:
            start = 0
            n = len(keys)
            use_batch = self._batch_ok is not False
            while start < n:
                if use_batch:
                    chunk = b"".join(keys[start:])
                    ret, done = _maps.map_delete_batch(h, chunk, n - start)
                    if ret and done >= n - start:
                        # A refusal before any element (no batch op for the type: ENOTSUPP) leaves the
                        # count as passed; a real stop never counts the element it stopped at.
                        done = 0
                    deleted += done
                    if ret == 0:
                        return deleted
                    if ret == _ENOENT:
                        start += done + 1  # skip the absent key and go on
                        continue
                    if ret in (-E.EINVAL, -E.EOPNOTSUPP, -errors.ENOTSUPP) and done == 0:
                        use_batch = False
                        continue
                    raise self._fail(ret, "delete_batch")
                ret = _delete(fd, keys[start])
                if ret == 0:
                    deleted += 1
                elif ret != _ENOENT:
                    raise self._fail(ret, "delete")
                start += 1
            return deleted


def _numpy_field(np: Any, codec: Codec, size: int) -> Any:
    """The numpy dtype of one key or value: the codec's own, or raw bytes when numpy disagrees on its size."""
    try:
        dt = np.dtype(codec.numpy_spec())
    except (TypeError, ValueError, NotImplementedError):
        dt = None
    if dt is None or dt.itemsize != size:
        dt = np.dtype(f"V{size}")
    return dt


def _lazy_decoder(codec: Codec) -> Callable[[bytes, int], Iterable[Any]]:
    """The codec's batch decoder for walks: BTF records made one by one as they are used (a record that is
    dropped at once never reaches the older garbage-collector generations), else ``decode_many``."""
    btf_codec = loaded(_BTF_CODEC_MODULE)
    if btf_codec is not None and isinstance(codec, btf_codec.BtfCodec):
        return codec.iter_many  # type: ignore[no-any-return]
    return codec.decode_many


def _struct_packer(codec: Codec) -> Callable[[Any], bytes] | None:
    """``struct.Struct.pack`` of a one-field struct codec used as it is (not subclassed), else None."""
    if type(codec) is StructCodec and codec.scalar:
        return codec.struct.pack
    return None


def _raw_codecs(key: Codec, value: Codec) -> bool:
    """Whether both are plain bytes (or a key is an index): BTF has nothing to describe, and is not loaded."""
    return type(key) in (Codec, IndexCodec) and type(value) is Codec


def _trusted_codec(codec: Codec) -> bool:
    """Whether ``codec``'s encode is known to return bytes of exactly ``codec.size``.

    True for the library's own codec classes used as they are; a user's subclass may
    override encode, so its output is checked before it reaches the kernel.
    """
    kind = type(codec)
    return kind in (Codec, StructCodec, CtypesCodec, PerCpuCodec, IndexCodec) or _is_btf_codec_class(kind)


def _is_btf_codec_class(kind: type) -> bool:
    """Whether ``kind`` is BTF's record codec itself (not a subclass). Asked without importing BTF: until
    something loads it, no codec can be one."""
    btf_codec = loaded(_BTF_CODEC_MODULE)
    return btf_codec is not None and kind is btf_codec.BtfCodec


def _check_packed(data: Any, count: int, size: int, role: str) -> bytes:
    """A codec's encode_many output as bytes of exactly ``count`` items of ``size`` bytes (a user
    codec could return less, and the kernel would read past the end of the buffer)."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes) or len(data) != count * size:
        got = f"{len(data)} bytes" if isinstance(data, (bytes, bytearray, memoryview)) else type(data).__name__
        cls = errors.InvalidKeySize if role == "key" else errors.InvalidValueSize
        raise cls(f"the {role} codec's encode_many gave {got} for {count} {role}s of {size} bytes", op="encode")
    return data


def _checked_bytes(data: Any, size: int, role: str) -> bytes:
    """A codec's output as bytes of exactly ``size`` (the kernel reads that many), else an error."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if type(data) is not bytes and not isinstance(data, bytes):
        raise InvalidArgument(f"the {role} codec returned {type(data).__name__}, not bytes", op="encode")
    if len(data) != size:
        cls = errors.InvalidKeySize if role == "key" else errors.InvalidValueSize
        raise cls(f"the {role} codec returned {len(data)} bytes, the map's {role}_size is {size}", op="encode")
    return bytes(data)


class _BatchUnsupported(Exception):
    """Internal: the kernel has no batch ops for this map type."""


# The libbpf function behind each operation name the map methods report.
_OP_CALLS = {
    "lookup": "bpf_map_lookup_elem", "update": "bpf_map_update_elem", "delete": "bpf_map_delete_elem",
    "lookup_and_delete": "bpf_map_lookup_and_delete_elem", "get_next_key": "bpf_map_get_next_key",
    "push": "bpf_map_update_elem", "pop": "bpf_map_lookup_and_delete_elem", "peek": "bpf_map_lookup_elem",
    "lookup_batch": "bpf_map_lookup_batch", "lookup_and_delete_batch": "bpf_map_lookup_and_delete_batch",
    "update_batch": "bpf_map_update_batch", "delete_batch": "bpf_map_delete_batch",
}

# Operations that need a readable fd (the kernel checks FMODE_CAN_READ).
_READ_OPS = frozenset({"lookup", "lookup_batch", "get_next_key", "lookup_and_delete", "lookup_and_delete_batch",
                       "peek", "pop"})

# Creation flags that cannot be combined (include/linux/bpf.h, bpf_map_flags_access_ok).
_EXCLUSIVE_FLAGS = (
    (BPF_F_RDONLY | BPF_F_WRONLY, "BPF_F_RDONLY and BPF_F_WRONLY"),
    (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG, "BPF_F_RDONLY_PROG and BPF_F_WRONLY_PROG"),
)
