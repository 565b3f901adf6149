"""Benchmarks: every figure is a ratio or a distribution measured side by side in one run.

    python -m bench.run                 # all sections, markdown table to stdout and bench/RESULTS.md
    python -m bench.run --quick         # fewer seeds and shorter budgets (a smoke run)
    python -m bench.run --only speed    # one section: speed, find, long

Sections:
* speed: raw model speed (replaying random sequences, invariants on and off, W=8) against the
  campaign's steps/s on the same kernel in the same run.
* find: how often and how fast ``rmapfuzz fuzz`` finds the catalogued bugs from an empty corpus
  and an empty Hypothesis database, per seed, against the naive random walker (uniform and
  weighted op mix) on the same model; the shrunk lengths against the known minima.
* long: a long campaign on a kernel that should be clean; anything it finds is news.

Nothing here is a timed test: the numbers are written down, not asserted.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.walk import UNIFORM, WEIGHTED, random_sequence, replay_speed, walk
from rmapfuzz import campaign, ops, strategy

KNOWN_MINIMA = {
    "A": "4",
    "B": "5 (same-chain) / 6 (merge-superset)",
    "S": "6",
    "G": "7 (reuse-safe)",
    "J": "5 (4 with dontunmap)",
}

# (kernel, strategy, bugs): each a "find" table.
FIND_SUITE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("2.6.34-rc3", "default", ("A", "B")),
    ("2.6.34-rc4", "swap", ("S",)),
    ("3.19", "fork-tree", ("G",)),
    ("6.16", "mremap", ("J",)),
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


def section_speed(kernel: str, budget: float) -> list[str]:
    rng = random.Random(1)
    sequences = [random_sequence(rng, 50) for _ in range(400)]
    on = replay_speed(kernel, sequences, invariants=True)
    off = replay_speed(kernel, sequences, invariants=False)
    result = _campaign(kernel, "default", 1, budget, ())
    fuzz = result.stats["steps"] / result.seconds
    return [
        f"### Speed ({kernel}, W=8)",
        "",
        "| what | steps/s | ratio to raw replay (invariants on) |",
        "|---|---:|---:|",
        f"| raw `replay`, invariants on | {on:,.0f} | 1.00 |",
        f"| raw `replay`, invariants off | {off:,.0f} | {off / on:.2f} |",
        f"| `rmapfuzz fuzz` campaign ({budget:.0f} s, strategy default) | {fuzz:,.0f} | {fuzz / on:.2f} |",
        "",
    ]


def _dist(values: list[float], fmt: str) -> tuple[str, str]:
    if not values:
        return "-", "-"
    return format(statistics.median(values), fmt), format(max(values), fmt)


def section_find(kernel: str, strat: str, targets: Sequence[str], seeds: int, budget: float) -> list[str]:
    rows: dict[str, dict[str, list[Any]]] = {}
    for tool in ("fuzz", "walk-uniform", "walk-weighted"):
        rows[tool] = {bug: [] for bug in targets}
    lengths: dict[str, list[int]] = {bug: [] for bug in targets}
    for seed in range(seeds):
        result = _campaign(kernel, strat, seed, budget, targets)
        for bug in targets:
            first = next((f for f in result.finds if bug in f.bugs), None)
            if first is not None:
                rows["fuzz"][bug].append((first.seconds, first.steps_before))
                lengths[bug].append(len(first.steps))
        for tool, mix in (("walk-uniform", UNIFORM), ("walk-weighted", WEIGHTED)):
            shape = strategy.load(strat)  # same window and process bound as the campaign
            res = walk(kernel, seed, targets, budget, mix=mix, window=shape.window, max_procs=shape.max_processes)
            for bug in targets:
                if bug in res.found:
                    rows[tool][bug].append(res.found[bug])
        print(f"  {kernel} seed {seed} done", file=sys.stderr)
    out = [
        f"### Finding bugs on {kernel} ({seeds} seeds, {budget:.0f} s budget each, strategy {strat})",
        "",
        "| bug | tool | found | median s | worst s | median steps | worst steps |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for bug in targets:
        for tool, per_bug in rows.items():
            hits = per_bug[bug]
            med_s, worst_s = _dist([h[0] for h in hits], ".2f")
            med_n, worst_n = _dist([float(h[1]) for h in hits], ".0f")
            out.append(f"| {bug} | {tool} | {len(hits)}/{seeds} | {med_s} | {worst_s} | {med_n} | {worst_n} |")
    out += ["", "| bug | shrunk length min / median / max | known minimum |", "|---|---|---|"]
    for bug in targets:
        ls = lengths[bug]
        shown = f"{min(ls)} / {statistics.median(ls):g} / {max(ls)}" if ls else "-"
        out.append(f"| {bug} | {shown} | {KNOWN_MINIMA.get(bug, '?')} |")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 seeds, 20 s budgets, 1 minute long run")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--long-minutes", type=float, default=10.0)
    parser.add_argument("--only", choices=("speed", "find", "long"), action="append")
    parser.add_argument("--kernel", default=None, help="only the find table of this kernel")
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.long_minutes = 5, 20.0, 1.0
    sections = args.only or ["speed", "find", "long"]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"## rmapfuzz benchmarks ({started})", ""]
    if "speed" in sections:
        lines += section_speed("2.6.34", 10.0 if args.quick else 30.0)
    if "find" in sections:
        for kernel, strat, bugs in FIND_SUITE:
            if args.kernel is None or args.kernel == kernel:
                lines += section_find(kernel, strat, bugs, args.seeds, args.budget)
    if "long" in sections:
        lines += section_long("2.6.34", "default", args.long_minutes)
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
