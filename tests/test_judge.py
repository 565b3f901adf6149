"""The incremental judge (rmapfuzz.incremental) against the whole-state judge: on every generation,
and on models with deliberate faults, both break the same invariants at the same steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bench.equivalence import compare
from rmapfuzz.kernels import KERNELS, Kernel
from rmapfuzz.model.objects import AnonVma, AnonVmaChain, Page, Pte, Vma
from rmapfuzz.replay import replay
from tests.helpers import steps


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_incremental_and_whole_state_judges_agree(kernel: str) -> None:
    tally = compare(kernel, 1500, seed=11)
    assert tally.disagreements == []
    assert tally.steps >= 1500


# Faults a model change could bring, each as an overlay on 6.18.8 or 3.19: the incremental judge must
# see every violation the whole-state judge sees, at the same step.


def _unlink_nothing(self: Any, vma: Vma) -> None:
    """unlink_anon_vmas() that leaves the links (the VMA is freed with its chain on the lists)."""


def _link_one_side(self: Any, vma: Vma, av: AnonVma) -> AnonVmaChain:
    """anon_vma_chain_link() that forgets the anon_vma's side."""
    avc = AnonVmaChain(vma=vma, anon_vma=av)
    vma.anon_vma_chain.insert(0, avc)
    return avc


def _dup_without_count(page: Page) -> None:
    """page_dup_rmap() that forgets the mapcount."""


def _never_free(self: Any, page: Page) -> None:
    """put_page_if_unused() that never frees a page."""


def _degree_forgotten(self: Any, vma: Vma, av: AnonVma) -> None:
    """The locked part of anon_vma_prepare() without its counter."""
    vma.anon_vma = av
    self.anon_vma_chain_link(vma, av)


def _unmap_counts_one(self: Any, page: Page) -> None:
    """try_to_unmap() that makes every pte the walk finds a swap entry but counts only the first in
    the page's mapcount and the slot's count: a page other processes map too is miscounted, which
    a reclaim step (judged incrementally, every process acting) must show."""
    slot = page.swapcache
    assert slot is not None
    for i, (vma, addr) in enumerate(self.rmap_walk_anon(page)):
        vma.mm.ptes[addr] = Pte(swap=slot)
        if i == 0:
            slot.count += 1
            page.mapcount -= 1


FAULTS: dict[str, tuple[str, str, Callable[..., Any]]] = {
    "unlink_anon_vmas keeps the links": ("6.18.8", "unlink_anon_vmas", _unlink_nothing),
    "anon_vma_chain_link one-sided": ("6.18.8", "anon_vma_chain_link", _link_one_side),
    "page_dup_rmap forgets the mapcount": ("6.18.8", "page_dup_rmap", staticmethod(_dup_without_count)),
    "pages are never freed": ("6.18.8", "put_page_if_unused", _never_free),
    "anon_vma_prepare forgets its counter": ("3.19", "anon_vma_prepare_link", _degree_forgotten),
    "try_to_unmap counts one pte of a shared page": ("3.19", "try_to_unmap", _unmap_counts_one),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_the_judges_agree_on_a_faulty_model(fault: str) -> None:
    base, name, body = FAULTS[fault]
    faulty: Kernel = type("Faulty", (KERNELS[base],), {"name": f"{base}+fault", name: body})
    tally = compare(faulty, 1500, seed=5)
    assert tally.disagreements == []
    assert tally.violations > 0, "the fault was never noticed"


def test_a_verdict_is_the_same_judged_whole_or_incrementally() -> None:
    seq = steps(("mmap", 0, 0, 3, "rw"), ("write", 0, 1), ("fork", 0), ("mprotect", 1, 0, 1, "r"), ("write", 1, 2))
    for kernel in ("2.6.34-rc3", "3.19", "6.18.8"):
        a = replay(seq, kernel, incremental=True)
        b = replay(seq, kernel, incremental=False)
        assert a.results == b.results
        assert (a.violation and a.violation.to_json()) == (b.violation and b.violation.to_json())
