"""The ebpfmaps command against real pinned maps, cross-checked with bpftool and the library."""

from __future__ import annotations

import ctypes
import json
import os
import pty
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import ebpfmaps
from ebpfmaps.maptypes import MapType
from tests.conftest import ROOT, bpftool_json
from tests.kernel_features import require_map_type
from tests.test_perf import PerfProducer, on_cpu, online_cpus
from tests.test_ringbuf import Producer, check_record
from tests.test_ringbuf import producer as producer

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_KERNEL = 0, 1, 2, 3
ENV = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="200")


def cli(*args: str, check: bool = True, code: int | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "ebpfmaps.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=180)
    if code is not None:
        assert proc.returncode == code, f"ebpfmaps {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    elif check and proc.returncode != 0:
        raise AssertionError(f"ebpfmaps {' '.join(args)} failed: {proc.stdout}\n{proc.stderr}")
    return proc


def cli_json(*args: str) -> object:
    return json.loads(cli(*args, "--json").stdout)


def bpftool_bytes(values: list[str]) -> bytes:
    return bytes(int(v, 16) for v in values)


# ------------------------------------------------------------------ entries
def test_create_set_get_dump_del(pin_path: Path) -> None:
    out = cli("create", "hash", str(pin_path), "--key-size", "4", "--value-size", "8", "--max-entries", "16",
              "--name", "cli_t", "--flag", "no_prealloc").stdout
    assert "pinned at" in out
    info = cli_json("show", str(pin_path))
    assert isinstance(info, dict)
    assert info["type"] == "hash" and info["name"] == "cli_t" and info["flags"] == ["NO_PREALLOC"]
    assert info["key_size"] == 4 and info["value_size"] == 8 and info["max_entries"] == 16
    assert info["pinned"] == [str(pin_path)]
    cli("set", str(pin_path), "5", "77", "-k", "u32", "-v", "u64")
    cli("set", str(pin_path), "0x06000000", "0x0100000000000000")  # raw hex bytes
    assert cli("get", str(pin_path), "5", "-k", "u32", "-v", "u64").stdout.strip() == "77"
    # The library and bpftool see what the CLI wrote.
    m = ebpfmaps.open_pinned(pin_path, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
    assert dict(m.items()) == {5: 77, 6: 1}
    dump = bpftool_json("map", "dump", "pinned", str(pin_path))
    assert isinstance(dump, list) and len(dump) == 2
    rows = cli_json("dump", str(pin_path), "-k", "u32", "-v", "u64")
    assert isinstance(rows, list) and {r["key"]: r["value"] for r in rows} == {5: 77, 6: 1}
    refused = cli("set", str(pin_path), "5", "1", "-k", "u32", "-v", "u64", "--mode", "noexist", code=EXIT_KERNEL)
    assert "KeyExists" in refused.stderr
    assert m[5] == 77  # the refused write changed nothing
    cli("del", str(pin_path), "5", "-k", "u32")
    assert 5 not in m
    cli("get", str(pin_path), "5", "-k", "u32", code=EXIT_NOT_FOUND)
    m.close()
    cli("unpin", str(pin_path))
    assert not pin_path.exists()


def test_plain_integers_without_types(pin_path: Path) -> None:
    """``set PATH 1 100``: integers in host byte order sized to the key and value."""
    with ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=8) as m:
        m.pin(pin_path)
        cli("set", str(pin_path), "1", "100")
        cli("set", str(pin_path), "2", "-1")
        dump = bpftool_json("map", "dump", "pinned", str(pin_path))
        assert isinstance(dump, list)
        got = {bpftool_bytes(e["key"]): bpftool_bytes(e["value"]) for e in dump}
        assert got == {struct.pack("=I", 1): struct.pack("=Q", 100), struct.pack("=I", 2): struct.pack("=q", -1)}
        assert cli("get", str(pin_path), "1").stdout.strip() == struct.pack("=Q", 100).hex(" ")
        assert cli_json("get", str(pin_path), "1") == {"key": "0x01000000", "value": "0x6400000000000000"}
        # Wrong sizes and bad syntax are usage errors, refused before any write.
        bad = cli("set", str(pin_path), "0x0102", "1", code=EXIT_USAGE)
        assert "2 bytes" in bad.stderr and "4 bytes" in bad.stderr
        cli("set", str(pin_path), "3", "zz", code=EXIT_USAGE)
        cli("set", str(pin_path), "4294967296", "1", code=EXIT_USAGE)
        assert len(m) == 2


def test_getnext_and_streamed_dump_formats(pin_path: Path) -> None:
    n = 20_000
    with ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=n) as m:
        m.update_batch(list(range(n)), [k * 7 for k in range(n)])
        m.pin(pin_path)
        rows = cli_json("dump", str(pin_path), "-k", "u32", "-v", "u64")
        assert isinstance(rows, list) and {r["key"]: r["value"] for r in rows} == {k: k * 7 for k in range(n)}
        lines = cli("dump", str(pin_path), "--jsonl", "-k", "u32", "-v", "u64").stdout.splitlines()
        assert len(lines) == n and json.loads(lines[0])["value"] == json.loads(lines[0])["key"] * 7
        typed = cli_json("dump", str(pin_path))  # no -k/-v: the map's BTF types (u32, u64), as bpftool formats them
        assert isinstance(typed, list) and len(typed) == n
        tool = bpftool_json("map", "dump", "pinned", str(pin_path))
        assert isinstance(tool, list)
        assert ({(r["key"], r["value"]) for r in typed}
                == {(e["formatted"]["key"], e["formatted"]["value"]) for e in tool} == {(k, k * 7) for k in range(n)})
        table = cli("dump", str(pin_path), "-k", "u32", "-v", "u64").stdout.splitlines()  # piped: plain rows
        assert table[0].split() == ["key", "value"] and table[-1] == f"{n} entries" and len(table) == n + 2
        first = cli("getnext", str(pin_path), "-k", "u32").stdout.strip()
        after = cli_json("getnext", str(pin_path), first, "-k", "u32")
        assert isinstance(after, dict) and after["key"] == int(first) and after["next_key"] in m
    with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=2) as empty:
        empty.pin(pin_path.with_name(pin_path.name + "_e"))
        assert cli_json("dump", str(pin_path.with_name(pin_path.name + "_e"))) == []
        cli("getnext", str(pin_path.with_name(pin_path.name + "_e")), code=EXIT_NOT_FOUND)


