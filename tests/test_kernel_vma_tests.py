"""The kernel's own VMA merge unit tests (tools/testing/vma), ported to the 6.x models.

The kernel builds mm/vma.c in userland and drives vma_merge_new_range(), vma_merge_existing_range(),
vma_expand(), vma_merge_extend(), copy_vma() and __mmap_region() on hand-made VMAs
(tools/testing/vma/vma.c from 6.12; split into tools/testing/vma/tests/{merge,vma,mmap}.c for 7.0).
Each test below re-states one kernel test, or one case of it, against the model's functions of the
same name (:class:`rmapfuzz.kernels.v6_12.Linux612` and its descendants), at every generation whose
kernel carries the test: 6.12 on (``6.12``, ``6.12.118``, ``6.15``, ``6.16``, ``6.18.8``,
``7.0-rc``), test_mmap_region_basic from 6.13 on.  The facts are the kernel's, the code is not.

Diagrams follow the kernel's: one character per page (the kernel's 0x1000-byte pages; address N
is page N), the first line numbering the pages.  The kernel's dummy anon_vma is a real anon_vma
here, from anon_vma_prepare() (:func:`fault`) or linked the way anon_vma_prepare() links a
neighbour's (:func:`share`); the kernel's ``was_cloned`` is the target's chain now linking it.

879bca0a2c4f ("mm/vma: fix incorrectly disallowed anonymous VMA merges", 6.16) changed the
tests with the rule: before it, the tests that merge a faulted middle VMA into an unfaulted
neighbour leave ``vmg->anon_vma`` NULL (a state no caller makes: vma_modify() always passes the
middle's anon_vma, and 6.12's rule refuses that merge); from it, ``vmg->anon_vma`` is the middle's
and its chain a single link.  :func:`vmg_anon_vma` encodes that.

Not ported, because the model cannot express them:

* test_simple_shrink: vma_shrink() (exec's relocate_vma_down()); the model has no such call.
* test_vma_merge_special_flags: VM_IO, VM_DONTEXPAND, VM_PFNMAP, VM_MIXEDMAP; the model has no
  VM_SPECIAL flags.
* test_vma_merge_with_close, test_vma_merge_new_with_close, and the ``vm_ops`` set in
  test_merge_new and test_merge_existing: the model's VMAs have no vm_ops->close.
* test_vmi_prealloc_fail: a maple-tree preallocation failure in commit_merge(); the model's
  commit_merge() cannot fail (its merge ENOMEM comes only from anon_vma_clone()).
* test_expand_only_mode: VMG_FLAG_JUST_EXPAND (``vmg->just_expand`` in 7.0) and the iterator
  position; the model has neither.
* The sticky-flag permutations of test_merge_new and test_merge_existing (VMA_STICKY_FLAGS,
  6.19 on): the model has no sticky flags; the permutation with none is ported.
* tests/vma.c's test_vma_flags_* (7.0): the vma_flags_t bitmap helpers, not merging.
* Every vma_write_started(), vma_assert_attached() and vma_iter_addr() assertion: VMA locks,
  attachment and the maple-tree iterator are not modelled (the case's other assertions are kept).

test_mmap_region_fill_hole_* and test_pure_anon_dev_zero first appear after 7.0, in no modelled
generation.
"""

from __future__ import annotations

import pytest

from rmapfuzz.kernels import boot
from rmapfuzz.kernels.v6_12 import Linux612, VmaMergeStruct
from rmapfuzz.layout import diagram
from rmapfuzz.model.core import OK
from rmapfuzz.model.objects import VM_MAYREAD, VM_MAYWRITE, VM_READ, VM_WRITE, AnonVma, Vma

# The kernel tests' flags: VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE.
FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE

# tools/testing/vma/vma.c's merge tests first shipped in 6.12 (Lorenzo Stoakes' vma_merge_struct series).
SINCE_6_12 = ("6.12", "6.12.118", "6.15", "6.16", "6.18.8", "7.0-rc")
# test_mmap_region_basic came with __mmap_region()'s move into mm/vma.c (6.13).
SINCE_6_13 = ("6.15", "6.16", "6.18.8", "7.0-rc")
# The generations whose tests set vmg->anon_vma to the middle VMA's (879bca0a2c4f, 6.16).
ANON_VMG = frozenset({"6.16", "6.18.8", "7.0-rc"})

