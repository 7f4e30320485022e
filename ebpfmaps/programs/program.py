"""A loaded BPF program: load (with the verifier's log on refusal), run it with BPF_PROG_TEST_RUN, pin it, attach it."""

from __future__ import annotations

import ctypes
import errno as E
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ebpfmaps.programs.attach as attach_points
from ebpfmaps import errors, extension, pinning
from ebpfmaps._libbpf import new_opts, progs, structs
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.asm import Assembled, assemble, disassemble
from ebpfmaps.errors import InvalidArgument, MapClosed, ProgramLoadError
from ebpfmaps.fdinfo import read_fdinfo
from ebpfmaps.programs.sections import SectionTarget, parse_section
from ebpfmaps.programs.tracing import Link, attach_raw_tracepoint, attach_tracepoint
from ebpfmaps.programs.types import AttachType, ProgramType, parse_attach_type, parse_prog_type

__all__ = ["BPF_F_TEST_RUN_ON_CPU", "BPF_F_TEST_XDP_LIVE_FRAMES", "ProgInfo", "Program", "TestRun"]

# BPF_PROG_TEST_RUN flags (uapi linux/bpf.h).
BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1

# The verifier log buffer: large enough for most refusals at log_level 1 in one go, doubled on ENOSPC
# up to a cap well under the kernel's limit (UINT_MAX >> 2 since Linux 5.2, kernel/bpf/log.c).
LOG_SIZE_FIRST = 1 << 20
LOG_SIZE_MAX = 256 << 20
# The kernel caps a program at 1M instructions for privileged loaders (BPF_COMPLEXITY_LIMIT_INSNS).
MAX_INSNS = 1 << 20
# Room for output data beyond the input: XDP may grow a frame with bpf_xdp_adjust_tail by up to
# a page minus headroom, skb programs by bpf_skb_change_tail; the kernel never writes more than we say.
DATA_OUT_EXTRA = 4096
# ctx_out room: the biggest ctx test_run copies back is struct __sk_buff (192 bytes in Linux 6.x).
CTX_OUT_MIN = 256

# Types whose BPF_PROG_TEST_RUN refuses data, ctx_out, repeat and duration (net/bpf/test_run.c).
_NO_DATA_TYPES = frozenset({ProgramType.RAW_TRACEPOINT, ProgramType.TRACING, ProgramType.SYSCALL})
_PROG_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")


@dataclass(frozen=True)
class TestRun:
    """The result of :meth:`Program.test_run`.

    ``duration_ns`` is the kernel's average time per run (total / repeat). ``data_out`` is the
    packet as the program left it; ``ctx_out`` the context (e.g. ``struct __sk_buff``) after the run.
    """

    __test__ = False  # not a pytest test class despite its name

    retval: int
    duration_ns: int
    data_out: bytes | None = None
    ctx_out: bytes | None = None


@dataclass(frozen=True)
class ProgInfo:
    id: int
    type: int
    name: str
    tag: str
    xlated_prog_len: int
    jited_prog_len: int
    map_ids_count: int
    load_time_ns: int
    created_by_uid: int


def _validate_prog_name(name: str) -> bytes | None:
    if not name:
        return None
    if len(name) > 15 or set(name) - _PROG_NAME_CHARS:
        raise InvalidArgument(f"program name {name!r}: the kernel takes up to 15 characters of [A-Za-z0-9_.]",
                              op="prog_load")
    return name.encode()


def _check_map_refs(asm: Assembled) -> None:
    """Every map the code names by fd must still hold that fd.

    The fd number is baked into the instruction when it is made. A map closed since then
    leaves a number the kernel may already have given to another map (the program would
    silently use that one), and a resized map has moved to a new fd.
    """
    for insn in asm.insns:
        ref = insn.ref
        if ref is None or isinstance(ref, int):
            continue  # a raw fd: the caller keeps it open
        fd = ref.fd  # MapClosed when the map was closed
        if fd != insn.imm:
            raise InvalidArgument(f"the code refers to {ref!r} by fd {insn.imm}, but the map now has fd {fd} "
                                  "(resized or reopened since the instructions were made); build them again",
                                  op="prog_load")


