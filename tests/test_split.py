"""split_vma() (docs/model.md#split_vma): both halves keep the anon_vma and identical chains; the upper
part's pgoff advances by the split offset."""

from __future__ import annotations

import pytest

from rmapfuzz.model.syscalls import SyscallMixin
from tests.helpers import FINAL, KERNELS, chain, hits, page_at, run, run_clean, shape, vma_at, walk


@pytest.mark.parametrize("kernel", KERNELS)
def test_mprotect_middle_splits_in_three(kernel: str) -> None:
    """
    AAAA    faulted at 0 and 3 (AV1)
     BB     mprotect(r)  ->  ABBC, all three with anon=AV1 and chain [AV1]
    """
    k = run_clean(kernel, ("mmap", 0, 0, 4, "rw"), ("write", 0, 0), ("write", 0, 3), ("mprotect", 0, 1, 2, "r"))
    assert shape(k) == (
        "ABBC....",
        [
            "[0,1) rw- ac pgoff=0 anon=AV1 chain=[AV1]",
            "[1,3) r-- ac pgoff=1 anon=AV1 chain=[AV1]",
            "[3,4) rw- ac pgoff=3 anon=AV1 chain=[AV1]",
        ],
    )
    assert hits(k)["__split_vma: faulted VMA split"] == 2
    assert walk(k, page_at(k, 0, 3)) == [("P0:[3,4)", 3)]


@pytest.mark.parametrize("kernel", KERNELS)
def test_munmap_middle_leaves_two_halves(kernel: str) -> None:
    """
    AAAA    faulted at 0 and 3 (AV1)
     ..     munmap  ->  A..B
    """
    k = run_clean(kernel, ("mmap", 0, 0, 4, "rw"), ("write", 0, 0), ("write", 0, 3), ("munmap", 0, 1, 2))
    assert shape(k) == (
        "A..B....",
        ["[0,1) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[3,4) rw- ac pgoff=3 anon=AV1 chain=[AV1]"],
    )
    assert not k.anon_vmas[0].freed
    assert sorted(k.mms[0].ptes) == [0, 3]


def test_split_of_forked_vma_keeps_the_whole_chain() -> None:
    """
    P1: AAAA  (AV2, chain [AV2, AV1])
         B    mprotect(r)  ->  ABCC, every part anon=AV2 chain=[AV2, AV1]
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 4, "rw"), ("write", 0, 2), ("fork", 0), ("mprotect", 1, 1, 1, "r"))
    assert shape(k, 1) == (
        "ABCC....",
        [
            "[0,1) rw- ac pgoff=0 anon=AV2 chain=[AV2, AV1]",
            "[1,2) r-- ac pgoff=1 anon=AV2 chain=[AV2, AV1]",
            "[2,4) rw- ac pgoff=2 anon=AV2 chain=[AV2, AV1]",
        ],
    )
    upper = vma_at(k, 1, 2)
    assert upper.vm_pgoff == 2
    assert chain(vma_at(k, 1, 0)) == chain(upper)
    assert sorted(walk(k, page_at(k, 1, 2))) == [("P0:[0,4)", 2), ("P1:[2,4)", 2)]


def test_split_of_moved_vma_advances_its_own_pgoff() -> None:
    """
    AA......  faulted, pgoff 0
    ....BC..  moved to [4,6) (pgoff stays 0), then mprotect splits at 5: upper part pgoff 0 + 1
    """
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 2, "rw"),
        ("write", 0, 0),
        ("write", 0, 1),
        ("mremap", 0, 0, 2, 4, 2, ("maymove", "fixed")),
        ("mprotect", 0, 5, 1, "r"),
    )
    assert shape(k) == (
        "....AB..",
        ["[4,5) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[5,6) r-- ac pgoff=1 anon=AV1 chain=[AV1]"],
    )
    assert page_at(k, 0, 5).index == 1
    assert walk(k, page_at(k, 0, 5)) == [("P0:[5,6)", 5)]


def test_split_of_unfaulted_vma_stays_unfaulted() -> None:
    """
    AAA     unfaulted
     B      mprotect(r)  ->  ABC, all anon=- chain=[]
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 3, "rw"), ("mprotect", 0, 1, 1, "r"))
    assert shape(k) == (
        "ABC.....",
        [
            "[0,1) rw- ac pgoff=0 anon=- chain=[]",
            "[1,2) r-- ac pgoff=1 anon=- chain=[]",
            "[2,3) rw- ac pgoff=2 anon=- chain=[]",
        ],
    )


# ---- bug F: 3.12 to 3.17, __split_vma() loses anon_vma_clone()'s ENOMEM ----

F_MPROTECT = (("mmap", 0, 0, 3, "rw"), ("write", 0, 0), ("fail_alloc", 1), ("mprotect", 0, 1, 1, "r"))
F_MUNMAP = (("mmap", 0, 0, 3, "rw"), ("write", 0, 0), ("fail_alloc", 1), ("munmap", 0, 1, 1))


def test_bug_f_mprotect_gives_the_unsplit_head_the_new_protection() -> None:
    """
    AAA.....   faulted at 0; mprotect(r) of [1,2), the head split's anon_vma_clone failing
    AAB.....   3.12: the head split "succeeds" unsplit, the tail split works, and [0,2) is r--
               while page 0's pte stays writable (pte-prot); the fixed kernel answers ENOMEM
    """
    v = run("3.12", *F_MPROTECT)
    assert v.results == ["ok"] * 4 and shape(v.final)[0] == "AAB....."
    assert v.violation is not None and v.violation.invariant == "pte-prot"
    assert hits(v.final)["__split_vma: anon_vma_clone's ENOMEM is lost, the split answers success"] == 1
    fixed = run_clean("3.12+c4ea95d7", *F_MPROTECT[:3])
    assert shape(fixed)[0] == "AAA....."
    assert run("3.12+c4ea95d7", *F_MPROTECT).results[-1] == "ENOMEM"


