"""The rest of the kernel's map types: defaults, flag masks checked against the kernel, real fds in and out,
and bpftool's view of every type pinned."""

from __future__ import annotations

import ctypes
import os
import socket
import struct
from pathlib import Path

import pytest

import ebpfmaps
from ebpfmaps import MapType
from ebpfmaps.errors import InvalidArgument, InvalidFlags, InvalidKeySize, InvalidValueSize, MapError, NotSupported
from ebpfmaps.features import map_type_supported, struct_ops_link_supported
from ebpfmaps.map import class_for
from ebpfmaps.maps.ringbuf import PAGE_SIZE, round_ring_size
from ebpfmaps.maps.special import CpuMapValue, DevMapValue
from ebpfmaps.maptypes import (
    BPF_EXIST,
    BPF_F_LINK,
    BPF_F_NUMA_NODE,
    BPF_F_RDONLY,
    BPF_F_WRONLY,
    BPF_NOEXIST,
    flag_names,
)
from tests.types_support import bpftool, cgroup2_dir, return_zero_program

SO_COOKIE = 57  # asm-generic/socket.h


def cookie_of(sock: socket.socket) -> int:
    return int(struct.unpack("=Q", sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0])


# The smallest valid creation arguments for each class, used by the flag and bpftool tests.
def minimal_kwargs(t: MapType) -> dict[str, object]:
    base: dict[MapType, dict[str, object]] = {
        MapType.PROG_ARRAY: {"max_entries": 2}, MapType.CGROUP_ARRAY: {"max_entries": 2},
        MapType.PERF_EVENT_ARRAY: {}, MapType.STACK_TRACE: {"max_entries": 4, "depth": 8},
        MapType.LPM_TRIE: {"family": "ipv4", "value_size": 4, "max_entries": 4},
        MapType.DEVMAP: {"max_entries": 2}, MapType.DEVMAP_HASH: {"max_entries": 2},
        MapType.SOCKMAP: {"max_entries": 2}, MapType.SOCKHASH: {"key_size": 4, "max_entries": 2},
        MapType.CPUMAP: {}, MapType.XSKMAP: {"max_entries": 2}, MapType.REUSEPORT_SOCKARRAY: {"max_entries": 2},
        MapType.CGROUP_STORAGE: {"value_size": 8}, MapType.PERCPU_CGROUP_STORAGE: {"value_size": 8},
        MapType.QUEUE: {"value_size": 4, "max_entries": 2}, MapType.STACK: {"value_size": 4, "max_entries": 2},
        MapType.SK_STORAGE: {"value_size": 8}, MapType.INODE_STORAGE: {"value_size": 8},
        MapType.TASK_STORAGE: {"value_size": 8}, MapType.CGRP_STORAGE: {"value_size": 8},
        MapType.STRUCT_OPS: {"struct_name": "tcp_congestion_ops"},
        MapType.RINGBUF: {"size": PAGE_SIZE}, MapType.USER_RINGBUF: {"size": PAGE_SIZE},
        MapType.BLOOM_FILTER: {"value_size": 4, "max_entries": 8}, MapType.ARENA: {"pages": 1},
    }
    return dict(base[t])


ISSUE3_TYPES = [t for t in MapType if t not in (MapType.UNSPEC, MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH,
                                                 MapType.PERCPU_ARRAY, MapType.LRU_HASH, MapType.LRU_PERCPU_HASH,
                                                 MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS)]


def test_every_kernel_type_has_a_registered_class() -> None:
    for t in MapType:
        if t is not MapType.UNSPEC:
            assert class_for(t).map_type == t, t  # its family loads on first use


@pytest.mark.parametrize("t", ISSUE3_TYPES, ids=lambda t: t.keyword)
def test_create_defaults_and_bpftool_view(t: MapType, bpffs: Path) -> None:
    if not map_type_supported(t):
        pytest.skip(f"the running kernel lacks {t.keyword} maps (probe)")
    m = ebpfmaps.create(t.keyword, **minimal_kwargs(t))  # type: ignore[arg-type]
    try:
        assert type(m) is class_for(t)
        info = m.info()
        assert (info.type, info.key_size, info.value_size, info.max_entries, info.flags) == \
            (int(t), m.key_size, m.value_size, m.max_entries, m.flags)
        path = bpffs / t.name.lower()
        m.pin(path)
        show = bpftool("map", "show", "pinned", str(path))
        assert show["id"] == info.id
        # bpftool 7.1 names the types it knows and prints the number of newer ones (arena).
        assert show["type"] in (t.name.lower(), int(t)), show["type"]
        assert show["bytes_key"] == m.key_size and show["bytes_value"] == m.value_size
        assert show["max_entries"] == m.max_entries
        again = ebpfmaps.open_pinned(path)
        assert type(again) is type(m) and again.spec.differences(info) == []
        again.close()
    finally:
        m.close()


