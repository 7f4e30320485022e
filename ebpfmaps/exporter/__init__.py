"""A Prometheus exporter for BPF maps: ``ebpfmaps export --config exporter.yaml``.

The config (:mod:`ebpfmaps.exporter.config`) names maps and says how each becomes a metric;
:class:`~ebpfmaps.exporter.collector.MapCollector` reads them at scrape time and
:class:`~ebpfmaps.exporter.server.Exporter` serves ``/metrics``. Needs the ``exporter`` extra
(prometheus_client, PyYAML).
"""

from __future__ import annotations

from ebpfmaps.exporter.collector import MapCollector, families_text
from ebpfmaps.exporter.config import ConfigError, ExporterConfig, load_config, parse_config
from ebpfmaps.exporter.server import Exporter, serve

__all__ = ["ConfigError", "Exporter", "ExporterConfig", "MapCollector", "families_text", "load_config",
           "parse_config", "serve"]
