"""The fix of bug C, alone on 2.6.34-rc3: anon_vma_fork()'s error path unlinks the cloned chain.

When anon_vma_fork() has cloned the parent's chain and then fails to allocate the child's own
anon_vma or its link, 2.6.35 goes to ``out_error: unlink_anon_vmas(vma)`` before returning
-ENOMEM; the code as posted in January 2010 returned with the clone in place, and dup_mmap() then
freed the VMA that the parent's anon_vmas still link (bug C).  Andrew Morton asked about the
missing undo in review (<20100129151423.8b71b88e.akpm@linux-foundation.org>); the commit that added
it is not identified (it may have been folded into 5beb49305251 before the merge).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v2_6_34_rc3 import Linux2634rc3
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import Vma

FORK_UNLINK = ("(unidentified)", "anon_vma_fork() error path unlinks the cloned chain (in 2.6.35)")


class Linux2634rc3WithForkUnlink(Linux2634rc3):
    name = "2.6.34-rc3+fork-unlink"
    base = "2.6.34-rc3"
    summary = "rc3 with only anon_vma_fork()'s unlinking error path (for classifying bug C)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (FORK_UNLINK,)
    bugs: ClassVar[tuple[str, ...]] = ("A", "B", "S", "M", "L")

    def anon_vma_fork_failed(self, vma: Vma) -> Err:
        """The out_error label of anon_vma_fork() (2.6.35): unlink_anon_vmas() on the child VMA."""
        self.trace.cover("anon_vma_fork: the error path unlinks the cloned chain")
        self.unlink_anon_vmas(vma)
        return ENOMEM
