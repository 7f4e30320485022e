"""bpffs: finding and mounting it, pinning and unpinning objects in it.

A pin is a file in a bpf filesystem that holds a reference to a kernel object, so
a map outlives the process that created it and other processes can open it.
"""

from __future__ import annotations

import errno as E
import os
from collections import namedtuple

from ebpfmaps import errors
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps._libbpf.fd import FD
from ebpfmaps.maptypes import BPF_F_RDONLY, BPF_F_WRONLY

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    from typing import NamedTuple

DEFAULT_BPFFS = "/sys/fs/bpf"
BPF_FS_MAGIC = 0xCAFE4A11


if TYPE_CHECKING:
    class Mount(NamedTuple):
        mount_point: str
        fstype: str
        source: str
else:
    Mount = namedtuple("Mount", ["mount_point", "fstype", "source"])  # typing's NamedTuple needs typing


def unescape_mountinfo(field: str) -> str:
    """A field of /proc/self/mountinfo as the path it names."""
    # mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts() -> list[Mount]:
    """The mounts this process sees (from /proc/self/mountinfo)."""
    out = []
    try:
        f = open("/proc/self/mountinfo")
    except OSError as exc:
        if exc.errno in (E.EMFILE, E.ENFILE):
            raise errors.out_of_descriptors(exc.errno, "mounts", "reading /proc/self/mountinfo", call="open") from None
        raise
    with f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            if len(fields) >= 5 and len(rfields) >= 2:
                out.append(Mount(unescape_mountinfo(fields[4]), rfields[0], rfields[1]))
    return out


def mount_of(path: str | os.PathLike[str]) -> Mount | None:
    """The mount holding ``path`` (the deepest mount point that prefixes its real path)."""
    real = os.path.realpath(os.fspath(path))
    best: Mount | None = None
    for m in mounts():
        mp = m.mount_point
        if real == mp or real.startswith(mp.rstrip("/") + "/") or mp == "/":
            if best is None or len(mp) >= len(best.mount_point):
                best = m
    return best


def is_bpffs(path: str | os.PathLike[str]) -> bool:
    m = mount_of(path)
    return m is not None and m.fstype == "bpf"


def bpffs_mounts() -> list[str]:
    return [m.mount_point for m in mounts() if m.fstype == "bpf"]


def mount_bpffs(path: str | os.PathLike[str] = DEFAULT_BPFFS) -> str:
    """Make sure a bpf filesystem is mounted at ``path`` (creating the directory); returns it."""
    target = os.fspath(path)
    os.makedirs(target, exist_ok=True)
    m = mount_of(target)
    if m is not None and m.fstype == "bpf" and m.mount_point == os.path.realpath(target):
        return target
    _maps.mount_bpffs(target)
    return target


def umount(path: str | os.PathLike[str]) -> None:
    _maps.umount(os.fspath(path))


def _path_text(path: str | os.PathLike[str], op: str) -> str:
    """``path`` as a string the kernel will read in full: a str with no NUL byte, not empty.

    Only str paths (and os.PathLike objects giving a str) are taken: bytes paths, numbers, None and
    other objects are :class:`InvalidArgument` (decode a bytes path with ``os.fsdecode`` first).
    """
    try:
        p = os.fspath(path)
    except TypeError:
        raise errors.InvalidArgument(f"{op}: a pin path is a str (or os.PathLike of str), not {type(path).__name__} "
                                     f"({path!r})"[:200], op=op) from None
    if not isinstance(p, str):
        raise errors.InvalidArgument(f"{op}: a pin path is a str (or os.PathLike of str), not {type(p).__name__}",
                                     op=op)
    if "\0" in p:
        # The kernel reads a C string: it would stop at the NUL and pin (or open) a shorter path than given.
        raise errors.InvalidArgument(f"{op}: the path {p!r} contains a NUL byte", op=op)
    if not p:
        raise errors.InvalidArgument(f"{op}: empty pin path", op=op)
    return p


def _missing_directory(directory: str) -> str | None:
    """The first directory on the way to ``directory`` that does not exist (components taken as
    written, as the kernel walks them: ``a/missing/..`` fails at ``a/missing``), or None."""
    prefix = "/" if directory.startswith("/") else ""
    for part in directory.split("/"):
        if part in ("", "."):
            continue
        prefix = os.path.join(prefix, part)
        if not os.path.isdir(prefix):
            return prefix
    return None


def require_bpffs(path: str | os.PathLike[str], op: str) -> str:
    """``path`` as a string, checked before any syscall; the library's error says what is wrong.

    :class:`InvalidArgument` for a path with a NUL byte or that does not end in a name (``.``,
    ``..``, a trailing ``/``); :class:`NotOnBpffs` when a directory on the way is missing (named)
    or the directory the pin goes in is not on a bpffs, also when symlinks or ``..`` lead it out.
    """
    p = _path_text(path, op)
    head, name = os.path.split(p)
    if name in ("", ".", ".."):
        raise errors.InvalidArgument(f"{op}: {p} does not end in a pin name ({name or 'a trailing /'!r} names a "
                                     "directory); give the path of the pin itself", op=op)
    parent = head or "."
    missing = _missing_directory(parent)
    if missing is not None:
        raise errors.NotOnBpffs(f"{op}: directory {missing} does not exist (on the way to {p}); create it on a "
                                "bpffs first", op=op)
    real = os.path.realpath(parent)
    if not is_bpffs(real):
        mounted = ", ".join(bpffs_mounts()) or "none mounted; see ebpfmaps.mount_bpffs()"
        lexical = os.path.normpath(os.path.abspath(parent))
        via = f"; its directory {parent} resolves to {real} through symlinks or '..'" if real != lexical else ""
        raise errors.NotOnBpffs(f"{op}: {p} is not on a bpf filesystem{via} (bpffs mounts: {mounted})", op=op)
    return p


