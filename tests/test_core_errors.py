"""Errors: the hierarchy, errno mapping, PermissionDenied naming the missing capability (checked in
child processes that really lose their capabilities), and failed operations leaving the map as it was."""

from __future__ import annotations

import ctypes
import errno
import json

import pytest

import ebpfmaps
from ebpfmaps import (
    BPF_EXIST,
    BPF_NOEXIST,
    InvalidValueSize,
    KeyExists,
    KeyNotFound,
    OutOfMemory,
    PermissionDenied,
)
from ebpfmaps import errors as E
from tests.conftest import run_python


def test_hierarchy_and_builtin_bases() -> None:
    for name in ("KeyNotFound", "KeyExists", "OutOfMemory", "InvalidKeySize", "InvalidValueSize", "InvalidFlags",
                 "IncompatibleMap", "PermissionDenied", "NotSupported", "MapClosed"):
        assert issubclass(getattr(E, name), E.MapError), name
    assert issubclass(E.KeyNotFound, KeyError)
    assert issubclass(E.InvalidFlags, ValueError) and issubclass(E.InvalidKeySize, ValueError)
    assert issubclass(E.PermissionDenied, PermissionError)
    assert issubclass(E.PinNotFound, FileNotFoundError)


@pytest.mark.parametrize(
    "err,op,cls",
    [
        (errno.ENOENT, "lookup", E.KeyNotFound),
        (errno.ENOENT, "obj_get", E.PinNotFound),
        (errno.EEXIST, "update", E.KeyExists),
        (errno.E2BIG, "update", E.OutOfMemory),
        (errno.E2BIG, "create", E.InvalidArgument),
        (errno.ENOMEM, "create", E.OutOfMemory),
        (errno.EPERM, "create", E.PermissionDenied),
        (errno.EACCES, "lookup", E.PermissionDenied),
        (errno.EOPNOTSUPP, "lookup_batch", E.NotSupported),
        (E.ENOTSUPP, "create", E.NotSupported),
        (errno.EINVAL, "create", E.InvalidArgument),
        (errno.EBADF, "lookup", E.MapClosed),
        (errno.EBUSY, "update", E.MapBusy),
    ],
)
def test_from_errno(err: int, op: str, cls: type[E.MapError]) -> None:
    exc = E.from_errno(err, op, "detail")
    assert type(exc) is cls
    assert exc.errno == err and exc.op == op
    assert op in str(exc) and "detail" in str(exc)


_UNPRIVILEGED_CREATE = """
import ctypes, json, os, sys
import ebpfmaps  # import (and load libbpf) before losing privileges
mode = sys.argv[1]
if mode == "nobody":
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)  # leaving uid 0 clears the permitted and effective capability sets
else:  # stay root but clear every capability with capset(2)
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.capset(ctypes.byref(Header(0x20080522, 0)), (Data * 2)()) != 0:  # _LINUX_CAPABILITY_VERSION_3
        raise OSError(ctypes.get_errno(), "capset")
caps = [l for l in open("/proc/self/status") if l.startswith("CapEff:")][0].split()[1]
try:
    ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=1)
    out = {"created": True}
except Exception as exc:
    out = {"type": type(exc).__name__, "message": str(exc), "errno": getattr(exc, "errno", None)}
out["uid"] = os.getuid()
out["caps"] = caps
print(json.dumps(out))
"""


def _unprivileged_bpf_allowed() -> bool:
    with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
        return f.read().strip() == "0"


@pytest.mark.parametrize("mode", ["nobody", "root-without-caps"])
def test_permission_denied_names_the_missing_capability(mode: str) -> None:
    if _unprivileged_bpf_allowed():
        pytest.skip("kernel.unprivileged_bpf_disabled=0 lets unprivileged processes create maps")
    out = json.loads(run_python(_UNPRIVILEGED_CREATE, mode).stdout)
    assert int(out["caps"], 16) == 0, "the child still holds capabilities: the test would prove nothing"
    assert out["uid"] == (65534 if mode == "nobody" else 0)
    assert out.get("type") == "PermissionDenied", out
    assert out["errno"] == errno.EPERM
    assert "CAP_BPF" in out["message"] and "lacks" in out["message"]
    assert ("(root)" in out["message"]) == (mode != "nobody")
    assert ("uid 65534" in out["message"]) == (mode == "nobody")


def test_noexist_on_existing_key_keeps_the_old_value() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as m:
        m[1] = 100
        with pytest.raises(KeyExists):
            m.update(1, 200, BPF_NOEXIST)
        assert m.to_dict() == {1: 100}
        with pytest.raises(KeyNotFound):
            m.update(2, 200, BPF_EXIST)
        assert m.to_dict() == {1: 100}


@pytest.mark.parametrize("kind", ["hash", "array", "percpu-hash", "lru-hash"])
def test_oversized_value_raises_before_syscall_and_changes_nothing(kind: str) -> None:
    with ebpfmaps.create(kind, key_size=4, value_size=8, max_entries=4) as m:
        k = b"\1\0\0\0"
        m[k] = b"original"
        before = m.to_dict()
        with pytest.raises(InvalidValueSize) as err:
            m[k] = b"far too long for eight bytes"
        assert err.value.errno is None
        assert m.to_dict() == before


def test_full_map_insert_changes_nothing() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=2) as m:
        m[1], m[2] = 1, 2
        with pytest.raises(OutOfMemory):
            m[3] = 3
        assert m.to_dict() == {1: 1, 2: 2}


def test_readonly_write_changes_nothing() -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=2,
                         flags=ebpfmaps.BPF_F_RDONLY) as m:
        with pytest.raises(PermissionDenied):
            m[1] = 1
        assert m.lookup(1) is None


def test_errors_carry_op_and_errno() -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=4, max_entries=2) as m:
        with pytest.raises(KeyNotFound) as err:
            m.delete(b"none")
        assert (err.value.errno, err.value.op) == (errno.ENOENT, "delete")
        assert "none" in str(err.value)


def test_kernel_errors_name_the_libbpf_call_and_errno() -> None:
    import errno as E

    with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=1) as m:
        m[b"aaaa"] = b"bbbb"
        with pytest.raises(ebpfmaps.errors.OutOfMemory) as full:
            m.update(b"cccc", b"dddd")
        assert (full.value.errno, full.value.op, full.value.call) == (E.E2BIG, "update", "bpf_map_update_elem")
        with pytest.raises(ebpfmaps.errors.KeyNotFound) as absent:
            m.delete(b"zzzz")
        assert (absent.value.errno, absent.value.call) == (E.ENOENT, "bpf_map_delete_elem")
        with pytest.raises(ebpfmaps.errors.InvalidArgument) as refused:
            m.update(b"aaaa", b"x")  # refused by the library: no errno, no call
        assert refused.value.errno is None and refused.value.call is None