def test_lpm_trie_keys_as_cidr(pin_path: Path) -> None:
    cli("create", "lpm_trie", str(pin_path), "--key-size", "8", "--value-size", "4", "--max-entries", "16",
        "--flag", "no_prealloc")
    cli("set", str(pin_path), "10.0.0.0/8", "7", "-v", "u32")
    cli("set", str(pin_path), "0x180000000a010200", "9", "-v", "u32")  # raw: prefixlen 24, 10.1.2.0
    assert cli("get", str(pin_path), "10.1.2.0/24", "-v", "u32").stdout.strip() == "9"
    rows = cli_json("dump", str(pin_path), "-v", "u32")
    assert isinstance(rows, list) and {r["key"]: r["value"] for r in rows} == {"10.0.0.0/8": 7, "10.1.2.0/24": 9}
    tool = bpftool_json("map", "dump", "pinned", str(pin_path))
    assert isinstance(tool, list)
    assert {bpftool_bytes(e["key"]) for e in tool} == {struct.pack("=I", 8) + bytes([10, 0, 0, 0]),
                                                       struct.pack("=I", 24) + bytes([10, 1, 2, 0])}
    cli("set", str(pin_path), "10.0.0.1/8", "1", code=EXIT_USAGE)  # host bits set: refused, not truncated
    cli("del", str(pin_path), "10.0.0.0/8")
    cli("get", str(pin_path), "10.0.0.0/8", code=EXIT_NOT_FOUND)


