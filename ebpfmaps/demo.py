"""``make demo``: ebpfmaps at work on the real kernel, scene by scene.

Every scene creates real kernel maps, shows what it did, and cross-checks with an
independent reader (bpftool, another process) where one exists. Maps are pinned
only under a private directory of /sys/fs/bpf that the demo removes at the end.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ebpfmaps
from ebpfmaps import BPF_EXIST, BPF_NOEXIST, StaticPool, _libbpf, asm, errors, features, profile
from ebpfmaps.asm import R0, R1, R2, R3, R4, R10
from ebpfmaps.programs import Program

try:
    from rich.console import Console
    from rich.table import Table

    _console: Console | None = Console(highlight=False)
except ImportError:  # rich is optional
    _console = None

DEMO_ROOT = Path("/sys/fs/bpf/ebpfmaps-demo")


def heading(text: str) -> None:
    if _console is not None:
        _console.rule(f"[bold cyan]{text}")
    else:
        print(f"\n=== {text} ===")


def say(text: str) -> None:
    if _console is not None:
        _console.print(text)
    else:
        print(text)


def table(headers: list[str], rows: list[list[Any]]) -> None:
    if _console is not None:
        t = Table(*headers)
        for r in rows:
            t.add_row(*(str(c) for c in r))
        _console.print(t)
    else:
        for r in [headers, *rows]:
            print("  ".join(f"{c!s:>14}" for c in r))


def bpftool(*args: str) -> Any:
    exe = shutil.which("bpftool") or "/usr/sbin/bpftool"
    out = subprocess.run([exe, "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


class Stats(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64), ("errors", ctypes.c_uint64)]


def scene_environment() -> None:
    heading("The machine")
    major, minor = _libbpf.version()
    say(f"kernel {platform.release()}, libbpf {major}.{minor} ({_libbpf.LIBBPF_PATH}), "
        f"{ebpfmaps.possible_cpus()} possible CPUs, profile [bold]{profile.active()}[/bold]")
    ebpfmaps.mount_bpffs("/sys/fs/bpf")
    DEMO_ROOT.mkdir(exist_ok=True)
    say(f"bpffs mounted at /sys/fs/bpf; demo pins go under {DEMO_ROOT}")


def scene_hash() -> None:
    heading("A hash map with typed keys and values")
    m = ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=1024, name="demo_hash")
    say(f"created {m!r}, kernel id {m.info().id}")
    m[1] = 100
    m.update(2, 200, BPF_NOEXIST)
    try:
        m.update(2, 999, BPF_NOEXIST)
    except errors.KeyExists as exc:
        say(f"BPF_NOEXIST on an existing key -> {type(exc).__name__}: {exc}")
    try:
        m.update(3, 300, BPF_EXIST)
    except errors.KeyNotFound as exc:
        say(f"BPF_EXIST on a missing key    -> {type(exc).__name__}: {exc}")
    try:
        m.update(b"\x01\x02", 1)
    except errors.MapError as exc:
        say(f"a 2-byte key on a 4-byte map   -> {type(exc).__name__} before any syscall: {exc}")
    say(f"m[1]={m[1]}, m[2]={m[2]}, 3 in m: {3 in m}, m.get(3, 0)={m.get(3, 0)}, value 2 after failed update: {m[2]}")
    m.close()


def scene_percpu_and_struct() -> None:
    heading("Per-CPU values and ctypes Structures")
    ncpu = ebpfmaps.possible_cpus()
    pc = ebpfmaps.PerCpuArrayMap(value_type=ctypes.c_uint64, max_entries=4, name="demo_percpu")
    pc[0] = list(range(10, 10 + ncpu))
    say(f"per-CPU array index 0: {list(pc[0])} -> sum {pc[0].sum()} (one slot per possible CPU, padded to 8 bytes)")
    stats = ebpfmaps.ArrayMap(value_type=Stats, max_entries=256, name="demo_stats")
    stats[5] = Stats(packets=10, bytes=1500, errors=1)
    s = stats[5]
    say(f"stats[5] as a Structure: packets={s.packets} bytes={s.bytes} errors={s.errors}")
    pc.close()
    stats.close()


def scene_lru() -> None:
    heading("LRU hash: a full map evicts instead of failing")
    h = ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=64)
    lru = ebpfmaps.LruHashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=64)
    for i in range(64):
        h[i] = i
    try:
        h[1000] = 1
    except errors.OutOfMemory as exc:
        say(f"plain hash at max_entries: {type(exc).__name__}: {exc}")
    for i in range(200):
        lru[i] = i
    say(f"LRU after 200 inserts into 64 slots holds {len(lru)} entries (newest kept: {199 in lru})")
    h.close()
    lru.close()


def scene_batches() -> None:
    heading("Batches and lazy iteration")
    n = 100_000
    m = ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=n)
    t0 = time.perf_counter()
    m.update_batch(range(n), [i * i for i in range(n)])
    t1 = time.perf_counter()
    everything = m.lookup_batch()
    t2 = time.perf_counter()
    lazy = sum(1 for _ in m.items())
    t3 = time.perf_counter()
    table(["operation", "entries", "total ms", "ns/entry"], [
        ["update_batch", n, f"{(t1 - t0) * 1e3:.1f}", f"{(t1 - t0) / n * 1e9:.0f}"],
        ["lookup_batch", len(everything), f"{(t2 - t1) * 1e3:.1f}", f"{(t2 - t1) / n * 1e9:.0f}"],
        ["items() (lazy)", lazy, f"{(t3 - t2) * 1e3:.1f}", f"{(t3 - t2) / n * 1e9:.0f}"],
    ])
    assert everything[999] == 999 * 999
    deleted = m.delete_batch(range(0, n, 2))
    say(f"delete_batch of the even keys removed {deleted}; {len(m)} remain")
    m.close()


def scene_pinning() -> None:
    heading("Pinning: another process and bpftool see the same map")
    path = DEMO_ROOT / "counts"
    if path.exists():
        ebpfmaps.unpin(path)
    m = ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=16, name="demo_counts")
    for k in range(3):
        m[k] = (k + 1) * 111
    m.pin(path)
    code = (
        "import ebpfmaps, ctypes, sys; "
        "m = ebpfmaps.open_pinned(sys.argv[1], key_type=ctypes.c_uint32, value_type=ctypes.c_uint64); "
        "m[7] = 777; print(sorted(m.items()))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    say(f"another process read {out.stdout.strip()} and wrote key 7")
    say(f"this process now sees m[7] = {m[7]}")
    dump = bpftool("map", "dump", "pinned", str(path))
    rows = [[int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little"),
             int.from_bytes(bytes(int(b, 16) for b in e["value"]), "little")] for e in dump]
    say(f"bpftool map dump pinned {path}: {sorted(rows)}")
    ro = ebpfmaps.open_pinned(path, readonly=True)
    try:
        ro[b"\x00\x00\x00\x00"] = b"\x00" * 8
    except errors.PermissionDenied as exc:
        say(f"a read-only open refuses writes: {exc}")
    ro.close()
    wrong = m.spec.replace(key_size=8, max_entries=99)
    try:
        ebpfmaps.open_pinned(path, spec=wrong)
    except errors.IncompatibleMap as exc:
        say(f"open_pinned with a different spec: {exc.differences}")
    m.unpin()
    m.close()


def scene_map_types() -> None:
    heading("Other map types: queue, LPM trie, bloom filter, mmapable array, map of maps")
    import ipaddress

    q = ebpfmaps.QueueMap(value_type=ctypes.c_uint32, max_entries=4)
    for v in (1, 2, 3, 4):
        q.push(v)
    q.push(5, overwrite=True)  # full: BPF_EXIST drops the oldest
    say(f"queue after pushing 1..5 into 4 slots (overwrite): {[q.pop() for _ in range(4)]}")
    lpm = ebpfmaps.LpmTrieMap(family="ipv4", value_type=ctypes.c_uint32, max_entries=16)
    lpm[ipaddress.ip_network("10.0.0.0/8")] = 8
    lpm[ipaddress.ip_network("10.1.0.0/16")] = 16
    say(f"LPM longest match: 10.1.2.3 -> /{lpm.longest_match('10.1.2.3')}, 10.9.9.9 -> /{lpm.longest_match('10.9.9.9')}")
    made: list[ebpfmaps.Map] = [q, lpm]
    if features.map_type_supported(ebpfmaps.MapType.BLOOM_FILTER):
        bloom = ebpfmaps.BloomFilterMap(value_type=ctypes.c_uint64, max_entries=1000, nr_hashes=5)
        made.append(bloom)
        bloom.add_many(range(0, 1000, 2))
        fp = sum(bloom.might_contain(v) for v in range(1, 20000, 2)) / 10000
        say(f"bloom filter: every added value found: {all(bloom.might_contain(v) for v in range(0, 1000, 2))}; "
            f"false positives {fp:.2%} (predicted {bloom.false_positive_rate(500):.2%})")
    else:
        say("bloom filter: this kernel has no bloom filter maps (probe); skipped")
    arr = ebpfmaps.ArrayMap(value_type=ctypes.c_uint64, max_entries=8, mmapable=True)
    view = arr.numpy()
    view[3] = 42  # a store into shared memory, no syscall
    arr[4] = 7    # a syscall update, seen by the view
    say(f"mmapable array: arr[3] via syscall = {arr[3]}, view[4] via memory = {int(view[4])}")
    del view
    inner = ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=4)
    inner[1] = 11
    outer = ebpfmaps.HashOfMaps(key_type=ctypes.c_uint32, max_entries=4, inner_map=inner)
    outer[100] = inner
    say(f"hash of maps: outer[100] is a live {type(outer[100]).__name__} holding {dict(outer[100].items())}")
    for m in (*made, arr, outer, inner):
        m.close()


def scene_program_and_ringbuf() -> None:
    heading("A BPF program (assembled in Python) shares maps with Python")
    counts = ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=16)
    events = ebpfmaps.RingBufMap(max_entries=4096 * 4)
    counts[7] = 100
    prog = Program.load("socket_filter", [
        asm.st(4, R10, -4, 7),
        asm.mov64(R2, R10), asm.add64(R2, -4),
        asm.ld_map_fd(R1, counts),
        asm.call("map_lookup_elem"),
        asm.jeq(R0, 0, "out"),
        asm.mov64(R1, 1), asm.atomic_add(8, R0, R1, 0),     # counts[7] += 1, atomically
        asm.ldx(8, R1, R0, 0), asm.stx(8, R10, R1, -16),    # copy the new count to the stack
        asm.ld_map_fd(R1, events), asm.mov64(R2, R10), asm.add64(R2, -16),
        asm.mov64(R3, 8), asm.mov64(R4, 0),
        asm.call("ringbuf_output"),                          # and send it to user space
        asm.label("out"), asm.mov64(R0, 0), asm.exit_(),
    ], license="GPL")
    run = prog.test_run(data=bytes(64), repeat=5)
    reader = ebpfmaps.RingBufReader(events)
    seen = [int.from_bytes(r, "little") for r in reader.read()]
    say(f"Python wrote counts[7]=100; the program ran {5} times (BPF_PROG_TEST_RUN, retval {run.retval}); "
        f"Python reads counts[7]={counts[7]}; ring buffer records: {seen}")
    reader.close()
    prog.close()
    counts.close()
    events.close()


def scene_profiles() -> None:
    heading("Profiles: an embedded pool charged with real kernel memory, and resize in the cloud")
    with profile.using("embedded"):
        StaticPool.reset()
        small = ebpfmaps.ArrayMap(value_type=ctypes.c_uint64, max_entries=100)
        say(f"embedded: a 100-entry array charged {small.info().memlock} bytes (fdinfo memlock); "
            f"pool {StaticPool.used()}/{StaticPool.total_size()} used; has resize: {hasattr(small, 'resize')}")
        try:
            ebpfmaps.HashMap(key_size=16, value_size=64, max_entries=10000)
        except errors.OutOfMemory as exc:
            say(f"a map that does not fit: OutOfMemory: {exc}")
        try:
            ebpfmaps.LruHashMap(key_size=4, value_size=4, max_entries=10)
        except errors.NotSupported as exc:
            say(f"LRU in embedded: NotSupported: {exc}")
        small.close()
        StaticPool.reset()
    m = ebpfmaps.HashMap(key_type=ctypes.c_uint32, value_type=ctypes.c_uint32, max_entries=10)
    m.update_batch(range(10), range(10))
    grown = m.resize(1000)
    say(f"cloud: resize 10 -> {grown.new_max_entries} kept {grown.copied} entries; map now {m!r}")
    m.close()


def scene_extensible() -> None:
    heading("Extensible maps: a custom type id on a kernel base map, with provider callbacks")
    path = DEMO_ROOT / "ttl"
    # 4100 is the shipped TTL cache provider, found through its entry point: no import of the shim here.
    cache = ebpfmaps.create(4100, key_size=4, value_size=8, max_entries=64, options={"ttl_ms": 1500})
    key = (1).to_bytes(4, "little")
    cache[key] = b"fresh!!!"
    written = time.monotonic()
    base: Any = cache.base  # type: ignore[attr-defined]  # an ExtensibleMap, from the shim's entry point
    say(f"created type {cache.spec.type} ({type(cache).__name__}) on a kernel {type(base).__name__} "
        f"(id {base.info().id}, value_size {base.value_size}: the provider stores a timestamp too)")
    cache.pin(path)
    code = ("import ebpfmaps, sys; m = ebpfmaps.open_pinned(sys.argv[1]); "
            "print(m.spec.type, type(m).__name__, m.get((1).to_bytes(4, 'little')))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    say(f"a fresh process opened the pin and got back: {out.stdout.strip()}")
    time.sleep(max(0.0, 1.6 - (time.monotonic() - written)))
    say(f"after the 1.5 s TTL: lookup gives {cache.get(key)!r}; iteration gives {list(cache.keys())}")
    shown = bpftool("map", "show", "pinned", str(path))
    say(f"bpftool sees the base map: type {shown['type']}, name {shown.get('name', '')!r}, btf_id {shown.get('btf_id')}")
    cache.unpin()
    cache.close()


SCENES: list[Callable[[], None]] = [
    scene_environment,
    scene_hash,
    scene_percpu_and_struct,
    scene_lru,
    scene_batches,
    scene_pinning,
    scene_map_types,
    scene_program_and_ringbuf,
    scene_extensible,
    scene_profiles,
]


def main() -> int:
    if os.geteuid() != 0:
        print("ebpfmaps demo: run as root (CAP_BPF is needed to create maps)", file=sys.stderr)
        return 1
    try:
        for scene in SCENES:
            scene()
    finally:
        if DEMO_ROOT.exists():
            shutil.rmtree(DEMO_ROOT, ignore_errors=True)
    heading("Done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
