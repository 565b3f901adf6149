"""61f67c230a5e "mm/vma: fix anon_vma UAF on mremap() faulted, unfaulted merge" (Lorenzo Stoakes,
January 2026; 6.19-rc, backported to 6.18.8), the fix of bug J, alone on 6.16.

vma_expand() also runs ``dup_anon_vma(target, vmg->copied_from)``, so an unfaulted VMA that
mremap's copy_vma() expands over a faulted source gets the source's anon_vma and chain.  Without it
(6.16 ... 6.19-rc) the moved ptes are not reachable from the source's anon_vma through the target,
and once the source is unmapped (or, with MREMAP_DONTUNMAP, unlinked) that anon_vma is freed under
them (CVE-2026-23077).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v6_15 import VmaMergeStruct
from rmapfuzz.kernels.v6_16 import Linux616
from rmapfuzz.model.core import Err
from rmapfuzz.model.objects import Vma

C61F67C23 = ("61f67c230a5e", "mm/vma: fix anon_vma UAF on mremap() faulted, unfaulted merge")


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
        err, dup = self.dup_anon_vma(vmg.target, vmg.copied_from)
        if err:
            self.trace.cover("vma_expand: ENOMEM dup'ing mremap's source")
        return err, dup
