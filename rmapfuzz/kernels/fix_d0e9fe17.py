"""d0e9fe1758f2 "Simplify and comment on anon_vma re-use for anon_vma_prepare()" (Linus Torvalds,
April 2010), the fix of bug B, alone on 2.6.34-rc3.

anon_vma_prepare() borrows a neighbour's anon_vma only if the two VMAs could be merged by an
mprotect (anon_vma_compatible()) and the neighbour's chain is that single anon_vma
(reusable_anon_vma()): a forked neighbour's anon_vma would leave the borrower without links to the
neighbour's ancestors.  Alone on rc3 it is what Borislav Petkov tested ("That didn't fix it"): bug
A remained (docs/model.md, "The April 2010 thread").
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v2_6_34_rc3 import Linux2634rc3
from rmapfuzz.model.objects import VM_PROT_MASK, AnonVma, Vma

D0E9FE17 = ("d0e9fe1758f2", "Simplify and comment on anon_vma re-use for anon_vma_prepare()")


class Linux2634rc3WithD0e9fe17(Linux2634rc3):
    name = "2.6.34-rc3+d0e9fe17"
    base = "2.6.34-rc3"
    summary = "rc3 with Linus' singleton rule only (what Borislav tested: 'That didn't fix it')"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (D0E9FE17,)
    bugs: ClassVar[tuple[str, ...]] = ("A", "S", "C", "M", "L")

    @staticmethod
    def anon_vma_compatible(a: Vma, b: Vma) -> bool:
        """anon_vma_compatible() (d0e9fe1758f2): ``a`` just below ``b``, mprotect could merge them."""
        return (
            a.vm_end == b.vm_start
            and (a.vm_flags & ~VM_PROT_MASK) == (b.vm_flags & ~VM_PROT_MASK)
            and b.vm_pgoff == a.vm_pgoff + (b.vm_start - a.vm_start)
        )

    def reusable_anon_vma(self, old: Vma, a: Vma, b: Vma) -> AnonVma | None:
        """reusable_anon_vma() (d0e9fe1758f2): only a neighbour whose chain is that one anon_vma."""
        if self.anon_vma_compatible(a, b) and old.anon_vma is not None:
            if len(old.anon_vma_chain) == 1:
                self.trace.cover("reusable_anon_vma: a compatible neighbour with a single-entry chain")
                return old.anon_vma
            self.trace.cover("reusable_anon_vma: a compatible neighbour with a longer chain is refused")
        return None

    def find_mergeable_anon_vma(self, vma: Vma) -> AnonVma | None:
        """find_mergeable_anon_vma() (d0e9fe1758f2): next first, then prev, singleton chains only."""
        near = self.vma_next(vma)
        if near is not None:
            av = self.reusable_anon_vma(near, vma, near)
            if av is not None:
                return av
        near = self.vma_prev(vma)
        if near is not None:
            return self.reusable_anon_vma(near, near, vma)
        return None
