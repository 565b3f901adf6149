"""3a206a8649f8 "mm/rmap: clear vma->anon_vma on error" (Lorenzo Stoakes, March 2026; 7.0-rc), the fix
of bug K, alone on 7.0-rc.

cleanup_partial_anon_vmas() also clears ``vma->anon_vma``: a VMA whose clone failed goes back to
unfaulted, so nothing points at an anon_vma that never counted it, a later unlink takes nothing off
num_active_vmas, and maybe_reuse_anon_vma() is not misled by a count one short.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v7_0 import Linux70rc, VmaOperation
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import Vma

C3A206A86 = ("3a206a8649f8", "mm/rmap: clear vma->anon_vma on error")


class Linux70rcWith3a206a86(Linux70rc):
    name = "7.0-rc+3a206a86"
    base = "7.0-rc"
    summary = "7.0-rc with only the fix that clears vma->anon_vma when anon_vma_clone() fails (bug K)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C3A206A86,)
    bugs: ClassVar[tuple[str, ...]] = ()

    def cleanup_partial_anon_vmas(self, dst: Vma, operation: VmaOperation) -> Err:
        """cleanup_partial_anon_vmas() (3a206a8649f8): free the entries and reset ``dst->anon_vma``."""
        if operation == "merge_unfaulted":
            self.trace.cover("cleanup_partial_anon_vmas: a merge target goes back to unfaulted")
        dst.anon_vma = None
        return ENOMEM