@pytest.mark.parametrize("t", ISSUE3_TYPES, ids=lambda t: t.keyword)
def test_every_allowed_flag_is_accepted_by_the_kernel(t: MapType) -> None:
    """Each class's allowed_flags mask is checked against the running kernel bit by bit, and a bit
    outside it is refused with InvalidFlags before the syscall."""
    if not map_type_supported(t):
        pytest.skip(f"the running kernel lacks {t.keyword} maps (probe)")
    cls = class_for(t)
    lacking: list[str] = []  # allowed flags the running kernel is too old for (probed)
    for bit in range(32):
        flag = 1 << bit
        kwargs = minimal_kwargs(t)
        if cls.allowed_flags & flag:
            if t == MapType.STRUCT_OPS and flag == BPF_F_LINK and not struct_ops_link_supported():
                lacking.append("BPF_F_LINK (struct_ops links)")
                continue
            if flag == BPF_F_NUMA_NODE:
                kwargs["numa_node"] = 0
            m = ebpfmaps.create(t, flags=flag, **kwargs)  # type: ignore[arg-type]
            if flag & (BPF_F_RDONLY | BPF_F_WRONLY):
                # Access flags shape the creator's fd and are not kept in map_flags (bpf_map_flags_retain_permanent).
                assert not m.info().flags & flag and m.writable == (flag != BPF_F_RDONLY)
            else:
                assert m.info().flags & flag, flag_names(flag)
            m.close()
        elif bit < 17:
            with pytest.raises(InvalidFlags):
                ebpfmaps.create(t, flags=flag, **kwargs)  # type: ignore[arg-type]
    if lacking:
        pytest.skip(f"every other bit checked; the running kernel lacks {', '.join(lacking)} (probe)")


def test_sockmap_sockhash_reuseport_store_sockets_and_return_cookies() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    # A socket in a sockmap is busy for a reuseport array (EBUSY): use its own.
    reuse = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    reuse.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reuse.bind(("127.0.0.1", 0))
    # Established TCP sockets (sockmap has taken them since Linux 4.14; AF_UNIX pairs only since 5.15).
    listener = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(listener.getsockname())
    b, _ = listener.accept()
    listener.close()
    try:
        with ebpfmaps.SockMap(max_entries=4) as sm, ebpfmaps.SockHash(key_type="=Q", max_entries=4) as sh, \
                ebpfmaps.ReuseportSockArray(max_entries=2) as ra:
            sm[0] = udp
            sm[1] = a.fileno()
            assert sm[0] == cookie_of(udp) and sm.cookie(1) == cookie_of(a)
            sh[7] = b
            assert dict(sh.items()) == {7: cookie_of(b)}
            ra[1] = reuse
            assert ra[1] == cookie_of(reuse)
            del sm[0]
            assert sm.lookup(0) is None
        with ebpfmaps.SockMap(value_size=4, max_entries=2) as narrow:
            narrow[0] = udp
            with pytest.raises(NotSupported, match="value_size=8"):
                narrow.cookie(0)
        with pytest.raises(InvalidValueSize):
            ebpfmaps.SockMap(value_size=2, max_entries=2)
        with pytest.raises(InvalidArgument):
            ebpfmaps.SockMap(max_entries=2)[0] = "not a socket"
    finally:
        for s in (udp, reuse, a, b):
            s.close()


def test_prog_array_stores_a_program_and_reads_back_its_id(pin_path: Path) -> None:
    prog_fd = return_zero_program()
    try:
        with ebpfmaps.ProgArray(max_entries=4) as pa:
            pa[2] = prog_fd
            prog_id = pa.program_id(2)
            assert prog_id == pa[2]
            shown = bpftool("prog", "show", "id", str(prog_id))
            assert shown["name"] == "ret0"
            pa.pin(pin_path)
            dump = bpftool("map", "dump", "pinned", str(pin_path))
            assert [int.from_bytes(bytes(int(x, 16) for x in e["value"]), "little") for e in dump] == [prog_id]
            del pa[2]
            assert pa.program_id(2) is None
    finally:
        os.close(prog_fd)


