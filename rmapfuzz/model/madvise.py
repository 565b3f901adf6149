"""mm/madvise.c as of 2.6.34: DONTNEED, DONTFORK/DOFORK, and the reclaim op.

``pageout`` is MADV_PAGEOUT (5.4+); on older kernels it stands for memory pressure reaching these
pages (shrink_page_list() through the rmap walk, as hibernation did in April 2010).
WIPEONFORK/KEEPONFORK exist from 4.14 on; before that they are EINVAL, as the kernel says.
"""

from __future__ import annotations

from rmapfuzz.model.core import EINVAL, ENOMEM, OK, Err
from rmapfuzz.model.mprotect import MprotectMixin
from rmapfuzz.model.objects import VM_DONTCOPY, VM_WIPEONFORK, Mm, Page, Vma
from rmapfuzz.ops import ADVICES


class MadviseMixin(MprotectMixin):
    """mm/madvise.c at 2.6.34."""

    def madvise_behavior_valid(self, advice: str) -> bool:
        if advice in ("wipeonfork", "keeponfork"):
            return self.features.wipeonfork
        return advice in ADVICES

    def madvise_behavior(self, vma: Vma, prev: Vma | None, start: int, end: int, advice: str) -> tuple[Err, Vma]:
        """madvise_behavior() (mm/madvise.c, 2.6.34): a flag change that merges or splits like mprotect."""
        new_flags = vma.vm_flags
        if advice == "dontfork":
            new_flags |= VM_DONTCOPY
        elif advice == "dofork":
            new_flags &= ~VM_DONTCOPY
        elif advice == "wipeonfork":
            new_flags |= VM_WIPEONFORK
        elif advice == "keeponfork":
            new_flags &= ~VM_WIPEONFORK
        if new_flags == vma.vm_flags:
            return None, vma
        self.trace.cover("madvise_behavior: a flag change merges or splits")
        return self.vma_modify_flags(vma, prev, start, end, new_flags)

    def madvise_dontneed(self, vma: Vma, start: int, end: int) -> tuple[Err, Vma]:
        """madvise_dontneed(): zap the range; the anon_vma and its links stay."""
        self.trace.cover(
            "madvise_dontneed: zap a faulted range"
            if vma.anon_vma is not None
            else "madvise_dontneed: zap an unfaulted range"
        )
        self.zap_page_range(vma.mm, start, end)
        return None, vma

    def madvise_pageout(self, vma: Vma, start: int, end: int) -> tuple[Err, Vma]:
        """madvise_pageout() (mm/madvise.c, 5.4+), or reclaim reaching these pages on older kernels:
        each anonymous page mapped here goes through shrink_page_list() (swap out via the rmap walk)."""
        seen: set[int] = set()
        pages: list[Page] = []
        for addr in range(start, end):
            pte = vma.mm.ptes.get(addr)
            if pte is None or pte.swap is not None or pte.page is None or id(pte.page) in seen:
                continue
            if self.features.pageout_skips_shared and pte.page.mapcount != 1:
                self.trace.cover("madvise_pageout: a shared page is skipped")
                continue
            seen.add(id(pte.page))
            pages.append(pte.page)
        for page in pages:
            if not page.freed and page.mapcount > 0:
                self.shrink_page(page)
        return None, vma

    def madvise_vma(self, vma: Vma, prev: Vma | None, start: int, end: int, advice: str) -> tuple[Err, Vma]:
        """madvise_vma(): dispatch one VMA's part of the range."""
        if advice == "dontneed":
            return self.madvise_dontneed(vma, start, end)
        if advice == "pageout":
            return self.madvise_pageout(vma, start, end)
        return self.madvise_behavior(vma, prev, start, end, advice)

    def sys_madvise(self, mm: Mm, start: int, length: int, advice: str) -> str:
        """sys_madvise() (mm/madvise.c, 2.6.34): every mapped part of the range is advised; a hole
        makes the result ENOMEM but does not stop the walk."""
        if not self.madvise_behavior_valid(advice):
            return EINVAL
        if length == 0:
            return OK
        end = start + length
        vma, prev = self.find_vma_prev(mm, start)
        if vma is not None and start > vma.vm_start:
            prev = vma
        unmapped_error: str | None = None
        while True:
            if vma is None:
                return ENOMEM
            if start < vma.vm_start:
                self.trace.cover("sys_madvise: a hole in the range")
                unmapped_error = ENOMEM
                start = vma.vm_start
                if start >= end:
                    return ENOMEM
            tmp = min(vma.vm_end, end)
            err, prev = self.madvise_vma(vma, prev, start, tmp, advice)
            if err:
                return err
            start = max(tmp, prev.vm_end)
            if start >= end:
                return unmapped_error or OK
            vma = self.vma_next(prev)
