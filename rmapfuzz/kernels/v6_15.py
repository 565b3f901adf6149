"""6.15: 6.12, and nothing that 6.13 to 6.15 changed in the functions this model has.

Until 2026-12 this generation held the mm/vma.c merge code itself; that code is all 6.12's (every
commit it cites is in 6.12: cacded5e42b9 and cc8cb3697a8d came in 6.12, the rest earlier), so it
moved down to :mod:`.v6_12` when the lab compared Debian's 6.12.118 with it, and 6.15 keeps the
name for the reproducers, databases and tests that use it.  What 6.13 to 6.15 changed around these
functions, as recalled and not re-read here: Lorenzo Stoakes' moves of mmap_region() and its
helpers into mm/vma.c and the ``vmg->vma`` / ``vmg->middle`` renames (refactors), and the mmap()
retry after a driver's ``mmap`` hook changes flags (file mappings only); none is behaviour the op
language can see.  6.16's three-way merge rule (879bca0a2c4f) is the next change (:mod:`.v6_16`).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v6_12 import (
    C0503EA8F,
    C64FE24A3,
    CC18160DB,
    CEXISTING,
    CNEWRANGE,
    CUNACCT,
    Linux612,
    Takeover,
    VmaMergeStruct,
)

__all__ = [
    "C0503EA8F",
    "C64FE24A3",
    "CC18160DB",
    "CEXISTING",
    "CNEWRANGE",
    "CUNACCT",
    "Linux615",
    "Takeover",
    "VmaMergeStruct",
]


class Linux615(Linux612):
    name = "6.15"
    base = "6.12"
    summary = "6.12's merge code: nothing 6.13-6.15 changed in these functions is visible to the op language"
    commits: ClassVar[tuple[tuple[str, str], ...]] = ()
    bugs: ClassVar[tuple[str, ...]] = ()
