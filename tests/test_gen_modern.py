"""The modern generations (docs/model.md#the-mmvmac-kernels, docs/model.md#bug-j, and the cases
measured on 6.18.44 in docs/live-oracle.md#scenario-corpus): 6.15's mm/vma.c merge structure, 6.16's
three-way anon_vma rule (879bca0a2c4f) with bug J, and 6.18.8 with both fixes.

Steps are 0-based, as :class:`rmapfuzz.invariants.Violation` counts them.
"""

from __future__ import annotations

import pytest

from bench.scenarios import SCENARIOS
from rmapfuzz import invariants as inv
from rmapfuzz.classify import classify
from rmapfuzz.kernels import ALIASES, BUGS, KERNELS, boot, resolve, with_fix
from rmapfuzz.layout import ptes_line
from rmapfuzz.replay import replay
from tests.helpers import StepTuple, page_at, run, shape, step, steps, vma_at, walk
from tests.test_bugs_2010 import BUG_A_CASE5, BUG_A_CASE6, BUG_A_CASE7, BUG_B
from tests.test_gen_kernels import CVE_2022_42703, FAULTED_INTO_UNFAULTED, checked, counters
from tests.test_mremap import BUG_M

MODERN = ("6.15", "6.16", "6.16+61f67c23", "6.18.8")
MOVE = ("maymove", "fixed")
DONTUNMAP = ("maymove", "fixed", "dontunmap")


# ---- the registry ----


def test_registry_names_the_modern_generations() -> None:
    for name in ("6.12", *MODERN):
        cls = KERNELS[name]
        # 6.15 adds nothing to 6.12 that the model covers (rmapfuzz/kernels/v6_15.py)
        assert cls.name == name and cls.base in KERNELS and (cls.commits or name == "6.15") and cls.summary
        assert set(cls.bugs) <= set(BUGS)
    assert KERNELS["6.16"].bugs == ("J",) and KERNELS["6.18.8"].bugs == ()
    assert ALIASES["current"] == "6.18.8" and resolve("current") is KERNELS["6.18.8"]
    buggy, fixed = "6.16", with_fix(KERNELS["6.16"], "J").name
    assert fixed == "6.16+61f67c23" and KERNELS[fixed].base == buggy
    assert set(KERNELS[fixed].commits) - set(KERNELS[buggy].commits) == {
        ("61f67c230a5e", "mm/vma: fix anon_vma UAF on mremap() faulted, unfaulted merge")
    }
    assert set(KERNELS["6.16"].commits) - set(KERNELS["6.15"].commits) == {
        ("879bca0a2c4f", "mm/vma: fix incorrectly disallowed anonymous VMA merges")
    }


# ---- the known scenarios ----


@pytest.mark.parametrize("kernel", ["6.16", "6.18.8"])
@pytest.mark.parametrize(
    ("scenario", "ts"),
    [
        ("A-case7", BUG_A_CASE7),
        ("A-case6", BUG_A_CASE6),
        ("A-case5", BUG_A_CASE5),
        ("B", BUG_B),
        ("G", CVE_2022_42703),
    ],
)
def test_old_bugs_stay_fixed(scenario: str, ts: tuple[StepTuple, ...], kernel: str) -> None:
    _k, results, bad = checked(kernel, *ts)
    assert bad is None, f"{scenario}: {bad}"
    assert results == ["ok"] * len(ts)


@pytest.mark.parametrize("kernel", MODERN)
def test_bug_s_scenario_clean(kernel: str) -> None:
    """MADV_PAGEOUT skips the shared page, and with 2.6.36's rules a swap-in would be right anyway."""
    v = replay(SCENARIOS["S"], kernel, 8)
    assert v.violation is None and v.results == ["ok"] * len(SCENARIOS["S"])


