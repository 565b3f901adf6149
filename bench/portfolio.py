"""How close can any fixed share of the default campaign's sources come to each bug's named strategy?

    python -m bench.portfolio                     # a markdown table; 30 finds or 20 s per source and bug
    python -m bench.portfolio --finds 50 --seconds 60 --bugs S,M,G --seed 7 --jobs 2

The default campaign draws each fresh test case from one of its sources: the named strategies of
its portfolio and the swarm of mixes drawn over the whole language.  For every catalogued bug this
measures, on the bug's kernel, how many steps per find each source's fresh test cases need (as the
default campaign runs them: its swarm, each source at its strategy's test case length), and the
same for the named strategy on its own and for the naive walker.  Each runs until it has found
the bug ``--finds`` times or spent ``--seconds``: a slow bug's rate rests on as many finds as a fast
one's, and a source that cannot find a bug costs a bounded time.  (A run stopped at its n-th find
overstates its rate by about n / (n - 1), 3 % at 30; the runs stopped that way are overstated alike.)

A fixed share ``p`` of fresh test cases over the sources finds bug ``b`` at the rate
``sum_i p_i r_ib``.  The bench's criterion asks that rate to be at least half the named strategy's
on every bug; the best any share can do is the value of a small zero-sum game (sources against
bugs), a linear program (:func:`best_fixed_share`).  A ratio above 2 for every share means no fixed
share of these sources meets the criterion, however it is tuned.

A share may also change as the steps add up: the fast bugs' sources first, the slow bugs' later.
:func:`best_schedule` finds the best such schedule for the measured rates, chosen knowing every
bug, and what it runs when.  It says how far apart the fixed share and what a search could reach
are, and what a search would have to know to get there.  Mutation of kept test cases is not counted
in either: the named strategies' campaigns mutate too.

Each bug is hunted on its kernel with the other catalogued bugs of that kernel fixed, as a
keep-going campaign sees it once it has found them; B keeps M (965f55dea0e3, M's fix, refuses the
merges B needs; a campaign finds B long before M).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import attrs
import numpy as np
from scipy.optimize import linprog

from bench import fresh_seed
from bench.run import FIND_SUITE
from bench.walk import Language, random_sequence, uniform_mix
from rmapfuzz import strategy
from rmapfuzz.classify import classify
from rmapfuzz.generate import HEADER_BYTES, OP_BYTES, Swarm
from rmapfuzz.kernels import Kernel, resolve, with_fix
from rmapfuzz.replay import Runner
from rmapfuzz.search import Case, execute

KEEP = {"B": ("M",)}  # fixes a bug's hunt leaves out: they close its path too


def hunted_kernel(bug: str, kernel: str) -> Kernel:
    k = resolve(kernel)
    for other in k.bugs:
        if other != bug and other not in KEEP.get(bug, ()):
            k = with_fix(k, other)
    return k


@attrs.frozen
class Effort:
    """How long each source hunts each bug: until ``finds`` finds or ``seconds``, whichever first."""

    finds: int
    seconds: float


def _rate(run_one: Any, effort: Effort) -> tuple[int, int]:
    """(finds, steps) of ``run_one()`` (which returns (steps, found)) repeated until ``effort``'s
    finds or its seconds."""
    finds = steps = 0
    end = time.monotonic() + effort.seconds
    while finds < effort.finds and time.monotonic() < end:
        n, found = run_one()
        steps += n
        finds += found
    return finds, steps


def measure(bug: str, kernel: str, named: str, effort: Effort, seed: int) -> dict[str, tuple[int, int]]:
    """source -> (finds, steps) of bug ``bug``: the default's sources, the named strategy, the walker."""
    rng = random.Random(seed)
    k = hunted_kernel(bug, kernel)
    default = strategy.load("default")
    swarm = Swarm.of(default, k)
    names = ["swarm", *default.portfolio]
    out: dict[str, tuple[int, int]] = {}

    def case_of(s: strategy.Strategy, sw: Swarm, pick: int | None) -> tuple[int, bool]:
        header = bytearray(rng.randbytes(HEADER_BYTES))
        if pick is not None:
            header[0] = pick
        use_header = pick is not None or rng.random() < s.swarm
        chosen = bytes(header) if use_header else None
        case = Case(chosen, rng.randbytes(OP_BYTES * sw.steps(chosen)))
        o = execute(k, sw, case, None)
        return len(o.ops), bool(o.violations) and bug in classify(k, o.ops, s.window)

    for pick, name in enumerate(names):
        out[name] = _rate(lambda pick=pick: case_of(default, swarm, pick), effort)
    own = strategy.load(named)
    own_swarm = Swarm.of(own, k)
    out[f"named {named}"] = _rate(lambda: case_of(own, own_swarm, None), effort)
    lang, mix = Language.of(default), uniform_mix(default)

    def walk_one() -> tuple[int, bool]:
        runner = Runner(k, lang.window)
        steps = random_sequence(rng, 60, lang, mix)
        for i, op in enumerate(steps):
            if runner.step(op)[1]:
                return i + 1, bug in classify(k, steps[: i + 1], lang.window)
        return len(steps), False

    out["walker"] = _rate(walk_one, effort)
    return out


