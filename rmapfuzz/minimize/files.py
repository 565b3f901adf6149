"""``rmapfuzz minimize`` on reproducer files: greedy reduction, window reduction, the optional proof,
and the ``minimal`` record written back."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from rmapfuzz import __version__, ops
from rmapfuzz.corpus import Reproducer, dumps, step_shape, write_atomic
from rmapfuzz.minimize.greedy import first_violations, minimize_more, reproduces
from rmapfuzz.minimize.proof import SearchResult, exhaustive, pages_spanned, pages_used
from rmapfuzz.replay import replay


@attrs.define
class Outcome:
    """What ``rmapfuzz minimize`` did to one reproducer."""

    rep: Reproducer  # the (possibly shorter) reproducer, with its ``minimal`` record
    before: int  # steps before
    greedy: int  # steps after the greedy reducer
    search: SearchResult | None


def minimal_record(status: str, method: str, bound: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return {
        "status": status,
        "method": method,
        "bound": bound,
        "reason": reason,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": f"rmapfuzz {__version__}",
    }


def _violation(kernel: str, window: int, steps: Sequence[ops.Op], invariant: str) -> dict[str, Any]:
    verdict = replay(steps, kernel, window)
    found = next(v for v in verdict.violations if v.invariant == invariant)
    return {"invariant": invariant, "step": len(steps) - 1, "message": found.message}


def span_search(
    kernel: str, window: int, steps: Sequence[ops.Op], invariant: str, budget: float, shape: str
) -> dict[str, Any] | None:
    """The fallback when the search over the whole window is out of reach: the same search, once
    for every position of a range of pages as wide as the one ``steps`` name, over sequences that
    name no page outside it.  None when the steps span the whole window (nothing to restrict).

    ``status: proved`` means: no sequence shorter than ``steps`` whose pages all lie within some
    ``pages`` consecutive pages of the window breaks ``invariant`` first (same processes and
    fail_alloc bound as the full search)."""
    lo, hi = pages_spanned(steps)
    width = max(hi - lo, 1)
    if width >= window:
        return None
    t0 = time.monotonic()
    totals = {"sequences": 0, "states": 0, "model_errors": 0}
    out: dict[str, Any] = {"pages": width, "positions": window - width + 1, "length": len(steps) - 1}
    status, reason = "proved", None
    for start in range(window - width + 1):
        left = budget - (time.monotonic() - t0)
        result = exhaustive(
            kernel, window, steps, invariant, budget=max(left, 0.001), shape=shape, pages=(start, start + width)
        )
        for key in totals:
            totals[key] += result.bound["stats"][key]
        if result.witness is not None:
            w = result.witness
            status = "not proved"
            reason = (
                f"a {len(w)}-step sequence over pages {start}..{start + width - 1} breaks {invariant} with a "
                f"{step_shape(w[-1])} step: {'; '.join(ops.describe(op) for op in w)}"
            )
            break
        if result.status != "proved":
            status, reason = "not proved", f"pages {start}..{start + width - 1}: {result.reason}"
            break
    out.update(status=status, reason=reason, stats=totals, seconds=round(time.monotonic() - t0, 3))
    return out


def minimize_reproducer(
    rep: Reproducer,
    exhaustive_search: bool = False,
    budget: float = 300.0,
    max_steps: int | None = None,
    window: int | None = None,
) -> Outcome:
    """Shrink ``rep`` greedily (same invariant, same failing-step shape), reduce its window to the
    pages its steps name (or set it to ``window``), then, if asked, prove the result minimal over
    that window or replace it by the shortest reproducer of the same shape the search finds.

    Raises ValueError when the file records no violation or no longer reproduces it, or when
    ``window`` is too small for the steps.
    """
    budget_given = budget
    if rep.kind == "difference":
        why = "a difference entry is reduced by `rmapfuzz diff` when found; minimize proves violations"
        raise ValueError(f"{rep.name}: {why}")
    invariant = rep.invariant
    index = rep.failing_step
    if invariant is None or index is None or rep.kind != "violation":
        raise ValueError(f"{rep.name}: records no violation to minimise")
    steps = rep.steps[: index + 1]
    first = first_violations(rep.kernel, rep.window, steps)
    if first is None or first[0] != index or invariant not in first[1]:
        raise ValueError(f"{rep.name}: no longer breaks {invariant} first at step {index} on {rep.kernel}")
    shape = step_shape(steps[-1])
    started = time.monotonic()
    best = minimize_more(steps, reproduces(rep.kernel, rep.window, invariant, shape), deadline=started + budget)
    greedy_len = len(best)
    cut_short = time.monotonic() >= started + budget  # the budget bounds the greedy phase too
    budget = max(budget - (time.monotonic() - started), 0.001)  # the search gets what is left
    fit = max(pages_used(best), 1)
    if window is not None and window < fit:
        raise ValueError(f"{rep.name}: a window of {window} pages is too small, the steps name page {fit - 1}")
    new_window = fit if window is None else window
    # The model never reads the window size (it only bounds the pages a step may name), so the
    # replay in the new window is the same; checked anyway.
    if new_window != rep.window and not reproduces(rep.kernel, new_window, invariant, shape)(best):
        new_window = rep.window
    search: SearchResult | None = None
    if exhaustive_search:
        search = exhaustive(rep.kernel, new_window, best, invariant, budget=budget, max_steps=max_steps, shape=shape)
        bound = dict(search.bound)
        if new_window != rep.window:
            bound["window_from"] = rep.window
        if search.witness is not None and not search.same_shape:
            # a shorter sequence breaks the invariant through another kind of step (often another
            # bug): the file keeps its steps and its signature, and is recorded as not minimal
            w = search.witness
            m = len(w)
            if search.shape_complete:
                tail = f"no {m}-step sequence breaks it with a {shape} step"
                if m == len(best) - 1:
                    tail += f": the reproducer is minimal among those whose failing step is a {shape} step"
            else:
                tail = f"whether a {m}-step sequence breaks it with a {shape} step is open: {search.reason}"
            record = minimal_record(
                "not proved",
                "exhaustive",
                bound,
                f"not minimal for {invariant}: a {m}-step sequence breaks it with a {step_shape(w[-1])} step "
                f"(kept the {shape} reproducer): {'; '.join(ops.describe(op) for op in w)}; {tail}",
            )
        elif search.witness is not None:
            best = search.witness
            record = minimal_record("proved", "exhaustive", {**bound, "length": len(best) - 1}, None)
        else:
            status = "proved" if search.status == "proved" else "not proved"
            record = minimal_record(status, "exhaustive", bound, search.reason)
            if status == "not proved" and max_steps is None and "--max-steps" not in (search.reason or ""):
                span = span_search(rep.kernel, new_window, best, invariant, budget, shape)
                if span is not None:
                    record["span"] = span
    else:
        bound = {"length": len(best), "window": new_window}
        if new_window != rep.window:
            bound["window_from"] = rep.window
        why = (
            f"the budget ({budget_given:g} s) ran out during the greedy reduction: a shorter sequence may "
            "be one deletion away"
            if cut_short
            else "greedy fixpoint: no chunk deletion, fork fold, argument lowering, merge of adjacent ops or "
            "process swap keeps the failure; shorter sequences were not searched"
        )
        record = minimal_record("not proved", "greedy", bound, why)
    violation = rep.violation if best == rep.steps else _violation(rep.kernel, new_window, best, invariant)
    new = Reproducer(
        kernel=rep.kernel,
        window=new_window,
        steps=list(best),
        violation=violation,
        found=rep.found,
        kind=rep.kind,
        minimal=record,
        path=rep.path,
    )
    return Outcome(new, len(rep.steps), greedy_len, search)


def write_reproducer(rep: Reproducer) -> None:
    """Replace ``rep.path`` atomically with ``rep``."""
    assert rep.path is not None
    write_atomic(Path(rep.path), dumps(rep))