def test_devmap_cpumap_xskmap_values() -> None:
    lo = socket.if_nametoindex("lo")
    with ebpfmaps.DevMap(max_entries=4) as dm, ebpfmaps.DevMap(value_size=8, max_entries=4) as dm8, \
            ebpfmaps.DevMapHash(max_entries=4) as dh:
        dm[0] = "lo"
        dm8[1] = lo
        dh[lo] = "lo"
        assert dm[0] == lo and dm8[1] == DevMapValue(lo, 0) and dict(dh.items()) == {lo: lo}
        with pytest.raises(InvalidArgument):
            dm[1] = "no-such-interface-xyz"
    with ebpfmaps.CpuMap() as cm, ebpfmaps.CpuMap(value_size=8) as cm8:
        assert cm.max_entries == ebpfmaps.possible_cpus()
        cm[0] = 192
        cm8[0] = 64
        assert cm[0] == 192 and cm8[0] == CpuMapValue(64, 0)
        for bad in (0, 16385):
            with pytest.raises(InvalidArgument):
                cm[0] = bad
        with pytest.raises(ebpfmaps.errors.IndexOutOfRange):
            cm[cm.max_entries] = 1
    with ebpfmaps.XskMap(max_entries=2) as xm:
        with pytest.raises(NotSupported):
            xm.lookup(0)  # the kernel refuses syscall reads of AF_XDP sockets


def test_cgroup_array_and_cgroup_storage_with_a_real_cgroup() -> None:
    with cgroup2_dir() as cg:
        fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with ebpfmaps.CgroupArray(max_entries=2) as ca:
                ca[0] = fd
                with pytest.raises(NotSupported):
                    ca.lookup(0)
                del ca[0]
            if not map_type_supported(MapType.CGRP_STORAGE):
                pytest.skip("cgroup array checked; the running kernel lacks cgrp-storage maps (probe)")
            with ebpfmaps.CgrpStorage(value_type=ctypes.c_uint64) as st:
                st[fd] = 99
                assert st[fd] == 99
                del st[fd]
                assert st.lookup(fd) is None
        finally:
            os.close(fd)


def test_local_storages_build_their_btf() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with ebpfmaps.SkStorage(value_type=ctypes.c_uint64, flags=ebpfmaps.maptypes.BPF_F_CLONE) as sk:
            info = sk.info()
            assert info.btf_id and info.btf_key_type_id == 1 and info.btf_value_type_id == 3
            assert info.flags & ebpfmaps.BPF_F_NO_PREALLOC and info.max_entries == 0
            sk[s] = 5
            assert sk[s] == 5 and sk.lookup(s.fileno()) == 5
            btf = bpftool("btf", "dump", "id", str(info.btf_id))
            kinds = [t["kind"] for t in btf["types"]]
            assert kinds == ["INT", "INT", "ARRAY"]
            with pytest.raises(NotSupported):
                list(sk.keys())
        if map_type_supported(MapType.TASK_STORAGE):  # Linux 5.11 (probe)
            with ebpfmaps.TaskStorage(value_size=4) as ts:
                ts.update_pid(os.getpid(), b"live")
                assert ts.lookup_pid(os.getpid()) == b"live"
                ts.delete_pid(os.getpid())
                assert ts.lookup_pid(os.getpid()) is None
        with pytest.raises(InvalidArgument, match="max_entries=0"):
            ebpfmaps.InodeStorage(value_size=8, max_entries=4)
        with pytest.raises(InvalidArgument, match="btf_key_type_id"):
            ebpfmaps.SkStorage(value_size=8, btf=0)
        with pytest.raises(InvalidValueSize):
            ebpfmaps.SkStorage()
    finally:
        s.close()


def test_ring_sizes_and_perf_array_defaults() -> None:
    for good in (PAGE_SIZE, 4 * PAGE_SIZE, 1 << 20):
        with ebpfmaps.RingBufMap(good) as rb:
            assert rb.size == good == rb.info().max_entries
    for bad in (0, 100, PAGE_SIZE + 1, 3 * PAGE_SIZE):
        with pytest.raises(InvalidArgument, match="power of two"):
            ebpfmaps.RingBufMap(bad)
        with pytest.raises(InvalidArgument, match="power of two"):
            ebpfmaps.UserRingBufMap(bad)
    assert round_ring_size(3 * PAGE_SIZE) == 4 * PAGE_SIZE and round_ring_size(1) == PAGE_SIZE
    with ebpfmaps.RingBufMap(max_entries=PAGE_SIZE) as rb:
        with pytest.raises(NotSupported):
            rb.lookup(0)
    with pytest.raises(InvalidArgument):
        ebpfmaps.RingBufMap(PAGE_SIZE, max_entries=2 * PAGE_SIZE)
    with ebpfmaps.PerfEventArray() as pa:
        assert pa.max_entries == ebpfmaps.possible_cpus() and pa.key_size == pa.value_size == 4


