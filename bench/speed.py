"""Speed: raw model speed and campaign throughput, for this tree and (``--against REV``) another
revision of the project measured the same way in the same run.

    python -m bench.speed                        # this tree only
    python -m bench.speed --against c16ef5e      # this tree and that commit, side by side

The sequences are made once, by this tree: the guided search's own fresh test cases over the whole
op language (what a default campaign runs; without MAP_NORESERVE when another revision is measured,
since a revision before it cannot read those steps), and the naive walker's sequences
(bench/walk.py).  Both
trees replay the same steps from their JSON form with ``Runner(kernel, window, invariants).step``,
the one interface every revision has had, with all invariants and with none; then each runs a
campaign per strategy for the same time.  The other revision is checked out with
``git worktree add`` into a temporary directory and measured in a subprocess that imports the
package from there (this file is run as a script, so it imports nothing but ``rmapfuzz``).  The
trees take turns (each campaign, strategy by strategy, then three rounds of one replay pass each),
so that a busy spell of a shared machine lands on both rather than on whichever was measured
second.  Each replay figure is the best of the
three rounds; the peak RSS is the measuring process's.

Coverage cost: this tree's replay of the campaign's sequences with the coverage points counted (as
the search does) against without, in one process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 8


def _replay(
    kernel: str, sequences: list[list[Any]], invariants: tuple[str, ...] | None, passes: int = 3, **kw: Any
) -> float:
    """Steps per second replaying ``sequences`` (op objects), best of ``passes``."""
    from rmapfuzz.replay import Runner

    best = 0.0
    for _ in range(passes):
        steps = 0
        started = time.perf_counter()
        for seq in sequences:
            runner = Runner(kernel, WINDOW, invariants, **kw)
            for op in seq:
                steps += 1
                if runner.step(op)[1]:
                    break
        best = max(best, steps / (time.perf_counter() - started))
    return best


def _campaign(kernel: str, strat: str, seconds: float, seed: int) -> float:
    from rmapfuzz import campaign, strategy

    with tempfile.TemporaryDirectory() as tmp:
        config = campaign.Config(kernel=kernel, strategy=strategy.load(strat), seed=seed, budget=seconds,
                                 corpus_dir=Path(tmp) / "corpus", database=None)  # fmt: skip
        result = campaign.run(config)
    return float(result.stats["steps"] / result.seconds)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Every figure of ``spec`` for the package importable here."""
    from rmapfuzz import ops

    kernel, passes = spec["kernel"], spec.get("passes", 3)
    out: dict[str, Any] = {"replay": {}, "campaign": {}}
    for name, seqs in spec["sequences"].items():
        parsed = [[ops.parse_step(step, WINDOW) for step in seq] for seq in seqs]
        out["replay"][name] = {
            "all": _replay(kernel, parsed, None, passes),
            "none": _replay(kernel, parsed, (), passes),
        }
    for label, strat in spec["strategies"].items():
        out["campaign"][label] = _campaign(kernel, strat, spec["seconds"], spec["seed"])
    out["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def coverage_cost(kernel: str, sequences: list[list[dict[str, Any]]], rounds: int = 5) -> tuple[float, float]:
    """(steps/s without coverage counted, with): this tree's replay of the campaign's sequences, the
    two alternating so that a busy moment of the machine hits both, best of ``rounds`` each."""
    from rmapfuzz import ops

    parsed = [[ops.parse_step(step, WINDOW) for step in seq] for seq in sequences]
    without = with_coverage = 0.0
    for _ in range(rounds):
        without = max(without, _replay(kernel, parsed, None, passes=1))
        with_coverage = max(with_coverage, _replay(kernel, parsed, None, passes=1, coverage=Counter()))
    return without, with_coverage


def sequences(
    kernel: str, seed: int, count: int = 300, plain_mmaps: bool = False
) -> dict[str, list[list[dict[str, Any]]]]:
    """The campaign's fresh test cases and the walker's sequences, as op-language JSON;
    ``plain_mmaps``: no MAP_NORESERVE, which a revision before it cannot read."""
    sys.path.insert(0, str(ROOT))
    from bench.walk import Language, random_sequence, uniform_mix
    from rmapfuzz import ops, strategy
    from rmapfuzz.kernels import resolve

    strat = strategy.load("default")
    if plain_mmaps:
        strat = strat.plain_mmaps()
    rng = random.Random(seed)
    _, fresh = fresh_cases(strat, resolve(kernel), rng, count)
    lang, mix = Language.of(strat), uniform_mix(strat)
    walker = [[ops.to_json(op) for op in random_sequence(rng, 50, lang, mix)] for _ in range(count)]
    return {"campaign's test cases": fresh, "walker": walker}


def fresh_cases(
    strat: Any, kernel: Any, rng: random.Random, count: int, invariants: Sequence[str] | None = None
) -> tuple[int, list[list[dict[str, Any]]]]:
    """The window and ``count`` fresh test cases of ``strat``'s search on ``kernel``, each as the
    op-language JSON of the steps it ran (up to a violation of ``invariants``; None: all of them)."""
    from rmapfuzz import ops
    from rmapfuzz.generate import Swarm
    from rmapfuzz.search import Pool, execute

    swarm = Swarm.of(strat, kernel)
    pool = Pool(swarm, rng, headers=strat.swarm > 0)
    cases = [[ops.to_json(op) for op in execute(kernel, swarm, pool.fresh(), invariants).ops]
             for _ in range(count)]  # fmt: skip
    return swarm.base.window, cases


def require_revision(parser: argparse.ArgumentParser, rev: str | None) -> None:
    """A usage error (one line, exit 2) unless ``rev`` is None or names a commit of this
    repository: checked before any measuring starts."""
    probe = ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"]
    if rev is not None and subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        parser.error(f"--against {rev}: not a commit of this repository")


@contextlib.contextmanager
def worktree(rev: str, where: Path) -> Iterator[Path]:
    """``rev`` checked out at ``where`` (``git worktree add``), removed again on the way out."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
                       check=False, capture_output=True)  # fmt: skip


def json_in(tree: Path, script: Path, *args: str) -> Any:
    """What ``script`` (a bench file, run with ``args``) prints as JSON when it imports the package
    from ``tree``: this checkout or another revision's worktree."""
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} in {tree} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout)


