"""Leon Yu, "mm: fix anon_vma->degree underflow in anon_vma endless growing prevention" (4.0;
3fe89b3e2a7b per a distribution's backport table, the patch itself read on linux-mm, March 2015),
the fix of bug E, alone on 3.19-rc4.

anon_vma_clone()'s enomem_failure path clears ``dst->anon_vma`` before unlink_anon_vmas(dst), so
unlinking does not take a degree (later an active VMA) off an anon_vma that never counted dst;
vma_adjust() no longer needs to clear the importer's on error.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v3_19_rc4 import Linux319rc4
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import Vma

C3FE89B3E = ("3fe89b3e2a7b", "mm: fix anon_vma->degree underflow in anon_vma endless growing prevention")


class Linux319rc4With3fe89b3e(Linux319rc4):
    name = "3.19-rc4+3fe89b3e"
    base = "3.19-rc4"
    summary = "3.19-rc4 with only Leon Yu's anon_vma_clone() ENOMEM fix (for classifying bug E)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C3FE89B3E,)
    bugs: ClassVar[tuple[str, ...]] = ("D", "G", "L")

    def anon_vma_clone_failed(self, dst: Vma) -> Err:
        """enomem_failure (Leon Yu, 4.0): ``dst->anon_vma`` is cleared before unlinking."""
        dst.anon_vma = None
        self.unlink_anon_vmas(dst)
        return ENOMEM
