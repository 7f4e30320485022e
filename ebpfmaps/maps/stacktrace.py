"""STACK_TRACE maps: stacks recorded by programs with bpf_get_stackid, read here by id.

Key: the u32 stack id the helper returned. Value: ``depth`` u64 instruction
pointers, zero-padded after the last frame (or, with BPF_F_STACK_BUILD_ID,
``depth`` 32-byte ``struct bpf_stack_build_id`` frames). The kernel fills the map
only from programs: syscall updates are refused (EINVAL, measured on 6.18), so
:meth:`StackTraceMap.update` raises NotSupported before trying. Lookups,
deletes and iteration work. Kernel addresses resolve through /proc/kallsyms
(:mod:`ebpfmaps.ksyms`), user addresses through a process's mappings and ELF symbols
(:mod:`ebpfmaps.elfsyms`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from ebpfmaps._lazy import lazy_module
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.codecs import Codec, StructCodec
from ebpfmaps.errors import InvalidArgument, InvalidValueSize, KeyNotFound, NotSupported
from ebpfmaps.map import Map, map_class, require_ints
from ebpfmaps.maptypes import BPF_ANY, BPF_F_NUMA_NODE, BPF_F_RDONLY, BPF_F_STACK_BUILD_ID, BPF_F_WRONLY, MapType
from ebpfmaps.spec import MapSpec

if TYPE_CHECKING:
    from ebpfmaps import elfsyms, ksyms
else:
    # Symbol tables load when a stack is first symbolized.
    elfsyms = lazy_module("ebpfmaps.elfsyms")
    ksyms = lazy_module("ebpfmaps.ksyms")

# kernel/bpf/stackmap.c, STACK_CREATE_FLAG_MASK.
STACK_TRACE_FLAGS = BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_STACK_BUILD_ID
IP_SIZE = 8
BUILD_ID_FRAME_SIZE = 32  # struct bpf_stack_build_id: s32 status, u8 build_id[20], u64 offset/ip
BUILD_ID_SIZE = 20
_FRAME = struct.Struct("=i20sQ")
_PERF_MAX_STACK = "/proc/sys/kernel/perf_event_max_stack"
# Kernel addresses live in the upper half of the 64-bit address space (x86_64, arm64, riscv64...).
KERNEL_HALF = 1 << 63


def max_stack_depth() -> int:
    """The kernel's limit on frames per stack (kernel.perf_event_max_stack, 127 by default)."""
    try:
        with open(_PERF_MAX_STACK) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 127


class BuildIdFrame(NamedTuple):
    """One frame of a build-id stack: ``status`` 1 (valid: build_id + file offset) or 2 (ip only)."""

    status: int
    build_id: bytes
    offset_or_ip: int

    @property
    def valid(self) -> bool:
        return self.status == 1


class StackCodec(Codec):
    """A stack value: decodes to the frames up to the first empty one (a tuple of ints or BuildIdFrames)."""

    def __init__(self, size: int, *, build_id: bool = False) -> None:
        super().__init__(size, "value")
        self.build_id = build_id

    def encode(self, value: Any) -> bytes:
        raise NotSupported("stack trace maps are written by programs (bpf_get_stackid), not by syscalls",
                           op="update")

    def decode(self, data: bytes) -> tuple[Any, ...]:
        if self.build_id:
            frames = []
            for off in range(0, self.size, BUILD_ID_FRAME_SIZE):
                status, bid, rest = _FRAME.unpack_from(data, off)
                if status == 0:  # BPF_STACK_BUILD_ID_EMPTY ends the stack
                    break
                frames.append(BuildIdFrame(status, bid, rest))
            return tuple(frames)
        ips = struct.unpack_from(f"={self.size // IP_SIZE}Q", data)
        n = len(ips)
        while n and not ips[n - 1]:
            n -= 1
        return tuple(ips[:n])

    def decode_many(self, data: bytes | memoryview, count: int) -> list[Any]:
        s = self.size
        return [self.decode(bytes(data[i * s : (i + 1) * s])) for i in range(count)]


