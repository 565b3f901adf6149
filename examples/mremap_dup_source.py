"""61f67c230a5e "mm/vma: fix anon_vma UAF on mremap() faulted, unfaulted merge" (Lorenzo Stoakes,
January 2026), written the way a reviewer would bring it to rmapfuzz: an overlay file outside the
package, on the model of the kernel the patch applies to (6.16 carries bug J).

The patch: when mremap's copy_vma() merges the new range into a neighbour and vma_expand() grows
that neighbour over it, vma_expand() also runs dup_anon_vma(target, vmg->copied_from), so an
unfaulted neighbour takes the moved VMA's anon_vma and chain.  In the model, 6.16's vma_expand()
already calls a hook for exactly that dup (``vma_expand_dup_copied``, a no-op there); the patch is
its body.

    rmapfuzz kernels --where vma_expand_dup_copied examples/mremap_dup_source.py
    rmapfuzz replay corpus/6.16--merge-superset--mremap-maymove-fixed.json --kernel examples/mremap_dup_source.py
    rmapfuzz fuzz --kernel examples/mremap_dup_source.py --keep-going --budget 60
"""

from __future__ import annotations

from rmapfuzz.kernels.v6_15 import VmaMergeStruct
from rmapfuzz.kernels.v6_16 import Linux616
from rmapfuzz.model.core import Err
from rmapfuzz.model.objects import Vma


class VmaExpandDupsMremapSource(Linux616):
    name = "6.16+patch-61f67c23"
    base = "6.16"
    summary = "vma_expand() dups the anon_vma of mremap's source into the VMA it expands"
    commits = (("61f67c230a5e", "mm/vma: fix anon_vma UAF on mremap() faulted, unfaulted merge"),)
    bugs = ()  # the patch closes J, the one catalogued bug 6.16 carries

    def vma_expand_dup_copied(self, vmg: VmaMergeStruct) -> tuple[Err, Vma | None]:
        """vma_expand(): ``dup_anon_vma(target, vmg->copied_from)`` after the dup from next."""
        if vmg.copied_from is None or vmg.target is None:
            return None, None
        return self.dup_anon_vma(vmg.target, vmg.copied_from)
