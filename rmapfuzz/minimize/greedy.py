"""Replay-based reduction of a failing step sequence, after (or instead of) Hypothesis' shrinking.

Hypothesis shrinks the choices behind a run; this works on the ops themselves, which it can do
much faster and more aggressively because the model is deterministic and a replay costs well under
a millisecond: delete chunks and single steps (deleting a fork deletes its child's steps and
renumbers the later pids, as pids are handed out in fork order), then lower each step's arguments.
A candidate is kept if it still breaks the same invariant at a step with the same op.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import attrs

from rmapfuzz import ops
from rmapfuzz.corpus import step_shape
from rmapfuzz.replay import Runner, replay

Predicate = Callable[[list[ops.Op]], bool]


def failure_key(
    kernel: str, window: int, steps: Sequence[ops.Op], invariants: Sequence[str] | None
) -> tuple[str, str] | None:
    """(invariant, op of the failing step) for a failing sequence, else None."""
    verdict = replay(steps, kernel, window, invariants)
    v = verdict.violation
    if v is None or v.step is None:
        return None
    return v.invariant, verdict.steps[v.step].op


def same_failure(kernel: str, window: int, key: tuple[str, str], invariants: Sequence[str] | None) -> Predicate:
    def still_fails(steps: list[ops.Op]) -> bool:
        return failure_key(kernel, window, steps, invariants) == key

    return still_fails


def _pid_of(op: ops.Op) -> int | None:
    return None if isinstance(op, ops.FailAlloc) else op.pid


def without(steps: Sequence[ops.Op], drop: set[int], fold: bool = False) -> list[ops.Op]:
    """``steps`` minus the indices in ``drop``, with pids renumbered in fork order.

    Pid numbers are assigned by successful forks in order, so removing a fork removes every
    step of the process it created (or, with ``fold``, hands them to the parent) and shifts the
    later pids down.  Forks are assumed to succeed (a candidate where one does not simply fails
    the check).
    """
    new_of: dict[int, int] = {0: 0}
    old_next, new_next = 1, 1
    out: list[ops.Op] = []
    for i, op in enumerate(steps):
        pid = _pid_of(op)
        keep = i not in drop and (pid is None or pid in new_of)
        if isinstance(op, ops.Fork):
            child = old_next
            old_next += 1
            if keep:
                new_of[child] = new_next
                new_next += 1
            elif fold and pid in new_of:
                new_of[child] = new_of[pid]
        if keep:
            out.append(op if pid is None else attrs.evolve(op, pid=new_of[pid]))  # type: ignore[arg-type]
    return out


def _deletions(n: int) -> Iterator[set[int]]:
    """Chunks from large to single steps, last steps first (the end matters least)."""
    size = max(n // 2, 1)
    while True:
        for start in range(n - size, -1, -size):
            yield set(range(start, min(start + size, n)))
        if size == 1:
            return
        size //= 2


def _simpler_args(op: ops.Op) -> Iterator[ops.Op]:
    """Smaller versions of one step: fewer pages, lower addresses, simpler flags."""
    if isinstance(op, (ops.Read, ops.Write)):
        if op.addr > 0:
            yield attrs.evolve(op, addr=op.addr - 1)
        if isinstance(op, ops.Write):
            yield ops.Read(op.pid, op.addr)
        return
    if isinstance(op, (ops.Fork, ops.Exit, ops.FailAlloc)):
        return
    if op.pages > 1:
        yield attrs.evolve(op, pages=1)
        yield attrs.evolve(op, pages=op.pages - 1)
    if op.start > 0 and isinstance(op, ops.Mremap) and "fixed" not in op.flags:
        yield attrs.evolve(op, start=op.start - 1, new_start=op.new_start - 1)  # an in-place resize stays in place
    elif op.start > 0:
        yield attrs.evolve(op, start=op.start - 1)
    if isinstance(op, (ops.Mmap, ops.Mprotect)) and op.prot not in ("rw",):
        yield attrs.evolve(op, prot="rw")
    if isinstance(op, ops.Mmap) and op.flags:
        yield attrs.evolve(op, flags=())
    if isinstance(op, ops.Mremap):
        if op.new_pages > 1:
            yield attrs.evolve(op, new_pages=op.new_pages - 1)
        if "fixed" in op.flags and op.new_start > 0:
            yield attrs.evolve(op, new_start=op.new_start - 1)


class _OutOfTime(Exception):
    """The deadline passed: the reduction stops where it is."""


def _bounded(still_fails: Predicate, deadline: float | None) -> Predicate:
    """``still_fails`` until ``deadline`` (time.monotonic), then :class:`_OutOfTime`, so that no
    more candidates are even built (building one costs as much as the sequence is long)."""
    if deadline is None:
        return still_fails

    def bounded(steps: list[ops.Op]) -> bool:
        if time.monotonic() >= deadline:
            raise _OutOfTime
        return still_fails(steps)

    return bounded


def minimize(
    steps: Sequence[ops.Op], still_fails: Predicate, max_rounds: int = 50, deadline: float | None = None
) -> list[ops.Op]:
    """Greedy reduction to a fixpoint: no single deletion or argument lowering keeps the failure
    (or, past ``deadline``, the shortest sequence found so far)."""
    best = list(steps)
    try:
        return _reduce(best, _bounded(still_fails, deadline), max_rounds)
    except _OutOfTime as stop:
        return stop.args[0] if stop.args else best


def _reduce(best: list[ops.Op], still_fails: Predicate, max_rounds: int) -> list[ops.Op]:
    for _ in range(max_rounds):
        changed = False
        for drop in _deletions(len(best)):
            if max(drop) >= len(best):
                continue
            candidate = without(best, drop)
            if len(candidate) < len(best) and _keeps(still_fails, candidate, best):
                best, changed = candidate, True
                break
        if changed:
            continue
        for i, op in enumerate(best):
            if isinstance(op, ops.Fork):
                candidate = without(best, {i}, fold=True)
                if _keeps(still_fails, candidate, best):
                    best, changed = candidate, True
                    break
        if changed:
            continue
        for i, op in enumerate(best):
            for simpler in _simpler_args(op):
                candidate = [*best[:i], simpler, *best[i + 1 :]]
                if _keeps(still_fails, candidate, best):
                    best, changed = candidate, True
                    break
            if changed:
                break
        if not changed:
            return best
    return best


def _keeps(still_fails: Predicate, candidate: list[ops.Op], best: list[ops.Op]) -> bool:
    """``still_fails(candidate)``; out of time, the stop carries ``best``, the shortest so far."""
    try:
        return still_fails(candidate)
    except _OutOfTime:
        raise _OutOfTime(best) from None


def minimize_failure(
    kernel: str,
    window: int,
    steps: Sequence[ops.Op],
    invariants: Sequence[str] | None = None,
    bugs: Sequence[str] = (),
) -> list[ops.Op]:
    """Minimise a failing sequence for the failure it shows now; a clean one is returned as it is.
    With ``bugs`` (the catalogued bugs it was classified as), every candidate must still show them:
    two bugs can break the same invariant at the same op (D and E on 3.19-rc4 both leave a degree
    wrong after an mprotect), and a reduction free to slip from one to the other loses the find."""
    prefix = list(steps)
    verdict = replay(prefix, kernel, window, invariants)
    if verdict.violation is None or verdict.violation.step is None:
        return prefix
    prefix = prefix[: verdict.violation.step + 1]
    key = (verdict.violation.invariant, prefix[-1].op)
    still_fails = same_failure(kernel, window, key, invariants)
    if bugs:
        still_fails = _and(still_fails, shows_bugs(kernel, window, bugs))
    return minimize(prefix, still_fails)


def shows_bugs(kernel: str, window: int, bugs: Sequence[str]) -> Predicate:
    """Whether a failing candidate still shows every one of ``bugs`` (rmapfuzz.classify)."""
    from rmapfuzz.classify import classify

    wanted = set(bugs)

    def shows(steps: list[ops.Op]) -> bool:
        return wanted <= set(classify(kernel, steps, window))

    return shows


def _and(first: Predicate, second: Predicate) -> Predicate:
    return lambda steps: first(steps) and second(steps)


# ---- the failure a reduction must keep ----


def first_violations(kernel: str, window: int, steps: Sequence[ops.Op]) -> tuple[int, list[str]] | None:
    """(index, invariants) of the first violating step of ``steps`` judged by the whole catalogue."""
    runner = Runner(kernel, window)
    for i, op in enumerate(steps):
        _result, found = runner.step(op)
        if found:
            return i, [v.invariant for v in found]
    return None


def reproduces(kernel: str, window: int, invariant: str, shape: str | None) -> Predicate:
    """The predicate a candidate must meet: its first violating step is its last step, breaks
    ``invariant`` (among the invariants broken there) and, if ``shape`` is given, has that shape
    (op name, plus mremap flags / madvise advice, as in a reproducer's signature)."""

    def still_fails(steps: list[ops.Op]) -> bool:
        first = first_violations(kernel, window, steps)
        if first is None or first[0] != len(steps) - 1 or invariant not in first[1]:
            return False
        return shape is None or step_shape(steps[-1]) == shape

    return still_fails


# ---- greedy extensions: merging neighbours, renaming processes ----

_RangeOp = ops.Mmap | ops.Munmap | ops.Mprotect | ops.Madvise


def _merged(a: ops.Op, b: ops.Op) -> ops.Op | None:
    """One op over the union of two adjacent same-kind range ops (same pid, prot, advice), if the
    ranges touch or overlap."""
    if type(a) is not type(b) or not isinstance(a, (ops.Mmap, ops.Munmap, ops.Mprotect, ops.Madvise)):
        return None
    assert isinstance(b, (ops.Mmap, ops.Munmap, ops.Mprotect, ops.Madvise))
    if a.pid != b.pid or attrs.evolve(a, start=b.start, pages=b.pages) != b:
        return None
    lo, hi = min(a.start, b.start), max(a.start + a.pages, b.start + b.pages)
    if hi - lo > a.pages + b.pages:  # a gap between them
        return None
    return attrs.evolve(a, start=lo, pages=hi - lo)


def _pids(steps: Sequence[ops.Op]) -> list[int]:
    return [p for p in map(_pid_of, steps) if p is not None]


def _swapped(steps: Sequence[ops.Op], a: int, b: int) -> list[ops.Op]:
    """Every step of process ``a`` given to ``b`` and back (forks keep their order, so the pid a
    fork creates is unchanged: the two processes swap roles)."""
    out: list[ops.Op] = []
    for op in steps:
        pid = _pid_of(op)
        if pid in (a, b):
            op = attrs.evolve(op, pid=b if pid == a else a)  # type: ignore[arg-type]
        out.append(op)
    return out


def _extra_candidates(steps: list[ops.Op]) -> Iterator[list[ops.Op]]:
    """Candidates the basic reducer does not try: adjacent merges, then process swaps that lower
    the pid sequence."""
    for i in range(len(steps) - 1):
        merged = _merged(steps[i], steps[i + 1])
        if merged is not None:
            yield [*steps[:i], merged, *steps[i + 2 :]]
    pids = sorted(set(_pids(steps)))
    for x in range(len(pids)):
        for y in range(x + 1, len(pids)):
            candidate = _swapped(steps, pids[x], pids[y])
            if _pids(candidate) < _pids(steps):
                yield candidate


def minimize_more(
    steps: Sequence[ops.Op], still_fails: Predicate, max_rounds: int = 50, deadline: float | None = None
) -> list[ops.Op]:
    """:func:`minimize`, then merges and process swaps, repeated to a joint fixpoint (or ``deadline``)."""
    best = minimize(steps, still_fails, max_rounds, deadline)
    bounded = _bounded(still_fails, deadline)
    for _ in range(max_rounds):
        try:
            better = next((c for c in _extra_candidates(best) if bounded(c)), None)
        except _OutOfTime:
            return best
        if better is None:
            return best
        best = minimize(better, still_fails, max_rounds, deadline)
    return best
