"""Scale-out: campaign throughput with N worker processes against one, on the same kernel, strategy
and seed (drawn fresh unless ``--seed`` is given, and printed), each from an empty corpus and an
empty Hypothesis database in a temporary directory.

    python -m bench.scale                      # 30 s each for 1 and 2 workers, a markdown table
    python -m bench.scale --seconds 10 --workers 1,2,4

``run(seconds, seed)`` returns the rows and ``table(rows)`` formats them, for ``bench.run`` to call.
"cores busy" is the CPU time of the campaign's processes (parent and workers) over the wall
time: on a shared machine it tells whether the workers got the cores they asked for, and "steps
per CPU s" what the workers make of the CPU they got (fork and queue overhead would lower it).
The figures are written down, not asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import fresh_seed
from rmapfuzz import campaign, strategy


def _cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # joined workers
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def measure(workers: int, seconds: float, seed: int, kernel: str = "current", strat: str = "default") -> dict[str, Any]:
    """One campaign of ``seconds`` with ``workers`` processes: its steps, test cases and rates."""
    with tempfile.TemporaryDirectory(prefix="rmapfuzz-scale-") as tmp:
        config = campaign.Config(
            kernel=kernel,
            strategy=strategy.load(strat),
            seed=seed,
            budget=seconds,
            workers=workers,
            corpus_dir=Path(tmp) / "corpus",
            database=Path(tmp) / "db",  # empty: nothing replayed from an earlier run
        )
        cpu = _cpu_seconds()
        result = campaign.run(config)
        cpu = _cpu_seconds() - cpu
    return {
        "workers": workers,
        "kernel": kernel,
        "strategy": strat,
        "seconds": result.seconds,
        "steps": result.stats["steps"],
        "examples": result.stats["examples"],
        "steps_per_s": result.stats["steps"] / result.seconds,
        "cores_busy": cpu / result.seconds,
        "steps_per_cpu_s": result.stats["steps"] / cpu if cpu else 0.0,
        "finds": len(result.finds),
        "seed": seed,
    }


def run(
    seconds: float, seed: int, workers: Sequence[int] = (1, 2), kernel: str = "current", strat: str = "default"
) -> list[dict[str, Any]]:
    """One campaign per worker count (one worker first, the baseline), all with ``seed``; each row
    has ``ratio``, its steps/s over the one-worker campaign's."""
    counts = [1, *(w for w in workers if w != 1)]
    rows = []
    for n in counts:
        rows.append(measure(n, seconds, seed, kernel, strat))
        print(f"  {n} worker(s): {rows[-1]['steps_per_s']:,.0f} steps/s", file=sys.stderr)
    base = rows[0]["steps_per_s"]
    for row in rows:
        row["ratio"] = row["steps_per_s"] / base if base else 0.0
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a markdown table (with a heading naming the kernel, strategy and budget)."""
    if not rows:
        return ""
    first = rows[0]
    lines = [
        f"### Workers ({first['kernel']}, strategy {first['strategy']}, {first['seconds']:.0f} s each, "
        f"{os.cpu_count()} CPUs, seed {first['seed']})",
        "",
        "| workers | steps | steps/s | ratio vs 1 worker | cores busy | steps per CPU s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['steps']:,} | {r['steps_per_s']:,.0f} | {r['ratio']:.2f} | {r['cores_busy']:.2f} "
            f"| {r['steps_per_cpu_s']:,.0f} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="budget of each campaign (default 30)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--kernel", default="current")
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--seed", type=int, default=None, help="default: drawn fresh and printed")
    args = parser.parse_args(argv)
    try:
        counts = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--workers: comma-separated integers, got {args.workers!r}")
    if not counts or min(counts) < 1:
        parser.error("--workers: each count must be at least 1")
    print(table(run(args.seconds, fresh_seed(args.seed), counts, args.kernel, args.strategy)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
