"""The fix of bug S, alone on 2.6.34-rc3: a page that is not exclusively owned goes to the oldest
anon_vma of the VMA's chain (April 2010).

* ea90002b0fa7 "anonvma: when setting up page->mapping, we need to pick the _oldest_ anonvma"
  (Linus Torvalds, 12 April 2010): __page_set_anon_rmap() takes an ``exclusive`` argument; a page
  that is not exclusive (every swap-in, through page_add_anon_rmap()) gets the anon_vma of the last
  entry of the VMA's chain, the deepest ancestor, whose rmap walk reaches every process of the
  fork tree that may map it.  Before, it got the faulting VMA's own anon_vma, which the other
  processes' VMAs need not link (bug S).
* "anon_vma: clone the anon_vma chain in the right order" (Linus Torvalds, April 2010) [commit id
  not verified]: anon_vma_clone() walks the source chain tail to head, so the copy keeps the
  newest-first order and its last entry is the oldest anon_vma, which the rule above relies on.
  The reverse walk is in the 2.6.35 code.

2.6.36 replaces the chain-tail lookup with ``vma->anon_vma->root`` (288468c334e9, see
:mod:`.v2_6_36`).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v2_6_34_rc3 import Linux2634rc3
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import Page, Vma
from rmapfuzz.model.rmap import linear_page_index

EA90002B = ("ea90002b0fa7", "anonvma: when setting up page->mapping, we need to pick the _oldest_ anonvma")
CLONE_ORDER = ("(unverified)", "anon_vma: clone the anon_vma chain in the right order")


class Linux2634rc3WithEa90002b(Linux2634rc3):
    name = "2.6.34-rc3+ea90002b"
    base = "2.6.34-rc3"
    summary = "rc3 with only the April 2010 rule for a non-exclusive page's anon_vma (for classifying bug S)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (CLONE_ORDER, EA90002B)
    bugs: ClassVar[tuple[str, ...]] = ("A", "B", "C", "M", "L")

    # "anon_vma: clone the anon_vma chain in the right order"

    def anon_vma_clone(self, dst: Vma, src: Vma) -> Err:
        """anon_vma_clone() (2.6.34): src walked tail to head, so dst keeps src's order."""
        for pavc in reversed(list(src.anon_vma_chain)):
            if not self.anon_vma_chain_alloc():
                self.trace.cover(
                    "anon_vma_clone: ENOMEM"
                    if not dst.anon_vma_chain
                    else "anon_vma_clone: ENOMEM, partial chain undone"
                )
                self.unlink_anon_vmas(dst)
                return ENOMEM
            self.anon_vma_chain_link(dst, pavc.anon_vma)
        return None

    # ea90002b0fa7

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
