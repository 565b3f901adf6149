"""fork (dup_mmap + anon_vma_fork, docs/model.md#fork-dup_mmap-and-anon_vma_fork) and exit."""

from __future__ import annotations

import pytest

from tests.helpers import FINAL, KERNELS, RC3, chain, cow, merges, page_at, pte, run, run_clean, shape, vma_at, walk


@pytest.mark.parametrize("kernel", KERNELS)
def test_fork_gives_child_new_anon_vma_and_parent_links(kernel: str) -> None:
    """
    P0: AA  (AV1)      fork  ->  P1: AA  anon=AV2 chain=[AV2, AV1]
    """
    k = run_clean(kernel, ("mmap", 0, 0, 2, "rw"), ("write", 0, 0), ("fork", 0))
    assert shape(k, 0) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    assert shape(k, 1) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=AV2 chain=[AV2, AV1]"])


@pytest.mark.parametrize("kernel", KERNELS)
def test_fork_shares_ptes_write_protected(kernel: str) -> None:
    """P0 writes page 0, forks: both ptes map the same page, read-only, mapcount 2, mapping AV1."""
    k = run_clean(kernel, ("mmap", 0, 0, 2, "rw"), ("write", 0, 0), ("fork", 0))
    parent, child = pte(k, 0, 0), pte(k, 1, 0)
    assert parent.page is child.page
    page = page_at(k, 0, 0)
    assert page.mapcount == 2
    assert page.mapping is not None and page.mapping.name == "AV1"
    assert not parent.writable and not child.writable
    assert sorted(walk(k, page)) == [("P0:[0,2)", 0), ("P1:[0,2)", 0)]


