"""vma_merge() cases 1-8 (docs/model.md#vma_merge-cases-1-to-8) on the 2.6.34 model, and the merges it refuses.

Diagrams follow tools/testing/vma: one character per page, ``P`` = prev, ``N`` = next, ``A`` = the
range being mapped/mprotected, ``X`` = the VMA after the middle one, ``.`` = a hole.  The
assertions are on :func:`rmapfuzz.layout.diagram` (a letter per VMA, by address) and
:func:`rmapfuzz.layout.layout`.
"""

from __future__ import annotations

import pytest

from tests.helpers import FINAL, chain, hits, merges, page_at, run_clean, shape, step, vma_at, walk

MOVE = ("maymove", "fixed")


# ---- case 1: A fills the hole between P and N ----


def test_case1_fill_hole_merges_prev_and_next() -> None:
    """
    P.N      ->  PPP
     A
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 1, "rw"), ("mmap", 0, 2, 1, "rw"), ("mmap", 0, 1, 1, "rw"))
    assert shape(k) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=- chain=[]"])
    assert merges(k) == ["vma_merge: case 1, prev and next close the hole"]


def test_case1_faulted_prev_keeps_its_anon_vma() -> None:
    """
    P.N   (P faulted: AV1)  ->  PPP anon=AV1
     A
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("mmap", 0, 2, 1, "rw"), ("mmap", 0, 1, 1, "rw"))
    assert shape(k) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    assert merges(k) == ["vma_merge: case 1, prev and next close the hole"]
    assert walk(k, page_at(k, 0, 0)) == [("P0:[0,3)", 0)]


def test_case1_faulted_next_is_imported_by_prev() -> None:
    """
    P.N   (N faulted: AV1)  ->  PPP anon=AV1, P imported N's chain (287d97ac)
     A
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 1, "rw"), ("mmap", 0, 2, 1, "rw"), ("write", 0, 2), ("mmap", 0, 1, 1, "rw"))
    assert shape(k) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    assert merges(k) == ["vma_merge: case 1, prev and next close the hole"]
    assert walk(k, page_at(k, 0, 2)) == [("P0:[0,3)", 2)]


def test_case1_refused_for_different_anon_vmas_becomes_case2() -> None:
    """
    P.N   (P: AV1, N: AV2)  ->  PPN   P and N cannot share one anon_vma: only A joins P
     A
    """
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 1, "rw"),
        ("write", 0, 0),
        ("mmap", 0, 2, 1, "rw"),
        ("write", 0, 2),
        ("mmap", 0, 1, 1, "rw"),
    )
    assert shape(k) == (
        "AAB.....",
        ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[2,3) rw- ac pgoff=2 anon=AV2 chain=[AV2]"],
    )
    assert merges(k) == ["vma_merge: case 2, prev grows over the hole"]


# ---- case 2: A merges with P only ----


def test_case2_prev_grows() -> None:
    """
    PP        ->  PPP
      A
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 2, "rw"), ("write", 0, 1), ("mmap", 0, 2, 1, "rw"))
    assert shape(k) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    assert merges(k) == ["vma_merge: case 2, prev grows over the hole"]


# ---- case 3: A merges with N only ----


def test_case3_next_grows_down() -> None:
    """
    .NN      ->  .NNN   N's start and pgoff move down, the anon_vma stays
    A            (A at page 1, N = [2,4))
    """
    k = run_clean(FINAL, ("mmap", 0, 2, 2, "rw"), ("write", 0, 2), ("mmap", 0, 1, 1, "rw"))
    assert shape(k) == (".AAA....", ["[1,4) rw- ac pgoff=1 anon=AV1 chain=[AV1]"])
    assert merges(k) == ["vma_merge: case 3, next grows down over the hole"]
    page = page_at(k, 0, 2)
    assert page.index == 2
    assert walk(k, page) == [("P0:[1,4)", 2)]


# ---- case 4: mprotect of the tail of P, mergeable with N ----


