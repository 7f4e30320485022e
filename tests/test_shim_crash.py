"""Extensible maps when a process dies: no lock outlives its holder (even when the holder forked a child
that is still alive), and a later process finishes the cleanup of a map whose last holder was killed."""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from ebpfmaps_shim import (
    DeleteReason,
    ExtensibleMap,
    MapProvider,
    _lease,
    _locks,
    finish_cleanup,
    register_provider,
    unregister_provider,
)

import ebpfmaps
from tests.conftest import ROOT
from tests.shim_helpers import U32, next_type_id, recording_provider, val

_F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))


def _byte_locked(offset: int) -> bool:
    """Whether any open file description holds a lock on ``offset`` of the shim's lock file (F_OFD_GETLK)."""
    fd = os.open(_locks.lock_file_path(), os.O_RDWR | os.O_CLOEXEC)
    try:
        query = _locks._Flock(l_type=fcntl.F_WRLCK, l_whence=os.SEEK_SET, l_start=offset, l_len=1, l_pid=0)
        answer = _locks._Flock.from_buffer_copy(fcntl.fcntl(fd, _F_OFD_GETLK, bytes(query)))
        return bool(answer.l_type != fcntl.F_UNLCK)
    finally:
        os.close(fd)


# Holds the lock of key 1, forks a child that stays alive (as a multiprocessing worker would), reports both
# pids once the child runs and waits to be killed.
_HOLDER = textwrap.dedent("""
    import os, sys, time, ebpfmaps
    from ebpfmaps_shim import MapProvider, register_provider
    register_provider(type("Holder", (MapProvider,), {"custom_map_type": int(sys.argv[2])})())
    m = ebpfmaps.open_pinned(sys.argv[1], key_type="=I")
    with m.locked(1):
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.write(w, b"up")  # Python code runs in the child only after the fork handlers did
            time.sleep(3600)
            os._exit(0)
        os.read(r, 2)
        print(os.getpid(), child, flush=True)
        time.sleep(3600)
""")


def test_a_killed_holder_with_a_live_forked_child_leaves_no_lock(pin_path: Path) -> None:
    p = register_provider(recording_provider())
    m = ebpfmaps.create(p.custom_map_type, key_type="=I", value_size=8, max_entries=8)
    child = 0
    try:
        assert isinstance(m, ExtensibleMap)
        m.pin(pin_path)
        offset = m.map_id * _locks.STRIPES + _locks.stripe_of(U32.pack(1))
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(pin_path), str(p.custom_map_type)],
                                  env=_env(), stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None
        pids = holder.stdout.readline().split()
        assert len(pids) == 2, "the holder did not start"
        child = int(pids[1])
        assert _byte_locked(offset), "the holder should hold key 1's lock"
        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=60) == -signal.SIGKILL
        os.kill(child, 0)  # the forked child is still alive...
        assert not _byte_locked(offset), "the dead holder's lock lives on in its forked child"
        m[1] = val(7)  # ...and a writer of the same key goes through
        assert m[1] == val(7)
    finally:
        if child:
            os.kill(child, signal.SIGKILL)
        m.close()
        ebpfmaps.unpin(pin_path)
        unregister_provider(p)


def test_a_forked_child_takes_locks_of_its_own(pin_path: Path) -> None:
    """The child's locks exclude the parent's: the child cannot take a key the parent holds."""
    p = register_provider(type("P", (MapProvider,), {"custom_map_type": next_type_id()})())
    m = ebpfmaps.create(p.custom_map_type, key_type=ctypes.c_uint32, value_size=8, max_entries=8)
    try:
        offset = m.map_id * _locks.STRIPES + _locks.stripe_of(U32.pack(1))
        with m.locked(1):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child asks without waiting: the parent's lock must refuse it
                os.close(r)
                fl = _locks._Flock(l_type=fcntl.F_WRLCK, l_whence=os.SEEK_SET, l_start=offset, l_len=1, l_pid=0)
                try:
                    fcntl.fcntl(_locks._lock_fd(), getattr(fcntl, "F_OFD_SETLK", 37), bytes(fl))
                    os.write(w, b"taken")
                except OSError:
                    os.write(w, b"refused")
                os._exit(0)
            os.close(w)
            answer = os.read(r, 16)
            os.close(r)
            os.waitpid(pid, 0)
        assert answer == b"refused"
    finally:
        m.close()
        unregister_provider(p)


