"""Extensible maps across processes: persistence through pins, entry-point discovery from a real
distribution on sys.path, and a stress test of threads in two processes with every callback counted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ebpfmaps_shim import DeleteReason, ExtensibleMap, register_provider, unregister_provider
from ebpfmaps_shim.example_providers import StatsMapProvider, TtlCacheProvider

import ebpfmaps
from tests.conftest import ROOT, run_python
from tests.shim_helpers import U64, next_type_id, recording_provider


def _env(extra_path: str = "") -> dict[str, str]:
    paths = [p for p in (extra_path, str(ROOT), os.environ.get("PYTHONPATH", "")) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(paths))


def test_pinned_maps_come_back_bound_in_a_fresh_process(bpffs: Path) -> None:
    """Process A creates and pins three extensible maps; process B, which never imports ebpfmaps_shim,
    opens them with ebpfmaps.open_pinned and gets them back with their types, providers and values."""
    made = run_python(textwrap.dedent("""
        import ctypes, socket, sys, ebpfmaps
        root = sys.argv[1]
        ttl = ebpfmaps.create(4100, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=8,
                              options={"ttl_ms": 600000}, name="ttl")
        ttl[1] = 111
        ttl.pin(root + "/ttl")
        stats = ebpfmaps.create(4101, key_type=ctypes.c_uint32, value_size=16, max_entries=8)
        stats.provider.add(stats, 2, packets=3, bytes=300)
        stats.pin(root + "/stats")
        xsk = ebpfmaps.create(4097, key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4)
        s = socket.socket(44, socket.SOCK_RAW, 0)
        xsk[0] = s.fileno()
        xsk.pin(root + "/xsk")
        print(xsk[0])
    """), str(bpffs))
    xsk_cookie = int(made.stdout.split()[-1])
    seen = run_python(textwrap.dedent("""
        import ctypes, json, sys, ebpfmaps
        root = sys.argv[1]
        out = {}
        for name in ("ttl", "stats", "xsk"):
            m = ebpfmaps.open_pinned(root + "/" + name, key_type=ctypes.c_uint32)
            out[name] = [type(m).__name__, m.spec.type, type(m.provider).__name__, m.options,
                         m.value_size, m.stored_value_size, m.base.type, {str(k): v.hex() if isinstance(v, bytes)
                         else v for k, v in m.items()}]
        ttl = ebpfmaps.open_pinned(root + "/ttl", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64)
        out["ttl_typed"] = ttl[1]
        ttl[3] = 333   # a write from this process, through the provider
        print(json.dumps(out))
    """), str(bpffs))
    out = json.loads(seen.stdout)
    assert out["ttl"][:7] == ["ExtensibleMap", 4100, "TtlCacheProvider", {"ttl_ms": 600000}, 8, 16, 1]
    assert out["ttl_typed"] == 111
    assert out["stats"][:7] == ["ExtensibleMap", 4101, "StatsMapProvider", {"allow_decrease": 0}, 16, 16, 1]
    assert out["stats"][7] == {"2": U64.pack(3).hex() + U64.pack(300).hex()}
    assert out["xsk"][:7] == ["ExtensibleMap", 4097, "XskMapProvider", {"family": 44}, 8, 24, 1]
    assert out["xsk"][7] == {"0": U64.pack(xsk_cookie).hex()}
    # and this process (a third one) sees B's write, with A's TTL
    ttl = ebpfmaps.open_pinned(bpffs / "ttl", value_type="=Q", key_type="=I")
    assert isinstance(ttl, ExtensibleMap) and dict(ttl.items()) == {1: 111, 3: 333}
    assert isinstance(ttl.provider, TtlCacheProvider)
    ttl.close()
    stats = ebpfmaps.open_pinned(bpffs / "stats", key_type="=I")
    assert isinstance(stats, ExtensibleMap) and isinstance(stats.provider, StatsMapProvider)
    assert stats.provider.read(stats, 2) == {"packets": 3, "bytes": 300}
    stats.close()


PROVIDER_MODULE = """
import os
from ebpfmaps_shim import MapProvider

