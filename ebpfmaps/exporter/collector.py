"""Metrics read from maps at scrape time, and metrics about the exporter itself.

Each scrape reads every configured map once with kernel batch lookups
(:func:`ebpfmaps.snapshot.read_counters`), sums per-CPU values, decodes keys into label
values, and sums entries that share a label set (a label taken from part of the key). Nothing
is cached between scrapes except the open map: a pinned map is reopened when its pin is
replaced (a resize re-pins a new map by rename) and dropped when the pin disappears; a map
named by id or name is looked up again on every scrape. A map that is missing is reported by
``ebpfmaps_exporter_map_missing`` and its metric is left out, never an error for the scrape.

The exporter is one host's view. A fleet runs one exporter per host and lets Prometheus
aggregate across hosts; nothing here merges hosts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from ebpfmaps import factory
from ebpfmaps.errors import InvalidArgument, MapError, NotSupported, PinNotFound
from ebpfmaps.exporter.config import ConfigError, ExporterConfig, MetricSpec
from ebpfmaps.exporter.labels import KeyField, btf_members_of, key_decoder, resolve_fields
from ebpfmaps.map import Map
from ebpfmaps.snapshot import CounterField, read_counters

log = logging.getLogger("ebpfmaps.exporter")
SELF_PREFIX = "ebpfmaps_exporter"


@dataclass
class _Layout:
    """How to read one opened map: label fields, the key decoder, the counter in the value."""

    fields: list[KeyField]
    decode: Callable[[bytes], tuple[str, ...]]
    counter: CounterField
    slot: slice | None
    labels_of: dict[bytes, tuple[str, ...]] = field(default_factory=dict)  # decoded label values by key


@dataclass
class MapSource:
    """One metric's map: opened lazily, reopened when its pin is replaced, dropped when it is gone."""

    spec: MetricSpec
    where: str
    map: Map | None = None
    pin_identity: tuple[int, int] | None = None
    layout: _Layout | None = None
    errors: int = 0
    reopens: int = 0
    missing: bool = True
    entries: int = 0
    seconds: float = 0.0
    last_error: str = field(default="")

    def close(self) -> None:
        if self.map is not None:
            self.map.close()
        self.map, self.layout, self.pin_identity = None, None, None

    def _open(self) -> Map | None:
        ref = self.spec.map
        if ref.pin is not None:
            try:
                st = os.stat(ref.pin)
            except FileNotFoundError:
                return None
            identity = (st.st_dev, st.st_ino)
            if self.map is not None and identity == self.pin_identity:
                return self.map
            try:
                m = factory.open_pinned(ref.pin, readonly=True)
            except PinNotFound:
                return None
            self.pin_identity = identity
            return m
        if ref.id is not None:
            if self.map is not None and self.map.id == ref.id and factory.map_exists(ref.id):
                return self.map
            if not factory.map_exists(ref.id):
                return None
            return factory.open_by_id(ref.id, readonly=True)
        ids = [info.id for info in factory.list_maps() if info.name == ref.name]
        if not ids:
            return None
        newest = max(ids)
        if self.map is not None and self.map.id == newest:
            return self.map
        return factory.open_by_id(newest, readonly=True)

    def current(self) -> Map | None:
        """The map as it is now (reopened if replaced), with its layout resolved; None when it is missing."""
        m = self._open()
        if m is not self.map:
            had = self.map is not None
            if self.map is not None:
                self.map.close()
            self.map, self.layout = m, None
            if m is not None and had:
                self.reopens += 1
                log.info("%s: %s was replaced; reading the new map (id %d)", self.where, self.spec.map, m.id)
        if m is not None and self.layout is None:
            try:
                self.layout = layout_for(self.spec, m, self.where)
            except Exception:
                self.close()
                raise
        self.missing = m is None
        return m


