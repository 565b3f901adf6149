"""2555283eb40d "mm/rmap: Fix anon_vma->degree ambiguity leading to double-reuse" (Jann Horn, 6.0-rc4,
CVE-2022-42703), the fix of bug G, alone on 3.19-rc4.

``degree`` is split in two: ``num_children`` (children whose tree is not empty, plus the
self-parent link of a root) and ``num_active_vmas`` (VMAs using the anon_vma as their anon_vma).
Fork-time reuse needs ``num_children < 2 and num_active_vmas == 0``: after the first reuse in a
fork ``num_active_vmas`` is 1, so a second VMA of the same fork cannot reuse it (bug G).
unlink_anon_vmas() clears ``vma->anon_vma`` after decrementing.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v3_19_rc4 import Linux319rc4
from rmapfuzz.model.core import ENOMEM, Err, FeatureChanges
from rmapfuzz.model.objects import AnonVma, AnonVmaChain, Vma

C2555283E = ("2555283eb40d", "mm/rmap: Fix anon_vma->degree ambiguity leading to double-reuse")


class Linux319rc4With2555283e(Linux319rc4):
    name = "3.19-rc4+2555283e"
    base = "3.19-rc4"
    summary = "3.19-rc4 with only Jann Horn's num_children/num_active_vmas fix (for classifying bug G)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C2555283E,)
    bugs: ClassVar[tuple[str, ...]] = ("D", "E", "L")

    feature_changes = FeatureChanges(degree=False, fork_counters=True)

    def anon_vma_prepare_new(self, av: AnonVma) -> None:
        """__anon_vma_prepare() (2555283eb40d): a new root counts its self-parent link in num_children."""
        av.num_children += 1

    def anon_vma_prepare_link(self, vma: Vma, av: AnonVma) -> None:
        """The locked part of __anon_vma_prepare() (2555283eb40d): link; one more active VMA."""
        vma.anon_vma = av
        self.anon_vma_chain_link(vma, av)
        av.num_active_vmas += 1

    def may_reuse_anon_vma(self, dst: Vma, src: Vma, av: AnonVma) -> bool:
        """The reuse test (2555283eb40d): no VMA uses it and at most one child."""
        return av.num_children < 2 and av.num_active_vmas == 0

    def anon_vma_clone(self, dst: Vma, src: Vma) -> Err:
        """anon_vma_clone() (2555283eb40d): as 3.19, but the anon_vma dst ends up with gets one
        more active VMA instead of a degree."""
        for pavc in reversed(list(src.anon_vma_chain)):
            if not self.anon_vma_chain_alloc():
                self.trace.cover(
                    "anon_vma_clone: ENOMEM with dst->anon_vma set"
                    if dst.anon_vma is not None
                    else "anon_vma_clone: ENOMEM"
                )
                return self.anon_vma_clone_failed(dst)
            av = pavc.anon_vma
            self.anon_vma_chain_link(dst, av)
            if dst.anon_vma is None and self.may_reuse_anon_vma(dst, src, av):
                self.trace.cover("anon_vma_clone: fork reuses an ancestor's anon_vma")
                self.trace.reuse(dst, av)
                dst.anon_vma = av
        if dst.anon_vma is not None:
            dst.anon_vma.num_active_vmas += 1
        return None

    def anon_vma_fork(self, vma: Vma, pvma: Vma) -> Err:
        """anon_vma_fork() (2555283eb40d): a new anon_vma has one active VMA; its parent one more child."""
        if pvma.anon_vma is None:
            return None
        vma.anon_vma = None
        if self.anon_vma_clone(vma, pvma):
            return ENOMEM
        if vma.anon_vma is not None:
            return None
        av = self.anon_vma_alloc()
        if av is None:
            self.trace.cover("anon_vma_fork: ENOMEM from anon_vma_alloc after the clone")
            return self.anon_vma_fork_failed(vma)
        av.num_active_vmas += 1
        if not self.anon_vma_chain_alloc():
            self.trace.cover("anon_vma_fork: ENOMEM from anon_vma_chain_alloc after the clone")
            self.put_anon_vma(av)
            return self.anon_vma_fork_failed(vma)
        self.trace.cover("anon_vma_fork: new anon_vma for the child")
        av.root = pvma.anon_vma.root
        av.parent = pvma.anon_vma
        assert av.root is not None
        self.get_anon_vma(av.root)
        vma.anon_vma = av
        self.anon_vma_chain_link(vma, av)
        av.parent.num_children += 1
        return None

    def unlink_anon_vmas(self, vma: Vma) -> None:
        """unlink_anon_vmas() (2555283eb40d): an emptied tree takes a child off its parent; the VMA's
        anon_vma loses an active VMA, and ``vma->anon_vma`` is cleared."""
        emptied: list[AnonVmaChain] = []
        for avc in list(vma.anon_vma_chain):
            av = avc.anon_vma
            av.head.remove(avc)
            if not av.head:
                self.trace.cover("unlink_anon_vmas: an emptied anon_vma leaves its parent")
                if av.parent is not None:
                    av.parent.num_children -= 1
                emptied.append(avc)
                continue
            vma.anon_vma_chain.remove(avc)
        if vma.anon_vma is not None:
            vma.anon_vma.num_active_vmas -= 1
            vma.anon_vma = None
        for avc in emptied:
            self.put_anon_vma(avc.anon_vma)
            vma.anon_vma_chain.remove(avc)