def test_grandchild_chain_is_newest_first_on_2634() -> None:
    """P0 -> P1 -> P2: on 2.6.34 the clone keeps the order, so P2's chain is [AV3, AV2, AV1]."""
    k = run_clean(FINAL, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fork", 0), ("fork", 1))
    assert shape(k, 2) == ("A.......", ["[0,1) rw- ac pgoff=0 anon=AV3 chain=[AV3, AV2, AV1]"])


def test_grandchild_chain_is_reversed_on_rc3() -> None:
    """rc1-rc3's anon_vma_clone pushes each copied link at the head (docs/model.md#fork-dup_mmap-and-anon_vma_fork):
    P2's chain is [AV3, AV1, AV2]."""
    k = run_clean(RC3, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fork", 0), ("fork", 1))
    assert shape(k, 2) == ("A.......", ["[0,1) rw- ac pgoff=0 anon=AV3 chain=[AV3, AV1, AV2]"])


@pytest.mark.parametrize("kernel", KERNELS)
def test_unfaulted_vma_stays_unfaulted_and_zero_ptes_are_not_copied(kernel: str) -> None:
    """
    P0: AA.BB   A faulted (AV1), B unfaulted with a zero-page pte at 3
    fork  ->  P1: AA.BB   B unfaulted, no pte at 3 (the child refaults)
    """
    k = run_clean(
        kernel, ("mmap", 0, 0, 2, "rw"), ("write", 0, 0), ("mmap", 0, 3, 2, "rw"), ("read", 0, 3), ("fork", 0)
    )
    assert shape(k, 1) == (
        "AA.BB...",
        ["[0,2) rw- ac pgoff=0 anon=AV2 chain=[AV2, AV1]", "[3,5) rw- ac pgoff=3 anon=- chain=[]"],
    )
    assert pte(k, 0, 3).page is None
    assert sorted(k.mms[1].ptes) == [0]


def test_zero_page_pte_of_faulted_vma_is_copied() -> None:
    """A zero-page pte inside a faulted VMA is copied with the rest (copy_page_range skips only unfaulted VMAs)."""
    k = run_clean(FINAL, ("mmap", 0, 0, 2, "rw"), ("write", 0, 0), ("read", 0, 1), ("fork", 0))
    assert sorted(k.mms[1].ptes) == [0, 1]
    assert pte(k, 1, 1).page is None


def test_dontfork_leaves_a_hole_in_the_child() -> None:
    """
    P0: AAA (AV1), madvise(dontfork) on page 1  ->  P0: ABC, B has VM_DONTCOPY (``dc``)
    fork  ->  P1: A.C
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 3, "rw"), ("write", 0, 0), ("madvise", 0, 1, 1, "dontfork"), ("fork", 0))
    assert shape(k, 0) == (
        "ABC.....",
        [
            "[0,1) rw- ac pgoff=0 anon=AV1 chain=[AV1]",
            "[1,2) rw- ac,dc pgoff=1 anon=AV1 chain=[AV1]",
            "[2,3) rw- ac pgoff=2 anon=AV1 chain=[AV1]",
        ],
    )
    assert shape(k, 1) == (
        "A.B.....",
        ["[0,1) rw- ac pgoff=0 anon=AV2 chain=[AV2, AV1]", "[2,3) rw- ac pgoff=2 anon=AV3 chain=[AV3, AV1]"],
    )


def test_dofork_undoes_dontfork() -> None:
    """
    P0: AAA, dontfork on [2,3)  ->  AAB;  fork  ->  P1: AA.
    dofork on [2,3)  ->  P0: AAA again (case 7 merge);  fork  ->  P2: AAA
    """
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 3, "rw"),
        ("write", 0, 0),
        ("madvise", 0, 2, 1, "dontfork"),
        ("fork", 0),
        ("madvise", 0, 2, 1, "dofork"),
        ("fork", 0),
    )
    assert shape(k, 1) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=AV2 chain=[AV2, AV1]"])
    assert shape(k, 0) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    assert shape(k, 2) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV3 chain=[AV3, AV1]"])
    assert merges(k) == ["vma_merge: case 7, prev absorbs the middle"]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("advice", ["wipeonfork", "keeponfork"])
def test_wipeonfork_is_einval_before_414(kernel: str, advice: str) -> None:
    v = run(kernel, ("mmap", 0, 0, 2, "rw"), ("madvise", 0, 0, 1, advice))
    assert v.results == ["ok", "EINVAL"]
    assert shape(v.final) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=- chain=[]"])


@pytest.mark.parametrize("kernel", KERNELS)
def test_exit_of_middle_process(kernel: str) -> None:
    """
    P0 -> P1 -> P2, all sharing page 0; P1 exits: its anon_vma AV2 stays (P2 still links it),
    the page's mapcount drops to 2 and walks from AV1 find P0 and P2.
    """
    k = run_clean(kernel, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fork", 0), ("fork", 1), ("exit", 1))
    assert not k.mms[1].alive
    assert k.mms[1].vmas == [] and k.mms[1].ptes == {}
    page = page_at(k, 0, 0)
    assert page.mapcount == 2
    assert sorted(walk(k, page)) == [("P0:[0,1)", 0), ("P2:[0,1)", 0)]
    av2 = k.anon_vmas[1]
    assert av2.name == "AV2" and not av2.freed
    assert "AV2" in chain(vma_at(k, 2, 0))


def test_exit_then_writes_copy_and_reuse() -> None:
    """After P1 exits, P2's write copies (mapcount 2) and P0's write then reuses (mapcount 1)."""
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 1, "rw"),
        ("write", 0, 0),
        ("fork", 0),
        ("fork", 1),
        ("exit", 1),
        ("write", 2, 0),
        ("write", 0, 0),
    )
    assert cow(k) == (1, 1)
    assert page_at(k, 2, 0).mapping is vma_at(k, 2, 0).anon_vma
    assert page_at(k, 0, 0).mapping is vma_at(k, 0, 0).anon_vma
    assert page_at(k, 0, 0) is not page_at(k, 2, 0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_exit_of_last_user_frees_anon_vmas(kernel: str) -> None:
    k = run_clean(kernel, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fork", 0), ("exit", 1), ("exit", 0))
    assert [av.freed for av in k.anon_vmas] == [True, True]
    assert all(p.freed for p in k.pages)


def test_fork_of_missing_pid_is_esrch() -> None:
    v = run(FINAL, ("fork", 3), ("fork", 0), ("exit", 1), ("fork", 1), ("write", 1, 0), ("exit", 1))
    assert v.results == ["ESRCH", "ok", "ok", "ESRCH", "ESRCH", "ESRCH"]
    assert v.violation is None
    assert v.final.next_pid == 2
