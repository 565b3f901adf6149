"""The incremental judge against the whole-state judge, side by side, on random sequences.

    python -m bench.equivalence [--steps 100000] [--seed S] [--kernel K ...]

Two runners go through every sequence in lockstep: one judges each step incrementally (only what the
step touched, rmapfuzz.scope; no periodic whole-state check), the other judges the whole state every
step.  They must break the same invariants at the same steps.  The sequences are the guided search's
fresh test cases over the whole op language (every mix, window and process bound the default
strategy can draw), so every op, flag and value is exercised.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence

import attrs

from bench import fresh_seed
from rmapfuzz import generate, ops, strategy
from rmapfuzz.generate import HEADER_BYTES, OP_BYTES, Swarm
from rmapfuzz.kernels import KERNELS, Kernel, resolve
from rmapfuzz.replay import Runner


@attrs.define
class Tally:
    kernel: str
    sequences: int = 0
    steps: int = 0
    violations: int = 0
    disagreements: list[str] = attrs.field(factory=list)
    incremental_s: float = 0.0
    full_s: float = 0.0


def compare(kernel: str | Kernel, steps: int, seed: int, length: int = 100) -> Tally:
    """Random sequences on ``kernel`` until ``steps`` steps ran, judged both ways."""
    rng = random.Random(seed)
    cls = resolve(kernel) if isinstance(kernel, str) else kernel
    swarm = Swarm.of(strategy.load("default"), cls)
    tally = Tally(cls.name)
    while tally.steps < steps:
        tally.sequences += 1
        decoder = generate.decoder(swarm.mix(rng.randbytes(HEADER_BYTES)))
        fast = Runner(cls, swarm.base.window, incremental=True, full_every=10**9)
        slow = Runner(cls, swarm.base.window, incremental=False)
        live = [0]
        for _ in range(length):
            op = decoder.decode(rng.randbytes(OP_BYTES), fast.kernel, live)
            if op is None:
                continue
            tally.steps += 1
            t0 = time.perf_counter()
            result, found = fast.step(op)
            t1 = time.perf_counter()
            result2, found2 = slow.step(op)
            t2 = time.perf_counter()
            tally.incremental_s += t1 - t0
            tally.full_s += t2 - t1
            a = [(v.invariant, v.message) for v in found]
            b = [(v.invariant, v.message) for v in found2]
            if result != result2 or a != b:
                tally.disagreements.append(f"sequence {tally.sequences} step {fast.index - 1} {ops.describe(op)}: "
                                           f"incremental {a or 'clean'} vs whole {b or 'clean'}")  # fmt: skip
                break
            if found:
                tally.violations += 1
                break
            if result == "ok" and isinstance(op, ops.Fork):
                live.append(fast.kernel.next_pid - 1)
            elif result == "ok" and isinstance(op, ops.Exit):
                live.remove(op.pid)
    return tally


def table(tallies: Sequence[Tally]) -> str:
    rows = [
        "| kernel | sequences | steps | violations | disagreements | incremental judge s | whole-state judge s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in tallies:
        rows.append(f"| {t.kernel} | {t.sequences:,} | {t.steps:,} | {t.violations} | {len(t.disagreements)} "
                    f"| {t.incremental_s:.2f} | {t.full_s:.2f} |")  # fmt: skip
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.equivalence", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100_000, help="steps per kernel")
    parser.add_argument("--seed", type=int, default=None, help="default: drawn at random and printed")
    parser.add_argument("--kernel", action="append", help="default: every generation")
    args = parser.parse_args(argv)
    seed = fresh_seed(args.seed)
    tallies = [compare(k, args.steps, seed) for k in (args.kernel or list(KERNELS))]
    print(table(tallies))
    for t in tallies:
        for d in t.disagreements:
            print(f"{t.kernel}: {d}")
    return 1 if any(t.disagreements for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
