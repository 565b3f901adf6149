"""287d97ac0321 "vma_adjust: fix the copying of anon_vma chains" (Linus Torvalds, April 2010), the
fix of bug A, alone on 2.6.34-rc3: vma_adjust()'s importer clones the exporter's chain, not the
chain of vma_adjust()'s own first argument (docs/model.md, "The April 2010 thread").
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v2_6_34_rc3 import Linux2634rc3
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import Vma

C287D97AC = ("287d97ac0321", "vma_adjust: fix the copying of anon_vma chains")


class Linux2634rc3With287d97ac(Linux2634rc3):
    name = "2.6.34-rc3+287d97ac"
    base = "2.6.34-rc3"
    summary = "rc3 with Linus' vma_adjust fix only"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C287D97AC,)
    bugs: ClassVar[tuple[str, ...]] = ("B", "S", "C", "M", "L")

    def vma_adjust_import(self, vma: Vma, nxt: Vma, start: int, importer: Vma | None, exporter: Vma | None) -> Err:
        """vma_adjust() after 287d97ac0321: the importer clones the exporter's chain."""
        if (
            exporter is not None
            and importer is not None
            and exporter.anon_vma is not None
            and importer.anon_vma is None
        ):
            self.trace.cover("vma_adjust: an unfaulted importer gets an anon_vma")
            if self.anon_vma_clone(importer, exporter):
                return ENOMEM
            importer.anon_vma = exporter.anon_vma
        return None
