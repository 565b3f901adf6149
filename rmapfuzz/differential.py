"""Model against model: search for the steps after which two kernels stop agreeing.

``rmapfuzz diff --kernel A --against B`` answers a reviewer's question of a patch: what does it
change?  The search is the campaign's (:mod:`rmapfuzz.search`: fresh test cases from A's swarm of
mixes and mutations of the ones that reached rare kernel paths of A), but every test case runs on
A and B side by side (:class:`rmapfuzz.pair.PairRunner`) and a *find* is the first step after
which they differ at one of the compared levels.  A find is reduced, with the greedy reducer, to
the fewest steps that still differ at the same level on the same op, and saved in the corpus as a
reproducer of kind ``difference`` that names both kernels (``rmapfuzz show`` renders both states).

Levels that a patch is *meant* to change can be left out (``ignore``): a patch that only changes
which anon_vma a page gets should show no ``layout`` or ``result`` difference, and a search that
ignores ``graph`` and ``page-anon`` then looks for anything else it changes.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from rmapfuzz import corpus, ops
from rmapfuzz.generate import Swarm
from rmapfuzz.kernels import resolve
from rmapfuzz.minimize.greedy import minimize
from rmapfuzz.pair import LEVELS, Difference, PairRunner, pair_replay
from rmapfuzz.search import DEFAULT_ARMS, Arms, Case, Pool, Stepper, execute
from rmapfuzz.strategy import Strategy

BATCH = 50  # test cases per turn of an arm


@attrs.frozen
class DiffConfig:
    kernel: str  # A: the kernel the steps are generated for (a name or an overlay file)
    against: str  # B
    strategy: Strategy
    seed: int = 0
    budget: float | None = 60.0
    examples: int | None = None
    levels: tuple[str, ...] = LEVELS
    invariants: tuple[str, ...] | None = None
    keep_going: bool = False  # after a find, look for differences of other signatures
    corpus_dir: Path | None = Path("corpus")
    shrink_seconds: float = 10.0  # the most a find's reduction may take
    without: tuple[str, ...] = ()  # ops left out of the language (e.g. fail_alloc)


@attrs.frozen
class DiffFind:
    signature: str
    level: str
    levels: tuple[str, ...]  # every level that differs at the step
    message: str
    steps: tuple[ops.Op, ...]  # reduced
    found_steps: int  # the test case's length before reduction
    seconds: float  # into the campaign
    examples_before: int
    path: Path | None
    status: str | None  # corpus.save's verdict


@attrs.define
class DiffResult:
    config: DiffConfig
    names: tuple[str, str]  # the two kernels' model names
    finds: list[DiffFind]
    examples: int
    steps: int
    seconds: float
    ended_broken: Counter[str]  # invariant -> test cases that ended on it with no difference (pair.Broken)
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.finds else 0


def signature(a: str, b: str, level: str, op: ops.Op) -> str:
    return f"{a}-vs-{b}:difference-{level}:{corpus.step_shape(op)}"


def same_difference(
    a: str, b: str, window: int, key: tuple[str, str], config: DiffConfig, deadline: float
) -> Callable[[Sequence[ops.Op]], bool]:
    """The reducer's predicate: the steps still differ first at ``key`` = (level, op name) on their
    last step.  Past ``deadline`` nothing is accepted, which ends the reduction."""

    def still_differs(steps: Sequence[ops.Op]) -> bool:
        if not steps or time.monotonic() > deadline:
            return False
        found = pair_replay(steps, a, b, window, config.levels, config.invariants)
        return found is not None and found.step == len(steps) - 1 and (found.level, steps[-1].op) == key

    return still_differs


def reduce(a: str, b: str, window: int, steps: Sequence[ops.Op], found: Difference, config: DiffConfig) -> list[ops.Op]:
    assert found.step is not None
    prefix = list(steps[: found.step + 1])
    key = (found.level, prefix[-1].op)
    return minimize(prefix, same_difference(a, b, window, key, config, time.monotonic() + config.shrink_seconds))


def run(config: DiffConfig, on_find: Callable[[DiffFind], None] | None = None) -> DiffResult:
    """Search until the budget (or the examples) run out, or the first find without keep_going."""
    kernel_a, kernel_b = resolve(config.kernel), resolve(config.against)
    a, b = kernel_a.name, kernel_b.name
    rng = random.Random(config.seed)
    swarm = Swarm.of(config.strategy, kernel_a).without(config.without)
    window = swarm.base.window
    pool = Pool(swarm, rng, headers=config.strategy.swarm > 0)
    arms = Arms(rng, DEFAULT_ARMS)
    started = time.monotonic()
    deadline = None if config.budget is None else started + config.budget
    result = DiffResult(config, (a, b), [], 0, 0, 0.0, Counter())
    seen: set[str] = set()

    def pair(hits: Counter[str]) -> Stepper:
        return PairRunner(kernel_a, kernel_b, window, config.invariants, hits, config.levels)

    def spent() -> bool:
        if deadline is not None and time.monotonic() > deadline:
            return True
        return config.examples is not None and result.examples >= config.examples

    def one(case: Case) -> float:
        out = execute(kernel_a, swarm, case, config.invariants, runner=pair)
        result.examples += 1
        result.steps += len(out.ops)
        if not out.violations:
            return pool.add(case, out)
        found = out.violations[0]
        if not isinstance(found, Difference):
            result.ended_broken[found.invariant] += 1
            return pool.add(case, out)
        sig = signature(a, b, found.level, out.ops[-1])
        if sig not in seen:
            seen.add(sig)
            record(out.ops, found, sig)
        return 0.0

    def record(steps: list[ops.Op], found: Difference, sig: str) -> None:
        at = time.monotonic() - started
        reduced = reduce(a, b, window, steps, found, config)
        final = pair_replay(reduced, a, b, window, config.levels, config.invariants) or found
        path, status = None, None
        if config.corpus_dir is not None:
            rep = corpus.Reproducer(
                kernel=a,
                against=b,
                window=window,
                steps=reduced,
                violation={**final.to_json(), "step": len(reduced) - 1},
                kind="difference",
                found={"seed": config.seed, "strategy": config.strategy.name, "examples": result.examples},
            )
            path, status = corpus.save(config.corpus_dir, rep)
        find = DiffFind(sig, final.level, tuple(d.level for d in final.found), final.message, tuple(reduced),
                        len(steps), at, result.examples, path, status)  # fmt: skip
        result.finds.append(find)
        if on_find is not None:
            on_find(find)

    try:
        while not spent() and not (result.finds and not config.keep_going):
            arm = arms.pick()
            t0 = time.monotonic()
            new = 0.0
            for _ in range(BATCH):
                new += one(pool.fresh() if arm == "fresh" else pool.mutate())
                if spent() or (result.finds and not config.keep_going):
                    break
            arms.credit(arm, new, time.monotonic() - t0)
    except KeyboardInterrupt:
        result.interrupted = True
    result.seconds = time.monotonic() - started
    return result


def report_text(result: DiffResult) -> str:
    """The result as plain text to paste into a review mail: per difference its reduced steps, the
    results on both kernels, and what each kernel shows at every level that differs."""
    a, b = result.names
    cfg = result.config
    lines = [
        f"rmapfuzz diff --kernel {cfg.kernel} --against {cfg.against} --seed {cfg.seed}"
        + (f" --ignore {','.join(sorted(set(LEVELS) - set(cfg.levels)))}" if cfg.levels != LEVELS else "")
        + (f" --without {','.join(cfg.without)}" if cfg.without else ""),
        f"A = {a}, B = {b}; {result.examples} test cases, {result.steps} steps, {result.seconds:.0f} s",
        f"compared after every step: {', '.join(cfg.levels)}",
        "",
    ]
    if not result.finds:
        lines.append("No difference.")
    for n, find in enumerate(result.finds, 1):
        lines += [f"{n}. {find.signature}", ""]
        runner = PairRunner(a, b, cfg.strategy.window, cfg.invariants, levels=cfg.levels)
        found: Difference | None = None
        for i, op in enumerate(find.steps):
            _, broken = runner.step(op)
            ra, rb = runner.results
            outcome = ra if ra == rb else f"A: {ra}, B: {rb}"
            lines.append(f"   {i}: {ops.describe(op):<44} {outcome}")
            if broken and isinstance(broken[0], Difference):
                found = broken[0]
        lines.append("")
        for d in found.found if found is not None else ():
            lines += [f"   {d.level}: {d.message}", f"     A: {d.a}", f"     B: {d.b}"]
        if find.path is not None:
            lines.append(f"   (reproducer: {find.path})")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
