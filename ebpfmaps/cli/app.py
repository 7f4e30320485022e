"""The parser and the main loop: errors become the documented exit codes, and with ``--json`` a JSON
error object too."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import ebpfmaps
from ebpfmaps._lazy import lazy_module
from ebpfmaps.cli.common import SYNTAX_HELP, exit_code_of
from ebpfmaps.cli.registry import register_all, sized

TYPE_CHECKING = False  # typing's constant, without importing typing for every one-shot command
if TYPE_CHECKING:
    import json
else:
    json = lazy_module("json")  # loaded by --json output and JSON values only

DESCRIPTION = """\
Inspect and edit Linux BPF maps: every map type, by pin path, id or name.

examples:
  ebpfmaps list --pins                          every map, with its pin paths
  ebpfmaps show /sys/fs/bpf/counts --json       one map's info
  ebpfmaps dump id:42 --json > entries.json     every entry, streamed
  ebpfmaps get /sys/fs/bpf/counts 5 -k u32 -v u64
  ebpfmaps set /sys/fs/bpf/counts 1 100         integers in host byte order
  ebpfmaps set /sys/fs/bpf/routes 10.0.0.0/8 0x01000000
  ebpfmaps pop /sys/fs/bpf/jobs --all
  ebpfmaps events /sys/fs/bpf/rb --json
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, one that knows just that command (the fast path of a one-shot command)."""
    p = argparse.ArgumentParser(prog="ebpfmaps", description=DESCRIPTION, epilog=SYNTAX_HELP,
                                formatter_class=sized(argparse.RawDescriptionHelpFormatter))
    p.add_argument("--version", action="version", version=f"ebpfmaps {ebpfmaps.__version__}")
    p.add_argument("-j", "--json", action="store_true", help="machine-readable output (every command)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_all(sub, only)
    return p


def _report(exc: BaseException, code: int, as_json: bool) -> None:
    kind = type(exc).__name__
    if as_json:
        sys.stdout.write(json.dumps({"error": {"type": kind, "message": str(exc), "exit_code": code}}) + "\n")
    sys.stderr.write(f"ebpfmaps: {kind}: {exc}\n")


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named on the line, when it is the first argument after global options; else None (the
    whole parser then reports the usage)."""
    for arg in argv:
        if arg in ("-j", "--json"):
            continue
        if arg.startswith("-"):
            return None
        return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    line = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command_of(line)).parse_args(line)
    as_json = bool(getattr(args, "json", False))
    try:
        code = int(args.fn(args))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        code = exit_code_of(exc)
        _report(exc, code, as_json)
        if os.environ.get("EBPFMAPS_DEBUG"):
            raise
        return code
