"""2.6.34 (final): 2.6.34-rc4 and the April 2010 rule for a non-exclusive page's anon_vma
(:mod:`.fix_ea90002b`, the fix of bug S).

Not changed (checked by reading the code around 2.6.34): copy_vma()/vma_merge() still let mremap
merge a faulted range into an unfaulted neighbour without importing the anon_vma (bug M, closed as
a side effect by 965f55dea0e3 in 3.0).  anon_vma_fork()'s error path (bug C): the January 2010
posting of the anon_vma_chain patch did not undo the clone (Andrew Morton asked about it in review,
<20100129151423.8b71b88e.akpm@linux-foundation.org>) and 2.6.35 unlinks; whether the merged 2.6.34
code already did could not be established, so the model keeps the posted behaviour until 2.6.35.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.fix_ea90002b import CLONE_ORDER, EA90002B, Linux2634rc3WithEa90002b
from rmapfuzz.kernels.v2_6_34_rc4 import Linux2634rc4


class Linux2634(Linux2634rc3WithEa90002b, Linux2634rc4):
    """2.6.34-rc4 and the fix of bug S; no code of its own."""

    name = "2.6.34"
    base = "2.6.34-rc4"
    summary = "2.6.34 final: clone keeps the chain order, non-exclusive pages go to the oldest anon_vma"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (CLONE_ORDER, EA90002B)
    bugs: ClassVar[tuple[str, ...]] = ("C", "M", "L")
