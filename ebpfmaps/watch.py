"""A live view of a counter map: the top entries with their per-second rates.

Each refresh reads the whole map once (:func:`ebpfmaps.snapshot.read_counters`, kernel batch
lookups where the type has them), sums per-CPU values, subtracts the previous refresh's
values key by key and divides by the time between the two reads. Only the top N rows are
decoded and formatted, so a 100,000-entry map costs one batch walk and one dict pass per
refresh. On a terminal the table is redrawn in place (rich's ``Live``); piped, each refresh is
printed as plain text.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from ebpfmaps.errors import InvalidArgument
from ebpfmaps.map import Map
from ebpfmaps.snapshot import CounterField, CounterSnapshot, read_counters

SORT_KEYS = ("rate", "value", "key")


@dataclass
class WatchRow:
    key: bytes
    values: tuple[int, ...]
    rates: tuple[float, ...] | None  # None on the first refresh: no earlier values to subtract
    per_cpu: tuple[tuple[int, ...], ...] | None = None


@dataclass
class WatchFrame:
    """One refresh: the top rows, how many entries the map held, and how long the read took."""

    rows: list[WatchRow]
    entries: int
    interval: float | None
    read_seconds: float


def format_key(m: Map, raw: bytes) -> str:
    """The key as the map's key codec decodes it (an int for integer keys), else hex bytes."""
    try:
        key = m.key_codec.decode(raw)
    except Exception:  # a codec that cannot decode these bytes: show them raw rather than fail the view
        key = raw
    if isinstance(key, (bytes, bytearray)):
        if len(key) in (1, 2, 4, 8):  # an untyped integer key, as bcc shows one
            return str(int.from_bytes(key, "little"))
        return key.hex(" ") if key else "(empty)"
    return str(key)


