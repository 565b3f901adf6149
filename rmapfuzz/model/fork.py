"""kernel/fork.c (dup_mmap) and kernel/exit.c (exit_mm) as of 2.6.34."""

from __future__ import annotations

from rmapfuzz.model.core import ENOMEM, OK, Err
from rmapfuzz.model.mremap import MremapMixin
from rmapfuzz.model.objects import VM_DONTCOPY, VM_WIPEONFORK, Mm, Vma


class ForkMixin(MremapMixin):
    """kernel/fork.c at 2.6.34."""

    def dup_mmap(self, mm: Mm, oldmm: Mm) -> Err:
        """dup_mmap() (kernel/fork.c, 2.6.34): copy every VMA but VM_DONTCOPY ones.

        Each copy starts as a struct copy (anon_vma pointer included, chain empty), then
        anon_vma_fork() links it; copy_page_range() shares the ptes copy-on-write.  VM_WIPEONFORK
        (4.14+) copies become unfaulted and get no ptes.
        """
        for mpnt in list(oldmm.vmas):
            if mpnt.vm_flags & VM_DONTCOPY:
                self.trace.cover("dup_mmap: VM_DONTCOPY VMA left out")
                continue
            tmp = self.vm_area_dup(mpnt)
            tmp.mm = mm
            if self.features.wipeonfork and tmp.vm_flags & VM_WIPEONFORK:
                self.trace.cover("dup_mmap: VM_WIPEONFORK copy starts unfaulted")
                tmp.anon_vma = None
            elif self.anon_vma_fork(tmp, mpnt):
                self.trace.cover("dup_mmap: ENOMEM from anon_vma_fork")
                self.dup_mmap_failed(tmp)
                return ENOMEM
            mm.vmas.append(tmp)
            if not tmp.vm_flags & VM_WIPEONFORK:
                self.copy_page_range(tmp, mpnt)
        return None

    def dup_mmap_failed(self, tmp: Vma) -> None:
        """fail_nomem_anon_vma_fork: (2.6.34) the half-built VMA is freed as it is."""
        self.remove_vma(tmp)

    def do_fork(self, parent: Mm) -> str:
        """do_fork() -> copy_process() -> dup_mm(): a failed dup_mmap() tears the partial mm down
        with mmput() (exit_mmap); no pid is used up."""
        child = Mm(pid=self.next_pid)
        if self.dup_mmap(child, parent):
            self.exit_mmap(child)
            child.alive = False
            return ENOMEM
        self.mms[child.pid] = child
        self.next_pid += 1
        return OK

    def do_exit(self, mm: Mm) -> str:
        """do_exit() -> exit_mm() -> mmput() -> exit_mmap()."""
        self.exit_mmap(mm)
        mm.alive = False
        return OK
