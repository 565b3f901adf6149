"""6.16: Lorenzo Stoakes' 879bca0a2c4f "mm/vma: fix incorrectly disallowed anonymous
VMA merges": the three-way is_mergeable_anon_vma().  An unfaulted VMA may merge with a faulted
one and the merge dups the faulted side's anon_vma and chain, unless that side "had uncowed
parents" (its chain is not a single entry: a fork child).  The existing-range paths dup; the
new-range path used by mremap (copy_vma -> vma_merge_new_range -> vma_expand) only dups from a
``next`` it removes, never from the VMA being copied: bug J (fixed by 61f67c230a5e, see
:mod:`rmapfuzz.kernels.v6_18`).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v6_15 import Linux615, VmaMergeStruct
from rmapfuzz.model.objects import Vma

C879BCA0A = ("879bca0a2c4f", "mm/vma: fix incorrectly disallowed anonymous VMA merges")


class Linux616(Linux615):
    name = "6.16"
    base = "6.15"
    summary = (
        "879bca0a2c4f three-way is_mergeable_anon_vma: unfaulted and faulted VMAs merge (with a dup) unless "
        "the faulted one is a fork child; vma_expand does not dup from mremap's source (bug J)"
    )
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C879BCA0A,)
    bugs: ClassVar[tuple[str, ...]] = ("J",)

    @staticmethod
    def vma_had_uncowed_parents(vma: Vma | None) -> bool:
        """vma_had_uncowed_parents() (879bca0a2c4f; vma_is_fork_child() since 3b617fd3d317): the VMA
        has an anon_vma and its chain has more than that one entry."""
        return vma is not None and vma.anon_vma is not None and len(vma.anon_vma_chain) > 1

    def vmg_fork_check_source(self, vmg: VmaMergeStruct) -> Vma | None:
        """The VMA whose anon_vma a merge would dup into an unfaulted target: ``vmg->middle`` (None for
        a new range, so mremap's source is never checked)."""
        return vmg.middle

    def vmg_anon_vma_mergeable(self, vmg: VmaMergeStruct, merge_next: bool) -> bool:
        """is_mergeable_anon_vma() (879bca0a2c4f), three ways:

        * target unfaulted, range faulted: merge (the range's anon_vma will be dup'ed into the
          target) unless the source of that anon_vma is a fork child;
        * target faulted, range unfaulted: merge unless the target is a fork child;
        * otherwise the anon_vmas must be the same (both NULL included).
        """
        tgt = vmg.next if merge_next else vmg.prev
        assert tgt is not None
        if tgt.anon_vma is None and vmg.anon_vma is not None:
            refused = self.vma_had_uncowed_parents(self.vmg_fork_check_source(vmg))
            self.trace.cover(
                "is_mergeable_anon_vma: a faulted range next to an unfaulted VMA is refused: fork child"
                if refused
                else "is_mergeable_anon_vma: a faulted range may merge with an unfaulted VMA"
            )
            return not refused
        if tgt.anon_vma is not None and vmg.anon_vma is None:
            refused = self.vma_had_uncowed_parents(tgt)
            self.trace.cover(
                "is_mergeable_anon_vma: an unfaulted range next to a fork child is refused"
                if refused
                else "is_mergeable_anon_vma: an unfaulted range may merge with a faulted VMA"
            )
            return not refused
        return vmg.anon_vma is tgt.anon_vma