def _code_of(insns: Any) -> tuple[bytes, tuple[Any, ...], str]:
    """(bytes, objects to keep alive, listing) from an Assembled, raw bytes or a list of instructions."""
    if isinstance(insns, (bytes, bytearray, memoryview)):
        code = bytes(insns)
        return code, (), disassemble(code)
    if not isinstance(insns, Assembled) and isinstance(insns, Iterable):
        insns = assemble(insns)
    if isinstance(insns, Assembled):
        _check_map_refs(insns)
        return insns.code, insns.refs, insns.disassemble()
    raise InvalidArgument(f"instructions must be ebpfmaps.asm instructions, an Assembled or bytes, not {insns!r}",
                          op="prog_load")


def _tail(log: str, lines: int) -> str:
    parts = log.rstrip("\n").splitlines()
    if len(parts) <= lines:
        return "\n".join(parts)
    return f"... ({len(parts) - lines} earlier lines in .log)\n" + "\n".join(parts[-lines:])


def announce_maps(h: FD, ptype: int) -> None:
    """Tell the extensions which maps a just-loaded program uses; if one refuses, unload it (close ``h``)."""
    try:
        extension.program_loaded(int(ptype), progs.prog_map_ids(h))
    except BaseException:
        h.close()
        raise


def prog_info(h: FD) -> ProgInfo:
    """What the kernel reports about the program behind ``h``."""
    info = progs.prog_info(h)
    return ProgInfo(
        id=info.id, type=info.type, name=info.name.decode(errors="replace"), tag=bytes(info.tag).hex(),
        xlated_prog_len=info.xlated_prog_len, jited_prog_len=info.jited_prog_len, map_ids_count=info.nr_map_ids,
        load_time_ns=info.load_time, created_by_uid=info.created_by_uid,
    )