WINDOW = 16


def boot612(gen: str, window: int = WINDOW) -> Linux612:
    """A fresh model kernel of a 6.12-or-later generation (the merge code of mm/vma.c)."""
    k = boot(gen, window)
    assert isinstance(k, Linux612)
    return k


def alloc_and_link(k: Linux612, start: int, end: int, pgoff: int, flags: int = FLAGS) -> Vma:
    """The kernel harness's alloc_and_link_vma(): vm_area_alloc() then vma_link() into process 0."""
    mm = k.mms[0]
    vma = k.vm_area_alloc(mm, start, end, pgoff, flags)
    k.vma_link(mm, vma)
    return vma


def fault(k: Linux612, vma: Vma) -> AnonVma:
    """anon_vma_prepare() on an unfaulted VMA with no neighbour to borrow from: a new anon_vma and a
    one-link chain (the harness's vma_set_dummy_anon_vma())."""
    known = list(k.anon_vmas)
    assert k.anon_vma_prepare(vma) is None
    av = vma.anon_vma
    assert av is not None and av not in known, "anon_vma_prepare() borrowed a neighbour's anon_vma"
    return av


def share(k: Linux612, vma: Vma, av: AnonVma) -> None:
    """Link an unfaulted VMA to an existing anon_vma alone, as anon_vma_prepare() does with the one
    find_mergeable_anon_vma() lends it (the harness gives every VMA the same dummy anon_vma)."""
    assert vma.anon_vma is None
    k.anon_vma_prepare_link(vma, av)


def chain(vma: Vma) -> list[AnonVma]:
    return vma.chain_anon_vmas()


def map_count(k: Linux612) -> int:
    return len(k.mms[0].vmas)


def spans(k: Linux612) -> list[tuple[int, int, int]]:
    """(vm_start, vm_end, vm_pgoff) of every VMA of process 0, by address."""
    return [(v.vm_start, v.vm_end, v.vm_pgoff) for v in k.mms[0].vmas]


def new_range(k: Linux612, start: int, end: int, pgoff: int, anon_vma: AnonVma | None = None) -> VmaMergeStruct:
    """The harness's vmg_set_range() + merge_new(): a new range between the VMAs around it."""
    mm = k.mms[0]
    nxt, prev = k.find_vma_prev(mm, start)
    return VmaMergeStruct(mm=mm, prev=prev, next=nxt, start=start, end=end, pgoff=pgoff, flags=FLAGS, anon_vma=anon_vma)


def existing_range(
    k: Linux612, prev: Vma | None, middle: Vma, start: int, end: int, pgoff: int, anon_vma: AnonVma | None
) -> VmaMergeStruct:
    """The harness's vmg_set_range() with ``vmg->prev`` and ``vmg->middle`` (``vmg->vma`` in 6.12):
    [start, end) of ``middle`` changes (to the same flags); ``prev`` is middle itself when the
    range starts inside it."""
    return VmaMergeStruct(
        mm=k.mms[0],
        prev=prev,
        next=None,
        start=start,
        end=end,
        pgoff=pgoff,
        flags=FLAGS,
        anon_vma=anon_vma,
        middle=middle,
    )


def vmg_anon_vma(gen: str, middle: Vma) -> AnonVma | None:
    """``vmg->anon_vma`` in the kernel tests that modify a faulted middle VMA: NULL before
    879bca0a2c4f (6.16), the middle's anon_vma from it (vmg_set_range_anon_vma())."""
    return middle.anon_vma if gen in ANON_VMG else None


