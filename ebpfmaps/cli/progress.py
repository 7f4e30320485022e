"""Progress on long work, and rich tables, only where a person is watching.

A progress bar is drawn (with rich, on stderr) when stderr is a terminal and stdout is not: a dump
redirected to a file shows its progress; a dump to the screen or into a pipe shows none, and a script
that reads stderr gets nothing from it. rich is imported only then, so commands start fast without it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager


def wanted(*, streams_data: bool = True) -> bool:
    """A person watches stderr; a command that streams data to stdout (a dump) keeps a terminal stdout
    clean, while one that prints a line at the end (a resize) shows its bar there too."""
    return sys.stderr.isatty() and not (streams_data and sys.stdout.isatty())


def _ignore(count: int) -> None:
    del count


@contextmanager
def bar(description: str, total: int | None, *, streams_data: bool = True) -> Iterator[Callable[[int], None]]:
    """``advance(n)`` for ``n`` more items done: a rich progress bar on a watching terminal, else nothing."""
    if not wanted(streams_data=streams_data):
        yield _ignore
        return
    try:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:  # rich is an optional extra: no bar without it
        yield _ignore
        return
    from rich.console import Console

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as shown:
        task = shown.add_task(description, total=total)

        def advance(count: int) -> None:
            shown.advance(task, count)

        yield advance


def print_rich_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> bool:
    """A rich table on the terminal; False (nothing printed) when rich is not installed."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return False
    table = Table(*headers)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
    return True
