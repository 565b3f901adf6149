"""What a lab guest's console says: the markers of the guest's /init and any kernel crash report.

A crash is what syzbot would call one: a KASAN report, an oops, a BUG, a general protection fault,
a WARNING, a bad page or rss-counter report.  The fault-injection messages that ``fail-nth``
prints ("FAULT_INJECTION: forcing a failure", with a stack dump) are not crashes.
"""

from __future__ import annotations

import re
from typing import Literal

import attrs

START = "rmapfuzz-lab: start"
_EXIT = re.compile(r"rmapfuzz-lab: (exit|signal) (\d+)")
_STAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
_CRASH = re.compile(
    r"BUG: KASAN: |BUG: KFENCE: |BUG: unable to handle|BUG: kernel NULL pointer|BUG: Bad page|BUG: Bad rss-counter"
    r"|general protection fault|kernel BUG at |Oops: |Oops - |WARNING: CPU: \d+ PID: |UBSAN: |BUG: sleeping function"
    r"|BUG: scheduling while atomic|Kernel panic - not syncing"
)
REPORT_LINES = 8  # how much of a report the one-line summary carries below its title

Verdict = Literal["crashed", "clean", "unknown"]


@attrs.frozen
class Console:
    """A guest's console read: the verdict, the crash report's first lines (title first), the
    reproducer's exit status (``exit N`` / ``signal N``, "" if it never ended) and its own lines."""

    verdict: Verdict
    report: tuple[str, ...]
    status: str
    started: bool
    output: tuple[str, ...]

    @property
    def title(self) -> str:
        return self.report[0] if self.report else ""


def is_printk(line: str) -> bool:
    """Whether a raw console line is a kernel message (it starts with a printk timestamp)."""
    return _STAMP.match(line.replace("\r", "")) is not None


def clean_line(line: str) -> str:
    """A console line without its printk timestamp and carriage return."""
    return _STAMP.sub("", line.replace("\r", "").rstrip())


def _is_crash(line: str, started: bool) -> bool:
    match = _CRASH.search(line)
    if match is None:
        return False
    # before /init ran, a panic is a boot failure (no init, no root), not a crash of the reproducer
    return started or not match.group(0).startswith("Kernel panic")


def read_console(text: str) -> Console:
    """Parse a whole console log."""
    lines = [clean_line(raw) for raw in text.splitlines()]
    started = False
    status = ""
    report: list[str] = []
    output: list[str] = []
    for i, line in enumerate(lines):
        if START in line:
            started = True
            continue
        found = _EXIT.search(line)
        if found and started:
            status = f"{found.group(1)} {found.group(2)}"
            continue
        if not report and _is_crash(line, started):
            report = [line[line.index(_CRASH.search(line).group(0)) :]]  # type: ignore[union-attr]
            report += [x for x in lines[i + 1 : i + 1 + REPORT_LINES * 2] if x.strip()][:REPORT_LINES]
        if started and not status and line.startswith(("# ", "PASS", "FAIL", "SKIP")):
            output.append(line)
    verdict: Verdict = "crashed" if report else ("clean" if status else "unknown")
    return Console(verdict, tuple(report), status, started, tuple(output))
