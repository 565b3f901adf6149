"""The April 2010 bugs (docs/model.md#bug-a, docs/model.md#bug-b) on each kernel generation.

Steps are 0-based, as :class:`rmapfuzz.invariants.Violation` counts them.
"""

from __future__ import annotations

import pytest

from rmapfuzz import invariants as inv
from rmapfuzz.layout import ptes_line
from tests.helpers import FINAL, HANNES, RC3, StepTuple, hits, run, shape

# Bug A (docs/model.md#bug-a), case 7:
#   ABC     mmap [0,3) rw; mprotect [1,2) r  ->  A rw | B r | C rw, all unfaulted
#     *     write 2: C gets AV1
#    BB     mprotect [2,3) r: case 7, B absorbs C; rc3 clones B's own (empty) chain
BUG_A_CASE7: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 3, "rw"),
    ("mprotect", 0, 1, 1, "r"),
    ("write", 0, 2),
    ("mprotect", 0, 2, 1, "r"),
)
# case 6: A rw | B rwx (faulted AV1) | C rw; mprotect B rw: A absorbs B and C
BUG_A_CASE6: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 3, "rw"),
    ("mprotect", 0, 1, 1, "rwx"),
    ("write", 0, 1),
    ("mprotect", 0, 1, 1, "rw"),
)
# case 5: A rwx | BB rw (faulted AV1); mprotect [1,2) rwx: A takes over the head of B
BUG_A_CASE5: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 3, "rw"),
    ("mprotect", 0, 0, 1, "rwx"),
    ("write", 0, 1),
    ("mprotect", 0, 1, 1, "rwx"),
)

# (scenario, kernel, expected invariant or None, message fragments, final P0 layout)
BUG_A_TABLE = [
    ("case7", BUG_A_CASE7, RC3, "merge-superset", ["P0:[1,3) took over P0:[2,3)", "lacks AV1"]),
    ("case7", BUG_A_CASE7, HANNES, "merge-superset", ["P0:[1,3) took over P0:[2,3)", "lacks AV1"]),
    ("case7", BUG_A_CASE7, FINAL, None, []),
    ("case6", BUG_A_CASE6, RC3, "merge-superset", ["P0:[0,3) took over P0:[1,2)", "lacks AV1"]),
    ("case6", BUG_A_CASE6, HANNES, "merge-superset", ["P0:[0,3) took over P0:[1,2)", "lacks AV1"]),
    ("case6", BUG_A_CASE6, FINAL, None, []),
    ("case5", BUG_A_CASE5, RC3, "merge-superset", ["P0:[0,2) took over P0:[1,3)", "lacks AV1"]),
    ("case5", BUG_A_CASE5, HANNES, "merge-superset", ["P0:[0,2) took over P0:[1,3)", "lacks AV1"]),
    ("case5", BUG_A_CASE5, FINAL, None, []),
]


@pytest.mark.parametrize(
    ("scenario", "ts", "kernel", "expected", "fragments"),
    BUG_A_TABLE,
    ids=[f"{row[0]}-{row[2]}" for row in BUG_A_TABLE],
)
def test_bug_a(
    scenario: str, ts: tuple[StepTuple, ...], kernel: str, expected: str | None, fragments: list[str]
) -> None:
    v = run(kernel, *ts)
    assert v.results == ["ok"] * 4
    if expected is None:
        assert v.clean, str(v.violation)
        return
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == (expected, 3)
    for fragment in fragments:
        assert fragment in v.violation.message
    taker = fragments[0].split(" took over ")[0]
    assert v.violation.objects[0] == taker
    assert v.violation.objects[1].startswith("AV1")


def test_bug_a_case7_state_on_rc3() -> None:
    """
    ABB.....   B = [1,3) r, anon_vma AV1 (freed!) with an empty chain; page 2 points at freed AV1
    """
    v = run(RC3, *BUG_A_CASE7)
    assert shape(v.final) == (
        "ABB.....",
        ["[0,1) rw- ac pgoff=0 anon=- chain=[]", "[1,3) r-- ac pgoff=1 anon=AV1(freed) chain=[]"],
    )
    assert ptes_line(v.final.mms[0]) == "2:page1->AV1(freed)@2(ro)"
    names = {x.invariant for x in v.violations}
    assert {"merge-superset", "primary-linked", "unfaulted-empty", "no-dangling"} <= names


def test_bug_a_case7_state_on_2634() -> None:
    """
    ABB.....   B = [1,3) r imported C's chain: anon=AV1 chain=[AV1]
    """
    v = run(FINAL, *BUG_A_CASE7)
    assert shape(v.final) == (
        "ABB.....",
        ["[0,1) rw- ac pgoff=0 anon=- chain=[]", "[1,3) r-- ac pgoff=1 anon=AV1 chain=[AV1]"],
    )


