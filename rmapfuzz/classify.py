"""Which catalogued bug a failing sequence shows.

A sequence shows bug X on a kernel that carries X if it goes through X's kernel path (one of the
coverage points :data:`rmapfuzz.kernels.BUG_PATHS` names for X), breaks an invariant, and no longer
breaks it there once X's fix alone is put on that kernel (:func:`rmapfuzz.kernels.with_fix`): it
replays clean, or, when the same steps also show a second bug, fails another way.  That works on
every kernel that carries X, a composition or a user's overlay included.

The path matters because some fixes change more than their bug's own path: 965f55dea0e3 (bug M's)
refuses whole classes of merges, so on 2.6.34-rc3 it also makes bug A's and bug B's sequences
clean, by never reaching the import A gets wrong or the borrowing B gets wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from rmapfuzz.kernels import BUG_PATHS, Kernel, resolve, with_fix
from rmapfuzz.ops import Op
from rmapfuzz.replay import Runner, replay


def reached(kernel: Kernel, steps: Sequence[Op], window: int = 8) -> Counter[str]:
    """The coverage points a replay of ``steps`` on ``kernel`` reaches, up to its first violation."""
    hits: Counter[str] = Counter()
    runner = Runner(kernel, window, coverage=hits)
    for op in steps:
        if runner.step(op)[1]:
            break
    return hits


def classify(kernel: str | Kernel, steps: Sequence[Op], window: int = 8) -> list[str]:
    """The catalogued bugs a failing sequence on ``kernel`` shows: those it carries whose path it
    reaches and whose fix alone, put on ``kernel``, makes its failure go away: the replay is clean,
    or fails otherwise (another invariant, or later) because a second bug is in the same steps."""
    cls = resolve(kernel) if isinstance(kernel, str) else kernel
    if not cls.bugs:
        return []
    first = replay(steps, cls, window).violation
    if first is None:
        return []
    hits = reached(cls, steps, window)
    shown = []
    for bug in cls.bugs:
        if not any(hits[point] for point in BUG_PATHS[bug]):
            continue
        fixed = replay(steps, with_fix(cls, bug), window).violation
        if fixed is None or (fixed.invariant, fixed.step) != (first.invariant, first.step):
            shown.append(bug)
    return shown
