"""Daniel Forrest's c4ea95d7cd08 "mm: fix anon_vma_clone() error treatment" (3.18), the fix of bug F,
alone on 3.12: __split_vma() (and vma_adjust(), anon_vma_fork()) return anon_vma_clone()'s own error.
Posted on linux-mm, <20141126210559.GA12060@cosmos.ssec.wisc.edu>; Michal Hocko's review gave it
"Fixes: ef0855d334e1" and stable 3.12+.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v3_12 import Linux312
from rmapfuzz.model.core import ENOMEM, Err

CC4EA95D7 = ("c4ea95d7cd08", "mm: fix anon_vma_clone() error treatment")


class Linux312WithC4ea95d7(Linux312):
    name = "3.12+c4ea95d7"
    base = "3.12"
    summary = "3.12 with Daniel Forrest's fix: a failed split answers anon_vma_clone()'s ENOMEM"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (CC4EA95D7,)
    bugs: ClassVar[tuple[str, ...]] = ("L",)

    def split_vma_clone_error(self) -> Err:
        """__split_vma() (3.18+): ``err = anon_vma_clone(new, vma)``."""
        return ENOMEM
