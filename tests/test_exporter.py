"""The Prometheus exporter: config validation, keys as labels, values, histograms, self-metrics,
maps replaced or gone, on real kernel maps, read back through prometheus_client's own parser."""

from __future__ import annotations

import ctypes
import ipaddress
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import ebpfmaps
from ebpfmaps import ksyms
from ebpfmaps.btf import BtfBuilder
from ebpfmaps.exporter import ConfigError, Exporter, MapCollector, families_text, load_config, parse_config

EBPFMAPS = [sys.executable, "-m", "ebpfmaps.cli"]


def scrape(collector: MapCollector) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of one scrape: ``{sample name: {sorted label pairs: value}}``."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(families_text(collector).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def one_metric(pin: Path, **metric: Any) -> MapCollector:
    spec = {"name": "ebpf_test", "type": "counter", "map": {"pin": str(pin)}, **metric}
    return MapCollector(parse_config({"metrics": [spec]}))


# ---------------------------------------------------------------- config validation (no kernel)

@pytest.mark.no_kernel
def test_every_config_mistake_is_reported_with_its_place() -> None:
    raw = {
        "listen": "localhost",
        "metrics": [
            {"name": "1bad", "typ": "counter", "map": {"pin": "relative/path"}},
            {"name": "ok_total", "type": "counter", "map": {"pin": "/sys/fs/bpf/a", "id": 3},
             "labels": [{"name": "le"}, {"name": "x", "decode": "ipv5"}, {"name": "y", "size": 3}]},
            {"name": "h", "type": "histogram", "map": {"id": 2}, "histogram": {"buckets": "linear"}},
            {"name": "g", "type": "gauge", "map": {"name": "a_name_longer_than_15"}, "histogram": {}},
            {"name": "ok", "type": "counter", "map": {"id": 4}},
            {"name": "n", "type": "gauge", "map": {"id": 5}, "labels": [{"name": "p", "names": [6, "tcp"]}]},
        ],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, "exporter.yaml")
    problems = info.value.problems
    expected = [
        "listen: 'localhost' is not host:port",
        "metrics[0].typ: unknown setting (did you mean 'type'?)",
        "metrics[0]: 'type' is missing",
        "metrics[0].name: '1bad' is not a valid metric name",
        "metrics[0].map.pin: 'relative/path' is not an absolute path",
        "metrics[1].map: give exactly one of pin, id or name; found pin, id",
        "metrics[1].labels[0].name: 'le' is reserved by Prometheus",
        "metrics[1].labels[1].decode: 'ipv5' is not one of int, ipv4, ipv6, cidr, ksym, ifname, string, hex, btf; "
        "did you mean 'ipv6'?",
        "metrics[1].labels[2].size: an int label is 1, 2, 4 or 8 bytes, not 3",
        "metrics[2].histogram: a linear histogram needs max_slot",
        "metrics[3].map.name: 'a_name_longer_than_15' is longer than the kernel's 15-character map names",
        "metrics[3].histogram: only a histogram metric has buckets; this one is a gauge",
        "metrics[4].name: 'ok' would expose the same series names as metrics[1]",
        "metrics[5].labels[0].names: expected a mapping of decoded values to label values; found list",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in problems), f"{want!r} not in {problems}"
    assert len(problems) == len(expected)
    assert str(info.value).startswith(f"exporter.yaml: {len(expected)} problems:")