class Watcher:
    """Successive snapshots of ``m`` turned into frames of the ``top`` rows sorted by ``sort``.

    ``sort`` is ``"rate"`` (per-second change of the first field; the default), ``"value"`` or
    ``"key"``; ``fields`` names the counters in the value (default: the whole value as one).
    """

    def __init__(self, m: Map, *, fields: Sequence[CounterField] | None = None, top: int = 20,
                 sort: str = "rate", per_cpu: bool = False) -> None:
        if sort not in SORT_KEYS:
            raise InvalidArgument(f"sort by {sort!r}: choose one of {', '.join(SORT_KEYS)}")
        if not isinstance(top, int) or top < 1:
            raise InvalidArgument(f"top {top!r}: show at least one row")
        self.map = m
        self.fields = tuple(fields) if fields is not None else None
        self.top = top
        self.sort = sort
        self.per_cpu = per_cpu
        self._previous: CounterSnapshot | None = None
        self._previous_values: dict[bytes, tuple[int, ...]] = {}

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields] if self.fields else ["value"]

    def refresh(self) -> WatchFrame:
        start = time.monotonic()
        snap = read_counters(self.map, self.fields, per_cpu=self.per_cpu)
        read_seconds = time.monotonic() - start
        prev, prev_values = self._previous, self._previous_values
        interval = snap.taken - prev.taken if prev is not None else None
        keys, totals = snap.keys, snap.totals
        n = len(keys)
        order: Callable[[int], Any]
        if prev is not None and interval:
            # A key that appeared since the last read counted from zero meanwhile.
            zero = (0,) * (len(totals[0]) if totals else 0)
            firsts = [t[0] - prev_values.get(k, zero)[0] if t else 0 for k, t in zip(keys, totals)]
        else:
            firsts = [0] * n
        if self.sort == "rate" and prev is not None:
            order = lambda i: (firsts[i], totals[i][0] if totals[i] else 0)  # noqa: E731 -- ties by value
        elif self.sort == "key":
            order = keys.__getitem__
        else:
            order = lambda i: totals[i][0] if totals[i] else 0  # noqa: E731 -- a sort key, used once
        if self.sort == "key":
            chosen = heapq.nsmallest(self.top, range(n), key=order)
        else:
            chosen = heapq.nlargest(self.top, range(n), key=order)
        rows = []
        for i in chosen:
            rates = None
            if prev is not None and interval:
                before = prev_values.get(keys[i])
                rates = tuple((v - (before[j] if before else 0)) / interval for j, v in enumerate(totals[i]))
            rows.append(WatchRow(keys[i], totals[i], rates, snap.per_cpu[i] if snap.per_cpu is not None else None))
        self._previous = snap
        self._previous_values = snap.as_dict()
        return WatchFrame(rows, n, interval, read_seconds)

    def table_rows(self, frame: WatchFrame) -> tuple[list[str], list[list[str]]]:
        """Column headers and formatted cells of ``frame``."""
        names = self.field_names
        headers = ["key", *names, *(f"{n}/s" for n in names)]
        ncpu = 0
        if self.per_cpu and frame.rows and frame.rows[0].per_cpu is not None:
            ncpu = len(frame.rows[0].per_cpu)
            headers += [f"cpu{c}" for c in range(ncpu)]
        cells = []
        for r in frame.rows:
            row = [format_key(self.map, r.key), *(str(v) for v in r.values)]
            row += [f"{x:.1f}" for x in r.rates] if r.rates is not None else ["-"] * len(names)
            if ncpu and r.per_cpu is not None:
                row += ["/".join(str(v) for v in cpu) for cpu in r.per_cpu]
            cells.append(row)
        return headers, cells

    def caption(self, frame: WatchFrame) -> str:
        name = self.map.pin_path or f"id:{self.map.id}"
        every = f", {frame.interval:.2f}s between reads" if frame.interval else ""
        return (f"{name}: {frame.entries} entries, top {min(self.top, frame.entries)} by {self.sort}"
                f"{every}, read in {frame.read_seconds * 1000:.1f} ms")


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def run(watcher: Watcher, *, interval: float = 1.0, count: int | None = None, out: TextIO | None = None,
        live: bool | None = None) -> int:
    """Refresh every ``interval`` seconds, ``count`` times (forever when None) or until Ctrl-C.

    ``live`` (default: when ``out`` is a terminal) redraws one table in place with rich.
    """
    out = out if out is not None else sys.stdout
    if live is None:
        live = out.isatty()
    if interval <= 0:
        raise InvalidArgument(f"interval {interval!r}: must be positive seconds")
    done = 0
    try:
        if live:
            from rich.console import Console, Group
            from rich.live import Live
            from rich.table import Table
            from rich.text import Text

            def render() -> Group:
                frame = watcher.refresh()
                headers, cells = watcher.table_rows(frame)
                table = Table(*headers)
                for row in cells:
                    table.add_row(*row)
                return Group(Text(watcher.caption(frame)), table)

            with Live(render(), console=Console(file=out), auto_refresh=False) as view:
                done = 1
                while count is None or done < count:
                    time.sleep(interval)
                    view.update(render(), refresh=True)
                    done += 1
            return 0
        while count is None or done < count:
            if done:
                time.sleep(interval)
            frame = watcher.refresh()
            headers, cells = watcher.table_rows(frame)
            out.write(watcher.caption(frame) + "\n" + plain_table(headers, cells) + "\n\n")
            out.flush()
            done += 1
    except KeyboardInterrupt:
        pass
    return 0


def parse_fields(spec: str) -> list[CounterField]:
    """``"packets:0:8,bytes:8:8"`` (name:offset:size, size defaulting to 8) as counter fields."""
    fields = []
    for part in spec.split(","):
        bits = part.strip().split(":")
        if len(bits) not in (2, 3) or not bits[0]:
            raise InvalidArgument(f"field {part!r}: write it as name:offset[:size], e.g. bytes:8:8")
        try:
            offset, size = int(bits[1], 0), int(bits[2], 0) if len(bits) == 3 else 8
        except ValueError:
            raise InvalidArgument(f"field {part!r}: offset and size are integers") from None
        fields.append(CounterField(bits[0], offset, size))
    return fields


__all__ = ["WatchFrame", "WatchRow", "Watcher", "format_key", "parse_fields", "plain_table", "run"]