@pytest.mark.parametrize("kernel", ["6.15", "6.18.8"])
def test_m_scenario_clean(kernel: str) -> None:
    """
    ..A.....   [2,3) faulted: AV1, page index 2
    .....A..   moved to [5,6): pgoff stays 2
    .B...A..   mmap [1,2): pgoff 1, unfaulted
    .AB.....   6.15 (3.0's rule): a faulted range never merges into an unfaulted prev; a copy
    .AA.....   6.18.8: merged, and vma_expand dups AV1 from the source (61f67c230a5e)
    """
    k, results, bad = checked(kernel, *BUG_M)
    assert bad is None and results == ["ok"] * 5
    if kernel == "6.15":
        assert shape(k) == (
            ".AB.....",
            ["[1,2) rw- ac pgoff=1 anon=- chain=[]", "[2,3) rw- ac pgoff=2 anon=AV1 chain=[AV1]"],
        )
    else:
        assert shape(k) == (".AA.....", ["[1,3) rw- ac pgoff=1 anon=AV1 chain=[AV1]"])
    assert walk(k, page_at(k, 0, 2)) == [(vma_at(k, 0, 2).name, 2)]


# ---- bug J ----


def test_bug_j_on_6_16() -> None:
    """The M scenario is a bug J trigger on 6.16 (docs/model.md#bug-j):

    .B...A..   A [5,6) faulted (AV1, pgoff 2), B [1,2) unfaulted (pgoff 1)
    .BB.....   mremap A -> [2,3): the three-way rule lets the copy merge into B (no middle VMA, so
               no fork check); vma_expand grows B without a dup from A; A is unmapped: AV1 freed
    """
    v = run("6.16", *BUG_M)
    assert v.results == ["ok"] * 5
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == ("merge-superset", 4)
    assert v.violation.message == (
        "move_vma: P0:[1,3) took over P0:[5,6) (chain [AV1(freed)]) but its chain [] lacks AV1(freed)"
    )
    assert shape(v.final) == (".AA.....", ["[1,3) rw- ac pgoff=1 anon=- chain=[]"])
    assert ptes_line(v.final.mms[0]) == "2:page1->AV1(freed)@2(w)"
    # the rmap walk of page 2 locks the freed AV1: a use-after-free, even without merge-superset
    w = run("6.16", *BUG_M, invariants=["rmap-complete"])
    assert w.violation is not None and (w.violation.invariant, w.violation.step) == ("no-dangling", 4)
    assert w.violation.message == "use-after-free: rmap walk of page1 (index 2) locks freed AV1(freed)"


def test_bug_j_classified() -> None:
    assert classify("6.16", steps(*BUG_M)) == ["J"]


J_NEXT: tuple[StepTuple, ...] = (
    ("mmap", 0, 3, 1, "rw"),
    ("write", 0, 3),
    ("mremap", 0, 3, 1, 6, 1, MOVE),
    ("mmap", 0, 4, 1, "rw"),
    ("mremap", 0, 6, 1, 3, 1, MOVE),
)


@pytest.mark.parametrize(("kernel", "bad"), [("6.15", None), ("6.16", 4), ("6.16+61f67c23", None), ("6.18.8", None)])
def test_bug_j_merging_right(kernel: str, bad: int | None) -> None:
    """
    ...A....   [3,4) faulted (AV1, pgoff 3); moved to [6,7); mmap B [4,5) (pgoff 4, unfaulted)
    ...AB...   6.15: the move back makes a copy next to B
    ...AA...   6.16: vma_merge_new_range expands B (the target is next) down over [3,4) with no dup
               6.16+61f67c23, 6.18.8: B gets AV1 and its chain first
    """
    k, results, found = checked(kernel, *J_NEXT)
    assert results == ["ok"] * 5
    if bad is not None:
        assert found is not None and (found[0], found[1].invariant) == (bad, "merge-superset")
        assert shape(k) == ("...AA...", ["[3,5) rw- ac pgoff=3 anon=- chain=[]"])
        return
    assert found is None
    if kernel == "6.15":
        assert shape(k)[0] == "...AB..."
    else:
        assert shape(k) == ("...AA...", ["[3,5) rw- ac pgoff=3 anon=AV1 chain=[AV1]"])
        assert counters(k) == {"AV1": (1, 1, 1)}


