"""split_vma() (docs/model.md#split_vma): both halves keep the anon_vma and identical chains; the upper
part's pgoff advances by the split offset."""

from __future__ import annotations

import pytest

from tests.helpers import FINAL, KERNELS, chain, hits, page_at, run_clean, shape, vma_at, walk


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