class Program:
    """A BPF program loaded in the kernel, held by one fd. Close it (or use ``with``) to release it.

    Load one from instructions with :meth:`load`, get one from a :class:`~ebpfmaps.programs.BpfObject`,
    or open a pinned one with :meth:`open_pinned`.
    """

    def __init__(self, fd: int | FD, prog_type: ProgramType | int, name: str = "", *, refs: tuple[Any, ...] = (),
                 disassembly: str = "", verifier_log: str = "", section: str = "",
                 expected_attach_type: AttachType | int | None = None, attach_target: str = "") -> None:
        """Wrap ``fd`` (a number or an :class:`FD`), which this object now owns and will close."""
        # The FD is the only holder of the number: close() invalidates it for every user at once.
        self._h = fd if isinstance(fd, FD) else FD(fd, "program")
        try:
            self.type: ProgramType | int = ProgramType(prog_type)
        except ValueError:
            self.type = int(prog_type)
        self.name = name
        self.section = section
        self.disassembly = disassembly
        #: The verifier's log when loaded with ``log_level`` > 0, else "".
        self.verifier_log = verifier_log
        self._refs = refs  # maps the code names by fd: the kernel holds them, we keep the objects for the caller
        self._pin_path: str | None = None
        #: The attach type given at load (the default of attach calls that take one).
        self.expected_attach_type = expected_attach_type
        #: The kernel function (fentry/fexit) or LSM hook the load named, "" otherwise.
        self.attach_target = attach_target

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        prog_type: ProgramType | str | int,
        insns: Any,
        *,
        license: str = "GPL",
        name: str = "",
        expected_attach_type: AttachType | int | None = None,
        log_level: int = 0,
        log_size: int = LOG_SIZE_FIRST,
        kern_version: int = 0,
        prog_flags: int = 0,
        attach_btf_id: int = 0,
        attach_to: str = "",
    ) -> Program:
        """Load ``insns`` (from :mod:`ebpfmaps.asm`, an :class:`~ebpfmaps.asm.Assembled`, or raw bytes).

        When the kernel refuses, the load is repeated with the verifier's log switched on and
        :class:`~ebpfmaps.errors.ProgramLoadError` carries that log (``.log``) and our listing
        (``.disassembly``); its message ends with the log's last lines. ``log_level`` > 0 keeps
        the log of a successful load in :attr:`verifier_log`. GPL-only helpers (most tracing ones)
        need a GPL-compatible ``license``.

        ``expected_attach_type`` takes an :class:`AttachType`, its id or a name (``"egress"``,
        ``"connect4"``, ``"stream_parser"``...). ``attach_to`` names the kernel function an fentry/fexit
        program (type ``tracing``) or the hook an LSM program (``"file_open"``) attaches to, looked up in the
        kernel's BTF; the expected attach type then defaults to fentry or ``lsm``.
        """
        ptype = parse_prog_type(prog_type)
        eat_member = parse_attach_type(expected_attach_type, op="prog_load") if expected_attach_type is not None \
            else None
        if attach_to:
            if ptype not in (ProgramType.TRACING, ProgramType.LSM) or attach_btf_id:
                raise InvalidArgument("attach_to names the function of a tracing or LSM program (and replaces "
                                      "attach_btf_id)", op="prog_load")
            func = f"bpf_lsm_{attach_to}" if ptype == ProgramType.LSM else attach_to
            attach_btf_id = progs.vmlinux_btf_id(func)
            if not attach_btf_id:
                raise errors.NotSupported(f"the running kernel's BTF has no function {func!r}", op="prog_load")
            if eat_member is None:
                eat_member = AttachType.LSM_MAC if ptype == ProgramType.LSM else AttachType.TRACE_FENTRY
        code, refs, listing = _code_of(insns)
        if not code or len(code) % 8:
            raise InvalidArgument(f"BPF code must be a non-empty multiple of 8 bytes, not {len(code)}", op="prog_load")
        count = len(code) // 8
        if count > MAX_INSNS:
            raise InvalidArgument(f"{count} instructions exceed the kernel's limit of {MAX_INSNS}", op="prog_load")
        if not isinstance(license, str) or "\0" in license:
            raise InvalidArgument(f"license must be a string without NUL, not {license!r}", op="prog_load")
        if log_level not in (0, 1, 2, 3, 4, 5, 6, 7):
            raise InvalidArgument(f"log_level is a bit set of 1 (verbose), 2 (more), 4 (stats), not {log_level}",
                                  op="prog_load")
        if log_size < 128 or log_size > LOG_SIZE_MAX:
            raise InvalidArgument(f"log_size must be between 128 and {LOG_SIZE_MAX}", op="prog_load")
        cname = _validate_prog_name(name)
        code_buf = ctypes.create_string_buffer(code, len(code))
        lic = license.encode()
        eat = int(eat_member) if eat_member is not None else None

        def attempt(level: int, size: int) -> progs.LoadAttempt:
            return progs.prog_load_attempt(int(ptype), cname, lic, code_buf, count, expected_attach_type=eat,
                                           kern_version=kern_version, prog_flags=prog_flags,
                                           attach_btf_id=attach_btf_id, log_level=level, log_size=size)

        res = attempt(log_level, log_size)
        size = log_size
        while res.err == E.ENOSPC and log_level and size < LOG_SIZE_MAX:
            size *= 2
            res = attempt(log_level, size)
        if res.handle is None and not log_level and res.err != E.EPERM:
            # The fast first attempt ran without a log; repeat with one so the refusal explains itself.
            level = 1
            res2 = attempt(level, size)
            while res2.err == E.ENOSPC and size < LOG_SIZE_MAX:
                size *= 2
                res2 = attempt(level, size)
            if res2.handle is not None:  # loaded the second time (a transient failure such as EAGAIN): keep it
                res = res2
            elif res2.err != E.ENOSPC:
                res = res2
            else:
                res = progs.LoadAttempt(None, res.err, res2.log)
        if res.handle is None:
            raise cls._load_error(res.err, ptype, name, res.log, listing)
        announce_maps(res.handle, ptype)
        return cls(res.handle, ptype, name, refs=refs, disassembly=listing, verifier_log=res.log if log_level else "",
                   expected_attach_type=eat_member, attach_target=attach_to)

    @staticmethod
    def _load_error(err: int, ptype: ProgramType, name: str, log: str, listing: str) -> errors.MapError:
        what = f"{ptype.name.lower()} program" + (f" {name!r}" if name else "")
        if err == E.EPERM:
            return errors.from_errno(err, "prog_load", what)
        reason = os.strerror(err)
        ename = E.errorcode.get(err, str(err))
        if err == errors.ENOTSUPP:
            reason, ename = "Operation not supported", "ENOTSUPP"
        msg = f"prog_load: the kernel refused the {what}: {reason} ({ename})"
        if log.strip():
            msg += "\n--- verifier log ---\n" + _tail(log, 60)
        elif err == E.EINVAL:
            msg += " (no verifier log: the kernel refused the load attributes themselves, e.g. the program type "
            msg += "or expected_attach_type)"
        if listing:
            msg += "\n--- program ---\n" + _tail(listing, 80)
        return ProgramLoadError(msg, errno=err, op="prog_load", log=log, disassembly=listing, call="bpf_prog_load")

    # ------------------------------------------------------------------ opening existing programs
    @classmethod
    def from_fd(cls, fd: int | FD, *, name: str = "", section: str = "") -> Program:
        """Wrap an fd (a number or an :class:`FD`) this object will own (the type and name come from the kernel)."""
        h = fd if isinstance(fd, FD) else FD(fd, "program")
        try:
            with h.pinned("open") as num:
                if "prog_type" not in read_fdinfo(num):
                    raise InvalidArgument(f"fd {num} is not a BPF program", op="open")
            info = prog_info(h)
        except BaseException:
            h.close()
            raise
        return cls(h, info.type, name or info.name, section=section)

    @classmethod
    def open_pinned(cls, path: str | os.PathLike[str]) -> Program:
        """Open the program pinned at ``path``."""
        prog = cls.from_fd(pinning.obj_get(path))
        prog._pin_path = os.fspath(path)
        return prog

    @classmethod
    def open_by_id(cls, prog_id: int) -> Program:
        return cls.from_fd(progs.prog_open_by_id(prog_id))

    # ------------------------------------------------------------------ properties and lifecycle
    @property
    def fd(self) -> int:
        """The program's descriptor number now (raises :class:`MapClosed` once closed).

        Hand it at once to something that takes its own reference; keep the Program (or :attr:`handle`).
        """
        num = self._h.num
        if num < 0:
            raise MapClosed("the program is closed", op="prog_fd")
        return num

    @property
    def handle(self) -> FD:
        """The :class:`~ebpfmaps._libbpf.fd.FD` that owns the descriptor; closed together with the program."""
        return self._h

    @property
    def closed(self) -> bool:
        return self._h.closed

    @property
    def pin_path(self) -> str | None:
        return self._pin_path

    def info(self) -> ProgInfo:
        return prog_info(self._h)

    @property
    def id(self) -> int:
        return self.info().id

    def dup(self) -> Program:
        """Another Program object on a duplicate fd (closing one leaves the other working)."""
        p = Program(self._h.dup(), self.type, self.name, refs=self._refs, disassembly=self.disassembly,
                    section=self.section, verifier_log=self.verifier_log,
                    expected_attach_type=self.expected_attach_type, attach_target=self.attach_target)
        p._pin_path = self._pin_path
        return p

    def close(self) -> None:
        """Close the fd (idempotent). Attached links and pins keep the program alive in the kernel.

        Every later call through this object raises :class:`MapClosed`; calls already in flight in
        other threads finish on this program before the descriptor is released.
        """
        self._h.close()

    def __copy__(self) -> Program:
        """As :meth:`dup`: a second object on a duplicate descriptor of the same kernel program."""
        return self.dup()

    def __deepcopy__(self, memo: dict[int, Any]) -> Program:
        """As :meth:`dup`: the kernel program is shared, not copied."""
        return self.dup()

    def __reduce__(self) -> Any:
        raise TypeError("a Program cannot be pickled: pin it and Program.open_pinned() it in the other process")

    def __enter__(self) -> Program:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        num = self._h.num
        state = "closed" if num < 0 else f"fd={num}"
        tname = self.type.name.lower() if isinstance(self.type, ProgramType) else str(self.type)
        return f"<Program {self.name!r} {tname} {state}>"

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin into a bpf filesystem: the program outlives this process until unpinned."""
        with self._h.pinned("pin") as num:
            self._pin_path = pinning.pin_fd(num, path)

    def unpin(self, path: str | os.PathLike[str] | None = None) -> None:
        target = path if path is not None else self._pin_path
        if target is None:
            raise InvalidArgument("the program is not pinned by this object; pass the path", op="unpin")
        pinning.unpin(target)
        if path is None or os.fspath(path) == self._pin_path:
            self._pin_path = None

    # ------------------------------------------------------------------ running
    def test_run(
        self,
        data: bytes | bytearray | memoryview | None = None,
        ctx: bytes | bytearray | memoryview | None = None,
        repeat: int = 1,
        *,
        data_out_size: int | None = None,
        flags: int = 0,
        cpu: int = 0,
        batch_size: int = 0,
    ) -> TestRun:
        """Run the program in the kernel on ``data`` (a packet) and/or ``ctx`` (BPF_PROG_TEST_RUN).

        ``repeat`` runs it that many times in one syscall (``duration_ns`` is the average). Raw
        tracepoint, tracing and syscall programs take only ``ctx`` (their arguments) and run once;
        ``flags=BPF_F_TEST_RUN_ON_CPU`` with ``cpu`` picks the CPU for raw tracepoints. A syscall
        program's ``ctx_out`` is the context as the program left it.
        """
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 0xFFFFFFFF >> 1:
            raise InvalidArgument(f"repeat must be a positive int, not {repeat!r}", op="test_run")
        if flags & ~(BPF_F_TEST_RUN_ON_CPU | BPF_F_TEST_XDP_LIVE_FRAMES):
            raise errors.InvalidFlags(f"unknown test_run flags {flags:#x}", op="test_run")
        if cpu and not flags & BPF_F_TEST_RUN_ON_CPU:
            raise errors.InvalidFlags("cpu= needs flags=BPF_F_TEST_RUN_ON_CPU", op="test_run")
        no_data = self.type in _NO_DATA_TYPES
        if no_data and data is not None:
            raise InvalidArgument(f"{self.type.name.lower()} programs take no data in test_run, only ctx (arguments)"
                                  if isinstance(self.type, ProgramType) else "this program type takes no data",
                                  op="test_run")
        if no_data and repeat != 1:
            raise InvalidArgument("raw tracepoint, tracing and syscall programs run once per test_run (repeat=1)",
                                  op="test_run")
        opts = new_opts(structs.BpfTestRunOpts, flags=flags, cpu=cpu, batch_size=batch_size)
        if not no_data:
            opts.repeat = repeat
        keep: list[Any] = []
        out_buf = None
        if data is not None:
            raw = bytes(data)
            in_buf = ctypes.create_string_buffer(raw, max(len(raw), 1))
            out_size = data_out_size if data_out_size is not None else len(raw) + DATA_OUT_EXTRA
            if out_size < 0 or out_size > 0xFFFFFFFF:
                raise InvalidArgument(f"data_out_size {out_size} out of range", op="test_run")
            out_buf = ctypes.create_string_buffer(max(out_size, 1))
            keep += [in_buf, out_buf]
            opts.data_in, opts.data_size_in = ctypes.addressof(in_buf), len(raw)
            opts.data_out, opts.data_size_out = ctypes.addressof(out_buf), out_size
        ctx_in_buf = ctx_out_buf = None
        if ctx is not None:
            raw_ctx = bytes(ctx)
            ctx_in_buf = ctypes.create_string_buffer(raw_ctx, max(len(raw_ctx), 1))
            keep.append(ctx_in_buf)
            opts.ctx_in, opts.ctx_size_in = ctypes.addressof(ctx_in_buf), len(raw_ctx)
            if not no_data:
                ctx_out_size = max(len(raw_ctx), CTX_OUT_MIN)
                ctx_out_buf = ctypes.create_string_buffer(ctx_out_size)
                keep.append(ctx_out_buf)
                opts.ctx_out, opts.ctx_size_out = ctypes.addressof(ctx_out_buf), ctx_out_size
        progs.prog_test_run(self._h, opts, repr(self), len(out_buf) if out_buf is not None else None)
        data_out = out_buf.raw[: opts.data_size_out] if out_buf is not None else None
        ctx_out: bytes | None = None
        if ctx_out_buf is not None:
            ctx_out = ctx_out_buf.raw[: opts.ctx_size_out]
        elif self.type == ProgramType.SYSCALL and ctx_in_buf is not None:
            ctx_out = ctx_in_buf.raw[: opts.ctx_size_in]  # the kernel writes a syscall program's ctx back in place
        del keep
        return TestRun(retval=opts.retval, duration_ns=opts.duration, data_out=data_out, ctx_out=ctx_out)

    # ------------------------------------------------------------------ attaching
    def attach_raw_tracepoint(self, name: str) -> Link:
        """Attach to raw tracepoint ``name`` (e.g. ``"sys_enter"``, ``"sched_switch"``); detach by closing the link."""
        return attach_raw_tracepoint(self, name)

    def attach_tracepoint(self, category: str, name: str) -> Link:
        """Attach to tracepoint ``category/name`` (e.g. ``"syscalls", "sys_enter_openat"``) via a perf event."""
        return attach_tracepoint(self, category, name)

    def attach_kprobe(self, symbol: str, offset: int = 0, ret: bool = False) -> Link:
        """Run this kprobe program on entry to kernel function ``symbol`` (+``offset``), or on return (``ret``)."""
        return attach_points.attach_kprobe(self, symbol, offset, ret)

    def attach_uprobe(self, binary: str | os.PathLike[str], symbol_or_offset: str | int, pid: int | None = None,
                      ret: bool = False) -> Link:
        """Run this kprobe-type program at ``symbol_or_offset`` of ``binary`` (ELF symbol or file offset)."""
        return attach_points.attach_uprobe(self, binary, symbol_or_offset, pid, ret)

    def attach_tc(self, interface: str | int, direction: str = "ingress", *, tcx: bool | None = None) -> Link:
        """Attach this sched_cls program to ``interface``'s ``ingress`` or ``egress`` (tcx link or clsact filter)."""
        return attach_points.attach_tc(self, interface, direction, tcx=tcx)

    def attach_cgroup(self, path: str | os.PathLike[str] | int, attach_type: AttachType | str | int | None = None,
                      flags: int = 0) -> Link:
        """Attach to the cgroup v2 ``path`` (attach type: the one given at load unless named here)."""
        return attach_points.attach_cgroup(self, path, attach_type, flags)

    def attach_socket(self, sock: Any) -> Link:
        """Filter ``sock``'s incoming packets with this socket filter (SO_ATTACH_BPF)."""
        return attach_points.attach_socket(self, sock)

    def attach_sockmap(self, sock_map: Any, attach_type: AttachType | str | int | None = None) -> Link:
        """Attach this SK_SKB/SK_MSG program to a sockmap or sockhash (stream parser/verdict, msg verdict)."""
        return attach_points.attach_sockmap(self, sock_map, attach_type)

    def attach_perf_event(self, event: str | int = "cpu-clock", *, cpu: int | None = None,
                          sample_period: int | None = None, sample_freq: int | None = None) -> Link:
        """Run this perf_event program on samples of a software event (every CPU unless ``cpu``)."""
        return attach_points.attach_perf_event(self, event, cpu=cpu, sample_period=sample_period,
                                               sample_freq=sample_freq)

    def attach_fentry(self) -> Link:
        """Attach this fentry/fexit program at the kernel function named by ``attach_to`` at load."""
        return attach_points.attach_fentry(self)

    def attach_lsm(self) -> Link:
        """Attach this LSM program at the hook named by ``attach_to`` at load."""
        return attach_points.attach_lsm(self)

    def attach(self, target: Any = None, *, section: str | None = None) -> Link:
        """Attach by a libbpf-style section name (the program's ELF section unless ``section`` is given).

        Sections that say where to attach (``kprobe/do_unlinkat``, ``tracepoint/syscalls/sys_enter_openat``,
        ``raw_tp/sys_enter``, ``uprobe//bin/bash:readline``, ``fentry/...``, ``lsm/...``) attach on their own;
        the rest take ``target``: an interface for ``tc``, a cgroup path for ``cgroup*/...``, a socket for
        ``socket``, a sockmap for ``sk_skb/...``/``sk_msg``. A string ``target`` with a ``/`` in a section-less
        call is read as the section itself (``prog.attach("tp/sched/sched_switch")``).
        """
        spec = section
        if spec is None:
            named = parse_section(target) if isinstance(target, str) else None
            if named is not None and not named.needs_target:
                spec, target = target, None  # a section that says where, given in place of the program's own
            else:
                spec = self.section
        parsed = parse_section(spec)
        if parsed is None:
            raise InvalidArgument(f"cannot attach by section {spec!r}: not a section libbpf attaches "
                                  "(kprobe/, uprobe/, tracepoint/, raw_tp/, tc, cgroup_skb/, cgroup/, socket, "
                                  "sk_skb/, sk_msg, perf_event, fentry/, lsm/)", op="attach")
        if target is not None and not parsed.needs_target and parsed.kind not in ("perf_event", "uprobe",
                                                                                    "uretprobe"):
            raise InvalidArgument(f"section {spec!r} says where it attaches; it takes no target ({target!r})",
                                  op="attach")
        return self._attach_parsed(parsed, target)

    def _attach_parsed(self, sec: SectionTarget, target: Any) -> Link:
        kind = sec.kind
        if sec.needs_target and target is None:
            raise InvalidArgument(f"section {sec.section!r} says what kind of attachment, not where: pass the "
                                  f"{sec.target_what} as target", op="attach")
        if kind == "tracepoint":
            return self.attach_tracepoint(sec.category, sec.name)
        if kind == "raw_tracepoint":
            return self.attach_raw_tracepoint(sec.name)
        if kind in ("kprobe", "kretprobe"):
            return self.attach_kprobe(sec.name, sec.offset, ret=kind == "kretprobe")
        if kind in ("uprobe", "uretprobe"):
            binary, point = sec.binary, sec.name or sec.offset
            if not binary:
                # A bare uprobe section: the target says "BINARY:SYMBOL" (or a (binary, symbol or offset) pair).
                if isinstance(target, tuple) and len(target) == 2:
                    binary, point = target
                elif isinstance(target, str) and ":" in target:
                    binary, _, point = target.rpartition(":")
                else:
                    raise InvalidArgument(f"section {sec.section!r} names no binary: pass target='BINARY:SYMBOL'",
                                          op="attach")
            return self.attach_uprobe(binary, point, ret=kind == "uretprobe")
        if kind == "tc":
            return self.attach_tc(target, sec.direction)
        if kind == "cgroup":
            return self.attach_cgroup(target, sec.attach_type)
        if kind == "socket":
            return self.attach_socket(target)
        if kind == "sockmap":
            return self.attach_sockmap(target, sec.attach_type)
        if kind == "perf_event":
            if isinstance(target, dict):
                return self.attach_perf_event(**target)
            return self.attach_perf_event(sample_freq=int(target) if target is not None else 99)
        if kind == "fentry":
            return self.attach_fentry()
        if kind == "lsm":
            return self.attach_lsm()
        raise InvalidArgument(f"cannot attach by section {sec.section!r}", op="attach")
