"""6.0: Jann Horn's 2555283eb40d "mm/rmap: Fix anon_vma->degree ambiguity leading to double-reuse"
(6.0-rc4, CVE-2022-42703; kernel-rmap.md §4.4, §5.2, §5.3, §5.8).

``degree`` is split in two: ``num_children`` (children whose tree is not empty, plus the
self-parent link of a root) and ``num_active_vmas`` (VMAs using the anon_vma as their anon_vma).
Fork-time reuse needs ``num_children < 2 and num_active_vmas == 0``: after the first reuse in a
fork ``num_active_vmas`` is 1, so a second VMA of the same fork cannot reuse it (bug G).
unlink_anon_vmas() clears ``vma->anon_vma`` after decrementing.

``3.19+2555283e`` is 3.19 with only this commit (for classifying bug G).  ``6.0`` adds what else
changed in these functions between 3.19 and 6.0:

* Leon Yu, "mm: fix anon_vma->degree underflow in anon_vma endless growing prevention" (4.0-rc,
  [id unverified]): anon_vma_clone()'s ENOMEM path clears ``dst->anon_vma`` before unlinking (bug E).
* Wei Yang, "mm/rmap.c: don't reuse anon_vma if we just want a copy" (2019, [id unverified]):
  reuse only when ``src->anon_vma`` is set.
* MADV_WIPEONFORK (4.14) is available.
* dba58d3b8c50 (4.17): mremap() with an old length of 0 on a private mapping is EINVAL.
* Andrea Arcangeli, e86f15ee64d8 (4.8; id from memory, the code read in later mm/mmap.c): vma_adjust()
  case 6 imports the anon_vma of the VMA after next on its first pass, before next is freed, so a
  failed anon_vma_clone() no longer leaves mprotect_fixup() with a freed VMA.

Not modelled between 3.19 and 6.0: the 4.8 role swap of vma_merge() case 8 (the model keeps the
2.6.34 orientation), MREMAP_DONTUNMAP (5.7), per-VMA locking.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v3_7 import Linux37
from rmapfuzz.kernels.v3_19 import Linux319
from rmapfuzz.model.core import EINVAL, ENOMEM, Err, FeatureChanges
from rmapfuzz.model.objects import AnonVma, AnonVmaChain, Mm, Vma

C2555283E = ("2555283eb40d", "mm/rmap: Fix anon_vma->degree ambiguity leading to double-reuse")


class Linux319With2555283e(Linux319):
    name = "3.19+2555283e"
    base = "3.19"
    summary = "3.19 with only Jann Horn's num_children/num_active_vmas fix (for classifying bug G)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C2555283E,)
    bugs: ClassVar[tuple[str, ...]] = ("E", "L")

    feature_changes = FeatureChanges(degree=False, fork_counters=True)

    def anon_vma_prepare_new(self, av: AnonVma) -> None:
        """__anon_vma_prepare() (2555283eb40d): a new root counts its self-parent link in num_children."""
        av.num_children += 1

    def anon_vma_prepare_link(self, vma: Vma, av: AnonVma) -> None:
        """The locked part of __anon_vma_prepare() (2555283eb40d): link; one more active VMA."""
        vma.anon_vma = av
        self.anon_vma_chain_link(vma, av)
        av.num_active_vmas += 1

    def vma_to_resize(self, mm: Mm, addr: int, old_len: int, new_len: int) -> tuple[Err, Vma | None]:
        """vma_to_resize() (4.17+, dba58d3b8c50 "mm/mremap: fail map duplication attempts for
        private mappings"): an old length of 0 duplicates a mapping, which only a shared one may."""
        err, vma = super().vma_to_resize(mm, addr, old_len, new_len)
        if vma is not None and old_len == 0:  # every VMA of the model is private anonymous
            return EINVAL, None
        return err, vma

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


E86F15EE = ("e86f15ee64d8", "mm: vma_merge: fix vm_page_prot SMP race condition against rmap_walk")


class Linux37WithE86f15ee(Linux37):
    name = "3.7+e86f15ee"
    base = "3.7"
    summary = "3.7 with only 4.8's first-pass import of vma_adjust() case 6 (for classifying bug L)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (E86F15EE,)
    bugs: ClassVar[tuple[str, ...]] = ()
    feature_changes = FeatureChanges(case6_imports_first=True)


LEON_YU = ("(unverified)", "mm: fix anon_vma->degree underflow in anon_vma endless growing prevention")


class CloneFailureClearsAnonVma:
    """Leon Yu's 4.0 fix to anon_vma_clone()'s enomem_failure path, shared by the overlays that carry it."""

    def anon_vma_clone_failed(self, dst: Vma) -> Err:
        """enomem_failure (Leon Yu, 4.0): ``dst->anon_vma`` is cleared before unlinking."""
        dst.anon_vma = None
        self.unlink_anon_vmas(dst)  # type: ignore[attr-defined]
        return ENOMEM


class Linux319WithLeonYu(CloneFailureClearsAnonVma, Linux319):
    name = "3.19+degree-underflow-fix"
    base = "3.19"
    summary = "3.19 with only Leon Yu's anon_vma_clone() ENOMEM fix (for classifying bug E)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (LEON_YU,)
    bugs: ClassVar[tuple[str, ...]] = ("G", "L")


class Linux60(CloneFailureClearsAnonVma, Linux319With2555283e):
    name = "6.0"
    base = "3.19+2555283e"
    summary = "num_children/num_active_vmas reuse rule, clone's ENOMEM path clears dst->anon_vma"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        LEON_YU,
        ("(unverified)", "mm/rmap.c: don't reuse anon_vma if we just want a copy"),
        E86F15EE,
    )
    bugs: ClassVar[tuple[str, ...]] = ()

    feature_changes = FeatureChanges(wipeonfork=True, case6_imports_first=True)

    def may_reuse_anon_vma(self, dst: Vma, src: Vma, av: AnonVma) -> bool:
        """The reuse test (6.0): also only when src has an anon_vma (Wei Yang, 2019)."""
        return src.anon_vma is not None and super().may_reuse_anon_vma(dst, src, av)