def layout_for(spec: MetricSpec, m: Map, where: str) -> _Layout:
    """Resolve ``spec``'s labels and value against ``m``'s real sizes; :class:`ConfigError` for what does not fit."""
    ks, vs = m.key_size, m.value_size
    name = str(spec.map)
    slot = None
    label_bytes = ks
    if spec.histogram is not None:
        ss = spec.histogram.slot_size
        if ss > ks:
            raise ConfigError([f"{where}.histogram.slot_size: {ss} bytes do not fit the {ks}-byte key of {name}"])
        label_bytes = ks - ss
        slot = slice(label_bytes, ks)
    needs_btf = any(label.decode == "btf" for label in spec.labels)
    members = btf_members_of(m) if needs_btf else None
    if members is not None and spec.histogram is not None:
        members = [mem for mem in members if mem.offset + mem.size <= label_bytes]
    fields = resolve_fields(spec.labels, label_bytes, where=where, map_name=name, members=members)
    size = spec.value.size if spec.value.size is not None else vs - spec.value.offset
    if size not in (1, 2, 4, 8) or spec.value.offset + size > vs:
        raise ConfigError([f"{where}.value: a counter of {size} bytes at offset {spec.value.offset} does not fit "
                           f"the {vs}-byte value of {name}; give value.offset and value.size (1, 2, 4 or 8)"])
    return _Layout(fields, key_decoder(fields) if fields else (lambda key: ()), CounterField("value", spec.value.offset,
                   size), slot)


def _bucket_bounds(spec: MetricSpec) -> list[float]:
    h = spec.histogram
    assert h is not None
    if h.buckets == "log2":
        return [((1 << i) - 1) * h.multiplier for i in range(h.max_slot + 1)]
    return [i * h.multiplier for i in range(h.max_slot + 1)]


def _fmt_bound(b: float) -> str:
    return repr(float(b)) if b != int(b) or abs(b) >= 1e15 else f"{b:.1f}"


def read_metric(source: MapSource, m: Map) -> Metric:
    spec = source.spec
    layout = source.layout
    assert layout is not None
    snap = read_counters(m, (layout.counter,))
    source.entries = len(snap.keys)
    names = [f.name for f in layout.fields]
    decode = layout.decode
    scale = spec.value.scale
    if spec.histogram is None:
        # Keys are mostly the same from one scrape to the next: their label values are decoded once and kept.
        cache = layout.labels_of
        if len(cache) > 2 * len(snap.keys) + 1024:
            cache.clear()
        sums: dict[tuple[str, ...], int] = {}
        for key, (value,) in zip(snap.keys, snap.totals):
            labels = cache.get(key)
            if labels is None:
                labels = cache[key] = decode(key)
            sums[labels] = sums.get(labels, 0) + value
        family: Metric
        if spec.type == "counter":
            family = CounterMetricFamily(spec.name, spec.help, labels=names)
            sample_name = family.name + "_total"
        else:
            family = GaugeMetricFamily(spec.name, spec.help, labels=names)
            sample_name = family.name
        # What add_metric does, without a method call and a name concatenation per series.
        append = family.samples.append
        for labels, total in sums.items():
            append(Sample(sample_name, dict(zip(names, labels)), total * scale if scale != 1.0 else total))
        return family
    assert layout.slot is not None
    bounds = _bucket_bounds(spec)
    nb = len(bounds)
    slot_sl = layout.slot
    hists: dict[tuple[str, ...], list[int]] = {}
    over: dict[tuple[str, ...], int] = {}
    for key, (value,) in zip(snap.keys, snap.totals):
        labels = decode(key[: slot_sl.start])
        slot = int.from_bytes(key[slot_sl], "little")
        counts = hists.get(labels)
        if counts is None:
            counts = hists[labels] = [0] * nb
            over[labels] = 0
        if slot < nb:
            counts[slot] += value
        else:
            over[labels] += value
    hfam = HistogramMetricFamily(spec.name, spec.help, labels=names)
    for labels, counts in hists.items():
        cumulative: list[tuple[str, float]] = []
        running = 0
        estimated_sum = 0.0
        for bound, c in zip(bounds, counts):
            running += c
            estimated_sum += bound * c  # an upper estimate: each value counted at its bucket's bound
            cumulative.append((_fmt_bound(bound), running))
        cumulative.append(("+Inf", running + over[labels]))
        hfam.add_metric(list(labels), cumulative, sum_value=estimated_sum)
    return hfam


