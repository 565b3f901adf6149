"""6.1: 6.0 and what 6.1 changed in these functions: mmap_region() expands a neighbour by hand,
and mremap's in-place growth merges.

* Liam Howlett's 4dd1b84140c1 "mm/mmap: use advanced maple tree API for mmap_region()" (6.1, the
  maple-tree series; the title as posted in that series, September 2022; commit id not verified
  here): mmap_region() no longer merges a new anonymous
  range through vma_merge().  It tries next first (``can_vma_merge_before`` with no anon_vma),
  then prev (``can_vma_merge_after`` with *next's* anon_vma if next was taken, else none), and
  expands the one it took last with the new vma_expand(), which removes next when prev grows to
  its end (importing next's anon_vma and chain if prev has none).  vma_merge()'s case 1 asked prev
  with no anon_vma and accepted prev and next whenever one of them was unfaulted; now an
  unfaulted prev is asked with next's anon_vma, and 3.0's rule refuses it (its chain is empty,
  not a single link), so only next grows down::

      prev unfaulted, next faulted:   P.N  ->  6.0: PPP        6.1: PNN
      both faulted, other anon_vmas:  P.N  ->  6.0: PPN        6.1: PNN

  6.12's vma_merge_new_range() (cacded5e42b9) asks prev first with no anon_vma again
  (:mod:`.v6_15`).  Found by the lab (docs/lab.md): Debian's 6.1 against the 6.0 model, on
  ``corpus/2.6.34-rc3--merge-superset--mmap.json``.
* Jakub Matěna's ca3d76b0aa80 "mm: add merging after mremap resize" (6.1): an in-place growth is
  vma_merge() of the extension after the VMA, with the VMA's anon_vma and pgoff, so it also merges
  with the next VMA when it reaches it (before: vma_adjust() of the VMA alone).

6.15 stays an overlay on 6.0, not on 6.1: its vma_merge_new_range() and vma_merge_extend()
replace both paths (and its vma_expand() is another function of the same name).

Read in Debian's linux-source-6.1 (6.1.192): mm/mmap.c __mmap_region() and vma_expand(),
mm/mremap.c's grow-in-place branch.  6.1.192's stable fixes to MREMAP_DONTUNMAP (2026) are not
here (docs/lab.md).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v6_0 import Linux60
from rmapfuzz.model.core import ENOMEM, Err
from rmapfuzz.model.objects import Mm, Vma

C4DD1B841 = ("4dd1b84140c1", "mm/mmap: use advanced maple tree API for mmap_region()")
CCA3D76B0 = ("ca3d76b0aa80", "mm: add merging after mremap resize")


class Linux61(Linux60):
    name = "6.1"
    base = "6.0"
    summary = "mmap_region() expands next, then prev asked with next's anon_vma (vma_expand); mremap growth merges"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C4DD1B841, CCA3D76B0)
    bugs: ClassVar[tuple[str, ...]] = ()

    def mmap_merge(self, mm: Mm, addr: int, end: int, vm_flags: int) -> Vma | None:
        """__mmap_region()'s "attempt to expand an old mapping" (6.1): next, then prev with next's
        anon_vma; the last one taken grows with vma_expand() (None: no merge, or ENOMEM)."""
        nxt, prev = self.find_vma_prev(mm, addr)
        length = end - addr
        target: Vma | None = None
        start, stop, pgoff = addr, end, addr
        if nxt is not None and nxt.vm_start == end and self.can_vma_merge_before(nxt, vm_flags, None, addr + length):
            target, stop, pgoff = nxt, nxt.vm_end, nxt.vm_pgoff - length
        anon_vma = target.anon_vma if target is not None else None
        if prev is not None and prev.vm_end == addr and self.can_vma_merge_after(prev, vm_flags, anon_vma, addr):
            target, start, pgoff = prev, prev.vm_start, prev.vm_pgoff
        if target is None:
            return None
        self.trace.cover(
            "mmap_region: next grows down over the range"
            if target is nxt
            else "mmap_region: prev grows over the range and next"
            if nxt is not None and stop == nxt.vm_end
            else "mmap_region: prev grows over the range"
        )
        if self.vma_expand(target, start, stop, pgoff, nxt):
            return None
        return target

    def vma_expand(self, vma: Vma, start: int, end: int, pgoff: int, nxt: Vma | None) -> Err:
        """vma_expand() (mm/mmap.c, 6.1): ``vma`` grows to [start, end); if that is next's end, next
        is removed, and an unfaulted ``vma`` first gets next's anon_vma and a clone of its chain."""
        remove_next = nxt is not None and nxt is not vma and end == nxt.vm_end
        if remove_next:
            assert nxt is not None
            if nxt.anon_vma is not None and vma.anon_vma is None:
                self.trace.cover("vma_expand: an unfaulted VMA takes next's anon_vma")
                vma.anon_vma = nxt.anon_vma
                if self.anon_vma_clone(vma, nxt):
                    self.trace.cover("vma_expand: ENOMEM from anon_vma_clone")
                    return ENOMEM
            self.trace.takeover("vma_expand", vma, nxt)
        vma.vm_start, vma.vm_end, vma.vm_pgoff = start, end, pgoff
        if remove_next:
            assert nxt is not None
            self.vma_unlink(vma.mm, nxt)
            if nxt.anon_vma is not None:
                self.anon_vma_merge(vma, nxt)
            self.remove_vma(nxt)
        return None

    def mremap_expand_in_place(self, vma: Vma, new_end: int) -> Err:
        """mremap()'s in-place growth (6.1, ca3d76b0aa80): vma_merge() of the extension with ``vma``
        as prev, its anon_vma and the pgoff that continues it; ENOMEM if that merge fails."""
        pgoff = vma.vm_pgoff + vma.pages
        merged = self.vma_merge(vma.mm, vma, vma.vm_end, new_end, vma.vm_flags, vma.anon_vma, pgoff)
        return None if merged is not None else ENOMEM
