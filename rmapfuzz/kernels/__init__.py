"""The kernel generations, by name, and the catalogued bugs with the fix of each.

Each generation is an overlay on the one it names as ``base``, and its ``commits`` are what it adds
to that base (one file per generation, ``v*.py``).  The fix of every catalogued bug is also an
overlay of its own (``fix_*.py``) whose base is the oldest generation that carries the bug, so it
can be put on any generation that carries it: :func:`compose` builds "that generation with that
fix", which is how :func:`rmapfuzz.classify.classify` recognises a bug on every kernel that carries
it, and how a campaign goes on hunting once a bug is found.  ``resolve("3.19+2555283e")`` composes
on demand: a generation's name followed by ``+`` and fix tags.

The bug letters and what each is are in docs/model.md ("The bug catalogue").
"""

from __future__ import annotations

import difflib
import functools
import threading

from rmapfuzz.kernels import user
from rmapfuzz.kernels.fix_3a206a86 import Linux70rcWith3a206a86
from rmapfuzz.kernels.fix_3fe89b3e import Linux319rc4With3fe89b3e
from rmapfuzz.kernels.fix_61f67c23 import Linux616With61f67c23
from rmapfuzz.kernels.fix_287d97ac import Linux2634rc3With287d97ac
from rmapfuzz.kernels.fix_965f55de import Linux2634rc3With965f55de
from rmapfuzz.kernels.fix_734537c9 import Linux2634rc3With734537c9
from rmapfuzz.kernels.fix_2555283e import Linux319rc4With2555283e
from rmapfuzz.kernels.fix_c4ea95d7 import Linux312WithC4ea95d7
from rmapfuzz.kernels.fix_d0e9fe17 import Linux2634rc3WithD0e9fe17
from rmapfuzz.kernels.fix_ea90002b import Linux2634rc3WithEa90002b
from rmapfuzz.kernels.fix_fork_unlink import Linux2634rc3WithForkUnlink
from rmapfuzz.kernels.hannes_v2 import HannesV2
from rmapfuzz.kernels.stable_dontunmap import Linux60WithStableDontunmap, Linux612WithStableDontunmap
from rmapfuzz.kernels.v2_6_34 import Linux2634
from rmapfuzz.kernels.v2_6_34_rc3 import Linux2634rc3
from rmapfuzz.kernels.v2_6_34_rc4 import Linux2634rc4
from rmapfuzz.kernels.v2_6_35 import Linux2635
from rmapfuzz.kernels.v2_6_36 import Linux2636
from rmapfuzz.kernels.v3_0 import Linux30
from rmapfuzz.kernels.v3_7 import Linux37
from rmapfuzz.kernels.v3_12 import Linux312
from rmapfuzz.kernels.v3_19 import Linux319
from rmapfuzz.kernels.v3_19_rc4 import Linux319rc4
from rmapfuzz.kernels.v6_0 import Linux60
from rmapfuzz.kernels.v6_1 import Linux61
from rmapfuzz.kernels.v6_1_192 import Linux61192
from rmapfuzz.kernels.v6_12 import Linux612
from rmapfuzz.kernels.v6_12_118 import Linux612118
from rmapfuzz.kernels.v6_15 import Linux615
from rmapfuzz.kernels.v6_16 import Linux616
from rmapfuzz.kernels.v6_18 import Linux6188
from rmapfuzz.kernels.v7_0 import Linux70rc
from rmapfuzz.model.syscalls import SyscallMixin

Kernel = type[SyscallMixin]

BUGS: dict[str, str] = {
    "A": "vma_adjust imports the anon_vma but clones the importer's own chain (fixed by 287d97ac0321)",
    "B": "anon_vma_prepare borrows a neighbour's anon_vma whatever its chain (fixed by d0e9fe1758f2)",
    "S": "swap-in gives a page shared by a fork tree the first faulter's own anon_vma (fixed by ea90002b0fa7)",
    "C": "anon_vma_fork's error path leaves links to the freed child VMA (needs fail_alloc; unlinked in 2.6.35)",
    "M": "mremap merges a faulted range into an unfaulted neighbour without importing the anon_vma "
    "(latent until 965f55dea0e3, 3.0)",
    "D": "vma_adjust's import runs anon_vma_clone's reuse branch, so the exporter's anon_vma misses a degree "
    "(3.19-rc4; fixed by b800c91a0517)",
    "E": "anon_vma_clone's ENOMEM path unlinks with dst->anon_vma set: degree underflow (needs fail_alloc; "
    "fixed by 3fe89b3e2a7b, 4.0)",
    "L": "vma_adjust()'s case 6 imports on its second pass, after next was freed: a failed anon_vma_clone() "
    "leaves mprotect_fixup() with the freed VMA (needs fail_alloc; 2.6.34 until 734537c9cb72, 4.8)",
    "G": "CVE-2022-42703: an abandoned leaf anon_vma (degree 0) is reused by two VMAs of one fork whose chains "
    "differ (fixed by 2555283eb40d)",
    "F": "__split_vma loses anon_vma_clone's ENOMEM: the caller goes on with the VMA unsplit (a wrong layout or "
    "result; munmap then frees an unsplit tail whole, leaving its pages past the range mapped, their anon_vma "
    "freed; needs fail_alloc; 3.12 from ef0855d334e1, fixed by c4ea95d7cd08, 3.18)",
    "J": "6.16's three-way merge rule lets mremap merge a faulted VMA into an unfaulted neighbour, but vma_expand "
    "does not dup the source's anon_vma (fixed by 61f67c230a5e, with 3b617fd3d317)",
    "K": "7.0-rc's anon_vma_clone() ENOMEM path keeps dup_anon_vma()'s dst->anon_vma, never counted: a merge target "
    "with an anon_vma its chain does not link (needs fail_alloc; fixed by 3a206a8649f8)",
}

