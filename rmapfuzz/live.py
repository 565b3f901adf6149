"""The live view of a fuzz campaign (rich), and its closing summary."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rmapfuzz.campaign import Config, Find, Result, coverage_of
from rmapfuzz.kernels import BUGS

PROGRESS_EVERY = 30.0  # seconds between one-line progress reports when the output is not a terminal


def bug_title(bugs: tuple[str, ...] | list[str]) -> str:
    """What classification knows of a find, in a kernel developer's words."""
    if not bugs:
        return "not a catalogued bug"
    return "; ".join(f"known bug {b}: {BUGS[b]}" for b in bugs)


def _mix(counts: Mapping[str, int]) -> str:
    total = sum(counts.values()) or 1
    return "  ".join(f"{op} {100 * n / total:.0f}%" for op, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def stats_table(config: Config, stats: Mapping[str, Any], finds: list[Find], elapsed: float) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rate = stats.get("steps", 0) / elapsed if elapsed > 0 else 0.0
    budget = f"{config.budget:.0f} s" if config.budget is not None else f"{config.examples} examples"
    table.add_row("kernel", f"{config.kernel}   strategy {config.strategy.name}   seed {config.seed}")
    table.add_row("elapsed", f"{elapsed:6.1f} s of {budget}   workers {config.workers}")
    table.add_row("examples", str(stats.get("examples", 0)))
    table.add_row("steps", f"{stats.get('steps', 0)}   ({rate:,.0f} steps/s)")
    table.add_row("invariant checks", str(stats.get("checks", 0)))
    table.add_row("ops mix", _mix(stats.get("ops", {})) or "-")
    table.add_row("results", _mix(stats.get("results", {})) or "-")
    if stats.get("coverage"):
        cov = coverage_of(config, dict(stats))
        reachable = len(cov.points) - len(cov.beyond)
        table.add_row("kernel paths", f"{len(cov.reached)} of {reachable} reachable coverage points reached")
    arms = stats.get("arms") or {}
    if arms:
        spent = sum(seconds for _, seconds in arms.values()) or 1.0
        shares = (f"{arm} {100 * sec / spent:.0f}% of time, reward {found:.1f}" for arm, (found, sec) in arms.items())
        table.add_row("search arms", "  ".join(shares))
    if stats.get("kernel") and stats["kernel"] != config.kernel:
        table.add_row("searching", f"{stats['kernel']} (the found bugs' fixes applied)")
    found = Text(str(len(finds)), style="bold red" if finds else "green")
    table.add_row("bugs found", found)
    for f in finds:
        table.add_row("", Text(f"{f.signature}  after {f.seconds:.2f} s, {len(f.steps)} steps", style="red"))
        table.add_row("", Text(f"  {bug_title(f.bugs)}", style="dim"))
    return table


class LiveView:
    """A rich Live panel refreshed from the campaign's progress callback; when the output is not a
    terminal (a CI log, a pipe), one line on stderr every :data:`PROGRESS_EVERY` seconds instead."""

    def __init__(self, console: Console, config: Config, progress: Console | None = None) -> None:
        self.console = console
        self.config = config
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._progress = progress
        self._next_line = self.started + PROGRESS_EVERY

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(self._panel({}, []), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def _panel(self, stats: Mapping[str, Any], finds: list[Find]) -> Panel:
        body = stats_table(self.config, stats, finds, time.monotonic() - self.started)
        return Panel(body, title="rmapfuzz fuzz", border_style="blue")

    def update(self, stats: Mapping[str, Any], finds: list[Find]) -> None:
        if self._live is None:
            self._line(stats, finds)
            return
        with self._lock:
            self._live.update(self._panel(stats, list(finds)))

    def _line(self, stats: Mapping[str, Any], finds: list[Find]) -> None:
        now = time.monotonic()
        if self._progress is None or now < self._next_line:
            return
        self._next_line = now + PROGRESS_EVERY
        elapsed = now - self.started
        steps = stats.get("steps", 0)
        line = f"rmapfuzz: {elapsed:.0f} s, {stats.get('examples', 0):,} test cases, {steps:,} steps"
        line += f" ({steps / elapsed if elapsed else 0:,.0f}/s), {len(finds)} found"
        if stats.get("coverage"):
            cov = coverage_of(self.config, dict(stats))
            line += f", {len(cov.reached)} of {len(cov.points) - len(cov.beyond)} kernel paths"
        self._progress.print(Text(line), soft_wrap=True)


def summary(console: Console, result: Result) -> None:
    body: list[Table | Text] = [stats_table(result.config, result.stats, result.finds, result.seconds)]
    if result.stats.get("coverage"):
        unreached = result.coverage().unreached
        if unreached:
            body.append(Text("\nreachable coverage points never reached (rmapfuzz coverage has the table):"))
            body += [Text(f"  {p.name}   {p.path}:{p.line}", style="yellow") for p in unreached]
    console.print(
        Panel(
            Group(*body),
            title="interrupted" if result.interrupted else "campaign summary",
            border_style="red" if result.finds else "green",
        )
    )
