"""Verdicts against another revision: the same op sequences replayed on every kernel by this tree and
by ``--against REV``, first violations compared.

    python -m bench.verdicts --against 31f2487            # 60 test cases of each source
    python -m bench.verdicts --against 31f2487 --count 150 --seed 99

What a change to the judge or to the model does to what the fuzzer reports: which kernels' verdicts
moved, and how.  A stronger judge should change nothing on the fixed kernels and keep every
catalogued bug's report; a model change should move only the kernels it was meant to.

The sequences are made once, by this tree: fresh test cases of the default, mremap, swap and enomem
strategies (decoded on ``current``, so their pids and ranges make sense there) and the naive
walker's (bench/walk.py).  Each tree replays them from their JSON form with
``rmapfuzz.replay.replay(steps, kernel, window)``, the library API every revision has, on every
kernel it knows, in a subprocess that imports the package from that tree (the other revision is
checked out with ``git worktree add``, as bench/speed.py does).  Kernels only one tree knows are
listed, not compared.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("default", "mremap", "swap", "enomem")
EXAMPLES = 3  # changed verdicts shown per kernel


def sequences(count: int, seed: int, plain_mmaps: bool = False) -> list[tuple[int, list[dict[str, Any]]]]:
    """(window, steps) of ``count`` fresh test cases of each source strategy and ``count`` walks;
    ``plain_mmaps``: no MAP_NORESERVE (for a revision whose language lacks it)."""
    from bench.speed import fresh_cases
    from bench.walk import Language, random_sequence, uniform_mix
    from rmapfuzz import ops, strategy
    from rmapfuzz.kernels import resolve

    def load(name: str) -> strategy.Strategy:
        s = strategy.load(name)
        return s.plain_mmaps() if plain_mmaps else s

    rng = random.Random(seed)
    current = resolve("current")
    out: list[tuple[int, list[dict[str, Any]]]] = []
    for name in SOURCES:
        window, cases = fresh_cases(load(name), current, random.Random(rng.random()), count, [])
        out += [(window, steps) for steps in cases]
    default = load("default")
    lang, mix = Language.of(default), uniform_mix(default)
    out += [(lang.window, [ops.to_json(op) for op in random_sequence(rng, 60, lang, mix)]) for _ in range(count)]
    return out


def replay_all(seqs: list[tuple[int, list[dict[str, Any]]]]) -> dict[str, list[str]]:
    """kernel -> one line per sequence: ``-`` for clean, else ``invariant @step: message``."""
    from rmapfuzz.kernels import names
    from rmapfuzz.replay import replay

    verdicts: dict[str, list[str]] = {}
    for kernel in names():
        lines = []
        for window, steps in seqs:
            found = replay(steps, kernel, window).violation
            lines.append("-" if found is None else f"{found.invariant} @{found.step}: {found.message}")
        verdicts[kernel] = lines
    return verdicts


def _replay_in(tree: Path, seqs_path: Path) -> dict[str, list[str]]:
    from bench.speed import json_in

    result: dict[str, list[str]] = json_in(tree, Path(__file__).resolve(), "--replay", str(seqs_path))
    return result


def compare(here: dict[str, list[str]], there: dict[str, list[str]], against: str) -> list[str]:
    """The markdown rows: per kernel both trees know, how many verdicts changed and a few of them."""
    lines = [
        f"| kernel | sequences | violations here | violations in `{against}` | verdicts changed |",
        "|---|---:|---:|---:|---:|",
    ]
    examples: list[str] = []
    moved: Counter[str] = Counter()
    for kernel, ours in here.items():
        theirs = there.get(kernel)
        if theirs is None:
            continue
        changed = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
        moved[kernel] = len(changed)
        bad_here = sum(v != "-" for v in ours)
        bad_there = sum(v != "-" for v in theirs)
        lines.append(f"| {kernel} | {len(ours):,} | {bad_here:,} | {bad_there:,} | {len(changed):,} |")
        for i in changed[:EXAMPLES]:
            examples.append(f"- {kernel}, sequence {i}: `{against}` {theirs[i]!r}, here {ours[i]!r}")
    only = sorted(set(here) ^ set(there))
    lines.append("")
    lines.append(f"{sum(moved.values()):,} verdicts changed on {sum(1 for n in moved.values() if n)} of "
                 f"{len(moved)} kernels.")  # fmt: skip
    if only:
        lines.append(f"Kernels only one tree knows (not compared): {', '.join(only)}.")
    if examples:
        lines += ["", *examples]
    return lines


def run(against: str, count: int, seed: int, plain_mmaps: bool = False) -> str:
    from bench.speed import worktree

    seqs = sequences(count, seed, plain_mmaps)
    with tempfile.TemporaryDirectory() as tmp:
        seqs_path = Path(tmp) / "sequences.json"
        seqs_path.write_text(json.dumps(seqs))
        with worktree(against, Path(tmp) / "against") as other:
            there = _replay_in(other, seqs_path)
        here = _replay_in(ROOT, seqs_path)
    head = [
        f"### Verdicts against `{against}` ({len(seqs):,} sequences: {count} fresh test cases of each of "
        f"{', '.join(SOURCES)} and {count} walks{', plain mmaps only' if plain_mmaps else ''}; seed {seed})",
        "",
    ]
    return "\n".join(head + compare(here, there, against)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verdicts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REV", help="the revision to compare with")
    parser.add_argument("--count", type=int, default=60, help="test cases of each source (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="default: drawn at random and printed")
    parser.add_argument("--plain-mmaps", action="store_true",
                        help="no MAP_NORESERVE in the sequences (a revision before it cannot read them)")  # fmt: skip
    parser.add_argument("--replay", default=None, help=argparse.SUPPRESS)  # the subprocess' side
    args = parser.parse_args(argv)
    if args.replay:
        print(json.dumps(replay_all([tuple(s) for s in json.loads(Path(args.replay).read_text())])))
        return 0
    if not args.against:
        parser.error("--against REV is required")
    from bench import fresh_seed  # here: the --replay side runs with another tree's bench on its path
    from bench.speed import require_revision

    require_revision(parser, args.against)
    seed = fresh_seed(args.seed)
    print(run(args.against, args.count, seed, args.plain_mmaps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
