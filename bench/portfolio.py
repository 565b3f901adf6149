"""How close can any fixed share of the default campaign's sources come to each bug's named strategy?

    python -m bench.portfolio                     # 8 s per source and bug, a markdown table
    python -m bench.portfolio --seconds 20 --bugs S,M,G --seed 7

The default campaign draws each fresh test case from one of its sources: the named strategies of
its portfolio and the swarm of mixes drawn over the whole language.  For every catalogued bug this
measures, on the bug's kernel, how many steps per find each source's fresh test cases need (as the
default campaign runs them: its test case length, its swarm), and the same for the named strategy
on its own and for the naive walker.

A fixed share ``p`` of fresh test cases over the sources finds bug ``b`` at the rate
``sum_i p_i r_ib``.  The bench's criterion asks that rate to be at least half the named strategy's
on every bug; the best any share can do is the value of a small zero-sum game (sources against
bugs), which fictitious play brackets from both sides: the share it plays is a lower bound (it
achieves that ratio on every bug), and its mixture of bugs an upper bound (no share does better on
that mixture, so none does better on every bug).  A ratio above 2 for every share means no fixed
share of these sources meets the criterion, however it is tuned: the search would have to know the
bug.  Mutation of kept test cases is not counted: the named strategies' campaigns mutate too.

Each bug is hunted on its kernel with the other catalogued bugs of that kernel fixed, as a
keep-going campaign sees it once it has found them; B keeps M (965f55dea0e3, M's fix, refuses the
merges B needs; a campaign finds B long before M).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from typing import Any

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


def _rate(run_one: Any, seconds: float) -> tuple[int, int]:
    """(finds, steps) of ``run_one()`` (which returns (steps, found)) repeated for ``seconds``."""
    finds = steps = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        n, found = run_one()
        steps += n
        finds += found
    return finds, steps


def measure(bug: str, kernel: str, named: str, seconds: float, seed: int) -> dict[str, tuple[int, int]]:
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
        case = Case(bytes(header) if use_header else None, rng.randbytes(OP_BYTES * s.steps))
        o = execute(k, sw, case, None, s.steps)
        return len(o.ops), bool(o.violations) and bug in classify(k, o.ops, s.window)

    for pick, name in enumerate(names):
        out[name] = _rate(lambda pick=pick: case_of(default, swarm, pick), seconds)
    own = strategy.load(named)
    own_swarm = Swarm.of(own, k)
    out[f"named {named}"] = _rate(lambda: case_of(own, own_swarm, None), seconds)
    lang, mix = Language.of(default), uniform_mix(default)

    def walk_one() -> tuple[int, bool]:
        runner = Runner(k, lang.window)
        steps = random_sequence(rng, 60, lang, mix)
        for i, op in enumerate(steps):
            if runner.step(op)[1]:
                return i + 1, bug in classify(k, steps[: i + 1], lang.window)
        return len(steps), False

    out["walker"] = _rate(walk_one, seconds)
    return out


def game_value(m: Sequence[Sequence[float]], rounds: int = 20000) -> tuple[float, float, list[float]]:
    """Bounds on max_p min_b (M p)_b for M[b][i] >= 0 (bugs by sources), by fictitious play: (lower,
    upper, the share achieving ``lower``)."""
    nb, ns = len(m), len(m[0])
    src_total = [0.0] * ns  # payoff of each source against the bugs' play so far
    bug_total = [0.0] * nb  # payoff of each bug against the sources' play so far
    p_count = [0] * ns
    q_count = [0] * nb
    i, b = 0, 0
    for _ in range(rounds):
        p_count[i] += 1
        q_count[b] += 1
        for j in range(ns):
            src_total[j] += m[b][j]
        for c in range(nb):
            bug_total[c] += m[c][i]
        i = max(range(ns), key=src_total.__getitem__)
        b = min(range(nb), key=bug_total.__getitem__)
    p = [c / rounds for c in p_count]
    q = [c / rounds for c in q_count]
    lower = min(sum(m[c][j] * p[j] for j in range(ns)) for c in range(nb))
    upper = max(sum(m[c][j] * q[c] for c in range(nb)) for j in range(ns))
    return lower, upper, p


def _per_find(finds: int, steps: int) -> str:
    return f"{steps / finds:,.0f}" if finds else f"> {steps:,}"


def table(results: dict[str, dict[str, tuple[int, int]]], seconds: float, seed: int) -> list[str]:
    sources = next(iter(results.values())).keys()
    named_of = {b: next(s for s in rows if s.startswith("named")) for b, rows in results.items()}
    lines = [
        f"Steps per find of fresh test cases, {seconds:g} s per source and bug (seed {seed}); `> N`: none in N steps.",
        "",
        "| bug | kernel | "
        + " | ".join(s for s in sources if not s.startswith("named"))
        + " | named | uniform share / named |",
        "|---|---|" + "---:|" * (len(sources) + 1),
    ]
    rates: dict[str, list[float]] = {}
    for bug, rows in results.items():
        own = [s for s in rows if not s.startswith("named") and s != "walker"]
        r = {s: f / n if n else 0.0 for s, (f, n) in rows.items()}
        rates[bug] = [r[s] / r[named_of[bug]] for s in own] if r[named_of[bug]] else []
        uniform = sum(r[s] for s in own) / len(own)
        ratio = f"{r[named_of[bug]] / uniform:.2f}" if uniform else "-"
        kernel = next(k for b, k, _, _ in FIND_SUITE if b == bug)
        cells = " | ".join(_per_find(*rows[s]) for s in rows if not s.startswith("named"))
        lines.append(
            f"| {bug} | {kernel} | {cells} | {_per_find(*rows[named_of[bug]])} ({named_of[bug][6:]}) | {ratio} |"
        )
    usable = {b: v for b, v in rates.items() if v and any(v)}
    if usable:
        lower, upper, p = game_value(list(usable.values()))
        own = [s for s in sources if not s.startswith("named") and s != "walker"]
        share = ", ".join(f"{s} {x:.0%}" for s, x in zip(own, p, strict=True) if x >= 0.005)
        lines += [
            "",
            f"The best fixed share of the default's sources over bugs {', '.join(usable)} (fictitious play): "
            f"its rate is at best {upper:.3f} and at least {lower:.3f} of the named strategy's on its worst bug, "
            f"so its steps to a find at least {1 / upper:.2f}x the named strategy's there (the share reaching "
            f"{1 / lower:.2f}x: {share}).",
        ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.portfolio", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per source and bug")
    parser.add_argument("--bugs", default=None, help="comma-separated (default: the find suite's)")
    parser.add_argument("--seed", type=int, default=None, help="default: drawn fresh and printed")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    wanted = args.bugs.split(",") if args.bugs else None
    results: dict[str, dict[str, tuple[int, int]]] = {}
    for bug, kernel, named, _ in FIND_SUITE:
        if wanted is None or bug in wanted:
            results[bug] = measure(bug, kernel, named, args.seconds, seed)
            print(f"  {bug}: done", file=sys.stderr)
    print("\n".join(table(results, args.seconds, seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
