"""2.6.34-rc4: 2.6.34-rc3 with both April 2010 merge fixes, d0e9fe1758f2 (bug B) and 287d97ac0321
(bug A); the old rule for a swapped-in page's anon_vma (bug S) is still there.

Which -rc tag each of the April 2010 fixes first appeared in is not verified: d0e9fe1758f2 was
committed on 13 April and ea90002b0fa7 (bug S's fix, see :mod:`.fix_ea90002b`) on 12 April 2010, the
day 2.6.34-rc4 was tagged.  The generation stands for "both merge fixes, not yet the swap-in fix".
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.fix_287d97ac import C287D97AC, Linux2634rc3With287d97ac
from rmapfuzz.kernels.fix_d0e9fe17 import D0E9FE17, Linux2634rc3WithD0e9fe17


class Linux2634rc4(Linux2634rc3With287d97ac, Linux2634rc3WithD0e9fe17):
    """Both fixes; no code of its own."""

    name = "2.6.34-rc4"
    base = "2.6.34-rc3"
    summary = "both April 2010 merge fixes; the old swap-in rule is still there"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (D0E9FE17, C287D97AC)
    bugs: ClassVar[tuple[str, ...]] = ("S", "C", "M", "L")