# The kernel path each bug needs: coverage points (rmapfuzz.coverage) a sequence showing the bug
# goes through on a kernel that carries it (one of them).
BUG_PATHS: dict[str, tuple[str, ...]] = {
    "A": ("vma_adjust: an unfaulted importer gets an anon_vma",),
    "B": (
        "find_mergeable_anon_vma: next (a fork child) lends its anon_vma",
        "find_mergeable_anon_vma: prev (a fork child) lends its anon_vma",
    ),
    "S": ("page_add_anon_rmap: first mapping sets the page's anon_vma",),
    "C": (
        "anon_vma_fork: ENOMEM from anon_vma_alloc after the clone",
        "anon_vma_fork: ENOMEM from anon_vma_chain_alloc after the clone",
    ),
    "M": ("copy_vma: a faulted source merges into the target's neighbours",),
    "D": ("vma_adjust: an unfaulted importer gets an anon_vma",),
    "E": ("anon_vma_clone: ENOMEM with dst->anon_vma set",),
    "L": ("vma_adjust: ENOMEM from the anon_vma import, case 6 second pass",),
    "G": ("anon_vma_clone: fork reuses an ancestor's anon_vma",),
    "F": ("__split_vma: anon_vma_clone's ENOMEM is lost, the split answers success",),
    "J": (
        "vma_merge_new_range: prev expands over the range and next, copied_from faulted",
        "vma_merge_new_range: prev expands over the range, copied_from faulted",
        "vma_merge_new_range: next expands down over the range, copied_from faulted",
    ),
    "K": ("cleanup_partial_anon_vmas: a merge target keeps an anon_vma it was never counted on",),
}

# The fix of each catalogued bug: an overlay on the oldest generation that carries it.
FIXES: dict[str, Kernel] = {
    "A": Linux2634rc3With287d97ac,
    "B": Linux2634rc3WithD0e9fe17,
    "S": Linux2634rc3WithEa90002b,
    "C": Linux2634rc3WithForkUnlink,
    "M": Linux2634rc3With965f55de,
    "L": Linux2634rc3With734537c9,
    "D": Linux319,
    "E": Linux319rc4With3fe89b3e,
    "G": Linux319rc4With2555283e,
    "F": Linux312WithC4ea95d7,
    "J": Linux616With61f67c23,
    "K": Linux70rcWith3a206a86,
}

GENERATIONS: tuple[Kernel, ...] = (
    Linux2634rc3,
    HannesV2,
    Linux2634rc3WithD0e9fe17,
    Linux2634rc3With287d97ac,
    Linux2634rc3WithEa90002b,
    Linux2634rc3WithForkUnlink,
    Linux2634rc3With965f55de,
    Linux2634rc3With734537c9,
    Linux2634rc4,
    Linux2634,
    Linux2635,
    Linux2636,
    Linux30,
    Linux37,
    Linux312,
    Linux312WithC4ea95d7,
    Linux319rc4,
    Linux319rc4With3fe89b3e,
    Linux319rc4With2555283e,
    Linux319,
    Linux60,
    Linux60WithStableDontunmap,
    Linux61,
    Linux61192,
    Linux612,
    Linux612WithStableDontunmap,
    Linux612118,
    Linux615,
    Linux616,
    Linux616With61f67c23,
    Linux6188,
    Linux70rc,
    Linux70rcWith3a206a86,
)


def fix_tag(fix: Kernel) -> str:
    """What ``+tag`` adds ``fix`` in a kernel name: its name after its base's, else its first commit."""
    prefix = f"{fix.base}+"
    return fix.name[len(prefix) :] if fix.name.startswith(prefix) else fix.commits[0][0][:8]


# Overlays of stable-tree fixes that close no catalogued bug, composable as the fixes are
# (``6.1+stable-dontunmap-mmap``); the lab's stable-release generations are built from them.
STABLE_FIXES: tuple[Kernel, ...] = (Linux60WithStableDontunmap, Linux612WithStableDontunmap)
FIX_TAGS: dict[str, Kernel] = {fix_tag(fix): fix for fix in (*FIXES.values(), *STABLE_FIXES)}


