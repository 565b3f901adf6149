"""The two April 2010 merge fixes of Linus, each alone on 2.6.34-rc3, and both (2.6.34-rc4).

* d0e9fe1758f2 "Simplify and comment on anon_vma re-use for anon_vma_prepare()": borrow a
  neighbour's anon_vma only if the neighbour's chain is that single anon_vma (bug B).  Alone on
  rc3 it is what Borislav tested: "That didn't fix it" (bug A remained).
* 287d97ac0321 "vma_adjust: fix the copying of anon_vma chains": the importer clones the
  exporter's chain (bug A).

Both were in 2.6.34-rc4 [tag placement unverified]; rc4 still had the old swap-in rule (bug S).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v2_6_34_rc3 import Linux2634rc3
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import VM_PROT_MASK, AnonVma, Vma

D0E9FE17 = ("d0e9fe1758f2", "Simplify and comment on anon_vma re-use for anon_vma_prepare()")
C287D97AC = ("287d97ac0321", "vma_adjust: fix the copying of anon_vma chains")


class Linux2634rc3WithD0e9fe17(Linux2634rc3):
    name = "2.6.34-rc3+d0e9fe17"
    base = "2.6.34-rc3"
    summary = "rc3 with Linus' singleton rule only (what Borislav tested: 'That didn't fix it')"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        ("d0e9fe1758f2", "Simplify and comment on anon_vma re-use for anon_vma_prepare()"),
    )
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


class Linux2634rc3With287d97ac(Linux2634rc3):
    name = "2.6.34-rc3+287d97ac"
    base = "2.6.34-rc3"
    summary = "rc3 with Linus' vma_adjust fix only"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        ("287d97ac0321", "vma_adjust: fix the copying of anon_vma chains"),
    )
    bugs: ClassVar[tuple[str, ...]] = ("B", "S", "C", "M", "L")

    def vma_adjust_import(self, vma: Vma, nxt: Vma, start: int, importer: Vma | None, exporter: Vma | None) -> Err:
        """vma_adjust() after 287d97ac0321: the importer clones the exporter's chain."""
        if (
            exporter is not None
            and importer is not None
            and exporter.anon_vma is not None
            and importer.anon_vma is None
        ):
            self.trace.cover("vma_adjust: an unfaulted importer gets an anon_vma")
            if self.anon_vma_clone(importer, exporter):
                return ENOMEM
            importer.anon_vma = exporter.anon_vma
        return None


class Linux2634rc4(Linux2634rc3With287d97ac, Linux2634rc3WithD0e9fe17):
    """Both fixes; no code of its own."""

    name = "2.6.34-rc4"
    base = "2.6.34-rc3"
    summary = "both April 2010 merge fixes; the old swap-in rule is still there"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (D0E9FE17, C287D97AC)
    bugs: ClassVar[tuple[str, ...]] = ("S", "C", "M", "L")
