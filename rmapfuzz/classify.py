"""Which catalogued bug a failing sequence shows.

A sequence shows bug X on a kernel that carries X if it breaks an invariant there and replays clean
once X's fix alone is applied to that kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

from rmapfuzz.kernels import FIXED_BY
from rmapfuzz.ops import Op
from rmapfuzz.replay import replay


def classify(kernel: str, steps: Sequence[Op], window: int = 8) -> list[str]:
    """The catalogued bugs a failing sequence on ``kernel`` shows: those whose fix alone, applied to
    ``kernel``, makes it replay clean."""
    found = []
    for bug, (buggy, fixed) in FIXED_BY.items():
        if buggy == kernel and replay(steps, fixed, window).clean:
            found.append(bug)
    return found