@pytest.mark.no_kernel
def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "exporter.yaml"
    bad.write_text("metrics:\n  - name: x\n    type: [counter\n")
    with pytest.raises(ConfigError, match=r"exporter.yaml: 1 problem:\n  - line \d+, column \d+: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match=r"\(top\): 'metrics' is missing"):
        parse_config({"listen": "127.0.0.1:1"})


# ---------------------------------------------------------------- keys, values and sums on real maps

def test_int_labels_values_and_per_cpu_sums(pin_path: Path) -> None:
    ncpu = ebpfmaps.possible_cpus()
    with ebpfmaps.create("percpu_hash", key_size=8, value_size=16, max_entries=64) as m:
        for proto, port in ((6, 80), (6, 443), (17, 53)):
            key = proto.to_bytes(4, "little") + port.to_bytes(2, "big") + b"\0\0"
            m[key] = [(c + 1).to_bytes(8, "little") + (1000 * proto).to_bytes(8, "little") for c in range(ncpu)]
        m.pin(str(pin_path))
        c = one_metric(pin_path, labels=[{"name": "proto", "size": 4}, {"name": "port", "size": 2,
                                                                       "byte_order": "big"}],
                       value={"offset": 8, "size": 8, "scale": 0.5})
        got = scrape(c)["ebpf_test_total"]
        assert got == {(("port", "80"), ("proto", "6")): 3000 * ncpu, (("port", "443"), ("proto", "6")): 3000 * ncpu,
                       (("port", "53"), ("proto", "17")): 8500 * ncpu}
        # A label from part of the key: entries that share it are summed into one series.
        c2 = one_metric(pin_path, labels=[{"name": "proto", "size": 4}], value={"size": 8})
        assert scrape(c2)["ebpf_test_total"] == {(("proto", "6"),): sum(range(1, ncpu + 1)) * 2,
                                                 (("proto", "17"),): sum(range(1, ncpu + 1))}


def test_address_cidr_string_and_ksym_labels(pin_path: Path, bpffs: Path) -> None:
    v4, v6 = ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("2001:db8::1")
    table = ksyms.kallsyms()
    address = table.address_of("schedule")
    assert address is not None
    with ebpfmaps.create("hash", key_size=16, value_size=8, max_entries=8) as m6, \
            ebpfmaps.create("hash", key_size=4, value_size=8, max_entries=8) as m4, \
            ebpfmaps.create("lpm_trie", key_size=8, value_size=8, max_entries=8, flags=ebpfmaps.BPF_F_NO_PREALLOC) as lpm, \
            ebpfmaps.create("hash", key_size=24, value_size=8, max_entries=8) as comm:
        m6[v6.packed] = (5).to_bytes(8, "little")
        m4[v4.packed] = (4).to_bytes(8, "little")
        lpm[(24).to_bytes(4, "little") + bytes([10, 1, 2, 0])] = (3).to_bytes(8, "little")
        comm[b"sshd".ljust(16, b"\0") + address.to_bytes(8, "little")] = (2).to_bytes(8, "little")
        pins = {}
        for name, m in (("v6", m6), ("v4", m4), ("lpm", lpm), ("comm", comm)):
            pins[name] = str(bpffs / f"exp_{name}")
            m.pin(pins[name])
        config = parse_config({"metrics": [
            {"name": "by_v6", "type": "gauge", "map": pins["v6"], "labels": [{"name": "addr", "decode": "ipv6"}]},
            {"name": "by_v4", "type": "gauge", "map": pins["v4"], "labels": [{"name": "addr", "decode": "ipv4"}]},
            {"name": "by_net", "type": "gauge", "map": pins["lpm"], "labels": [{"name": "net", "decode": "cidr"}]},
            {"name": "by_comm", "type": "gauge", "map": pins["comm"],
             "labels": [{"name": "comm", "decode": "string", "size": 16}, {"name": "fn", "decode": "ksym"}]},
        ]})
        got = scrape(MapCollector(config))
        assert got["by_v6"] == {(("addr", "2001:db8::1"),): 5}
        assert got["by_v4"] == {(("addr", "192.0.2.7"),): 4}
        assert got["by_net"] == {(("net", "10.1.2.0/24"),): 3}
        assert got["by_comm"] == {(("comm", "sshd"), ("fn", "schedule")): 2}


def test_btf_key_members_become_labels(pin_path: Path) -> None:
    b = BtfBuilder()
    u32, u16, u64 = b.add_int("__u32", 4), b.add_int("__u16", 2), b.add_int("__u64", 8)
    key = b.add_struct("flow_key", 8, [("ifindex", u32, 0), ("vlan", u16, 4)])
    btf = b.load()
    with ebpfmaps.create("hash", key_size=8, value_size=8, max_entries=8, btf=btf, btf_key_type_id=key,
                         btf_value_type_id=u64) as m:
        m[(7).to_bytes(4, "little") + (100).to_bytes(2, "little") + b"\0\0"] = (11).to_bytes(8, "little")
        m.pin(str(pin_path))
        c = one_metric(pin_path, labels=[{"name": "", "decode": "btf"}])
        assert scrape(c)["ebpf_test_total"] == {(("ifindex", "7"), ("vlan", "100")): 11}
    with ebpfmaps.create("hash", key_size=8, value_size=8, max_entries=8) as plain:
        plain.pin(str(pin_path) + "_plain")
        c = one_metric(Path(str(pin_path) + "_plain"), labels=[{"name": "k_", "decode": "btf"}])
        with pytest.raises(ConfigError, match=r"metrics\[0\]\.labels\[0\]: .* has no BTF for its key"):
            c.check()


def test_log2_histogram_buckets_per_section(pin_path: Path) -> None:
    with ebpfmaps.create("hash", key_size=16, value_size=8, max_entries=64) as m:
        for disk, slot, count in ((1, 0, 2), (1, 1, 3), (1, 4, 5), (1, 9, 7), (2, 2, 1)):
            m[disk.to_bytes(8, "little") + slot.to_bytes(8, "little")] = count.to_bytes(8, "little")
        m.pin(str(pin_path))
        c = one_metric(pin_path, type="histogram", labels=[{"name": "disk", "size": 8}],
                       histogram={"buckets": "log2", "max_slot": 5, "multiplier": 0.001})
        got = scrape(c)
        buckets = got["ebpf_test_bucket"]
        # slot i counts values up to 2**i - 1: bounds 0, 1, 3, 7, 15, 31 (ms as seconds); slot 9 only in +Inf.
        assert [buckets[(("disk", "1"), ("le", le))] for le in ("0.0", "0.001", "0.003", "0.007", "0.015", "0.031",
                                                                 "+Inf")] == [2, 5, 5, 5, 10, 10, 17]
        assert buckets[(("disk", "2"), ("le", "0.003"))] == 1
        assert got["ebpf_test_count"][(("disk", "1"),)] == 17
        assert got["ebpf_test_sum"][(("disk", "1"),)] == pytest.approx(3 * 0.001 + 5 * 0.015)


def test_layout_mistakes_are_found_against_the_real_map(pin_path: Path) -> None:
    with ebpfmaps.create("hash", key_size=4, value_size=12, max_entries=8) as m:
        m.pin(str(pin_path))
        c = one_metric(pin_path, labels=[{"name": "a", "size": 4}, {"name": "b", "decode": "ipv4"}])
        with pytest.raises(ConfigError) as info:
            c.check()
        assert any(p.startswith("metrics[0].labels[1]: bytes 4..8 do not fit the 4-byte key") for p in info.value.problems)
        with pytest.raises(ConfigError, match=r"metrics\[0\]\.value: .* the 12-byte value"):
            one_metric(pin_path).check()


# ---------------------------------------------------------------- maps that come, go and are replaced

def test_a_replaced_or_vanished_map_is_picked_up_again(pin_path: Path) -> None:
    c = one_metric(pin_path, labels=[{"name": "k", "size": 4}])
    assert c.check() == [f"metrics[0] (ebpf_test): {pin_path} is not there yet"]
    got = scrape(c)
    assert "ebpf_test_total" not in got
    assert got["ebpfmaps_exporter_map_missing"] == {(("map", str(pin_path)), ("metric", "ebpf_test")): 1}
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as m:
        m[1] = 10
        m.pin(str(pin_path))
        got = scrape(c)
        assert got["ebpf_test_total"] == {(("k", "1"),): 10}
        assert got["ebpfmaps_exporter_map_missing"][(("map", str(pin_path)), ("metric", "ebpf_test"))] == 0
        old_id = m.id
        m.resize(4096)  # a new kernel map, re-pinned at the same path
        assert m.id != old_id
        m[2] = 20
        got = scrape(c)
        assert got["ebpf_test_total"] == {(("k", "1"),): 10, (("k", "2"),): 20}
        assert got["ebpfmaps_exporter_map_reopens_total"][(("map", str(pin_path)), ("metric", "ebpf_test"))] == 1
        assert got["ebpfmaps_exporter_map_entries"][(("map", str(pin_path)), ("metric", "ebpf_test"))] == 2
        ebpfmaps.unpin(str(pin_path))
        got = scrape(c)
        assert "ebpf_test_total" not in got
        assert got["ebpfmaps_exporter_map_missing"][(("map", str(pin_path)), ("metric", "ebpf_test"))] == 1
    with ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=2) as again:
        again[0] = 5
        again.pin(str(pin_path))
        assert scrape(c)["ebpf_test_total"] == {(("k", "0"),): 5, (("k", "1"),): 0}
    c.close()


