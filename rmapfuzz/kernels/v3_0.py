"""3.0: 2.6.36 and Shaohua Li's 965f55dea0e3 "mmap: avoid merging cloned VMAs" (:mod:`.fix_965f55de`,
which closes bug M); nothing else between 2.6.36 and 3.0 changes a rule this model has.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.fix_965f55de import C965F55DE, Linux2634rc3With965f55de
from rmapfuzz.kernels.v2_6_36 import Linux2636


class Linux30(Linux2634rc3With965f55de, Linux2636):
    """2.6.36 plus 965f55dea0e3; no code of its own."""

    name = "3.0"
    base = "2.6.36"
    summary = "Shaohua Li's rule: no merge of an unfaulted side with a forked (non-singular) neighbour"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (C965F55DE,)
    bugs: ClassVar[tuple[str, ...]] = ("L",)