def test_maps_of_maps(bpffs: Path) -> None:
    inner, outer = bpffs / "inner", bpffs / "outer"
    cli("create", "array", str(inner), "--value-size", "8", "--max-entries", "4")
    cli("create", "array_of_maps", str(outer), "--max-entries", "4", "--inner-map", str(inner))
    inner_id = cli_json("show", str(inner))["id"]  # type: ignore[index]
    cli("set", str(outer), "1", str(inner))
    cli("set", str(outer), "2", f"id:{inner_id}")
    rows = cli_json("dump", str(outer))
    assert rows == [{"key": 1, "value": inner_id}, {"key": 2, "value": inner_id}]
    assert cli("get", str(outer), "2").stdout.strip() == str(inner_id)
    tool = bpftool_json("map", "dump", "pinned", str(outer))
    assert isinstance(tool, list)
    assert [struct.unpack("=I", bpftool_bytes(e["value"]))[0] for e in tool] == [inner_id] * 2
    cli("set", str(outer), "3", "0x01", code=EXIT_USAGE)
    cli("del", str(outer), "1")
    assert cli_json("dump", str(outer)) == [{"key": 2, "value": inner_id}]


def test_queue_and_stack(bpffs: Path) -> None:
    q = bpffs / "q"
    cli("create", "queue", str(q), "--value-size", "4", "--max-entries", "2")
    cli("push", str(q), "7", "-v", "u32")
    cli("push", str(q), "8")
    cli("push", str(q), "9", code=EXIT_KERNEL)  # full
    cli("push", str(q), "9", "--overwrite")  # drops the oldest
    assert cli("peek", str(q), "-v", "u32").stdout.strip() == "8"
    assert "pop" in cli("dump", str(q), code=EXIT_USAGE).stderr
    assert "peek" in cli("get", str(q), "1", code=EXIT_USAGE).stderr
    assert cli_json("pop", str(q), "--all", "-v", "u32") == [{"value": 8}, {"value": 9}]
    cli("pop", str(q), code=EXIT_NOT_FOUND)
    s = bpffs / "s"
    cli("create", "stack", str(s), "--value-size", "8", "--max-entries", "4")
    for v in ("1", "2", "3"):
        cli("push", str(s), v, "-v", "u64")
    assert cli("pop", str(s), "-n", "2", "-v", "u64").stdout.split() == ["3", "2"]
    with ebpfmaps.open_pinned(s, value_type=ctypes.c_uint64) as stack:
        assert stack.peek() == 1  # type: ignore[attr-defined]


def test_bloom_filter(bpffs: Path) -> None:
    require_map_type(MapType.BLOOM_FILTER)
    bf = bpffs / "bf"
    cli("create", "bloom_filter", str(bf), "--value-size", "4", "--max-entries", "16", "--map-extra", "3")
    cli("push", str(bf), "0x0a000001")
    cli("peek", str(bf), "0x0a000001")
    with ebpfmaps.open_pinned(bf) as bloom:
        assert struct.pack("=I", 0x0100000A) in bloom


def test_percpu_values(pin_path: Path) -> None:
    ncpus = ebpfmaps.possible_cpus()
    cli("create", "percpu_hash", str(pin_path), "--key-size", "4", "--value-size", "8", "--max-entries", "4")
    cli("set", str(pin_path), "1", "5", "-k", "u32", "-v", "u64")  # one value: every CPU
    per_cpu = ",".join(str(i) for i in range(ncpus))
    cli("set", str(pin_path), "2", per_cpu, "-k", "u32", "-v", "u64")
    assert cli_json("get", str(pin_path), "1", "-k", "u32", "-v", "u64") == {"key": 1, "value": [5] * ncpus}
    tool = bpftool_json("map", "lookup", "pinned", str(pin_path), "key", "2", "0", "0", "0")
    assert isinstance(tool, dict)
    assert [struct.unpack("=Q", bpftool_bytes(v["value"]))[0] for v in tool["values"]] == list(range(ncpus))
    too_many = ",".join(["1"] * (ncpus + 1))
    cli("set", str(pin_path), "3", too_many, "-k", "u32", "-v", "u64", code=EXIT_USAGE)


