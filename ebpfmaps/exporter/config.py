"""The exporter's configuration: which maps become which metrics, validated before anything runs.

A config is YAML (or the same structure as a dict)::

    listen: 127.0.0.1:9435          # optional; ``--listen`` overrides it
    metrics:
      - name: ebpf_packets_total    # the metric name
        type: counter               # counter, gauge or histogram
        help: Packets seen, by protocol
        map: {pin: /sys/fs/bpf/pkts}    # or {id: 42}, or {name: pkts} (the newest map of that name)
        labels:                         # how a key becomes labels, fields in key order
          - {name: proto, decode: int, size: 4}
        value: {offset: 0, size: 8}     # optional: the counter inside the value (default: all of it)

Every mistake is reported with its place in the file (``metrics[1].labels[0].decode``), what was
found, what is allowed, and the closest allowed word for a misspelling; all mistakes at once,
not the first one only. A map that is absent at start is not a mistake: it is reported by the
``ebpfmaps_exporter_map_missing`` metric until it appears.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebpfmaps.errors import InvalidArgument

METRIC_TYPES = ("counter", "gauge", "histogram")
DECODERS = ("int", "ipv4", "ipv6", "cidr", "ksym", "ifname", "string", "hex", "btf")
BUCKET_KINDS = ("log2", "linear")
BYTE_ORDERS = ("little", "big")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Labels the exporter adds, or that Prometheus itself reserves for histograms.
RESERVED_LABELS = frozenset({"le", "quantile"})
DEFAULT_LISTEN = "127.0.0.1:9435"
# Decoders with a size fixed by what they decode.
FIXED_SIZES = {"ipv4": 4, "ipv6": 16, "ksym": 8, "ifname": 4}


class ConfigError(InvalidArgument):
    """The exporter's config is wrong; ``problems`` lists every mistake, each with its place."""

    def __init__(self, problems: Sequence[str], source: str = "the config") -> None:
        self.problems = list(problems)
        self.source = source
        listed = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}:\n{listed}")


@dataclass(frozen=True)
class MapRef:
    """Where a metric's map is: a pin path, a kernel id, or the newest map with a name."""

    pin: str | None = None
    id: int | None = None
    name: str | None = None

    def __str__(self) -> str:
        if self.pin is not None:
            return self.pin
        if self.id is not None:
            return f"id:{self.id}"
        return f"name:{self.name}"


@dataclass(frozen=True)
class LabelSpec:
    """One label taken from the key: ``size`` bytes at ``offset``, decoded by ``decode``.

    ``decode: btf`` takes every member of the key's BTF struct as a label of its own name
    (``name`` is then a prefix, may be empty). ``names`` renames decoded values (``{6: tcp}``).
    """

    name: str
    decode: str = "int"
    offset: int | None = None  # None: right after the label before it
    size: int | None = None  # None: the decoder's own size, or the rest of the key
    byte_order: str = "little"
    signed: bool = False
    # Decoded value -> label value (e.g. protocol numbers to names); others keep their decoded text.
    names: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ValueSpec:
    offset: int = 0
    size: int | None = None  # None: the whole value (1, 2, 4 or 8 bytes)
    scale: float = 1.0


@dataclass(frozen=True)
class HistogramSpec:
    """Buckets from a slot in the key: log2 slot ``i`` counts values up to ``2**i - 1``, linear slot ``i`` up to ``i``.

    Bucket bounds are multiplied by ``multiplier`` (e.g. ``1e-6`` for microseconds as seconds).
    Slots above ``max_slot`` count only toward ``+Inf``.
    """

    buckets: str = "log2"
    max_slot: int = 64
    multiplier: float = 1.0
    slot_size: int = 8


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: str
    help: str
    map: MapRef
    labels: tuple[LabelSpec, ...] = ()
    value: ValueSpec = field(default_factory=ValueSpec)
    histogram: HistogramSpec | None = None


@dataclass(frozen=True)
class ExporterConfig:
    metrics: tuple[MetricSpec, ...]
    listen: str = DEFAULT_LISTEN


