"""Input from outside the library gets the library's errors, with the reason, before any syscall where it
can be checked; errnos the kernel overloads get the reading the kernel's own selftests expect."""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import math
import os
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from ebpfmaps_shim import MapProvider, register_provider, unregister_provider
from ebpfmaps_shim.errors import ProviderError

import ebpfmaps
from ebpfmaps import BPF_ANY, BPF_EXIST, BPF_NOEXIST, errors
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps.maplike import MapLike
from ebpfmaps.readers._shared import Deadline, check_timeout, timeout_ms
from ebpfmaps.spec import MapSpec
from tests.conftest import ROOT
from tests.shim_helpers import next_type_id

SO_COOKIE = 57


def _cookie(sock: socket.socket) -> int:
    return int(struct.unpack("=Q", sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8))[0])


# ---------------------------------------------------------------------------------- arrays of maps
def test_array_of_maps_delete_batch_falls_back_to_single_deletes() -> None:
    with ebpfmaps.ArrayMap(value_size=4, max_entries=2) as inner, \
            ebpfmaps.ArrayOfMaps(max_entries=4, inner_map=inner) as outer:
        outer[0] = inner
        outer[2] = inner
        assert outer.delete_batch([0, 1, 2]) == 2  # the empty slot 1 is skipped
        assert outer.inner_ids() == {}


def test_array_of_maps_update_flags_are_named_as_the_problem() -> None:
    with ebpfmaps.ArrayMap(value_size=4, max_entries=2) as inner, \
            ebpfmaps.ArrayOfMaps(max_entries=4, inner_map=inner) as outer:
        for flags in (BPF_NOEXIST, BPF_EXIST):
            with pytest.raises(errors.InvalidFlags, match="only BPF_ANY") as exc:
                outer.update(2, inner, flags)
            assert exc.value.errno is None  # refused before the syscall
            with pytest.raises(errors.InvalidFlags):
                outer.update_batch([2], [inner], flags)
        assert outer.inner_id(2) is None
        outer.update(2, inner, BPF_ANY)
        assert outer.inner_id(2) == inner.id


def test_map_of_maps_lookup_checks_its_flags() -> None:
    with ebpfmaps.ArrayMap(value_size=4, max_entries=2) as inner, \
            ebpfmaps.ArrayOfMaps(max_entries=4, inner_map=inner) as outer:
        outer[0] = inner
        with pytest.raises(errors.InvalidFlags):
            outer.lookup(0, flags=12345)
        got = outer.lookup(0, flags=0)
        assert got is not None
        got.close()


@pytest.mark.parametrize("bad", [2**70, 2**32, -1])
def test_map_of_maps_value_that_is_no_fd_is_a_library_error(bad: int) -> None:
    with ebpfmaps.ArrayMap(value_size=4, max_entries=2) as inner, \
            ebpfmaps.ArrayOfMaps(max_entries=4, inner_map=inner) as outer:
        with pytest.raises(errors.InvalidArgument, match="not an open file descriptor"):
            outer[3] = bad


# ---------------------------------------------------------------------------------- argument types
@pytest.mark.parametrize("field", ["key_size", "value_size", "max_entries", "flags", "map_extra", "numa_node"])
@pytest.mark.parametrize("bad", [1.5, 4.0, True, "4"], ids=["float", "whole-float", "bool", "str"])
@pytest.mark.parametrize("kind", ["hash", "array", "lpm-trie", "stack-trace", "sk-storage", "sockmap"])
def test_integer_arguments_of_create_are_type_checked(kind: str, field: str, bad: Any) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        ebpfmaps.create(kind, **{field: bad})
    assert exc.value.errno is None


def test_reader_timeouts_inf_and_none_wait_forever_bad_ones_are_refused() -> None:
    assert timeout_ms(math.inf) == timeout_ms(None) == -1
    assert check_timeout(float("inf")) is None
    assert Deadline(math.inf).remaining() is None and not Deadline(math.inf).expired()
    assert timeout_ms(10**12) == 2**31 - 1  # longer than one epoll wait: the deadline waits again
    for bad in (-1, -0.5, float("nan"), float("-inf"), "1", True):
        with pytest.raises(errors.InvalidArgument):
            timeout_ms(bad)  # type: ignore[arg-type]
    with ebpfmaps.RingBufMap(max_entries=4096) as rb, ebpfmaps.RingBufReader(rb, callback=lambda b: None) as r:
        with pytest.raises(errors.InvalidArgument):
            r.poll(timeout=float("nan"))
        with pytest.raises(errors.InvalidArgument):
            r.poll(timeout=-1)
        assert r.poll(timeout=0) == 0


