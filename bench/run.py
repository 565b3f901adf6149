"""Benchmarks: every figure is a ratio or a distribution measured side by side in one run.

    python -m bench.run --jobs 2        # everything; markdown to stdout, and added on top of bench/RESULTS.md
    python -m bench.run --quick         # 5 seeds, short budgets (a smoke run)
    python -m bench.run --only find --bugs M,J
    python -m bench.run --seeds 3141,2718   # rerun with the seeds an earlier run printed

Seeds are drawn afresh by every run (``random.SystemRandom``) and printed at the top of the
results; every tool and variant of a section runs on the same seeds.  Every campaign starts from
an empty corpus and an empty Hypothesis database in a temporary directory, in a process of its own
(``--jobs`` of them at once).

Sections:
* speed: raw replay and campaign throughput of this tree, and of ``--against REV`` measured the
  same way in the same run (bench/speed.py), and what counting coverage costs.
* find: every catalogued bug on its kernel, found from nothing by the default campaign (no
  ``--strategy``), by the named strategy that suits the bug best, and by the naive random walker
  over the whole op language (bench/walk.py); time and steps to the first sighting, shrunk lengths.
* keep-going: one ``--keep-going`` campaign per kernel and seed, until every bug the kernel carries
  is found (each find's fix is applied and the search goes on).
* coverage: time until every coverage point the op language can reach is reached, per kernel;
  the points some seed missed.
* ablation: what each part of the default search contributes: the mutation of kept test cases,
  the portfolio of named mixes, the Hypothesis arm; on the slowest bugs and on coverage.
* portfolio: each source's steps per find of every catalogued bug, and how close the best fixed
  share of the sources could come to each bug's named strategy (bench/portfolio.py).
* blind: whether the default campaign, before it finds a bug, shares its time any differently than
  on the same kernel with the bug's fix (bench/portfolio.py): what a search can know before a find.
* equivalence: the incremental judge against the whole-state judge on every generation.
* scale: ``--workers 2`` against one (bench/scale.py).
* mutants: the mutation score of the default campaign and of the classic strategy on the same
  mutants, and of the model's own tests (bench/mutants.py).
* minimal: what ``rmapfuzz minimize --exhaustive`` proved about each corpus entry.
* long: a long campaign on a kernel that should be clean; anything it finds is news.

Nothing here is a timed test: the numbers are written down, not asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from bench import equivalence, mutants, scale, speed
from bench.walk import Language, uniform_mix, walk
from rmapfuzz import campaign, differential, ops, strategy
from rmapfuzz.kernels import FIXES, GENERATIONS, resolve
from rmapfuzz.search import DEFAULT_ARMS

ROOT = Path(__file__).resolve().parent.parent

# Each catalogued bug: the generation it is hunted on, the named strategy that suits it best (the
# expert's choice the default campaign is compared with), the known minimum length of a reproducer.
FIND_SUITE: tuple[tuple[str, str, str, str], ...] = (
    ("A", "2.6.34-rc3", "classic", "4 (merge-superset)"),
    ("B", "2.6.34-rc3", "classic", "5 (same-chain, ending in a write)"),
    ("S", "2.6.34-rc4", "swap", "6 (rmap-complete)"),
    ("C", "2.6.34", "enomem", "4 (chain-consistency)"),
    ("M", "2.6.34", "mremap", "5 (merge-superset)"),
    ("D", "3.19-rc4", "fork-tree", "4 (counters)"),
    ("E", "3.19", "enomem", "4 (counters; 5 via same-chain)"),
    ("L", "3.7", "enomem", "<= 6 (no-dangling; not searched)"),
    ("G", "3.19", "fork-tree", "7 (reuse-safe)"),
    ("F", "3.12", "enomem", "4 (pte-prot)"),
    ("J", "6.16", "mremap", "4 (merge-superset, with dontunmap)"),
    ("K", "7.0-rc", "enomem", "not searched"),
)
KEEP_GOING_KERNELS = ("2.6.34-rc3", "2.6.34", "3.19-rc4", "3.19", "3.7", "3.12", "6.16", "7.0-rc")
DIFF_BUGS = ("F", "J", "K")  # rmapfuzz diff of each bug's kernel against the same with its fix
DIFF_SELF = "current"  # and of a model against itself, which must stay clean
# A rework that should change nothing without allocation failures, and the steps to show it on.
DIFF_REWORK = ("7.0-rc+3a206a86", "6.18.8", ("fail_alloc",), 1_000_000)
COVERAGE_KERNELS = ("current", "6.16")
ABLATION_BUGS = ("S", "M", "L", "G", "J")


@attrs.frozen
class Variant:
    """A way of running a campaign: the default, one with a part of it left out or added, or a named
    strategy."""

    name: str
    strategy: str = "default"
    arms: tuple[str, ...] = DEFAULT_ARMS
    portfolio: bool = True

    def config(self, **kw: Any) -> campaign.Config:
        strat = strategy.load(self.strategy)
        if not self.portfolio:
            strat = attrs.evolve(strat, portfolio=())
        return campaign.Config(strategy=strat, arms=self.arms, **kw)


DEFAULT = Variant("default")
VARIANTS = (
    DEFAULT,
    Variant("no mutation (fresh test cases only)", arms=("fresh",)),
    Variant("no portfolio (drawn mixes only)", portfolio=False),
    Variant("with the Hypothesis arm", arms=(*DEFAULT_ARMS, "hypothesis")),
)


# ---- trials: each runs in a process of its own ----


def _run(config: campaign.Config) -> campaign.Result:
    with tempfile.TemporaryDirectory() as tmp:
        config = attrs.evolve(config, corpus_dir=Path(tmp) / "corpus", database=Path(tmp) / "db")
        return campaign.run(config)


def trial_find(bug: str, kernel: str, seed: int, budget: float, variant: Variant) -> Any:
    """(seconds, steps before, shrunk length) of the first find of ``bug``, or None."""
    result = _run(variant.config(kernel=kernel, seed=seed, budget=budget, targets=(bug,), keep_going=True))
    first = next((f for f in result.finds if bug in f.bugs), None)
    return None if first is None else (first.seconds, first.steps_before, len(first.steps))


def trial_walker(bug: str, kernel: str, seed: int, budget: float) -> Any:
    """(seconds, steps) of the walker's first sighting of ``bug`` over the whole op language, or None."""
    s = strategy.load("default")
    return walk(kernel, seed, (bug,), budget, lang=Language.of(s), mix=uniform_mix(s)).found.get(bug)