def try_merge_new(k: Linux612, start: int, end: int, pgoff: int) -> tuple[Vma, bool]:
    """The harness's try_merge_new_vma(): merge [start, end) with its neighbours, else map a new VMA
    there; (the VMA now covering the range, whether it merged)."""
    vmg = new_range(k, start, end, pgoff)
    merged = k.vma_merge_new_range(vmg)
    assert not vmg.nomem
    if merged is not None:
        return merged, True
    return alloc_and_link(k, start, end, pgoff), False


# ---- the simple tests ----


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_simple_merge(gen: str) -> None:
    """
    012
    L.R   a new range [1,2) pgoff 1 between L (pgoff 0) and R (pgoff 2)
    LLL   L grows over it and R: [0,3) pgoff 0, the flags unchanged
    """
    k = boot612(gen)
    left = alloc_and_link(k, 0, 1, 0)
    alloc_and_link(k, 2, 3, 2)
    vmg = new_range(k, 1, 2, 1)
    assert k.vma_merge_new_range(vmg) is left
    assert (left.vm_start, left.vm_end, left.vm_pgoff, left.vm_flags) == (0, 3, 0, FLAGS)
    assert map_count(k) == 1


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_simple_modify(gen: str) -> None:
    """
    012
    VVV   vma_modify_flags() of [1,2) to read-only, prev = V itself (the range starts inside it)
    ABC   no merge: two splits; V is the middle [1,2) pgoff 1, the new VMAs [0,1) and [2,3)
    """
    k = boot612(gen)
    init = alloc_and_link(k, 0, 3, 0)
    err, vma = k.vma_modify_flags(init, init, 1, 2, VM_READ | VM_MAYREAD)
    assert err is None
    assert vma is init
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (1, 2, 1)
    assert spans(k) == [(0, 1, 0), (1, 2, 1), (2, 3, 2)]


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_simple_expand(gen: str) -> None:
    """
    012
    V..   vma_expand() of V to [0,3) pgoff 0, nothing after it
    VVV
    """
    k = boot612(gen)
    vma = alloc_and_link(k, 0, 1, 0)
    vmg = VmaMergeStruct(mm=k.mms[0], prev=None, next=None, start=0, end=3, pgoff=0, flags=FLAGS, target=vma)
    assert k.vma_expand(vmg) is None
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0, 3, 0)


# ---- test_merge_new ----


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_merge_new(gen: str) -> None:
    """Six new ranges, one after the other (``*`` the new range):

    0123456789abc
    AA B       CC   A unfaulted, B and C get one anon_vma (AV) when the test faults them
    AA B   **  CC   no neighbour: a new VMA D
    AA*B   DD  CC   B faulted: A grows over the range and B, and takes AV from B
    AAAA*  DD  CC   A grows
    AAAAA *DD  CC   D linked to AV: D grows down
    AAAAA*DDD  CC   A grows over the range and D
    AAAAAAAAA *CC   C linked to AV: C grows down
    AAAAAAAAA*CCC   A grows over the range and C
    AAAAAAAAAAAAA   one VMA, [0,0xc) pgoff 0, anon_vma AV
    """
    k = boot612(gen)
    vma_a = alloc_and_link(k, 0, 2, 0)
    vma_b = alloc_and_link(k, 3, 4, 3)
    vma_c = alloc_and_link(k, 0xB, 0xC, 0xB)

    vma_d, merged = try_merge_new(k, 7, 9, 7)
    assert not merged
    assert map_count(k) == 4

    av = fault(k, vma_b)
    vma, merged = try_merge_new(k, 2, 3, 2)
    assert merged and vma is vma_a
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff, vma.anon_vma) == (0, 4, 0, av)
    assert vma_b.freed
    assert map_count(k) == 3

    vma, merged = try_merge_new(k, 4, 5, 4)
    assert merged and vma is vma_a
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff, vma.anon_vma) == (0, 5, 0, av)
    assert map_count(k) == 3

    share(k, vma_d, av)
    vma, merged = try_merge_new(k, 6, 7, 6)
    assert merged and vma is vma_d
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff, vma.anon_vma) == (6, 9, 6, av)
    assert map_count(k) == 3

    vma, merged = try_merge_new(k, 5, 6, 5)
    assert merged and vma is vma_a
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff, vma.anon_vma) == (0, 9, 0, av)
    assert map_count(k) == 2

    share(k, vma_c, av)
    vma, merged = try_merge_new(k, 0xA, 0xB, 0xA)
    assert merged and vma is vma_c
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff, vma.anon_vma) == (0xA, 0xC, 0xA, av)
    assert map_count(k) == 2

    vma, merged = try_merge_new(k, 9, 0xA, 9)
    assert merged and vma is vma_a
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff, vma.anon_vma) == (0, 0xC, 0, av)
    assert map_count(k) == 1
    assert diagram(k, 0) == "AAAAAAAAAAAA...."


