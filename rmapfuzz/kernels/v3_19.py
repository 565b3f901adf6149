"""3.19: Konstantin Khlebnikov's end to the unbounded anon_vma hierarchy (kernel-rmap.md §4.3).

* 7a3ef208e662 "mm: prevent endless growth of anon_vma hierarchy" (3.19-rc4): anon_vma gets a
  ``parent`` and a ``degree``.  degree is meant to be (VMAs using it as their anon_vma) + (children
  whose tree is not empty, plus the self-parent link of a root).  anon_vma_clone() on the fork
  path (``dst->anon_vma`` still NULL) walks the source chain oldest to newest and *reuses* the
  first anon_vma other than the source's own whose degree is below 2, instead of letting
  anon_vma_fork() allocate a new one; unlink_anon_vmas() decrements the parent's degree when an
  anon_vma's tree empties, and the VMA's anon_vma's degree.
* b800c91a0517 "mm: fix corner case in anon_vma endless growing prevention" (3.19-rc):
  vma_adjust()'s import sets ``importer->anon_vma`` *before* cloning, so clone's reuse branch
  cannot run there.  Without it (``3.19-rc4``) the import can hand the degree increment to some
  other anon_vma, or to none, and the exporter's anon_vma is left one short (bug D).

Still in 3.19 (both fixed later, kept here):

* bug E: anon_vma_clone()'s ENOMEM path calls unlink_anon_vmas(dst) with ``dst->anon_vma`` still
  set (inherited by split/copy_vma/the vma_adjust import, or just reused), so its degree is
  decremented without ever having been incremented.  Leon Yu's fix ("mm: fix anon_vma->degree
  underflow in anon_vma endless growing prevention", 4.0-rc, [id unverified]) clears it first; see
  the ``6.0`` overlay.  The vma_adjust import returns the error without clearing
  ``importer->anon_vma`` [unverified: whether the 3.19 vma_adjust cleared it].
* bug G, CVE-2022-42703: reuse abandons the intermediate process's leaf anon_vma; once its last
  VMA is gone its degree is 0, yet descendants still link it, and two VMAs of one fork whose
  chains differ can both reuse it (I3 breaks; a later merge loses links).  Fixed by 2555283eb40d.

Each reuse is recorded in ``reuse_events`` (cleared at every step) with what the structure said
at that moment, for the ``reuse-safe`` invariant (I6).
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from rmapfuzz import ops
from rmapfuzz.kernels.v3_7 import Linux37
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import AnonVma, AnonVmaChain, Vma

C7A3EF208 = ("7a3ef208e662", "mm: prevent endless growth of anon_vma hierarchy")
CB800C91A = ("b800c91a0517", "mm: fix corner case in anon_vma endless growing prevention")


@attrs.define(eq=False)
class ReuseEvent:
    """A fork-time reuse: ``vma`` was given ``anon_vma``; ``active`` are the VMAs that had it as their
    anon_vma at that moment and ``children`` its children with a non-empty tree (+1 for a linked root)."""

    vma_name: str
    anon_vma: AnonVma
    active: tuple[str, ...]
    children: int


class Linux319rc4(Linux37):
    name = "3.19-rc4"
    base = "3.7"
    summary = "anon_vma->degree and fork-time reuse; vma_adjust's import still clones before setting"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C7A3EF208,)
    bugs: ClassVar[tuple[str, ...]] = ("D", "E", "G", "L")

    has_degree: ClassVar[bool] = True

    def __init__(self, window: int = 8) -> None:
        super().__init__(window)
        self.reuse_events: list[ReuseEvent] = []

    def apply(self, op: ops.Op) -> str:
        """One step; the reuse events, like the merge events, are per step."""
        self.reuse_events.clear()
        return super().apply(op)

    # ---- the structure, as the invariants count it ----

    def structural_children(self, av: AnonVma) -> int:
        """Children of ``av`` whose tree is not empty; a linked root counts itself (parent == self)."""
        return sum(1 for y in self.anon_vmas if y.parent is av and y.head and not y.freed)

    @staticmethod
    def structural_active(av: AnonVma, but: Vma | None = None) -> tuple[Vma, ...]:
        """The VMAs linked to ``av`` that use it as their anon_vma."""
        return tuple(avc.vma for avc in av.head if avc.vma.anon_vma is av and avc.vma is not but and not avc.vma.freed)

    def record_reuse(self, dst: Vma, av: AnonVma) -> None:
        self.counters.reuses += 1
        active = tuple(v.name for v in self.structural_active(av, but=dst))
        self.reuse_events.append(ReuseEvent(dst.name, av, active, self.structural_children(av)))

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
                return self.anon_vma_clone_failed(dst)
            av = pavc.anon_vma
            self.anon_vma_chain_link(dst, av)
            if dst.anon_vma is None and self.may_reuse_anon_vma(dst, src, av):
                self.record_reuse(dst, av)
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
            return self.anon_vma_fork_failed(vma)
        if not self.anon_vma_chain_alloc():
            self.put_anon_vma(av)
            return self.anon_vma_fork_failed(vma)
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
            importer.anon_vma = exporter.anon_vma
            if self.anon_vma_clone(importer, exporter):
                importer.anon_vma = None
                return ENOMEM
        return None