J_DONTUNMAP: tuple[StepTuple, ...] = (*BUG_M[:4], ("mremap", 0, 5, 1, 2, 1, DONTUNMAP))


@pytest.mark.parametrize("kernel", ["6.16", "6.18.8"])
def test_bug_j_with_dontunmap(kernel: str) -> None:
    """
    .B...A..   as the M scenario; the last move is MREMAP_DONTUNMAP
    .AA..B..   the old VMA [5,6) stays (pgoff 2) and, wholly moved, is unlinked: unfaulted again.
               6.16: its AV1 was the only link, so AV1 is freed under page 2 (bug J)
               6.18.8: [1,3) got AV1 by the dup; AV1 lives
    """
    k, results, bad = checked(kernel, *J_DONTUNMAP)
    assert results == ["ok"] * 5
    old = "[5,6) rw- ac pgoff=2 anon=- chain=[]"
    if kernel == "6.16":
        assert bad is not None and (bad[0], bad[1].invariant) == (4, "merge-superset")
        assert shape(k) == (".AA..B..", ["[1,3) rw- ac pgoff=1 anon=- chain=[]", old])
        assert ptes_line(k.mms[0]) == "2:page1->AV1(freed)@2(w)"
    else:
        assert bad is None
        assert shape(k) == (".AA..B..", ["[1,3) rw- ac pgoff=1 anon=AV1 chain=[AV1]", old])
        assert ptes_line(k.mms[0]) == "2:page1->AV1@2(w)"


J_FORK: tuple[StepTuple, ...] = (
    ("mmap", 0, 2, 1, "rw"),
    ("write", 0, 2),
    ("fork", 0),
    ("mremap", 1, 2, 1, 5, 1, MOVE),
    ("mmap", 1, 1, 1, "rw"),
    ("mremap", 1, 5, 1, 2, 1, MOVE),
)


@pytest.mark.parametrize("kernel", ["6.16", "6.16+61f67c23", "6.18.8"])
def test_bug_j_fork_child_source(kernel: str) -> None:
    """
    P1: .B...A..   the fork child's A (AV2, chain [AV2, AV1], page shared with P0 -> AV1) moved out
                   and back next to an unfaulted B
    6.16:          merged, no dup: P1's page 2 is unreachable (merge-superset at step 5)
    6.16+61f67c23: merged with a dup of [AV2, AV1]: safe, but a fork child joined a fresh VMA
    6.18.8:        3b617fd3d317 checks copied_from: refused, a copy
    """
    k, results, bad = checked(kernel, *J_FORK)
    assert results == ["ok"] * 6
    if kernel == "6.16":
        assert bad is not None and (bad[0], bad[1].invariant) == (5, "merge-superset")
        return
    assert bad is None
    if kernel == "6.16+61f67c23":
        assert shape(k, 1) == (".AA.....", ["[1,3) rw- ac pgoff=1 anon=AV2 chain=[AV2, AV1]"])
    else:
        assert shape(k, 1) == (
            ".AB.....",
            ["[1,2) rw- ac pgoff=1 anon=- chain=[]", "[2,3) rw- ac pgoff=2 anon=AV2 chain=[AV2, AV1]"],
        )
    assert sorted(walk(k, page_at(k, 1, 2))) == [("P0:[2,3)", 2), (vma_at(k, 1, 2).name, 2)]


# ---- the merge structure of mm/vma.c ----


CASE8: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 1, "r"),
    ("mmap", 0, 1, 1, "rwx"),
    ("mmap", 0, 2, 1, "rw"),
    ("write", 0, 2),
)


