"""2.6.36: Andrea Arcangeli's root rule for pages, and exclusive swap-ins (docs/model.md, "Generations").

* 288468c334e9 "rmap: always use anon_vma root pointer" (Andrea Arcangeli): a page that is not
  exclusively owned goes to ``vma->anon_vma->root``.
* ad8c2ee801ad "rmap: add exclusive page to private anon_vma on swapin" (Rik van Riel): do_swap_page()
  tells rmap that a write fault whose reuse_swap_page() succeeded maps the page exclusively
  (do_page_add_anon_rmap() with ``exclusive``), so it goes to the faulting VMA's own anon_vma.  The
  ``PageAnon`` early return 288468c334e9 also adds to __page_set_anon_rmap() is not modelled.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v2_6_35 import Linux2635
from rmapfuzz.model.objects import Page, Vma
from rmapfuzz.model.rmap import linear_page_index


class Linux2636(Linux2635):
    name = "2.6.36"
    base = "2.6.35"
    summary = "non-exclusive pages go to the root anon_vma; an exclusive swap-in goes to the VMA's own"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        ("288468c334e9", "rmap: always use anon_vma root pointer"),
        ("ad8c2ee801ad", "rmap: add exclusive page to private anon_vma on swapin"),
    )
    bugs: ClassVar[tuple[str, ...]] = ("M", "L")

    def page_set_anon_rmap(self, page: Page, vma: Vma, addr: int, exclusive: bool) -> None:
        """__page_set_anon_rmap() (288468c334e9): not exclusive -> vma->anon_vma->root."""
        av = vma.anon_vma
        if not exclusive and av is not None:
            av = av.root
        page.mapping = av
        page.index = linear_page_index(vma, addr)

    def page_add_anon_rmap(self, page: Page, vma: Vma, addr: int, exclusive: bool = False) -> None:
        """do_page_add_anon_rmap(): do_swap_page() passes ``exclusive`` for a write fault it could reuse."""
        page.mapcount += 1
        if page.mapcount == 1:
            self.page_set_anon_rmap(page, vma, addr, exclusive)
