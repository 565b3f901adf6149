"""3.12: Oleg Nesterov's ef0855d334e1 "mm: mempolicy: turn vma_set_policy() into vma_dup_policy()".

__split_vma() now sets ``err`` from vma_dup_policy() before anon_vma_clone(), and the clone's failure
jumps to the cleanup without setting it again: the split answers 0 with nothing split (bug F,
found by Daniel Forrest's audit of anon_vma_clone()'s callers, linux-mm, November 2014,
<20141126210559.GA12060@cosmos.ssec.wisc.edu>; fixed by c4ea95d7cd08, :mod:`.fix_c4ea95d7`).  The
caller goes on with the VMA whole: mprotect_fixup() gives all of it the new protection;
do_munmap() keeps an unsplit head and detaches an unsplit tail whole, zapping only the range
(:meth:`rmapfuzz.model.mmap.MmapMixin.do_munmap`), so the tail's pages past the range stay mapped
(by their ptes, or only by their mapcount when free_pgtables() frees the page table under them)
while its anon_vmas are unlinked, and may be freed under them (no-dangling; docs/model.md#bug-f).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v3_7 import Linux37
from rmapfuzz.model.core import Err

CEF0855D3 = ("ef0855d334e1", "mm: mempolicy: turn vma_set_policy() into vma_dup_policy()")


class Linux312(Linux37):
    name = "3.12"
    base = "3.7"
    summary = "__split_vma() loses anon_vma_clone()'s ENOMEM: a failed split answers success"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (CEF0855D3,)
    bugs: ClassVar[tuple[str, ...]] = ("L", "F")

    def split_vma_clone_error(self) -> Err:
        """__split_vma() (3.12 to 3.17): ``err`` holds vma_dup_policy()'s 0 at out_free_mpol."""
        self.trace.cover("__split_vma: anon_vma_clone's ENOMEM is lost, the split answers success")
        return None