# ---- test_merge_existing ----


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_merge_existing_right_partial(gen: str) -> None:
    """
    0123456789
      VVVVNNN    [3,6) of V (faulted, AV) changes, prev = V: N is unfaulted
      VNNNNNN    N grows down to [3,9) pgoff 3 and takes AV; V shrinks to [2,3) pgoff 2
    """
    k = boot612(gen)
    vma = alloc_and_link(k, 2, 6, 2)
    vma_next = alloc_and_link(k, 6, 9, 6)
    av = fault(k, vma)
    vmg = existing_range(k, vma, vma, 3, 6, 3, vmg_anon_vma(gen, vma))
    assert k.vma_merge_existing_range(vmg) is vma_next
    assert not vmg.nomem
    assert (vma_next.vm_start, vma_next.vm_end, vma_next.vm_pgoff, vma_next.anon_vma) == (3, 9, 3, av)
    assert chain(vma_next) == [av]
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (2, 3, 2)
    assert map_count(k) == 2


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_merge_existing_right_full(gen: str) -> None:
    """
    0123456789
      VVVVNNN    all of V (faulted, AV) changes: N is unfaulted
      NNNNNNN    N grows down to [2,9) pgoff 2 and takes AV; V is removed
    """
    k = boot612(gen)
    vma = alloc_and_link(k, 2, 6, 2)
    vma_next = alloc_and_link(k, 6, 9, 6)
    av = fault(k, vma)
    vmg = existing_range(k, None, vma, 2, 6, 2, vmg_anon_vma(gen, vma))
    assert k.vma_merge_existing_range(vmg) is vma_next
    assert not vmg.nomem
    assert (vma_next.vm_start, vma_next.vm_end, vma_next.vm_pgoff, vma_next.anon_vma) == (2, 9, 2, av)
    assert chain(vma_next) == [av]
    assert vma.freed
    assert map_count(k) == 1


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_merge_existing_left_partial(gen: str) -> None:
    """
    0123456789
    PPPVVVV      [3,6) of V (faulted, AV) changes: P is unfaulted
    PPPPPPV      P grows to [0,6) pgoff 0 and takes AV; V shrinks to [6,7) pgoff 6
    """
    k = boot612(gen)
    vma_prev = alloc_and_link(k, 0, 3, 0)
    vma = alloc_and_link(k, 3, 7, 3)
    av = fault(k, vma)
    vmg = existing_range(k, vma_prev, vma, 3, 6, 3, vmg_anon_vma(gen, vma))
    assert k.vma_merge_existing_range(vmg) is vma_prev
    assert not vmg.nomem
    assert (vma_prev.vm_start, vma_prev.vm_end, vma_prev.vm_pgoff, vma_prev.anon_vma) == (0, 6, 0, av)
    assert chain(vma_prev) == [av]
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (6, 7, 6)
    assert map_count(k) == 2


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_merge_existing_left_full(gen: str) -> None:
    """
    0123456789
    PPPVVVV      all of V (faulted, AV) changes: P is unfaulted
    PPPPPPP      P grows to [0,7) pgoff 0 and takes AV; V is removed
    """
    k = boot612(gen)
    vma_prev = alloc_and_link(k, 0, 3, 0)
    vma = alloc_and_link(k, 3, 7, 3)
    av = fault(k, vma)
    vmg = existing_range(k, vma_prev, vma, 3, 7, 3, vmg_anon_vma(gen, vma))
    assert k.vma_merge_existing_range(vmg) is vma_prev
    assert not vmg.nomem
    assert (vma_prev.vm_start, vma_prev.vm_end, vma_prev.vm_pgoff, vma_prev.anon_vma) == (0, 7, 0, av)
    assert chain(vma_prev) == [av]
    assert vma.freed
    assert map_count(k) == 1


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_merge_existing_both(gen: str) -> None:
    """
    0123456789
    PPPVVVVNNN   all of V (faulted, AV) changes: P and N are unfaulted
    PPPPPPPPPP   P grows over V and N to [0,9) pgoff 0 and takes AV; V and N are removed
    """
    k = boot612(gen)
    vma_prev = alloc_and_link(k, 0, 3, 0)
    vma = alloc_and_link(k, 3, 7, 3)
    vma_next = alloc_and_link(k, 7, 9, 7)
    av = fault(k, vma)
    vmg = existing_range(k, vma_prev, vma, 3, 7, 3, vmg_anon_vma(gen, vma))
    assert k.vma_merge_existing_range(vmg) is vma_prev
    assert not vmg.nomem
    assert (vma_prev.vm_start, vma_prev.vm_end, vma_prev.vm_pgoff, vma_prev.anon_vma) == (0, 9, 0, av)
    assert chain(vma_prev) == [av]
    assert vma.freed and vma_next.freed
    assert map_count(k) == 1


