"""6.0: 3.19 and what changed in these functions up to 6.0-rc4 (docs/model.md, "Generations").

* Leon Yu's 3fe89b3e2a7b (4.0, :mod:`.fix_3fe89b3e`): anon_vma_clone()'s ENOMEM path clears
  ``dst->anon_vma`` before unlinking (bug E).
* Kirill Shutemov's 734537c9cb72 (4.8, :mod:`.fix_734537c9`): vma_adjust() case 6 picks its exporter
  on the first pass (bug L).
* 1a4e58cce84e "mm: introduce MADV_PAGEOUT" (Minchan Kim, 5.4): the advice reclaims only pages
  mapped once; a page mapped in two processes is skipped (before 5.4 the op stands for reclaim
  reaching the range, which takes shared pages too).  Found missing by the lab: Debian's 6.1
  keeps a forked page that the 6.0 model swapped out (docs/lab.md).
* MADV_WIPEONFORK / MADV_KEEPONFORK (4.14).
* Brian Geffon's e346b3813067 "mm/mremap: add MREMAP_DONTUNMAP to mremap()" (5.7): a move that
  leaves the old range mapped.  It needs MREMAP_MAYMOVE and old_len == new_len (else EINVAL).
  move_vma() moves the ptes as for any move, then returns before the unmap: the old VMA keeps its
  range, its flags (it keeps VM_ACCOUNT: 6.1.192's move_vma(), read here, does not hide it for
  DONTUNMAP, and 5.7's hid it only around the move, as recalled, not re-read; VM_LOCKED is cleared,
  which the model has no use for) and, in 5.7, its anon_vma chain, with no pte left under it.
* Li Xinhai's 1583aa278f5f "mm: mremap: unlink anon_vmas when mremap with MREMAP_DONTUNMAP
  success" (5.12): when the move took the whole old VMA, unlink_anon_vmas() drops its chain, so it
  is unfaulted again; a part of a VMA keeps it (the rest of the VMA may still map pages).  An
  unfaulted source re-based next to its own range can merge into the new VMA in copy_vma(); then
  the "old VMA" is the merged one, which is not wholly the old range, and keeps everything.
* dba58d3b8c50 "mm/mremap: fail map duplication attempts for private mappings" (Mike Kravetz, 4.14):
  mremap() with an old length of 0 on a private mapping is EINVAL, from vma_to_resize(), so a
  MREMAP_FIXED call has already unmapped its target (until 6.17, :mod:`.v6_18`).
* mremap_to()'s overlap test is one interval test (``addr + old_len > new_addr && new_addr + new_len
  > addr``; 2.6.34 tested the two orders apart, and an old length of 0 at the new range's start
  overlapped there): an old range of length 0 overlaps nothing.  Read in 6.1.192 and 6.12.118, and
  the same test is in the 4.x mremap_to() of the linux-mm archive's copies; the commit that made
  it one test was not identified.  Found by the lab (docs/lab.md): ``mremap(P0, [0,0) -> [0,2),
  maymove|fixed)`` over a mapped [0,2) is EFAULT on Debian's 6.12.118 (the target unmapped, then
  no VMA at the old address), EINVAL in the model before.
* 550a7d60bd5e "mm, hugepages: add mremap() support for hugepage backed vma" (5.16): mremap() looks
  the VMA at the old address up before anything else, so a call on an unmapped address is EFAULT
  and changes nothing (its first version returned +EFAULT; the sign was fixed in 5.18, Niels
  Dossche, <20220427224439.23828-2-dossche.niels@gmail.com>).
* Wei Yang, "mm/rmap.c: don't reuse anon_vma if we just want a copy" (5.5; posted on linux-mm,
  October 2019, commit id not verified): fork-time reuse only when ``src->anon_vma`` is set.
* Jann Horn's 2555283eb40d (6.0-rc4, :mod:`.fix_2555283e`): num_children / num_active_vmas (bug G).
* David Hildenbrand's 1493a1913e34 "mm/swap: remember PG_anon_exclusive via a swp pte bit" (5.19),
  on a synchronous swap device (zram, ``SWP_SYNCHRONOUS_IO``; 0bcac06f27d7, 4.15, skips the swap
  cache for such a device when the entry has one user): in do_swap_page() a swap-in of an entry
  with one user and no swap-cache page reads into a fresh page, which is "certainly exclusive"
  (``page != swapcache``): mapped with RMAP_EXCLUSIVE, so __page_set_anon_rmap() gives it the
  faulting VMA's own anon_vma, not the root.  Its pte is writable only on a write fault
  (``maybe_mkwrite()`` under ``FAULT_FLAG_WRITE``); a read fault maps it read-only until
  c18160dba5ff (6.11, from :mod:`.v6_15` on here).  Entries with several users go through the
  swap cache as before; their swp pte's exclusive bit is always clear (fork clears it, and a
  shared page is never exclusive), so they are not modelled further.  Found by the live oracle's
  L4; ``tests/test_swap_exclusive.py``.
* Huang Ying's ec560175c0b6 "mm, swap: VMA based swap readahead" (4.14): a swap-in that goes through
  the swap cache (an entry with several users, or any entry of a non-synchronous device) first
  reads the entries of the swap ptes around the fault, in the same VMA and page table, into the
  swap cache, marked PG_readahead.  The window (swap_vma_ra_win(), __swapin_nr_pages(); the shape
  read in 6.12's mm/swap_state.c, unchanged by 6.18's swap-table series, which only moved the hit
  accounting into swap_update_readahead()) is 2**page-cluster = 8 pages at a VMA's first swap-in
  (an unset ``swap_readahead_info`` reads as 4 hits: ``Vma.swap_ra_hits`` starts at 4), then
  hits + 2 rounded up to a power of two, 1 without hits unless the fault is next to the last one,
  and never less than half the last window; it is centred on the fault, or runs ahead of it in the
  direction of the last fault.  A page read ahead is mapped later from the swap cache like any
  other: its first mapping is exclusive only if the swap pte's exclusive bit (1493a1913e34) says
  so, or on a write fault by its sole user, so a read puts it on the root anon_vma -- not the
  fresh exclusive page a sole entry outside the swap cache gets.  Found by the live oracle's L4
  (docs/live-oracle.md, "L4 and swap readahead"); ``tests/test_swap_readahead.py``.  Older
  generations have no readahead in the model (2.6.34's was by swap offset, swapin_readahead();
  its pages would go to the root there too).
* A page that is already anonymous keeps its anon_vma when it is mapped again: 6.0's
  __page_set_anon_rmap() returns early (``if (PageAnon(page)) goto out``, only setting
  PageAnonExclusive) -- the early return dates from 288468c334e9 (2.6.36), which the 2.6.36 to
  3.19 models leave out -- and 6.x's ``__folio_add_anon_rmap()`` keeps it
  (``!folio_test_anon(folio)``).  So a swap-cache page unmapped (a COW copy of it was taken) and
  faulted in again by another process stays on the anon_vma the first mapping chose, even when
  the new mapping is exclusive (the model's older rule set it again at the first mapping).
  Found by the live oracle's L4.
* 6c287605fd56 "mm: remember exclusively mapped anonymous pages with PG_anon_exclusive" and
  c145e0b47c77 "mm: streamline COW logic in do_swap_page()" (David Hildenbrand, 5.19): 6.0's
  do_wp_page() reuses a write-protected page that is already ``PageAnonExclusive`` at once
  (``goto reuse``), without page_move_anon_rmap(): the page stays on its anon_vma; only a page
  whose exclusivity the refcount has to prove is moved to the VMA's own anon_vma (6.5+:
  wp_can_reuse_anon_folio() / folio_move_anon_rmap()).  Found by the live oracle's L4 (a
  swap-cache page swapped in by a write, then mprotect r / rw, then written); on 6.15+ the
  mprotect makes such a pte writable at once (64fe24a3e05e), so the write does not fault there.

* Andrea Arcangeli's e86f15ee64d8 "mm: vma_merge: fix vm_page_prot SMP race condition against
  rmap_walk" (4.9): vma_merge()'s case 8 (the whole middle VMA merges with next only) calls
  __vma_adjust() with ``expand = next``, which swaps the two roles (``remove_next == 3``): next
  grows down over the middle and the middle is removed, so an rmap walk never finds next's pages
  under the middle's protections.  Next is the importer: it would take a faulted middle's anon_vma,
  but 3.0's rule refuses that merge (an unfaulted next's chain is not singular), so a merge that
  happens allocates nothing.  Before, the middle grew over next, and an unfaulted middle cloned a
  faulted next's chain: an allocation that an injected failure makes fail, which leaves the two
  VMAs unmerged.  Read in the 6.1-era mm/mmap.c (__vma_adjust(), vma_merge()); the 6.12 model's
  vma_merge_existing_range() keeps the orientation.

Not modelled between 3.19 and 6.0: per-VMA locking.  Not in 6.0, so not here: the 2026 stable
fixes of MREMAP_DONTUNMAP that Debian's 6.1.192 carries (docs/lab.md).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.fix_3fe89b3e import C3FE89B3E, Linux319rc4With3fe89b3e
from rmapfuzz.kernels.fix_734537c9 import C734537C9, Linux2634rc3With734537c9
from rmapfuzz.kernels.fix_2555283e import C2555283E, Linux319rc4With2555283e
from rmapfuzz.kernels.v3_19 import Linux319
from rmapfuzz.model.core import EFAULT, EINVAL, OK, Err, FeatureChanges
from rmapfuzz.model.objects import VM_WRITE, AnonVma, Mm, Page, Pte, SwapSlot, Vma

WEI_YANG = ("(unverified)", "mm/rmap.c: don't reuse anon_vma if we just want a copy")
DBA58D3B = ("dba58d3b8c50", "mm/mremap: fail map duplication attempts for private mappings")
C550A7D60 = ("550a7d60bd5e", "mm, hugepages: add mremap() support for hugepage backed vma")
C1493A191 = ("1493a1913e34", "mm/swap: remember PG_anon_exclusive via a swp pte bit")
C6C287605 = ("6c287605fd56", "mm: remember exclusively mapped anonymous pages with PG_anon_exclusive")
C1A4E58CC = ("1a4e58cce84e", "mm: introduce MADV_PAGEOUT")
CE346B381 = ("e346b3813067", "mm/mremap: add MREMAP_DONTUNMAP to mremap()")
C1583AA27 = ("1583aa278f5f", "mm: mremap: unlink anon_vmas when mremap with MREMAP_DONTUNMAP success")
CEC560175 = ("ec560175c0b6", "mm, swap: VMA based swap readahead")
CE86F15EE = ("e86f15ee64d8", "mm: vma_merge: fix vm_page_prot SMP race condition against rmap_walk")


SWAP_RA_ORDER_CEILING = 5
SWAP_RA_HITS_MAX = 63  # the hits field of swap_readahead_info: PAGE_SHIFT / 2 bits
PTRS_PER_PMD = 512  # x86-64: readahead stays within one page table


def swapin_nr_pages(adjacent: bool, hits: int, max_pages: int, prev_win: int) -> int:
    """__swapin_nr_pages() (mm/swap_state.c): hits + 2 rounded up to a power of two from 4; with no
    hits, 2 pages for a fault next to the last one and 1 otherwise; at most ``max_pages``, at least
    half the last window."""
    pages = hits + 2
    if pages == 2:
        if not adjacent:
            pages = 1
    else:
        roundup = 4
        while roundup < pages:
            roundup <<= 1
        pages = roundup
    return max(min(pages, max_pages), prev_win // 2)


class Linux60(Linux319rc4With3fe89b3e, Linux319rc4With2555283e, Linux2634rc3With734537c9, Linux319):
    name = "6.0"
    base = "3.19"
    summary = (
        "num_children/num_active_vmas reuse rule, clone's ENOMEM path clears dst->anon_vma; "
        "MREMAP_DONTUNMAP (a wholly moved old VMA is unlinked), PAGEOUT skips shared pages, swap readahead"
    )
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        C3FE89B3E,
        C734537C9,
        CE86F15EE,
        DBA58D3B,
        C1A4E58CC,
        C550A7D60,
        WEI_YANG,
        CE346B381,
        C1583AA27,
        C2555283E,
        C1493A191,
        C6C287605,
        CEC560175,
    )
    bugs: ClassVar[tuple[str, ...]] = ()

    feature_changes = FeatureChanges(wipeonfork=True, dontunmap=True, pageout_skips_shared=True)
    # the swap device is synchronous (zram, as the live oracle sets up): see the module docstring
    swap_synchronous: ClassVar[bool] = True
    # a read fault maps an exclusive swapped-in page writable (c18160dba5ff, 6.11): not yet in 6.0
    swapin_read_maps_writable: ClassVar[bool] = False
    # /proc/sys/vm/page-cluster, the kernel's default (the live oracle sets it for its run): a
    # readahead window of at most 2**3 pages
    swap_page_cluster: ClassVar[int] = 3

    def vma_merge_next(self, area: Vma, nxt: Vma, addr: int, pglen: int) -> tuple[Err, Vma]:
        """vma_merge() cases 3 and 8 since e86f15ee64d8 (4.9): __vma_adjust(area, ..., expand=next).
        Case 8 is ``remove_next == 3``: next, the importer, grows down over the middle, which is
        the exporter and is removed."""
        if area is nxt:
            return super().vma_merge_next(area, nxt, addr, pglen)
        self.trace.cover("vma_adjust: case 8, next grows down and removes the middle")
        err = self.vma_adjust_import(nxt, area, addr, importer=nxt, exporter=area)
        if err:
            self.trace.cover("vma_adjust: ENOMEM from the anon_vma import")
            return err, nxt
        self.trace.takeover("vma_adjust", nxt, area)
        nxt.vm_start, nxt.vm_pgoff = addr, nxt.vm_pgoff - pglen
        self.vma_unlink(area.mm, area)
        if area.anon_vma is not None:
            self.anon_vma_merge(nxt, area)
        self.remove_vma(area)
        return None, nxt

    def wp_page_reuse(self, page: Page, vma: Vma, addr: int) -> None:
        """do_wp_page()'s reuse (6c287605fd56, 5.19): an exclusive page is not moved (``goto
        reuse``); another is moved by page_move_anon_rmap() and becomes exclusive."""
        if page.exclusive:
            self.trace.cover("do_wp_page: an exclusive page is reused where it is")
            return
        page.exclusive = True
        super().wp_page_reuse(page, vma, addr)

    def page_add_anon_rmap(self, page: Page, vma: Vma, addr: int, exclusive: bool = False) -> None:
        """page_add_anon_rmap() / __page_set_anon_rmap() (6.0; __folio_add_anon_rmap() in 6.7+): the
        mapping is set only on a page not yet anonymous (288468c334e9's ``PageAnon`` early return);
        RMAP_EXCLUSIVE marks it PageAnonExclusive either way."""
        page.mapcount += 1
        if exclusive:
            page.exclusive = True
        if page.mapping is None:
            self.trace.cover("page_add_anon_rmap: first mapping sets the page's anon_vma")
            self.page_set_anon_rmap(page, vma, addr, exclusive)

    def do_swap_page(self, vma: Vma, addr: int, pte: Pte, write: bool) -> str:
        """do_swap_page() (5.19+): the swap cache is looked up first (a hit updates the VMA's
        readahead state); a miss on a synchronous device's entry with one user is read into a
        fresh, exclusive page (1493a1913e34), writable on a write fault (and, from c18160dba5ff
        on, on a read fault of a writable VMA); any other miss goes through the VMA-based swap
        readahead (ec560175c0b6), which reads the entry and its swapped-out neighbours into the
        swap cache.  The swap-cache page is then mapped as before, exclusively if the swap pte
        says so (:meth:`swapin_exclusive`)."""
        slot = pte.swap
        assert slot is not None
        if slot.page is not None:
            self.swap_update_readahead(slot.page, vma, addr)
        elif self.swap_synchronous and slot.count == 1:
            self.trace.cover("do_swap_page: a sole entry is read into a fresh exclusive page")
            page = self.alloc_page(None, 0)
            self.page_add_new_anon_rmap(page, vma, addr)
            vma.mm.ptes[addr] = Pte(page=page, writable=self.swapin_maps_writable(vma, True, write))
            self.swap_free(slot)
            return OK
        else:
            self.swapin_readahead(vma, addr)
        return super().do_swap_page(vma, addr, pte, write)

    def swapin_exclusive(self, vma: Vma, pte: Pte, page: Page, write: bool) -> bool:
        """do_swap_page() (5.19+, 1493a1913e34): a swap-cache page is mapped exclusively if the swap
        pte's exclusive bit says so (a read fault leaves the page in the swap cache), or, as
        before, on a write fault by its sole user."""
        reused = super().swapin_exclusive(vma, pte, page, write)
        return reused or pte.swap_exclusive

    def swapin_maps_writable(self, vma: Vma, exclusive: bool, write: bool) -> bool:
        """maybe_mkwrite() under FAULT_FLAG_WRITE; from c18160dba5ff (6.11) also a read fault of a
        writable VMA."""
        return exclusive and bool(vma.vm_flags & VM_WRITE) and (write or self.swapin_read_maps_writable)

    # ---- VMA-based swap readahead (mm/swap_state.c, ec560175c0b6, 4.14) ----

    def swap_update_readahead(self, page: Page, vma: Vma, addr: int) -> None:
        """The VMA part of a swap-cache hit (swap_cache_get_folio() before 6.18,
        swap_update_readahead() since): the fault address is remembered with the window, and a
        page that readahead brought in (PG_readahead, cleared now) counts as a hit."""
        self.trace.cover("do_swap_page: the page is in the swap cache")
        if page.readahead:
            self.trace.cover("swap_update_readahead: a readahead hit")
            page.readahead = False
            vma.swap_ra_hits = min(vma.swap_ra_hits + 1, SWAP_RA_HITS_MAX)
        vma.swap_ra_addr = addr

    def swapin_readahead(self, vma: Vma, addr: int) -> None:
        """swap_vma_readahead(): every swap pte of the window around ``addr`` whose entry is not in
        the swap cache is read into it, the ones other than ``addr`` marked PG_readahead."""
        start, end = self.swap_vma_ra_win(vma, addr)
        if end - start > 1:
            self.trace.cover("swapin_readahead: a window of several pages")
        for a in range(start, end):
            pte = vma.mm.ptes.get(a)
            if pte is None or pte.swap is None or pte.swap.page is not None:
                continue
            page = self.read_swap_cache(pte.swap)
            if a != addr:
                self.trace.cover("swapin_readahead: a neighbour is read into the swap cache")
                page.readahead = True
        slot = vma.mm.ptes[addr].swap
        assert slot is not None
        if slot.page is None:
            self.read_swap_cache(slot)

    def read_swap_cache(self, slot: SwapSlot) -> Page:
        """__read_swap_cache_async(): a new page for the entry, in the swap cache, not yet mapped."""
        page = self.alloc_page(None, 0)
        page.swapcache = slot
        slot.page = page
        return page

    def swap_vma_ra_win(self, vma: Vma, addr: int) -> tuple[int, int]:
        """swap_vma_ra_win(): the readahead window, ``[start, end)`` in pages, and the VMA's new
        readahead state.  The window's size comes from __swapin_nr_pages() (the hits since the
        last fault, or an adjacent fault; shrinking at most by half each time), its place from
        the direction of the last fault; it is clamped to the VMA and to the page table (the
        window's PMD; the oracle's window starts on a PMD boundary)."""
        max_win = 1 << min(self.swap_page_cluster, SWAP_RA_ORDER_CEILING)
        if max_win == 1:
            return addr, addr + 1
        prev_addr = vma.swap_ra_addr
        adjacent = prev_addr is not None and abs(addr - prev_addr) == 1
        win = swapin_nr_pages(adjacent, vma.swap_ra_hits, max_win, vma.swap_ra_win)
        vma.swap_ra_addr, vma.swap_ra_win, vma.swap_ra_hits = addr, win, 0
        if win == 1:
            return addr, addr + 1
        if prev_addr is not None and addr == prev_addr + 1:
            left = addr
        elif prev_addr is not None and prev_addr == addr + 1:
            left = addr - win + 1
        else:
            left = addr - (win - 1) // 2
        pmd = addr - addr % PTRS_PER_PMD
        return max(left, vma.vm_start, pmd), min(left + win, vma.vm_end, pmd + PTRS_PER_PMD)

    def may_reuse_anon_vma(self, dst: Vma, src: Vma, av: AnonVma) -> bool:
        """The reuse test (6.0): also only when src has an anon_vma (Wei Yang, 2019)."""
        return src.anon_vma is not None and super().may_reuse_anon_vma(dst, src, av)

    def vma_to_resize(self, mm: Mm, addr: int, old_len: int, new_len: int) -> tuple[Err, Vma | None]:
        """vma_to_resize() (4.14+, dba58d3b8c50): an old length of 0 duplicates a mapping, which only
        a shared one may."""
        err, vma = super().vma_to_resize(mm, addr, old_len, new_len)
        if vma is not None and old_len == 0:  # every VMA of the model is private anonymous
            return EINVAL, None
        return err, vma

    def do_mremap(self, mm: Mm, addr: int, old_len: int, new_len: int, flags: frozenset[str], new_addr: int) -> str:
        """mremap() (5.16+, 550a7d60bd5e): after the argument checks (5.7+, e346b3813067:
        MREMAP_DONTUNMAP needs MREMAP_MAYMOVE and old_len == new_len), the VMA at ``addr`` is looked
        up first: none there is EFAULT before an in-place shrink unmaps the tail of the range or a
        fixed move unmaps its target."""
        if "dontunmap" in flags and ("maymove" not in flags or old_len != new_len):
            return EINVAL
        if not self.mremap_flags_valid(flags) or new_len <= 0 or ("fixed" in flags and "maymove" not in flags):
            return super().do_mremap(mm, addr, old_len, new_len, flags, new_addr)  # EINVAL, as before
        vma = self.find_vma(mm, addr)
        if vma is None or vma.vm_start > addr:
            self.trace.cover("do_mremap: no VMA at the old address (EFAULT before anything changes)")
            return EFAULT
        return super().do_mremap(mm, addr, old_len, new_len, flags, new_addr)

    @staticmethod
    def mremap_overlaps(addr: int, old_len: int, new_addr: int, new_len: int) -> bool:
        """mremap_to()'s overlap test as one interval test (``addr + old_len > new_addr && new_addr +
        new_len > addr``, 6.1.192 and 6.12.118 as read): an old range of length 0 overlaps nothing,
        so a fixed move of it to its own address unmaps the target, and then finds no VMA (EFAULT)."""
        return addr + old_len > new_addr and new_addr + new_len > addr

    def release_old_range(self, vma: Vma, new_vma: Vma, old_addr: int, old_len: int, dontunmap: bool) -> None:
        """The end of move_vma() (mm/mremap.c): with MREMAP_DONTUNMAP (5.7, e346b3813067) the old
        range stays mapped, its ptes gone; since 1583aa278f5f (5.12) the old VMA's anon_vmas are
        unlinked if the move took all of it (it was not merged into the new VMA, and spans exactly
        the old range)."""
        if not dontunmap:
            super().release_old_range(vma, new_vma, old_addr, old_len, dontunmap)
        elif new_vma is not vma and vma.vm_start == old_addr and vma.vm_end == old_addr + old_len:
            self.trace.cover("move_vma: MREMAP_DONTUNMAP of a whole VMA unlinks its anon_vmas")
            self.unlink_anon_vmas(vma)
        else:
            self.trace.cover("move_vma: MREMAP_DONTUNMAP of part of a VMA keeps its anon_vmas")
