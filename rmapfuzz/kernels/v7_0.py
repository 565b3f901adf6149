"""7.0-rc: Lorenzo Stoakes' anon_vma clean-up series, "mm: clean up anon_vma implementation" (v3, nine
patches, linux-mm, 2026-01-18; merged for 7.0 through mm-stable), on 6.18.8 (docs/model.md, "Generations").

What changes anon_vma behaviour in this model's terms:

* "mm/rmap: separate out fork-only logic on anon_vma_clone()": anon_vma_clone() takes an
  ``enum vma_operation`` (VMA_OP_SPLIT, VMA_OP_MERGE_UNFAULTED, VMA_OP_REMAP, VMA_OP_FORK), and
  only VMA_OP_FORK may reuse an ancestor's anon_vma, through the new maybe_reuse_anon_vma()
  (no VMA uses it, at most one child; it counts the new active VMA itself).  Every other
  operation counts one more active VMA on the ``dst->anon_vma`` its caller set beforehand.  In
  6.18 the reuse test already needed ``dst->anon_vma == NULL``, which only fork leaves, so the
  reuse was fork-only in effect; now it is by construction.
* "mm/rmap: allocate anon_vma_chain objects unlocked when possible": anon_vma_clone() first
  allocates one anon_vma_chain per link of src and puts it on dst's chain without inserting it
  in any anon_vma's tree, then, under the root lock, inserts them all (and, on fork, tries the
  reuse).  An allocation failure no longer unlinks anything: cleanup_partial_anon_vmas() frees
  the not-yet-inserted chain entries.  It leaves ``dst->anon_vma`` as the caller set it (bug K):
  for a merge (dup_anon_vma(), VMA_OP_MERGE_UNFAULTED) that is an existing, linked VMA which now
  has an anon_vma it was never counted on (num_active_vmas) and whose chain does not link it; its
  later unlink takes one active VMA too many off the anon_vma, and once the source goes the
  anon_vma can be freed under it.  Fixed by 3a206a8649f8 "mm/rmap: clear vma->anon_vma on error"
  (7.0-rc, :mod:`.fix_3a206a86`).
* "mm/rmap: eliminate partial anon_vma tear-down in anon_vma_fork()": anon_vma_fork() allocates
  the child's anon_vma and its chain entry before the clone and puts them back if the clone fails
  or reused an anon_vma, so it never hands a half-linked VMA to unlink_anon_vmas().
* "mm/rmap: skip unfaulted VMAs on anon_vma clone, unlink": both return at once when there is no
  anon_vma (src's for the clone, the VMA's own for the unlink) instead of walking an empty chain.

Not modelled, as they change nothing a sequential model can see: the comments and
VM_WARN_ON_ONCE() asserts of "mm/rmap: improve anon_vma_clone(), unlink_anon_vmas() comments, add
asserts" (check_anon_vma_clone()); "mm/rmap: remove unnecessary root lock dance in anon_vma clone,
unmap" (locking); "mm/rmap: remove anon_vma_merge() function" (vma_complete() unlinks the removed
VMA itself, which is what the model's anon_vma_merge() already did); "mm/rmap: make anon_vma
functions internal" and "mm/mmap_lock: add vma_is_attached() helper" (headers, a helper for the
asserts).  The ids in ``commits`` are those the nine patches have in mm-stable as merged into
linux-next on 2026-01-28 (mm-stable is not rebased; the mainline ids are not verified here).

Sources: the series' patches as carried in mm-unstable/mm-stable (linux-mm git-push notifications,
January 2026) and the cover letter's thread (Andrew Morton's reply
<20260118120658.8da21fc257774feb4e753969@linux-foundation.org>); the function bodies as of 7.0.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from rmapfuzz.kernels.v6_18 import Linux6188
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import AnonVma, Vma

# enum vma_operation (mm/internal.h, 7.0); only VMA_OP_FORK behaves differently in anon_vma_clone().
VmaOperation = Literal["split", "merge_unfaulted", "remap", "fork"]

ANON_VMA_SERIES: tuple[tuple[str, str], ...] = (
    ("542eda1a8329", "mm/rmap: improve anon_vma_clone(), unlink_anon_vmas() comments, add asserts"),
    ("91901a441fa1", "mm/rmap: eliminate partial anon_vma tear-down in anon_vma_fork()"),
    ("69e945845585", "mm/rmap: skip unfaulted VMAs on anon_vma clone, unlink"),
    ("535f6b8df17d", "mm/rmap: remove unnecessary root lock dance in anon_vma clone, unmap"),
    ("53eb797ffc3a", "mm/rmap: remove anon_vma_merge() function"),
    ("7549e3d20f1a", "mm/rmap: make anon_vma functions internal"),
    ("85f03a86318c", "mm/mmap_lock: add vma_is_attached() helper"),
    ("bfc2b13b05a1", "mm/rmap: allocate anon_vma_chain objects unlocked when possible"),
    ("d17f02417a33", "mm/rmap: separate out fork-only logic on anon_vma_clone()"),
)


class Linux70rc(Linux6188):
    name = "7.0-rc"
    base = "6.18.8"
    summary = (
        "anon_vma_clone() allocates its links first and reuses only on fork (maybe_reuse_anon_vma); "
        "its ENOMEM path keeps dst->anon_vma, uncounted (bug K)"
    )
    commits: ClassVar[tuple[tuple[str, str], ...]] = ANON_VMA_SERIES
    bugs: ClassVar[tuple[str, ...]] = ("K",)

    def anon_vma_clone(self, dst: Vma, src: Vma, operation: VmaOperation = "split") -> Err:
        """anon_vma_clone(dst, src, operation) (mm/rmap.c, 7.0): nothing to do for an unfaulted src;
        otherwise allocate one chain entry per link of src, then link them all, oldest first, and
        on fork try maybe_reuse_anon_vma() on each.  A non-fork dst already has src's anon_vma
        (vm_area_dup(), dup_anon_vma()), which gets one more active VMA.

        The model's callers pass no operation: split (``__split_vma()``) and mremap's copy_vma()
        (VMA_OP_REMAP) behave alike here; dup_anon_vma() and anon_vma_fork() pass theirs.
        """
        if src.anon_vma is None:
            self.trace.cover("anon_vma_clone: unfaulted source, nothing to clone")
            return None
        for _pavc in src.anon_vma_chain:
            if not self.anon_vma_chain_alloc():
                return self.cleanup_partial_anon_vmas(dst, operation)
        for pavc in reversed(list(src.anon_vma_chain)):
            av = pavc.anon_vma
            self.anon_vma_chain_link(dst, av)
            if operation == "fork":
                self.maybe_reuse_anon_vma(dst, av)
        if operation != "fork":
            assert dst.anon_vma is not None
            dst.anon_vma.num_active_vmas += 1
        return None

    def maybe_reuse_anon_vma(self, dst: Vma, av: AnonVma) -> None:
        """maybe_reuse_anon_vma() (mm/rmap.c, 7.0; fork only): take ``av`` if dst has none yet, no
        VMA uses it and it has at most one child; it counts dst as an active VMA at once."""
        if dst.anon_vma is not None or av.num_active_vmas > 0 or av.num_children > 1:
            return
        self.trace.cover("maybe_reuse_anon_vma: fork reuses an ancestor's anon_vma")
        self.trace.reuse(dst, av)
        dst.anon_vma = av
        av.num_active_vmas += 1

    def cleanup_partial_anon_vmas(self, dst: Vma, operation: VmaOperation) -> Err:
        """cleanup_partial_anon_vmas() (mm/rmap.c, 7.0-rc before 3a206a8649f8): free the chain
        entries allocated so far (none was in any tree yet, so nothing is unlinked and no counter
        moves); ``dst->anon_vma`` stays as the caller set it though anon_vma_clone() never counted
        it (bug K).  A new VMA of a split or mremap is freed by its caller; a merge target lives on."""
        if operation == "merge_unfaulted":
            self.trace.cover("cleanup_partial_anon_vmas: a merge target keeps an anon_vma it was never counted on")
        elif operation == "fork":
            self.trace.cover("cleanup_partial_anon_vmas: ENOMEM on fork, nothing linked yet")
        else:
            self.trace.cover("cleanup_partial_anon_vmas: a new VMA keeps its copied anon_vma, then is freed")
        return ENOMEM

    def dup_anon_vma(self, dst: Vma, src: Vma) -> tuple[Err, Vma | None]:
        """dup_anon_vma() (mm/vma.c, 7.0): as 6.x, with ``anon_vma_clone(dst, src,
        VMA_OP_MERGE_UNFAULTED)``; on failure it returns the error with ``dst->anon_vma`` as the
        clone's error path left it."""
        if src.anon_vma is None or dst.anon_vma is not None:
            return None, None
        self.trace.cover("dup_anon_vma: src faulted, dst unfaulted")
        dst.anon_vma = src.anon_vma
        if self.anon_vma_clone(dst, src, "merge_unfaulted"):
            self.trace.cover("dup_anon_vma: ENOMEM from anon_vma_clone")
            return ENOMEM, None
        return None, dst

    def anon_vma_fork(self, vma: Vma, pvma: Vma) -> Err:
        """anon_vma_fork() (mm/rmap.c, 7.0): drop the inherited anon_vma, allocate the child's
        anon_vma and its chain entry first, then clone with VMA_OP_FORK; if the clone failed or
        reused an anon_vma, put the two back.  No partial tear-down: a failed clone has already
        freed its own entries."""
        if pvma.anon_vma is None:
            return None
        vma.anon_vma = None
        av = self.anon_vma_alloc()
        if av is None:
            self.trace.cover("anon_vma_fork: ENOMEM from anon_vma_alloc before the clone")
            return ENOMEM
        if not self.anon_vma_chain_alloc():
            self.trace.cover("anon_vma_fork: ENOMEM from anon_vma_chain_alloc before the clone")
            self.put_anon_vma(av)
            return ENOMEM
        err = self.anon_vma_clone(vma, pvma, "fork")
        if err or vma.anon_vma is not None:
            self.trace.cover(
                "anon_vma_fork: the clone failed, the preallocated anon_vma is put"
                if err
                else "anon_vma_fork: an anon_vma was reused, the preallocated one is put"
            )
            self.put_anon_vma(av)
            return err
        self.trace.cover("anon_vma_fork: new anon_vma for the child")
        av.num_active_vmas = 1
        av.root = pvma.anon_vma.root
        av.parent = pvma.anon_vma
        assert av.root is not None
        self.get_anon_vma(av.root)
        vma.anon_vma = av
        self.anon_vma_chain_link(vma, av)
        av.parent.num_children += 1
        return None

    def unlink_anon_vmas(self, vma: Vma) -> None:
        """unlink_anon_vmas() (mm/rmap.c, 7.0): an unfaulted VMA is a no-op (the kernel warns if its
        chain is not empty); otherwise as 6.x."""
        if vma.anon_vma is None:
            self.trace.cover("unlink_anon_vmas: unfaulted VMA, nothing to unlink")
            return
        super().unlink_anon_vmas(vma)