def test_bug_f_munmap_answers_success_and_unmaps_nothing() -> None:
    """
    AAA.....   munmap [1,2) with the head split failing
    AAB.....   3.12: returns 0, page 1 still mapped (syscall-effect); fixed: ENOMEM, AAA unchanged
    """
    v = run("3.12", *F_MUNMAP)
    assert v.results[-1] == "ok" and v.violation is not None and v.violation.invariant == "syscall-effect"
    fixed = run("3.12+c4ea95d7", *F_MUNMAP)
    assert fixed.results[-1] == "ENOMEM" and fixed.violation is None and shape(fixed.final)[0] == "AAA....."


def test_bug_f_is_classified_and_the_diff_finds_it() -> None:
    from rmapfuzz.classify import classify
    from rmapfuzz.pair import pair_replay
    from tests.helpers import steps as as_steps

    steps = as_steps(*F_MPROTECT)
    assert classify("3.12", steps, 8) == ["F"]
    found = pair_replay(steps, "3.12", "3.12+c4ea95d7", 8)
    assert found is not None and found.step == 3 and found.level == "result"


F_MUNMAP_TAIL = (("mmap", 0, 0, 3, "rw"), ("write", 0, 0), ("write", 0, 2), ("fail_alloc", 1), ("munmap", 0, 0, 2))


def test_bug_f_munmap_frees_an_unsplit_tail_whole() -> None:
    """
    AAA.....   faulted at 0 and 2; munmap [0,2) with the tail split's anon_vma_clone failing
    ........   3.12: do_munmap() detaches [0,3) whole (it starts before the range's end) but zaps
               only [0,2), and AV1 goes with [0,3)'s chain.  No VMA is left beside the hole, so
               free_pgtables() frees the page table and page 2's pte with it: page 2 stays counted
               as mapped, its anon_vma freed (no-dangling, mapcount)
    AAA..B..   the same with [5,6) mapped first: the VMA after the hole keeps the page table, and
    .....A..   page 2's pte outlives every VMA over it, mapping a page whose anon_vma is freed
    AAA.....   fixed: ENOMEM, nothing unmapped
    """
    v = run("3.12", *F_MUNMAP_TAIL)
    assert v.results == ["ok"] * 5 and shape(v.final)[0] == "........"
    assert v.final.mms[0].ptes == {} and page_counts(v.final) == {2: 1}
    assert [x.invariant for x in v.violations][:2] == ["no-dangling", "mapcount"]
    assert hits(v.final)["free_pgtables: the page table goes with ptes no VMA covers"] == 1
    kept = run("3.12", ("mmap", 0, 5, 1, "rw"), *F_MUNMAP_TAIL)
    assert kept.results == ["ok"] * 6 and shape(kept.final)[0] == ".....A.."
    assert sorted(kept.final.mms[0].ptes) == [2]
    assert [x.invariant for x in kept.violations][:2] == ["no-dangling", "page-index"]
    fixed = run("3.12+c4ea95d7", *F_MUNMAP_TAIL)
    assert fixed.results[-1] == "ENOMEM" and fixed.violation is None and shape(fixed.final)[0] == "AAA....."


def page_counts(k: SyscallMixin) -> dict[int, int]:
    """Page index -> mapcount, for the pages not freed whose mapcount is not 0."""
    return {p.index: p.mapcount for p in k.pages if not p.freed and p.mapcount}


def test_bug_f_mmap_unmaps_again_until_nothing_overlaps() -> None:
    """
    AAA.....   faulted at 0; mmap [1,2) r with the head split of the old range failing silently
    ABC.....   3.12: the first do_munmap() keeps the unsplit head (its tail split works), so
               mmap_region()'s munmap_back loop runs it again (the injected failure is spent) and
               the new VMA fits between the two halves: the answer is right, and so is the layout
    """
    v = run("3.12", ("mmap", 0, 0, 3, "rw"), ("write", 0, 0), ("fail_alloc", 1), ("mmap", 0, 1, 1, "r"))
    assert v.results == ["ok"] * 4 and shape(v.final)[0] == "ABC....."
    assert v.violation is None


def test_bug_f_mremap_links_its_target_over_an_unsplit_vma() -> None:
    """
    ....AA..   P1 (a fork child): [0,3) moved to [4,6), page 4 written (fail_alloc 4 armed before)
    ....AA..   mmap [4,5) rw over it: the injected failure lands in a split that answers success
    .....A..   mremap [4,5) -> [5,6): what is left is [5,6) (pgoff 5) and the moved VMA [5,6)
    .....B..   (pgoff 4) linked over it: two VMAs over page 5, which vma-tree reports at the mremap.
               A fork of that state used to make syscall-effect's fork check raise instead.
    """
    ts = (
        ("fork", 0),
        ("mmap", 1, 0, 3, "rw"),
        ("fail_alloc", 4),
        ("mremap", 1, 0, 3, 4, 2, ("maymove", "fixed")),
        ("write", 1, 4),
        ("mmap", 1, 4, 1, "rw"),
        ("mremap", 1, 4, 1, 5, 1, ("maymove", "fixed")),
        ("write", 1, 5),
        ("fork", 1),
    )
    v = run("3.12+734537c9", *ts, stop_at_violation=False)
    assert v.results == ["ok"] * len(ts)
    assert v.violation is not None and (v.violation.invariant, v.violation.step) == ("vma-tree", 6)
    assert [(x.vm_start, x.vm_end) for x in v.final.mms[1].vmas] == [(5, 6), (5, 6)]
    assert run("3.12+734537c9+c4ea95d7", *ts).violation is None