@pytest.mark.parametrize(("kernel", "survivor"), [("3.19+2555283e", 1), ("6.0", 2), ("6.15", 2), ("6.18.8", 2)])
def test_case_8_orientation(kernel: str, survivor: int) -> None:
    """
    ABC.....   A [0,1) r, M [1,2) rwx unfaulted, N [2,3) rw faulted (AV1)
    ABB.....   mprotect M rw: M merges with N only (case 8).  3.19 (with G fixed) has 2.6.34's orientation (M grows
               over N, imports AV1, N removed); since 4.9 (e86f15ee64d8) N grows down and M is removed.
    """
    k = boot(kernel)
    for t in CASE8:
        assert k.apply(step(t)) == "ok"
    before = {addr: vma_at(k, 0, addr) for addr in (1, 2)}
    assert k.apply(step(("mprotect", 0, 1, 1, "rw"))) == "ok"
    assert inv.check(k, inv.CATALOGUE) == []
    assert shape(k) == ("ABB.....", ["[0,1) r-- pgoff=0 anon=- chain=[]", "[1,3) rw- ac pgoff=1 anon=AV1 chain=[AV1]"])
    assert vma_at(k, 0, 1) is before[survivor]
    assert before[3 - survivor].freed
    assert counters(k) == {"AV1": (1, 1, 1)}


@pytest.mark.parametrize(("kernel", "merged"), [("6.15", False), ("6.16", True), ("6.18.8", True)])
def test_case_8_dups_into_unfaulted_next(kernel: str, merged: bool) -> None:
    """
    ABC.....   A [0,1) r, M [1,2) rwx faulted (AV1), N [2,3) rw unfaulted
    mprotect M rw:
    ABB.....   6.16: N grows down over M and dup_anon_vma(N, M) gives it AV1 and [AV1]
    ABC.....   6.15: refused (N's chain is empty, not singular)
    """
    ts = (("mmap", 0, 0, 1, "r"), ("mmap", 0, 1, 1, "rwx"), ("write", 0, 1), ("mmap", 0, 2, 1, "rw"))
    k = boot(kernel)
    for t in ts:
        assert k.apply(step(t)) == "ok"
    n = vma_at(k, 0, 2)
    assert k.apply(step(("mprotect", 0, 1, 1, "rw"))) == "ok"
    assert inv.check(k, inv.CATALOGUE) == []
    if merged:
        assert shape(k) == (
            "ABB.....",
            ["[0,1) r-- pgoff=0 anon=- chain=[]", "[1,3) rw- ac pgoff=1 anon=AV1 chain=[AV1]"],
        )
        assert vma_at(k, 0, 1) is n
    else:
        assert shape(k)[0] == "ABC....."
    assert counters(k) == {"AV1": (1, 1, 1)}
    assert walk(k, page_at(k, 0, 1)) == [(vma_at(k, 0, 1).name, 1)]


@pytest.mark.parametrize(("kernel", "merged"), [("6.15", False), ("6.16", True), ("6.18.8", True)])
def test_three_way_rule_faulted_into_unfaulted_prev(kernel: str, merged: bool) -> None:
    """
    AB......   A [0,1) rw unfaulted, B [1,2) rwx faulted (AV1); mprotect B rw
    AA......   6.16: prev takes AV1 and [AV1] by dup_anon_vma(prev, middle), B is removed
    AB......   6.15: 3.0's rule refuses (A's chain is empty)
    """
    k, results, bad = checked(kernel, *FAULTED_INTO_UNFAULTED)
    assert bad is None and results == ["ok"] * 4
    if merged:
        assert shape(k) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    else:
        assert shape(k)[0] == "AB......"
    assert counters(k) == {"AV1": (1, 1, 1)}


LIVE_C7: tuple[StepTuple, ...] = (
    ("mmap", 0, 4, 4, "rw"),
    ("write", 0, 4),
    ("mprotect", 0, 4, 4, "r"),
    ("mmap", 0, 0, 4, "rw"),
    ("mprotect", 0, 4, 2, "rw"),
)


