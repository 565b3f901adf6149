"""6.1.192: the 6.1 generation with the 2026 stable fixes of MREMAP_DONTUNMAP that Debian's 6.1.192
carries (:mod:`.stable_dontunmap`, 6.1's shape: no merge at all next to a kept unfaulted source).

The lab's ``debian-6.1`` and ``kasan-6.1`` kernels (both 6.1.192) are compared with it
(docs/lab.md).  Nothing else between 6.1 and 6.1.192 that the op language can see is known to
differ; the lab's campaigns are what checks that.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.stable_dontunmap import STABLE_DONTUNMAP, Linux60WithStableDontunmap
from rmapfuzz.kernels.v6_1 import Linux61


class Linux61192(Linux60WithStableDontunmap, Linux61):
    name = "6.1.192"
    base = "6.1"
    summary = "6.1 with the 2026 stable MREMAP_DONTUNMAP fixes (no self-merge of a kept source, pgoff reset)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = STABLE_DONTUNMAP
    bugs: ClassVar[tuple[str, ...]] = ()
