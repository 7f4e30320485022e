"""The typed map syscall layer: range checks before any syscall, errors that name the libbpf call,
and feature probes that cache only definite answers."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import ebpfmaps
from ebpfmaps import errors, features
from ebpfmaps._libbpf import maps as _maps
from ebpfmaps.maps.array import ArrayMap
from ebpfmaps.maps.hash import HashMap
from ebpfmaps.maptypes import MapType
from tests.kernel_features import require_map_type

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOO_BIG = 2**32 + 16  # ctypes would pass it to a u32 as 16


def _map_count() -> int:
    return len(ebpfmaps.factory.map_ids())


@pytest.mark.parametrize("field", ["max_entries", "key_size", "value_size"])
@pytest.mark.parametrize("make", [
    lambda **kw: ArrayMap(**{"key_size": 4, "value_size": 8, "max_entries": 4, **kw}),
    lambda **kw: HashMap(**{"key_size": 4, "value_size": 8, "max_entries": 4, **kw}),
    lambda **kw: ebpfmaps.create("hash", **{"key_size": 4, "value_size": 8, "max_entries": 4, **kw}),
], ids=["ArrayMap", "HashMap", "create"])
def test_u32_fields_are_range_checked_before_the_syscall(make: object, field: str) -> None:
    # A name of its own: other processes on the machine may create and drop maps meanwhile.
    name = f"rc_{os.getpid() % 100000}_{field[:3]}"
    with pytest.raises(errors.InvalidArgument) as exc:
        make(**{field: TOO_BIG, "name": name})  # type: ignore[operator]
    assert exc.value.errno is None  # refused by the library, not the kernel
    assert str(TOO_BIG) in str(exc.value)
    assert not [m for m in ebpfmaps.list_maps() if m.name == name]


@pytest.mark.parametrize("field", ["max_entries", "key_size", "value_size", "flags", "numa_node", "ifindex",
                                   "btf_key_type_id", "btf_value_type_id", "btf_vmlinux_value_type_id"])
def test_map_create_checks_every_u32(field: str) -> None:
    args = {"max_entries": 1, "key_size": 4, "value_size": 4}
    kwargs = {}
    if field in args:
        args[field] = TOO_BIG
    else:
        kwargs[field] = TOO_BIG
    with pytest.raises(errors.InvalidArgument, match=field.replace("flags", "map flags")) as exc:
        _maps.map_create(int(MapType.HASH), None, args["key_size"], args["value_size"], args["max_entries"], **kwargs)
    assert exc.value.errno is None
    with pytest.raises(errors.InvalidArgument):
        _maps.map_create(int(MapType.HASH), None, 4, 4, -1)


def test_map_extra_is_u64() -> None:
    with pytest.raises(errors.InvalidArgument, match="64-bit") as exc:
        _maps.map_create(int(MapType.BLOOM_FILTER), None, 0, 4, 4, map_extra=2**64)
    assert exc.value.errno is None
    require_map_type(MapType.BLOOM_FILTER)
    h = _maps.map_create(int(MapType.BLOOM_FILTER), None, 0, 4, 4, map_extra=3)
    h.close()


def test_errors_name_the_libbpf_call() -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        _maps.map_create(int(MapType.HASH), None, 0, 4, 4)  # a hash needs a key
    assert exc.value.errno == errno.EINVAL and exc.value.op == "create" and exc.value.call == "bpf_map_create"
    with pytest.raises(errors.KeyNotFound) as nf:
        _maps.map_get_fd_by_id(2**32 - 1)
    assert nf.value.call == "bpf_map_get_fd_by_id"
    # The keyword is optional and the old signatures still work.
    assert errors.MapError("x").call is None
    assert errors.from_errno(errno.EPERM, "update").call is None


def test_handles_are_entered_and_closed_handles_refused() -> None:
    m = HashMap(4, 4, 4)
    h = m.handle
    info = _maps.map_info(h)
    assert info.max_entries == 4 and not h.users
    m.close()
    with pytest.raises(errors.MapClosed):
        _maps.map_info(h)
    with pytest.raises(errors.MapClosed):
        _maps.map_freeze(h)


def _run(code: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                          check=check, timeout=120)


def test_probe_out_of_descriptors_is_not_cached() -> None:
    out = _run("""
        import os, resource
        from ebpfmaps import errors, features
        from ebpfmaps.maptypes import MapType

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # The lowest free descriptor becomes the limit: every new fd fails with EMFILE.
        lowest = os.dup(0); os.close(lowest)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, hard))
        try:
            features.map_type_supported(MapType.QUEUE)
        except errors.MapError as exc:
            print("first", type(exc).__name__, exc.errno)
        else:
            print("first answered")
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        print("second", features.map_type_supported(MapType.QUEUE))
    """)
    lines = out.stdout.splitlines()
    assert lines == ["first TooManyOpenFiles 24", "second True"], out.stdout + out.stderr


def test_unprivileged_users_see_permission_denied() -> None:
    # uid 65534 with no capabilities at all, set up by setpriv (util-linux) before Python starts.
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged uid")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    code = textwrap.dedent("""
        from ebpfmaps import errors, features
        from ebpfmaps.maps.bloom import BloomFilterMap
        from ebpfmaps.maps.hash import HashMap
        from ebpfmaps.maps.lpm import LpmTrieMap
        from ebpfmaps.maps.queue import QueueMap
        from ebpfmaps.maps.ringbuf import RingBufMap

        makers = {
            "hash": lambda: HashMap(key_size=4, value_size=4, max_entries=4),
            "queue": lambda: QueueMap(value_size=4, max_entries=4),
            "bloom": lambda: BloomFilterMap(value_size=4, max_entries=4),
            "lpm": lambda: LpmTrieMap(family="ipv4", value_size=4, max_entries=4),
            "ringbuf": lambda: RingBufMap(max_entries=4096),
        }
        for name, make in makers.items():
            try:
                make().close()
            except errors.MapError as exc:
                print(name, type(exc).__name__, "names CAP_BPF" if "CAP_BPF" in str(exc) else str(exc))
            else:
                print(name, "created")
        # Nothing was cached as unsupported.
        print("cached", sorted(int(t) for t in features._map_type_cache))
    """)
    out = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                          sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    lines = out.stdout.splitlines()
    assert lines[:5] == [f"{name} PermissionDenied names CAP_BPF" for name in ("hash", "queue", "bloom", "lpm",
                                                                               "ringbuf")], out.stdout + out.stderr
    assert lines[5] == "cached []", out.stdout


def test_probe_answers_are_cached() -> None:
    features.map_type_supported.cache_clear()  # type: ignore[attr-defined]
    assert features.map_type_supported(MapType.HASH) is True
    assert features._map_type_cache[int(MapType.HASH)] is True