def test_maps_by_id_and_by_name() -> None:
    with ebpfmaps.create("array", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=2,
                         name="exp_by_name") as m:
        m[1] = 42
        config = parse_config({"metrics": [
            {"name": "by_id", "type": "gauge", "map": {"id": m.id}, "labels": ["slot"]},
            {"name": "by_name", "type": "gauge", "map": {"name": "exp_by_name"}, "labels": ["slot"]},
        ]})
        got = scrape(MapCollector(config))
        assert got["by_id"][(("slot", "1"),)] == got["by_name"][(("slot", "1"),)] == 42
        map_id = m.id
    got = scrape(MapCollector(config))
    assert "by_id" not in got
    assert got["ebpfmaps_exporter_map_missing"][(("map", f"id:{map_id}"), ("metric", "by_id"))] == 1


# ---------------------------------------------------------------- the server and the command

def test_http_server_serves_metrics(pin_path: Path) -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as m:
        m[3] = 33
        m.pin(str(pin_path))
        config = parse_config({"metrics": [{"name": "served_total", "type": "counter", "help": "Served.",
                                            "map": str(pin_path), "labels": ["k"]}]})
        with Exporter(config, "127.0.0.1:0") as exporter:
            host, port = exporter.start()
            with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as resp:
                body = resp.read().decode()
        assert 'served_total{k="3"} 33.0' in body
        assert "# HELP served_total Served." in body
        assert "ebpfmaps_exporter_scrape_duration_seconds" in body and "process_cpu_seconds_total" in body
        with pytest.raises(ConnectionRefusedError):  # stopped: nothing listens there any more
            socket.create_connection((host, port), timeout=10).close()


