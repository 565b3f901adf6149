"""The judge's side of the model's tracepoints: what a step did, as the transition invariants judge it.

A :class:`Probe` is the :class:`rmapfuzz.model.trace.Tracer` a :class:`rmapfuzz.replay.Runner`
installs in the kernel it judges.  Around each step it keeps a :class:`StepRecord`: the op and its
answer, whether the acting process existed, its pages before a range op or a fork and its VMA
bounds before an mremap (``syscall-effect``), whether an injected
allocation failure fired and what is left of an armed one (``fail-injection``), every merge
takeover with both chains as they were (``merge-superset``) and every fork-time reuse with what
the structure said at that moment (``reuse-safe``).  With ``coverage`` set it also counts the
coverage points the step reached (:mod:`rmapfuzz.coverage`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs

from rmapfuzz import ops
from rmapfuzz.model.core import KernelCore
from rmapfuzz.model.objects import VM_DONTCOPY, VM_PROT_MASK, VM_WIPEONFORK, AnonVma, Mm, Vma
from rmapfuzz.model.trace import Tracer

# What a process sees of one page: the flags of the VMA there and its offset (vm_pgoff - vm_start:
# the linear page index at an address is offset + address), None when unmapped, the offset None
# while the VMA has no anon_vma (whose pgoff nothing depends on and copy_vma() may renumber); and
# the pte (page, swap slot) or None.
PageView = tuple[tuple[int, int | None] | None, tuple[Any, Any] | None]
VIEW_FLAGS = VM_PROT_MASK | VM_DONTCOPY | VM_WIPEONFORK
_UNMAPPED: PageView = (None, None)


def page_views(mm: Mm) -> dict[int, PageView]:
    """Every page of ``mm`` that a VMA or a pte covers, as the process sees it (taken by the
    probe before a range op, for syscall-effect)."""
    views: dict[int, PageView] = {}
    for v in mm.vmas:
        seen = ((v.vm_flags & VIEW_FLAGS, None if v.anon_vma is None else v.vm_pgoff - v.vm_start), None)
        for addr in range(v.vm_start, v.vm_end):
            views[addr] = seen
    for addr, pte in mm.ptes.items():
        views[addr] = (views.get(addr, _UNMAPPED)[0], (pte.page, pte.swap))
    return views


@attrs.frozen
class Takeover:
    """A VMA that took over another's range or pages, with both chains as the merge left them."""

    where: str
    taker: Vma
    taken_name: str
    taken_chain: tuple[AnonVma, ...]
    taker_chain: tuple[AnonVma, ...]


@attrs.frozen
class Reuse:
    """A fork-time reuse: ``vma_name`` was given ``anon_vma``; ``active`` are the VMAs that had it as
    their anon_vma at that moment, ``children`` its children with a non-empty tree (+1 for a linked
    root, whose parent is itself)."""

    vma_name: str
    anon_vma: AnonVma
    active: tuple[str, ...]
    children: int


@attrs.define
class StepRecord:
    """One step as the transition invariants judge it."""

    op: ops.Op
    result: str = ""
    alive: bool = True  # the acting process existed when the step began (fail_alloc has none)
    before: dict[int, PageView] | None = None  # the acting process's pages before a range op or a fork
    spans: tuple[tuple[int, int], ...] | None = None  # its VMAs' [vm_start, vm_end) before an mremap
    child: int | None = None  # the pid a fork's child gets (the kernel's next pid before the step)
    alloc_failed: bool = False  # an injected allocation failure fired during the step
    armed: int | None = None  # allocations left before an armed failure is due, after the step
    takeovers: list[Takeover] = attrs.field(factory=list)
    reuses: list[Reuse] = attrs.field(factory=list)


RANGE_OPS = (ops.Mmap, ops.Munmap, ops.Mprotect, ops.Madvise, ops.Mremap)
_VIEWED_OPS = (*RANGE_OPS, ops.Fork)  # the ops syscall-effect judges by the pages before them


def _chain(vma: Vma) -> tuple[AnonVma, ...]:
    return tuple(avc.anon_vma for avc in vma.anon_vma_chain)


class Probe(Tracer):
    """Records each step for the judge (and, with ``coverage``, the coverage points it reached)."""

    __slots__ = ("_moving", "armed", "coverage", "kernel", "record", "views")

    def __init__(self, views: bool = True, coverage: Counter[str] | None = None) -> None:
        self.kernel: KernelCore | None = None  # the kernel it is installed in (set by attach)
        self.views = views  # take before-views of range ops (only syscall-effect reads them)
        self.coverage = coverage
        self.armed: int | None = None
        self.record = StepRecord(ops.Exit(0))
        self._moving: dict[int, tuple[str, tuple[AnonVma, ...]]] = {}

    def attach(self, kernel: KernelCore) -> None:
        self.kernel = kernel
        kernel.trace = self

    def begin(self, op: ops.Op, mm: Mm | None) -> None:
        """A step starts: ``mm`` is the acting process (None for fail_alloc or a pid that is gone)."""
        if isinstance(op, ops.FailAlloc):
            self.armed = op.nth
        if self.views and mm is not None and isinstance(op, _VIEWED_OPS):
            # the pages show holes; whether a range lay inside one VMA needs the bounds (mremap's EFAULT)
            spans = tuple((v.vm_start, v.vm_end) for v in mm.vmas) if isinstance(op, ops.Mremap) else None
            child = self.kernel.next_pid if isinstance(op, ops.Fork) and self.kernel is not None else None
            self.record = StepRecord(op, before=page_views(mm), spans=spans, child=child)
        else:
            self.record = StepRecord(op, alive=mm is not None)
        self._moving.clear()

    def end(self, result: str) -> StepRecord:
        record = self.record
        record.result = result
        record.armed = self.armed
        return record

    # ---- the tracepoints ----

    def cover(self, point: str) -> None:
        if self.coverage is not None:
            self.coverage[point] += 1

    def alloc(self, failed: bool) -> None:
        if self.armed is not None:
            self.armed -= 1
        if failed:
            self.armed = None
            self.record.alloc_failed = True

    def takeover(self, where: str, taker: Vma, taken: Vma) -> None:
        self.record.takeovers.append(Takeover(where, taker, taken.name, _chain(taken), _chain(taker)))

    def moving(self, vma: Vma) -> None:
        self._moving[id(vma)] = (vma.name, _chain(vma))

    def moved(self, vma: Vma, new_vma: Vma) -> None:
        name, chain = self._moving.pop(id(vma))
        self.record.takeovers.append(Takeover("move_vma", new_vma, name, chain, _chain(new_vma)))

    def reuse(self, vma: Vma, anon_vma: AnonVma) -> None:
        active = tuple(
            avc.vma.name
            for avc in anon_vma.head
            if avc.vma.anon_vma is anon_vma and avc.vma is not vma and not avc.vma.freed
        )
        assert self.kernel is not None
        self.record.reuses.append(Reuse(vma.name, anon_vma, active, _linked_children(self.kernel, anon_vma)))


def _linked_children(kernel: KernelCore, av: AnonVma) -> int:
    """Children of ``av`` whose tree is not empty; a linked root counts itself (parent == self)."""
    return sum(1 for y in kernel.anon_vmas if y.parent is av and y.head and not y.freed)
