"""6.18.8: the running kernel's rules (docs/model.md, "The live oracle"): 6.16, the 6.17 mremap rework,
and the January 2026 fixes for bug J backported to 6.18.8.  Alias ``current``.

* 61f67c230a5e (:mod:`.fix_61f67c23`): vma_expand() also dups the anon_vma of mremap's source.
* 3b617fd3d317 "mm/vma: enforce VMA fork limit on unfaulted,faulted mremap merge too": the
  "had uncowed parents" check (renamed ``vma_is_fork_child()``) falls back to ``copied_from``
  when there is no middle VMA, so a forked source is not merged into an unfaulted target.
* Lorenzo Stoakes' 6.17 mremap series (``MREMAP_6_17`` below), as far as the live oracle showed
  it: every parameter and the source VMA are checked before anything is unmapped
  (3215eaceca87, a85dc37186a5, f256a7a4ca1a, 9b2301bf8d65; so is dba58d3b8c50's old length of 0 on
  a private mapping, EINVAL with the target left mapped, found by the oracle's ``mremap`` strategy
  once it drew that length), and a same-size MREMAP_FIXED move may
  span several VMAs and the gaps between them (d23cb648e365).  The overlap test of a fixed move is
  check_mremap_params()'s vrm_overlaps() (3215eaceca87): two ranges overlap only if they share a
  page, so an old length of 0 at the target's own address passes on to the source lookup (the
  oracle found the model's older two-sided test calling it EINVAL where the kernel said EFAULT).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.fix_61f67c23 import Linux616With61f67c23
from rmapfuzz.kernels.v6_15 import VmaMergeStruct
from rmapfuzz.model.core import EFAULT, EINVAL, OK, FeatureChanges
from rmapfuzz.model.objects import Mm, Vma

C3B617FD3 = ("3b617fd3d317", "mm/vma: enforce VMA fork limit on unfaulted,faulted mremap merge too")
MREMAP_6_17: tuple[tuple[str, str], ...] = (
    ("3215eaceca87", "mm/mremap: refactor initial parameter sanity checks"),
    ("f256a7a4ca1a", "mm/mremap: put VMA check and prep logic into helper function"),
    ("a85dc37186a5", "mm/mremap: check remap conditions earlier"),
    ("9b2301bf8d65", "mm/mremap: move remap_is_valid() into check_prep_vma()"),
    ("d23cb648e365", "mm/mremap: permit mremap() move of multiple VMAs"),
)


def vrm_overlaps(addr: int, old_len: int, new_addr: int, new_len: int) -> bool:
    """vrm_overlaps() (6.17+, check_mremap_params()): the two ranges share a page.  An old length of
    0 overlaps nothing, so ``[4,4) -> [4,5)`` passes on to the source lookup (EFAULT on an empty
    window; the 2.6.34 test the older models keep called it EINVAL, found by the oracle)."""
    return addr + old_len > new_addr and new_addr + new_len > addr


class Linux6188(Linux616With61f67c23):
    name = "6.18.8"
    base = "6.16+61f67c23"
    summary = "the running kernel's rules: 6.16 plus both bug J fixes (dup from copied_from, fork-child check on it)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C3B617FD3, *MREMAP_6_17)
    bugs: ClassVar[tuple[str, ...]] = ()
    feature_changes = FeatureChanges(multi_vma_move=True)

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
        if fixed and ("maymove" not in flags or vrm_overlaps(addr, old_len, new_addr, new_len)):
            return EINVAL
        multi = fixed and old_len == new_len
        vma = self.find_vma(mm, addr)
        if vma is None or vma.vm_start > addr:
            return self.remap_move(mm, addr, old_len, new_addr, flags) if multi else EFAULT
        if old_len == 0:
            # check_prep_vma() (f256a7a4ca1a): dba58d3b8c50's EINVAL for duplicating a private
            # mapping now comes before mremap_to() unmaps the target (every VMA here is private)
            self.trace.cover("do_mremap: an old length of 0 on a private mapping (EINVAL before anything changes)")
            return EINVAL
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