def test_cli_check_and_once(tmp_path: Path, pin_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("metrics:\n  - name: x\n    type: countr\n    map: /sys/fs/bpf/x\n")
    proc = subprocess.run([*EBPFMAPS, "export", "--config", str(bad), "--check"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "metrics[0].type: 'countr' is not one of counter, gauge, histogram; did you mean 'counter'?" in proc.stderr
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as m:
        m[9] = 99
        m.pin(str(pin_path))
        good = tmp_path / "good.yaml"
        good.write_text(f"metrics:\n  - name: once_total\n    type: counter\n    map: {pin_path}\n    labels: [k]\n")
        proc = subprocess.run([*EBPFMAPS, "export", "--config", str(good), "--check"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0 and "ok (1 metric)" in proc.stdout, proc.stderr
        proc = subprocess.run([*EBPFMAPS, "export", "--config", str(good), "--once"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert 'once_total{k="9"} 99.0' in proc.stdout


def test_btf_member_names_that_cannot_be_labels_are_refused(pin_path: Path) -> None:
    b = BtfBuilder()
    u32, u64 = b.add_int("__u32", 4), b.add_int("__u64", 8)
    key = b.add_struct("padded_key", 8, [("pid", u32, 0), ("__pad", u32, 4)])
    with ebpfmaps.create("hash", key_size=8, value_size=8, max_entries=8, btf=b.load(), btf_key_type_id=key,
                         btf_value_type_id=u64) as m:
        m.pin(str(pin_path))
        with pytest.raises(ConfigError, match=r"the key field '__pad' .* is not a usable label name"):
            one_metric(pin_path, labels=[{"name": "", "decode": "btf"}]).check()
        c = one_metric(pin_path, labels=[{"name": "key_", "decode": "btf"}])
        assert c.check() == []
        m[(5).to_bytes(4, "little") + bytes(4)] = (1).to_bytes(8, "little")
        assert scrape(c)["ebpf_test_total"] == {(("key___pad", "0"), ("key_pid", "5")): 1}


def test_cli_serves_until_sigterm_and_exits_cleanly(tmp_path: Path, pin_path: Path) -> None:
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as m:
        m[1] = 11
        m.pin(str(pin_path))
        config = tmp_path / "exporter.yaml"
        config.write_text(f"metrics:\n  - name: term_total\n    type: counter\n    map: {pin_path}\n    labels: [k]\n")
        proc = subprocess.Popen([*EBPFMAPS, "export", "--config", str(config), "--listen", "127.0.0.1:0"],
                                stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert "serving 1 metric on http://127.0.0.1:" in line, line
            port = int(line.rsplit(":", 1)[1].split("/")[0])
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as resp:
                assert 'term_total{k="1"} 11.0' in resp.read().decode()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_interface_names_and_renamed_values(pin_path: Path) -> None:
    lo = socket.if_nametoindex("lo")
    with ebpfmaps.create("hash", key_size=8, value_size=8, max_entries=8) as m:
        for ifindex, proto, count in ((lo, 6, 3), (lo, 17, 4), (lo, 99, 5), (999_999, 6, 6)):
            m[ifindex.to_bytes(4, "little") + proto.to_bytes(4, "little")] = count.to_bytes(8, "little")
        m.pin(str(pin_path))
        c = one_metric(pin_path, labels=[{"name": "dev", "decode": "ifname"},
                                         {"name": "proto", "size": 4, "names": {6: "tcp", 17: "udp"}}])
        assert scrape(c)["ebpf_test_total"] == {
            (("dev", "lo"), ("proto", "tcp")): 3, (("dev", "lo"), ("proto", "udp")): 4,
            (("dev", "lo"), ("proto", "99")): 5, (("dev", "999999"), ("proto", "tcp")): 6}