class _Checker:
    """Collects every problem with its place instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def mapping(self, where: str, value: Any, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(where, f"expected a mapping with {', '.join(allowed)}; found {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
                self.fail(f"{where}.{key}", f"unknown setting{hint}")
        for key in required:
            if key not in value:
                self.fail(where, f"{key!r} is missing")
        return dict(value)

    def choice(self, where: str, value: Any, choices: Sequence[str]) -> str | None:
        if not isinstance(value, str) or value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1) if isinstance(value, str) else []
            hint = f"; did you mean {close[0]!r}?" if close else ""
            self.fail(where, f"{value!r} is not one of {', '.join(choices)}{hint}")
            return None
        return value

    def integer(self, where: str, value: Any, low: int = 0, high: int | None = None) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(where, f"expected an integer; found {_kind(value)}")
            return None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            self.fail(where, f"{value} is out of range ({bound})")
            return None
        return value

    def number(self, where: str, value: Any) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            self.fail(where, f"expected a positive number; found {value!r}")
            return None
        return float(value)

    def text(self, where: str, value: Any, pattern: re.Pattern[str] | None = None, what: str = "") -> str | None:
        if not isinstance(value, str) or not value:
            self.fail(where, f"expected a non-empty string; found {_kind(value)}")
            return None
        if pattern is not None and not pattern.match(value):
            self.fail(where, f"{value!r} is not a valid {what} (letters, digits and _, not starting with a digit)")
            return None
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (dict, list)) else type(value).__name__


def _map_ref(c: _Checker, where: str, raw: Any) -> MapRef | None:
    if isinstance(raw, str):  # shorthand: a pin path
        raw = {"pin": raw}
    d = c.mapping(where, raw, ("pin", "id", "name"))
    given = [k for k in ("pin", "id", "name") if k in d]
    if isinstance(raw, Mapping) and len(given) != 1:
        c.fail(where, f"give exactly one of pin, id or name; found {', '.join(given) or 'none'}")
        return None
    if "pin" in d:
        pin = c.text(f"{where}.pin", d["pin"])
        if pin is not None and not pin.startswith("/"):
            c.fail(f"{where}.pin", f"{pin!r} is not an absolute path on a bpffs (e.g. /sys/fs/bpf/{pin})")
            return None
        return MapRef(pin=pin) if pin else None
    if "id" in d:
        ident = c.integer(f"{where}.id", d["id"], 1)
        return MapRef(id=ident) if ident is not None else None
    if "name" in d:
        name = c.text(f"{where}.name", d["name"])
        if name is not None and len(name) > 15:
            c.fail(f"{where}.name", f"{name!r} is longer than the kernel's 15-character map names")
            return None
        return MapRef(name=name) if name else None
    return None


def _label(c: _Checker, where: str, raw: Any, seen: set[str]) -> LabelSpec | None:
    if isinstance(raw, str):
        raw = {"name": raw}
    d = c.mapping(where, raw, ("name", "decode", "offset", "size", "byte_order", "signed", "names"), ("name",))
    if not d:
        return None
    decode = c.choice(f"{where}.decode", d.get("decode", "int"), DECODERS)
    name_ok = decode == "btf" and d.get("name") == ""
    name = d.get("name") if name_ok else c.text(f"{where}.name", d.get("name"), LABEL_NAME, "label name")
    if name and not name_ok:
        if name.startswith("__") or name in RESERVED_LABELS:
            c.fail(f"{where}.name", f"{name!r} is reserved by Prometheus")
        elif name in seen:
            c.fail(f"{where}.name", f"label {name!r} is given twice")
        seen.add(name)
    offset = c.integer(f"{where}.offset", d["offset"]) if "offset" in d else None
    size = c.integer(f"{where}.size", d["size"], 1, 4096) if "size" in d else None
    if decode == "int" and size is not None and size not in (1, 2, 4, 8):
        c.fail(f"{where}.size", f"an int label is 1, 2, 4 or 8 bytes, not {size}")
    if decode in FIXED_SIZES and size is not None and size != FIXED_SIZES[decode]:
        c.fail(f"{where}.size", f"a {decode} label is {FIXED_SIZES[decode]} bytes, not {size}")
    byte_order = c.choice(f"{where}.byte_order", d.get("byte_order", "little"), BYTE_ORDERS)
    signed = d.get("signed", False)
    if not isinstance(signed, bool):
        c.fail(f"{where}.signed", f"expected true or false; found {_kind(signed)}")
    if None in (decode, byte_order) or name is None:
        return None
    names: list[tuple[str, str]] = []
    raw_names = d.get("names", {})
    if not isinstance(raw_names, Mapping):
        c.fail(f"{where}.names", f"expected a mapping of decoded values to label values; found {_kind(raw_names)}")
    else:
        for k, v in raw_names.items():
            if isinstance(v, (dict, list)) or v is None or isinstance(k, (dict, list)) or k is None:
                c.fail(f"{where}.names.{k}", f"expected a value: name pair, e.g. 6: tcp; found {_kind(v)}")
            else:
                names.append((str(k), str(v)))
    return LabelSpec(str(name), str(decode), offset, size, str(byte_order), bool(signed), tuple(names))


def _metric(c: _Checker, where: str, raw: Any) -> MetricSpec | None:
    allowed = ("name", "type", "help", "map", "labels", "value", "histogram")
    d = c.mapping(where, raw, allowed, ("name", "type", "map"))
    if not d:
        return None
    name = c.text(f"{where}.name", d.get("name"), METRIC_NAME, "metric name") if "name" in d else None
    kind = c.choice(f"{where}.type", d.get("type"), METRIC_TYPES) if "type" in d else None
    help_text = d.get("help", "")
    if not isinstance(help_text, str):
        c.fail(f"{where}.help", f"expected a string; found {_kind(help_text)}")
        help_text = ""
    ref = _map_ref(c, f"{where}.map", d.get("map")) if "map" in d else None
    labels_raw = d.get("labels", [])
    labels: list[LabelSpec] = []
    if not isinstance(labels_raw, list):
        c.fail(f"{where}.labels", f"expected a list of labels; found {_kind(labels_raw)}")
    else:
        seen: set[str] = set()
        for i, lr in enumerate(labels_raw):
            spec = _label(c, f"{where}.labels[{i}]", lr, seen)
            if spec is not None:
                labels.append(spec)
    value = ValueSpec()
    if "value" in d:
        vd = c.mapping(f"{where}.value", d["value"], ("offset", "size", "scale"))
        offset = c.integer(f"{where}.value.offset", vd.get("offset", 0))
        size = vd.get("size")
        if size is not None and size not in (1, 2, 4, 8):
            c.fail(f"{where}.value.size", f"a counter is 1, 2, 4 or 8 bytes, not {size!r}")
            size = None
        scale = c.number(f"{where}.value.scale", vd.get("scale", 1.0))
        value = ValueSpec(offset or 0, size, scale or 1.0)
    histogram = None
    if kind == "histogram":
        hd = c.mapping(f"{where}.histogram", d.get("histogram", {}), ("buckets", "max_slot", "multiplier", "slot_size"))
        buckets = c.choice(f"{where}.histogram.buckets", hd.get("buckets", "log2"), BUCKET_KINDS)
        if buckets == "linear" and "max_slot" not in hd:
            c.fail(f"{where}.histogram", "a linear histogram needs max_slot (its last bucket), e.g. max_slot: 100")
        max_slot = c.integer(f"{where}.histogram.max_slot", hd.get("max_slot", 64), 0,
                             64 if buckets == "log2" else 100_000)
        multiplier = c.number(f"{where}.histogram.multiplier", hd.get("multiplier", 1.0))
        slot_size = c.integer(f"{where}.histogram.slot_size", hd.get("slot_size", 8), 1, 8)
        if slot_size is not None and slot_size not in (1, 2, 4, 8):
            c.fail(f"{where}.histogram.slot_size", f"the slot is 1, 2, 4 or 8 bytes, not {slot_size}")
        if buckets and max_slot is not None and multiplier and slot_size:
            histogram = HistogramSpec(buckets, max_slot, multiplier, slot_size)
    elif "histogram" in d:
        c.fail(f"{where}.histogram", f"only a histogram metric has buckets; this one is a {kind}")
    if name is None or kind is None or ref is None:
        return None
    if kind == "histogram" and histogram is None:
        return None
    return MetricSpec(name, kind, help_text or name, ref, tuple(labels), value, histogram)


def parse_config(raw: Any, source: str = "the config") -> ExporterConfig:
    """Validate ``raw`` (a loaded YAML document) into an :class:`ExporterConfig`, or raise :class:`ConfigError`."""
    c = _Checker()
    d = c.mapping("(top)", raw, ("listen", "metrics"), ("metrics",))
    metrics: list[MetricSpec] = []
    listen = DEFAULT_LISTEN
    if "listen" in d:
        got = c.text("listen", d["listen"])
        if got is not None:
            try:
                parse_listen(got)
                listen = got
            except InvalidArgument as exc:
                c.fail("listen", str(exc))
    raw_metrics = d.get("metrics")
    if "metrics" in d and (not isinstance(raw_metrics, list) or not raw_metrics):
        c.fail("metrics", f"expected a non-empty list of metrics; found {_kind(raw_metrics)}")
    elif isinstance(raw_metrics, list):
        exposed: dict[str, int] = {}
        for i, mr in enumerate(raw_metrics):
            spec = _metric(c, f"metrics[{i}]", mr)
            if spec is not None:
                metrics.append(spec)
            if not isinstance(mr, Mapping) or not isinstance(mr.get("name"), str):
                continue
            samples = sample_names(mr["name"], mr.get("type"))
            clash = sorted({exposed[s] for s in samples if s in exposed})
            if clash:
                c.fail(f"metrics[{i}].name", f"{mr['name']!r} would expose the same series names as metrics[{clash[0]}]")
            for s in samples:
                exposed.setdefault(s, i)
    if c.problems:
        raise ConfigError(c.problems, source)
    return ExporterConfig(tuple(metrics), listen)


def sample_names(name: str, kind: Any) -> set[str]:
    """The sample names a metric exposes (prometheus_client adds ``_total`` to counters, and more to histograms)."""
    if kind == "counter":
        base = name.removesuffix("_total")
        return {f"{base}_total", f"{base}_created"}
    if kind == "histogram":
        return {name + suffix for suffix in ("_bucket", "_count", "_sum", "_created")}
    return {name}


def load_config(path: str | Path) -> ExporterConfig:
    """Read and validate the YAML file at ``path``."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"cannot read it: {exc.strerror or exc}"], str(path)) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "YAML"
        raise ConfigError([f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}"], str(path)) from None
    return parse_config(raw, str(path))


def parse_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9435`` for IPv6; port 0 picks a free one) as ``(host, port)``."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # port 0: any free port
        raise InvalidArgument(f"{text!r} is not host:port (e.g. 127.0.0.1:9435 or [::]:9435)")
    return host.strip("[]") or "0.0.0.0", int(port)


__all__ = [
    "ConfigError", "ExporterConfig", "HistogramSpec", "LabelSpec", "MapRef", "MetricSpec", "ValueSpec",
    "load_config", "parse_config", "parse_listen",
]
