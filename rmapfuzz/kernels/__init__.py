"""The kernel generations, by name.  Each is an overlay on the one it names as ``base``, and its
``commits`` are what it adds to that base.

A catalogued bug's letter is kernel-rmap.md §6's; ``M`` is the mremap hole the model found in the
2.6.34-era code (a faulted range merged into an unfaulted neighbour without an anon_vma import),
and ``L`` the error-path use-after-free it found in vma_adjust()'s case 6 (2.6.34 … 4.7).
"""

from __future__ import annotations

from rmapfuzz.kernels.hannes_v2 import HannesV2
from rmapfuzz.kernels.v2_6_34 import Linux2634
from rmapfuzz.kernels.v2_6_34_rc3 import Linux2634rc3
from rmapfuzz.kernels.v2_6_34_rc4 import Linux2634rc3With287d97ac, Linux2634rc3WithD0e9fe17, Linux2634rc4
from rmapfuzz.kernels.v2_6_35 import Linux2635, Linux2636
from rmapfuzz.kernels.v3_0 import Linux30, Linux2634With965f55de
from rmapfuzz.kernels.v3_7 import Linux37
from rmapfuzz.kernels.v3_19 import Linux319, Linux319rc4
from rmapfuzz.kernels.v6_0 import Linux37WithE86f15ee, Linux60, Linux319With2555283e, Linux319WithLeonYu
from rmapfuzz.kernels.v6_16 import Linux615, Linux616
from rmapfuzz.kernels.v6_18 import Linux616With61f67c23, Linux6188
from rmapfuzz.model.syscalls import SyscallMixin

KERNELS: dict[str, type[SyscallMixin]] = {
    cls.name: cls
    for cls in (
        Linux2634rc3,
        HannesV2,
        Linux2634rc3WithD0e9fe17,
        Linux2634rc3With287d97ac,
        Linux2634rc4,
        Linux2634,
        Linux2634With965f55de,
        Linux2635,
        Linux2636,
        Linux30,
        Linux37,
        Linux37WithE86f15ee,
        Linux319rc4,
        Linux319,
        Linux319With2555283e,
        Linux319WithLeonYu,
        Linux60,
        Linux615,
        Linux616,
        Linux616With61f67c23,
        Linux6188,
    )
}
# the rules of the kernel the live oracle runs (live-kernel.md: 6.18.44)
ALIASES: dict[str, str] = {"current": "6.18.8"}

BUGS: dict[str, str] = {
    "A": "vma_adjust imports the anon_vma but clones the importer's own chain (fixed by 287d97ac0321)",
    "B": "anon_vma_prepare borrows a neighbour's anon_vma whatever its chain (fixed by d0e9fe1758f2)",
    "S": "swap-in gives a page shared by a fork tree the first faulter's own anon_vma (fixed late April 2010)",
    "C": "anon_vma_fork's error path leaves links to the freed child VMA (needs fail_alloc; fixed by 2.6.35)",
    "M": "mremap merges a faulted range into an unfaulted neighbour without importing the anon_vma "
    "(latent until 965f55dea0e3, 3.0)",
    "D": "vma_adjust's import runs anon_vma_clone's reuse branch, so the exporter's anon_vma misses a degree "
    "(3.19-rc4; fixed by b800c91a0517)",
    "E": "anon_vma_clone's ENOMEM path unlinks with dst->anon_vma set: degree underflow (needs fail_alloc; "
    "fixed by Leon Yu, 4.0)",
    "L": "vma_adjust()'s case 6 imports on its second pass, after next was freed: a failed anon_vma_clone() "
    "leaves mprotect_fixup() with the freed VMA (needs fail_alloc; 2.6.34 until e86f15ee64d8, 4.8)",
    "G": "CVE-2022-42703: an abandoned leaf anon_vma (degree 0) is reused by two VMAs of one fork whose chains "
    "differ (fixed by 2555283eb40d)",
    "J": "6.16's three-way merge rule lets mremap merge a faulted VMA into an unfaulted neighbour, but vma_expand "
    "does not dup the source's anon_vma (fixed by 61f67c230a5e, with 3b617fd3d317)",
}


# (kernel with the bug, the same kernel with only that bug's fix): a reproducer shows the bug if
# it breaks an invariant on the first and replays clean on the second.
FIXED_BY: dict[str, tuple[str, str]] = {
    "A": ("2.6.34-rc3", "2.6.34-rc3+287d97ac"),
    "B": ("2.6.34-rc3", "2.6.34-rc3+d0e9fe17"),
    "S": ("2.6.34-rc4", "2.6.34"),
    # C's fix is not modelled alone: 2.6.35 is the next generation, and of 2.6.34's bugs it fixes
    # only C (M stays until 3.0).
    "C": ("2.6.34", "2.6.35"),
    "M": ("2.6.34", "2.6.34+965f55de"),
    "D": ("3.19-rc4", "3.19"),
    "G": ("3.19", "3.19+2555283e"),
    "E": ("3.19", "3.19+degree-underflow-fix"),
    "L": ("3.7", "3.7+e86f15ee"),
    "J": ("6.16", "6.16+61f67c23"),
}


class UnknownKernel(KeyError):
    def __str__(self) -> str:
        return f"unknown kernel {self.args[0]!r} (known: {', '.join(names())})"


def names() -> list[str]:
    return [*KERNELS, *ALIASES]


def resolve(name: str) -> type[SyscallMixin]:
    cls = KERNELS.get(ALIASES.get(name, name))
    if cls is None:
        raise UnknownKernel(name)
    return cls


def boot(name: str, window: int = 8) -> SyscallMixin:
    """A fresh model kernel of that generation with process 0 and an empty window."""
    return resolve(name)(window=window)