@pytest.mark.parametrize("kernel", ["6.16", "6.18.8"])
def test_live_c7_partial_left_merge_dups(kernel: str) -> None:
    """Measured case c7 (docs/live-oracle.md#scenario-corpus):

    AAAABBBB   A [0,4) rw unfaulted; B [4,8) r ac faulted (AV1)
    AAAAAABB   mprotect [4,6) rw: prev grows over B's head (dup from B), B's start advances:
               both use AV1 (num_active_vmas 2); the exclusive page 4 is writable at once
    """
    k, results, bad = checked(kernel, *LIVE_C7)
    assert bad is None and results == ["ok"] * 5
    assert shape(k) == (
        "AAAAAABB",
        ["[0,6) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[6,8) r-- ac pgoff=6 anon=AV1 chain=[AV1]"],
    )
    assert counters(k) == {"AV1": (1, 1, 2)}
    assert ptes_line(k.mms[0]) == "4:page1->AV1@4(w)"


FORK_CHILD: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 1, "rw"),
    ("mmap", 0, 1, 1, "rwx"),
    ("write", 0, 1),
    ("fork", 0),
    ("mprotect", 1, 1, 1, "rw"),
    ("mprotect", 0, 1, 1, "rw"),
)


@pytest.mark.parametrize("kernel", ["6.16", "6.18.8"])
def test_three_way_rule_refuses_a_fork_child(kernel: str) -> None:
    """
    P0: AB......   A [0,1) rw unfaulted, B [1,2) rwx faulted (AV1); fork
    P1: AB......   B: AV2, chain [AV2, AV1] (had uncowed parents): mprotect B rw is not merged
    P0: AA......   the parent's B (chain [AV1]) merges into A with a dup
    """
    k, results, bad = checked(kernel, *FORK_CHILD)
    assert bad is None and results == ["ok"] * 6
    assert shape(k, 1) == (
        "AB......",
        ["[0,1) rw- ac pgoff=0 anon=- chain=[]", "[1,2) rw- ac pgoff=1 anon=AV2 chain=[AV2, AV1]"],
    )
    assert shape(k, 0) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])


