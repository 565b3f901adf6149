"""mm/mmap.c as of 2.6.34-rc3: vma_merge (cases 1-8), vma_adjust, split, munmap, mmap, copy_vma, exit.

The ``vma_merge`` case numbers are the kernel comment's (docs/model.md#vma_merge-cases-1-to-8):

    case 1: AAAA  ->  PPPPNNNN         case 5: AAAA over head of N, merges with P
          PPPP    NNNN                 case 6: AAAA (whole middle) merges with P and X
    case 2: PPPPAAAA  (P grows)        case 7: AAAA (whole middle) merges with P only
    case 3: AAAANNNN  (N grows down)   case 8: AAAA (whole middle) merges with X only
    case 4: tail of P merges with N        (2.6.34: the middle grows over X; 4.9: X grows down)
"""

from __future__ import annotations

from rmapfuzz.model.core import EINVAL, ENOMEM, OK, Err
from rmapfuzz.model.memory import MemoryMixin
from rmapfuzz.model.objects import (
    VM_ACCOUNT,
    VM_MAY_ALL,
    VM_NORESERVE,
    VM_PROT_MASK,
    VM_WRITE,
    AnonVma,
    Mm,
    Vma,
    prot_to_flags,
)


class MmapMixin(MemoryMixin):
    """mm/mmap.c at 2.6.34-rc3."""

    # ---- merge compatibility ----

    @staticmethod
    def is_mergeable_vma(vma: Vma, vm_flags: int) -> bool:
        """is_mergeable_vma() (2.6.34): equal flags (no file, no ->close for private anon)."""
        return vma.vm_flags == vm_flags

    def is_mergeable_anon_vma(self, av1: AnonVma | None, av2: AnonVma | None, vma: Vma | None) -> bool:
        """is_mergeable_anon_vma() (2.6.34): either side unfaulted, or the same anon_vma.

        ``vma`` is the existing neighbour (the argument 3.0's rule adds; unused here).
        """
        return av1 is None or av2 is None or av1 is av2

    def can_vma_merge_before(self, vma: Vma, vm_flags: int, anon_vma: AnonVma | None, pgoff: int) -> bool:
        """can_vma_merge_before(): the range ends where ``vma`` starts; ``pgoff`` is the range's end."""
        return (
            self.is_mergeable_vma(vma, vm_flags)
            and self.is_mergeable_anon_vma(anon_vma, vma.anon_vma, vma)
            and vma.vm_pgoff == pgoff
        )

    def can_vma_merge_after(self, vma: Vma, vm_flags: int, anon_vma: AnonVma | None, pgoff: int) -> bool:
        """can_vma_merge_after(): the range starts where ``vma`` ends; ``pgoff`` is the range's start."""
        return (
            self.is_mergeable_vma(vma, vm_flags)
            and self.is_mergeable_anon_vma(anon_vma, vma.anon_vma, vma)
            and vma.vm_pgoff + vma.pages == pgoff
        )

    def vma_merge(
        self,
        mm: Mm,
        prev: Vma | None,
        addr: int,
        end: int,
        vm_flags: int,
        anon_vma: AnonVma | None,
        pgoff: int,
    ) -> Vma | None:
        """vma_merge() (mm/mmap.c, 2.6.34): merge [addr, end) with prev and/or next, cases 1-8.

        Returns the VMA that now covers the range, or None (no merge, or vma_adjust failed).
        """
        pglen = end - addr
        nxt = self.vma_next(prev) if prev is not None else (mm.vmas[0] if mm.vmas else None)
        area = nxt
        middle = nxt is not None and nxt.vm_end == end
        if middle:  # cases 6, 7, 8
            assert nxt is not None
            nxt = self.vma_next(nxt)

        if prev is not None and prev.vm_end == addr and self.can_vma_merge_after(prev, vm_flags, anon_vma, pgoff):
            if (
                nxt is not None
                and end == nxt.vm_start
                and self.can_vma_merge_before(nxt, vm_flags, anon_vma, pgoff + pglen)
                and self.is_mergeable_anon_vma(prev.anon_vma, nxt.anon_vma, None)
            ):  # cases 1, 6
                self.trace.cover(
                    "vma_merge: case 6, prev and next absorb the middle"
                    if middle
                    else "vma_merge: case 1, prev and next close the hole"
                )
                err = self.vma_adjust(prev, prev.vm_start, nxt.vm_end, prev.vm_pgoff)
            else:  # cases 2, 5, 7
                self.trace.cover(
                    "vma_merge: case 7, prev absorbs the middle"
                    if middle
                    else "vma_merge: case 5, prev takes the head of next"
                    if area is not None and area.vm_start < end
                    else "vma_merge: case 2, prev grows over the hole"
                )
                err = self.vma_adjust(prev, prev.vm_start, end, prev.vm_pgoff)
            if err:
                self.trace.cover("vma_merge: vma_adjust failed")
                return None
            return prev

        if (
            nxt is not None
            and end == nxt.vm_start
            and self.can_vma_merge_before(nxt, vm_flags, anon_vma, pgoff + pglen)
        ):
            if prev is not None and addr < prev.vm_end:  # case 4
                self.trace.cover("vma_merge: case 4, next takes the tail of prev")
                err = self.vma_adjust(prev, prev.vm_start, addr, prev.vm_pgoff)
            else:  # cases 3, 8
                self.trace.cover(
                    "vma_merge: case 8, next absorbs the middle"
                    if middle
                    else "vma_merge: case 3, next grows down over the hole"
                )
                assert area is not None
                err, area = self.vma_merge_next(area, nxt, addr, pglen)
            if err:
                self.trace.cover("vma_merge: vma_adjust failed")
                return None
            return area
        return None

    def vma_merge_next(self, area: Vma, nxt: Vma, addr: int, pglen: int) -> tuple[Err, Vma]:
        """vma_merge() cases 3 and 8 (2.6.34): ``area`` grows to [addr, next's end).  In case 3 area
        *is* next, growing down over the hole; in case 8 it is the middle, which grows over next and
        removes it.  Returns (error, the VMA now covering the range)."""
        return self.vma_adjust(area, addr, nxt.vm_end, nxt.vm_pgoff - pglen), area

    # ---- vma_adjust ----

    def vma_adjust(self, vma: Vma, start: int, end: int, pgoff: int, insert: Vma | None = None) -> Err:
        """vma_adjust() (mm/mmap.c, 2.6.34): set vma's bounds; shift or remove the next VMA.

        Roles (docs/model.md#vma_adjust-importer-and-exporter): growing over all of next removes it
        (remove_next, twice for case 6), growing over part of it shifts its start up (case 5),
        shrinking lets next grow down (case 4).  The VMA that takes over pages must get the other's
        anon_vma and links: that import is :meth:`vma_adjust_import`.  A removed VMA's links go via
        anon_vma_merge().
        """
        mm = vma.mm
        nxt = self.vma_next(vma)
        again = False  # the kernel's "goto again" for case 6 lands inside the remove branch
        while True:
            remove_next = 0
            adjust_next = 0
            importer: Vma | None = None
            exporter: Vma | None = None
            if nxt is not None and insert is None:
                if again or end >= nxt.vm_end:
                    remove_next = 1 + (end > nxt.vm_end)
                    end = nxt.vm_end
                    importer, exporter = vma, nxt
                    if remove_next == 2 and nxt.anon_vma is None and self.features.case6_imports_first:
                        exporter = self.vma_next(nxt)
                    self.trace.cover(
                        "vma_adjust: case 6 second pass, removes the VMA after next"
                        if again
                        else "vma_adjust: removes next"
                        if remove_next == 1
                        else "vma_adjust: case 6, removes next and then the VMA after it"
                    )
                elif end > nxt.vm_start:
                    self.trace.cover("vma_adjust: takes the head of next")
                    adjust_next = end - nxt.vm_start
                    importer, exporter = vma, nxt
                elif end < vma.vm_end:
                    self.trace.cover("vma_adjust: gives its tail to next")
                    adjust_next = -(vma.vm_end - end)
                    importer, exporter = nxt, vma
                err = self.vma_adjust_import(vma, nxt, start, importer, exporter)
                if err:
                    self.trace.cover(
                        "vma_adjust: ENOMEM from the anon_vma import, case 6 second pass"
                        if again
                        else "vma_adjust: ENOMEM from the anon_vma import"
                    )
                    return err
                if importer is not None and exporter is not None:
                    self.trace.takeover("vma_adjust", importer, exporter)

            vma.vm_start, vma.vm_end, vma.vm_pgoff = start, end, pgoff
            if adjust_next and nxt is not None:
                nxt.vm_start += adjust_next
                nxt.vm_pgoff += adjust_next
            if insert is not None:
                self.vma_link(mm, insert)

            if not remove_next:
                return None
            assert nxt is not None
            self.vma_unlink(mm, nxt)
            if nxt.anon_vma is not None:
                self.anon_vma_merge(vma, nxt)
            self.remove_vma(nxt)
            if remove_next != 2:
                return None
            nxt = self.vma_next(vma)
            again = True

    def vma_adjust_import(self, vma: Vma, nxt: Vma, start: int, importer: Vma | None, exporter: Vma | None) -> Err:
        """The anon_vma import in vma_adjust() (2.6.34-rc3, bug A).

        The anon_vma comes from next, or from vma if it has one and is being changed; if the
        importer has none it gets it, but the chain is cloned from ``vma``, the function's first
        argument.  Where the importer *is* vma (cases 1, 5, 6, 7, 8) that clones vma's own empty
        chain: the importer ends up with an anon_vma it has no link to.
        """
        anon_vma = nxt.anon_vma
        if vma.anon_vma is not None and (importer is not None or start != vma.vm_start):
            anon_vma = vma.anon_vma
        if anon_vma is not None and importer is not None and importer.anon_vma is None:
            self.trace.cover("vma_adjust: an unfaulted importer gets an anon_vma")
            if self.anon_vma_clone(importer, vma):
                return ENOMEM
            importer.anon_vma = anon_vma
        return None

    # ---- find_mergeable_anon_vma ----

    def find_mergeable_anon_vma(self, vma: Vma) -> AnonVma | None:
        """find_mergeable_anon_vma() (mm/mmap.c, 2.6.34-rc3, bug B).

        Borrows the anon_vma of the next, else the previous, VMA if the two could be merged by an
        mprotect (flags equal but for R/W/X, pgoff continuous), whatever that neighbour's chain is.
        """
        lender = self.find_mergeable_anon_vma_lender(vma)
        return lender.anon_vma if lender is not None else None

    def find_mergeable_anon_vma_lender(self, vma: Vma) -> Vma | None:
        """The neighbour whose anon_vma find_mergeable_anon_vma() (2.6.34-rc3) hands out."""
        near = self.vma_next(vma)
        if near is not None and near.anon_vma is not None and vma.vm_end == near.vm_start:
            flags = (vma.vm_flags & ~VM_PROT_MASK) | (near.vm_flags & VM_PROT_MASK)
            if self.can_vma_merge_before(near, flags, None, vma.vm_pgoff + vma.pages):
                self.trace.cover(
                    "find_mergeable_anon_vma: next lends its anon_vma"
                    if len(near.anon_vma_chain) == 1
                    else "find_mergeable_anon_vma: next (a fork child) lends its anon_vma"
                )
                return near
        near = self.vma_prev(vma)
        if near is not None and near.anon_vma is not None and near.vm_end == vma.vm_start:
            flags = (vma.vm_flags & ~VM_PROT_MASK) | (near.vm_flags & VM_PROT_MASK)
            if self.can_vma_merge_after(near, flags, None, vma.vm_pgoff):
                self.trace.cover(
                    "find_mergeable_anon_vma: prev lends its anon_vma"
                    if len(near.anon_vma_chain) == 1
                    else "find_mergeable_anon_vma: prev (a fork child) lends its anon_vma"
                )
                return near
        return None

    # ---- split and unmap ----

    def split_vma(self, mm: Mm, vma: Vma, addr: int, new_below: bool) -> Err:
        """__split_vma() (mm/mmap.c, 2.6.34): a struct copy with a cloned chain takes one side.

        ``new_below``: the new VMA is [vm_start, addr), else [addr, vm_end) with pgoff advanced.
        """
        new = self.vm_area_dup(vma)
        if new_below:
            new.vm_end = addr
        else:
            new.vm_start = addr
            new.vm_pgoff += addr - vma.vm_start
        if self.anon_vma_clone(new, vma):
            self.trace.cover("__split_vma: ENOMEM from anon_vma_clone")
            self.remove_vma(new)
            return self.split_vma_clone_error()
        self.trace.cover(
            "__split_vma: faulted VMA split" if vma.anon_vma is not None else "__split_vma: unfaulted VMA split"
        )
        if new_below:
            return self.split_commit(vma, addr, vma.vm_end, vma.vm_pgoff + (addr - new.vm_start), new)
        return self.split_commit(vma, vma.vm_start, addr, vma.vm_pgoff, new)

    def split_vma_clone_error(self) -> Err:
        """What __split_vma() answers when anon_vma_clone() failed (2.6.34: ``err`` still holds its
        initial -ENOMEM)."""
        return ENOMEM

    def split_commit(self, vma: Vma, start: int, end: int, pgoff: int, new: Vma) -> Err:
        """The end of __split_vma() (2.6.34): vma_adjust() with ``new`` as the VMA to insert, which
        sets vma's bounds and links new (nothing is removed or imported)."""
        return self.vma_adjust(vma, start, end, pgoff, new)

    def do_munmap(self, mm: Mm, start: int, length: int) -> Err:
        """do_munmap() (mm/mmap.c, 2.6.34): split at both ends, detach, unmap_region(), remove."""
        if length <= 0:
            return EINVAL
        end = start + length
        vma, _prev = self.find_vma_prev(mm, start)
        if vma is None or vma.vm_start >= end:
            return None
        if start > vma.vm_start:
            err = self.split_vma(mm, vma, start, new_below=False)
            if err:
                return err
        last = self.find_vma(mm, end)
        if last is not None and end > last.vm_start:
            err = self.split_vma(mm, last, end, new_below=True)
            if err:
                return err
        # detach_vmas_to_be_unmapped(): from the VMA after the head of the range, every VMA that
        # starts before its end.  After two good splits those are the VMAs inside it; after a split
        # that answered success without splitting (3.12, bug F) the unsplit head stays mapped and an
        # unsplit tail goes whole.
        victims = [v for v in mm.vmas if start <= v.vm_start < end]
        for v in victims:
            self.vma_unlink(mm, v)
        self.unmap_region(mm, victims, start, end)
        return None

    def unmap_region(self, mm: Mm, vmas: list[Vma], start: int, end: int) -> None:
        """unmap_region(): unmap_vmas() zaps the ptes of [start, end) in the VMAs, free_pgtables()
        unlinks their anon_vmas and frees the page table once no VMA is left beside the hole."""
        for v in vmas:
            self.zap_page_range(mm, max(v.vm_start, start), min(v.vm_end, end))
        for v in vmas:
            self.unlink_anon_vmas(v)
            self.remove_vma(v)
        self.free_pgtables(mm)

    def free_pgtables(self, mm: Mm) -> None:
        """free_pgtables() (mm/memory.c): free_pgd_range() frees a page-table page only if the
        whole PMD it maps lies between the VMA before the hole (floor) and the one after it
        (ceiling).  The window lies in one PMD (2 MiB-aligned, as the oracle maps it), so its table
        goes when the process has no VMA left.  It frees the table, not the pages it maps: that
        every pte in it was zapped is the caller's promise.  Only a tail unmapped whole after a
        split that failed silently (3.12, bug F) breaks it; such a pte goes with the table, and
        its page stays counted as mapped, with its anon_vma."""
        if mm.vmas or not mm.ptes:
            return
        self.trace.cover("free_pgtables: the page table goes with ptes no VMA covers")
        mm.ptes.clear()

    def exit_mmap(self, mm: Mm) -> None:
        """exit_mmap() (mm/mmap.c): unmap everything, free_pgtables() (unlink_anon_vmas), remove_vma()."""
        vmas = list(mm.vmas)
        mm.vmas.clear()
        self.unmap_region(mm, vmas, 0, max((v.vm_end for v in vmas), default=0))
        mm.ptes.clear()

    # ---- mmap ----

    @staticmethod
    def accountable_mapping(vm_flags: int) -> bool:
        """accountable_mapping() (2.6.34): private writable memory is charged (VM_ACCOUNT), unless
        MAP_NORESERVE asked for VM_NORESERVE."""
        return vm_flags & (VM_NORESERVE | VM_WRITE) == VM_WRITE

    def mmap_region(self, mm: Mm, addr: int, length: int, prot: str, noreserve: bool = False) -> str:
        """do_mmap_pgoff() + mmap_region() (mm/mmap.c, 2.6.34) for MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED,
        and MAP_NORESERVE if ``noreserve``.

        The old mappings in the range are unmapped first; pgoff is the address; a new range
        merges with its neighbours if it can (vma_merge with no anon_vma).  MAP_NORESERVE sets
        VM_NORESERVE (the kernel honours it unless vm.overcommit_memory is 2, "never"; the model
        is a kernel in the default mode), and a VM_NORESERVE mapping is never charged.
        """
        if length <= 0:
            return EINVAL
        end = addr + length
        # munmap_back: do_munmap() until no VMA overlaps the range (one pass, unless a split
        # answered success without splitting: 3.12's bug F)
        vma = self.find_vma(mm, addr)
        while vma is not None and vma.vm_start < end:
            if self.do_munmap(mm, addr, length):
                self.trace.cover("mmap_region: ENOMEM unmapping the old range")
                return ENOMEM
            vma = self.find_vma(mm, addr)
        vm_flags = prot_to_flags(prot) | VM_MAY_ALL
        if noreserve:
            self.trace.cover("mmap_region: MAP_NORESERVE sets VM_NORESERVE")
            vm_flags |= VM_NORESERVE
        if self.accountable_mapping(vm_flags):
            vm_flags |= VM_ACCOUNT
        if self.mmap_merge(mm, addr, end, vm_flags) is not None:
            return OK
        self.trace.cover("mmap_region: new VMA")
        self.vma_link(mm, self.vm_area_alloc(mm, addr, end, addr, vm_flags))
        return OK

    def mmap_merge(self, mm: Mm, addr: int, end: int, vm_flags: int) -> Vma | None:
        """The merge attempt of mmap_region() for the hole [addr, end): vma_merge() with no anon_vma
        and pgoff = addr (6.x overrides it with vma_merge_new_range())."""
        _vma, prev = self.find_vma_prev(mm, addr)
        return self.vma_merge(mm, prev, addr, end, vm_flags, None, addr)

    # ---- copy_vma (mremap's move) ----

    def copy_vma(
        self, vma: Vma, addr: int, length: int, pgoff: int, keep_source: bool = False
    ) -> tuple[Vma | None, Vma]:
        """copy_vma() (mm/mmap.c, 2.6.34): the target VMA of an mremap move.

        An unfaulted source is re-based (pgoff = new address).  The target range merges with its
        neighbours if it can (vma_merge with the source's anon_vma); otherwise a struct copy with
        a cloned chain.  Returns (new VMA or None on ENOMEM, the source, which may have been
        merged into the new VMA).  ``keep_source`` (MREMAP_DONTUNMAP) is passed on to the merge
        attempt; only the 2026 stable fixes look at it (:mod:`rmapfuzz.kernels.stable_dontunmap`).
        """
        mm = vma.mm
        if vma.anon_vma is None:
            pgoff = addr
        source_start = vma.vm_start
        faulted = vma.anon_vma is not None
        new = self.copy_vma_merge(vma, addr, length, pgoff, keep_source)
        if new is not None:
            self.trace.cover(
                "copy_vma: a faulted source merges into the target's neighbours"
                if faulted
                else "copy_vma: an unfaulted source merges into the target's neighbours"
            )
            if new.vm_start <= source_start < new.vm_end:
                self.trace.cover("copy_vma: the source itself was merged")
                vma = new
            return new, vma
        new = self.vm_area_dup(vma)
        if self.anon_vma_clone(new, vma):
            self.trace.cover("copy_vma: ENOMEM from anon_vma_clone")
            self.remove_vma(new)
            return None, vma
        self.trace.cover(
            "copy_vma: new VMA for a faulted source"
            if vma.anon_vma is not None
            else "copy_vma: new VMA for an unfaulted source"
        )
        new.vm_start, new.vm_end, new.vm_pgoff = addr, addr + length, pgoff
        self.vma_link(mm, new)
        return new, vma

    def copy_vma_merge(self, vma: Vma, addr: int, length: int, pgoff: int, keep_source: bool = False) -> Vma | None:
        """The merge attempt of copy_vma() (2.6.34): vma_merge() of the target range with the
        source's flags and anon_vma (``keep_source`` changes nothing here)."""
        _v, prev = self.find_vma_prev(vma.mm, addr)
        return self.vma_merge(vma.mm, prev, addr, addr + length, vma.vm_flags, vma.anon_vma, pgoff)
