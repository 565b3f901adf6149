"""3.7: Michel Lespinasse's bf181b9f9d8d "mm anon rmap: replace same_anon_vma linked list with an interval tree".

The anon_vma's list becomes an interval tree keyed by each linked VMA's pgoff range
``[vm_pgoff, vm_pgoff + vma_pages - 1]``; an rmap walk queries it with the page's index and so
only visits VMAs whose range covers the page (docs/model.md#reclaim-and-the-rmap-walk).  A VMA
whose pgoff bookkeeping is wrong is therefore not even visited: I1' (page-index) matters as much
as I1.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v3_0 import Linux30
from rmapfuzz.model.objects import AnonVma, AnonVmaChain, Page


class Linux37(Linux30):
    name = "3.7"
    base = "3.0"
    summary = "the anon_vma's VMAs are an interval tree; the walk queries it by page index"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        ("bf181b9f9d8d", "mm anon rmap: replace same_anon_vma linked list with an interval tree"),
    )
    bugs: ClassVar[tuple[str, ...]] = ("L",)

    def anon_vma_interval_tree(self, av: AnonVma, page: Page) -> list[AnonVmaChain]:
        """anon_vma_interval_tree_foreach(avc, &av->rb_root, pgoff, pgoff): the VMAs whose
        ``[vm_pgoff, vm_pgoff + pages - 1]`` contains the page's index."""
        return [avc for avc in av.head if avc.vma.vm_pgoff <= page.index <= avc.vma.vm_pgoff + avc.vma.pages - 1]