# Creates an extensible map of type argv[1] with three elements (pinned at argv[2] unless it is "-"),
# reports its id and waits to be killed.
_OWNER = textwrap.dedent("""
    import sys, time, ebpfmaps
    from ebpfmaps_shim import MapProvider, register_provider
    register_provider(type("Owner", (MapProvider,), {"custom_map_type": int(sys.argv[1])})())
    m = ebpfmaps.create(int(sys.argv[1]), key_type="=I", value_size=8, max_entries=8)
    for k in (1, 2, 3):
        m[k] = k.to_bytes(8, "little")
    if sys.argv[2] != "-":
        m.pin(sys.argv[2])
    print(m.map_id, flush=True)
    time.sleep(3600)
""")


def _kill_owner(type_id: int, pin: str) -> int:
    owner = subprocess.Popen([sys.executable, "-c", _OWNER, str(type_id), pin], env=_env(), stdout=subprocess.PIPE,
                             text=True)
    assert owner.stdout is not None
    line = owner.stdout.readline()
    owner.send_signal(signal.SIGKILL)
    assert owner.wait(timeout=60) == -signal.SIGKILL
    assert line.strip().isdigit(), "the owner did not start"
    return int(line)


def test_a_later_process_finishes_the_cleanup_of_a_killed_last_holder() -> None:
    type_id = next_type_id()
    map_id = _kill_owner(type_id, "-")
    lease = _lease.lease_path(map_id)
    assert lease is not None and os.path.exists(lease), "the lease pin keeps the dead holder's map"
    assert map_id in ebpfmaps.map_ids()
    p = recording_provider(type_id=type_id)
    register_provider(p)  # registering the provider finishes what the dead holder left
    try:
        events = p.rec.take()
        cleanup = sorted(e for e in events if e[0] == "delete")
        assert cleanup == [("delete", k, val(k), DeleteReason.MAP_CLEANUP) for k in (1, 2, 3)]
        assert events[-1] == ("delete_map", map_id)
        assert map_id not in ebpfmaps.map_ids()  # the kernel freed it
        assert not os.path.exists(lease)
        assert finish_cleanup() == []  # once
    finally:
        unregister_provider(p)


def test_opening_the_pin_of_a_killed_holder_then_unpinning_cleans_up(pin_path: Path) -> None:
    type_id = next_type_id()
    p = recording_provider(type_id=type_id)
    register_provider(p)
    try:
        map_id = _kill_owner(type_id, str(pin_path))
        m = ebpfmaps.open_pinned(pin_path, key_type="=I")
        assert isinstance(m, ExtensibleMap) and m.map_id == map_id
        assert [e for e in p.rec.take() if e[0] in ("delete", "delete_map")] == []  # still pinned: alive
        assert m[2] == val(2)
        ebpfmaps.unpin(pin_path)
        m.close()  # the dead holder's lease is gone with it: this process is the last holder
        events = p.rec.take()
        assert sorted(e for e in events if e[0] == "delete") == [
            ("delete", k, val(k), DeleteReason.MAP_CLEANUP) for k in (1, 2, 3)]
        assert events[-1] == ("delete_map", map_id)
        assert map_id not in ebpfmaps.map_ids()
    finally:
        unregister_provider(p)


def test_a_map_held_by_two_processes_is_cleaned_up_by_the_last(pin_path: Path) -> None:
    """A live holder's lease keeps the cleanup from running in a process that is not the last one."""
    type_id = next_type_id()
    p = recording_provider(type_id=type_id)
    register_provider(p)
    try:
        m = ebpfmaps.create(type_id, key_type="=I", value_size=8, max_entries=8)
        assert isinstance(m, ExtensibleMap)
        m[5] = val(5)
        m.pin(pin_path)
        holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
            import sys, ebpfmaps
            from ebpfmaps_shim import MapProvider, register_provider
            register_provider(type("Other", (MapProvider,), {"custom_map_type": int(sys.argv[2])})())
            m = ebpfmaps.open_pinned(sys.argv[1], key_type="=I")
            print("open", flush=True)
            sys.stdin.readline()
        """), str(pin_path), str(type_id)], env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "open"
        p.rec.take()
        ebpfmaps.unpin(pin_path)
        m.close()
        assert [e for e in p.rec.take() if e[0] != "create"] == []  # the other process still holds it
        assert finish_cleanup() == []  # and its lease is alive
        holder.kill()  # the other holder dies without closing: the next shim process finishes
        holder.wait(timeout=60)
        assert finish_cleanup() == [m.map_id]
        assert sorted(e for e in p.rec.take() if e[0] == "delete") == [("delete", 5, val(5), DeleteReason.MAP_CLEANUP)]
    finally:
        unregister_provider(p)