@pytest.mark.parametrize("gen", SINCE_6_12)
@pytest.mark.parametrize(("start", "end"), [(4, 5), (5, 6), (6, 7), (4, 7), (4, 6)])
def test_merge_existing_range_inside_the_vma_does_not_merge(gen: str, start: int, end: int) -> None:
    """
    0123456789a
    PPPVVVVVNNN  a range strictly inside V ([4,5), [5,6), [6,7), [4,7), [4,6)), prev = V: no
                 merge, and no ENOMEM either; the three VMAs stay (the kernel lists [5,6) twice)
    """
    k = boot612(gen)
    alloc_and_link(k, 0, 3, 0)
    vma = alloc_and_link(k, 3, 8, 3)
    alloc_and_link(k, 8, 0xA, 8)
    vmg = existing_range(k, vma, vma, start, end, start, None)
    assert k.vma_merge_existing_range(vmg) is None
    assert not vmg.nomem
    assert spans(k) == [(0, 3, 0), (3, 8, 3), (8, 0xA, 8)]


# ---- test_anon_vma_non_mergeable ----


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_anon_vma_non_mergeable_existing(gen: str) -> None:
    """
    0123456789
    PPPVVVVNNN   all of V (unfaulted) changes; P has AV1, N has AV2, each a one-link chain
    PPPPPPPNNN   V could merge with either, but P and N cannot share: P absorbs V, N is untouched
    """
    k = boot612(gen)
    vma_prev = alloc_and_link(k, 0, 3, 0)
    vma = alloc_and_link(k, 3, 7, 3)
    vma_next = alloc_and_link(k, 7, 9, 7)
    av1 = fault(k, vma_prev)
    av2 = fault(k, vma_next)
    if gen not in ANON_VMG:
        # 6.12 to 6.15 also ask is_mergeable_anon_vma() itself; 879bca0a2c4f (6.16) replaced its
        # three arguments with the vmg and dropped these assertions.
        assert k.is_mergeable_anon_vma(None, av1, vma_prev)
        assert k.is_mergeable_anon_vma(None, av2, vma_next)
        assert not k.is_mergeable_anon_vma(av1, av2, None)
    vmg = existing_range(k, vma_prev, vma, 3, 7, 3, None)
    assert k.vma_merge_existing_range(vmg) is vma_prev
    assert not vmg.nomem
    assert (vma_prev.vm_start, vma_prev.vm_end, vma_prev.vm_pgoff) == (0, 7, 0)
    assert (vma_next.vm_start, vma_next.vm_end, vma_next.vm_pgoff, vma_next.anon_vma) == (7, 9, 7, av2)
    assert map_count(k) == 2


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_anon_vma_non_mergeable_new(gen: str) -> None:
    """
    0123456789
    PPP****NNN   a new range [3,7) between P (AV1) and N (AV2)
    PPPPPPPNNN   P grows over it; N, whose anon_vma differs from P's, stays
    """
    k = boot612(gen)
    vma_prev = alloc_and_link(k, 0, 3, 0)
    vma_next = alloc_and_link(k, 7, 9, 7)
    fault(k, vma_prev)
    av2 = fault(k, vma_next)
    vmg = new_range(k, 3, 7, 3)
    assert k.vma_merge_new_range(vmg) is vma_prev
    assert not vmg.nomem
    assert (vma_prev.vm_start, vma_prev.vm_end, vma_prev.vm_pgoff) == (0, 7, 0)
    assert (vma_next.vm_start, vma_next.vm_end, vma_next.vm_pgoff, vma_next.anon_vma) == (7, 9, 7, av2)
    assert map_count(k) == 2