class UnknownKernel(KeyError):
    def __str__(self) -> str:
        close = difflib.get_close_matches(str(self.args[0]), names(), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return f"unknown kernel {self.args[0]!r} ({hint}`rmapfuzz kernels` lists them)"


class CannotCompose(ValueError):
    """A fix put on a kernel that is not a descendant of the fix's base (it would bring that
    base's other commits along), or on one that has it already."""


def _fix_base(fix: Kernel) -> Kernel:
    """The generation ``fix`` is an overlay on: the one its ``base`` names (an overlay may also take
    in a mixin that two overlays share, so its parents alone do not say)."""
    base = next((cls for cls in GENERATIONS if cls.name == fix.base), None)
    if base is None or base is fix or not issubclass(fix, base):
        raise CannotCompose(f"{fix.name} is not an overlay on the generation {fix.base!r}")
    return base


_COMPOSING = threading.Lock()  # a campaign's progress thread resolves names too: one class per name


def compose(kernel: Kernel, *fixes: Kernel) -> Kernel:
    """``kernel`` with each fix applied on top, as a generation of its own (``kernel.name+tag...``);
    the bugs the fixes close are gone from its ``bugs``.  The same arguments give the same class."""
    with _COMPOSING:
        return _compose(kernel, *fixes)


@functools.cache
def _compose(kernel: Kernel, *fixes: Kernel) -> Kernel:
    for fix in fixes:
        if issubclass(kernel, fix):
            raise CannotCompose(f"{kernel.name} has {fix.name} already")
        if not issubclass(kernel, _fix_base(fix)):
            raise CannotCompose(f"{fix.name} is a fix on {fix.base}, which {kernel.name} does not descend from")
        if _fix_base(fix) is kernel:  # the fix overlay is that composition already
            kernel = fix
            continue
        closed = {bug for bug, f in FIXES.items() if f is fix}
        namespace = {
            "name": f"{kernel.name}+{fix_tag(fix)}",
            "base": kernel.name,
            "summary": f"{kernel.name} with only {fix_tag(fix)} added: {fix.summary}",
            "commits": fix.commits,
            "bugs": tuple(b for b in kernel.bugs if b not in closed),
            "__module__": fix.__module__,
        }
        kernel = type(f"{kernel.__name__}_{fix.__name__}", (fix, kernel), namespace)
    return kernel


def with_fix(kernel: Kernel, bug: str) -> Kernel:
    """``kernel`` with the fix of a bug it carries."""
    return compose(kernel, FIXES[bug])


# Compositions that earlier versions named (corpus files and scripts may use these names).
COMPOSED: tuple[Kernel, ...] = (
    compose(Linux2634, Linux2634rc3With965f55de),
    compose(Linux37, Linux2634rc3With734537c9),
    compose(Linux319, Linux319rc4With2555283e),
    compose(Linux319, Linux319rc4With3fe89b3e),
)
KERNELS: dict[str, Kernel] = {cls.name: cls for cls in (*GENERATIONS, *COMPOSED)}
ALIASES: dict[str, str] = {
    "current": "6.18.8",  # the rules of the kernel the live oracle runs (docs/live-oracle.md: 6.18.44)
    "3.7+e86f15ee": "3.7+734537c9",  # bug L's fix was attributed to e86f15ee64d8 (4.9) until 2026-12
    "3.19+degree-underflow-fix": "3.19+3fe89b3e",
}


def names() -> list[str]:
    return [*KERNELS, *ALIASES]


def resolve(name: str) -> Kernel:
    """A generation by name or alias, a composition ``generation+tag+tag`` of fix tags, or a user's
    overlay file ``path.py[:ClassName]`` (:mod:`rmapfuzz.kernels.user`; raises its OverlayError)."""
    if user.is_file_spec(name):
        return user.load(name, GENERATIONS, KERNELS, BUGS)
    name = ALIASES.get(name, name)
    named = {**KERNELS, **user.BY_NAME}
    cls = named.get(name)
    if cls is not None:
        return cls
    for known in sorted(named, key=len, reverse=True):
        if name.startswith(known + "+"):
            tags = name[len(known) + 1 :].split("+")
            if all(tag in FIX_TAGS for tag in tags):
                try:
                    return compose(named[known], *(FIX_TAGS[tag] for tag in tags))
                except CannotCompose:
                    break
    raise UnknownKernel(name)


def boot(kernel: str | Kernel, window: int = 8) -> SyscallMixin:
    """A fresh model kernel of that generation with process 0 and an empty window."""
    cls = resolve(kernel) if isinstance(kernel, str) else kernel
    return cls(window=window)


def carriers(bug: str) -> list[str]:
    """The named generations that carry ``bug``."""
    return [name for name, cls in KERNELS.items() if bug in cls.bugs]


OverlayError = user.OverlayError

__all__ = [
    "ALIASES",
    "BUGS",
    "FIXES",
    "KERNELS",
    "CannotCompose",
    "OverlayError",
    "UnknownKernel",
    "boot",
    "carriers",
    "compose",
    "names",
    "resolve",
    "with_fix",
]