def test_bug_a_case5_later_unmap_frees_av1_on_rc3() -> None:
    """
    case 5 on rc3 with only no-dangling checked: I2 breaks at step 3 silently; munmap of the rest
    of B ([2,3)) drops AV1's only link, and P0's page 1 is left on a freed anon_vma.
    """
    v = run(RC3, *BUG_A_CASE5, ("munmap", 0, 2, 1), invariants=["no-dangling"])
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == ("no-dangling", 4)
    assert "AV1(freed)" in v.violation.message


# Bug B (docs/model.md#bug-b; f0 = rw, f1 = rwx):
#   P0: ABB    mmap [0,3) rw; mprotect [0,1) rwx
#        *     write 1: B gets AV1
#   fork       P1: A'B'  B' = AV2 [AV2, AV1]
#   P1 write 0 rc3: A' borrows AV2 with chain [AV2] only (I3 broken)
#   P1 mprotect [0,1) rw: case 8, A' grows over B' and drops B''s chain: page 1 unreachable
#   P0 exit    AV1 freed under P1's page 1
BUG_B: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 3, "rw"),
    ("mprotect", 0, 0, 1, "rwx"),
    ("write", 0, 1),
    ("fork", 0),
    ("write", 1, 0),
    ("mprotect", 1, 0, 1, "rw"),
    ("exit", 0),
)
LATE = ["merge-superset", "no-dangling", "rmap-complete"]

# (kernel, invariants, expected invariant, step, message fragments)
BUG_B_TABLE = [
    (RC3, None, "same-chain", 4, ["P1:[0,1) and P1:[1,3) share anon_vma AV2", "[AV2] vs [AV2, AV1]"]),
    (RC3, LATE, "merge-superset", 5, ["P1:[0,3) took over P1:[1,3)", "lacks AV1"]),
    (RC3, ["no-dangling"], "no-dangling", 6, ["P1 page 1 maps page1", "anon_vma AV1(freed) is freed"]),
    (HANNES, None, None, None, []),
    (HANNES, LATE, None, None, []),
    (FINAL, None, None, None, []),
    (FINAL, LATE, None, None, []),
]


@pytest.mark.parametrize(
    ("kernel", "invariants", "expected", "at", "fragments"),
    BUG_B_TABLE,
    ids=[f"{row[0]}-{'all' if row[1] is None else '+'.join(row[1])}" for row in BUG_B_TABLE],
)
def test_bug_b(
    kernel: str, invariants: list[str] | None, expected: str | None, at: int | None, fragments: list[str]
) -> None:
    v = run(kernel, *BUG_B, invariants=invariants)
    if expected is None:
        assert v.clean, str(v.violation)
        assert v.results == ["ok"] * len(BUG_B)
        return
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == (expected, at)
    for fragment in fragments:
        assert fragment in v.violation.message, v.violation.message


def test_bug_b_rc3_dangling_page_after_exit() -> None:
    """
    With only no-dangling and rmap-complete, rc3 first reports the lost link (step 5); replaying
    on, P0's exit (step 6) frees AV1 and P1's page 1 is left dangling.

    P1: AAA  [0,3) anon=AV2 chain=[AV2], page 1 -> AV1(freed)
    """
    v = run(RC3, *BUG_B, invariants=["no-dangling", "rmap-complete"], stop_at_violation=False)
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == ("rmap-complete", 5)
    assert "P1:[0,3) chain [AV2] does not link AV1" in v.violation.message
    k = v.final
    assert v.results == ["ok"] * 7
    assert shape(k, 1) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV2 chain=[AV2]"])
    assert "1:page1->AV1(freed)@1(ro)" in ptes_line(k.mms[1])
    dangling = inv.check(k, inv.select(["no-dangling"]))
    assert [d.message for d in dangling] == [
        "P1 page 1 maps page1 (index 1) whose anon_vma AV1(freed) is freed",
    ]
    assert dangling[0].objects == ("page1", "AV1(freed)")


def test_bug_b_hannes_links_the_whole_chain() -> None:
    """hannes-v2: A' borrows AV2 and links AV1 too, so the case-8 merge keeps page 1 reachable."""
    v = run(HANNES, *BUG_B)
    assert shape(v.final, 1) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV2 chain=[AV1, AV2]"])
    assert hits(v.final)["anon_vma_prepare: borrow a neighbour's anon_vma and its whole chain"] == 1


def test_bug_b_2634_refuses_to_borrow() -> None:
    """2.6.34: B' has a two-entry chain, so A' gets its own AV3 and the merge is refused."""
    v = run(FINAL, *BUG_B)
    assert shape(v.final, 1) == (
        "ABB.....",
        ["[0,1) rw- ac pgoff=0 anon=AV3 chain=[AV3]", "[1,3) rw- ac pgoff=1 anon=AV2 chain=[AV2, AV1]"],
    )
    assert not hits(v.final)["anon_vma_prepare: reuse a neighbour's anon_vma"]
    assert hits(v.final)["reusable_anon_vma: a compatible neighbour with a longer chain is refused"] == 1
