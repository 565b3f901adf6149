"""2.6.34 (final): 2.6.34-rc4 plus the late April 2010 swap-in rule (bug S).

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

from typing import ClassVar

from rmapfuzz.kernels.v2_6_34_rc4 import Linux2634rc4
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import Page, Vma
from rmapfuzz.model.rmap import linear_page_index


class Linux2634(Linux2634rc4):
    name = "2.6.34"
    base = "2.6.34-rc4"
    summary = "2.6.34 final: clone keeps the chain order, non-exclusive pages go to the oldest anon_vma"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        ("(unverified)", "anon_vma: clone the anon_vma chain in the right order"),
        ("(unverified)", "rmap: add exclusively owned pages to the newest anon_vma"),
    )
    bugs: ClassVar[tuple[str, ...]] = ("C", "M", "L")

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
