"""What each known scenario reports on each kernel model: a markdown table.

    python -m bench.scenarios

The scenarios are the ones docs/model.md#the-bug-catalogue gives for bugs A and B, their variants, bug S
(swap-in across a fork) and bug M (the 2.6.34-era mremap hole).  This is documentation, not a
search: nothing here feeds the fuzzer.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rmapfuzz import ops
from rmapfuzz.kernels import KERNELS
from rmapfuzz.replay import replay

FIXED = ("maymove", "fixed")
GROUND_TRUTH = ("merge-superset", "no-dangling", "rmap-complete")

SCENARIOS: dict[str, list[ops.Op]] = {
    "A (case 7)": [
        ops.Mmap(0, 0, 3, "rw"),
        ops.Mprotect(0, 1, 1, "rwx"),
        ops.Write(0, 2),
        ops.Mprotect(0, 2, 1, "rwx"),
    ],
    "A (case 6)": [ops.Mmap(0, 0, 3, "rw"), ops.Mprotect(0, 1, 1, "rwx"), ops.Write(0, 1), ops.Mprotect(0, 1, 1, "rw")],
    "A (case 5)": [
        ops.Mmap(0, 0, 3, "rw"),
        ops.Mprotect(0, 0, 1, "rwx"),
        ops.Write(0, 1),
        ops.Mprotect(0, 1, 1, "rwx"),
    ],
    "B": [
        ops.Mmap(0, 0, 3, "rw"),
        ops.Mprotect(0, 0, 1, "rwx"),
        ops.Write(0, 1),
        ops.Fork(0),
        ops.Write(1, 0),
        ops.Mprotect(1, 0, 1, "rw"),
        ops.Exit(0),
    ],
    "S": [
        ops.Mmap(0, 0, 1, "rw"),
        ops.Write(0, 0),
        ops.Fork(0),
        ops.Madvise(0, 0, 1, "pageout"),
        ops.Read(1, 0),
        ops.Read(0, 0),
    ],
    "M": [
        ops.Mmap(0, 2, 1, "rw"),
        ops.Write(0, 2),
        ops.Mremap(0, 2, 1, 5, 1, FIXED),
        ops.Mmap(0, 1, 1, "rw"),
        ops.Mremap(0, 5, 1, 2, 1, FIXED),
    ],
}


def verdict(steps: Sequence[ops.Op], kernel: str, invariants: Sequence[str] | None) -> str:
    v = replay(steps, kernel, 8, invariants).violation
    return "clean" if v is None else f"{v.invariant} @{v.step}"


def table() -> list[str]:
    names = list(SCENARIOS)
    lines = [
        "Each cell: the first invariant broken and its 0-based step, with all invariants / with the ground "
        "truth only (" + ", ".join(GROUND_TRUTH) + ").",
        "",
        "| kernel | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for kernel in KERNELS:
        cells = [
            f"{verdict(SCENARIOS[n], kernel, None)} / {verdict(SCENARIOS[n], kernel, GROUND_TRUTH)}" for n in names
        ]
        lines.append(f"| {kernel} | " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    print("\n".join(table()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