class MapCollector(Collector):
    """The prometheus_client collector: every configured metric, then the exporter's own."""

    def __init__(self, config: ExporterConfig) -> None:
        self.config = config
        self.sources = [MapSource(spec, f"metrics[{i}]") for i, spec in enumerate(config.metrics)]
        self.scrapes = 0
        self.last_scrape_seconds = 0.0
        # prometheus_client serves each request in its own thread: one scrape at a time reads the maps.
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        return []  # the families depend on the maps at scrape time; registering never reads a map

    def check(self) -> list[str]:
        """Open every map that is present now and resolve its layout: the config's mistakes that need the map.

        Returns the metrics whose map is missing (they are picked up once it appears).
        """
        missing: list[str] = []
        problems: list[str] = []
        for source in self.sources:
            try:
                if source.current() is None:
                    missing.append(f"{source.where} ({source.spec.name}): {source.spec.map} is not there yet")
            except ConfigError as exc:
                problems.extend(exc.problems)
            except NotSupported as exc:
                problems.append(f"{source.where}.labels: {exc}")
        if problems:
            raise ConfigError(problems, "the config")
        return missing

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            start = time.monotonic()
            yield from self._collect_maps()
            self.scrapes += 1
            self.last_scrape_seconds = time.monotonic() - start
            yield from self._self_metrics()

    def _collect_maps(self) -> Iterator[Metric]:
        for source in self.sources:
            t0 = time.monotonic()
            try:
                m = source.current()
                if m is None:
                    continue
                family = read_metric(source, m)
            except (MapError, InvalidArgument, NotSupported, OSError) as exc:
                source.errors += 1
                text = f"{type(exc).__name__}: {exc}"
                if text != source.last_error:
                    log.warning("%s (%s): %s", source.where, source.spec.name, text)
                source.last_error = text
                source.close()  # open it afresh next time: the map may have been replaced
                continue
            finally:
                source.seconds = time.monotonic() - t0
            source.last_error = ""
            yield family

    def _self_metrics(self) -> Iterator[Metric]:
        labels = ["metric", "map"]
        duration = GaugeMetricFamily(f"{SELF_PREFIX}_map_read_seconds",
                                     "Seconds the last scrape spent reading and decoding each map", labels=labels)
        entries = GaugeMetricFamily(f"{SELF_PREFIX}_map_entries", "Entries each map held at the last scrape",
                                    labels=labels)
        missing = GaugeMetricFamily(f"{SELF_PREFIX}_map_missing", "1 while a configured map is not there",
                                    labels=labels)
        errors = CounterMetricFamily(f"{SELF_PREFIX}_scrape_errors", "Map reads that failed, by metric",
                                     labels=labels)
        reopens = CounterMetricFamily(f"{SELF_PREFIX}_map_reopens",
                                      "Times a map was replaced (re-pinned, resized) and opened again", labels=labels)
        for s in self.sources:
            lv = [s.spec.name, str(s.spec.map)]
            duration.add_metric(lv, s.seconds)
            entries.add_metric(lv, s.entries if not s.missing else 0)
            missing.add_metric(lv, 1 if s.missing else 0)
            errors.add_metric(lv, s.errors)
            reopens.add_metric(lv, s.reopens)
        scrape = GaugeMetricFamily(f"{SELF_PREFIX}_scrape_duration_seconds",
                                   "Seconds the last scrape took to read every map")
        scrape.add_metric([], self.last_scrape_seconds)
        scrapes = CounterMetricFamily(f"{SELF_PREFIX}_scrapes", "Scrapes served")
        scrapes.add_metric([], self.scrapes)
        yield from (scrape, scrapes, duration, entries, missing, errors, reopens)

    def close(self) -> None:
        with self._lock:
            for s in self.sources:
                s.close()


def families_text(collector: MapCollector) -> bytes:
    """One scrape in the Prometheus text format, without a server (for tests, benchmarks and ``--once``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return bytes(generate_latest(registry))


__all__ = ["MapCollector", "MapSource", "families_text", "layout_for", "read_metric"]
