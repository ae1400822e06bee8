"""Progress bars and summary tables (rich) on a terminal; plain timed lines when output is not one.

On a terminal a rich bar draws on stderr. When output goes to a file, a pipe or a scheduler's log
(stdout or stderr not a TTY), a bar prints one plain line instead — at its first step, then at
least every `PLAIN_EVERY_S` seconds (a heartbeat thread prints even while one step is slow), and
when it ends — with the count, the latest loss/metrics, the speed and the ETA. Lines go to
stdout when stdout is not a terminal (so `alignlab demo > log` logs them), else to stderr.
`ALIGNLAB_PROGRESS_SECONDS` sets the interval.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

console = Console(stderr=True)
PLAIN_EVERY_S = 15.0  # plain-output interval; the floor is one line per 30 s of work

_lock = threading.Lock()
_last_line = [0.0]  # monotonic time of the last plain line from any bar or heartbeat


def plain_interval() -> float:
    """Seconds between plain progress lines (ALIGNLAB_PROGRESS_SECONDS overrides the default)."""
    try:
        return max(0.0, float(os.environ.get("ALIGNLAB_PROGRESS_SECONDS", PLAIN_EVERY_S)))
    except ValueError:
        return PLAIN_EVERY_S


def plain_stream() -> TextIO | None:
    """Where plain progress lines go: stdout when it is not a terminal, else stderr when that
    is not one; None when both are terminals (the rich bar is drawn instead)."""
    for stream in (sys.stdout, sys.stderr):
        if not is_terminal(stream):
            return stream
    return None


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is an interactive terminal (False for files, pipes and closed streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def say(line: str, stream: TextIO | None = None) -> None:
    """Print one status line: plain and flushed to `stream` / `plain_stream()` (noting the time
    for the heartbeats), or through the rich console on a terminal."""
    out = stream or plain_stream()
    if out is None:  # both are terminals: print through rich, which keeps live bars intact
        console.print(line, highlight=False, markup=False)
        return
    with _lock:
        print(line, file=out, flush=True)
        _last_line[0] = time.monotonic()


def fmt_duration(seconds: float) -> str:
    """'42s', '3m05s', '1h02m'."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _speed(done: int, elapsed: float) -> str:
    rate = done / max(elapsed, 1e-9)
    return f"{rate:.3g} it/s" if rate >= 1 else f"{1 / rate:.3g} s/it"


@contextmanager
def heartbeat(status: Callable[[], str], interval: float | None = None,
              stream: TextIO | None = None) -> Iterator[None]:
    """While the block runs, print `status()` whenever no plain line was printed for `interval`
    seconds (so a log shows life even while one step or an unbarred phase is slow)."""
    every = plain_interval() if interval is None else interval
    out = stream or plain_stream()
    if out is None or every <= 0:  # on a terminal the live bars show progress
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            quiet = time.monotonic() - _last_line[0]
            if stop.wait(max(0.05, every - quiet)):
                return
            if time.monotonic() - _last_line[0] >= every:
                say(status(), out)

    thread = threading.Thread(target=beat, name="alignlab-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class _Bar:
    """What a loop advances: a rich bar, plain timed lines, or nothing."""

    def __init__(self, progress: Progress | None = None, task: Any = None, desc: str = "", total: int = 0,
                 completed: int = 0, stream: TextIO | None = None, interval: float = 0.0):
        self._p, self._t = progress, task
        self.desc, self.total, self.n, self.info = desc, total, completed, ""
        self._stream, self._interval = stream, interval
        self._start_n, self._t0 = completed, time.monotonic()
        self._last_step_t = self._t0
        self._printed = False

    def advance(self, n: int = 1, **fields: float) -> None:
        info = " ".join(f"{k}={v:.4g}" for k, v in fields.items())
        if self._p is not None:
            self._p.update(self._t, advance=n, info=info)
        if self._stream is None:
            return
        self.n += n
        self.info = info or self.info
        self._last_step_t = time.monotonic()
        if not self._printed or time.monotonic() - _last_line[0] >= self._interval:
            self._printed = True
            say(self.line(), self._stream)

    def end_line(self, failed: bool) -> str:
        """'desc done: 120/120 in 57s (2.1 it/s)' (or 'stopped at' when the loop raised)."""
        elapsed, done = time.monotonic() - self._t0, self.n - self._start_n
        verb = "stopped at" if failed else "done:"
        speed = f" ({_speed(done, elapsed)})" if done > 0 else ""
        return f"{self.desc} {verb} {self.n}/{self.total} in {fmt_duration(elapsed)}{speed}" + (
            f" {self.info}" if self.info else "")

    def line(self, waiting: bool = False) -> str:
        """'desc 40/120 (33%) loss=1.23 | 2.1 it/s | elapsed 19s | ETA 38s'."""
        now = time.monotonic()
        busy, done = self._last_step_t - self._t0, self.n - self._start_n  # speed up to the last step
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        parts = [f"{self.desc} {self.n}/{self.total}{pct}" + (f" {self.info}" if self.info else "")]
        if done > 0:
            parts.append(_speed(done, busy))
        parts.append(f"elapsed {fmt_duration(now - self._t0)}")
        if done > 0 and self.total > self.n:
            parts.append(f"ETA {fmt_duration((self.total - self.n) * busy / done)}")
        if waiting and now - self._last_step_t >= self._interval:
            parts.append(f"working on step {self.n + 1} for {fmt_duration(now - self._last_step_t)}")
        return " | ".join(parts)


@contextmanager
def progress_bar(desc: str, total: int, completed: int = 0, enabled: bool = True,
                 stream: TextIO | None = None, interval: float | None = None) -> Iterator[_Bar]:
    """A progress bar with a free-text field for the latest loss/metrics.

    Plain lines go to `stream` when given, else to `plain_stream()`; a rich bar draws on a
    terminal. `interval` (seconds, default `plain_interval()`) spaces the plain lines."""
    if not enabled:
        yield _Bar()
        return
    out = stream if stream is not None else plain_stream()
    if out is not None:
        every = plain_interval() if interval is None else interval
        bar = _Bar(desc=desc, total=total, completed=completed, stream=out, interval=every)
        say(f"{desc} started: {completed}/{total}", out)
        failed = True
        try:
            with heartbeat(lambda: bar.line(waiting=True), every, out):
                yield bar
            failed = False
        finally:
            say(bar.end_line(failed), out)
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
        yield _Bar(progress, task, desc, total, completed)


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
    """Print a summary table to stdout; piped to a file or a log it is not cut to 80 columns
    (rich's width without a terminal), so every figure stays readable there."""
    wide = None if is_terminal(sys.stdout) else 250
    Console(width=wide).print(summary_table(title, rows, columns))