def test_case4_prev_shrinks_next_grows_down_and_imports() -> None:
    """
    PPNN  (P rw faulted AV1, N r unfaulted)
     A    mprotect(r)  ->  PNNN   N imports P's anon_vma (the row the rc3 code got right)
    """
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 4, "rw"),
        ("mprotect", 0, 2, 2, "r"),
        ("write", 0, 1),
        ("mprotect", 0, 1, 1, "r"),
    )
    assert shape(k) == (
        "ABBB....",
        ["[0,1) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[1,4) r-- ac pgoff=1 anon=AV1 chain=[AV1]"],
    )
    assert merges(k) == ["vma_merge: case 4, next takes the tail of prev"]
    assert walk(k, page_at(k, 0, 1)) == [("P0:[1,4)", 1)]


# ---- case 5: mprotect of the head of N, mergeable with P ----


def test_case5_prev_grows_over_head_of_next_and_imports() -> None:
    """
    PPNN  (P rw unfaulted, N rwx faulted AV1)
      A   mprotect(rw)  ->  PPPN   P imports N's anon_vma, N's start/pgoff advance
    """
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 4, "rw"),
        ("mprotect", 0, 2, 2, "rwx"),
        ("write", 0, 2),
        ("mprotect", 0, 2, 1, "rw"),
    )
    assert shape(k) == (
        "AAAB....",
        ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[3,4) rwx ac pgoff=3 anon=AV1 chain=[AV1]"],
    )
    assert merges(k) == ["vma_merge: case 5, prev takes the head of next"]
    page = page_at(k, 0, 2)
    assert page.index == 2
    assert walk(k, page) == [("P0:[0,3)", 2)]


# ---- case 6: the whole middle, mergeable with P and X ----


