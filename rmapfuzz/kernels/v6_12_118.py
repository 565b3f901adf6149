"""6.12.118: the 6.12 generation with the 2026 stable fixes of MREMAP_DONTUNMAP that Debian's
6.12.118 carries (:mod:`.stable_dontunmap`, 6.12's shape: the kept unfaulted source is dropped as a
merge neighbour).

The lab's ``debian-6.12`` kernel is compared with it (docs/lab.md).  Nothing else between 6.12 and
6.12.118 that the op language can see is known to differ; the lab's campaigns are what checks that.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.stable_dontunmap import STABLE_DONTUNMAP, Linux612WithStableDontunmap


class Linux612118(Linux612WithStableDontunmap):
    name = "6.12.118"
    base = "6.12"
    summary = "6.12 with the 2026 stable MREMAP_DONTUNMAP fixes (the kept source is no merge neighbour, pgoff reset)"
    commits: ClassVar[tuple[tuple[str, str], ...]] = STABLE_DONTUNMAP
    bugs: ClassVar[tuple[str, ...]] = ()
