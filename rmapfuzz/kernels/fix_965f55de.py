"""965f55dea0e3 "mmap: avoid merging cloned VMAs" (Shaohua Li, May 2011, 3.0), alone on 2.6.34-rc3.

is_mergeable_anon_vma() gains the existing neighbour ``vma``: an unfaulted side may merge with a
faulted one only if that neighbour's chain is a single anon_vma (or there is no neighbour, as in
vma_merge()'s prev-vs-next check).  The motivation was scalability (a range merged into a forked
VMA takes on its parent's lock); the side effect (docs/model.md, bug M) is that a *faulted* range
never merges into an *unfaulted* neighbour, whose chain is empty.  That closes bug M, the mremap
move of a faulted VMA next to an unfaulted one.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v2_6_34_rc3 import Linux2634rc3
from rmapfuzz.model.objects import AnonVma, Vma

C965F55DE = ("965f55dea0e3", "mmap: avoid merging cloned VMAs")


class Linux2634rc3With965f55de(Linux2634rc3):
    name = "2.6.34-rc3+965f55de"
    base = "2.6.34-rc3"
    summary = "rc3 with only Shaohua Li's singular-chain merge rule (for classifying bug M)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C965F55DE,)
    bugs: ClassVar[tuple[str, ...]] = ("A", "B", "S", "C", "L")

    def is_mergeable_anon_vma(self, av1: AnonVma | None, av2: AnonVma | None, vma: Vma | None) -> bool:
        """is_mergeable_anon_vma() (965f55dea0e3): a NULL side merges only next to a singular chain.

        ``vma`` is the existing neighbour; None (the prev-vs-next check) counts as singular.
        """
        if (av1 is None or av2 is None) and (vma is None or len(vma.anon_vma_chain) == 1):
            return True
        if av1 is not av2:
            self.trace.cover(
                "is_mergeable_anon_vma: an unfaulted side next to a fork child is refused"
                if av1 is None or av2 is None
                else "is_mergeable_anon_vma: two different anon_vmas are refused"
            )
            return False
        return True