def require_pin(path: str | os.PathLike[str], op: str) -> str:
    """As :func:`require_bpffs`, for a path that should hold a pin: a directory there is refused."""
    p = require_bpffs(path, op)
    if os.path.isdir(p) and not os.path.islink(p):
        raise errors.InvalidArgument(f"{op}: {p} is a directory, not a pin (remove an empty one with os.rmdir)",
                                     op=op)
    return p


def pin_fd(fd: FD | int, path: str | os.PathLike[str]) -> str:
    """Pin a BPF object at ``path``; returns the path.

    ``fd`` is the object's handle (held in flight for the call), or a descriptor number the caller keeps open.
    """
    p = require_bpffs(path, "pin")
    name = os.path.basename(p)
    if "." in name or not name:
        # bpffs refuses dotted names with EPERM (kernel/bpf/inode.c, bpf_lookup), which would read as a
        # missing capability; say what is really wrong before the syscall.
        raise errors.InvalidArgument(f"pin: bpffs does not accept {name!r} as a pin name (no dots allowed)", op="pin")
    _maps.obj_pin(fd, p)
    return p


def unpin(path: str | os.PathLike[str]) -> None:
    """Remove a pin. The object lives on while anything else holds it.

    This is the bare removal; :func:`ebpfmaps.unpin` (``ebpfmaps.extension.unpin``) also tells
    the extensions, whose maps may lose their last holder with the pin.
    """
    p = require_pin(path, "unpin")
    try:
        os.unlink(p)
    except FileNotFoundError:
        raise errors.PinNotFound(f"unpin: nothing is pinned at {p}", errno=E.ENOENT, op="unpin") from None
    except OSError as exc:
        raise errors.from_errno(exc.errno or E.EIO, "unpin", p, call="unlink") from None


def await_pin_release() -> bool:
    """Wait until what recently removed pins held has been let go, as far as user space can tell.

    bpffs drops the reference an unlinked pin held in an RCU callback (``bpf_free_inode``), so a map, link
    or program whose last pin was just removed can stay alive for a grace period, which an emulated or
    loaded machine can stretch to tens of milliseconds. This waits for one grace period; the callback is
    then due, and runs within moments. False when the kernel offers no way to wait for one here (then
    callers poll by time alone).
    """
    return _maps.rcu_grace_period()


def obj_get(path: str | os.PathLike[str], *, readonly: bool = False, writeonly: bool = False) -> int:
    """An fd for the object pinned at ``path`` (BPF_OBJ_GET, optionally with RDONLY/WRONLY file flags).

    The caller owns the number and must close it (or hand it to an owner); :func:`obj_get_handle`
    returns a handle instead.
    """
    return obj_get_handle(path, readonly=readonly, writeonly=writeonly).detach()


def obj_get_handle(path: str | os.PathLike[str], *, readonly: bool = False, writeonly: bool = False,
                   kind: str = "map") -> FD:
    """A handle on the object pinned at ``path`` (BPF_OBJ_GET, optionally with RDONLY/WRONLY file flags)."""
    p = _path_text(path, "open_pinned")
    if not os.path.lexists(p):
        missing = _missing_directory(os.path.dirname(p) or ".")
        why = f": directory {missing} does not exist" if missing is not None else ""
        raise errors.PinNotFound(f"open_pinned: nothing is pinned at {p}{why}", errno=E.ENOENT, op="obj_get")
    require_bpffs(p, "open_pinned")
    flags = (BPF_F_RDONLY if readonly else 0) | (BPF_F_WRONLY if writeonly else 0)
    return _maps.obj_get(p, flags, kind=kind)


# A resize pins its new map next to the old pin under this marker, then renames it over the pin.
# No dots: bpffs reserves names with dots for itself (bpf_lookup refuses them with EPERM).
MIGRATION_MARK = "_resize_"


def migration_temp_path(path: str) -> str:
    """Where a resize of the map pinned at ``path`` pins the new map before renaming it over ``path``."""
    directory, base = os.path.split(path)
    return os.path.join(directory, f"{base}{MIGRATION_MARK}{os.getpid()}_{os.urandom(4).hex()}")


def migration_in_progress(path: str) -> bool:
    """Whether a resize of the map pinned at ``path`` is under way: its temporary pin is in the directory.

    A resize makes the temporary pin before it freezes the old map and removes it by renaming it
    over ``path``, so a writer that finds the map frozen and this True knows to wait for the rename.
    """
    directory, base = os.path.split(path)
    prefix = base + MIGRATION_MARK
    try:
        return any(name.startswith(prefix) for name in os.listdir(directory or "."))
    except OSError:
        return False