LOG = os.environ["SHIM_TEST_LOG"]

class CountingProvider(MapProvider):
    custom_map_type = {tid}

    def _log(self, what):
        with open(LOG, "a") as f:
            f.write(f"{{os.getpid()}} {{what}}\\n")

    def create_map_notify(self, spec):
        self._log(f"create {{spec.value_size}}")

    def update_element_notify(self, m, key, value, flags):
        self._log("update")

    def delete_map_notify(self, m):
        self._log("delete_map")
"""


def make_distribution(root: Path, name: str, entry_points: dict[str, str], module: str) -> Path:
    """A real installed-looking distribution: a package and its *.dist-info with entry_points.txt."""
    site = root / f"site_{name}"
    (site / name).mkdir(parents=True)
    (site / name / "__init__.py").write_text(module)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[ebpfmaps.providers]\n{lines}")
    return site


def test_providers_are_discovered_through_entry_points(bpffs: Path, tmp_path: Path) -> None:
    tid = next_type_id() + 7000
    site = make_distribution(tmp_path, "shimtestprov", {str(tid): "shimtestprov:CountingProvider"},
                             PROVIDER_MODULE.format(tid=tid))
    log = tmp_path / "log"
    env = dict(_env(str(site)), SHIM_TEST_LOG=str(log))
    create = textwrap.dedent(f"""
        import sys, ebpfmaps
        m = ebpfmaps.create({tid}, key_size=4, value_size=8, max_entries=4)   # nothing registered explicitly
        m[b"\\x01\\0\\0\\0"] = b"12345678"
        m.pin(sys.argv[1])
        print(type(m.provider).__module__)
    """)
    pin = str(bpffs / "discovered")
    out = subprocess.run([sys.executable, "-c", create, pin], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "shimtestprov"
    reopen = textwrap.dedent("""
        import sys, ebpfmaps
        m = ebpfmaps.open_pinned(sys.argv[1])
        m[b"\\x02\\0\\0\\0"] = b"abcdefgh"
        print(m.spec.type, sorted(m.keys()))
        m.close()
        ebpfmaps.unpin(sys.argv[1])      # nobody holds it any more: the provider hears delete_map
    """)
    out = subprocess.run([sys.executable, "-c", reopen, pin], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == str(tid)
    pids = [line.split()[0] for line in log.read_text().splitlines()]
    events = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    assert events == ["create 8", "update", "create 8", "update", "create 8", "delete_map"]
    assert len(set(pids[:2])) == 1 and pids[0] != pids[2]  # two processes
    # without the distribution on the path, the type is unknown: a clear error at creation
    out = subprocess.run([sys.executable, "-c", f"import ebpfmaps; ebpfmaps.create({tid}, key_size=4, "
                          f"value_size=8, max_entries=4)"], env=_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and f"no extension provides map type {tid}" in out.stderr


def test_two_entry_points_claiming_one_id_are_refused(tmp_path: Path) -> None:
    tid = next_type_id() + 7000
    module = PROVIDER_MODULE.format(tid=tid)
    a = make_distribution(tmp_path, "provone", {str(tid): "provone:CountingProvider"}, module)
    b = make_distribution(tmp_path, "provtwo", {str(tid): "provtwo:CountingProvider"}, module)
    env = dict(_env(f"{a}{os.pathsep}{b}"), SHIM_TEST_LOG=str(tmp_path / "log"))
    code = f"import ebpfmaps; ebpfmaps.create({tid}, key_size=4, value_size=8, max_entries=4)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DuplicateProvider" in out.stderr and "provone" in out.stderr


STRESS_WORKER = """
import ctypes, json, random, sys, threading, ebpfmaps
from collections import Counter
from ebpfmaps_shim import register_provider, DeleteReason
from ebpfmaps.errors import KeyNotFound
from tests.shim_helpers import recording_provider, U64