# ------------------------------------------------------------------ maps
def test_list_and_show_share_one_schema(pin_path: Path) -> None:
    name = f"cli_{os.getpid()}"[:15]  # unique: other suites may run the same test at the same time
    with ebpfmaps.ArrayMap(value_size=4, max_entries=3, name=name) as m:
        m.pin(pin_path)
        listed = cli_json("list", "--type", "array", "--pins")
        assert isinstance(listed, list)
        mine = [r for r in listed if r["id"] == m.id]
        assert len(mine) == 1 and mine[0]["name"] == name and mine[0]["max_entries"] == 3
        assert mine[0]["pinned"] == [str(pin_path)]
        shown = cli_json("show", f"id:{m.id}", "--pins")
        assert shown == mine[0]
        assert cli_json("show", f"name:{name}") == dict(mine[0], pinned=None)
        assert mine[0]["flags"] == [] and shown["flags"] == []  # type: ignore[index]
        assert all(set(r) == set(mine[0]) for r in listed)
        tool = bpftool_json("map", "show", "id", str(m.id))
        assert isinstance(tool, dict) and tool["name"] == name and tool["max_entries"] == 3
        plain = cli("list", "--name", name).stdout.splitlines()
        assert plain[0].split()[:3] == ["id", "type", "name"] and plain[1].split()[:3] == [str(m.id), "array", name]


def test_freeze_and_pin_by_id(bpffs: Path) -> None:
    with ebpfmaps.ArrayMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=2) as m:
        m[0] = 11
        again = bpffs / "again"
        assert cli_json("pin", f"id:{m.id}", str(again))["pinned"] == [str(again)]  # type: ignore[index]
        assert cli_json("freeze", str(again))["frozen"] is True  # type: ignore[index]
        assert "frozen" in cli("set", str(again), "0", "1", code=EXIT_KERNEL).stderr
        assert m[0] == 11
        tool = bpftool_json("map", "show", "pinned", str(again))
        assert isinstance(tool, dict) and tool["frozen"] == 1


def test_exit_codes_and_json_errors(bpffs: Path) -> None:
    missing = bpffs / "nothing-here"
    assert "PinNotFound" in cli("show", str(missing), code=EXIT_NOT_FOUND).stderr
    err = json.loads(cli("get", str(missing), "1", "--json", code=EXIT_NOT_FOUND).stdout)
    assert err["error"]["type"] == "PinNotFound" and err["error"]["exit_code"] == EXIT_NOT_FOUND
    cli("show", "id:4294967295", code=EXIT_NOT_FOUND)
    cli("show", "name:no_such_map_x", code=EXIT_NOT_FOUND)
    cli("show", "id:zero", code=EXIT_USAGE)
    cli("show", "/tmp", code=EXIT_USAGE)  # not on a bpffs
    bogus = cli("create", "hash", str(bpffs / "x"), "--key-size", "4", "--value-size", "4", "--max-entries", "4",
                "--flag", "bogus", code=EXIT_USAGE)
    assert "Traceback" not in bogus.stderr and "no_prealloc" in bogus.stderr
    assert not (bpffs / "x").exists()
    cli("nosuchcommand", code=EXIT_USAGE)
    cli("get", code=EXIT_USAGE)
    cli("create", "hash", str(bpffs / "y"), "--key-size", "4", "--value-size", "4", "--max-entries", "0",
        code=EXIT_USAGE)  # refused by the library, before the syscall
    cli("create", "hash", str(bpffs / "y"), "--key-size", "0", "--value-size", "4", "--max-entries", "4",
        code=EXIT_KERNEL)  # refused by the kernel (EINVAL)
    # A map that cannot be listed: one JSON error object on stdout, no half-written array.
    cli("create", "sk_storage", str(bpffs / "sk"), "--key-size", "4", "--value-size", "4", "--max-entries", "0",
        "--flag", "no_prealloc")
    refused = json.loads(cli("dump", str(bpffs / "sk"), "--json", code=EXIT_KERNEL).stdout)
    assert refused["error"]["type"] == "NotSupported"
    cli("create", "perf_event_array", str(bpffs / "pe"), "--key-size", "4", "--value-size", "4", "--max-entries", "1")
    assert "events" in cli("dump", str(bpffs / "pe"), code=EXIT_USAGE).stderr
    help_text = cli("--help").stdout
    for words in ("id:N", "0x0100000a", "10.0.0.0/8", "exit codes", "3 kernel or permission error"):
        assert words in help_text
    assert "examples:" in cli("dump", "--help").stdout


