"""6.18.8: the January 2026 fixes for bug J, backported to 6.18.y (kernel-rmap.md §4.7, §5.4, §5.6).

* 61f67c230a5e "mm/vma: fix anon_vma UAF on mremap() faulted, unfaulted merge": vma_expand() also
  runs ``dup_anon_vma(target, vmg->copied_from)``, so an unfaulted VMA that mremap's copy_vma()
  expands over a faulted source gets the source's anon_vma and chain.  Without it (6.16 … 6.19-rc)
  the moved ptes are not reachable from the source's anon_vma through the target, and once the
  source is unmapped (or, with MREMAP_DONTUNMAP, unlinked) that anon_vma is freed under them.
* 3b617fd3d317 "mm/vma: enforce VMA fork limit on unfaulted,faulted mremap merge too": the
  "had uncowed parents" check (renamed ``vma_is_fork_child()``) falls back to ``copied_from``
  when there is no middle VMA, so a forked source is not merged into an unfaulted target.

``6.16+61f67c23`` is 6.16 with only the first (for classifying bug J); ``6.18.8`` has both and
stands for the running kernel (live-kernel.md, 6.18.44): alias ``current``.  It also carries the
6.17 mremap rework (Lorenzo Stoakes' "mm/mremap" series [ids unverified]) as far as the live
oracle showed it: every parameter and the source VMA are checked before anything is unmapped, and
a same-size MREMAP_FIXED move may span several VMAs and the gaps between them.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v6_16 import Linux616, VmaMergeStruct
from rmapfuzz.model.core import EFAULT, EINVAL, OK, Err
from rmapfuzz.model.objects import Mm, Vma

C61F67C23 = ("61f67c230a5e", "mm/vma: fix anon_vma UAF on mremap() faulted, unfaulted merge")
C3B617FD3 = ("3b617fd3d317", "mm/vma: enforce VMA fork limit on unfaulted,faulted mremap merge too")


class Linux616With61f67c23(Linux616):
    name = "6.16+61f67c23"
    base = "6.16"
    summary = "6.16 with only the vma_expand dup from mremap's source (for classifying bug J)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C61F67C23,)
    bugs: ClassVar[tuple[str, ...]] = ()

    def vma_expand_dup_copied(self, vmg: VmaMergeStruct) -> tuple[Err, Vma | None]:
        """vma_expand() (61f67c230a5e): ``dup_anon_vma(target, vmg->copied_from)`` as well."""
        assert vmg.target is not None
        if vmg.copied_from is None:
            return None, None
        self.trace.cover("vma_expand: dup from mremap's source (copied_from)")
        return self.dup_anon_vma(vmg.target, vmg.copied_from)


class Linux6188(Linux616With61f67c23):
    name = "6.18.8"
    base = "6.16+61f67c23"
    summary = "the running kernel's rules: 6.16 plus both bug J fixes (dup from copied_from, fork-child check on it)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C3B617FD3,)
    bugs: ClassVar[tuple[str, ...]] = ()

    def vmg_fork_check_source(self, vmg: VmaMergeStruct) -> Vma | None:
        """3b617fd3d317: ``vmg->middle``, or mremap's ``vmg->copied_from`` for a new range."""
        return vmg.middle if vmg.middle is not None else vmg.copied_from

    # ---- the 6.17 mremap rework ----

    def do_mremap(self, mm: Mm, addr: int, old_len: int, new_len: int, flags: frozenset[str], new_addr: int) -> str:
        """do_mremap() (6.17+): check_mremap_params() and the source VMA lookup come first, so a
        failing call changes nothing (before, mremap_to() unmapped the target first); an in-place
        call on an unmapped address is EFAULT; a same-size fixed move may span several VMAs."""
        if not self.mremap_flags_valid(flags) or new_len <= 0:
            return EINVAL
        if "dontunmap" in flags and ("maymove" not in flags or old_len != new_len):
            return EINVAL
        fixed = "fixed" in flags
        if fixed and (
            "maymove" not in flags or new_addr <= addr < new_addr + new_len or addr <= new_addr < addr + old_len
        ):
            return EINVAL
        multi = fixed and old_len == new_len
        vma = self.find_vma(mm, addr)
        if vma is None or vma.vm_start > addr:
            return self.remap_move(mm, addr, old_len, new_addr, flags) if multi else EFAULT
        # A fixed move that shrinks unmaps the tail first: what is left must lie in one VMA.
        if fixed and min(old_len, new_len) > vma.vm_end - addr:
            return self.remap_move(mm, addr, old_len, new_addr, flags) if multi else EFAULT
        return super().do_mremap(mm, addr, old_len, new_len, flags, new_addr)

    def remap_move(self, mm: Mm, addr: int, length: int, new_addr: int, flags: frozenset[str]) -> str:
        """remap_move() (6.17+): a same-size MREMAP_FIXED move of a range holding several VMAs (and
        gaps) moves each VMA's part to the same offset in the target; the gaps stay gaps.  A range
        that starts in a gap ("No gap permitted at the start of the range", 6.18 mm/mremap.c) or
        holds no VMA is EFAULT, before anything moves."""
        end = addr + length
        pieces = [(max(v.vm_start, addr), min(v.vm_end, end)) for v in mm.vmas if v.vm_end > addr and v.vm_start < end]
        if not pieces or pieces[0][0] > addr:
            return EFAULT
        self.trace.cover(
            "remap_move: a fixed move of several VMAs"
            if len(pieces) > 1
            else "remap_move: a fixed move of one VMA with a gap after it"
        )
        for start, stop in pieces:
            target = new_addr + (start - addr)
            result = self.mremap_to(mm, start, stop - start, target, stop - start, flags)
            if result != OK:
                return result
        return OK
