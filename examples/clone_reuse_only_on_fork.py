"""Wei Yang's "[Patch v4 1/2] mm/rmap.c: don't reuse anon_vma if we just want a copy" (linux-mm,
11 October 2019, Message-ID <20191011072256.16275-1-richardw.yang@linux.intel.com>), as a user's
overlay on the 3.19 model.

Since 7a3ef208e662 (3.19) anon_vma_clone() reuses an ancestor's anon_vma whenever ``dst->anon_vma``
is NULL.  It is called by fork (anon_vma_fork() clears ``dst->anon_vma`` first) but also by
__split_vma() and copy_vma(), which want an exact copy of src; the patch allows the reuse only
when ``src->anon_vma`` is set as well, which holds at fork and not for a copy of an unfaulted
VMA.  The question a reviewer asks of such a patch is whether it changes anything a user or the
rmap can see: fuzz it with the invariants, and compare it with 3.19 step by step.

    rmapfuzz kernels --where may_reuse_anon_vma examples/clone_reuse_only_on_fork.py
    rmapfuzz fuzz --kernel examples/clone_reuse_only_on_fork.py --keep-going --budget 60
"""

from __future__ import annotations

from rmapfuzz.kernels.v3_19 import Linux319
from rmapfuzz.model.objects import AnonVma, Vma


class CloneReusesOnlyOnFork(Linux319):
    name = "3.19+reuse-only-on-fork"
    base = "3.19"
    summary = "anon_vma_clone() reuses an ancestor's anon_vma only when src has one (a fork), not for a copy"
    commits = (
        (
            "<20191011072256.16275-1-richardw.yang@linux.intel.com>",
            "mm/rmap.c: don't reuse anon_vma if we just want a copy (v4)",
        ),
    )
    bugs = ("E", "G", "L")  # what 3.19 carries; the patch is not about any of them

    def may_reuse_anon_vma(self, dst: Vma, src: Vma, av: AnonVma) -> bool:
        """The reuse test of anon_vma_clone(), with the patch's ``src->anon_vma &&``."""
        return src.anon_vma is not None and super().may_reuse_anon_vma(dst, src, av)
