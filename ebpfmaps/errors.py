"""The library's exceptions, and the one place where an errno becomes one.

Every exception derives from :class:`MapError` and carries ``errno`` (``None``
when the library refused before any syscall), ``op`` (what was attempted) and,
where a libbpf function failed, ``call`` (its name).
Some also derive from the built-in that Python code expects: ``KeyNotFound`` is a
``KeyError`` so the dict protocol behaves, size and flag errors are ``ValueError``.
"""

from __future__ import annotations

import errno as _errno
import os

# The kernel's ENOTSUPP (524) is not in Python's errno module.
ENOTSUPP = 524


class MapError(Exception):
    """Base of every ebpfmaps error.

    ``call`` names the libbpf function or system call that failed, when one did (``None`` when
    the error was decided before any, or the raiser did not say).
    """

    def __init__(self, message: str, *, errno: int | None = None, op: str | None = None,
                 call: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.op = op
        self.call = call
        self.message = message

    def __str__(self) -> str:
        return self.message


class KeyNotFound(MapError, KeyError):
    """The key is not in the map (ENOENT)."""


class IndexOutOfRange(KeyNotFound, IndexError):
    """An array index at or beyond ``max_entries``."""


class KeyExists(MapError):
    """BPF_NOEXIST and the key is already there (EEXIST)."""


class OutOfMemory(MapError):
    """The map is full (E2BIG on insert), the kernel is out of memory, or a pool is exhausted."""


class InvalidArgument(MapError, ValueError):
    """The kernel or the library refused an argument (EINVAL)."""


class InvalidKeySize(InvalidArgument):
    """A key whose size is not the map's key_size."""


class InvalidValueSize(InvalidArgument):
    """A value whose size is not the map's value_size."""


class InvalidFlags(InvalidArgument):
    """Flags the operation or the map type does not accept."""


class IncompatibleMap(MapError):
    """A map that differs from what the caller asked for; ``differences`` lists every field."""

    def __init__(self, message: str, differences: list[str], *, op: str | None = None) -> None:
        super().__init__(message, op=op)
        self.differences = differences


class PermissionDenied(MapError, PermissionError):
    """EPERM/EACCES: a missing capability, a read-only fd, or a frozen map."""


class NotSupported(MapError):
    """The running kernel (or the loaded libbpf) lacks the feature."""


class MapClosed(MapError):
    """An operation on a map whose fd was closed (or EBADF)."""


class TooManyOpenFiles(MapError, OSError):
    """EMFILE/ENFILE: the process (or the system) is out of file descriptors.

    Every map, program, pin open and reader takes descriptors; close some (or raise
    ``RLIMIT_NOFILE``) and retry.
    """


class MapBusy(MapError):
    """EBUSY/EAGAIN: the kernel asked to retry (a lock was held, a bucket was busy)."""


class NotOnBpffs(MapError):
    """A pin path that is not inside a mounted bpf filesystem."""


class PinNotFound(MapError, FileNotFoundError):
    """Nothing is pinned at the path."""


class PinExists(MapError, FileExistsError):
    """Something is already pinned (or a file exists) at the path."""


class BatchError(MapError):
    """A batch operation that stopped part way; ``done`` elements were processed."""

    def __init__(self, message: str, *, done: int, cause: MapError) -> None:
        super().__init__(message, errno=cause.errno, op=cause.op, call=cause.call)
        self.done = done
        self.cause = cause


class AssemblerError(InvalidArgument):
    """A BPF program that ebpfmaps.asm cannot assemble (bad register, range, label or helper)."""


class ProgramLoadError(MapError):
    """The kernel refused a BPF program; ``log`` is the verifier's log, ``disassembly`` our listing."""

    def __init__(self, message: str, *, errno: int | None = None, op: str | None = None, log: str = "",
                 disassembly: str = "", call: str | None = None) -> None:
        super().__init__(message, errno=errno, op=op, call=call)
        self.log = log
        self.disassembly = disassembly


# Capability bit numbers (include/uapi/linux/capability.h).
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


def effective_capabilities() -> int | None:
    """This process's effective capability mask (``CapEff`` in /proc/self/status), None if unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def _capability_hint() -> str:
    # Say what is missing from the effective set: uid 0 alone proves nothing (a container or a
    # capability drop can leave root without CAP_BPF), and a non-root process may hold CAP_BPF.
    caps = effective_capabilities()
    if caps is not None and not caps & (1 << CAP_BPF | 1 << CAP_SYS_ADMIN):
        who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
        return (f"the process ({who}) lacks CAP_BPF (or CAP_SYS_ADMIN, which Linux before 5.8 needs); grant it "
                "or run as full root; some map types also need CAP_NET_ADMIN or CAP_PERFMON")
    if os.geteuid() != 0 and caps is None:
        return "run as root or grant CAP_BPF (CAP_SYS_ADMIN before Linux 5.8); creating some map types also needs CAP_NET_ADMIN or CAP_PERFMON"
    return ("the process holds CAP_BPF or CAP_SYS_ADMIN but the kernel refused: check "
            "kernel.unprivileged_bpf_disabled, a LSM policy, a read-only fd or a frozen map")


_ELEMENT_OPS = frozenset(
    {"lookup", "update", "delete", "lookup_and_delete", "get_next_key", "push", "pop", "peek"}
)


def out_of_descriptors(err: int, op: str, detail: str = "", *, call: str | None = None) -> TooManyOpenFiles:
    """The error for EMFILE/ENFILE: which limit was hit, and what to do about it."""
    where = f"{op}: {detail}" if detail else op
    if err == _errno.ENFILE:
        why = "the system is out of file descriptors (ENFILE, fs.file-max)"
    else:
        why = "the process is out of file descriptors (EMFILE, RLIMIT_NOFILE); close maps, readers or files, or raise the limit"
    return TooManyOpenFiles(f"{where}: {why}", errno=err, op=op, call=call)


def from_errno(err: int, op: str, detail: str = "", *, call: str | None = None) -> MapError:
    """The exception for a failed operation ``op`` that returned ``-err`` (from the libbpf function ``call``).

    ``op`` decides between readings of one errno: ENOENT is a missing key for
    element operations but a missing pin for ``obj_get``; E2BIG is a full map on
    update and a too-large size on create.
    """
    name = _errno.errorcode.get(err, "ENOTSUPP" if err == ENOTSUPP else f"errno {err}")
    reason = os.strerror(err) if err != ENOTSUPP else "Operation not supported"
    where = f"{op}: {detail}" if detail else op
    text = f"{where}: {reason} ({name})"
    if err == _errno.ENOENT:
        if op == "obj_get":
            return PinNotFound(text, errno=err, op=op, call=call)
        return KeyNotFound(text, errno=err, op=op, call=call)
    if err == _errno.EEXIST:
        if op in _ELEMENT_OPS or op.startswith("update"):
            return KeyExists(text, errno=err, op=op, call=call)
        return MapError(text, errno=err, op=op, call=call)
    if err == _errno.E2BIG:
        if op.startswith("update") or op == "push":
            return OutOfMemory(f"{where}: the map is full (E2BIG)", errno=err, op=op, call=call)
        return InvalidArgument(text, errno=err, op=op, call=call)
    if err == _errno.ENOSPC and op.startswith("update"):
        # LPM tries (trie_update_elem) answer a full map with ENOSPC where hashes say E2BIG.
        return OutOfMemory(f"{where}: the map is full (ENOSPC)", errno=err, op=op, call=call)
    if err == _errno.ENOMEM:
        return OutOfMemory(text, errno=err, op=op, call=call)
    if err in (_errno.EPERM, _errno.EACCES):
        return PermissionDenied(f"{text}; {_capability_hint()}", errno=err, op=op, call=call)
    if err in (_errno.EOPNOTSUPP, ENOTSUPP):
        return NotSupported(text, errno=err, op=op, call=call)
    if err == _errno.EINVAL:
        return InvalidArgument(text, errno=err, op=op, call=call)
    if err == _errno.EBADF:
        return MapClosed(text, errno=err, op=op, call=call)
    if err in (_errno.EMFILE, _errno.ENFILE):
        return out_of_descriptors(err, op, detail, call=call)
    if err in (_errno.EBUSY, _errno.EAGAIN):
        return MapBusy(text, errno=err, op=op, call=call)
    return MapError(text, errno=err, op=op, call=call)