def test_case6_prev_absorbs_middle_and_next() -> None:
    """
    PAX  (P rw, A r, X rw)
     A   mprotect(rw)  ->  PPP   (one VMA, X removed in vma_adjust's second pass)
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 3, "rw"), ("mprotect", 0, 1, 1, "r"), ("mprotect", 0, 1, 1, "rw"))
    assert shape(k) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=- chain=[]"])
    assert merges(k) == ["vma_merge: case 6, prev and next absorb the middle"]


def test_case6_faulted_middle_and_next_are_imported() -> None:
    """
    PAX  (P rw unfaulted, A rwx faulted AV1, X rw unfaulted)
     A   mprotect(rw)  ->  PPP anon=AV1 chain=[AV1]
    """
    k = run_clean(
        FINAL, ("mmap", 0, 0, 3, "rw"), ("mprotect", 0, 1, 1, "rwx"), ("write", 0, 1), ("mprotect", 0, 1, 1, "rw")
    )
    assert shape(k) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    assert merges(k) == ["vma_merge: case 6, prev and next absorb the middle"]


def test_case6_refused_for_different_anon_vmas_becomes_case7() -> None:
    """
    PAX  (P rw AV1, A r unfaulted, X rw AV2)
     A   mprotect(rw)  ->  PPX   P and X have different anon_vmas: only P absorbs A
    """
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 3, "rw"),
        ("mprotect", 0, 1, 1, "r"),
        ("write", 0, 0),
        ("write", 0, 2),
        ("mprotect", 0, 1, 1, "rw"),
    )
    assert shape(k) == (
        "AAB.....",
        ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[2,3) rw- ac pgoff=2 anon=AV2 chain=[AV2]"],
    )
    assert merges(k) == ["vma_merge: case 7, prev absorbs the middle"]


# ---- case 7: the whole middle, mergeable with P only ----


def test_case7_prev_absorbs_middle() -> None:
    """
    PAX  (P rw unfaulted, A rwx faulted AV1, X r)
     A   mprotect(rw)  ->  PPX   P imports A's anon_vma (bug A's case on rc3)
    """
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 3, "rw"),
        ("mprotect", 0, 1, 1, "rwx"),
        ("mprotect", 0, 2, 1, "r"),
        ("write", 0, 1),
        ("mprotect", 0, 1, 1, "rw"),
    )
    assert shape(k) == (
        "AAB.....",
        ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[2,3) r-- ac pgoff=2 anon=- chain=[]"],
    )
    assert merges(k) == ["vma_merge: case 7, prev absorbs the middle"]
    assert walk(k, page_at(k, 0, 1)) == [("P0:[0,2)", 1)]


# ---- case 8: the whole middle, mergeable with X only ----


def test_case8_middle_grows_over_next() -> None:
    """
    PAX  (P rwx, A r, X rw faulted AV1)
     A   mprotect(rw)  ->  PAA   2.6.34: the middle VMA survives, grows over X and imports X's anon_vma
    """
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 3, "rw"),
        ("mprotect", 0, 0, 1, "rwx"),
        ("mprotect", 0, 1, 1, "r"),
        ("write", 0, 2),
    )
    middle = vma_at(k, 0, 1)
    assert merges(k) == []
    assert k.apply(step(("mprotect", 0, 1, 1, "rw"))) == "ok"
    assert shape(k) == (
        "ABB.....",
        ["[0,1) rwx ac pgoff=0 anon=- chain=[]", "[1,3) rw- ac pgoff=1 anon=AV1 chain=[AV1]"],
    )
    assert vma_at(k, 0, 2) is middle
    assert merges(k) == ["vma_merge: case 8, next absorbs the middle"]
    assert walk(k, page_at(k, 0, 2)) == [("P0:[1,3)", 2)]


CASE8_SETUP = (
    ("mmap", 0, 0, 1, "x"),
    ("mmap", 0, 2, 2, "rw"),
    ("write", 0, 2),
    ("mprotect", 0, 2, 2, "r"),
    ("mmap", 0, 1, 1, "rw"),
)


@pytest.mark.parametrize(
    ("kernel", "survivor", "with_failure"),
    [
        ("3.19", "middle", ["[0,1) --x pgoff=0 anon=- chain=[]", "[1,2) r-- ac pgoff=1 anon=- chain=[]",
                            "[2,4) r-- ac pgoff=2 anon=AV1 chain=[AV1]"]),
        ("6.0", "next", ["[0,1) --x pgoff=0 anon=- chain=[]", "[1,4) r-- ac pgoff=1 anon=AV1 chain=[AV1]"]),
        ("6.1", "next", ["[0,1) --x pgoff=0 anon=- chain=[]", "[1,4) r-- ac pgoff=1 anon=AV1 chain=[AV1]"]),
    ],
)  # fmt: skip
def test_case8_since_4_9_next_grows_down(kernel: str, survivor: str, with_failure: list[str]) -> None:
    """
    PAXX  (P x, A rw unfaulted, X r faulted AV1 with its VM_ACCOUNT)
     A    mprotect(r)  ->  PAAA
    3.19: the middle survives, grows over X and imports X's anon_vma: a clone, which can fail
    4.9+ (e86f15ee64d8): X survives and grows down; it has an anon_vma, so nothing is allocated
    and an injected allocation failure changes nothing
    """
    k = run_clean(kernel, *CASE8_SETUP)
    middle, nxt = vma_at(k, 0, 1), vma_at(k, 0, 2)
    assert k.apply(step(("mprotect", 0, 1, 1, "r"))) == "ok"
    assert shape(k) == ("ABBB....", [
        "[0,1) --x pgoff=0 anon=- chain=[]", "[1,4) r-- ac pgoff=1 anon=AV1 chain=[AV1]"])  # fmt: skip
    assert vma_at(k, 0, 1) is (middle if survivor == "middle" else nxt)
    assert (middle if survivor == "next" else nxt).freed
    k = run_clean(kernel, *CASE8_SETUP, ("fail_alloc", 1))
    k.apply(step(("mprotect", 0, 1, 1, "r")))
    assert shape(k)[1] == with_failure


# ---- merges that are refused ----


def test_vm_account_blocks_merge() -> None:
    """
    AB    A = r (never writable), B = r but once made rw: VM_ACCOUNT (``ac``) stays set
          ->  AB, although both are now r--
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 2, "r"), ("mprotect", 0, 1, 1, "rw"), ("mprotect", 0, 1, 1, "r"))
    assert shape(k) == ("AB......", ["[0,1) r-- pgoff=0 anon=- chain=[]", "[1,2) r-- ac pgoff=1 anon=- chain=[]"])
    assert merges(k) == []