def test_struct_ops_and_arena() -> None:
    with ebpfmaps.StructOpsMap("tcp_congestion_ops") as so:
        info = so.info()
        assert info.max_entries == 1 and info.key_size == 4 and info.value_size == so.value_size > 0
        value = so.lookup_bytes(0)
        assert value is not None and len(value) == so.value_size
    with pytest.raises(ebpfmaps.KeyNotFound):
        ebpfmaps.StructOpsMap("no_such_ops_struct")
    if map_type_supported(MapType.ARENA):
        with ebpfmaps.ArenaMap(2) as arena:
            assert arena.info().flags & ebpfmaps.BPF_F_MMAPABLE
            view = arena.view()
            view[PAGE_SIZE + 5] = 42
            assert view[PAGE_SIZE + 5] == 42 and len(view) == 2 * PAGE_SIZE
            view.release()
            # A read-only fd cannot be mapped read-write (and an arena is mapped at one address only):
            # the library's error, not a bare OSError.
            with ebpfmaps.open_by_id(arena.id, readonly=True) as ro, pytest.raises(ebpfmaps.errors.MapError):
                assert isinstance(ro, ebpfmaps.ArenaMap)
                ro.view()
        with pytest.raises(ebpfmaps.errors.MapClosed):
            arena.view()


def test_key_and_size_checks_before_the_syscall() -> None:
    with pytest.raises(InvalidKeySize):
        ebpfmaps.DevMap(key_size=8, max_entries=2)
    with pytest.raises(InvalidValueSize):
        ebpfmaps.CpuMap(value_size=16)
    with pytest.raises(InvalidArgument):
        ebpfmaps.CgroupStorage(value_size=8, max_entries=4)
    with pytest.raises(InvalidKeySize):
        ebpfmaps.CgroupStorage(key_size=4, value_size=8)


@pytest.mark.parametrize("t", [MapType.PROG_ARRAY, MapType.CGROUP_ARRAY, MapType.PERF_EVENT_ARRAY, MapType.DEVMAP,
                               MapType.CPUMAP, MapType.XSKMAP, MapType.SOCKMAP, MapType.REUSEPORT_SOCKARRAY,
                               MapType.ARRAY_OF_MAPS])
def test_index_past_the_end_of_an_index_keyed_map_is_no_element(t: MapType) -> None:
    """As for ArrayMap: an index at or past max_entries is not in the map (``in`` False, lookup None)."""
    if not map_type_supported(t):
        pytest.skip(f"the kernel has no {t.keyword} maps")
    tmpl = ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=2)
    kw = {"max_entries": 2, "inner_map": tmpl} if t is MapType.ARRAY_OF_MAPS else minimal_kwargs(t)
    try:
        with ebpfmaps.create(t, **kw) as m:
            past = m.max_entries + 5
            assert past not in m
            assert m.next_key(past) in (None, 0)  # an index past the end starts the walk over
            if t not in (MapType.XSKMAP, MapType.PERF_EVENT_ARRAY, MapType.CGROUP_ARRAY):  # no syscall reads
                assert m.lookup(past) is None
                assert m.get(past, "absent") == "absent"
    finally:
        tmpl.close()


def test_socket_map_refuses_an_exist_batch_it_could_not_undo() -> None:
    """A socket replaced by a BPF_EXIST batch could not be put back if a later element failed: refused first."""
    with ebpfmaps.SockHash(key_size=4, max_entries=4) as m:
        with pytest.raises(NotSupported):
            m.update_batch([b"\0\0\0\0"], [0], BPF_EXIST)
        with pytest.raises(MapError) as info:  # BPF_NOEXIST is undone by deleting: the kernel decides
            m.update_batch([b"\0\0\0\0"], [0], BPF_NOEXIST)  # (fd 0 is no socket)
        assert not isinstance(info.value, NotSupported)
        assert len(m) == 0