def best_fixed_share(m: Sequence[Sequence[float]]) -> tuple[float, list[float]]:
    """max over shares p of min over bugs b of (M p)_b, for M[b][i] >= 0 (bugs by sources, each
    source's rate over the named strategy's): the value of the zero-sum game of sources against
    bugs, as a linear program, and the share that reaches it."""
    nb, ns = len(m), len(m[0])
    # variables: p_1 .. p_ns, v; maximise v subject to v <= (M p)_b, sum p = 1
    cost = np.zeros(ns + 1)
    cost[-1] = -1.0
    rows = np.hstack([-np.asarray(m, dtype=float), np.ones((nb, 1))])
    result = linprog(cost, A_ub=rows, b_ub=np.zeros(nb), A_eq=[[1.0] * ns + [0.0]], b_eq=[1.0],
                     bounds=[(0, None)] * ns + [(None, None)], method="highs")  # fmt: skip
    assert result.status == 0 and result.x is not None, result.message  # always feasible: any share is
    return float(result.x[-1]), [float(x) for x in result.x[:ns]]


@attrs.frozen
class Schedule:
    """A share of the fresh test cases that changes with the steps run: ``shares[k]`` over the
    sources from ``ends[k - 1]`` (0 for the first) to ``ends[k]`` steps."""

    ratio: float  # on its worst bug, the median steps to a find over the named strategy's
    ends: list[float]
    shares: list[list[float]]
    due: list[list[int]]  # the bugs (their indices) whose deadline ends each interval


def best_schedule(rates: Sequence[Sequence[float]], named: Sequence[float]) -> Schedule | None:
    """The schedule over the sources (shares that may change as the steps add up, chosen knowing
    every bug) whose median steps to a find is the least multiple of the named strategy's on its
    worst bug, or None when some bug has no source that finds it.

    ``rates[b][i]``: finds per step of source i on bug b; ``named[b]``: the named strategy's.  Finds
    come at a constant rate per step (a Poisson process), so the median steps to a find of bug b
    are where sum_i rates[b][i] W_i reaches ln 2, W_i being the steps given to source i so far; the
    named strategy's are ln 2 / named[b].  Whether a ratio ``x`` is reachable is a linear program over
    the steps each source gets between consecutive bugs' deadlines ``x ln 2 / named[b]``, and larger
    ratios only loosen it, so bisection finds the least."""
    if any(not any(r > 0 for r in row) for row in rates):
        return None
    lo, hi = 1.0, 2.0
    while (best := _schedule(rates, named, hi)) is None:
        lo, hi = hi, hi * 2
    while hi - lo > 0.001 * hi:
        mid = (lo + hi) / 2
        found = _schedule(rates, named, mid)
        lo, hi, best = (lo, mid, found) if found is not None else (mid, hi, best)
    ends, steps = best
    starts = [0.0, *ends[:-1]]
    shares = [[w / (e - s) for w in row] for row, s, e in zip(steps, starts, ends, strict=True)]
    deadlines = _deadlines(named, hi)
    due = [[b for b, d in enumerate(deadlines) if d == end] for end in ends]
    return Schedule(hi, ends, shares, due)


def _deadlines(named: Sequence[float], ratio: float) -> list[float]:
    """Each bug's deadline at ``ratio``: that many times the named strategy's median steps."""
    return [ratio * math.log(2) / n for n in named]


def _schedule(
    rates: Sequence[Sequence[float]], named: Sequence[float], ratio: float
) -> tuple[list[float], list[list[float]]] | None:
    """Steps per source in each interval between deadlines meeting every bug's deadline at ``ratio``
    times its named median, or None."""
    ln2 = math.log(2)
    deadline = _deadlines(named, ratio)
    ends = sorted(set(deadline))
    ns, nk = len(rates[0]), len(ends)
    starts = [0.0, *ends[:-1]]
    # one row per interval: its steps; one per bug: the finds expected by its deadline, at least ln 2
    budget = np.zeros((nk, nk * ns))
    for k in range(nk):
        budget[k, k * ns : (k + 1) * ns] = 1.0
    finds = np.zeros((len(rates), nk * ns))
    for b, row in enumerate(rates):
        last = ends.index(deadline[b])
        for k in range(last + 1):
            finds[b, k * ns : (k + 1) * ns] = [-r for r in row]
    # of the schedules that do, the one expecting the most finds by the deadlines (so every interval
    # spends its steps where they count, and the shares shown say something)
    result = linprog(finds.sum(axis=0), A_ub=np.vstack([budget, finds]),
                     b_ub=np.concatenate([np.subtract(ends, starts), np.full(len(rates), -ln2)]),
                     bounds=[(0, None)] * (nk * ns), method="highs")  # fmt: skip
    if result.status != 0 or result.x is None:
        return None
    x = [float(v) for v in result.x]
    return ends, [x[k * ns : (k + 1) * ns] for k in range(nk)]


