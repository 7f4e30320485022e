"""``events``: stream a ring buffer's records or a perf event array's samples as they arrive
(as ``bpftool map event_pipe`` does), as hex text or JSON Lines."""

from __future__ import annotations

import argparse
import sys
import time

from ebpfmaps._lazy import lazy_module
from ebpfmaps.cli.common import UsageError, add_json, open_target

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    import json
    from typing import Any

    from ebpfmaps.maps import perf, ringbuf
else:
    perf = lazy_module("ebpfmaps.maps.perf")  # only `events` needs the streaming families
    ringbuf = lazy_module("ebpfmaps.maps.ringbuf")
    json = lazy_module("json")  # loaded by --json output and JSON values only


class _Enough(Exception):
    """The requested number of events has been printed."""


class _Printer:
    def __init__(self, as_json: bool, count: int | None) -> None:
        self.as_json = as_json
        self.left = count
        self.printed = 0

    def emit(self, data: Any, cpu: int | None = None) -> None:
        raw = bytes(data)
        if self.as_json:
            obj: dict[str, Any] = {"cpu": cpu, "size": len(raw), "data": "0x" + raw.hex()}
            line = json.dumps(obj)
        else:
            where = "" if cpu is None else f"cpu {cpu}: "
            line = f"{where}{raw.hex(' ')}"
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        self.printed += 1
        if self.left is not None:
            self.left -= 1
            if self.left <= 0:
                raise _Enough()

    def record(self, data: Any) -> None:
        self.emit(data)

    def sample(self, cpu: int, data: Any) -> None:
        self.emit(data, cpu)

    def lost(self, cpu: int, count: int) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps({"cpu": cpu, "lost": count}) + "\n")
        else:
            sys.stderr.write(f"cpu {cpu}: lost {count} samples\n")
        sys.stdout.flush()


def cmd_events(args: argparse.Namespace) -> int:
    # The readers (and asyncio with them) load only for this command.
    from ebpfmaps.readers import PerfEventReader, RingBufReader

    if args.count is not None and args.count <= 0:
        raise UsageError("--count takes a positive number")
    printer = _Printer(getattr(args, "json", False), args.count)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    with open_target(args.target) as m:
        if isinstance(m, ringbuf.RingBufMap):
            reader: Any = RingBufReader(m, printer.record)
        elif isinstance(m, perf.PerfEventArray):
            reader = PerfEventReader(m, printer.sample, printer.lost, pages=args.pages)
        else:
            raise UsageError(f"events: a {m.info().type_name} map has no events; give a ringbuf or a "
                             "perf_event_array")
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                reader.poll(remaining if remaining is not None else 1.0)
        except _Enough:
            pass
        except KeyboardInterrupt:
            pass
        finally:
            reader.close()
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("events", help="stream a ring buffer or perf event array (as bpftool map event_pipe)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Print each record of a ring buffer, or each sample of a perf event array, as "
                                   "it arrives: hex bytes, or JSON Lines with --json "
                                   '({"cpu": N or null, "size": N, "data": "0x..."}; lost perf samples as '
                                   '{"cpu": N, "lost": N}). Stops at Ctrl-C, --count or --timeout.',
                       epilog="examples:\n  ebpfmaps events /sys/fs/bpf/rb\n"
                              "  ebpfmaps events id:42 --json --count 100\n"
                              "  ebpfmaps events /sys/fs/bpf/perf --timeout 10")
    s.add_argument("target", help="pin path, id:N or name:NAME")
    s.add_argument("-c", "--count", type=int, help="stop after this many events")
    s.add_argument("-t", "--timeout", type=float, help="stop after this many seconds")
    s.add_argument("--pages", type=int, default=8, help="perf arrays: ring pages per CPU (a power of 2)")
    add_json(s)
    s.set_defaults(fn=cmd_events)
