"""2.6.34-rc3 + Johannes Weiner's "[PATCH -v2] rmap: make anon_vma_prepare link in all the
anon_vmas of a mergeable VMA" (LKML, 9 April 2010; the patch text was not retrieved, so this
follows its title and the comment quoted in the thread).

* anon_vma_prepare(): a VMA that borrows a neighbour's anon_vma is linked to every anon_vma in
  the neighbour's chain, not just the borrowed one.
* anon_vma_merge(): when the surviving VMA has the singleton chain, the removed VMA's anon_vmas it
  lacks are linked into it before the removed chain is dropped.

vma_adjust() is untouched, so bug A remains.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v2_6_34_rc3 import Linux2634rc3
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import Vma


class HannesV2(Linux2634rc3):
    name = "2.6.34-rc3+hannes-v2"
    base = "2.6.34-rc3"
    summary = "rc3 with Johannes Weiner's -v2: borrowing links the lender's whole chain"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        ("lkml-2010-04-09", "[PATCH -v2] rmap: make anon_vma_prepare link in all the anon_vmas of a mergeable VMA"),
    )
    bugs: ClassVar[tuple[str, ...]] = ("A", "S", "C", "M", "L")

    def anon_vma_prepare(self, vma: Vma) -> Err:
        """-v2: borrow the lender's anon_vma and link in all of the lender's anon_vmas."""
        if vma.anon_vma is not None:
            return None
        lender = self.find_mergeable_anon_vma_lender(vma)
        if lender is None:
            return super().anon_vma_prepare(vma)
        if self.anon_vma_clone(vma, lender):
            return ENOMEM
        self.trace.cover("anon_vma_prepare: borrow a neighbour's anon_vma and its whole chain")
        vma.anon_vma = lender.anon_vma
        return None

    def anon_vma_merge(self, vma: Vma, next_vma: Vma) -> None:
        """-v2: a singleton-chain survivor gets the removed VMA's unique anon_vmas first."""
        if len(vma.anon_vma_chain) == 1:
            have = vma.chain_anon_vmas()
            for av in reversed(next_vma.chain_anon_vmas()):
                if av not in have and self.anon_vma_chain_alloc():
                    self.trace.cover("anon_vma_merge: the survivor links an anon_vma of the removed VMA")
                    self.anon_vma_chain_link(vma, av)
        self.unlink_anon_vmas(next_vma)