def _rate_of(finds: int, steps: int) -> float:
    return finds / steps if steps else 0.0


def _per_find(finds: int, steps: int, wanted: int) -> str:
    """Steps per find; with the number of finds when the time ran out before ``wanted`` of them."""
    if not finds:
        return f"> {steps:,}"
    return f"{steps / finds:,.0f}" + (f" ({finds})" if finds < wanted else "")


def table(results: dict[str, dict[str, tuple[int, int]]], effort: Effort, seed: int) -> list[str]:
    sources = next(iter(results.values())).keys()
    named_of = {b: next(s for s in rows if s.startswith("named")) for b, rows in results.items()}
    lines = [
        f"Steps per find of fresh test cases, {effort.finds} finds or {effort.seconds:g} s per source and bug, "
        f"whichever came first (seed {seed}); `(n)`: only n finds in the time; `> N`: none in N steps.",
        "",
        "| bug | kernel | "
        + " | ".join(s for s in sources if not s.startswith("named"))
        + " | named | uniform share / named |",
        "|---|---|" + "---:|" * (len(sources) + 1),
    ]
    own = [s for s in sources if not s.startswith("named") and s != "walker"]
    per_step = {b: [_rate_of(*rows[s]) for s in own] for b, rows in results.items()}
    named_rate = {b: _rate_of(*rows[named_of[b]]) for b, rows in results.items()}
    for bug, rows in results.items():
        uniform = sum(per_step[bug]) / len(own)
        ratio = f"{named_rate[bug] / uniform:.2f}" if uniform else "-"
        kernel = next(k for b, k, _, _ in FIND_SUITE if b == bug)
        cells = " | ".join(_per_find(*rows[s], effort.finds) for s in rows if not s.startswith("named"))
        named = f"{_per_find(*rows[named_of[bug]], effort.finds)} ({named_of[bug][6:]})"
        lines.append(f"| {bug} | {kernel} | {cells} | {named} | {ratio} |")
    relative = {b: [r / named_rate[b] for r in per_step[b]] for b in results if named_rate[b]}
    usable = {b: v for b, v in relative.items() if any(v)}
    if usable:
        value, p = best_fixed_share(list(usable.values()))
        share = ", ".join(f"{s} {x:.0%}" for s, x in zip(own, p, strict=True) if x >= 0.005)
        lines += [
            "",
            f"The best fixed share of the default's sources over bugs {', '.join(usable)} (a linear program): "
            f"its rate is at best {value:.3f} of the named strategy's on its worst bug, so its steps to a find "
            f"at least {1 / value:.2f}x the named strategy's there ({share}).",
        ]
    # a bug that the named strategy or every source missed in the time given has no rate to plan by
    timed = [b for b in results if named_rate[b] > 0 and any(per_step[b])]
    plan = best_schedule([per_step[b] for b in timed], [named_rate[b] for b in timed]) if timed else None
    if plan is not None:
        lines += ["", *schedule_lines(plan, own, timed)]
        if len(timed) < len(results):
            lines += ["", f"Left out, no find to plan by: {', '.join(b for b in results if b not in timed)}."]
    return lines


def schedule_lines(plan: Schedule, sources: Sequence[str], bugs: Sequence[str]) -> list[str]:
    """The best schedule in words: its ratio and, interval by interval, the bugs whose deadline ends
    it and the sources it runs."""
    steps = []
    start = 0.0
    for end, share, due in zip(plan.ends, plan.shares, plan.due, strict=True):
        runs = ", ".join(f"{s} {x:.0%}" for s, x in zip(sources, share, strict=True) if x >= 0.005)
        whose = ", ".join(bugs[b] for b in due)
        steps.append(f"{start:,.0f}-{end:,.0f} steps ({whose}'s deadline): {runs or 'anything'}")
        start = end
    return [
        f"A share that changes as the steps add up, chosen knowing every bug (finds at a constant rate per step, "
        f"a linear program per ratio): at best {plan.ratio:.2f}x the named strategy's median steps on its worst "
        f"bug of {', '.join(bugs)}, by running, in turn:",
        "",
        *(f"* {line}" for line in steps),
    ]