pin, tid, proc, threads, ops, keys = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *map(int, sys.argv[4:7])
p = register_provider(recording_provider(type_id=tid))
m = ebpfmaps.open_pinned(pin, key_type=ctypes.c_uint32)
p.rec.take()
# start together: both processes must be writing at the same time for the test to mean anything
print("ready", flush=True)
sys.stdin.readline()
done = Counter()
done_lock = threading.Lock()

def work(t):
    rnd = random.Random(proc * 1000 + t)
    mine = Counter()
    for seq in range(ops):
        k = rnd.randrange(keys)
        r = rnd.random()
        if r < 0.6:
            m[k] = U64.pack((proc << 40) | (t << 32) | seq)   # every value written is unique
            mine["update"] += 1
        elif r < 0.8:
            try:
                del m[k]
                mine["delete"] += 1
            except KeyNotFound:
                mine["delete_missing"] += 1
        else:
            mine["found" if m.lookup(k) is not None else "absent"] += 1
    with done_lock:
        done.update(mine)

ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
events = p.rec.take()
print(json.dumps({
    "done": done,
    "accepted": [e[2].hex() for e in events if e[0] == "update"],
    "replaced": [e[2].hex() for e in events if e[0] == "delete" and e[3] == DeleteReason.REPLACED],
    "deleted": [e[2].hex() for e in events if e[0] == "delete" and e[3] == DeleteReason.USER_DELETE],
    "other": [e[0] + ":" + str(e[3]) for e in events if e[0] == "delete" and e[3] not in (1, 2)],
    "finds": sum(1 for e in events if e[0] == "find"),
}))
m.close()
"""


@pytest.mark.slow
def test_concurrent_threads_in_two_processes_lose_and_double_nothing(pin_path: Path) -> None:
    p = register_provider(recording_provider())
    m = ebpfmaps.create(p.custom_map_type, key_type="=I", value_size=8, max_entries=256)
    try:
        assert isinstance(m, ExtensibleMap)
        m.pin(pin_path)
        threads, ops, keys = 4, 1500, 24  # few keys: writers of one key collide all the time
        procs = [subprocess.Popen([sys.executable, "-c", STRESS_WORKER, str(pin_path), str(p.custom_map_type),
                                   str(i), str(threads), str(ops), str(keys)], env=_env(), stdout=subprocess.PIPE,
                                  stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (1, 2)]
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:  # release both before waiting for either
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            results.append(json.loads(out))
        final = {v.hex() for v in m.values()}
        for r in results:
            done = r["done"]
            assert sum(done.values()) == threads * ops
            # each process counted its own callbacks: one update notification per update it made, one
            # USER_DELETE per delete that found the key, one find per lookup that found a value
            assert len(r["accepted"]) == done["update"]
            assert len(r["deleted"]) == done.get("delete", 0)
            assert r["finds"] == done.get("found", 0)
            assert r["other"] == []  # no rollbacks, no cleanups
        accepted = [v for r in results for v in r["accepted"]]
        gone = [v for r in results for v in r["replaced"] + r["deleted"]]
        assert len(set(accepted)) == len(accepted) == sum(r["done"]["update"] for r in results)
        assert len(set(gone)) == len(gone), "a stored value was notified twice"
        assert set(gone) | final == set(accepted), "a stored value left the map without a notification"
        assert not set(gone) & final
    finally:
        m.close()
        ebpfmaps.unpin(pin_path)
        unregister_provider(p)


def test_delete_reasons_are_all_distinct() -> None:
    assert len({r.value for r in DeleteReason}) == len(DeleteReason) == 7
    assert str(DeleteReason.USER_DELETE) == "USER_DELETE" and f"{DeleteReason.EVICTED}" == "EVICTED"
    assert f"{DeleteReason.ROLLBACK:d}" == "4"
    assert repr(DeleteReason.MAP_CLEANUP) == "<DeleteReason.MAP_CLEANUP: 3>" and DeleteReason.REPLACED == 2
