"""mm/mremap.c as of 2.6.34: in-place resize, and the move (MREMAP_MAYMOVE|MREMAP_FIXED).

A move builds the target with copy_vma() (mm/mmap.c), moves the ptes (the pages keep their
mapping and index; the target's vm_pgoff is what makes vma_address() find them again) and unmaps
the old range, which unlinks the old VMA's anon_vmas.
"""

from __future__ import annotations

from rmapfuzz.model.core import EFAULT, EINVAL, ENOMEM, OK, Err
from rmapfuzz.model.madvise import MadviseMixin
from rmapfuzz.model.objects import Mm, Vma


class MremapMixin(MadviseMixin):
    """mm/mremap.c at 2.6.34."""

    def vma_to_resize(self, mm: Mm, addr: int, old_len: int, new_len: int) -> tuple[Err, Vma | None]:
        """vma_to_resize() (2.6.34): the old range must lie inside one VMA (else EFAULT)."""
        vma = self.find_vma(mm, addr)
        if vma is None or vma.vm_start > addr:
            return EFAULT, None
        if old_len > vma.vm_end - addr:
            return EFAULT, None
        return None, vma

    def vma_expandable(self, vma: Vma, delta: int) -> bool:
        """vma_expandable(): nothing mapped in the way of an in-place growth."""
        nxt = self.vma_next(vma)
        return nxt is None or nxt.vm_start >= vma.vm_end + delta

    def mremap_expand_in_place(self, vma: Vma, new_end: int) -> Err:
        """2.6.34 grows with a plain vma_adjust(): no attempt to merge with the next VMA; no error."""
        self.vma_adjust(vma, vma.vm_start, new_end, vma.vm_pgoff)
        return None

    @staticmethod
    def move_page_tables(mm: Mm, old_addr: int, new_addr: int, length: int) -> None:
        """move_page_tables() / move_ptes(): the ptes move, the pages are untouched."""
        ptes = mm.ptes
        moved = [(i, ptes.pop(old_addr + i)) for i in range(length) if old_addr + i in ptes]
        for i, pte in moved:
            ptes[new_addr + i] = pte

    def move_vma(
        self, vma: Vma, old_addr: int, old_len: int, new_len: int, new_addr: int, dontunmap: bool = False
    ) -> str:
        """move_vma() (mm/mremap.c, 2.6.34): copy_vma(), move_page_tables(), then the old range goes
        (:meth:`release_old_range`).

        The VM_ACCOUNT hiding around the unmap changes no flag of a VMA that survives, so it is
        not modelled.
        """
        mm = vma.mm
        new_pgoff = vma.vm_pgoff + (old_addr - vma.vm_start)
        self.trace.moving(vma)
        moving = vma
        new_vma, vma = self.copy_vma(vma, new_addr, new_len, new_pgoff, keep_source=dontunmap)
        if new_vma is None:
            self.trace.cover("move_vma: ENOMEM from copy_vma")
            return ENOMEM
        self.move_page_tables(mm, old_addr, new_addr, old_len)
        self.trace.moved(moving, new_vma)
        self.release_old_range(vma, new_vma, old_addr, old_len, dontunmap)
        return OK

    def release_old_range(self, vma: Vma, new_vma: Vma, old_addr: int, old_len: int, dontunmap: bool) -> None:
        """The end of move_vma() (2.6.34): do_munmap() of the old range (MREMAP_DONTUNMAP is 5.7+)."""
        self.do_munmap(vma.mm, old_addr, old_len)

    def mremap_to(self, mm: Mm, addr: int, old_len: int, new_addr: int, new_len: int, flags: frozenset[str]) -> str:
        """mremap_to() (mm/mremap.c, 2.6.34): the target is unmapped before the source is checked."""
        if self.mremap_overlaps(addr, old_len, new_addr, new_len):
            return EINVAL
        self.trace.cover("mremap_to: MREMAP_FIXED move")
        err = self.do_munmap(mm, new_addr, new_len)
        if err:
            return err
        if old_len >= new_len:
            err = self.do_munmap(mm, addr + new_len, old_len - new_len)
            if err and old_len != new_len:
                return err
            old_len = new_len
        err, vma = self.vma_to_resize(mm, addr, old_len, new_len)
        if err or vma is None:
            return err or EFAULT
        return self.move_vma(vma, addr, old_len, new_len, new_addr, dontunmap="dontunmap" in flags)

    @staticmethod
    def mremap_overlaps(addr: int, old_len: int, new_addr: int, new_len: int) -> bool:
        """mremap_to()'s overlap test (2.6.34): the new range starts at or below the old address and
        reaches past it, or starts inside the old range (so an old length of 0 at the new
        range's start overlaps)."""
        return new_addr <= addr < new_addr + new_len or addr <= new_addr < addr + old_len

    def mremap_flags_valid(self, flags: frozenset[str]) -> bool:
        """2.6.34 knows MREMAP_MAYMOVE and MREMAP_FIXED only."""
        return "dontunmap" not in flags or self.features.dontunmap

    def do_mremap(self, mm: Mm, addr: int, old_len: int, new_len: int, flags: frozenset[str], new_addr: int) -> str:
        """do_mremap() (mm/mremap.c, 2.6.34)."""
        if not self.mremap_flags_valid(flags) or new_len <= 0:
            return EINVAL
        if "fixed" in flags:
            if "maymove" not in flags:
                return EINVAL
            return self.mremap_to(mm, addr, old_len, new_addr, new_len, flags)
        if old_len >= new_len:
            self.trace.cover("do_mremap: shrink in place")
            err = self.do_munmap(mm, addr + new_len, old_len - new_len)
            if err and old_len != new_len:
                return err
            return OK
        err, vma = self.vma_to_resize(mm, addr, old_len, new_len)
        if err or vma is None:
            return err or EFAULT
        if old_len == vma.vm_end - addr and self.vma_expandable(vma, new_len - old_len):
            self.trace.cover("do_mremap: grow in place")
            return self.mremap_expand_in_place(vma, addr + new_len) or OK
        self.trace.cover("do_mremap: ENOMEM, no room to grow in place")
        return ENOMEM
