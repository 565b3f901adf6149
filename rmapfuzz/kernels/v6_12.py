"""6.12: the modern merge code of mm/vma.c (docs/model.md, "Generations").

``6.12`` is 6.0 with what the 2023-2024 rewrite and the mremap/madvise/mprotect work between 6.0
and 6.12 changed in the functions this model has (every commit below is in 6.12; until 2026-12 this
class was the 6.15 generation, which adds nothing to it, :mod:`.v6_15`):

* Liam Howlett's maple-tree series (0503ea8f5ba7 "mm/mmap: remove __vma_adjust()", 6.3) and
  Lorenzo Stoakes' 2024 split of vma_merge() (cacded5e42b9, cc8cb3697a8d, 6.12) replace
  vma_merge()/vma_adjust() with ``vma_merge_existing_range()`` (mprotect, madvise: a range of an
  existing VMA changes attributes), ``vma_merge_new_range()`` (mmap, mremap's copy_vma(), mremap's
  in-place growth through ``vma_merge_extend()``) and ``vma_expand()``, all ending in
  ``commit_merge()``; __split_vma() links the new VMA itself.  The anon_vma import is an explicit
  ``dup_anon_vma(dst, src)``: if src has an anon_vma and dst has none, dst gets it and a clone of
  src's chain; on ENOMEM the clone is undone and the merge reports ENOMEM.  Case 8 (the whole
  middle VMA merges with next only) has had next grow down and the middle removed since
  e86f15ee64d8 (4.9; the 6.0 model's vma_merge() has it too, :mod:`.v6_0`).  The anon_vma rule
  is still Shaohua Li's (3.0): an unfaulted side merges only next to a single-entry chain, so a
  faulted range never merges into an unfaulted neighbour.
* (MREMAP_DONTUNMAP, 5.7 and 5.12, and MADV_PAGEOUT's skipping of shared pages, 5.4, come with
  6.0: :mod:`.v6_0`.)
* mprotect: an unfaulted private VMA that loses write also loses VM_ACCOUNT (9b9143298585, 6.7;
  seen on the live kernel, docs/live-oracle.md); with MM_CP_TRY_CHANGE_WRITABLE (64fe24a3e05e,
  6.0) a pte of an exclusively owned anon page becomes writable at once when the VMA becomes
  writable.
* c18160dba5ff "mm: swap: reuse exclusive folio directly instead of wp page faults" (Barry Song,
  6.11): do_swap_page() maps a page it knows to be exclusive writable when the VMA is writable,
  on a read fault too (the pte is made dirty only on a write fault), so the first write after a
  swap-in no longer faults.  In the model this is the fresh page of a sole entry on zram
  (:mod:`.v6_0`).

Read against Debian's 6.12.118 (linux-source-6.12, under the lab cache's ``src/``): mm/vma.c
is_mergeable_anon_vma(), can_vma_merge_left/right(), vma_merge_existing_range(),
vma_merge_new_range(), vma_expand(), dup_anon_vma(), copy_vma(); mm/mprotect.c mprotect_fixup()'s
VM_ACCOUNT rule; mm/memory.c do_swap_page()'s writable exclusive swap-in.  6.12.118's stable fixes
of MREMAP_DONTUNMAP are not here (:mod:`.stable_dontunmap`, the ``6.12.118`` generation).

Not modelled here: moving several VMAs in one mremap and mremap's refactored error order (both
6.17, see :mod:`.v6_18`), per-VMA locks, THP,
VM_SOFTDIRTY, anon_vma names, mempolicies, uffd contexts (none differ in this model).
"""

from __future__ import annotations

from typing import ClassVar

import attrs

from rmapfuzz.kernels.v6_0 import Linux60
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import VM_ACCOUNT, VM_WRITE, AnonVma, Mm, Vma

C0503EA8F = ("0503ea8f5ba7", "mm/mmap: remove __vma_adjust()")
CNEWRANGE = ("cacded5e42b9", "mm: avoid using vma_merge() for new VMAs")
CEXISTING = ("cc8cb3697a8d", "mm: refactor vma_merge() into modify-only vma_merge_existing_range()")
C64FE24A3 = (
    "64fe24a3e05e",
    "mm/mprotect: try avoiding write faults for exclusive anonymous pages when changing protection",
)
CC18160DB = ("c18160dba5ff", "mm: swap: reuse exclusive folio directly instead of wp page faults")
CUNACCT = ("9b9143298585", "mm/mprotect: allow unfaulted VMAs to be unaccounted on mprotect()")


