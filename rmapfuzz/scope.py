"""What the state invariants look at after a step: all of the state, or only what the step touched.

A :class:`Scope` lists the objects the state invariants judge (VMAs, processes, anon_vmas, mapped
ptes, pages, swap slots) and answers the counts the ``counters`` invariant compares with.
:func:`full` takes everything, in the state's own order; the findings then come out exactly as if
each invariant walked the whole state.

The incremental judge (:mod:`rmapfuzz.incremental`) decides after each step whether the state
needs judging at all; when it does, the catalogue judges the :func:`full` scope and reports.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from rmapfuzz.model.core import KernelCore
from rmapfuzz.model.objects import AnonVma, Mm, Page, SwapSlot, Vma

Mapped = tuple[Mm, int, Page]  # a present pte mapping an anonymous page: (process, address, page)


@attrs.define(eq=False)
class Scope:
    vmas: list[Vma]  # live VMAs of live processes
    groups: list[Mm]  # live processes whose VMAs sharing an anon_vma are compared
    avs: list[AnonVma]  # anon_vmas not freed
    mapped: list[Mapped]  # for every page listed here, every pte that maps it
    pages: list[Page]  # pages not freed (their ptes are all in ``mapped``)
    swaps: dict[int, tuple[SwapSlot, int]]  # slot -> swap ptes holding it (all of them)
    pte_mms: list[Mm]  # processes whose ptes pte-prot judges
    children: dict[int, int] = attrs.field(factory=dict)  # id(av) -> children with a non-empty tree
    pins: dict[int, int] = attrs.field(factory=dict)  # id(av) -> live descendants pinning it as root
    active: dict[int, int] = attrs.field(factory=dict)  # id(av) -> live VMAs using it as anon_vma


def _alive(k: KernelCore) -> list[Mm]:
    return [mm for mm in k.mms.values() if mm.alive]


def _mapped_of(mms: Iterable[Mm]) -> list[Mapped]:
    return [
        (mm, addr, pte.page) for mm in mms for addr, pte in mm.ptes.items() if pte.swap is None and pte.page is not None
    ]


def _swaps(mms: Iterable[Mm], pages: Iterable[Page], want: set[int] | None = None) -> dict[int, tuple[SwapSlot, int]]:
    """Slot -> the swap ptes (of ``mms``) that hold it, then the pages' swap-cache slots at 0; with
    ``want``, only those slots."""
    swaps: dict[int, tuple[SwapSlot, int]] = {}
    for mm in mms:
        for pte in mm.ptes.values():
            slot = pte.swap
            if slot is not None and (want is None or id(slot) in want):
                swaps[id(slot)] = (slot, swaps.get(id(slot), (slot, 0))[1] + 1)
    for page in pages:
        cached = page.swapcache
        if cached is not None and id(cached) not in swaps and (want is None or id(cached) in want):
            swaps[id(cached)] = (cached, 0)
    return swaps


def full(k: KernelCore) -> Scope:
    """Everything, in the state's order (processes by pid, their VMAs and ptes in order, anon_vmas
    and pages in allocation order)."""
    alive = _alive(k)
    vmas = [v for mm in alive for v in mm.vmas]
    avs = [av for av in k.anon_vmas if not av.freed]
    pages = [p for p in k.pages if not p.freed]
    swaps = _swaps(alive, pages)
    for slot in k.swap_slots:  # one no pte and no page holds any more, but still counted: a leak
        if slot.count and id(slot) not in swaps:
            swaps[id(slot)] = (slot, 0)
    scope = Scope(vmas, alive, avs, _mapped_of(alive), pages, swaps, alive)
    for y in avs:
        if y.parent is not None and y.head:
            scope.children[id(y.parent)] = scope.children.get(id(y.parent), 0) + 1
        if y.root is not None and y.root is not y:
            scope.pins[id(y.root)] = scope.pins.get(id(y.root), 0) + 1
    for v in vmas:
        if v.anon_vma is not None:
            scope.active[id(v.anon_vma)] = scope.active.get(id(v.anon_vma), 0) + 1
    return scope