class _HugeStore(MapProvider):
    transforms_values = True
    answer: Any = None

    def __init__(self) -> None:
        self.custom_map_type = next_type_id()

    def create_map_notify(self, spec: MapSpec) -> int | None:
        return self.answer  # type: ignore[no-any-return]

    def update_element_notify(self, m: Any, key: bytes, value: bytes, flags: int) -> bytes | None:
        return None

    def find_element_notify(self, m: Any, key: bytes, stored: bytes) -> bytes | None:
        return stored


def test_provider_stored_size_beyond_u32_is_a_provider_error() -> None:
    p = register_provider(_HugeStore())
    try:
        for answer in (2**40, 2**32):
            p.answer = answer
            with pytest.raises(ProviderError, match="stored value size"):
                ebpfmaps.create(p.custom_map_type, key_size=4, value_size=8, max_entries=2)
    finally:
        unregister_provider(p)


def test_flags_none_means_no_flags_everywhere() -> None:
    with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=4) as m:
        m.update(b"aaaa", b"1111", None)  # type: ignore[arg-type]
        assert m.update_batch([b"bbbb"], [b"2222"], None) == 1  # type: ignore[arg-type]
        assert m.lookup(b"aaaa", None) == b"1111"  # type: ignore[arg-type]
        m.delete(b"aaaa")
        for bad in (1.0, "1", True):
            with pytest.raises(errors.InvalidFlags):
                m.update(b"aaaa", b"1111", bad)  # type: ignore[arg-type]
            with pytest.raises(errors.InvalidFlags):
                m.update_batch([b"aaaa"], [b"1111"], bad)  # type: ignore[arg-type]
            with pytest.raises(errors.InvalidFlags):
                m.lookup(b"bbbb", bad)  # type: ignore[arg-type]
        assert m.to_dict() == {b"bbbb": b"2222"}


def test_flags_none_on_an_extensible_map() -> None:
    p = register_provider(_HugeStore())
    try:
        p.answer = None
        m = ebpfmaps.create(p.custom_map_type, key_size=4, value_size=8, max_entries=4)
        try:
            m.update(b"aaaa", bytes(8), None)
            assert m.update_batch([b"bbbb"], [bytes(8)], None) == 1
            assert m.lookup(b"aaaa", None) == bytes(8)
            with pytest.raises(errors.InvalidFlags):
                m.update(b"aaaa", bytes(8), 1.0)
        finally:
            m.close()
    finally:
        unregister_provider(p)


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                          check=True, timeout=120)


def test_out_of_file_descriptors_is_a_library_error(pin_path: Path) -> None:
    with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=4) as m:
        m.pin(pin_path)
    out = _run_python(f"""
        import os, resource
        import ebpfmaps
        from ebpfmaps import errors
        from ebpfmaps import HashMap, RingBufReader  # load on first use: the readers and the hash family

        rb = ebpfmaps.RingBufMap(max_entries=4096)
        raw = os.dup(rb.fd)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest = os.dup(0); os.close(lowest)
        for extra in range(4):  # no descriptor left, then one, two, three
            results = []
            for name, make in (("reader", lambda: ebpfmaps.RingBufReader(rb)),
                               ("reader-fd", lambda: ebpfmaps.RingBufReader(raw)),
                               ("open_pinned", lambda: ebpfmaps.open_pinned({str(pin_path)!r})),
                               ("create", lambda: ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=4))):
                resource.setrlimit(resource.RLIMIT_NOFILE, (lowest + extra, hard))
                try:
                    obj = make()
                except errors.TooManyOpenFiles as exc:
                    assert isinstance(exc, OSError) and exc.errno == 24, exc
                    assert "out of file descriptors" in str(exc), exc
                    results.append(name + ":emfile")
                except BaseException as exc:
                    results.append(name + ":" + type(exc).__name__ + ":" + str(exc))
                else:
                    results.append(name + ":ok")
                    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                    obj.close()
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            print(extra, " ".join(results))
    """)
    lines = out.stdout.splitlines()
    assert len(lines) == 4, out.stdout + out.stderr
    first = lines[0].split()[1:]
    assert first == ["reader:emfile", "reader-fd:emfile", "open_pinned:emfile", "create:emfile"], out.stdout
    for line in lines:
        for result in line.split()[1:]:
            assert result.endswith((":emfile", ":ok")), out.stdout


