"""mm/memory.c as of 2.6.34-rc3: the anonymous fault paths, fork's pte copy and unmapping.

Faults: do_anonymous_page (read maps the zero page, write installs a new page), do_wp_page (reuse
with page_move_anon_rmap, c44b674323f4, or copy), do_swap_page (the swap-in rmap rule is in
mm/rmap.c's page_add_anon_rmap).  Each returns an op result: "ok", "SEGV" or "OOM".
"""

from __future__ import annotations

from rmapfuzz.model.core import OK, OOM, SEGV
from rmapfuzz.model.objects import VM_EXEC, VM_READ, VM_WRITE, Mm, Page, Pte, SwapSlot, Vma
from rmapfuzz.model.rmap import RmapMixin


class MemoryMixin(RmapMixin):
    """mm/memory.c at 2.6.34-rc3."""

    # ---- the fault entry ----

    def handle_mm_fault(self, mm: Mm, addr: int, write: bool) -> str:
        """do_page_fault() + handle_mm_fault() + handle_pte_fault() (arch/x86/mm/fault.c, mm/memory.c).

        The access check is x86's access_error(): a write needs VM_WRITE, a read any of R/W/X.
        A fault the kernel would answer with SIGSEGV changes nothing here.
        """
        vma = self.find_vma(mm, addr)
        if vma is None or vma.vm_start > addr:
            return SEGV
        if write and not vma.vm_flags & VM_WRITE:
            return SEGV
        if not write and not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC):
            return SEGV
        pte = mm.ptes.get(addr)
        if pte is None:
            return self.do_anonymous_page(vma, addr, write)
        if pte.swap is not None:
            return self.do_swap_page(vma, addr, pte, write)
        if write and not pte.writable:
            return self.do_wp_page(vma, addr, pte)
        return OK

    def do_anonymous_page(self, vma: Vma, addr: int, write: bool) -> str:
        """do_anonymous_page() (mm/memory.c, 2.6.34): a read maps the zero page (no anon_vma needed);
        a write prepares the anon_vma and installs a new exclusive page."""
        mm = vma.mm
        if not write:
            self.trace.cover("do_anonymous_page: read maps the zero page")
            mm.ptes[addr] = Pte(page=None, writable=False)
            return OK
        if self.anon_vma_prepare(vma):
            self.trace.cover("do_anonymous_page: OOM from anon_vma_prepare")
            return OOM
        self.trace.cover("do_anonymous_page: write installs a new page")
        page = self.alloc_page(None, 0)
        self.page_add_new_anon_rmap(page, vma, addr)
        mm.ptes[addr] = Pte(page=page, writable=True)
        return OK

    def reuse_swap_page(self, page: Page) -> bool:
        """reuse_swap_page() (mm/swapfile.c, 2.6.34): mapcount plus swap references at most one.

        When the page's own swap slot is the only other user it is dropped from the swap cache.
        """
        count = page.mapcount
        slot = page.swapcache
        if count <= 1 and slot is not None:
            count += slot.count
            if count == 1:
                self.delete_from_swap_cache(page)
        return count <= 1

    def do_wp_page(self, vma: Vma, addr: int, pte: Pte) -> str:
        """do_wp_page() (mm/memory.c, 2.6.34-rc3): write to a write-protected present pte.

        An anon page nobody else uses is reused: page_move_anon_rmap() points it at this VMA's
        anon_vma and the pte becomes writable.  Otherwise (and for the zero page) the page is
        copied: anon_vma_prepare(), a new page with page_add_new_anon_rmap(), the old mapping
        removed.
        """
        old = pte.page
        if old is not None and self.reuse_swap_page(old):
            self.trace.cover("do_wp_page: reuse the page")
            self.wp_page_reuse(old, vma, addr)
            pte.writable = True
            return OK
        return self.wp_page_copy(vma, addr, pte)

    def wp_page_reuse(self, page: Page, vma: Vma, addr: int) -> None:
        """The reuse branch of do_wp_page() (c44b674323f4): move the page to vma->anon_vma."""
        self.page_move_anon_rmap(page, vma, addr)

    def wp_page_copy(self, vma: Vma, addr: int, pte: Pte) -> str:
        """The "gotten:" branch of do_wp_page(): COW into a new page of this VMA's anon_vma."""
        if self.anon_vma_prepare(vma):
            self.trace.cover("do_wp_page: OOM from anon_vma_prepare")
            return OOM
        self.trace.cover("do_wp_page: copy the zero page" if pte.page is None else "do_wp_page: copy a shared page")
        old = pte.page
        new = self.alloc_page(None, 0)
        self.page_add_new_anon_rmap(new, vma, addr)
        vma.mm.ptes[addr] = Pte(page=new, writable=True)
        if old is not None:
            self.page_remove_rmap(old)
        return OK

    def do_swap_page(self, vma: Vma, addr: int, pte: Pte, write: bool) -> str:
        """do_swap_page() (mm/memory.c, 2.6.34-rc3): swap a page back in.

        The page comes from the swap cache, or is read into a new swap-cache page.  A write by
        the sole user maps it writable at once; the rmap goes through page_add_anon_rmap() (which
        sets page->mapping on the first mapping).  A write that could not reuse continues in
        do_wp_page().
        """
        slot = pte.swap
        assert slot is not None
        page = slot.page
        if page is None:
            self.trace.cover("do_swap_page: read the page back into the swap cache")
            page = self.alloc_page(None, 0)
            page.swapcache = slot
            slot.page = page
        exclusive = self.swapin_exclusive(vma, pte, page, write)
        self.trace.cover(
            "do_swap_page: write fault, page reused exclusively"
            if write and exclusive
            else "do_swap_page: write fault, page still shared"
            if write
            else "do_swap_page: read fault"
        )
        new_pte = Pte(page=page, writable=self.swapin_maps_writable(vma, exclusive, write))
        vma.mm.ptes[addr] = new_pte
        self.page_add_anon_rmap(page, vma, addr, exclusive)
        self.swap_free(slot)
        if write and not exclusive:
            return self.do_wp_page(vma, addr, new_pte)
        return OK

    def swapin_exclusive(self, vma: Vma, pte: Pte, page: Page, write: bool) -> bool:
        """Whether do_swap_page() maps the page exclusively: on a write fault by its sole user
        (reuse_swap_page(), which drops it from the swap cache then)."""
        return write and self.reuse_swap_page(page)

    def swapin_maps_writable(self, vma: Vma, exclusive: bool, write: bool) -> bool:
        """Whether the swapped-in pte is writable: an exclusive mapping is one only on a write."""
        return exclusive

    # ---- swap bookkeeping (mm/swapfile.c, mm/swap_state.c) ----

    def swap_free(self, slot: SwapSlot) -> None:
        """swap_free() / free_swap_and_cache(): one swap reference fewer; drop an unused swap-cache page."""
        slot.count -= 1
        page = slot.page
        if slot.count == 0 and page is not None and page.mapcount == 0:
            self.delete_from_swap_cache(page)
            self.put_page_if_unused(page)

    @staticmethod
    def delete_from_swap_cache(page: Page) -> None:
        slot = page.swapcache
        if slot is not None:
            slot.page = None
        page.swapcache = None

    # ---- fork: copy_page_range() ----

    def copy_page_range(self, dst_vma: Vma, src_vma: Vma) -> None:
        """copy_page_range() / copy_one_pte() (mm/memory.c, 2.6.34).

        A VMA without an anon_vma has no anon pages and is skipped (its zero-page ptes are not
        copied either; the child refaults).  Otherwise every pte is shared: writable ones are
        write-protected in both (COW), pages get page_dup_rmap(), swap entries swap_duplicate().
        """
        if src_vma.anon_vma is None:
            self.trace.cover("copy_page_range: unfaulted VMA skipped")
            return
        src_mm, dst_mm = src_vma.mm, dst_vma.mm
        for addr in range(src_vma.vm_start, src_vma.vm_end):
            pte = src_mm.ptes.get(addr)
            if pte is None:
                continue
            if pte.swap is not None:
                self.trace.cover("copy_page_range: swap entry shared")
                pte.swap.count += 1
                pte.swap_exclusive = False  # shared now: neither pte is exclusive (5.19+)
                dst_mm.ptes[addr] = Pte(swap=pte.swap)
                continue
            pte.writable = False
            if pte.page is not None:
                self.page_dup_rmap(pte.page)
                pte.page.exclusive = False
            dst_mm.ptes[addr] = Pte(page=pte.page, writable=False)

    # ---- unmapping: zap_page_range() ----

    def zap_page_range(self, mm: Mm, start: int, end: int) -> None:
        """zap_pte_range() (mm/memory.c): clear the ptes of [start, end); pages lose a mapping,
        swap entries a reference."""
        ptes = mm.ptes
        for addr in range(start, end):
            pte = ptes.pop(addr, None)
            if pte is None:
                continue
            if pte.swap is not None:
                self.swap_free(pte.swap)
            elif pte.page is not None:
                self.page_remove_rmap(pte.page)

    def change_protection(self, vma: Vma, start: int, end: int) -> None:
        """change_protection() (mm/mprotect.c): ptes take the new vm_page_prot, which for a private
        mapping never includes write: every present pte becomes write-protected."""
        ptes = vma.mm.ptes
        for addr in range(start, end):
            pte: Pte | None = ptes.get(addr)
            if pte is not None and pte.swap is None:
                pte.writable = False

    def add_to_swap(self, page: Page) -> None:
        """add_to_swap() (mm/swap_state.c): give the page a swap slot and put it in the swap cache."""
        if page.swapcache is None:
            slot = self.alloc_swap_slot()
            slot.page = page
            page.swapcache = slot

    def shrink_page(self, page: Page) -> None:
        """shrink_page_list() for one anon page (mm/vmscan.c): add_to_swap(), try_to_unmap() through
        the rmap walk, and free the page once no pte maps it.  Ptes the walk misses keep it mapped."""
        self.add_to_swap(page)
        self.try_to_unmap(page)
        if page.mapcount == 0:
            slot = page.swapcache
            self.delete_from_swap_cache(page)
            self.put_page_if_unused(page)
            if slot is not None and slot.count == 0:
                slot.page = None
