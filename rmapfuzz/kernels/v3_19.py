"""3.19: 3.19-rc4 and b800c91a0517 "mm: fix corner case in anon_vma endless growing prevention"
(Konstantin Khlebnikov, January 2015), the fix of bug D.

vma_adjust()'s import sets ``importer->anon_vma`` *before* cloning, so clone's reuse branch cannot
run there.  Without it (:mod:`.v3_19_rc4`) the import can hand the degree increment to some other
anon_vma, or to none, and the exporter's anon_vma is left one short (bug D).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v3_19_rc4 import Linux319rc4
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import Vma

CB800C91A = ("b800c91a0517", "mm: fix corner case in anon_vma endless growing prevention")


class Linux319(Linux319rc4):
    name = "3.19"
    base = "3.19-rc4"
    summary = "degree reuse with b800c91a0517: vma_adjust sets the importer's anon_vma before cloning"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (CB800C91A,)
    bugs: ClassVar[tuple[str, ...]] = ("E", "G", "L")

    def vma_adjust_import(self, vma: Vma, nxt: Vma, start: int, importer: Vma | None, exporter: Vma | None) -> Err:
        """vma_adjust() (b800c91a0517): ``importer->anon_vma`` is set first, so the clone counts it,
        and cleared again if the clone fails (as posted to linux-mm; Leon Yu's 4.0 fix later moved
        that clearing into anon_vma_clone())."""
        if (
            exporter is not None
            and importer is not None
            and exporter.anon_vma is not None
            and importer.anon_vma is None
        ):
            self.trace.cover("vma_adjust: an unfaulted importer gets an anon_vma")
            importer.anon_vma = exporter.anon_vma
            if self.anon_vma_clone(importer, exporter):
                importer.anon_vma = None
                return ENOMEM
        return None
