"""734537c9cb72 "mm: fix use-after-free if memory allocation failed in vma_adjust()" (Kirill A.
Shutemov, 4.8), the fix of bug L, alone on 2.6.34-rc3.

vma_adjust()'s case 6 (the middle VMA removed together with next) used to go round twice through
the anon_vma import: on its second pass, after next had been freed, it imported from the VMA after
next, and if that anon_vma_clone() failed, vma_adjust() returned -ENOMEM with next gone; the
mprotect_fixup()/madvise caller went on with the freed VMA.  734537c9cb72 chooses that exporter on
the first pass (``if (remove_next == 2 && !next->anon_vma) exporter = next->vm_next``), so the one
allocation happens before anything is freed.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v2_6_34_rc3 import Linux2634rc3
from rmapfuzz.model.core import FeatureChanges

C734537C9 = ("734537c9cb72", "mm: fix use-after-free if memory allocation failed in vma_adjust()")


class Linux2634rc3With734537c9(Linux2634rc3):
    name = "2.6.34-rc3+734537c9"
    base = "2.6.34-rc3"
    summary = "rc3 with only 4.8's first-pass exporter of vma_adjust() case 6 (for classifying bug L)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C734537C9,)
    bugs: ClassVar[tuple[str, ...]] = ("A", "B", "S", "C", "M")
    feature_changes = FeatureChanges(case6_imports_first=True)
