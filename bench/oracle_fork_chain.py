"""Time the live oracle on a deep fork chain: mmap, write, N forks (each child forks the next),
then a write in the last child.  Observation after every step reads the processes a step can
change (docs/live-oracle.md, "Observation cost"), so the chain should cost about linear in N.

    sudo .venv/bin/python -m bench.oracle_fork_chain --depths 100 300 --levels L0,L2 L0,L1,L2,L3,L4

Prints one line per (levels, depth): the outcome, wall seconds, steps per second, and the CPU
seconds of the controller (where all observation runs; the workers' forks are not in it, so it
is the figure that shows the observation cost on a loaded machine).  Needs root (L2's
PFNs, L3/L4's BPF); an unavailable level is left out, and the line says which ran.
"""

from __future__ import annotations

import argparse
import time

from rmapfuzz import ops
from rmapfuzz.oracle.oracle import Oracle, parse_levels


def chain(depth: int) -> list[ops.Op]:
    steps: list[ops.Op] = [ops.Mmap(0, 0, 2, "rw"), ops.Write(0, 0)]
    steps += [ops.Fork(pid) for pid in range(depth)]
    steps.append(ops.Write(depth, 0))
    return steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--levels", nargs="+", default=["L0,L2", "L0,L1,L2,L3,L4"])
    args = parser.parse_args(argv)
    for text in args.levels:
        with Oracle(levels=parse_levels(text)) as oracle:
            for depth in args.depths:
                steps = chain(depth)
                t0, c0 = time.perf_counter(), time.process_time()
                outcome = oracle.run(steps, 2)
                seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
                print(
                    f"levels {','.join(oracle.used)}  depth {depth}: {outcome.status} "
                    f"in {seconds:.2f} s ({len(steps) / seconds:.0f} steps/s), controller CPU {cpu:.2f} s"
                    + (f"  {outcome.divergence}" if outcome.divergence else "")
                )
            oracle.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