def test_unpin_of_a_directory_is_a_library_error(bpffs: Path) -> None:
    d = bpffs / "adir"
    d.mkdir()
    with pytest.raises(errors.InvalidArgument, match="is a directory"):
        ebpfmaps.unpin(d)
    assert d.is_dir()


# ---------------------------------------------------------------------------------- pin paths
def test_pin_path_with_a_nul_byte_is_refused(bpffs: Path) -> None:
    with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=4) as m:
        with pytest.raises(errors.InvalidArgument, match="NUL"):
            m.pin(str(bpffs) + "/p\x009")
        assert not [name for name in os.listdir(bpffs) if name == "p"] and m.pin_path is None
    with pytest.raises(errors.InvalidArgument, match="NUL"):
        ebpfmaps.open_pinned(str(bpffs) + "/p\x009")
    with pytest.raises(errors.InvalidArgument, match="NUL"):
        ebpfmaps.unpin(str(bpffs) + "/p\x009")


def test_pin_paths_with_dotdot_or_symlinks_out_of_bpffs_say_why(bpffs: Path, tmp_path: Path) -> None:
    (bpffs / "link_out").symlink_to(tmp_path)
    with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=4) as m:
        with pytest.raises(errors.InvalidArgument, match="does not end in a pin name"):
            m.pin(bpffs / "link_out" / "..")
        with pytest.raises(errors.NotOnBpffs, match="resolves to"):
            m.pin(bpffs / "link_out" / "x")
        with pytest.raises(errors.NotOnBpffs, match="resolves to"):
            m.pin(f"{bpffs}/link_out/../x")  # the kernel resolves the symlink before the ".."
        for op in (ebpfmaps.open_pinned, ebpfmaps.unpin):
            with pytest.raises(errors.InvalidArgument, match="does not end in a pin name"):
                op(f"{bpffs}/link_out/..")
        assert not any(tmp_path.iterdir())
        # ".." that stays on the bpffs is fine.
        (bpffs / "sub").mkdir()
        m.pin(f"{bpffs}/sub/../ok")
        assert (bpffs / "ok").exists()
        ebpfmaps.unpin(bpffs / "ok")


def test_pin_path_through_a_missing_directory_names_it(bpffs: Path) -> None:
    path = f"{bpffs}/nosuchdir/../x"
    with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=4) as m:
        with pytest.raises(errors.NotOnBpffs, match=f"directory {bpffs}/nosuchdir does not exist") as exc:
            m.pin(path)
        assert not isinstance(exc.value, KeyError)
    with pytest.raises(errors.PinNotFound, match=f"directory {bpffs}/nosuchdir does not exist"):
        ebpfmaps.open_pinned(path)


# ---------------------------------------------------------------------------------- closed / out of range
def test_closed_array_refuses_len() -> None:
    a = ebpfmaps.ArrayMap(value_size=4, max_entries=4)
    assert len(a) == 4
    a.close()
    with pytest.raises(errors.MapClosed):
        len(a)


def test_array_pop_item_out_of_range_or_closed_raises() -> None:
    a = ebpfmaps.ArrayMap(value_size=4, max_entries=4)
    with pytest.raises(errors.IndexOutOfRange):
        a.pop_item(10, "default")
    a.close()
    for index in (1, 10):
        with pytest.raises(errors.MapClosed):
            a.pop_item(index, "default")


# ---------------------------------------------------------------------------------- kernel errno readings
@pytest.mark.parametrize("cls", [ebpfmaps.ArrayMap, ebpfmaps.PerCpuArrayMap])
def test_typed_array_index_out_of_range_is_index_out_of_range(cls: type[ebpfmaps.Map]) -> None:
    with cls(key_type=ctypes.c_int, value_type=ctypes.c_uint32, max_entries=4) as a:
        value: Any = 1 if not cls.per_cpu else [1] * ebpfmaps.possible_cpus()
        for index in (-1, 4, 2**31 - 1):
            with pytest.raises(errors.IndexOutOfRange, match="outside") as exc:
                a[index] = value
            assert exc.value.errno == errno.E2BIG
            assert not isinstance(exc.value, errors.OutOfMemory)
        a[3] = value


def test_full_lpm_trie_is_out_of_memory_like_a_full_hash() -> None:
    with ebpfmaps.LpmTrieMap(family="ipv4", value_size=4, max_entries=2) as lpm:
        lpm[ipaddress.ip_network("10.0.0.0/8")] = b"aaaa"
        lpm[ipaddress.ip_network("11.0.0.0/8")] = b"aaaa"
        with pytest.raises(errors.OutOfMemory, match="full") as exc:
            lpm[ipaddress.ip_network("12.0.0.0/8")] = b"aaaa"
        assert exc.value.errno == errno.ENOSPC
        with pytest.raises(errors.OutOfMemory):
            lpm.update_batch([ipaddress.ip_network("13.0.0.0/8")], [b"aaaa"])
        assert len(lpm) == 2


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected TCP sockets on loopback: sockmap takes established TCP sockets on every kernel
    (AF_UNIX pairs only since Linux 5.15)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    return a, b


