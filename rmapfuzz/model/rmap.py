"""mm/rmap.c (and include/linux/rmap.h) as of 2.6.34-rc3: anon_vma_chain linking and page rmap.

Base generation: Rik van Riel's anon_vma_chain, 5beb49305251, plus page_move_anon_rmap,
c44b674323f4.  Later generations override single functions in :mod:`rmapfuzz.kernels`.
"""

from __future__ import annotations

from rmapfuzz.model.core import ENOMEM, Err, KernelCore
from rmapfuzz.model.objects import AnonVma, AnonVmaChain, Page, Pte, Vma
from rmapfuzz.model.trace import UseAfterFree


def linear_page_index(vma: Vma, addr: int) -> int:
    """linear_page_index() (include/linux/pagemap.h): the index a page gets at ``addr``."""
    return vma.vm_pgoff + (addr - vma.vm_start)


def vma_address(page: Page, vma: Vma) -> int | None:
    """vma_address() (mm/rmap.c, 2.6.34): where ``page`` would sit in ``vma``, or None if outside."""
    addr = vma.vm_start + (page.index - vma.vm_pgoff)
    if addr < vma.vm_start or addr >= vma.vm_end:
        return None
    return addr


class RmapMixin(KernelCore):
    """mm/rmap.c at 2.6.34-rc3."""

    # ---- anon_vma lifetime ----

    def anon_vma_prepare(self, vma: Vma) -> Err:
        """anon_vma_prepare() (mm/rmap.c, 2.6.34-rc3): give an unfaulted VMA its anon_vma.

        Borrows a neighbour's anon_vma through find_mergeable_anon_vma() or allocates a new one,
        and links the VMA to it alone (list_add on both lists).
        """
        if vma.anon_vma is not None:
            return None
        if not self.anon_vma_chain_alloc():
            self.trace.cover("anon_vma_prepare: ENOMEM from anon_vma_chain_alloc")
            return ENOMEM
        av = self.find_mergeable_anon_vma(vma)
        if av is not None:
            self.trace.cover("anon_vma_prepare: reuse a neighbour's anon_vma")
        else:
            av = self.anon_vma_alloc()
            if av is None:
                self.trace.cover("anon_vma_prepare: ENOMEM from anon_vma_alloc")
                return ENOMEM
            self.trace.cover("anon_vma_prepare: new anon_vma")
            self.anon_vma_prepare_new(av)
        self.anon_vma_prepare_link(vma, av)
        return None

    def anon_vma_prepare_new(self, av: AnonVma) -> None:
        """What anon_vma_prepare() does to an anon_vma it allocated (a new root): nothing here."""

    def anon_vma_prepare_link(self, vma: Vma, av: AnonVma) -> None:
        """The locked part of anon_vma_prepare(): set vma->anon_vma and link it (head of both lists)."""
        vma.anon_vma = av
        avc = AnonVmaChain(vma=vma, anon_vma=av)
        vma.anon_vma_chain.insert(0, avc)
        av.head.insert(0, avc)

    def anon_vma_clone(self, dst: Vma, src: Vma) -> Err:
        """anon_vma_clone() (mm/rmap.c, 2.6.34-rc3): link ``dst`` to every anon_vma of ``src``.

        Walks src's chain head to tail and list_add()s each new link at dst's head, so dst's chain
        comes out in reverse order.  On ENOMEM the links made so far are unlinked.
        """
        for pavc in list(src.anon_vma_chain):
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

    def anon_vma_fork(self, vma: Vma, pvma: Vma) -> Err:
        """anon_vma_fork() (mm/rmap.c, 2.6.34-rc3): the child VMA gets the parent's links plus a new anon_vma.

        The error path after a successful clone returns -ENOMEM without unlinking the cloned
        chains (dup_mmap then frees the VMA): bug C.
        """
        if pvma.anon_vma is None:
            return None
        if self.anon_vma_clone(vma, pvma):
            return ENOMEM
        av = self.anon_vma_alloc()
        if av is None:
            self.trace.cover("anon_vma_fork: ENOMEM from anon_vma_alloc after the clone")
            return self.anon_vma_fork_failed(vma)
        if not self.anon_vma_chain_alloc():
            self.trace.cover("anon_vma_fork: ENOMEM from anon_vma_chain_alloc after the clone")
            self.anon_vma_free(av)
            return self.anon_vma_fork_failed(vma)
        self.trace.cover("anon_vma_fork: new anon_vma for the child")
        self.anon_vma_fork_adopt(av, pvma)
        self.anon_vma_chain_link(vma, av)
        vma.anon_vma = av
        return None

    def anon_vma_fork_adopt(self, av: AnonVma, pvma: Vma) -> None:
        """What anon_vma_fork() does to the child's new anon_vma before linking it: nothing in
        2.6.34 (2.6.35 gives it the parent's root)."""

    def anon_vma_fork_failed(self, vma: Vma) -> Err:
        """The out_error label of anon_vma_fork() (2.6.34-rc3): nothing is undone."""
        return ENOMEM

    def anon_vma_unlink(self, avc: AnonVmaChain) -> None:
        """anon_vma_unlink() (mm/rmap.c, 2.6.34): drop one link; free the anon_vma once its list is empty."""
        av = avc.anon_vma
        av.head.remove(avc)
        if not av.head and not av.freed:
            self.trace.cover("anon_vma_unlink: last link gone, anon_vma freed")
            self.anon_vma_free(av)

    def unlink_anon_vmas(self, vma: Vma) -> None:
        """unlink_anon_vmas() (mm/rmap.c, 2.6.34): unlink every chain entry, head first.

        vma->anon_vma is left as it is (later kernels clear it).
        """
        for avc in list(vma.anon_vma_chain):
            self.anon_vma_unlink(avc)
            vma.anon_vma_chain.remove(avc)

    def anon_vma_merge(self, vma: Vma, next_vma: Vma) -> None:
        """anon_vma_merge() (include/linux/rmap.h, 2.6.34): the removed VMA's links are simply dropped.

        It assumes (VM_BUG_ON) both have the same anon_vma and so the same chain.
        """
        self.unlink_anon_vmas(next_vma)

    # ---- page rmap ----

    def page_set_anon_rmap(self, page: Page, vma: Vma, addr: int, exclusive: bool) -> None:
        """__page_set_anon_rmap() (mm/rmap.c, 2.6.34-rc3): mapping = vma->anon_vma, whoever maps it."""
        page.mapping = vma.anon_vma
        page.index = linear_page_index(vma, addr)

    def page_add_new_anon_rmap(self, page: Page, vma: Vma, addr: int) -> None:
        """page_add_new_anon_rmap() (mm/rmap.c): a new page, mapped once, exclusively owned."""
        page.mapcount = 1
        page.exclusive = True
        self.page_set_anon_rmap(page, vma, addr, exclusive=True)

    def page_add_anon_rmap(self, page: Page, vma: Vma, addr: int, exclusive: bool = False) -> None:
        """page_add_anon_rmap() (mm/rmap.c, 2.6.34-rc3): the first mapping sets mapping and index.

        Used by do_swap_page().  The rc3 rule gives a page shared by a fork tree the anon_vma of
        whichever process faults it in first (bug S).
        """
        page.mapcount += 1
        if page.mapcount == 1:
            self.trace.cover("page_add_anon_rmap: first mapping sets the page's anon_vma")
            self.page_set_anon_rmap(page, vma, addr, exclusive)

    def page_move_anon_rmap(self, page: Page, vma: Vma, addr: int) -> None:
        """page_move_anon_rmap() (mm/rmap.c, c44b674323f4): an exclusively owned page moves to vma->anon_vma."""
        page.mapping = vma.anon_vma

    @staticmethod
    def page_dup_rmap(page: Page) -> None:
        """page_dup_rmap() (include/linux/rmap.h): fork shares the page."""
        page.mapcount += 1

    def page_remove_rmap(self, page: Page) -> None:
        """page_remove_rmap() (mm/rmap.c): one mapping fewer; an unmapped page outside the swap cache is freed."""
        page.mapcount -= 1
        self.put_page_if_unused(page)

    def put_page_if_unused(self, page: Page) -> None:
        if page.mapcount == 0 and page.swapcache is None and not page.freed:
            page.freed = True
            page.mapping = None

    # ---- the rmap walk ----

    def anon_vma_interval_tree(self, av: AnonVma, page: Page) -> list[AnonVmaChain]:
        """The VMAs a walk visits: the whole same_anon_vma list (2.6.34); 3.7+ queries by page index."""
        return av.head

    def rmap_walk_anon(self, page: Page) -> list[tuple[Vma, int]]:
        """rmap_walk_anon() / page_referenced_anon() / try_to_unmap_anon() (mm/rmap.c, 2.6.34).

        Locks page->mapping, visits each linked VMA, computes vma_address() from the page index
        and returns the (vma, address) pairs whose pte maps the page.  Dereferencing a freed
        anon_vma (or a freed VMA on its list) is a use-after-free.
        """
        av = page.mapping
        if av is None:
            return []
        if av.freed:
            raise UseAfterFree(f"rmap walk of {page.name} (index {page.index}) locks freed {av.name}", [page, av])
        found = []
        for avc in self.anon_vma_interval_tree(av, page):
            vma = avc.vma
            if vma.freed:
                raise UseAfterFree(
                    f"rmap walk of {page.name} via {av.name} reaches freed VMA {vma.name}", [page, av, vma]
                )
            addr = vma_address(page, vma)
            if addr is None:
                continue
            pte = vma.mm.ptes.get(addr)
            if pte is not None and pte.swap is None and pte.page is page:
                found.append((vma, addr))
        return found

    def try_to_unmap(self, page: Page) -> None:
        """try_to_unmap() (mm/rmap.c): every pte the walk finds becomes a swap entry.

        The page must already be in the swap cache (add_to_swap); ptes the walk misses stay
        mapped, which is how a lost anon_vma link shows up on a real kernel.
        """
        slot = page.swapcache
        assert slot is not None
        self.trace.cover("try_to_unmap: page mapped once" if page.mapcount == 1 else "try_to_unmap: page shared")
        exclusive = page.exclusive
        for vma, addr in self.rmap_walk_anon(page):
            vma.mm.ptes[addr] = Pte(swap=slot, swap_exclusive=exclusive)
            slot.count += 1
            page.mapcount -= 1
            page.exclusive = False  # the swap pte carries it now (5.19+; unused before)