@pytest.mark.parametrize("kernel", MODERN)
def test_vma_expand_mmap_fills_hole_dups_from_next(kernel: str) -> None:
    """Measured case b5 (docs/live-oracle.md#scenario-corpus):

    AA..BB..   A [0,2) unfaulted, B [4,6) faulted (AV1)
    AAAAAA..   mmap [2,4): prev expands over the range and B; vma_expand dups AV1 from the removed next
    """
    ts = (("mmap", 0, 0, 2, "rw"), ("mmap", 0, 4, 2, "rw"), ("write", 0, 4), ("mmap", 0, 2, 2, "rw"))
    k, results, bad = checked(kernel, *ts)
    assert bad is None and results == ["ok"] * 4
    assert shape(k) == ("AAAAAA..", ["[0,6) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    assert counters(k) == {"AV1": (1, 1, 1)}


@pytest.mark.parametrize("kernel", MODERN)
def test_vma_expand_unfaulted_move_adopts_neighbour(kernel: str) -> None:
    """Measured case e2 (docs/live-oracle.md#scenario-corpus):

    AA...BB.   A [0,2) faulted (AV1), B [5,7) unfaulted
    AAAA....   mremap B -> [2,4): re-based (pgoff 2), A expands over it
    """
    ts = (("mmap", 0, 0, 2, "rw"), ("write", 0, 0), ("mmap", 0, 5, 2, "rw"), ("mremap", 0, 5, 2, 2, 2, MOVE))
    k, results, bad = checked(kernel, *ts)
    assert bad is None and results == ["ok"] * 4
    assert shape(k) == ("AAAA....", ["[0,4) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])


@pytest.mark.parametrize(("kernel", "diagram"), [("6.0", "AAAABB.."), ("6.15", "AAAABB.."), ("6.16", "AAAAAA..")])
def test_mremap_grow_in_place_merges_with_next(kernel: str, diagram: str) -> None:
    """
    AA..BB..   A [0,2) faulted (AV1), B [4,6) unfaulted
    mremap A 2 -> 4 pages in place: vma_merge_extend() (6.x) is a new range after A; on 6.16 it also
    reaches B, which may take A's anon_vma (no middle, no fork check).  6.0 grows with vma_adjust();
    6.15's rule refuses B (empty chain).
    """
    ts = (("mmap", 0, 0, 2, "rw"), ("write", 0, 0), ("mmap", 0, 4, 2, "rw"), ("mremap", 0, 0, 2, 0, 4, ()))
    k, results, bad = checked(kernel, *ts)
    assert bad is None and results == ["ok"] * 4
    assert shape(k)[0] == diagram
    if diagram == "AAAAAA..":
        assert shape(k)[1] == ["[0,6) rw- ac pgoff=0 anon=AV1 chain=[AV1]"]
    else:
        assert shape(k)[1] == ["[0,4) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[4,6) rw- ac pgoff=4 anon=- chain=[]"]


# ---- MREMAP_DONTUNMAP ----


@pytest.mark.parametrize("kernel", ("6.0", *MODERN))
def test_dontunmap_whole_vma_becomes_unfaulted(kernel: str) -> None:
    """
    AA......   [0,2) faulted, pages 0 and 1 (AV1)
    AA..BB..   mremap [0,2) -> [4,6) DONTUNMAP: the old VMA stays, unlinked (anon=-), no ptes;
               the new one has AV1 and the pages; a write to 0 gets a fresh anon_vma
    """
    ts = (("mmap", 0, 0, 2, "rw"), ("write", 0, 0), ("write", 0, 1), ("mremap", 0, 0, 2, 4, 2, DONTUNMAP))
    k, results, bad = checked(kernel, *ts)
    assert bad is None and results == ["ok"] * 4
    assert shape(k) == (
        "AA..BB..",
        ["[0,2) rw- ac pgoff=0 anon=- chain=[]", "[4,6) rw- ac pgoff=0 anon=AV1 chain=[AV1]"],
    )
    assert ptes_line(k.mms[0]) == "4:page1->AV1@0(w) 5:page2->AV1@1(w)"
    assert counters(k) == {"AV1": (1, 1, 1)}
    assert k.apply(step(("write", 0, 0))) == "ok"
    assert shape(k)[1][0] == "[0,2) rw- ac pgoff=0 anon=AV2 chain=[AV2]"


@pytest.mark.parametrize("kernel", ("6.0", *MODERN))
def test_dontunmap_part_of_a_vma_keeps_its_anon_vma(kernel: str) -> None:
    """
    AAAA....   [0,4) faulted at 0 and 3 (AV1)
    AAAA.BB.   mremap [2,4) -> [5,7) DONTUNMAP: [0,4) is not wholly moved and keeps AV1
    """
    ts = (("mmap", 0, 0, 4, "rw"), ("write", 0, 0), ("write", 0, 3), ("mremap", 0, 2, 2, 5, 2, DONTUNMAP))
    k, results, bad = checked(kernel, *ts)
    assert bad is None and results == ["ok"] * 4
    assert shape(k) == (
        "AAAA.BB.",
        ["[0,4) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[5,7) rw- ac pgoff=2 anon=AV1 chain=[AV1]"],
    )
    assert ptes_line(k.mms[0]) == "0:page1->AV1@0(w) 6:page2->AV1@3(w)"


@pytest.mark.parametrize(
    ("kernel", "t"),
    [
        ("3.19", ("mremap", 0, 0, 2, 4, 2, DONTUNMAP)),
        ("6.18.8", ("mremap", 0, 0, 2, 4, 3, DONTUNMAP)),
        ("6.18.8", ("mremap", 0, 0, 2, 0, 2, ("dontunmap",))),
    ],
)
def test_dontunmap_einval(kernel: str, t: StepTuple) -> None:
    """Before 5.7 the flag is unknown; since then it needs MAYMOVE and old_len == new_len."""
    v = run(kernel, ("mmap", 0, 0, 2, "rw"), ("write", 0, 0), t)
    assert v.results == ["ok", "ok", "EINVAL"] and v.violation is None
    assert shape(v.final) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])


# ---- madvise and mprotect details ----


@pytest.mark.parametrize(
    ("kernel", "ptes"), [("3.19", "0:<swap1>"), ("6.0", "0:page1->AV1@0(ro)"), ("6.15", "0:page1->AV1@0(ro)")]
)
def test_pageout_skips_shared_pages(kernel: str, ptes: str) -> None:
    """P0 faults page 0 and forks; MADV_PAGEOUT in P0: 5.4+ skips the page mapped twice."""
    ts = (("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fork", 0), ("madvise", 0, 0, 1, "pageout"))
    k, results, bad = checked(kernel, *ts)
    assert bad is None and results == ["ok"] * 4
    assert ptes_line(k.mms[0]) == ptes_line(k.mms[1]) == ptes


@pytest.mark.parametrize(("kernel", "merged"), [("6.0", False), ("6.15", True), ("6.18.8", True)])
def test_unfaulted_mprotect_drops_vm_account(kernel: str, merged: bool) -> None:
    """Measured case c4 (docs/live-oracle.md#scenario-corpus):

    AAAA....   rw (ac), unfaulted;  mprotect r: 6.7+ drops VM_ACCOUNT (no anon_vma)
    AAAAAAAA   mmap [4,8) r (no ac) merges; 6.0 keeps ac and the two stay apart
    """
    ts = (("mmap", 0, 0, 4, "rw"), ("mprotect", 0, 0, 4, "r"), ("mmap", 0, 4, 4, "r"))
    k, results, bad = checked(kernel, *ts)
    assert bad is None and results == ["ok"] * 3
    if merged:
        assert shape(k) == ("AAAAAAAA", ["[0,8) r-- pgoff=0 anon=- chain=[]"])
    else:
        assert shape(k)[1] == ["[0,4) r-- ac pgoff=0 anon=- chain=[]", "[4,8) r-- pgoff=4 anon=- chain=[]"]


@pytest.mark.parametrize(("kernel", "mode"), [("6.0", "ro"), ("6.15", "w"), ("6.18.8", "w")])
def test_mprotect_makes_exclusive_ptes_writable(kernel: str, mode: str) -> None:
    """A written page, mprotect r then rw: 6.0+ makes the exclusive page's pte writable at once."""
    ts = (("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("mprotect", 0, 0, 1, "r"), ("mprotect", 0, 0, 1, "rw"))
    k, results, bad = checked(kernel, *ts)
    assert bad is None and results == ["ok"] * 4
    assert ptes_line(k.mms[0]) == f"0:page1->AV1@0({mode})"


def test_mprotect_leaves_shared_ptes_write_protected() -> None:
    """After a fork the page is not exclusive: mprotect rw keeps both ptes read-only (COW)."""
    ts = (
        ("mmap", 0, 0, 1, "rw"),
        ("write", 0, 0),
        ("fork", 0),
        ("mprotect", 0, 0, 1, "r"),
        ("mprotect", 0, 0, 1, "rw"),
    )
    k, results, bad = checked("6.18.8", *ts)
    assert bad is None and results == ["ok"] * 5
    assert ptes_line(k.mms[0]) == ptes_line(k.mms[1]) == "0:page1->AV1@0(ro)"


# ---- the 6.17 mremap rework in 6.18.8 (each case was a live-oracle divergence) ----

MOVE_FIXED = ("maymove", "fixed")


@pytest.mark.parametrize(
    ("name", "ts", "results", "diagram"),
    [
        (
            "a failing move leaves its target alone",  # ......AA, move from the hole [4,6)
            (("mmap", 0, 6, 2, "r"), ("mremap", 0, 4, 2, 7, 1, MOVE_FIXED)),
            ["ok", "EFAULT"],
            "......AA",
        ),
        ("in-place on a hole is EFAULT", (("mremap", 0, 3, 5, 3, 2, ()),), ["EFAULT"], "........"),
        (
            "in-place, same size, past the VMA's end is a no-op",
            (("mmap", 0, 0, 1, "rw"), ("mremap", 0, 0, 3, 0, 3, ())),
            ["ok", "ok"],
            "A.......",
        ),
        (
            "a shrinking move unmaps the tail first",  # ..A....., move [2,8) -> [1,2)
            (("mmap", 0, 2, 1, "rw"), ("mmap", 0, 0, 1, "rw"), ("mremap", 0, 2, 6, 1, 1, MOVE_FIXED)),
            ["ok", "ok", "ok"],
            "AA......",
        ),
        (
            "a same-size move that starts in a gap is EFAULT",  # .AA..B.., move [4,6) -> [1,3)
            (("mmap", 0, 1, 2, "rw"), ("mmap", 0, 5, 1, "rwx"), ("mremap", 0, 4, 2, 1, 2, MOVE_FIXED)),
            ["ok", "ok", "EFAULT"],
            ".AA..B..",
        ),
        (
            "a same-size move spans VMAs",  # .AAAAAAB: [6,7) rwx and [7,8) rw move to [0,1) and [1,2)
            (("mmap", 0, 1, 7, "rwx"), ("mmap", 0, 7, 1, "rw"), ("mremap", 0, 6, 2, 0, 2, MOVE_FIXED)),
            ["ok", "ok", "ok"],
            "ABCCCC..",
        ),
    ],
)
def test_6_17_mremap_rework(name: str, ts: tuple[StepTuple, ...], results: list[str], diagram: str) -> None:
    k, got, found = checked("6.18.8", *ts)
    assert got == results and found is None
    assert shape(k)[0] == diagram


@pytest.mark.parametrize("kernel", ["6.0", "6.16", "6.18.8"])
def test_mremap_of_zero_old_length_is_einval_since_4_14(kernel: str) -> None:
    """dba58d3b8c50: duplicating a private mapping with old_len 0 fails (3.19 still allows it)."""
    steps = [
        {"op": "mmap", "pid": 0, "start": 0, "pages": 2, "prot": "rw"},
        {
            "op": "mremap",
            "pid": 0,
            "start": 0,
            "pages": 0,
            "new_start": 4,
            "new_pages": 2,
            "flags": ["maymove", "fixed"],
        },
    ]
    assert replay(steps, kernel, 8).results == ["ok", "EINVAL"]
    assert replay(steps, "3.19", 8).results == ["ok", "ok"]


@pytest.mark.parametrize(("kernel", "diagram"), [("6.0", "A......."), ("6.18.8", "AA......")])
def test_mremap_of_zero_old_length_unmaps_the_target_before_6_17(kernel: str, diagram: str) -> None:
    """
    AA......   mremap([0,0) -> [1,5), maymove|fixed): EINVAL either way, but 6.0's mremap_to()
               unmaps the target [1,5) before vma_to_resize() refuses (A.......); 6.17's
               check_prep_vma() refuses first and the target stays (AA......).  Found by the live
               oracle once the mremap strategy drew an old length of 0.
    """
    v = run(kernel, ("mmap", 0, 0, 2, "rw"), ("mremap", 0, 0, 0, 1, 4, ("maymove", "fixed")))
    assert v.results == ["ok", "EINVAL"] and v.violation is None
    assert shape(v.final)[0] == diagram
