"""Progress bars and summary tables (rich), quiet where output is not a terminal."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)


class _Bar:
    def __init__(self, progress: Progress | None, task: Any):
        self._p, self._t = progress, task

    def advance(self, n: int = 1, **fields: float) -> None:
        if self._p is not None:
            info = " ".join(f"{k}={v:.4g}" for k, v in fields.items())
            self._p.update(self._t, advance=n, info=info)


@contextmanager
def progress_bar(desc: str, total: int, completed: int = 0, enabled: bool = True) -> Iterator[_Bar]:
    """A progress bar with a free-text field for the latest loss/metrics."""
    if not enabled:
        yield _Bar(None, None)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task(desc, total=total, completed=completed, info="")
        yield _Bar(progress, task)


def summary_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> Table:
    """A rich table of result rows (dicts), numbers printed with 4 significant digits."""
    if columns is None:
        columns = []
        for r in rows:
            columns += [c for c in r if c not in columns]
    columns = list(columns)
    table = Table(title=title)
    for c in columns:
        table.add_column(str(c))
    for r in rows:
        table.add_row(*[_fmt(r.get(c, "")) for c in columns])
    return table


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_table(title: str, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Print a summary table to stdout."""
    Console().print(summary_table(title, rows, columns))