# ------------------------------------------------------------------ events
def test_events_streams_ring_buffer_records(producer: Callable[[int], Producer], bpffs: Path) -> None:
    p = producer(4 * 4096)
    pin = bpffs / "rb"
    p.rb.pin(pin)
    p.run(3, size=24)
    lines = cli("events", str(pin), "--json", "--count", "3").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["size"] for r in records] == [24, 24, 24]
    for seq, r in enumerate(records):
        check_record(bytes.fromhex(r["data"][2:]), seq, 24)
    text = cli("events", str(pin), "--timeout", "0.2").stdout
    assert text == ""  # consumed above: nothing left
    p.run(1, size=16)
    assert len(bytes.fromhex(cli("events", str(pin), "-c", "1").stdout.replace(" ", "").strip())) == 16


def _perf_events_open(pid: int) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[perf_event]"
        except OSError:
            pass
    return count


def test_events_streams_perf_samples(bpffs: Path) -> None:
    p = PerfProducer(bpffs)
    try:
        pin = bpffs / "perf"
        p.events.pin(pin)
        cpu = online_cpus()[0]
        proc = subprocess.Popen([sys.executable, "-m", "ebpfmaps.cli", "events", str(pin), "--json", "--count", "2",
                                 "--timeout", "30"], stdout=subprocess.PIPE, text=True, env=ENV)
        try:
            deadline = time.monotonic() + 20
            while _perf_events_open(proc.pid) < len(online_cpus()) and time.monotonic() < deadline:
                time.sleep(0.02)  # the reader has not opened its perf events yet
            with on_cpu(cpu):
                p.run(2, size=21)
            out, _ = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()
        samples = [json.loads(line) for line in out.splitlines()]
        assert [s["cpu"] for s in samples] == [cpu, cpu] and all(s["size"] == 28 for s in samples)
        assert p.errors == 0
    finally:
        p.close()


# ------------------------------------------------------------------ progress and fast paths
def _drain(terminal: int) -> bytes:
    """Everything written to a pseudo-terminal whose other side is closed, then the terminal closed."""
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 65536)
        except OSError:  # EIO: the writer is gone
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    return shown


def test_progress_bar_only_for_a_watching_terminal(pin_path: Path, tmp_path: Path) -> None:
    import rich  # the cli extra (installed with dev): the bar is drawn with it

    assert rich is not None
    with ebpfmaps.HashMap(key_size=4, value_size=4, max_entries=50_000) as m:
        m.update_batch([struct.pack("=I", i) for i in range(50_000)], [bytes(4)] * 50_000)
        m.pin(pin_path)
        out = tmp_path / "dump.json"
        main, side = pty.openpty()
        with open(out, "w") as sink:
            proc = subprocess.run([sys.executable, "-m", "ebpfmaps.cli", "dump", str(pin_path), "--json"],
                                  stdout=sink, stderr=side, env=dict(ENV, TERM="xterm"), timeout=180)
        os.close(side)
        shown = _drain(main)
        assert proc.returncode == 0 and len(json.loads(out.read_text())) == 50_000
        assert b"dumping" in shown  # the bar, on the terminal
        piped = cli("dump", str(pin_path), "--json")
        assert piped.stderr == ""  # piped: no bar, nothing on stderr