def test_sockmap_len_and_keys_count_only_occupied_slots() -> None:
    a, b = _tcp_pair()
    try:
        with ebpfmaps.SockMap(max_entries=4) as sm:
            assert len(sm) == 0 and list(sm.keys()) == []
            sm[1] = a
            assert len(sm) == 1
            assert list(sm.keys()) == [1]
            assert list(sm.items()) == [(1, _cookie(a))]
            sm[3] = b
            assert sorted(sm) == [1, 3]
            assert sm.clear() == 2 and len(sm) == 0
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("cls", [ebpfmaps.SockMap, ebpfmaps.SockHash])
def test_socket_map_lookup_with_4_byte_values_explains_the_kernel_rule(cls: type[ebpfmaps.Map]) -> None:
    a, _b = _tcp_pair()
    try:
        with cls(key_type="=I", value_size=4, max_entries=4) as sm:
            sm[1] = a  # writing works with 4-byte values
            with pytest.raises(errors.NotSupported, match="value_size is 8") as exc:
                sm.lookup(1)
            assert exc.value.errno is None  # said before the syscall
            with pytest.raises(errors.NotSupported, match="value_size is 8"):
                1 in sm  # noqa: B015 - the membership test is what is checked
            if cls is ebpfmaps.SockMap:
                with pytest.raises(errors.NotSupported, match="value_size is 8"):
                    len(sm)
            del sm[1]
    finally:
        a.close()
        _b.close()


def test_kernel_answers_enospc_to_4_byte_sockmap_lookups() -> None:
    # The rule the error above explains, checked on this kernel through the bare syscall.
    a, _b = _tcp_pair()
    try:
        with ebpfmaps.SockMap(value_size=4, max_entries=2) as sm:
            sm[0] = a
            buf = (ctypes.c_char * 4)()
            assert _maps.map_lookup_elem(sm.handle, struct.pack("=I", 0), buf) == -errno.ENOSPC
    finally:
        a.close()
        _b.close()


# ---------------------------------------------------------------------------------- next_key
def test_next_key_follows_the_kernel() -> None:
    with ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_size=4, max_entries=8) as m:
        assert m.next_key() is None  # empty
        for k in (5, 6, 7):
            m[k] = b"aaaa"
        first = m.next_key()
        walk = [first]
        while walk[-1] is not None:
            walk.append(m.next_key(walk[-1]))
        assert sorted(walk[:-1]) == [5, 6, 7] and walk[-1] is None
        assert m.next_key(99) == first  # an absent key: the first key (htab_map_get_next_key)
        assert isinstance(first, int)  # decoded through the key codec
    with ebpfmaps.ArrayMap(value_size=4, max_entries=3) as a:
        assert [a.next_key(), a.next_key(0), a.next_key(1), a.next_key(2), a.next_key(7)] == [0, 1, 2, None, 0]
    with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=2) as raw:
        raw[b"abcd"] = b"aaaa"
        assert raw.next_key() == b"abcd" and raw.next_key(b"abcd") is None
        with pytest.raises(errors.InvalidKeySize):
            raw.next_key(b"abc")
        raw.close()
        with pytest.raises(errors.MapClosed):
            raw.next_key()
    with ebpfmaps.QueueMap(value_size=4, max_entries=2) as q:
        with pytest.raises(errors.NotSupported):
            q.next_key()


def test_next_key_on_extensible_maps_and_the_protocol() -> None:
    assert "next_key" in dir(MapLike)
    p = register_provider(_HugeStore())
    try:
        m = ebpfmaps.create(p.custom_map_type, key_type="=I", value_size=8, max_entries=4)
        try:
            assert isinstance(m, MapLike)
            assert m.next_key() is None
            m[3] = bytes(8)
            m[9] = bytes(8)
            first = m.next_key()
            assert first in (3, 9)
            second = m.next_key(first)
            assert {first, second} == {3, 9} and m.next_key(second) is None
            assert m.next_key(1234) == first
        finally:
            m.close()
        with pytest.raises(errors.MapClosed):
            m.next_key()
    finally:
        unregister_provider(p)