def trial_keep_going(kernel: str, seed: int, budget: float) -> dict[str, float]:
    """bug -> seconds to its first find, in one keep-going campaign hunting every bug of ``kernel``."""
    bugs = resolve(kernel).bugs
    config = DEFAULT.config(kernel=kernel, seed=seed, budget=budget, keep_going=True, targets=tuple(bugs))
    result = _run(config)
    found: dict[str, float] = {}
    for f in sorted(result.finds, key=lambda f: f.seconds):
        for bug in f.bugs:
            found.setdefault(bug, f.seconds)
    return found


def trial_coverage(kernel: str, seed: int, budget: float, variant: Variant = DEFAULT) -> dict[str, Any]:
    config = variant.config(kernel=kernel, seed=seed, budget=budget, keep_going=True, until_covered=True)
    result = _run(config)
    report = result.coverage()
    return {
        "covered_at": result.stats["covered_at"],
        "reached": len(report.reached),
        "reachable": len(report.points) - len(report.beyond),
        "unreached": [p.name for p in report.unreached],
    }


def trial_diff(
    a: str, b: str, seed: int, budget: float | None, without: tuple[str, ...] = (), examples: int | None = None
) -> Any:
    """(seconds, reduced length, first level) of the first difference ``rmapfuzz diff`` finds; when
    clean, (None, test cases, steps)."""
    config = differential.DiffConfig(a, b, strategy.load("default"), seed=seed, budget=budget, examples=examples,
                                     corpus_dir=None, without=without)  # fmt: skip
    result = differential.run(config)
    if not result.finds:
        return (None, result.examples, result.steps)
    first = result.finds[0]
    return (first.seconds, len(first.steps), first.level)


