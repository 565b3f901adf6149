"""3.19-rc4: Konstantin Khlebnikov's end to the unbounded anon_vma hierarchy (docs/model.md, "Generations").

The name stands for 7a3ef208e662 without its follow-up b800c91a0517 (:mod:`.v3_19`, the fix of bug
D); both went into the 3.19-rc4 batch (Konstantin: "already fixed in v3.19-rc4 by b800c91a0517"), so
no tagged kernel had the first without the second.

* 7a3ef208e662 "mm: prevent endless growth of anon_vma hierarchy" (3.19-rc4): anon_vma gets a
  ``parent`` and a ``degree``.  degree is meant to be (VMAs using it as their anon_vma) + (children
  whose tree is not empty, plus the self-parent link of a root).  anon_vma_clone() on the fork
  path (``dst->anon_vma`` still NULL) walks the source chain oldest to newest and *reuses* the
  first anon_vma other than the source's own whose degree is below 2, instead of letting
  anon_vma_fork() allocate a new one; unlink_anon_vmas() decrements the parent's degree when an
  anon_vma's tree empties, and the VMA's anon_vma's degree.

Still in 3.19-rc4 (and in 3.19; both fixed later):

* bug E: anon_vma_clone()'s ENOMEM path calls unlink_anon_vmas(dst) with ``dst->anon_vma`` still
  set (inherited by split/copy_vma/the vma_adjust import, or just reused), so its degree is
  decremented without ever having been incremented.  Leon Yu's fix ("mm: fix anon_vma->degree
  underflow in anon_vma endless growing prevention", 3fe89b3e2a7b, 4.0) clears it first
  (:mod:`.fix_3fe89b3e`).  The vma_adjust import returns the error without clearing
  ``importer->anon_vma`` [unverified: whether the 3.19 vma_adjust cleared it].
* bug G, CVE-2022-42703: reuse abandons the intermediate process's leaf anon_vma; once its last
  VMA is gone its degree is 0, yet descendants still link it, and two VMAs of one fork whose
  chains differ can both reuse it (I3 breaks; a later merge loses links).  Fixed by 2555283eb40d
  (:mod:`.fix_2555283e`).

Each reuse is reported through the ``reuse`` tracepoint, where the ``reuse-safe`` invariant judges
it against what the structure says at that moment.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v3_7 import Linux37
from rmapfuzz.model.core import ENOMEM, Err, FeatureChanges
from rmapfuzz.model.objects import AnonVma, AnonVmaChain, Vma

C7A3EF208 = ("7a3ef208e662", "mm: prevent endless growth of anon_vma hierarchy")


class Linux319rc4(Linux37):
    name = "3.19-rc4"
    base = "3.7"
    summary = "anon_vma->degree and fork-time reuse; vma_adjust's import still clones before setting"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C7A3EF208,)
    bugs: ClassVar[tuple[str, ...]] = ("D", "E", "G", "L")

    feature_changes = FeatureChanges(degree=True, chain_bound=16)

    # ---- 7a3ef208e662 ----

    def anon_vma_alloc(self) -> AnonVma | None:
        """anon_vma_alloc() (3.19): degree 1 ("reference for the first vma"), its own parent and root."""
        av = super().anon_vma_alloc()
        if av is not None:
            av.degree = 1
            av.parent = av
        return av

    def anon_vma_prepare_link(self, vma: Vma, av: AnonVma) -> None:
        """The locked part of anon_vma_prepare() (3.19): link, and one degree for the VMA."""
        vma.anon_vma = av
        self.anon_vma_chain_link(vma, av)
        av.degree += 1

    def may_reuse_anon_vma(self, dst: Vma, src: Vma, av: AnonVma) -> bool:
        """The reuse test of anon_vma_clone() (7a3ef208e662): not src's own, degree below 2."""
        return av is not src.anon_vma and av.degree < 2

    def anon_vma_clone(self, dst: Vma, src: Vma) -> Err:
        """anon_vma_clone() (3.19): link dst to every anon_vma of src, oldest first; with no
        ``dst->anon_vma`` yet (fork), reuse the first that may_reuse_anon_vma() allows.  The
        anon_vma dst ends up with gets one degree."""
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
            dst.anon_vma.degree += 1
        return None

    def anon_vma_clone_failed(self, dst: Vma) -> Err:
        """enomem_failure in anon_vma_clone() (3.19): unlink with ``dst->anon_vma`` still set (bug E)."""
        self.unlink_anon_vmas(dst)
        return ENOMEM

    def anon_vma_fork(self, vma: Vma, pvma: Vma) -> Err:
        """anon_vma_fork() (3.19): drop the inherited anon_vma, clone (which may reuse one), else a
        new anon_vma whose parent is the parent VMA's anon_vma (one more degree there)."""
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
        av.parent.degree += 1
        return None

    def unlink_anon_vmas(self, vma: Vma) -> None:
        """unlink_anon_vmas() (3.19): an anon_vma whose tree empties takes a degree off its parent
        and is put afterwards; the VMA's anon_vma loses the VMA's degree (the pointer stays)."""
        emptied: list[AnonVmaChain] = []
        for avc in list(vma.anon_vma_chain):
            av = avc.anon_vma
            av.head.remove(avc)
            if not av.head:
                self.trace.cover("unlink_anon_vmas: an emptied anon_vma leaves its parent")
                if av.parent is not None:
                    av.parent.degree -= 1
                emptied.append(avc)
                continue
            vma.anon_vma_chain.remove(avc)
        if vma.anon_vma is not None:
            vma.anon_vma.degree -= 1
        for avc in emptied:
            self.put_anon_vma(avc.anon_vma)
            vma.anon_vma_chain.remove(avc)