def _modules_after(code: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sorted(sys.modules)))"],
                          capture_output=True, text=True, env=ENV, timeout=180)
    assert proc.returncode in (0, 1), proc.stderr
    return set(proc.stdout.split())


HEAVY = {"asyncio", "numpy", "rich", "pyroute2", "bcc", "ebpfmaps.asm", "ebpfmaps.programs", "ebpfmaps.readers",
         "ebpfmaps.xdp", "importlib.metadata", "ebpfmaps_shim", "prometheus_client", "ebpfmaps.exporter", "elftools"}
# Loaded on first use too: BTF (until a map is typed by it), the feature probes, the embedded profile's pool,
# resize, the symbol tables, dataclasses (with inspect) and every map family until one of its maps is used.
DEFERRED = HEAVY | {"dataclasses", "inspect", "socket", "ebpfmaps.btf.reader", "ebpfmaps.btf.codec",
                    "ebpfmaps.btf.maps", "ebpfmaps.btf.writer", "ebpfmaps.features", "ebpfmaps.pool", "ebpfmaps.resize",
                    "ebpfmaps.elfsyms", "ebpfmaps.ksyms", "ebpfmaps.maps.array", "ebpfmaps.maps.bloom",
                    "ebpfmaps.maps.hash", "ebpfmaps.maps.lpm", "ebpfmaps.maps.of_maps", "ebpfmaps.maps.perf",
                    "ebpfmaps.maps.queue", "ebpfmaps.maps.ringbuf", "ebpfmaps.maps.special",
                    "ebpfmaps.maps.stacktrace"}


def test_import_loads_only_the_core() -> None:
    loaded = _modules_after("import ebpfmaps")
    assert "ebpfmaps.map" in loaded and "ebpfmaps.factory" in loaded
    assert not loaded & DEFERRED, loaded & DEFERRED
    # The lazy names are there on first use, and in dir() for completion.
    later = _modules_after("import ebpfmaps\nassert ebpfmaps.RingBufReader.__name__ == 'RingBufReader'\n"
                           "assert 'asm' in dir(ebpfmaps) and ebpfmaps.asm.R0 is not None\n"
                           "assert 'HashMap' in dir(ebpfmaps) and ebpfmaps.HashMap.__name__ == 'HashMap'")
    assert {"asyncio", "ebpfmaps.readers", "ebpfmaps.asm", "ebpfmaps.maps.hash"} <= later
    assert "ebpfmaps.maps.special" not in later  # one family does not bring the others


def test_opening_a_map_loads_its_family_only(pin_path: Path) -> None:
    with ebpfmaps.QueueMap(value_size=4, max_entries=4) as m:
        m.pin(pin_path)
        loaded = _modules_after(f"import ebpfmaps\nm = ebpfmaps.open_pinned({str(pin_path)!r})\n"
                                "assert type(m).__name__ == 'QueueMap', type(m)")
    assert "ebpfmaps.maps.queue" in loaded
    assert not loaded & {"ebpfmaps.maps.hash", "ebpfmaps.maps.special", "ebpfmaps.btf.reader", "dataclasses"}
    # Creating and using a map of raw bytes needs no BTF, no typing, no inspect (for its keyword arguments).
    loaded = _modules_after("import ebpfmaps\nm = ebpfmaps.create('hash', key_size=4, value_size=8, max_entries=4)\n"
                            "m[b'abcd'] = b'12345678'\nassert ebpfmaps.open_by_id(m.info().id)[b'abcd'] == b'12345678'")
    assert "ebpfmaps.maps.hash" in loaded
    assert not loaded & {"typing", "inspect", "dataclasses", "ebpfmaps.btf.fromcodec", "ebpfmaps.btf.reader",
                         "ebpfmaps.features", "ebpfmaps.pool", "json"}, loaded


