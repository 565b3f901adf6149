"""The 2026 stable fixes of MREMAP_DONTUNMAP that Debian's 6.1.192 and 6.12.118 carry.

Three patches went to the stable trees in 2026 (stable 6.1.191 and 6.12.112 / 6.12.114, as
Debian's changelogs name them); no mainline generation of this model has them (this machine's
6.18.44 does not behave as they do either, docs/lab.md):

* "mm/mremap: fix locked_vm leak from MREMAP_DONTUNMAP self-merge": copy_vma() gets a
  ``keep_source`` argument (move_vma() passes MREMAP_DONTUNMAP).  An unfaulted anonymous source is
  re-based to the new address as before, but it may no longer merge with its own new range, which
  it could when the new range is adjacent to it (the merge took the source in, and move_vma()'s
  DONTUNMAP path then left no old VMA behind).  move_vma() warns if the new VMA is the old one.
* "mm/mremap: reset unfaulted VMA page offset for MREMAP_DONTUNMAP": when the move took the whole
  old VMA and its anon_vmas are unlinked (1583aa278f5f), an anonymous one also gets
  ``vm_pgoff = vm_start`` back: an unfaulted anonymous VMA's pgoff is its address, so that it
  merges with its neighbours later as any unfaulted one does.
* "mm/mremap: fix locked_vm leak by splitting VMA for MREMAP_DONTUNMAP": a VM_LOCKED VMA is split
  at the old range before the move.  Outside the op language (no mlock), so not here.

The self-merge fix has one shape in each tree, so there are two overlays, each composable on the
generations that have that code (the tags name the file whose copy_vma() each patches):

* :class:`Linux60WithStableDontunmap`, ``+stable-dontunmap-mmap`` (6.1's backport, mm/mmap.c
  copy_vma() over vma_merge()): when the new range touches the source on either side, copy_vma()
  skips the merge altogether, so the new range merges with no neighbour, not even the other one;
* :class:`Linux612WithStableDontunmap`, ``+stable-dontunmap-vma`` (6.12's backport, mm/vma.c
  copy_vma() over vma_merge_new_range()): the source is taken out as the new range's ``prev`` or
  ``next``; the neighbour on the other side may still merge.

Read in Debian's linux-source-6.1 (6.1.192: mm/mmap.c copy_vma(), mm/mremap.c move_vma()) and
linux-source-6.12 (6.12.118: mm/vma.c copy_vma(), mm/mremap.c move_vma()).  Their mainline commit
ids were not found: the linux-mm archives searched here hold them only as branch commits of the mm
tree and linux-next (October 2026: mm-hotfixes-stable 838bb60dc215 for the self-merge fix,
597e4b9ab48a for the split; 35b0fb391b0d for the pgoff reset), which are rebased before they reach
mainline; the titles are what the commits below name.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v6_0 import Linux60
from rmapfuzz.kernels.v6_12 import Linux612
from rmapfuzz.model.mremap import MremapMixin
from rmapfuzz.model.objects import Vma

SELF_MERGE = ("(stable 2026)", "mm/mremap: fix locked_vm leak from MREMAP_DONTUNMAP self-merge")
PGOFF_RESET = ("(stable 2026)", "mm/mremap: reset unfaulted VMA page offset for MREMAP_DONTUNMAP")
STABLE_DONTUNMAP = (SELF_MERGE, PGOFF_RESET)


class PgoffReset(MremapMixin):
    """The pgoff reset both backports carry (35b0fb391b0d): move_vma()'s MREMAP_DONTUNMAP end that
    unlinked the whole old VMA (1583aa278f5f) re-bases it to its address, as a new anonymous VMA
    there would be (every VMA of the model is anonymous)."""

    def release_old_range(self, vma: Vma, new_vma: Vma, old_addr: int, old_len: int, dontunmap: bool) -> None:
        """move_vma()'s end, then the pgoff reset: an unlinked whole old VMA gets its address as pgoff."""
        super().release_old_range(vma, new_vma, old_addr, old_len, dontunmap)
        unlinked_whole = new_vma is not vma and vma.vm_start == old_addr and vma.vm_end == old_addr + old_len
        if dontunmap and unlinked_whole:
            self.trace.cover("move_vma: MREMAP_DONTUNMAP resets the unlinked old VMA's pgoff")
            vma.vm_pgoff = vma.vm_start


class Linux60WithStableDontunmap(PgoffReset, Linux60):
    name = "6.0+stable-dontunmap-mmap"
    base = "6.0"
    summary = "2026 stable MREMAP_DONTUNMAP fixes, 6.1's shape: no merge next to the kept source; pgoff reset"
    commits: ClassVar[tuple[tuple[str, str], ...]] = STABLE_DONTUNMAP
    bugs: ClassVar[tuple[str, ...]] = ()

    def copy_vma_merge(self, vma: Vma, addr: int, length: int, pgoff: int, keep_source: bool = False) -> Vma | None:
        """copy_vma() (6.1.192): with ``keep_source``, an unfaulted source adjacent to the new range
        (``can_self_merge``) means no vma_merge() at all."""
        if keep_source and vma.anon_vma is None and (addr == vma.vm_end or vma.vm_start == addr + length):
            self.trace.cover("copy_vma: no merge next to an unfaulted source kept by MREMAP_DONTUNMAP")
            return None
        return super().copy_vma_merge(vma, addr, length, pgoff, keep_source)


class Linux612WithStableDontunmap(PgoffReset, Linux612):
    name = "6.12+stable-dontunmap-vma"
    base = "6.12"
    summary = "2026 stable MREMAP_DONTUNMAP fixes, 6.12's shape: the kept source is no merge neighbour; pgoff reset"
    commits: ClassVar[tuple[tuple[str, str], ...]] = STABLE_DONTUNMAP
    bugs: ClassVar[tuple[str, ...]] = ()

    def copy_vma_merge(self, vma: Vma, addr: int, length: int, pgoff: int, keep_source: bool = False) -> Vma | None:
        """copy_vma() (6.12.118): with ``keep_source``, an unfaulted source is dropped as the new
        range's prev or next before vma_merge_new_range()."""
        vmg = self.copy_vma_vmg(vma, addr, length, pgoff)
        if keep_source and vma.anon_vma is None and (vmg.prev is vma or vmg.next is vma):
            self.trace.cover("copy_vma: an unfaulted source kept by MREMAP_DONTUNMAP is no merge neighbour")
            vmg.prev = None if vmg.prev is vma else vmg.prev
            vmg.next = None if vmg.next is vma else vmg.next
        return self.vma_merge_new_range(vmg)