def test_vm_account_gained_by_mprotect_allows_merge_with_rw_mmap() -> None:
    """
    A.    mmap r, mprotect rw (adds ac)
     B    mmap rw (ac)  ->  AA
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 1, "r"), ("mprotect", 0, 0, 1, "rw"), ("mmap", 0, 1, 1, "rw"))
    assert shape(k) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=- chain=[]"])
    assert merges(k) == ["vma_merge: case 2, prev grows over the hole"]


NORESERVE = ("noreserve",)


def test_vm_noreserve_blocks_merge_with_a_charged_neighbour() -> None:
    """
    A.    mmap rw (ac)
     B    mmap rw with MAP_NORESERVE (``nr``, never charged)  ->  AB: the flags differ
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 1, "rw"), ("mmap", 0, 1, 1, "rw", NORESERVE))
    assert shape(k) == ("AB......", ["[0,1) rw- ac pgoff=0 anon=- chain=[]", "[1,2) rw- nr pgoff=1 anon=- chain=[]"])
    assert merges(k) == []


def test_vm_noreserve_is_never_charged_so_write_history_does_not_split() -> None:
    """
    AB    A = r, B = r once made rw, both MAP_NORESERVE: mprotect_fixup() charges neither (the case
          test_vm_account_blocks_merge leaves apart)  ->  AA, and the last mprotect is case 7
    """
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 2, "r", NORESERVE),
        ("mprotect", 0, 1, 1, "rw"),
        ("mprotect", 0, 1, 1, "r"),
    )
    assert shape(k) == ("AA......", ["[0,2) r-- nr pgoff=0 anon=- chain=[]"])
    assert merges(k) == ["vma_merge: case 7, prev absorbs the middle"]
    assert hits(k)["mprotect_fixup: first write permission of a VM_NORESERVE mapping, not charged"] == 1


def test_different_anon_vmas_block_merge_after_fork() -> None:
    """
    P1: AB   A = [0,1) rwx faulted after fork (own AV3: 2.6.34 does not borrow B's forked AV2),
             B = [1,3) rw (AV2, chain [AV2, AV1])
    mprotect(A, rw)  ->  AB  (different anon_vmas: no merge)
    """
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 3, "rw"),
        ("mprotect", 0, 0, 1, "rwx"),
        ("write", 0, 1),
        ("fork", 0),
        ("write", 1, 0),
        ("mprotect", 1, 0, 1, "rw"),
    )
    assert shape(k, 1) == (
        "ABB.....",
        ["[0,1) rw- ac pgoff=0 anon=AV3 chain=[AV3]", "[1,3) rw- ac pgoff=1 anon=AV2 chain=[AV2, AV1]"],
    )
    assert merges(k) == []
    assert not hits(k)["anon_vma_prepare: reuse a neighbour's anon_vma"]


def test_pgoff_discontinuity_after_move_blocks_merge() -> None:
    """
    A.......   faulted, pgoff 0
    ..NAM...   after mremap A -> [3,4) (keeps pgoff 0) and mmap N = [2,3), M = [4,5):
               pgoff 2, 0, 4 are not continuous: three VMAs
    """
    k = run_clean(
        FINAL,
        ("mmap", 0, 0, 1, "rw"),
        ("write", 0, 0),
        ("mremap", 0, 0, 1, 3, 1, MOVE),
        ("mmap", 0, 2, 1, "rw"),
        ("mmap", 0, 4, 1, "rw"),
    )
    assert shape(k) == (
        "..ABC...",
        [
            "[2,3) rw- ac pgoff=2 anon=- chain=[]",
            "[3,4) rw- ac pgoff=0 anon=AV1 chain=[AV1]",
            "[4,5) rw- ac pgoff=4 anon=- chain=[]",
        ],
    )
    assert merges(k) == []


def test_unfaulted_move_is_rebased_and_merges() -> None:
    """
    A.......   unfaulted
    ..NA....   mremap A -> [3,4) re-bases pgoff to 3, so mmap N = [2,3) merges (case 3)
    """
    k = run_clean(FINAL, ("mmap", 0, 0, 1, "rw"), ("mremap", 0, 0, 1, 3, 1, MOVE), ("mmap", 0, 2, 1, "rw"))
    assert shape(k) == ("..AA....", ["[2,4) rw- ac pgoff=2 anon=- chain=[]"])
    assert merges(k) == ["vma_merge: case 3, next grows down over the hole"]


def test_chain_helper_names_anon_vmas() -> None:
    k = run_clean(FINAL, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0))
    assert chain(vma_at(k, 0, 0)) == ["AV1"]
