"""Two models side by side: the same steps on both, and what differs after each.

A reviewer's question of a patch is "does it change anything?".  :class:`PairRunner` applies every
step to kernel A and kernel B and compares, after it, what a user or the reverse map could
observe, level by level (the live-kernel oracle's levels, :mod:`rmapfuzz.oracle.compare`, with the
model's full view where the live kernel shows less):

* ``result``: the step's answer (``ok``, an errno, ``SEGV``, ``UAF``);
* ``layout``: per live process, the VMAs as ``(start, end, prot)``;
* ``flags``: per VMA, the merge-relevant VmFlags (``ac``, ``dc``, ``wf``) and its anonymous pages;
* ``pages``: which cells share one page, which are swapped out (and which share a swap entry),
  which map the zero page, which ptes are writable;
* ``graph``: the anon_vma graph up to renaming: per VMA its pgoff, flags, anon_vma and chain, per
  chained anon_vma its root, parent and counters;
* ``page-anon``: per present page, the anon_vma its ``mapping`` points to (by the graph's names)
  and its index: the page side of the reverse map;
* ``invariants``: which invariant, if any, the step broke.

The first step at which any compared level differs is a :class:`Difference`; every level that
differs there is recorded, the first of :data:`LEVELS` names it.  When both models break the same
invariant at the same step (or one breaks one and the ``invariants`` level is not compared), the
sequence ends there with nothing to report (:class:`Broken`): a broken model cannot go on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import attrs

from rmapfuzz import ops
from rmapfuzz.invariants import Violation
from rmapfuzz.model.core import KernelCore
from rmapfuzz.model.objects import Page, Pte, SwapSlot
from rmapfuzz.model.syscalls import SyscallMixin
from rmapfuzz.oracle.compare import (
    Graph,
    canonical_names,
    compare_flags,
    compare_graphs,
    compare_layouts,
    graph_text,
    layouts_text,
    model_flags,
    model_graph,
    model_layouts,
    model_live,
)
from rmapfuzz.replay import Runner

LEVELS = ("result", "layout", "flags", "pages", "graph", "page-anon", "invariants")
MAX_CHAIN = 64  # chains are compared whole (the live oracle cuts them where its iterator does)


class PairError(ValueError):
    """A bad level name (one line)."""


def levels_without(ignore: Iterable[str]) -> tuple[str, ...]:
    ignored = set(ignore)
    unknown = sorted(ignored - set(LEVELS))
    if unknown:
        raise PairError(f"unknown level {unknown[0]!r} (levels: {', '.join(LEVELS)})")
    return tuple(level for level in LEVELS if level not in ignored)


@attrs.frozen
class LevelDifference:
    level: str
    a: str  # what kernel A shows, in words
    b: str
    message: str

    def to_json(self) -> dict[str, str]:
        return attrs.asdict(self)


class Difference(Violation):
    """The models differ after step ``step``: every level that differs there, the first naming it."""

    def __init__(self, step: int, found: Sequence[LevelDifference]) -> None:
        first = found[0]
        super().__init__("difference", f"{first.level}: {first.message}", step=step)
        self.found = tuple(found)

    @property
    def level(self) -> str:
        return self.found[0].level

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "level": self.level, "levels": [d.to_json() for d in self.found]}


class Broken(Violation):
    """A model broke an invariant at this step and the comparison shows nothing: both broke the
    same one, or the ``invariants`` level is left out.  The sequence ends, with nothing to report."""


# ---- the model's views at the levels the oracle does not have ----


def page_cells(k: KernelCore, window: int) -> dict[tuple[int, int], str]:
    """Per (pid, page): ``-`` none, ``0`` the zero page, ``pN``/``sN`` the N-th page / swap entry
    by first appearance in (pid, page) order (so sharing is compared, not identities), ``+w`` for a
    writable pte."""
    names: dict[Hashable, str] = {}
    out: dict[tuple[int, int], str] = {}
    for pid in model_live(k):
        ptes = k.mms[pid].ptes
        for n in range(window):
            pte = ptes.get(n)
            if pte is None:
                out[(pid, n)] = "-"
                continue
            if pte.swap is not None:
                key: Hashable = ("swap", id(pte.swap))
                prefix = "s"
            elif pte.page is None:
                out[(pid, n)] = "0"
                continue
            else:
                key, prefix = ("page", id(pte.page)), "p"
            if key not in names:
                names[key] = f"{prefix}{sum(1 for v in names.values() if v[0] == prefix)}"
            out[(pid, n)] = names[key] + ("+w" if pte.writable else "")
    return out


def page_anon(k: KernelCore, window: int, graph: Graph | None = None) -> dict[tuple[int, int], str]:
    """Per present page: ``avN@index``, its mapping named as the graph names anon_vmas (``unlinked``
    for one no VMA's chain holds, ``none`` for no mapping); ``graph``: ``k``'s, if already built."""
    names = canonical_names(model_graph(k, MAX_CHAIN) if graph is None else graph)
    out: dict[tuple[int, int], str] = {}
    for pid in model_live(k):
        ptes = k.mms[pid].ptes
        for n in range(window):
            pte = ptes.get(n)
            if pte is None or pte.page is None or pte.swap is not None:
                continue
            page = pte.page
            av = "none" if page.mapping is None else names.get(page.mapping, "unlinked")
            out[(pid, n)] = f"{av}@{page.index}"
    return out


def _cells_text(cells: dict[tuple[int, int], str], window: int) -> str:
    pids = sorted({pid for pid, _ in cells})
    return "; ".join(f"P{pid} " + " ".join(cells.get((pid, n), ".") for n in range(window)) for pid in pids)


def _compare_cells(
    level: str, a: dict[tuple[int, int], str], b: dict[tuple[int, int], str], window: int
) -> LevelDifference | None:
    if a == b:
        return None
    cell = next(c for c in sorted(set(a) | set(b)) if a.get(c) != b.get(c))
    what = "page sharing, swap or pte writability" if level == "pages" else "a page's anon_vma or index"
    return LevelDifference(level, _cells_text(a, window), _cells_text(b, window),
                           f"P{cell[0]} page {cell[1]}: {what} differs")  # fmt: skip


def _mismatch(level: str, found: tuple[str, str, str] | None) -> LevelDifference | None:
    return None if found is None else LevelDifference(level, found[0], found[1], found[2])


def compare(
    a: KernelCore,
    b: KernelCore,
    results: tuple[str, str],
    broken: tuple[Sequence[Violation], Sequence[Violation]],
    levels: Sequence[str],
    window: int,
) -> list[LevelDifference]:
    """Every level of ``levels`` at which the two models differ after a step."""
    out: list[LevelDifference] = []
    graphs = (model_graph(a, MAX_CHAIN), model_graph(b, MAX_CHAIN)) if {"graph", "page-anon"} & set(levels) else None
    for level in levels:
        found: LevelDifference | None = None
        if level == "result" and results[0] != results[1]:
            found = LevelDifference(
                level, results[0], results[1], f"the step returned {results[0]} on A, {results[1]} on B"
            )
        elif level == "layout":
            found = _mismatch(level, compare_layouts(model_layouts(a), model_layouts(b)))
        elif level == "flags":
            found = _mismatch(level, compare_flags(model_flags(a, False), model_flags(b, False)))
        elif level == "pages":
            found = _compare_cells(level, page_cells(a, window), page_cells(b, window), window)
        elif level == "graph":
            assert graphs is not None
            found = _mismatch(level, compare_graphs(*graphs))
        elif level == "page-anon":
            assert graphs is not None
            found = _compare_cells(level, page_anon(a, window, graphs[0]), page_anon(b, window, graphs[1]), window)
        elif level == "invariants":
            first = [v[0].invariant if v else "clean" for v in broken]
            if first[0] != first[1]:
                found = LevelDifference(level, _broken_text(broken[0]), _broken_text(broken[1]),
                                        f"{first[0]} on A, {first[1]} on B")  # fmt: skip
        if found is not None:
            out.append(found)
    return out


def _broken_text(found: Sequence[Violation]) -> str:
    return str(found[0]) if found else "clean"


class PairRunner:
    """A Runner for two kernels: the steps are decoded against A's state (``kernel``) and applied to
    both; a step after which they differ returns a :class:`Difference`."""

    def __init__(
        self,
        a: str | type[SyscallMixin],
        b: str | type[SyscallMixin],
        window: int = 8,
        invariants: Iterable[str] | None = None,
        coverage: Counter[str] | None = None,
        levels: Sequence[str] = LEVELS,
    ) -> None:
        names = None if invariants is None else list(invariants)
        self.a = Runner(a, window, names, coverage=coverage)
        self.b = Runner(b, window, names)
        self.kernel = self.a.kernel
        self.window = window
        self.levels = tuple(levels)
        self.index = 0
        self.results = ("", "")  # the last step's result on A and on B

    def step(self, op: ops.Op) -> tuple[str, list[Violation]]:
        faults = (_fault_view(self.a.kernel, op), _fault_view(self.b.kernel, op))
        ra, fa = self.a.step(op)
        rb, fb = self.b.step(op)
        self.results = (ra, rb)
        index, self.index = self.index, self.index + 1
        if not fa and not fb and ra == rb and _did_nothing(op, ra, faults, self.a.kernel, self.b.kernel):
            return ra, []  # both states are as after the last step, when they agreed
        found = compare(self.a.kernel, self.b.kernel, (ra, rb), (fa, fb), self.levels, self.window)
        if found:
            return ra, [Difference(index, found)]
        if fa or fb:
            who = "both models" if fa and fb else ("A" if fa else "B")
            return ra, [Broken((fa or fb)[0].invariant, f"{who} broke it", step=index)]
        return ra, []


FaultView = tuple[Pte | None, Page | None, SwapSlot | None, bool] | None


def _fault_view(k: KernelCore, op: ops.Op) -> FaultView:
    """What a read or write can change: the pte at its address, as objects."""
    if not isinstance(op, ops.Read | ops.Write):
        return None
    mm = k.mms.get(op.pid)
    if mm is None or not mm.alive:
        return None
    pte = mm.ptes.get(op.addr)
    return (pte, None, None, False) if pte is None else (pte, pte.page, pte.swap, pte.writable)


def _same(a: FaultView, b: FaultView) -> bool:
    return a is not None and b is not None and all(x is y for x, y in zip(a[:3], b[:3], strict=True)) and a[3] == b[3]


def _did_nothing(op: ops.Op, result: str, before: tuple[FaultView, FaultView], a: KernelCore, b: KernelCore) -> bool:
    """A step that cannot have changed either model: an allocation failure armed, a denied fault,
    a fault that left its pte as it was in both (a read of a mapped page, a write to a writable one)."""
    if isinstance(op, ops.FailAlloc) or result == "SEGV":
        return True
    if before[0] is None or before[1] is None:
        return False
    return _same(before[0], _fault_view(a, op)) and _same(before[1], _fault_view(b, op))


def pair_replay(
    steps: Sequence[ops.Op],
    a: str | type[SyscallMixin],
    b: str | type[SyscallMixin],
    window: int = 8,
    levels: Sequence[str] = LEVELS,
    invariants: Iterable[str] | None = None,
) -> Difference | None:
    """The first difference of the two models on ``steps`` (None: they agree until the end, or
    until both break the same invariant)."""
    runner = PairRunner(a, b, window, invariants, levels=levels)
    for op in steps:
        _, found = runner.step(op)
        if found:
            return found[0] if isinstance(found[0], Difference) else None
    return None


def states_text(k: KernelCore, window: int) -> dict[str, Any]:
    """One model's whole observable state, for a report: layout, pages, graph, page side."""
    return {
        "layout": layouts_text(model_layouts(k)),
        "pages": _cells_text(page_cells(k, window), window),
        "graph": graph_text(model_graph(k, MAX_CHAIN)),
        "page-anon": _cells_text(page_anon(k, window), window),
    }