@map_class
class StackTraceMap(Map):
    """BPF_MAP_TYPE_STACK_TRACE: ``m[stack_id]`` → addresses; :meth:`symbols` resolves them.

    ``depth`` frames per stack (default: the kernel's perf_event_max_stack);
    ``build_id=True`` records (build id, offset) frames for user stacks.
    """

    map_type = MapType.STACK_TRACE
    allowed_flags: ClassVar[int] = STACK_TRACE_FLAGS
    kernel_batch: ClassVar[bool | None] = False  # stackmap.c has no batch operations
    fixed_key_size: ClassVar[int | None] = 4
    default_key_type: ClassVar[Any] = "=I"

    def __init__(self, key_size: int | None = None, value_size: int | None = None, max_entries: int | None = None,
                 *, depth: int | None = None, build_id: bool = False, flags: int = 0, value_type: Any = None,
                 **kwargs: Any) -> None:
        require_ints("create", key_size=key_size, value_size=value_size, max_entries=max_entries, depth=depth,
                     flags=flags)
        if build_id:
            flags |= BPF_F_STACK_BUILD_ID
        frame = BUILD_ID_FRAME_SIZE if flags & BPF_F_STACK_BUILD_ID else IP_SIZE
        if depth is not None:
            if value_size is not None and value_size != depth * frame:
                raise InvalidValueSize(f"depth={depth} needs value_size {depth * frame}, not {value_size}",
                                       op="create")
            value_size = depth * frame
        elif value_size is None and value_type is None:
            value_size = max_stack_depth() * frame
        if value_type is None and value_size is not None:
            value_type = StackCodec(value_size, build_id=bool(flags & BPF_F_STACK_BUILD_ID))
        super().__init__(key_size, value_size, max_entries, flags=flags, value_type=value_type, **kwargs)

    @classmethod
    def _implicit_key_type(cls, key_size: int | None) -> Any:
        return "=I" if key_size in (None, 4) else None

    def prepare_spec(self, spec: MapSpec) -> MapSpec:
        frame = BUILD_ID_FRAME_SIZE if spec.flags & BPF_F_STACK_BUILD_ID else IP_SIZE
        if spec.key_size != 4:
            raise InvalidArgument(f"stack trace keys are u32 stack ids: key_size must be 4, not {spec.key_size}",
                                  op="create")
        if spec.value_size <= 0 or spec.value_size % frame:
            raise InvalidValueSize(f"stack trace values are whole frames of {frame} bytes, not {spec.value_size}",
                                   op="create")
        limit = max_stack_depth()
        if spec.value_size // frame > limit:
            raise InvalidValueSize(f"{spec.value_size // frame} frames exceed kernel.perf_event_max_stack ({limit})",
                                   op="create")
        return super().prepare_spec(spec)

    def _init_from_fd(self, fd: int | FD, spec: MapSpec, kcodec: Codec, vcodec: Codec, *, writable: bool) -> None:
        if type(kcodec) is Codec and spec.key_size == 4:
            kcodec = StructCodec("=I", "key")
        if type(vcodec) is Codec:
            vcodec = StackCodec(spec.value_size, build_id=bool(spec.flags & BPF_F_STACK_BUILD_ID))
        super()._init_from_fd(fd, spec, kcodec, vcodec, writable=writable)

    @property
    def depth(self) -> int:
        frame = BUILD_ID_FRAME_SIZE if self._spec.flags & BPF_F_STACK_BUILD_ID else IP_SIZE
        return self._spec.value_size // frame

    @property
    def build_id(self) -> bool:
        return bool(self._spec.flags & BPF_F_STACK_BUILD_ID)

    def update(self, key: Any, value: Any, flags: int = BPF_ANY) -> None:
        raise NotSupported("stack trace maps are filled by programs (bpf_get_stackid); the kernel refuses "
                           "syscall updates", op="update")

    def update_batch(self, keys: Iterable[Any], values: Iterable[Any], flags: int = BPF_ANY) -> int:
        self.update(None, None)
        return 0

    def trace(self, stack_id: int) -> tuple[Any, ...]:
        """The frames of ``stack_id`` (innermost first); raises :class:`KeyNotFound` when absent."""
        value = self.lookup(stack_id)
        if value is None:
            raise KeyNotFound(f"no stack with id {stack_id}", op="lookup")
        return tuple(value)

    def symbols(self, stack_id: int, pid: int | None = None) -> list[str]:
        """The frames of ``stack_id`` as ``symbol+0xoffset [module or binary]``, innermost first.

        Kernel frames resolve through /proc/kallsyms. User frames (a ``BPF_F_USER_STACK`` stack) resolve
        through the mappings of process ``pid`` (/proc/PID/maps) and the ELF symbol tables of the files
        mapped there, read once per build id; without ``pid`` they stay hex addresses. Frames of a
        ``build_id=True`` map resolve by build id among the binaries read so far (``pid``'s are read first).
        """
        if pid is not None and (isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0):
            raise InvalidArgument(f"pid must be a positive int, not {pid!r}", op="symbols")
        frames = self.trace(stack_id)
        if self.build_id:
            if pid is not None:
                elfsyms.load_process_binaries(pid)
            return [self._build_id_symbol(f, pid) for f in frames]
        kernel: ksyms.Kallsyms | None = None
        maps: list[elfsyms.Mapping] | None = None
        out = []
        for ip in frames:
            if ip >= KERNEL_HALF:
                kernel = kernel or ksyms.kallsyms()
                out.append(kernel.format(ip))
            elif pid is None:
                out.append(f"{ip:#x}")
            else:
                if maps is None:
                    maps = elfsyms.process_maps(pid)
                sym = elfsyms.resolve_user(pid, ip, maps)
                out.append(str(sym) if sym is not None else f"{ip:#x}")
        return out

    @staticmethod
    def _build_id_symbol(frame: BuildIdFrame, pid: int | None) -> str:
        if not frame.valid:  # the kernel could not read the build id: an address
            if pid is not None:
                sym = elfsyms.resolve_user(pid, frame.offset_or_ip)
                if sym is not None:
                    return str(sym)
            return f"{frame.offset_or_ip:#x}"
        table = elfsyms.by_build_id(frame.build_id)
        if table is None:
            return f"{frame.build_id.hex()}+{frame.offset_or_ip:#x}"
        found = table.lookup(table.offset_to_vaddr(frame.offset_or_ip))
        base = os.path.basename(table.path)
        if found is None:
            return f"{frame.offset_or_ip:#x} [{base}]"
        return f"{found[0]}+{found[1]:#x} [{base}]"

    def traces(self) -> dict[int, tuple[Any, ...]]:
        """Every stored stack, by id."""
        return dict(self.items())


__all__ = ["BuildIdFrame", "StackCodec", "StackTraceMap", "max_stack_depth"]
