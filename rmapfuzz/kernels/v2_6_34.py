"""2.6.34 (final): the two April 2010 fixes of Linus, and the swap-in rule of late April 2010.

* d0e9fe1758f2 "Simplify and comment on anon_vma re-use for anon_vma_prepare()": borrow a
  neighbour's anon_vma only if the neighbour's chain is that single anon_vma (bug B).
* 287d97ac0321 "vma_adjust: fix the copying of anon_vma chains": the importer clones the
  exporter's chain (bug A).
* "anon_vma: clone the anon_vma chain in the right order" [id unverified]: clone walks the source
  in reverse, so the copy keeps newest-first order with the oldest anon_vma last.
* "rmap: add exclusively owned pages to the newest anon_vma" [id unverified]: a page that is not
  exclusively owned (every swap-in, via page_add_anon_rmap) goes to the oldest anon_vma of the
  VMA's chain, the last entry (bug S).

Not changed (checked by reading the code around 2.6.34): copy_vma()/vma_merge() still let mremap
merge a faulted range into an unfaulted neighbour without importing the anon_vma (bug M, closed
as a side effect by 965f55dea0e3 in 3.0); the anon_vma_fork() error path (bug C) is fixed by the
2.6.35 merge window, whether already in 2.6.34 could not be established, so it is kept.
"""

from __future__ import annotations

from rmapfuzz.kernels.v2_6_34_rc3 import Linux2634rc3
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import VM_PROT_MASK, AnonVma, Page, Vma
from rmapfuzz.model.rmap import linear_page_index


class Linux2634(Linux2634rc3):
    name = "2.6.34"
    base = "2.6.34-rc3"
    summary = "2.6.34 final: singleton borrowing, vma_adjust imports from the exporter, oldest-anon_vma swap-in"
    commits = (
        ("d0e9fe1758f2", "Simplify and comment on anon_vma re-use for anon_vma_prepare()"),
        ("287d97ac0321", "vma_adjust: fix the copying of anon_vma chains"),
        ("(unverified)", "anon_vma: clone the anon_vma chain in the right order"),
        ("(unverified)", "rmap: add exclusively owned pages to the newest anon_vma"),
    )
    bugs = ("C", "M")

    # d0e9fe1758f2

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
        if self.anon_vma_compatible(a, b) and old.anon_vma is not None and len(old.anon_vma_chain) == 1:
            return old.anon_vma
        return None

    def find_mergeable_anon_vma(self, vma: Vma) -> AnonVma | None:
        """find_mergeable_anon_vma() (d0e9fe1758f2): next first, then prev."""
        near = self.vma_next(vma)
        if near is not None:
            av = self.reusable_anon_vma(near, vma, near)
            if av is not None:
                return av
        near = self.vma_prev(vma)
        if near is not None:
            return self.reusable_anon_vma(near, near, vma)
        return None

    # 287d97ac0321

    def vma_adjust_import(self, vma: Vma, nxt: Vma, start: int, importer: Vma | None, exporter: Vma | None) -> Err:
        """vma_adjust() after 287d97ac0321: the importer clones the exporter's chain."""
        if (
            exporter is not None
            and importer is not None
            and exporter.anon_vma is not None
            and importer.anon_vma is None
        ):
            if self.anon_vma_clone(importer, exporter):
                return ENOMEM
            importer.anon_vma = exporter.anon_vma
        return None

    # "anon_vma: clone the anon_vma chain in the right order"

    def anon_vma_clone(self, dst: Vma, src: Vma) -> Err:
        """anon_vma_clone() (2.6.34): src walked tail to head, so dst keeps src's order."""
        for pavc in reversed(list(src.anon_vma_chain)):
            if not self.anon_vma_chain_alloc():
                self.unlink_anon_vmas(dst)
                return ENOMEM
            self.anon_vma_chain_link(dst, pavc.anon_vma)
        return None

    # "rmap: add exclusively owned pages to the newest anon_vma"

    def page_set_anon_rmap(self, page: Page, vma: Vma, addr: int, exclusive: bool) -> None:
        """__page_set_anon_rmap() (2.6.34): not exclusive -> the oldest anon_vma, the chain's last entry."""
        av = vma.anon_vma
        if not exclusive and vma.anon_vma_chain:
            av = vma.anon_vma_chain[-1].anon_vma
        page.mapping = av
        page.index = linear_page_index(vma, addr)

    def page_add_anon_rmap(self, page: Page, vma: Vma, addr: int, exclusive: bool = False) -> None:
        """page_add_anon_rmap() (2.6.34): always non-exclusive (do_swap_page passes no flag until 2.6.36)."""
        super().page_add_anon_rmap(page, vma, addr, exclusive=False)