@attrs.define(eq=False)
class VmaMergeStruct:
    """struct vma_merge_struct (mm/vma.h): what a merge is asked to do and, once it is done, what it did.

    ``middle`` is the existing VMA whose range changes (vma_merge_existing_range) or None for a new
    range; ``copied_from`` is mremap's source VMA (copy_vma); ``target`` is the VMA that survives
    (the kernel's ``vmg->vma``, later ``vmg->target``).  ``nomem`` is VMA_MERGE_ERROR_NOMEM.
    """

    mm: Mm
    prev: Vma | None
    next: Vma | None
    start: int
    end: int
    pgoff: int
    flags: int
    anon_vma: AnonVma | None = None
    middle: Vma | None = None
    copied_from: Vma | None = None
    target: Vma | None = None
    nomem: bool = False


# a VMA that takes over (part of) another in a merge: (taker, taken)
Takeover = tuple[Vma, Vma]


class Linux612(Linux60):
    name = "6.12"
    base = "6.0"
    summary = (
        "vma_merge_existing_range/vma_merge_new_range/vma_expand with dup_anon_vma (case 8: next grows down), "
        "3.0's anon_vma rule; in-place mremap growth merges"
    )
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        C0503EA8F,
        CNEWRANGE,
        CEXISTING,
        C64FE24A3,
        CUNACCT,
        CC18160DB,
    )
    bugs: ClassVar[tuple[str, ...]] = ()

    swapin_read_maps_writable: ClassVar[bool] = True  # c18160dba5ff (6.11)

    # ---- merge compatibility (mm/vma.c) ----

    def vmg_anon_vma_mergeable(self, vmg: VmaMergeStruct, merge_next: bool) -> bool:
        """is_mergeable_anon_vma() (6.15): 3.0's rule against the neighbour (next or prev) being merged."""
        tgt = vmg.next if merge_next else vmg.prev
        assert tgt is not None
        return self.is_mergeable_anon_vma(vmg.anon_vma, tgt.anon_vma, tgt)

    def anon_vmas_compatible(self, a: Vma, b: Vma) -> bool:
        """are_anon_vmas_compatible(): prev and next of a merge on both sides (no chain check)."""
        return self.is_mergeable_anon_vma(a.anon_vma, b.anon_vma, None)

    def vmg_can_merge_before(self, vmg: VmaMergeStruct) -> bool:
        """can_vma_merge_before(): the range ends where next starts, next's pgoff continues it."""
        nxt = vmg.next
        assert nxt is not None
        return (
            self.is_mergeable_vma(nxt, vmg.flags)
            and self.vmg_anon_vma_mergeable(vmg, merge_next=True)
            and nxt.vm_pgoff == vmg.pgoff + (vmg.end - vmg.start)
        )

    def vmg_can_merge_after(self, vmg: VmaMergeStruct) -> bool:
        """can_vma_merge_after(): the range starts where prev ends, its pgoff continues prev's."""
        prev = vmg.prev
        assert prev is not None
        return (
            self.is_mergeable_vma(prev, vmg.flags)
            and self.vmg_anon_vma_mergeable(vmg, merge_next=False)
            and prev.vm_pgoff + prev.pages == vmg.pgoff
        )

    def can_vma_merge_left(self, vmg: VmaMergeStruct) -> bool:
        """can_vma_merge_left()"""
        return vmg.prev is not None and vmg.prev.vm_end == vmg.start and self.vmg_can_merge_after(vmg)

    def can_vma_merge_right(self, vmg: VmaMergeStruct, can_merge_left: bool) -> bool:
        """can_vma_merge_right(): with a left merge too, prev and next must be compatible with each other."""
        nxt = vmg.next
        if nxt is None or vmg.end != nxt.vm_start or not self.vmg_can_merge_before(vmg):
            return False
        if not can_merge_left:
            return True
        assert vmg.prev is not None
        return self.anon_vmas_compatible(vmg.prev, nxt)

    # ---- dup_anon_vma and commit_merge ----

    def dup_anon_vma(self, dst: Vma, src: Vma) -> tuple[Err, Vma | None]:
        """dup_anon_vma() (mm/vma.c): an unfaulted dst takes src's anon_vma and a clone of its chain.

        Returns (error, dst if it was given one: the merge unlinks it again if it fails later).
        anon_vma_clone()'s ENOMEM path has already cleared ``dst->anon_vma`` and unlinked.
        """
        if src.anon_vma is None or dst.anon_vma is not None:
            return None, None
        self.trace.cover("dup_anon_vma: src faulted, dst unfaulted")
        dst.anon_vma = src.anon_vma
        if self.anon_vma_clone(dst, src):
            self.trace.cover("dup_anon_vma: ENOMEM from anon_vma_clone")
            return ENOMEM, None
        return None, dst

    def commit_merge(
        self,
        vmg: VmaMergeStruct,
        adjust: Vma | None,
        removed: tuple[Vma | None, ...],
        adj_start: int,
        takeovers: list[Takeover],
    ) -> None:
        """commit_merge() + vma_complete(): set the target's range and pgoff, move ``adjust``'s start
        by ``adj_start`` pages, and remove the removed VMAs (anon_vma_merge() drops their chains)."""
        target = vmg.target
        assert target is not None
        for taker, taken in takeovers:
            self.trace.takeover("commit_merge", taker, taken)
        target.vm_start, target.vm_end, target.vm_pgoff = vmg.start, vmg.end, vmg.pgoff
        if adjust is not None and adj_start:
            adjust.vm_start += adj_start
            adjust.vm_pgoff += adj_start
        for victim in removed:
            if victim is None:
                continue
            self.vma_unlink(vmg.mm, victim)
            if victim.anon_vma is not None:
                self.anon_vma_merge(target, victim)
            self.remove_vma(victim)

    def split_commit(self, vma: Vma, start: int, end: int, pgoff: int, new: Vma) -> Err:
        """__split_vma() (mm/vma.c, 6.x): vma_prepare() / vma_complete() set the bounds and link the
        new VMA; vma_adjust() is gone (0503ea8f5ba7)."""
        vma.vm_start, vma.vm_end, vma.vm_pgoff = start, end, pgoff
        self.vma_link(vma.mm, new)
        return None

    # ---- vma_merge_existing_range (mprotect, madvise) ----

    def vma_merge_existing_range(self, vmg: VmaMergeStruct) -> Vma | None:
        """vma_merge_existing_range() (mm/vma.c): [start, end) of ``middle`` gets new flags.

        ::

            both:  PPPP|MMMM|NNNN  ->  PPPPPPPPPPPP   prev grows, middle and next removed;
                                                      dup(prev, next if faulted else middle)
            left:  PPPP|MM..       ->  PPPPPP..       prev grows, middle removed or its start
                                                      advanced; dup(prev, middle)
            right: ..MM|NNNN       ->  ..NNNNNN       next grows down, middle removed (case 8) or
                                                      its end pulled back (case 4); dup(next, middle)

        Returns the VMA now covering the range, or None (no merge; ``vmg.nomem`` on ENOMEM).
        """
        middle = vmg.middle
        assert middle is not None
        start, end = vmg.start, vmg.end
        left_side = start == middle.vm_start
        right_side = end == middle.vm_end
        if not (left_side or right_side):
            self.trace.cover("vma_merge_existing_range: a range inside the VMA cannot merge")
            return None
        merge_left = left_side and self.can_vma_merge_left(vmg)
        merge_right = False
        if right_side:
            vmg.next = self.vma_next(middle)
            merge_right = self.can_vma_merge_right(vmg, merge_left)
        if not (merge_left or merge_right):
            return None
        prev, nxt = vmg.prev, vmg.next
        delete_middle = left_side and right_side
        adjust: Vma | None = None
        adj_start = 0
        removed: tuple[Vma | None, ...] = ()
        if merge_left and merge_right:
            assert prev is not None and nxt is not None
            self.trace.cover("vma_merge_existing_range: prev absorbs middle and next")
            vmg.target, vmg.start, vmg.end, vmg.pgoff = prev, prev.vm_start, nxt.vm_end, prev.vm_pgoff
            takeovers: list[Takeover] = [(prev, middle), (prev, nxt)]
            err, _dup = self.dup_anon_vma(prev, nxt if nxt.anon_vma is not None else middle)
            removed = (middle, nxt)
        elif merge_left:
            assert prev is not None
            self.trace.cover(
                "vma_merge_existing_range: prev absorbs the middle"
                if delete_middle
                else "vma_merge_existing_range: prev takes the head of the middle"
            )
            vmg.target, vmg.start, vmg.pgoff = prev, prev.vm_start, prev.vm_pgoff
            if delete_middle:
                removed = (middle,)
            else:
                adjust, adj_start = middle, end - middle.vm_start
            takeovers = [(prev, middle)]
            err, _dup = self.dup_anon_vma(prev, middle)
        else:
            assert nxt is not None
            self.trace.cover(
                "vma_merge_existing_range: next absorbs the middle (case 8)"
                if delete_middle
                else "vma_merge_existing_range: next takes the tail of the middle (case 4)"
            )
            if delete_middle:  # case 8 since 4.9 (e86f15ee64d8): next grows down over all of middle
                vmg.target, vmg.end, vmg.pgoff = nxt, nxt.vm_end, nxt.vm_pgoff - (end - start)
                removed = (middle,)
            else:  # case 4: middle shrinks, next's start moves back
                vmg.target, vmg.start, vmg.end, vmg.pgoff = middle, middle.vm_start, start, middle.vm_pgoff
                adjust, adj_start = nxt, -(middle.vm_end - start)
            takeovers = [(nxt, middle)]
            err, _dup = self.dup_anon_vma(nxt, middle)
        if err:
            self.trace.cover("vma_merge_existing_range: ENOMEM from dup_anon_vma")
            vmg.nomem = True
            return None
        # commit_merge() cannot fail here (no maple-tree preallocation failures), so ``_dup`` is never undone
        self.commit_merge(vmg, adjust, removed, adj_start, takeovers)
        return prev if merge_left else nxt

    def vma_modify_flags(self, vma: Vma, prev: Vma | None, start: int, end: int, newflags: int) -> tuple[Err, Vma]:
        """vma_modify_flags() -> vma_modify() (mm/vma.c): merge, else ENOMEM if the merge ran out of
        memory, else split the range out."""
        vmg = VmaMergeStruct(
            mm=vma.mm,
            prev=prev,
            next=None,
            start=start,
            end=end,
            pgoff=vma.vm_pgoff + (start - vma.vm_start),
            flags=newflags,
            anon_vma=vma.anon_vma,
            middle=vma,
        )
        merged = self.vma_merge_existing_range(vmg)
        if merged is not None:
            merged.vm_flags = newflags
            return None, merged
        if vmg.nomem:
            return ENOMEM, vma
        return self.split_out(vma, start, end, newflags)

    # ---- vma_merge_new_range and vma_expand (mmap, mremap) ----

    def vma_merge_new_range(self, vmg: VmaMergeStruct) -> Vma | None:
        """vma_merge_new_range() (mm/vma.c): the hole [start, end) merges with prev, next or both by
        expanding one of them (prev if it can, removing next too); None if neither, or on ENOMEM."""
        prev, nxt = vmg.prev, vmg.next
        start, end, pgoff = vmg.start, vmg.end, vmg.pgoff
        if prev is None and nxt is None:
            return None
        can_left = self.can_vma_merge_left(vmg)
        can_right = self.can_vma_merge_right(vmg, can_left)
        if can_left or can_right:
            self.cover_new_range(vmg, can_left, can_right)
        if can_right:
            assert nxt is not None
            vmg.target, vmg.end, vmg.pgoff = nxt, nxt.vm_end, nxt.vm_pgoff - (end - start)
        if can_left:
            assert prev is not None
            vmg.target, vmg.start, vmg.pgoff = prev, prev.vm_start, prev.vm_pgoff
        if vmg.target is not None and self.vma_expand(vmg) is None:
            return vmg.target
        vmg.target, vmg.start, vmg.end, vmg.pgoff = None, start, end, pgoff
        return None

    def cover_new_range(self, vmg: VmaMergeStruct, left: bool, right: bool) -> None:
        """The coverage points of vma_merge_new_range(): which neighbours expand, and for mremap's
        copy_vma() whether the source was faulted (the shape of bug J)."""
        src = vmg.copied_from
        if src is None:
            self.trace.cover(
                "vma_merge_new_range: prev expands over the range and next"
                if left and right
                else "vma_merge_new_range: prev expands over the range"
                if left
                else "vma_merge_new_range: next expands down over the range"
            )
        elif src.anon_vma is not None:
            self.trace.cover(
                "vma_merge_new_range: prev expands over the range and next, copied_from faulted"
                if left and right
                else "vma_merge_new_range: prev expands over the range, copied_from faulted"
                if left
                else "vma_merge_new_range: next expands down over the range, copied_from faulted"
            )
        else:
            self.trace.cover(
                "vma_merge_new_range: prev expands over the range and next, copied_from unfaulted"
                if left and right
                else "vma_merge_new_range: prev expands over the range, copied_from unfaulted"
                if left
                else "vma_merge_new_range: next expands down over the range, copied_from unfaulted"
            )

    def vma_expand(self, vmg: VmaMergeStruct) -> Err:
        """vma_expand() (mm/vma.c): the target grows to [start, end), removing next if it reaches
        next's end; only a removed next is dup'ed from (then :meth:`vma_expand_dup_copied`)."""
        target, nxt = vmg.target, vmg.next
        assert target is not None
        remove_next = nxt is not None and nxt is not target and vmg.end == nxt.vm_end
        takeovers: list[Takeover] = []
        dup: Vma | None = None
        if remove_next:
            assert nxt is not None
            self.trace.cover("vma_expand: removes next")
            takeovers.append((target, nxt))
            err, dup = self.dup_anon_vma(target, nxt)
            if err:
                self.trace.cover("vma_expand: ENOMEM dup'ing next")
                vmg.nomem = True
                return err
        err, _copied = self.vma_expand_dup_copied(vmg)
        if err:
            vmg.nomem = True
            # As the kernel's nomem path does; though a dup of next and a failed dup of the source
            # never come together: each dup clones only into a target with no anon_vma yet.
            if dup is not None:
                self.unlink_anon_vmas(dup)
            return err
        self.commit_merge(vmg, None, (nxt if remove_next else None,), 0, takeovers)
        return None

    def vma_expand_dup_copied(self, vmg: VmaMergeStruct) -> tuple[Err, Vma | None]:
        """Before 61f67c230a5e vma_expand() does not dup from mremap's source (bug J on 6.16)."""
        return None, None

    def mmap_merge(self, mm: Mm, addr: int, end: int, vm_flags: int) -> Vma | None:
        """__mmap_region() (6.x): vma_merge_new_range() for the hole, no anon_vma, pgoff = address."""
        nxt, prev = self.find_vma_prev(mm, addr)
        vmg = VmaMergeStruct(mm=mm, prev=prev, next=nxt, start=addr, end=end, pgoff=addr, flags=vm_flags)
        return self.vma_merge_new_range(vmg)

    def copy_vma_merge(self, vma: Vma, addr: int, length: int, pgoff: int, keep_source: bool = False) -> Vma | None:
        """copy_vma() (mm/vma.c, 6.x): vma_merge_copied_range(), i.e. vma_merge_new_range() with the
        source's anon_vma and ``copied_from`` = the source (an unfaulted source, re-based, may merge
        with itself)."""
        return self.vma_merge_new_range(self.copy_vma_vmg(vma, addr, length, pgoff))

    def copy_vma_vmg(self, vma: Vma, addr: int, length: int, pgoff: int) -> VmaMergeStruct:
        """copy_vma()'s VMG_VMA_STATE: the new range [addr, addr + length) between its prev and next."""
        nxt, prev = self.find_vma_prev(vma.mm, addr)
        return VmaMergeStruct(
            mm=vma.mm,
            prev=prev,
            next=nxt,
            start=addr,
            end=addr + length,
            pgoff=pgoff,
            flags=vma.vm_flags,
            anon_vma=vma.anon_vma,
            copied_from=vma,
        )

    # ---- mremap ----

    def mremap_expand_in_place(self, vma: Vma, new_end: int) -> Err:
        """vma_merge_extend() (mm/vma.c): the growth is a new range right after ``vma`` (prev), with
        vma's anon_vma; it also merges with the next VMA when it reaches it."""
        vmg = VmaMergeStruct(
            mm=vma.mm,
            prev=vma,
            next=self.vma_next(vma),
            start=vma.vm_end,
            end=new_end,
            pgoff=vma.vm_pgoff + vma.pages,
            flags=vma.vm_flags,
            anon_vma=vma.anon_vma,
        )
        return None if self.vma_merge_new_range(vmg) is not None else ENOMEM

    # ---- mprotect ----

    def mprotect_charge(self, vma: Vma, oldflags: int, newflags: int) -> int:
        """mprotect_fixup()'s accounting (6.7+, 9b9143298585): as before, and an unfaulted VMA that
        loses write is uncharged (it can then merge with a neighbour that was never writable)."""
        if not newflags & VM_WRITE and oldflags & VM_ACCOUNT and vma.anon_vma is None:
            self.trace.cover("mprotect_fixup: an unfaulted VMA losing write loses VM_ACCOUNT")
            return newflags & ~VM_ACCOUNT
        return super().mprotect_charge(vma, oldflags, newflags)

    def change_protection(self, vma: Vma, start: int, end: int) -> None:
        """change_protection() with MM_CP_TRY_CHANGE_WRITABLE (6.0+, 64fe24a3e05e): in a writable private VMA a
        pte of an exclusively owned anon page (PageAnonExclusive) is made writable at once.  The model
        only does so for a page mapped once and not in the swap cache; the rest is write-protected."""
        super().change_protection(vma, start, end)
        if not vma.vm_flags & VM_WRITE:
            return
        for addr in range(start, end):
            pte = vma.mm.ptes.get(addr)
            if pte is None or pte.swap is not None or pte.page is None:
                continue
            page = pte.page
            if page.exclusive and page.mapcount == 1 and page.swapcache is None:
                self.trace.cover("change_protection: an exclusive anon page's pte made writable")
                pte.writable = True
