"""The exporter's HTTP server: ``/metrics`` in the Prometheus text format, served by prometheus_client."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.process_collector import ProcessCollector

from ebpfmaps.exporter.collector import MapCollector
from ebpfmaps.exporter.config import ExporterConfig, parse_listen

log = logging.getLogger("ebpfmaps.exporter")


class Exporter:
    """A running exporter: ``start()`` binds and serves in a thread, ``stop()`` shuts it down.

    ``start()`` first opens every map that is present and checks the config against it, so a
    label that does not fit a key fails at start with :class:`ConfigError`, not at the first scrape.
    """

    def __init__(self, config: ExporterConfig, listen: str | None = None) -> None:
        self.config = config
        self.listen = listen or config.listen
        self.collector = MapCollector(config)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> tuple[str, int]:
        """Check the config against the maps present, then serve; the bound ``(host, port)`` (port 0 picks one)."""
        host, port = parse_listen(self.listen)
        for line in self.collector.check():
            log.warning("%s; it is reported by ebpfmaps_exporter_map_missing until it appears", line)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        bound = self._server.server_address
        return str(bound[0]), int(bound[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.collector.close()

    def __enter__(self) -> Exporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(config: ExporterConfig, listen: str | None = None) -> int:
    """Serve until SIGINT or SIGTERM."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    exporter = Exporter(config, listen)
    try:
        host, port = exporter.start()
        log.warning("serving %d metric%s on http://%s:%d/metrics", len(config.metrics),
                    "" if len(config.metrics) == 1 else "s", host, port)
        stop.wait()
    finally:
        exporter.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


__all__ = ["Exporter", "serve"]
