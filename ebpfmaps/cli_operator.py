"""The operator's subcommands of ``ebpfmaps``: ``watch``, ``hist`` and ``export``.

    ebpfmaps watch /sys/fs/bpf/counts -n 10           top 10 keys by per-second rate, refreshed every second
    ebpfmaps watch id:42 --per-cpu --sort value       per-CPU columns, sorted by total
    ebpfmaps hist /sys/fs/bpf/latency --label usecs   a log2 histogram as bcc prints it
    ebpfmaps hist /sys/fs/bpf/sizes --linear          a linear histogram
    ebpfmaps export --config exporter.yaml            serve /metrics for Prometheus
    ebpfmaps export --config exporter.yaml --check    validate the config against the maps, then exit

Each registers into the main parser with :func:`register`; the heavy front-end libraries
(rich, prometheus_client, PyYAML) are imported only by the command that uses them.
Exit codes: 0 ok, 1 map not found, 2 usage or config error, 3 kernel or permission error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ebpfmaps import factory, hist
from ebpfmaps.errors import InvalidArgument, KeyNotFound, MapError, PinNotFound
from ebpfmaps.map import Map

EXIT_OK, EXIT_NOT_FOUND, EXIT_USAGE, EXIT_KERNEL = 0, 1, 2, 3
EXPORTER_EXTRA = "pip install 'ebpfmaps[exporter]'"


def open_map(target: str) -> Map:
    """A pin path, or ``id:N``, opened read-only."""
    if target.startswith("id:"):
        try:
            map_id = int(target[3:], 0)
        except ValueError:
            raise InvalidArgument(f"{target!r}: write a map id as id:N, e.g. id:42") from None
        return factory.open_by_id(map_id, readonly=True)
    return factory.open_pinned(target, readonly=True)


def _report(exc: BaseException) -> int:
    """The exit code for ``exc``, after saying what went wrong on stderr."""
    print(f"ebpfmaps: {exc}" if isinstance(exc, InvalidArgument) else f"ebpfmaps: {type(exc).__name__}: {exc}",
          file=sys.stderr)
    if isinstance(exc, (PinNotFound, KeyNotFound, FileNotFoundError)):
        return EXIT_NOT_FOUND
    if isinstance(exc, InvalidArgument):
        return EXIT_USAGE
    return EXIT_KERNEL


def cmd_watch(args: argparse.Namespace) -> int:
    from ebpfmaps import watch

    try:
        fields = watch.parse_fields(args.fields) if args.fields else None
        with open_map(args.target) as m:
            watcher = watch.Watcher(m, fields=fields, top=args.top, sort=args.sort, per_cpu=args.per_cpu)
            live = False if args.plain else None
            return watch.run(watcher, interval=args.interval, count=args.count, live=live)
    except (MapError, OSError) as exc:
        return _report(exc)


def cmd_hist(args: argparse.Namespace) -> int:
    try:
        with open_map(args.target) as m:
            text = hist.format_map_hist(m, args.label, linear=args.linear, section_header=args.section_header,
                                        slot_size=args.slot_size, strip_leading_zero=args.strip_leading_zero)
    except (MapError, OSError) as exc:
        return _report(exc)
    sys.stdout.write(text)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    try:
        from ebpfmaps import exporter
    except ImportError as exc:
        print(f"ebpfmaps: the exporter needs prometheus_client and PyYAML ({EXPORTER_EXTRA}): {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="ebpfmaps export: %(message)s")
    try:
        config = exporter.load_config(args.config)
        if args.check or args.once:
            collector = exporter.MapCollector(config)
            try:
                for line in collector.check():
                    print(f"warning: {line}", file=sys.stderr)
                if args.once:
                    sys.stdout.write(exporter.families_text(collector).decode())
                else:
                    n = len(config.metrics)
                    print(f"{args.config}: ok ({n} metric{'' if n == 1 else 's'})")
            finally:
                collector.close()
            return EXIT_OK
        return exporter.serve(config, args.listen)
    except (MapError, OSError) as exc:
        return _report(exc)


def register(sub: Any) -> None:
    """Add ``watch``, ``hist`` and ``export`` to the subparsers ``sub`` of the main parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser("watch", help="live table of a counter map with per-second rates", formatter_class=fmt,
                       description="Refresh a table of the map's top entries with per-second rates (deltas).\n"
                                   "Per-CPU values are summed (--per-cpu adds a column per CPU).",
                       epilog="examples:\n  ebpfmaps watch /sys/fs/bpf/counts -n 10\n"
                              "  ebpfmaps watch id:42 --fields packets:0:8,bytes:8:8 --sort value")
    s.add_argument("target", help="pin path or id:N")
    s.add_argument("-n", "--top", type=int, default=20, help="rows to show (default 20)")
    s.add_argument("-i", "--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    s.add_argument("-c", "--count", type=int, help="stop after this many refreshes")
    s.add_argument("--sort", choices=("rate", "value", "key"), default="rate")
    s.add_argument("--per-cpu", action="store_true", help="also show each CPU's value")
    s.add_argument("--fields", help="counters in the value as name:offset[:size],... (default: the whole value)")
    s.add_argument("--plain", action="store_true", help="plain text even on a terminal")
    s.set_defaults(fn=cmd_watch)

    s = sub.add_parser("hist", help="print a histogram map as bcc does", formatter_class=fmt,
                       description="Print a log2 (or --linear) histogram map exactly as bcc's print_log2_hist /\n"
                                   "print_linear_hist. A key wider than the slot is <section, slot>: one histogram\n"
                                   "per section.",
                       epilog="examples:\n  ebpfmaps hist /sys/fs/bpf/biolatency --label usecs\n"
                              "  ebpfmaps hist /sys/fs/bpf/runq --linear --label ms")
    s.add_argument("target", help="pin path or id:N")
    s.add_argument("--label", default="value", help="the value column's name (bcc's val_type)")
    s.add_argument("--linear", action="store_true", help="a linear histogram (slot = value)")
    s.add_argument("--section-header", default="Bucket ptr", help="heading of each section (bcc's section_header)")
    s.add_argument("--slot-size", type=int, help="bytes of the slot at the end of the key (default 8, or the key)")
    s.add_argument("--strip-leading-zero", action="store_true", help="omit the empty buckets before the first")
    s.set_defaults(fn=cmd_hist)

    s = sub.add_parser("export", help="serve maps as Prometheus metrics", formatter_class=fmt,
                       description="Serve /metrics for Prometheus from the maps named in a YAML config.\n"
                                   f"Needs the exporter extra ({EXPORTER_EXTRA}).",
                       epilog="examples:\n  ebpfmaps export --config exporter.yaml --listen 0.0.0.0:9435\n"
                              "  ebpfmaps export --config exporter.yaml --check\n"
                              "  ebpfmaps export --config exporter.yaml --once")
    s.add_argument("--config", required=True, help="the YAML config")
    s.add_argument("--listen", help="host:port to serve on (default: the config's listen, or 127.0.0.1:9435)")
    s.add_argument("--check", action="store_true", help="validate the config against the maps present and exit")
    s.add_argument("--once", action="store_true", help="print one scrape to stdout and exit")
    s.add_argument("-v", "--verbose", action="store_true", help="log map replacements and reads")
    s.set_defaults(fn=cmd_export)


__all__ = ["cmd_export", "cmd_hist", "cmd_watch", "open_map", "register"]
