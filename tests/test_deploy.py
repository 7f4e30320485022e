"""deploy/: the Kubernetes manifest checked against the Kubernetes API models, the configs it and the
systemd unit carry checked by the exporter's own validation, and the unit's capabilities tried for real.

The manifest is walked against the models of the official Kubernetes Python client (every field
must exist in the API, with its type) and deserialized by it (required fields). The systemd
unit's capability set is applied with setpriv to a real ``ebpfmaps export --once`` reading a pin
through a read-only bind mount, as the unit and the DaemonSet mount bpffs.
"""

from __future__ import annotations

import configparser
import ctypes
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml

import ebpfmaps
from ebpfmaps.exporter import parse_config
from tests.conftest import ROOT

EBPFMAPS = [sys.executable, "-m", "ebpfmaps.cli"]

DEPLOY = ROOT / "deploy"
MANIFEST = DEPLOY / "kubernetes" / "daemonset.yaml"
UNIT = DEPLOY / "systemd" / "ebpfmaps-exporter.service"
MODELS = {("v1", "Namespace"): "V1Namespace", ("v1", "ConfigMap"): "V1ConfigMap",
          ("apps/v1", "DaemonSet"): "V1DaemonSet"}
SCALARS: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float),
                                        "datetime": (str,)}


def api_problems(value: Any, type_name: str, where: str) -> list[str]:
    """Fields of ``value`` that the Kubernetes API model ``type_name`` does not have, or of the wrong type."""
    if type_name in ("object", "Any"):  # int-or-string and free-form fields
        return []
    if type_name.startswith(("list[", "List[")):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [p for i, v in enumerate(value) for p in api_problems(v, type_name[5:-1], f"{where}[{i}]")]
    if type_name.startswith(("dict(", "Dict[")):
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        return [p for k, v in value.items() for p in api_problems(v, inner, f"{where}.{k}")]
    if type_name in SCALARS:
        ok = isinstance(value, SCALARS[type_name]) and not (type_name != "bool" and isinstance(value, bool))
        return [] if ok else [f"{where}: expected {type_name}, found {value!r}"]
    model = getattr(k8s, type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} mapping"]
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    problems = []
    for key, v in value.items():
        if key not in by_json:
            problems.append(f"{where}.{key}: not a field of {type_name}")
        else:
            problems += api_problems(v, model.openapi_types[by_json[key]], f"{where}.{key}")
    return problems


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d is not None]


@pytest.mark.no_kernel
def test_manifest_is_valid_kubernetes() -> None:
    docs = documents()
    assert [d["kind"] for d in docs] == ["Namespace", "ConfigMap", "DaemonSet"]
    api = k8s.ApiClient()
    for d in docs:
        model = MODELS[(d["apiVersion"], d["kind"])]
        assert api_problems(d, model, d["kind"]) == []
        api._ApiClient__deserialize(d, model)  # the client's own checks: required fields present


@pytest.mark.no_kernel
def test_api_check_catches_mistakes() -> None:
    ds = documents()[2]
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilites"] = {"add": ["BPF"]}
    ds["spec"]["template"]["spec"]["hostNetwork"] = "yes"
    assert sorted(api_problems(ds, "V1DaemonSet", "DaemonSet")) == [
        "DaemonSet.spec.template.spec.containers[0].securityContext.capabilites: not a field of V1SecurityContext",
        "DaemonSet.spec.template.spec.hostNetwork: expected bool, found 'yes'",
    ]
    ds = documents()[2]
    del ds["spec"]["selector"]
    with pytest.raises(ValueError, match="selector"):
        k8s.ApiClient()._ApiClient__deserialize(ds, "V1DaemonSet")


@pytest.mark.no_kernel
def test_daemonset_runs_unprivileged_with_bpffs_and_a_valid_config() -> None:
    namespace, config_map, ds = documents()
    spec = ds["spec"]
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert ds["metadata"]["namespace"] == config_map["metadata"]["namespace"] == namespace["metadata"]["name"]
    (container,) = pod["spec"]["containers"]
    sc = container["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["BPF", "PERFMON"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert mounts["bpffs"]["mountPath"] == "/sys/fs/bpf" and mounts["bpffs"]["readOnly"] is True
    assert volumes["bpffs"]["hostPath"] == {"path": "/sys/fs/bpf", "type": "Directory"}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    # The command line parses, and names the config file the ConfigMap provides, on the port the pod exposes.
    args = container["args"]
    assert container["command"] == ["ebpfmaps"] and args[0] == "export"
    config_path = Path(args[args.index("--config") + 1])
    assert str(config_path.parent) == mounts["config"]["mountPath"] and config_path.name in config_map["data"]
    port = int(args[args.index("--listen") + 1].rsplit(":", 1)[1])
    assert container["ports"][0]["containerPort"] == port == int(pod["metadata"]["annotations"]["prometheus.io/port"])
    config = parse_config(yaml.safe_load(config_map["data"][config_path.name]), "the ConfigMap")
    assert all(m.map.pin and m.map.pin.startswith("/sys/fs/bpf/") for m in config.metrics)


@pytest.mark.no_kernel
def test_example_config_is_valid() -> None:
    config = parse_config(yaml.safe_load((DEPLOY / "exporter.yaml").read_text()), "deploy/exporter.yaml")
    assert [m.type for m in config.metrics] == ["counter", "counter", "histogram"]


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def setpriv_caps(caps: str) -> list[str]:
    """A setpriv prefix that leaves root only ``caps`` (e.g. ``+bpf,+perfmon``), as systemd's bounding set does."""
    return ["setpriv", f"--bounding-set=-all{caps}", f"--inh-caps=-all{caps}", "--"]


def test_systemd_unit_capabilities_are_enough_through_a_read_only_bpffs(tmp_path: Path, bpffs: Path) -> None:
    service = unit()["Service"]
    caps = service["CapabilityBoundingSet"].split()
    assert caps == service["AmbientCapabilities"].split() == ["CAP_BPF", "CAP_PERFMON"]
    assert service["ExecStart"].split()[1:3] == ["export", "--config"]
    assert "/sys/fs/bpf" in service["ReadOnlyPaths"].split()
    with ebpfmaps.create("hash", key_type=ctypes.c_uint32, value_type=ctypes.c_uint64, max_entries=4) as m:
        m[5] = 55
        m.pin(str(bpffs / "deploy_counts"))
        ro = tmp_path / "ro"
        ro.mkdir()
        subprocess.run(["mount", "--bind", "-o", "ro", str(bpffs), str(ro)], check=True)
        try:
            config = tmp_path / "exporter.yaml"
            config.write_text("metrics:\n  - name: deploy_counts_total\n    type: counter\n"
                              f"    map: {ro / 'deploy_counts'}\n    labels: [k]\n")
            command = [*EBPFMAPS, "export", "--config", str(config), "--once"]
            allowed = "".join(f",+{c.removeprefix('CAP_').lower()}" for c in caps)
            proc = subprocess.run(setpriv_caps(allowed) + command, capture_output=True, text=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            assert 'deploy_counts_total{k="5"} 55.0' in proc.stdout
        finally:
            subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.no_kernel
def test_readme_config_example_is_valid() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("<!-- section:exporter -->"):readme.index("<!-- /section:exporter -->")]
    block = section[section.index("```yaml\n") + len("```yaml\n"):]
    block = block[:block.index("```")]
    config = parse_config(yaml.safe_load(block), "the README's example")
    assert [m.type for m in config.metrics] == ["counter", "counter", "histogram"]
