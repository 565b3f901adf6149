"""Benchmarks: every figure is a ratio or a distribution measured side by side in one run.

    python -m bench.run                 # everything; markdown to stdout and bench/RESULTS.md
    python -m bench.run --quick         # 5 seeds, short budgets, 10 mutants (a smoke run)
    python -m bench.run --only find     # some sections: speed, find, scale, mutants, minimal, long

Sections:
* speed: raw model speed (replaying sequences, invariants on and off, W=8) against the campaign's
  steps/s on the same kernel in the same run.  Raw replay is measured on the walker's sequences
  and on sequences the campaign's own machine generated (the same work without generation).
* find: for every catalogued bug, how often and how fast ``rmapfuzz fuzz`` finds it from an empty
  corpus and an empty Hypothesis database, per seed, against the naive random walker (uniform
  choice among the strategy's ops, uniform arguments, same window and process bound, 50-step
  runs, no shrinking) on the same model; the shrunk lengths against the known minima.
* scale: ``--workers 2`` against one worker (bench/scale.py).
* mutants: the mutation score of a campaign per mutant (bench/mutants.py).
* minimal: what ``rmapfuzz minimize --exhaustive`` proved about each corpus entry.
* long: a long campaign on a kernel that should be clean; anything it finds is news.

Nothing here is a timed test: the numbers are written down, not asserted.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import mutants, scale
from bench.walk import Language, random_sequence, replay_speed, uniform_mix, walk
from rmapfuzz import campaign, ops, strategy
from rmapfuzz.machine import generated_sequences

ROOT = Path(__file__).resolve().parent.parent

# Each catalogued bug: the generation that has it, the strategy the campaign uses, the known
# minimum length of a reproducer (the invariant that fires first).
FIND_SUITE: tuple[tuple[str, str, str, str], ...] = (
    ("A", "2.6.34-rc3", "default", "4 (merge-superset)"),
    ("B", "2.6.34-rc3", "default", "5 (same-chain, ending in a write)"),
    ("S", "2.6.34-rc4", "swap", "6 (rmap-complete)"),
    ("C", "2.6.34", "enomem", "4 (chain-consistency)"),
    ("M", "2.6.34", "mremap", "5 (merge-superset)"),
    ("D", "3.19-rc4", "fork-tree", "4 (counters)"),
    ("E", "3.19", "enomem", "4 (counters; 5 via same-chain)"),
    ("L", "3.7", "enomem", "<= 6 (no-dangling; not searched)"),
    ("G", "3.19", "fork-tree", "7 (reuse-safe)"),
    ("J", "6.16", "mremap", "4 (merge-superset, with dontunmap)"),
)


def _campaign(kernel: str, strat: str, seed: int, budget: float, targets: Sequence[str], **kw: Any) -> campaign.Result:
    with tempfile.TemporaryDirectory() as tmp:
        config = campaign.Config(
            kernel=kernel,
            strategy=strategy.load(strat),
            seed=seed,
            budget=budget,
            corpus_dir=Path(tmp) / "corpus",
            database=Path(tmp) / "db",
            targets=tuple(targets),
            **{"keep_going": bool(targets), **kw},
        )
        return campaign.run(config)


# ---- speed ----


def section_speed(kernel: str, budget: float) -> list[str]:
    walker = [random_sequence(random.Random(1), 50) for _ in range(400)]
    generated = generated_sequences(kernel, strategy.load("default"), 200, seed=3)
    on = replay_speed(kernel, walker, invariants=True)
    off = replay_speed(kernel, walker, invariants=False)
    own = replay_speed(kernel, generated, invariants=True)
    result = _campaign(kernel, "default", 1, budget, ())
    fuzz = result.stats["steps"] / result.seconds
    per_case = result.stats["steps"] / max(result.stats["examples"], 1)
    return [
        f"### Speed ({kernel}, W=8, all invariants)",
        "",
        "| what | steps/s | campaign / this |",
        "|---|---:|---:|",
        f"| raw `replay` of walker sequences, invariants on | {on:,.0f} | {fuzz / on:.2f} |",
        f"| raw `replay` of walker sequences, invariants off | {off:,.0f} | {fuzz / off:.2f} |",
        f"| raw `replay` of the campaign machine's own sequences, invariants on | {own:,.0f} | {fuzz / own:.2f} |",
        f"| `rmapfuzz fuzz` campaign ({budget:.0f} s, strategy default, {per_case:.0f} ops per test case) "
        f"| {fuzz:,.0f} | 1.00 |",
        "",
    ]


# ---- find ----


def _dist(values: list[float], fmt: str) -> tuple[str, str]:
    if not values:
        return "-", "-"
    return format(statistics.median(values), fmt), format(max(values), fmt)


def find_bug(bug: str, kernel: str, strat: str, seeds: int, budget: float) -> dict[str, Any]:
    """Per seed: the fuzz's (seconds, steps, shrunk length) and the walker's (seconds, steps)."""
    s = strategy.load(strat)
    fuzz: list[tuple[float, int, int] | None] = []
    walker: list[tuple[float, int] | None] = []
    for seed in range(seeds):
        result = _campaign(kernel, strat, seed, budget, (bug,))
        first = next((f for f in result.finds if bug in f.bugs), None)
        fuzz.append(None if first is None else (first.seconds, first.steps_before, len(first.steps)))
        res = walk(kernel, seed, (bug,), budget, lang=Language.of(s), mix=uniform_mix(s))
        walker.append(res.found.get(bug))
        print(f"  {bug} on {kernel}: seed {seed} done", file=sys.stderr)
    known = next(k for b, _, _, k in FIND_SUITE if b == bug)
    return {"bug": bug, "kernel": kernel, "strategy": strat, "fuzz": fuzz, "walker": walker, "known": known}


def find_rows(runs: list[dict[str, Any]], seeds: int, budget: float) -> list[str]:
    out = [
        f"### Finding every catalogued bug ({seeds} seeds, {budget:.0f} s budget each, empty corpus and database)",
        "",
        "| bug | kernel | strategy | tool | found | median s | worst s | median steps | worst steps "
        "| walker / fuzz median s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        fuzz = [h for h in run["fuzz"] if h is not None]
        walker = [h for h in run["walker"] if h is not None]
        ratio = "-"
        if fuzz and walker and len(walker) * 2 > seeds:
            ratio = f"{statistics.median(h[0] for h in walker) / statistics.median(h[0] for h in fuzz):.2f}"
        for tool, hits in (("fuzz", fuzz), ("walker", walker)):
            med_s, worst_s = _dist([h[0] for h in hits], ".3f")
            med_n, worst_n = _dist([float(h[1]) for h in hits], ".0f")
            out.append(
                f"| {run['bug']} | {run['kernel']} | {run['strategy']} | {tool} | {len(hits)}/{seeds} "
                f"| {med_s} | {worst_s} | {med_n} | {worst_n} | {ratio if tool == 'fuzz' else ''} |"
            )
    out += ["", "| bug | shrunk length min / median / max | known minimum |", "|---|---|---|"]
    for run in runs:
        lengths = [h[2] for h in run["fuzz"] if h is not None]
        shown = f"{min(lengths)} / {statistics.median(lengths):g} / {max(lengths)}" if lengths else "-"
        out.append(f"| {run['bug']} | {shown} | {run['known']} |")
    out.append("")
    return out


def section_find(seeds: int, budget: float, bugs: Sequence[str] | None) -> list[str]:
    runs = [
        find_bug(bug, kernel, strat, seeds, budget)
        for bug, kernel, strat, _ in FIND_SUITE
        if bugs is None or bug in bugs
    ]
    return find_rows(runs, seeds, budget)


# ---- the others ----


def section_scale(seconds: float) -> list[str]:
    return [
        f"### Scale ({seconds:.0f} s per row, kernel current, strategy default)",
        "",
        scale.table(scale.run(seconds)),
        "",
    ]


def section_mutants(kernel: str, budget: float, count: int, jobs: int) -> list[str]:
    return [*mutants.report(kernel, budget, count, jobs, seed=1).splitlines(), ""]


def section_minimal() -> list[str]:
    out = [
        "### Minimality of the corpus (`rmapfuzz minimize --exhaustive`)",
        "",
        "| reproducer | steps | window | processes | status | searched up to length | seconds |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    for path in sorted((ROOT / "corpus").glob("*.json")):
        data = json.loads(path.read_text())
        minimal = data.get("minimal") or {}
        bound = minimal.get("bound") or {}
        completed = (bound.get("stats") or {}).get("completed_length", "-")
        out.append(
            f"| `{path.name}` | {len(data['steps'])} | {bound.get('window', data['window'])} "
            f"| {bound.get('processes', '-')} | {minimal.get('status', 'not searched')} | {completed} "
            f"| {bound.get('seconds', '-')} |"
        )
    out.append("")
    return out


def section_long(kernel: str, strat: str, minutes: float) -> list[str]:
    result = _campaign(kernel, strat, 7, minutes * 60, (), keep_going=True)
    lines = [
        f"### Long campaign on {kernel} ({minutes:g} min, strategy {strat})",
        "",
        f"{result.stats['steps']:,} steps, {result.stats['examples']:,} test cases, "
        f"{result.stats['steps'] / result.seconds:,.0f} steps/s; finds: {len(result.finds)}",
        "",
    ]
    for f in result.finds:
        lines.append(f"* `{f.signature}` after {f.seconds:.1f} s ({len(f.steps)} steps):")
        lines.extend(f"  * `{ops.describe(op)}`" for op in f.steps)
    lines.append("")
    return lines


SECTIONS = ("speed", "find", "scale", "mutants", "minimal", "long")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 seeds, 20 s budgets, 10 mutants of 20 s")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per seed and per mutant")
    parser.add_argument("--mutants", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=1, help="mutant campaigns at once")
    parser.add_argument("--long-minutes", type=float, default=0.0, help="the long section (default: skipped)")
    parser.add_argument("--only", choices=SECTIONS, action="append")
    parser.add_argument("--bugs", default=None, help="comma-separated bugs for the find section")
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.mutants = 5, 20.0, 10
    sections = args.only or [s for s in SECTIONS if s != "long" or args.long_minutes > 0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"## rmapfuzz benchmarks ({started}, `python -m bench.run {' '.join(argv or sys.argv[1:])}`)", ""]
    if "speed" in sections:
        lines += section_speed("current", 10.0 if args.quick else 30.0)
    if "find" in sections:
        lines += section_find(args.seeds, args.budget, args.bugs.split(",") if args.bugs else None)
    if "scale" in sections:
        lines += section_scale(10.0 if args.quick else 30.0)
    if "mutants" in sections:
        lines += section_mutants("current", args.budget, args.mutants, args.jobs)
    if "minimal" in sections:
        lines += section_minimal()
    if "long" in sections:
        lines += section_long("2.6.34", "default", args.long_minutes or 10.0)
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
