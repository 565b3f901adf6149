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
stands for the running kernel (live-kernel.md, 6.18.44): alias ``current``.  Nothing else between
6.16 and 6.18 changes a rule this model has (the 6.17 multi-VMA mremap is not modelled).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v6_16 import Linux616, VmaMergeStruct
from rmapfuzz.model.core import Err
from rmapfuzz.model.objects import Vma

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