def test_one_shot_commands_import_only_what_they_need(pin_path: Path) -> None:
    # A map with BTF (ctypes types are described in BTF) is typed by it, yet consults no extension: its value
    # type is not named as an extensible map's (the shim's entry point, importlib.metadata and the shim stay out).
    for typed in (False, True):
        kinds = {"key_type": ctypes.c_uint32, "value_type": ctypes.c_uint32} if typed else {"key_size": 4,
                                                                                          "value_size": 4}
        with ebpfmaps.HashMap(max_entries=4, **kinds) as m:  # type: ignore[arg-type]
            assert bool(m.info().btf_id) == typed
            m.pin(pin_path)
            for argv in (["get", str(pin_path), "1"], ["set", str(pin_path), "1", "2"],
                         ["get", str(pin_path), "1", "-k", "u32", "-v", "u32"], ["del", str(pin_path), "1"],
                         ["show", str(pin_path)], ["list"]):
                loaded = _modules_after(f"from ebpfmaps.cli import main\nmain({argv!r})")
                assert not loaded & HEAVY, (typed, argv, loaded & HEAVY)
                assert not loaded & {"ebpfmaps.features", "ebpfmaps.maps.special"}, (typed, argv)
                if not typed or "-k" in argv or argv[0] in ("show", "list"):  # no entry decoded with BTF types
                    assert not loaded & {"dataclasses", "ebpfmaps.btf.reader"}, (typed, argv)
            m.unpin()


def test_extensible_map_through_its_provider(pin_path: Path) -> None:
    """An extensible map (the shim's TTL cache, type 4100, found through its entry point) works like any other."""
    created = cli_json("create", "4100", str(pin_path), "--key-size", "4", "--value-size", "8", "--max-entries", "16")
    assert isinstance(created, dict) and created["type_id"] == 4100
    cli("set", str(pin_path), "1", "5", "-k", "u32", "-v", "u64")
    assert cli_json("dump", str(pin_path), "-k", "u32", "-v", "u64") == [{"key": 1, "value": 5}]
    assert cli_json("show", str(pin_path))["type_id"] == 4100  # type: ignore[index]
    with ebpfmaps.open_pinned(pin_path, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64) as m:
        assert m.info().type == 4100 and m[1] == 5
    cli("unpin", str(pin_path))


def test_resize_migrates_repins_and_draws_progress_on_a_terminal(pin_path: Path) -> None:
    n = 20_000
    with ebpfmaps.HashMap(key_size=4, value_size=8, max_entries=n) as m:
        m.update_batch([struct.pack("=I", i) for i in range(n)], [struct.pack("=Q", i) for i in range(n)])
        m.pin(pin_path)
    doc = json.loads(cli("resize", str(pin_path), str(2 * n), "--json").stdout)
    assert doc["copied"] == n and doc["dropped"] == 0 and doc["repinned"] == str(pin_path)
    shown = json.loads(subprocess.run(["bpftool", "-j", "map", "show", "pinned", str(pin_path)], check=True,
                                      capture_output=True, text=True).stdout)
    assert shown["max_entries"] == 2 * n and shown["id"] == doc["new_id"]
    # A person at a terminal sees the copy progress on stderr; the summary line follows.
    main, side = pty.openpty()
    proc = subprocess.run([sys.executable, "-m", "ebpfmaps.cli", "resize", str(pin_path), str(3 * n)],
                          stdout=side, stderr=side, env=dict(ENV, TERM="xterm"), timeout=180)
    os.close(side)
    seen = _drain(main)
    assert proc.returncode == 0 and b"resize: copying entries" in seen and f"{n} copied".encode() in seen
    # Shrinking below the entries warns on stderr with what was dropped, and exits 0.
    small = cli("resize", str(pin_path), "10")
    assert "10 copied" in small.stdout and "did not fit" in small.stderr
    with ebpfmaps.open_pinned(str(pin_path)) as again:
        assert again.max_entries == 10 and len(again) == 10
    bad = cli("resize", str(pin_path), "0", check=False)
    assert bad.returncode == 2