# ---- test_dup_anon_vma ----


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_dup_anon_vma_expand_over_next(gen: str) -> None:
    """
    0123456789
    PPPNN        vma_expand() of P (unfaulted) to [0,5), over N (faulted, AV)
    PPPPP        N is removed; P gets AV and a clone of N's chain
    """
    k = boot612(gen)
    vma_prev = alloc_and_link(k, 0, 3, 0)
    vma_next = alloc_and_link(k, 3, 5, 3)
    av = fault(k, vma_next)
    vmg = VmaMergeStruct(mm=k.mms[0], prev=None, next=vma_next, start=0, end=5, pgoff=0, flags=FLAGS, target=vma_prev)
    assert k.vma_expand(vmg) is None
    assert vma_prev.anon_vma is av
    assert chain(vma_prev) == [av]


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_dup_anon_vma_both_from_next(gen: str) -> None:
    """
    01234567
    PPPVVNNN     all of V changes; only N is faulted (AV, one link)
    PPPPPPPP     P grows over V and N and takes N's anon_vma and chain
    """
    k = boot612(gen)
    vma_prev = alloc_and_link(k, 0, 3, 0)
    vma = alloc_and_link(k, 3, 5, 3)
    vma_next = alloc_and_link(k, 5, 8, 5)
    av = fault(k, vma_next)
    vmg = existing_range(k, vma_prev, vma, 3, 5, 3, None)
    assert k.vma_merge_existing_range(vmg) is vma_prev
    assert not vmg.nomem
    assert (vma_prev.vm_start, vma_prev.vm_end) == (0, 8)
    assert vma_prev.anon_vma is av
    assert chain(vma_prev) == [av]


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_dup_anon_vma_both_from_middle(gen: str) -> None:
    """
    01234567
    PPPVVNNN     all of V changes; only V is faulted (AV)
    PPPPPPPP     P grows over V and N and takes V's anon_vma and chain
    """
    k = boot612(gen)
    vma_prev = alloc_and_link(k, 0, 3, 0)
    vma = alloc_and_link(k, 3, 5, 3)
    alloc_and_link(k, 5, 8, 5)
    av = fault(k, vma)
    vmg = existing_range(k, vma_prev, vma, 3, 5, 3, vmg_anon_vma(gen, vma))
    assert k.vma_merge_existing_range(vmg) is vma_prev
    assert not vmg.nomem
    assert (vma_prev.vm_start, vma_prev.vm_end) == (0, 8)
    assert vma_prev.anon_vma is av
    assert chain(vma_prev) == [av]


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_dup_anon_vma_left_partial(gen: str) -> None:
    """
    01234567
    PPPVVVVV     [3,5) of V (faulted, AV) changes: P is unfaulted
    PPPPPVVV     P grows to [0,5) and takes V's anon_vma and chain
    """
    k = boot612(gen)
    vma_prev = alloc_and_link(k, 0, 3, 0)
    vma = alloc_and_link(k, 3, 8, 3)
    av = fault(k, vma)
    vmg = existing_range(k, vma_prev, vma, 3, 5, 3, vmg_anon_vma(gen, vma))
    assert k.vma_merge_existing_range(vmg) is vma_prev
    assert not vmg.nomem
    assert (vma_prev.vm_start, vma_prev.vm_end) == (0, 5)
    assert vma_prev.anon_vma is av
    assert chain(vma_prev) == [av]


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_dup_anon_vma_right_partial(gen: str) -> None:
    """
    01234567
    VVVVVNNN     [3,5) of V (faulted, AV) changes, prev = V: N is unfaulted
    VVVNNNNN     N grows down to [3,8) and takes V's anon_vma and chain
    """
    k = boot612(gen)
    vma = alloc_and_link(k, 0, 5, 0)
    vma_next = alloc_and_link(k, 5, 8, 5)
    av = fault(k, vma)
    vmg = existing_range(k, vma, vma, 3, 5, 3, vmg_anon_vma(gen, vma))
    assert k.vma_merge_existing_range(vmg) is vma_next
    assert not vmg.nomem
    assert (vma_next.vm_start, vma_next.vm_end) == (3, 8)
    assert vma_next.anon_vma is av
    assert chain(vma_next) == [av]