@attrs.frozen
class Blindness:
    """What the default campaign did on a bug's kernel before finding the bug, and whether it did the
    same on that kernel with the bug's fix (same seed): a search that sensed the bug before finding
    it would have shared its time differently there.  The arms share time by reward per second, so
    two runs of one kernel with one seed can part too: the control runs the bug's kernel again."""

    cases: int  # test cases run up to and including the one that found the bug
    same: int  # how many of them, from the first, the campaign on the fixed kernel ran alike
    same_again: int  # how many of them, from the first, the bug's kernel run again ran alike
    own_share: float  # share of those test cases drawn from the bug's named strategy's mix
    own_share_fixed: float  # the same share over as many test cases on the fixed kernel


Ran = list[tuple[str, int, bytes]]  # each test case a campaign ran: its arm, its source, its bytes


def _cases_run(kernel: str, seed: int, bug: str, budget: float | None, examples: int | None) -> tuple[Ran, int | None]:
    """Each test case a default campaign hunting ``bug`` on ``kernel`` ran (arm, source, bytes), and
    how many had run when the one that found the bug did (None: not found).  Every arm of the
    default runs its test cases through ``Hunt.run_case``, which counts them for ``examples_before``."""
    from rmapfuzz import campaign

    ran: Ran = []
    run_case = campaign.Hunt.run_case

    def recorded(hunt: campaign.Hunt, case: Case, via: str) -> float:
        ran.append((via, hunt.swarm.source(case.header), case.to_bytes()))
        return run_case(hunt, case, via)

    config = campaign.Config(strategy=strategy.load("default"), kernel=kernel, seed=seed, budget=budget,
                             examples=examples, targets=(bug,), keep_going=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(campaign.Hunt, "run_case", recorded):
        result = campaign.run(attrs.evolve(config, corpus_dir=Path(tmp) / "corpus", database=Path(tmp) / "db"))
    first = next((f for f in result.finds if bug in f.bugs), None)
    return ran, None if first is None else first.examples_before


def blindness(bug: str, kernel: str, named: str, seed: int, budget: float) -> Blindness | None:
    """:class:`Blindness` of one seed's default campaign hunting ``bug`` (None: not found in ``budget``)."""
    hunted = hunted_kernel(bug, kernel)
    ran, found = _cases_run(hunted.name, seed, bug, budget, None)
    if found is None:
        return None
    ran = ran[:found]
    fixed, _ = _cases_run(with_fix(hunted, bug).name, seed, bug, None, found)
    again, _ = _cases_run(hunted.name, seed, bug, None, found)
    own = 1 + strategy.load("default").portfolio.index(named)

    def alike(other: Ran) -> int:
        return next((i for i, (a, b) in enumerate(zip(ran, other, strict=False)) if a != b), min(found, len(other)))

    def share(cases: Ran) -> float:
        return sum(source == own for _, source, _ in cases) / max(len(cases), 1)

    return Blindness(found, alike(fixed), alike(again), share(ran), share(fixed[:found]))


def measure_suite(
    effort: Effort, seed: int, bugs: Sequence[str] | None = None, jobs: int = 1
) -> dict[str, dict[str, tuple[int, int]]]:
    """:func:`measure` of every bug of the find suite (or of ``bugs``), ``jobs`` bugs at once, each in a
    process of its own."""
    suite = [(bug, kernel, named) for bug, kernel, named, _ in FIND_SUITE if bugs is None or bug in bugs]
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {bug: pool.submit(measure, bug, kernel, named, effort, seed) for bug, kernel, named in suite}
        results = {}
        for bug, future in futures.items():
            results[bug] = future.result()
            print(f"  {bug}: done", file=sys.stderr)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.portfolio", description=__doc__.split("\n\n")[0])
    parser.add_argument("--finds", type=int, default=30, help="finds per source and bug before it stops")
    parser.add_argument("--seconds", type=float, default=20.0, help="the most per source and bug")
    parser.add_argument("--bugs", default=None, help="comma-separated (default: the find suite's)")
    parser.add_argument("--seed", type=int, default=None, help="default: drawn fresh and printed")
    parser.add_argument("--jobs", type=int, default=1, help="bugs measured at once, each in a process")
    args = parser.parse_args(argv)
    if args.finds < 1 or args.seconds <= 0 or args.jobs < 1:
        parser.error("--finds and --jobs must be at least 1, --seconds above 0")
    seed = fresh_seed(args.seed)
    effort = Effort(args.finds, args.seconds)
    wanted = args.bugs.split(",") if args.bugs else None
    unknown = sorted(set(wanted or ()) - {bug for bug, *_ in FIND_SUITE})
    if unknown:
        parser.error(f"--bugs: {', '.join(unknown)} not in the find suite ({', '.join(b for b, *_ in FIND_SUITE)})")
    results = measure_suite(effort, seed, wanted, args.jobs)
    print("\n".join(table(results, effort, seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
