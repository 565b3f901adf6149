"""mremap (docs/model.md#mremap-and-copy_vma): moves, in-place resizes, errors, and bug M (docs/model.md#bug-m)."""

from __future__ import annotations

import pytest

from rmapfuzz.layout import ptes_line
from tests.helpers import FINAL, KERNELS, merges, page_at, run, run_clean, shape, walk

MOVE = ("maymove", "fixed")


@pytest.mark.parametrize("kernel", KERNELS)
def test_move_of_faulted_vma_keeps_pgoff(kernel: str) -> None:
    """
    AA......   faulted at 1 (index 1)
    ....AA..   moved: pgoff stays 0, the page keeps index 1 and the walk finds it at 5
    """
    k = run_clean(kernel, ("mmap", 0, 0, 2, "rw"), ("write", 0, 1), ("mremap", 0, 0, 2, 4, 2, MOVE))
    assert shape(k) == ("....AA..", ["[4,6) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    page = page_at(k, 0, 5)
    assert page.index == 1
    assert walk(k, page) == [("P0:[4,6)", 5)]
    assert ptes_line(k.mms[0]) == "5:page1->AV1@1(w)"


@pytest.mark.parametrize("kernel", KERNELS)
def test_move_of_unfaulted_vma_rebases_pgoff(kernel: str) -> None:
    """
    AA......   unfaulted (a zero-page pte at 0 moves along)
    ....AA..   pgoff = the new address, 4
    """
    k = run_clean(kernel, ("mmap", 0, 0, 2, "rw"), ("read", 0, 0), ("mremap", 0, 0, 2, 4, 2, MOVE))
    assert shape(k) == ("....AA..", ["[4,6) rw- ac pgoff=4 anon=- chain=[]"])
    assert ptes_line(k.mms[0]) == "4:zero(ro)"


@pytest.mark.parametrize("kernel", KERNELS)
def test_move_part_of_vma_splits_it(kernel: str) -> None:
    """
    AAA.....   faulted at 0 and 2
    AA...B..   page 2 moved to 5: B's pgoff is 2 (the moved part's pgoff), A keeps page 0
    """
    k = run_clean(kernel, ("mmap", 0, 0, 3, "rw"), ("write", 0, 0), ("write", 0, 2), ("mremap", 0, 2, 1, 5, 1, MOVE))
    assert shape(k) == (
        "AA...B..",
        ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[5,6) rw- ac pgoff=2 anon=AV1 chain=[AV1]"],
    )
    assert walk(k, page_at(k, 0, 5)) == [("P0:[5,6)", 5)]


@pytest.mark.parametrize("kernel", KERNELS)
def test_grow_and_shrink_in_place(kernel: str) -> None:
    """
    AA......  ->  AAAA....  (grow)  ->  A.......  (shrink: the tail is unmapped)
    """
    v = run(kernel, ("mmap", 0, 0, 2, "rw"), ("write", 0, 0), ("write", 0, 1), ("mremap", 0, 0, 2, 0, 4, ()))
    assert v.results == ["ok"] * 4
    assert shape(v.final) == ("AAAA....", ["[0,4) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    k = run_clean(
        kernel,
        ("mmap", 0, 0, 2, "rw"),
        ("write", 0, 0),
        ("write", 0, 1),
        ("mremap", 0, 0, 2, 0, 4, ()),
        ("mremap", 0, 0, 4, 0, 1, ()),
    )
    assert shape(k) == ("A.......", ["[0,1) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    assert sorted(k.mms[0].ptes) == [0]
    assert k.pages[1].freed


@pytest.mark.parametrize("kernel", KERNELS)
def test_grow_blocked_by_neighbour_is_enomem(kernel: str) -> None:
    """
    AA.B....   growing A to 4 pages would overlap B: ENOMEM, nothing changes
    """
    v = run(kernel, ("mmap", 0, 0, 2, "rw"), ("mmap", 0, 3, 1, "r"), ("mremap", 0, 0, 2, 0, 4, ()))
    assert v.results == ["ok", "ok", "ENOMEM"]
    assert shape(v.final) == ("AA.B....", ["[0,2) rw- ac pgoff=0 anon=- chain=[]", "[3,4) r-- pgoff=3 anon=- chain=[]"])


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("new_start", [1, 0])
def test_overlapping_move_is_einval(kernel: str, new_start: int) -> None:
    v = run(kernel, ("mmap", 0, 1, 2, "rw"), ("mremap", 0, 1, 2, new_start, 2, MOVE))
    assert v.results == ["ok", "EINVAL"]
    assert shape(v.final) == (".AA.....", ["[1,3) rw- ac pgoff=1 anon=- chain=[]"])


@pytest.mark.parametrize("kernel", KERNELS)
def test_dontunmap_is_einval(kernel: str) -> None:
    v = run(kernel, ("mmap", 0, 0, 2, "rw"), ("mremap", 0, 0, 2, 4, 2, ("maymove", "fixed", "dontunmap")))
    assert v.results == ["ok", "EINVAL"]
    assert shape(v.final) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=- chain=[]"])


@pytest.mark.parametrize("kernel", KERNELS)
def test_fixed_without_maymove_is_einval(kernel: str) -> None:
    v = run(kernel, ("mmap", 0, 0, 2, "rw"), ("mremap", 0, 0, 2, 4, 2, ("fixed",)))
    assert v.results == ["ok", "EINVAL"]


@pytest.mark.parametrize("kernel", KERNELS)
def test_mremap_to_unmaps_target_before_source_check(kernel: str) -> None:
    """
    A...BB..   source [2,3) is a hole, target [4,5) is half of B:
    A....B..   the target is unmapped first, then the source check answers EFAULT
    """
    v = run(kernel, ("mmap", 0, 0, 1, "rw"), ("mmap", 0, 4, 2, "r"), ("mremap", 0, 2, 1, 4, 1, MOVE))
    assert v.results == ["ok", "ok", "EFAULT"]
    assert shape(v.final) == ("A....B..", ["[0,1) rw- ac pgoff=0 anon=- chain=[]", "[5,6) r-- pgoff=5 anon=- chain=[]"])


def test_move_source_larger_than_vma_is_efault() -> None:
    v = run(FINAL, ("mmap", 0, 0, 2, "rw"), ("mremap", 0, 0, 3, 4, 3, MOVE))
    assert v.results == ["ok", "EFAULT"]


BUG_M = (
    ("mmap", 0, 2, 1, "rw"),
    ("write", 0, 2),
    ("mremap", 0, 2, 1, 5, 1, MOVE),
    ("mmap", 0, 1, 1, "rw"),
    ("mremap", 0, 5, 1, 2, 1, MOVE),
)


@pytest.mark.parametrize("kernel", KERNELS)
def test_bug_m_move_back_next_to_unfaulted_neighbour(kernel: str) -> None:
    """Bug M (found by reading the 2.6.34 code; latent until 965f55dea0e3 in 3.0).

    ::

        ..A.....   [2,3) faulted: AV1, page index 2
        .....A..   moved to [5,6): pgoff stays 2
        .B...A..   mmap [1,2): pgoff 1, unfaulted
        .BB.....   move back to [2,3): pgoff 2 continues B's, B is unfaulted, so vma_merge
                   case 2 lets B grow over it; nothing imports AV1 (vma_adjust sees no next
                   to take over), the old VMA is unmapped and AV1 is freed under page 2.
    """
    v = run(kernel, *BUG_M)
    assert v.results == ["ok"] * 5
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == ("merge-superset", 4)
    assert v.violation.message.startswith("move_vma: P0:[1,3) took over P0:[5,6)")
    assert "lacks AV1" in v.violation.message
    k = v.final
    assert shape(k) == (".AA.....", ["[1,3) rw- ac pgoff=1 anon=- chain=[]"])
    assert ptes_line(k.mms[0]) == "2:page1->AV1(freed)@2(w)"
    assert merges(k) == ["vma_merge: case 2, prev grows over the hole"]


@pytest.mark.parametrize(("kernel", "result", "after"), [("3.19", "ok", "...A...."), ("6.0", "EFAULT", "..AA...."),
                                                         ("6.16", "EFAULT", "..AA....")])  # fmt: skip
def test_shrink_from_a_hole_looks_the_vma_up_first_from_5_16(kernel: str, result: str, after: str) -> None:
    """
    ..AA....   mremap [1,3) -> 1 page in place: the range starts in a hole
    ...A....   before 5.16 the shrink unmaps the tail [2,3) and answers ok
    ..AA....   from 5.16 (550a7d60bd5e) the VMA at the old address is looked up first: EFAULT
    """
    v = run(kernel, ("mmap", 0, 2, 2, "rw"), ("mremap", 0, 1, 2, 1, 1, ()))
    assert v.results == ["ok", result]
    assert shape(v.final)[0] == after


@pytest.mark.parametrize(("kernel", "after"), [("3.19", "A....B.."), ("6.0", "A...BB.."), ("6.16", "A...BB..")])
def test_fixed_move_from_a_hole_keeps_its_target_from_5_16(kernel: str, after: str) -> None:
    """
    A...BB..   source [2,3) is a hole, target [4,5) is half of B
    A....B..   before 5.16 the target is unmapped, then the source check answers EFAULT
    A...BB..   from 5.16 the lookup of the source comes first: EFAULT, B intact
    """
    v = run(kernel, ("mmap", 0, 0, 1, "rw"), ("mmap", 0, 4, 2, "r"), ("mremap", 0, 2, 1, 4, 1, MOVE))
    assert v.results == ["ok", "ok", "EFAULT"]
    assert shape(v.final)[0] == after


# ---- MREMAP_DONTUNMAP from 5.7 (e346b3813067) and 5.12 (1583aa278f5f): the 6.0 generation ----

DONTUNMAP = ("maymove", "fixed", "dontunmap")


def test_dontunmap_is_einval_before_5_7() -> None:
    v = run("3.19", ("mmap", 0, 0, 1, "rw"), ("mremap", 0, 0, 1, 3, 1, DONTUNMAP))
    assert v.results == ["ok", "EINVAL"]
    assert shape(v.final) == ("A.......", ["[0,1) rw- ac pgoff=0 anon=- chain=[]"])


def test_dontunmap_leaves_the_old_vma_mapped_on_6_0() -> None:
    """
    A.......   [0,1) rw, never touched (the lab's 2-step case, debian-6.1)
    A..B....   mremap [0,1) -> [3,4) DONTUNMAP: the old VMA stays, the copy is re-based (pgoff 3)
    """
    k = run_clean("6.0", ("mmap", 0, 0, 1, "rw"), ("mremap", 0, 0, 1, 3, 1, DONTUNMAP))
    assert shape(k) == ("A..B....", ["[0,1) rw- ac pgoff=0 anon=- chain=[]", "[3,4) rw- ac pgoff=3 anon=- chain=[]"])


def test_dontunmap_of_a_whole_faulted_vma_unlinks_it_on_6_0() -> None:
    """
    AA......   [0,2) faulted at 0 and 1 (AV1)
    AA..BB..   mremap [0,2) -> [4,6) DONTUNMAP: the pages move to B (pgoff 0, AV1); A keeps its
               range and VM_ACCOUNT, loses its ptes and (5.12+) its chain: unfaulted again, and a
               write to it faults a fresh page on a new anon_vma
    """
    k = run_clean(
        "6.0", ("mmap", 0, 0, 2, "rw"), ("write", 0, 0), ("write", 0, 1), ("mremap", 0, 0, 2, 4, 2, DONTUNMAP)
    )
    assert shape(k) == (
        "AA..BB..",
        ["[0,2) rw- ac pgoff=0 anon=- chain=[]", "[4,6) rw- ac pgoff=0 anon=AV1 chain=[AV1]"],
    )
    assert ptes_line(k.mms[0]) == "4:page1->AV1@0(w) 5:page2->AV1@1(w)"
    assert walk(k, page_at(k, 0, 5)) == [("P0:[4,6)", 5)]
    k = run_clean(
        "6.0",
        ("mmap", 0, 0, 2, "rw"),
        ("write", 0, 0),
        ("write", 0, 1),
        ("mremap", 0, 0, 2, 4, 2, DONTUNMAP),
        ("write", 0, 0),
    )
    assert shape(k)[1][0] == "[0,2) rw- ac pgoff=0 anon=AV2 chain=[AV2]"


def test_dontunmap_of_part_of_a_vma_keeps_its_chain_on_6_0() -> None:
    """
    AAA.....   [0,3) faulted at 0 and 2 (AV1)
    AAA..B..   mremap [2,3) -> [5,6) DONTUNMAP: A (not wholly moved) keeps [0,3) and AV1, page 0
               stays at 0; page 2 moves to B (pgoff 2), nothing left under A's [2,3)
    """
    k = run_clean(
        "6.0", ("mmap", 0, 0, 3, "rw"), ("write", 0, 0), ("write", 0, 2), ("mremap", 0, 2, 1, 5, 1, DONTUNMAP)
    )
    assert shape(k) == (
        "AAA..B..",
        ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[5,6) rw- ac pgoff=2 anon=AV1 chain=[AV1]"],
    )
    assert ptes_line(k.mms[0]) == "0:page1->AV1@0(w) 5:page2->AV1@2(w)"


def test_dontunmap_of_an_unfaulted_vma_next_to_its_target_merges_with_itself_on_6_0() -> None:
    """
    ...A....   [3,4) r, never touched (pgoff 3)
    ..AA....   mremap [3,4) -> [2,3) DONTUNMAP: copy_vma() re-bases the target to pgoff 2, so
               vma_merge() grows the source itself down over it; the "old VMA" is the merged one,
               not wholly the old range, so nothing is unlinked: one VMA, as in mainline 6.0
               (Debian's 6.1.192 carries a 2026 stable fix that refuses this merge: docs/lab.md)
    """
    k = run_clean("6.0", ("mmap", 0, 3, 1, "r"), ("mremap", 0, 3, 1, 2, 1, DONTUNMAP))
    assert shape(k) == ("..AA....", ["[2,4) r-- pgoff=2 anon=- chain=[]"])


@pytest.mark.parametrize(
    "t",
    [
        ("mremap", 0, 0, 2, 4, 3, DONTUNMAP),  # a resize
        ("mremap", 0, 0, 2, 4, 2, ("fixed", "dontunmap")),  # no MREMAP_MAYMOVE
        ("mremap", 0, 0, 2, 0, 2, ("dontunmap",)),
    ],
)
def test_dontunmap_needs_maymove_and_the_same_length_on_6_0(t: tuple[object, ...]) -> None:
    v = run("6.0", ("mmap", 0, 0, 2, "rw"), ("write", 0, 0), t)
    assert v.results == ["ok", "ok", "EINVAL"] and v.violation is None
    assert shape(v.final) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])


@pytest.mark.parametrize(
    ("kernel", "result", "after"),
    [
        ("3.19", "EINVAL", "AA......"),
        ("6.0", "EFAULT", "........"),
        ("6.12.118", "EFAULT", "........"),
        ("6.18.8", "EINVAL", "AA......"),
    ],
)
def test_a_fixed_move_of_an_empty_range_onto_its_own_address(kernel: str, result: str, after: str) -> None:
    """
    AA......   [0,2) rw; mremap(old [0,0), new [0,2), maymove|fixed)
    AA......   2.6.34 to 3.19: the two-sided overlap test takes the empty old range at the new
               range's start as overlapping: EINVAL, nothing changes
    ........   6.0+ (one interval test): no overlap, the target [0,2) is unmapped, then no VMA at
               the old address: EFAULT (found by the lab on Debian's 6.12.118,
               lab/cases/mremap-zero-old-len-onto-itself.json)
    AA......   6.17+ (6.18.8): the old length of 0 on a private mapping is EINVAL before anything
               is unmapped (the host's 6.18.44 agrees)
    """
    v = run(kernel, ("mmap", 0, 0, 2, "rw"), ("mremap", 0, 0, 0, 0, 2, ("maymove", "fixed")))
    assert v.results == ["ok", result] and v.violation is None
    assert shape(v.final)[0] == after