# ---- test_merge_extend, test_copy_vma ----


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_merge_extend(gen: str) -> None:
    """
    0123
    V..N     vma_merge_extend() of V by two pages (mremap growing in place) up to N
    VVVV     V grows over the gap and N: [0,4) pgoff 0, one VMA
    """
    k = boot612(gen)
    vma = alloc_and_link(k, 0, 1, 0)
    alloc_and_link(k, 3, 4, 3)
    assert k.mremap_expand_in_place(vma, vma.vm_end + 2) is None
    assert (vma.vm_start, vma.vm_end, vma.vm_pgoff) == (0, 4, 0)
    assert map_count(k) == 1


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_copy_vma_backwards_no_merge(gen: str) -> None:
    """
    012345
    ...VV    copy_vma() of V (unfaulted) to [0,2) pgoff 0
    NN.VV    nothing to merge with: a new VMA [0,2) pgoff 0
    """
    k = boot612(gen)
    vma = alloc_and_link(k, 3, 5, 3)
    new, _src = k.copy_vma(vma, 0, 2, 0)
    assert new is not None and new is not vma
    assert (new.vm_start, new.vm_end, new.vm_pgoff) == (0, 2, 0)


@pytest.mark.parametrize("gen", SINCE_6_12)
def test_copy_vma_merges_with_next(gen: str) -> None:
    """
    01234567
    VV....NN   copy_vma() of V (unfaulted) to [4,6) pgoff 4
    VV..NNNN   the copy merges into N, which grows down: copy_vma() returns N
    """
    k = boot612(gen)
    vma = alloc_and_link(k, 0, 2, 0)
    vma_next = alloc_and_link(k, 6, 8, 6)
    new, _src = k.copy_vma(vma, 4, 2, 4)
    assert new is vma_next
    assert (vma_next.vm_start, vma_next.vm_end, vma_next.vm_pgoff) == (4, 8, 4)


# ---- test_mmap_region_basic (6.13+) ----


@pytest.mark.parametrize("gen", SINCE_6_13)
def test_mmap_region_basic(gen: str) -> None:
    """Four anonymous maps, each of three pages, pgoff = address:

    0x24d   0x250   0x253 ...  0x300   0x303   0x306
                                 AAA              map [0x300,0x303)
              BBB                AAA              map [0x250,0x253)
              BBB                AAAAAA           map [0x303,0x306): A grows
          BBBBBB                 AAAAAA           map [0x24d,0x250): B grows down, pgoff 0x24d
    """
    k = boot612(gen, window=0x400)
    mm = k.mms[0]
    for addr in (0x300, 0x250, 0x303, 0x24D):
        assert k.mmap_region(mm, addr, 3, "rw") == OK
    assert map_count(k) == 2
    assert spans(k) == [(0x24D, 0x253, 0x24D), (0x300, 0x306, 0x300)]