class Trials:
    """Runs trials ``jobs`` at a time, each in a fresh process (as a user's campaign would be)."""

    def __init__(self, jobs: int) -> None:
        self.pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), max_tasks_per_child=1)

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]], label: str) -> list[Any]:
        futures = [self.pool.submit(fn, *args) for args in calls]
        out = []
        for i, fut in enumerate(futures):
            out.append(fut.result())
            print(f"  {label}: {i + 1}/{len(futures)}", file=sys.stderr)
        return out


# ---- formatting ----


def _median(values: Sequence[float], fmt: str = ".3f") -> str:
    return format(statistics.median(values), fmt) if values else "-"


def _worst(values: Sequence[float], fmt: str = ".3f") -> str:
    return format(max(values), fmt) if values else "-"


# ---- find ----


def section_find(trials: Trials, seeds: Sequence[int], budget: float, bugs: Sequence[str] | None) -> list[str]:
    suite = [row for row in FIND_SUITE if bugs is None or row[0] in bugs]
    calls_default = [(b, k, s, budget, DEFAULT) for b, k, _, _ in suite for s in seeds]
    calls_named = [(b, k, s, budget, Variant(st, strategy=st)) for b, k, st, _ in suite for s in seeds]
    calls_walker = [(b, k, s, budget) for b, k, _, _ in suite for s in seeds]
    default = trials.map(trial_find, calls_default, "find, default")
    named = trials.map(trial_find, calls_named, "find, named strategy")
    walker = trials.map(trial_walker, calls_walker, "find, walker")
    n = len(seeds)
    out = [
        f"### Finding every catalogued bug ({n} seeds, {budget:.0f} s each, empty corpus and database)",
        "",
        "The default campaign has no `--strategy`; the named strategy is the one that suits the bug; the "
        "walker draws uniformly over the whole op language.  Seconds and steps to the first find.",
        "",
        "| bug | kernel | tool | found | median s | worst s | median steps | default / named median "
        "| walker / default median |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lengths: dict[str, list[int]] = {}
    for i, (bug, kernel, strat, _) in enumerate(suite):
        rows = {
            "default": [h for h in default[i * n : (i + 1) * n] if h],
            f"strategy {strat}": [h for h in named[i * n : (i + 1) * n] if h],
            "walker": [h for h in walker[i * n : (i + 1) * n] if h],
        }
        lengths[bug] = [h[2] for h in rows["default"]]
        med = {tool: statistics.median(h[0] for h in hits) if hits else None for tool, hits in rows.items()}
        d, nm, w = med["default"], med[f"strategy {strat}"], med["walker"]
        vs_named = f"{d / nm:.2f}" if d and nm else "-"
        # a walker that missed in half the seeds or more has no median worth dividing
        vs_walker = f"{w / d:.2f}" if d and w and 2 * len(rows["walker"]) > n else ("walker < half" if d else "-")
        for tool, hits in rows.items():
            first = tool == "default"
            out.append(
                f"| {bug if first else ''} | {kernel if first else ''} | {tool} | {len(hits)}/{n} "
                f"| {_median([h[0] for h in hits])} | {_worst([h[0] for h in hits])} "
                f"| {_median([float(h[1]) for h in hits], '.0f')} | {vs_named if first else ''} "
                f"| {vs_walker if first else ''} |"
            )
    out += ["", "| bug | default's shrunk length min / median / max | known minimum |", "|---|---|---|"]
    for bug, _, _, known in suite:
        ls = lengths[bug]
        out.append(f"| {bug} | {f'{min(ls)} / {statistics.median(ls):g} / {max(ls)}' if ls else '-'} | {known} |")
    return [*out, ""]


# ---- keep-going ----


def section_keep_going(trials: Trials, seeds: Sequence[int], budget: float) -> list[str]:
    calls = [(k, s, budget) for k in KEEP_GOING_KERNELS for s in seeds]
    results = trials.map(trial_keep_going, calls, "keep-going")
    n = len(seeds)
    out = [
        f"### One `--keep-going` campaign finds every bug of its kernel ({n} seeds, {budget:.0f} s, no strategy)",
        "",
        "| kernel | bugs | all found | worst s to the last | median s to each bug (found/seeds) |",
        "|---|---|---:|---:|---|",
    ]
    for i, kernel in enumerate(KEEP_GOING_KERNELS):
        bugs = resolve(kernel).bugs
        runs = results[i * n : (i + 1) * n]
        complete = [r for r in runs if set(bugs) <= r.keys()]
        last = [max(r[b] for b in bugs) for r in complete]
        each = ", ".join(
            f"{b} {_median([r[b] for r in runs if b in r], '.2f')} ({sum(b in r for r in runs)}/{n})" for b in bugs
        )
        out.append(f"| {kernel} | {''.join(bugs)} | {len(complete)}/{n} | {_worst(last, '.1f')} | {each} |")
    return [*out, ""]


# ---- diff ----


def section_diff(trials: Trials, seeds: Sequence[int], few: Sequence[int], budget: float) -> list[str]:
    pairs = [(bug, FIXES[bug].base, FIXES[bug].name) for bug in DIFF_BUGS if bug in FIXES]
    calls = [(a, b, s, budget) for _, a, b in pairs for s in seeds]
    results = trials.map(trial_diff, calls, "diff")
    selves = trials.map(trial_diff, [(DIFF_SELF, DIFF_SELF, s, budget) for s in few], "diff self")
    n = len(seeds)
    out = [
        f"### `rmapfuzz diff`: a bug's kernel against the same with its fix ({n} seeds, {budget:.0f} s, empty corpus)",
        "",
        "| bug | A | B | found | median s | worst s | median reduced steps | first level |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for i, (bug, a, b) in enumerate(pairs):
        runs = [r for r in results[i * n : (i + 1) * n] if r[0] is not None]
        levels = Counter(r[2] for r in runs)
        out.append(
            f"| {bug} | {a} | {b} | {len(runs)}/{n} | {_median([r[0] for r in runs], '.2f')} "
            f"| {_worst([r[0] for r in runs], '.2f')} | {_median([r[1] for r in runs], '.0f')} "
            f"| {', '.join(f'{lv} x{c}' for lv, c in levels.most_common())} |"
        )
    clean = [r for r in selves if r[0] is None]
    steps = sum(r[2] for r in clean)
    out += [
        "",
        f"{DIFF_SELF} against itself: {len(clean)}/{len(selves)} campaigns of {budget:.0f} s clean, "
        f"{steps:,} steps in all ({steps / max(len(clean) * budget, 1):,.0f} steps/s: two models and a "
        "comparison of their whole state after every step).",
    ]
    a, b, without, want = DIFF_REWORK
    cases = want // 80  # test cases run about 100 steps each; a margin over ``want``
    started = time.monotonic()
    rework = trial_diff(a, b, few[0], None, without, cases)
    verdict = "no difference" if rework[0] is None else f"a {rework[2]} difference after {rework[0]:.1f} s"
    steps_run = f"{rework[2]:,} steps, {rework[1]:,} test cases, " if rework[0] is None else ""
    out += [
        f"{a} against {b} without {', '.join(without)}: {verdict} ({steps_run}{time.monotonic() - started:.0f} s, "
        f"seed {few[0]}).",
        "",
    ]
    return out


# ---- coverage ----


def coverage_rows(name: str, runs: Sequence[dict[str, Any]]) -> tuple[str, Counter[str]]:
    """One kernel's row.  A keep-going campaign that finds a bug moves on to the kernel with its fix,
    whose points count too, so runs can have different numbers of reachable points: the row gives
    their range, and the most points any run left unreached, each counted against its own set."""
    n = len(runs)
    done = [r["covered_at"] for r in runs if r["covered_at"] is not None]
    missed: Counter[str] = Counter(p for r in runs for p in r["unreached"])
    sizes = sorted({r["reachable"] for r in runs}) or [0]
    reachable = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    short = max((r["reachable"] - r["reached"] for r in runs), default=0)
    row = (f"| {name} | {reachable} | {len(done)}/{n} | {_median(done, '.1f')} | {_worst(done, '.1f')} "
           f"| {short} |")  # fmt: skip
    return row, missed


def section_coverage(trials: Trials, seeds: Sequence[int], budget: float) -> list[str]:
    calls = [(k, s, budget) for k in COVERAGE_KERNELS for s in seeds]
    results = trials.map(trial_coverage, calls, "coverage")
    n = len(seeds)
    out = [
        f"### Kernel-path coverage ({n} seeds, {budget:.0f} s, default campaign, keep-going)",
        "",
        "Time until every coverage point the op language can reach on the kernel was reached "
        "(`rmapfuzz coverage --kernel K` lists them, and the points beyond the language with the reason).",
        "",
        "| kernel | reachable points | all reached | median s | worst s | most left unreached |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    misses = []
    for i, kernel in enumerate(COVERAGE_KERNELS):
        row, missed = coverage_rows(kernel, results[i * n : (i + 1) * n])
        out.append(row)
        misses += [f"* {kernel}: `{p}` missed in {c}/{n} seeds" for p, c in missed.most_common()]
    out += ["", *(misses or ["Every seed reached every reachable point."]), ""]
    return out


# ---- ablation ----


def section_ablation(trials: Trials, seeds: Sequence[int], budget: float, cov_budget: float) -> list[str]:
    suite = [row for row in FIND_SUITE if row[0] in ABLATION_BUGS]
    n = len(seeds)
    out = [
        f"### What each part of the default search contributes ({n} seeds; bugs {budget:.0f} s, "
        f"coverage of current {cov_budget:.0f} s)",
        "",
        "| variant | " + " | ".join(f"{b} found, median s" for b, _, _, _ in suite) + " | current covered, median s |",
        "|---|" + "---:|" * (len(suite) + 1),
    ]
    for variant in VARIANTS:
        calls = [(b, k, s, budget, variant) for b, k, _, _ in suite for s in seeds]
        finds = trials.map(trial_find, calls, f"ablation, {variant.name}")
        covs = trials.map(trial_coverage, [("current", s, cov_budget, variant) for s in seeds], "ablation coverage")
        cells = []
        for i in range(len(suite)):
            hits = [h[0] for h in finds[i * n : (i + 1) * n] if h]
            cells.append(f"{len(hits)}/{n}, {_median(hits)}")
        done = [c["covered_at"] for c in covs if c["covered_at"] is not None]
        out.append(f"| {variant.name} | " + " | ".join(cells) + f" | {len(done)}/{n}, {_median(done, '.1f')} |")
    return [*out, ""]


# ---- the others ----


def section_equivalence(steps: int, seed: int) -> list[str]:
    tallies = [equivalence.compare(k, steps, seed) for k in GENERATIONS]
    out = [
        f"### The incremental judge against the whole-state judge ({steps:,} steps per generation, seed {seed})",
        "",
        equivalence.table(tallies),
        "",
    ]
    out += [f"* {t.kernel}: {d}" for t in tallies for d in t.disagreements]
    inc = sum(t.incremental_s for t in tallies)
    full = sum(t.full_s for t in tallies)
    out += [
        f"Judging time, all generations: incremental {inc:.1f} s, whole-state {full:.1f} s ({full / inc:.2f}x).",
        "",
    ]
    return out


def section_scale(seconds: float, seed: int) -> list[str]:
    return [
        f"### Scale ({seconds:.0f} s per row, kernel current, strategy default)",
        "",
        scale.table(scale.run(seconds, seed)),
        "",
    ]


def section_mutants(kernel: str, budget: float, count: int, jobs: int, seed: int) -> list[str]:
    text = mutants.report(kernel, budget, count, jobs, seed=seed, strategies=("default", "classic"), tests=True)
    return [*text.splitlines(), ""]


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
    return [*out, ""]


def section_long(kernel: str, minutes: float, seed: int) -> list[str]:
    result = _run(DEFAULT.config(kernel=kernel, seed=seed, budget=minutes * 60, keep_going=True))
    lines = [
        f"### Long campaign on {kernel} ({minutes:g} min, default campaign, seed {seed})",
        "",
        f"{result.stats['steps']:,} steps, {result.stats['examples']:,} test cases, "
        f"{result.stats['steps'] / result.seconds:,.0f} steps/s; finds: {len(result.finds)}",
        "",
    ]
    for f in result.finds:
        lines.append(f"* `{f.signature}` after {f.seconds:.1f} s ({len(f.steps)} steps):")
        lines.extend(f"  * `{ops.describe(op)}`" for op in f.steps)
    return [*lines, ""]


def section_portfolio(finds: int, seconds: float, seed: int) -> list[str]:
    from bench import portfolio  # it reads FIND_SUITE from here

    effort = portfolio.Effort(finds, seconds)
    results = portfolio.measure_suite(effort, seed)
    return ["### What any fixed share of the default's sources can do (bench/portfolio.py)", "",
            *portfolio.table(results, effort, seed), ""]  # fmt: skip


def trial_blind(bug: str, kernel: str, named: str, seed: int, budget: float) -> Any:
    from bench import portfolio

    return portfolio.blindness(bug, kernel, named, seed, budget)


def section_blind(trials: Trials, seeds: Sequence[int], budget: float) -> list[str]:
    """Does the default campaign share its time differently on a bug's kernel before it finds the bug?"""
    calls = [(b, k, named, s, budget) for b, k, named, _ in FIND_SUITE for s in seeds]
    results = trials.map(trial_blind, calls, "blind")
    n = len(seeds)
    out = [
        f"### Before the find, the default campaign is blind to the bug ({n} seeds, {budget:.0f} s each)",
        "",
        "Each seed's default campaign hunts the bug on its kernel, then runs as many test cases with the same "
        "seed on that kernel with the bug's fix, and again on the bug's kernel (`bench.portfolio.blindness`). "
        "*Alike*: campaigns whose test cases, up to the one that found the bug, were the same bytes from the "
        "same arm and source in both runs. The arms share time by reward per second, so a long campaign parts "
        "from a rerun of itself; the rerun is the control. *Own share*: the share of those test cases drawn "
        "from the mix of the bug's named strategy.",
        "",
        "| bug | kernel | named | found | median test cases to the find | alike with the fix | alike, rerun "
        "| own share, bug's kernel | own share, fixed kernel |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i, (bug, kernel, named, _) in enumerate(FIND_SUITE):
        hits = [r for r in results[i * n : (i + 1) * n] if r is not None]
        alike = sum(r.same == r.cases for r in hits)
        again = sum(r.same_again == r.cases for r in hits)
        cases = _median([float(r.cases) for r in hits], ".0f")
        own = _median([r.own_share for r in hits], ".1%")
        fixed = _median([r.own_share_fixed for r in hits], ".1%")
        found = f"{len(hits)}/{n} | {cases} | {alike}/{len(hits)} | {again}/{len(hits)}"
        out.append(f"| {bug} | {kernel} | {named} | {found} | {own} | {fixed} |")
    return [*out, ""]


SECTIONS = ("speed", "find", "keep-going", "diff", "coverage", "ablation", "portfolio", "blind", "equivalence",
            "scale", "mutants", "minimal", "long")  # fmt: skip


def _seeds(value: str | None, count: int) -> list[int]:
    if value:
        return [int(s) for s in value.split(",")]
    rng = random.SystemRandom()
    return [rng.randrange(2**32) for _ in range(count)]


def with_run(previous: str, run: Sequence[str]) -> str:
    """``previous`` (the results file) with ``run`` added as its newest section: after the file's
    title and introduction (everything before its first ``## `` heading), before the older runs,
    which are kept as they are."""
    at = previous.find("\n## ")
    head, rest = (previous[: at + 1], previous[at + 1 :]) if at >= 0 else (previous, "")
    if head and not head.endswith("\n\n"):
        head += "\n"
    return head + "\n".join(run).rstrip("\n") + "\n\n" + rest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 seeds, short budgets, 10 mutants")
    parser.add_argument("--count", type=int, default=20, help="seeds per find row (keep-going, coverage: half)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds instead of fresh ones")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per find campaign and per mutant")
    parser.add_argument("--keep-going-budget", type=float, default=300.0)
    parser.add_argument("--coverage-budget", type=float, default=300.0)
    parser.add_argument("--mutants", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=1, help="campaigns at once")
    parser.add_argument("--against", default=None, metavar="REV", help="speed: another revision alongside")
    parser.add_argument("--long-minutes", type=float, default=0.0, help="the long section (default: skipped)")
    parser.add_argument("--only", choices=SECTIONS, action="append")
    parser.add_argument("--bugs", default=None, help="comma-separated bugs for the find section")
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")),
                        help="results file: the run is added as its newest section, older runs kept")  # fmt: skip
    args = parser.parse_args(argv)
    speed.require_revision(parser, args.against)
    if args.quick:
        args.count, args.budget, args.mutants = 5, 20.0, 10
        args.keep_going_budget = args.coverage_budget = 60.0
    seeds = _seeds(args.seeds, args.count)
    few = seeds[: max(len(seeds) // 2, 1)]
    sections = args.only or [s for s in SECTIONS if s != "long" or args.long_minutes > 0]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        f"## rmapfuzz benchmarks ({started}, `python -m bench.run {' '.join(argv or sys.argv[1:])}`)",
        "",
        f"Seeds, drawn for this run: {','.join(map(str, seeds))} (keep-going, coverage and ablation use the "
        f"first {len(few)}; pass `--seeds` to rerun them).",
        "",
    ]
    print("\n".join(lines))
    out = Path(args.out)
    previous = out.read_text() if out.exists() else ""
    trials = Trials(args.jobs)
    quick = args.quick
    runs: dict[str, Callable[[], list[str]]] = {
        "speed": lambda: [speed.run("current", 5.0 if quick else 20.0, seeds[0], args.against), ""],
        "find": lambda: section_find(trials, seeds, args.budget, args.bugs.split(",") if args.bugs else None),
        "keep-going": lambda: section_keep_going(trials, few, args.keep_going_budget),
        "diff": lambda: section_diff(trials, seeds[:10], few, args.budget),
        "coverage": lambda: section_coverage(trials, few, args.coverage_budget),
        "ablation": lambda: section_ablation(trials, few, args.budget, 30.0 if quick else 60.0),
        "portfolio": lambda: section_portfolio(5 if quick else 30, 2.0 if quick else 20.0, seeds[0]),
        "blind": lambda: section_blind(trials, few, args.budget),
        "equivalence": lambda: section_equivalence(20_000 if quick else 100_000, seeds[0]),
        "scale": lambda: section_scale(10.0 if quick else 30.0, seeds[0]),
        "mutants": lambda: section_mutants("current", args.budget, args.mutants, args.jobs, seeds[0]),
        "minimal": section_minimal,
        "long": lambda: section_long("2.6.34", args.long_minutes or 10.0, seeds[0]),
    }
    for name in SECTIONS:
        if name in sections:
            section = runs[name]()
            print("\n".join(section))
            lines += section
            out.write_text(with_run(previous, lines))  # what is done so far survives a stop
    return 0


if __name__ == "__main__":
    sys.exit(main())