def _measure_in(tree: Path, spec_path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json_in(tree, Path(__file__).resolve(), "--measure", str(spec_path))
    return result


def _rounds(
    where: dict[str, Path], spec: dict[str, Any], strategies: dict[str, str], tmp: Path, rounds: int = 3
) -> dict[str, dict[str, Any]]:
    """Every figure of every tree, the trees taking turns (see the module's docstring).  Every tree
    runs its own default strategy and this tree's classic mix (the old default's language)."""
    trees: dict[str, dict[str, Any]] = {name: {"replay": {}, "campaign": {}, "maxrss_mib": 0.0} for name in where}
    spec_path = tmp / "spec.json"

    def measure_in(name: str, **part: Any) -> dict[str, Any]:
        spec_path.write_text(json.dumps({**spec, **part}))
        got = _measure_in(where[name], spec_path)
        trees[name]["maxrss_mib"] = max(trees[name]["maxrss_mib"], got["maxrss_mib"])
        return got

    for label, strat in strategies.items():
        for name in where:
            got = measure_in(name, sequences={}, strategies={label: strat})
            trees[name]["campaign"][label] = got["campaign"][label]
    for _ in range(rounds):
        for name in where:
            for seqs, figures in measure_in(name, strategies={})["replay"].items():
                best = trees[name]["replay"].setdefault(seqs, {})
                for inv, value in figures.items():
                    best[inv] = max(best.get(inv, 0.0), value)
    return trees


def run(kernel: str, seconds: float, seed: int, against: str | None) -> str:
    """The markdown section: this tree (and ``against``) measured on the same sequences (with
    ``against``, sequences both trees read: no MAP_NORESERVE, which older revisions lack)."""
    seqs = sequences(kernel, seed, plain_mmaps=against is not None)
    here_strategies = {"default": "default", "classic": str(ROOT / "strategies" / "classic.toml")}
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"kernel": kernel, "sequences": seqs, "seconds": seconds, "seed": seed, "passes": 1}
        where = {"this tree": ROOT}
        with contextlib.ExitStack() as checkouts:
            if against:
                where[f"`{against}`"] = checkouts.enter_context(worktree(against, Path(tmp) / "against"))
            trees = _rounds(where, spec, here_strategies, Path(tmp))
    without, with_cov = coverage_cost(kernel, seqs["campaign's test cases"])
    names = list(trees)
    lines = [
        f"### Speed ({kernel}, W={WINDOW}, seed {seed}; replay best of 3, campaigns {seconds:.0f} s each)",
        "",
        "| what | " + " | ".join(names) + (" | this tree / other |" if len(names) > 1 else " |"),
        "|---|" + "---:|" * len(names) + ("---:|" if len(names) > 1 else ""),
    ]

    def row(label: str, values: list[float], unit: str = "steps/s") -> None:
        cells = " | ".join(f"{v:,.0f} {unit}" for v in values)
        ratio = f" | {values[0] / values[1]:.2f}" if len(values) > 1 and values[1] else ""
        lines.append(f"| {label} | {cells}{ratio} |")

    for name in seqs:
        for inv in ("all", "none"):
            row(f"replay of the {name}, invariants {inv}", [trees[t]["replay"][name][inv] for t in names])
    for strat in here_strategies:
        row(f"campaign, strategy {strat}", [trees[t]["campaign"][strat] for t in names])
    lines.append(
        "| peak RSS of the measuring process | "
        + " | ".join(f"{trees[t]['maxrss_mib']:.0f} MiB" for t in names)
        + (" | |" if len(names) > 1 else " |")
    )
    lines += [
        "",
        f"Coverage recording: replaying the campaign's test cases with the coverage points counted runs "
        f"{with_cov:,.0f} steps/s against {without:,.0f} without ({100 * (1 - with_cov / without):.1f} % cost).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", default="current")
    parser.add_argument("--seconds", type=float, default=20.0, help="campaign seconds per strategy and tree")
    parser.add_argument("--seed", type=int, default=None, help="default: drawn at random and printed")
    parser.add_argument("--against", default=None, metavar="REV", help="another revision to measure alongside")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the subprocess' side
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(json.loads(Path(args.measure).read_text()))))
        return 0
    from bench import fresh_seed  # here: the --measure side runs with another tree's bench on its path

    require_revision(parser, args.against)
    seed = fresh_seed(args.seed)
    print(run(args.kernel, args.seconds, seed, args.against))
    return 0


if __name__ == "__main__":
    sys.exit(main())
