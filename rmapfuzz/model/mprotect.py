"""mm/mprotect.c as of 2.6.34: sys_mprotect() and mprotect_fixup().

mprotect is the operation that splits and re-merges VMAs in place, and so the one that drives
every vma_merge() case the April 2010 bugs went through.
"""

from __future__ import annotations

from rmapfuzz.model.core import ENOMEM, OK, Err
from rmapfuzz.model.mmap import MmapMixin
from rmapfuzz.model.objects import VM_ACCOUNT, VM_NORESERVE, VM_PROT_MASK, VM_WRITE, Mm, Vma, prot_to_flags
from rmapfuzz.model.trace import UseAfterFree


class MprotectMixin(MmapMixin):
    """mm/mprotect.c at 2.6.34."""

    def vma_modify_flags(self, vma: Vma, prev: Vma | None, start: int, end: int, newflags: int) -> tuple[Err, Vma]:
        """Merge [start, end) of ``vma`` with its neighbours under ``newflags``, else split it out.

        The shape mprotect_fixup() and madvise_behavior() share in 2.6.34 (6.6+ factors it out as
        vma_modify_flags()).  Returns (error, the VMA now covering the range: the new ``prev``).
        """
        pgoff = vma.vm_pgoff + (start - vma.vm_start)
        merged = self.vma_merge(vma.mm, prev, start, end, newflags, vma.anon_vma, pgoff)
        if merged is not None:
            merged.vm_flags = newflags
            return None, merged
        if vma.freed:  # vma_adjust() failed after freeing it (case 6 before 4.8): the caller uses it
            raise UseAfterFree(f"vma_merge() failed after vma_adjust() freed {vma.name}; the caller uses it", [vma])
        return self.split_out(vma, start, end, newflags)

    def split_out(self, vma: Vma, start: int, end: int, newflags: int) -> tuple[Err, Vma]:
        """No merge: split [start, end) out of ``vma`` (__split_vma at each end that is not the
        VMA's) and give it ``newflags``."""
        if start != vma.vm_start:
            err = self.split_vma(vma.mm, vma, start, new_below=True)
            if err:
                self.trace.cover("split_out: ENOMEM splitting the head off")
                return err, vma
        if end != vma.vm_end:
            err = self.split_vma(vma.mm, vma, end, new_below=False)
            if err:
                self.trace.cover("split_out: ENOMEM splitting the tail off, after the head")
                return err, vma
        vma.vm_flags = newflags
        return None, vma

    def mprotect_fixup(self, vma: Vma, prev: Vma | None, start: int, end: int, newflags: int) -> tuple[Err, Vma]:
        """mprotect_fixup() (mm/mprotect.c, 2.6.34).

        Making a private mapping writable that never was charges it: VM_ACCOUNT is added and never
        taken away again, so it can block later merges.  A MAP_NORESERVE mapping (VM_NORESERVE) is
        never charged.
        """
        oldflags = vma.vm_flags
        if newflags == oldflags:
            return None, vma
        newflags = self.mprotect_charge(vma, oldflags, newflags)
        err, vma = self.vma_modify_flags(vma, prev, start, end, newflags)
        if err:
            return err, vma
        self.change_protection(vma, start, end)
        return None, vma

    def mprotect_charge(self, vma: Vma, oldflags: int, newflags: int) -> int:
        """mprotect_fixup()'s accounting (2.6.34): the first write permission of a private mapping
        charges it, unless it is VM_NORESERVE."""
        if not newflags & VM_WRITE or oldflags & (VM_ACCOUNT | VM_WRITE):
            return newflags
        if oldflags & VM_NORESERVE:
            self.trace.cover("mprotect_fixup: first write permission of a VM_NORESERVE mapping, not charged")
            return newflags
        self.trace.cover("mprotect_fixup: first write permission charges VM_ACCOUNT")
        return newflags | VM_ACCOUNT

    def sys_mprotect(self, mm: Mm, start: int, length: int, prot: str) -> str:
        """sys_mprotect() (mm/mprotect.c, 2.6.34): VMA by VMA; a hole ends it with ENOMEM after the
        VMAs before the hole were already changed."""
        if length == 0:
            return OK
        end = start + length
        vm_flags = prot_to_flags(prot)
        vma, prev = self.find_vma_prev(mm, start)
        if vma is None or vma.vm_start > start:
            return ENOMEM
        if start > vma.vm_start:
            prev = vma
        nstart = start
        while True:
            newflags = vm_flags | (vma.vm_flags & ~VM_PROT_MASK)
            tmp = min(vma.vm_end, end)
            err, prev = self.mprotect_fixup(vma, prev, nstart, tmp, newflags)
            if err:
                return err
            nstart = max(tmp, prev.vm_end)
            if nstart >= end:
                return OK
            nxt = self.vma_next(prev)
            if nxt is None or nxt.vm_start != nstart:
                self.trace.cover("sys_mprotect: ENOMEM at a hole after changing VMAs before it")
                return ENOMEM
            vma = nxt
