"""The later generations (docs/model.md#generations): 2.6.35/36 root and refcount, 3.0's
singular-chain merge rule, 3.7's interval tree, 3.19's degree reuse and 6.0's counters.

Steps are 0-based, as :class:`rmapfuzz.invariants.Violation` counts them.
"""

from __future__ import annotations

from collections import Counter

import pytest

from rmapfuzz import invariants as inv
from rmapfuzz.classify import classify
from rmapfuzz.kernels import BUGS, FIXES, KERNELS, boot, fix_tag, resolve, with_fix
from rmapfuzz.layout import ptes_line
from rmapfuzz.model.core import FeatureChanges
from rmapfuzz.model.syscalls import SyscallMixin
from rmapfuzz.probe import Probe
from rmapfuzz.replay import Runner
from tests.helpers import StepTuple, hits, page_at, run, shape, step, steps, vma_at, walk
from tests.test_bugs_2010 import BUG_A_CASE5, BUG_A_CASE6, BUG_A_CASE7, BUG_B
from tests.test_mremap import BUG_M

LATER = ("2.6.35", "2.6.36", "3.0", "3.7", "3.19-rc4", "3.19", "3.19+2555283e", "6.0")
ALL = inv.CATALOGUE + inv.LATER_GENERATIONS
REUSED = "anon_vma_clone: fork reuses an ancestor's anon_vma"


def checked(kernel: str, *ts: StepTuple) -> tuple[SyscallMixin, list[str], tuple[int, inv.Violation] | None]:
    """Replay on ``kernel`` checking the catalogue and the later-generation invariants after every
    step; stops at the first violation: (kernel, results, (step, violation) or None)."""
    runner = Runner(kernel, coverage=Counter())
    results = []
    for i, t in enumerate(ts):
        result, found = runner.step(step(t))
        results.append(result)
        if found:
            return runner.kernel, results, (i, found[0])
    return runner.kernel, results, None


def counters(k: SyscallMixin) -> dict[str, tuple[int, ...]]:
    """Live anon_vmas -> (refcount, degree) on 3.19, (refcount, num_children, num_active_vmas) on 6.0."""
    out: dict[str, tuple[int, ...]] = {}
    for av in k.anon_vmas:
        if av.freed:
            continue
        if k.features.fork_counters:
            out[av.name] = (av.refcount, av.num_children, av.num_active_vmas)
        else:
            out[av.name] = (av.refcount, av.degree)
    return out


# ---- the registry ----


def test_registry_names_the_new_generations() -> None:
    for name in LATER:
        cls = KERNELS[name]
        assert cls.name == name and cls.base in KERNELS and cls.commits and cls.summary
        assert set(cls.bugs) <= set(BUGS)


def test_every_fix_composes_onto_every_kernel_that_carries_its_bug() -> None:
    """A fix overlay's base is the oldest carrier of its bug: composed onto any carrier it adds that
    one fix (its commits) and closes that one bug."""
    for name, cls in KERNELS.items():
        for bug in cls.bugs:
            fixed = with_fix(cls, bug)
            assert fixed.name in (f"{name}+{fix_tag(FIXES[bug])}", FIXES[bug].name)
            assert fixed.bugs == tuple(b for b in cls.bugs if b != bug)
            assert resolve(fixed.name) is fixed
            assert fixed.commits == FIXES[bug].commits


def test_the_old_names_of_compositions_resolve() -> None:
    assert resolve("2.6.34+965f55de") is with_fix(KERNELS["2.6.34"], "M")
    assert resolve("3.19+2555283e") is with_fix(KERNELS["3.19"], "G")
    assert resolve("3.19+degree-underflow-fix") is with_fix(KERNELS["3.19"], "E")
    assert resolve("3.7+e86f15ee") is with_fix(KERNELS["3.7"], "L")
    assert resolve("3.19-rc4+b800c91a") is KERNELS["3.19"]


# ---- the April 2010 scenarios stay clean on every later generation ----


@pytest.mark.parametrize("kernel", LATER)
@pytest.mark.parametrize(
    ("scenario", "ts"),
    [("A-case7", BUG_A_CASE7), ("A-case6", BUG_A_CASE6), ("A-case5", BUG_A_CASE5), ("B", BUG_B)],
)
def test_bugs_a_and_b_stay_fixed(scenario: str, ts: tuple[StepTuple, ...], kernel: str) -> None:
    _k, results, bad = checked(kernel, *ts)
    assert bad is None, f"{scenario}: {bad}"
    assert results == ["ok"] * len(ts)


@pytest.mark.parametrize("kernel", ["2.6.35", "2.6.36"])
def test_bug_m_still_there_before_3_0(kernel: str) -> None:
    v = run(kernel, *BUG_M)
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == ("merge-superset", 4)


@pytest.mark.parametrize("kernel", ["2.6.34+965f55de", "3.0", "3.7", "3.19", "6.0"])
def test_bug_m_clean_with_shaohuas_rule(kernel: str) -> None:
    """
    ..A.....   [2,3) faulted: AV1, page index 2
    .....A..   moved to [5,6): pgoff stays 2
    .B...A..   mmap [1,2): pgoff 1, unfaulted
    .AB.....   move back to [2,3): A's chain is empty, not singular, so the faulted range may not
               merge into it; copy_vma makes a new VMA B with a clone of the chain
    """
    k, results, bad = checked(kernel, *BUG_M)
    assert bad is None and results == ["ok"] * 5
    assert shape(k) == (
        ".AB.....",
        ["[1,2) rw- ac pgoff=1 anon=- chain=[]", "[2,3) rw- ac pgoff=2 anon=AV1 chain=[AV1]"],
    )
    assert ptes_line(k.mms[0]) == "2:page1->AV1@2(w)"
    assert walk(k, page_at(k, 0, 2)) == [("P0:[2,3)", 2)]


def test_bug_m_classified() -> None:
    assert classify("2.6.34", steps(*BUG_M)) == ["M"]


def test_a_sequence_with_two_bugs_is_classified_by_the_one_that_fails() -> None:
    """
    .AAAAABC   A [1,6) r, B [6,7) r (VM_ACCOUNT: it was rw), C [7,8) rw faulted (AV1)
       ^^      fail_alloc 1, then mprotect [5,7) rw: the split [5,6) and B merge with C,
               case 6 on 3.19; B is freed, the import from C on the second pass fails (bug L,
               the caller goes on with the freed B) in an anon_vma_clone() that unlinks with
               dst->anon_vma set (bug E's path).  L's fix alone turns the failure into E's
               degree miscount; E's fix alone leaves L's use-after-free: the sequence shows L.
    """
    seq = steps(
        ("mmap", 0, 6, 2, "rw"),
        ("mmap", 0, 1, 5, "r"),
        ("mprotect", 0, 2, 5, "r"),
        ("write", 0, 7),
        ("fail_alloc", 1),
        ("mprotect", 0, 5, 2, "rw"),
    )
    verdict = run("3.19", *seq)
    assert verdict.violation is not None and verdict.violation.invariant == "no-dangling"
    assert classify("3.19", seq) == ["L"]
    assert classify("3.19+3fe89b3e", seq) == ["L"]


# ---- 2.6.35: root and refcount ----


def test_2635_fork_pins_the_root() -> None:
    """
    P0: A.......   anon=AV1 chain=[AV1]           AV1: root, refcount 1 (list) + 1 (AV2 pins it)
    P1: A.......   anon=AV2 chain=[AV2, AV1]      AV2: root AV1, refcount 1
    """
    _k, results, bad = checked("2.6.35", ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fork", 0))
    k = _k
    assert bad is None and results == ["ok"] * 3
    assert shape(k, 1) == ("A.......", ["[0,1) rw- ac pgoff=0 anon=AV2 chain=[AV2, AV1]"])
    av1, av2 = k.anon_vmas
    assert av2.root is av1 and av1.root is av1
    assert (av1.refcount, av2.refcount) == (2, 1)
    # P0 exits: AV1 is still linked by P1; P1 exits: AV2 is freed first and drops its pin
    assert k.apply(step(("exit", 0))) == "ok"
    assert (av1.refcount, av1.freed, av2.refcount) == (2, False, 1)
    assert k.apply(step(("exit", 1))) == "ok"
    assert av1.freed and av2.freed and (av1.refcount, av2.refcount) == (0, 0)


def test_2635_root_outlives_its_list_while_pinned() -> None:
    """
    P0: A.......   anon=AV1, page 0;  a pin on AV1 (as KSM or migration take one)
    P0 munmap:     AV1's list is empty, but the pin keeps it: refcount 1, not freed;
                   put_anon_vma() then frees it.  2.6.34 frees it as soon as the list empties.
    """
    k = boot("2.6.35")
    for t in (("mmap", 0, 0, 1, "rw"), ("write", 0, 0)):
        assert k.apply(step(t)) == "ok"
    av1 = k.anon_vmas[0]
    k.pin_anon_vma(av1)  # type: ignore[attr-defined]
    assert k.apply(step(("munmap", 0, 0, 1))) == "ok"
    assert (av1.head, av1.refcount, av1.freed) == ([], 1, False)
    assert inv.check(k, inv.CATALOGUE) == []
    k.unpin_anon_vma(av1)  # type: ignore[attr-defined]
    assert av1.freed and av1.refcount == 0


def test_2635_fork_error_path_unlinks() -> None:
    """Bug C is gone: the new anon_vma's allocation fails after the clone; the clone is undone."""
    k, results, bad = checked(
        "2.6.35", ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fail_alloc", 2), ("fork", 0), ("fork", 0)
    )
    assert results == ["ok", "ok", "ok", "ENOMEM", "ok"] and bad is None
    assert shape(k, 1) == ("A.......", ["[0,1) rw- ac pgoff=0 anon=AV2 chain=[AV2, AV1]"])
    v = run("2.6.34", ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fail_alloc", 2), ("fork", 0))
    assert v.violation is not None and v.violation.invariant == "chain-consistency"


# ---- 2.6.36: root for shared pages, own anon_vma for an exclusive swap-in ----

SWAP_IN_WRITE: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 1, "rw"),
    ("write", 0, 0),
    ("fork", 0),
    ("write", 1, 0),
    ("madvise", 1, 0, 1, "pageout"),
    ("write", 1, 0),
)


@pytest.mark.parametrize(("kernel", "mapping"), [("2.6.35", "AV1"), ("2.6.36", "AV2"), ("6.0", "AV2")])
def test_exclusive_swap_in_goes_to_own_anon_vma(kernel: str, mapping: str) -> None:
    """
    P0: A  page1 -> AV1          P1: A  anon=AV2 chain=[AV2, AV1]
    P1 writes 0: COW, page2 -> AV2; pageout swaps it; P1 writes 0 again: the sole user.
    2.6.35 passes no exclusive flag (the oldest anon_vma, AV1); 2.6.36 maps it to AV2.
    """
    k, results, bad = checked(kernel, *SWAP_IN_WRITE)
    assert bad is None and results == ["ok"] * len(SWAP_IN_WRITE)
    assert shape(k, 1) == ("A.......", ["[0,1) rw- ac pgoff=0 anon=AV2 chain=[AV2, AV1]"])
    assert ptes_line(k.mms[1]) == f"0:page3->{mapping}@0(w)"


@pytest.mark.parametrize("kernel", ["2.6.35", "2.6.36"])
def test_shared_swap_in_goes_to_the_root(kernel: str) -> None:
    """
    P0: A  page1 -> AV1;  P1 forked (AV2, chain [AV2, AV1]);  page1 swapped out of both;
    P1 reads it back: not exclusive -> the oldest/root anon_vma AV1, found from P0 and P1.
    """
    k, results, bad = checked(
        kernel,
        ("mmap", 0, 0, 1, "rw"),
        ("write", 0, 0),
        ("fork", 0),
        ("madvise", 0, 0, 1, "pageout"),
        ("read", 1, 0),
        ("read", 0, 0),
    )
    assert bad is None and results == ["ok"] * 6
    page = page_at(k, 1, 0)
    assert page.mapping is k.anon_vmas[0].root is k.anon_vmas[0]
    assert sorted(walk(k, page)) == [("P0:[0,1)", 0), ("P1:[0,1)", 0)]


# ---- 3.0: Shaohua Li's rule ----

FAULTED_INTO_UNFAULTED: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 2, "rw"),
    ("mprotect", 0, 1, 1, "rwx"),
    ("write", 0, 1),
    ("mprotect", 0, 1, 1, "rw"),
)


def test_faulted_range_merges_into_unfaulted_prev_on_2634() -> None:
    """
    AB......   A [0,1) rw unfaulted, B [1,2) rwx faulted (AV1)
    AA......   mprotect B rw: case 7, A imports AV1 and absorbs B
    """
    _k, _r, bad = checked("2.6.34", *FAULTED_INTO_UNFAULTED)
    assert bad is None
    assert shape(_k) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])


@pytest.mark.parametrize("kernel", ["3.0", "3.19", "6.0"])
def test_faulted_range_refused_next_to_unfaulted_prev(kernel: str) -> None:
    """
    AB......   A [0,1) rw unfaulted (empty chain), B [1,2) rwx faulted (AV1)
    AB......   mprotect B rw: A's chain is not singular, so no merge: B just changes flags
    """
    k, results, bad = checked(kernel, *FAULTED_INTO_UNFAULTED)
    assert bad is None and results == ["ok"] * 4
    assert shape(k) == (
        "AB......",
        ["[0,1) rw- ac pgoff=0 anon=- chain=[]", "[1,2) rw- ac pgoff=1 anon=AV1 chain=[AV1]"],
    )


@pytest.mark.parametrize(("kernel", "merged"), [("2.6.36", True), ("3.0", False)])
def test_unfaulted_range_and_forked_neighbour(kernel: str, merged: bool) -> None:
    """
    P0: AA......   faulted at 1 (AV1)
    P1: AA......   forked: [0,2) anon=AV2 chain=[AV2, AV1]
    P1 mmap [2,3) rw, an unfaulted range next to the forked VMA:
        AAA.....   2.6.36: case 2, the forked VMA grows over it
        AAB.....   3.0: refused, the neighbour's chain is not singular
    """
    k, results, bad = checked(kernel, ("mmap", 0, 0, 2, "rw"), ("write", 0, 1), ("fork", 0), ("mmap", 1, 2, 1, "rw"))
    assert bad is None and results == ["ok"] * 4
    if merged:
        assert shape(k, 1) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV2 chain=[AV2, AV1]"])
    else:
        assert shape(k, 1) == (
            "AAB.....",
            ["[0,2) rw- ac pgoff=0 anon=AV2 chain=[AV2, AV1]", "[2,3) rw- ac pgoff=2 anon=- chain=[]"],
        )


# ---- 3.7: the interval tree ----


@pytest.mark.parametrize(("kernel", "visited"), [("3.0", ["P0:[0,1)", "P0:[3,4)"]), ("3.7", ["P0:[0,1)"])])
def test_interval_tree_skips_vmas_whose_pgoff_range_misses(kernel: str, visited: list[str]) -> None:
    """
    AAAA....   faulted at 0 and 3 (AV1)
    A..B....   munmap [1,3): A [0,1) pgoff 0 and B [3,4) pgoff 3, both linked to AV1
    A walk of page 0 (index 0): the 3.0 list visits both (vma_address() rejects B); the 3.7
    interval tree query [0,0] only returns A.  Both find the same pte.
    """
    k, results, bad = checked(kernel, ("mmap", 0, 0, 4, "rw"), ("write", 0, 0), ("write", 0, 3), ("munmap", 0, 1, 2))
    assert bad is None and results == ["ok"] * 4
    assert shape(k) == (
        "A..B....",
        ["[0,1) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[3,4) rw- ac pgoff=3 anon=AV1 chain=[AV1]"],
    )
    page = page_at(k, 0, 0)
    assert [avc.vma.name for avc in k.anon_vma_interval_tree(k.anon_vmas[0], page)] == visited
    assert walk(k, page) == [("P0:[0,1)", 0)]
    assert walk(k, page_at(k, 0, 3)) == [("P0:[3,4)", 3)]


# ---- 3.19 / 6.0: fork-time reuse and its counters ----

# P0 faults; P1 forked; P2 forked from P1; P1 exits; P2 forks P3
REUSE: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 1, "rw"),
    ("write", 0, 0),
    ("fork", 0),
    ("fork", 1),
    ("exit", 1),
    ("fork", 2),
)


@pytest.mark.parametrize("kernel", ["3.7", "3.19", "6.0"])
def test_fork_reuses_the_abandoned_interior_anon_vma(kernel: str) -> None:
    """
    P0: A  anon=AV1 [AV1]            P1 (exited): A anon=AV2 [AV2, AV1]
    P2: A  anon=AV3 [AV3, AV2, AV1]  AV2 now has no VMA and one child (AV3)
    P3: A  3.19/6.0 reuse AV2 (no AV4): anon=AV2 [AV3, AV2, AV1]; 3.7 allocates AV4
    """
    k, results, bad = checked(kernel, *REUSE)
    assert bad is None and results == ["ok"] * len(REUSE)
    if kernel == "3.7":
        assert shape(k, 3) == ("A.......", ["[0,1) rw- ac pgoff=0 anon=AV4 chain=[AV4, AV3, AV2, AV1]"])
        assert not hits(k)[REUSED]
        return
    assert shape(k, 3) == ("A.......", ["[0,1) rw- ac pgoff=0 anon=AV2 chain=[AV3, AV2, AV1]"])
    assert hits(k)[REUSED] == 1 and len(k.anon_vmas) == 3
    if kernel == "3.19":
        # (refcount, degree): AV1 = list + 2 pins, self + P0 + child AV2; AV2 = P3 + child AV3
        assert counters(k) == {"AV1": (3, 3), "AV2": (1, 2), "AV3": (1, 1)}
    else:
        # (refcount, num_children, num_active_vmas)
        assert counters(k) == {"AV1": (3, 2, 1), "AV2": (1, 1, 1), "AV3": (1, 0, 1)}


def test_6_0_counters_after_fork_and_exit() -> None:
    """
    P0: AA  faulted (AV1);  fork P1 (AV2), fork P2 (AV3): AV1 has 3 children (self, AV2, AV3)
    P1 exits: AV2's tree empties and it is freed: AV1 num_children 2, refcount 2
    P0 munmaps: AV1 has no active VMA, but P2 still links it
    """
    k, results, bad = checked("6.0", ("mmap", 0, 0, 2, "rw"), ("write", 0, 0), ("fork", 0), ("fork", 0))
    assert bad is None and results == ["ok"] * 4
    assert counters(k) == {"AV1": (3, 3, 1), "AV2": (1, 0, 1), "AV3": (1, 0, 1)}
    assert k.apply(step(("exit", 1))) == "ok"
    assert counters(k) == {"AV1": (2, 2, 1), "AV3": (1, 0, 1)}
    assert k.apply(step(("munmap", 0, 0, 2))) == "ok"
    assert counters(k) == {"AV1": (2, 2, 0), "AV3": (1, 0, 1)}
    assert shape(k, 2) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=AV3 chain=[AV3, AV1]"])
    assert inv.check(k, ALL) == []


def test_6_0_unlink_clears_anon_vma_on_failed_split() -> None:
    """6.0 clears dst->anon_vma before unlinking on ENOMEM (Leon Yu): the split fails cleanly."""
    ts: tuple[StepTuple, ...] = (
        ("mmap", 0, 0, 3, "rw"),
        ("write", 0, 0),
        ("fail_alloc", 1),
        ("mprotect", 0, 0, 1, "r"),
    )
    k, results, bad = checked("6.0", *ts)
    assert bad is None and results == ["ok", "ok", "ok", "ENOMEM"]
    assert shape(k) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])


@pytest.mark.parametrize(
    ("kernel", "message"),
    [
        ("3.19", "AV1.degree is 1 but the structure says 2"),
        ("3.19+2555283e", "AV1.num_active_vmas is 0 but the structure says 1"),
    ],
)
def test_bug_e_clone_enomem_underflow(kernel: str, message: str) -> None:
    """
    AAA.....   faulted (AV1); the split's clone fails: unlink_anon_vmas(new) runs with
               new->anon_vma = AV1 (the struct copy's), so AV1 loses a count it never got.
    """
    ts: tuple[StepTuple, ...] = (
        ("mmap", 0, 0, 3, "rw"),
        ("write", 0, 0),
        ("fail_alloc", 1),
        ("mprotect", 0, 0, 1, "r"),
    )
    k, results, bad = checked(kernel, *ts)
    assert results == ["ok", "ok", "ok", "ENOMEM"]
    assert bad is not None
    assert (bad[0], bad[1].invariant, bad[1].message) == (3, "counters", message)
    assert shape(k) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])


BUG_D: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 3, "rw"),
    ("mprotect", 0, 1, 1, "rwx"),
    ("write", 0, 2),
    ("mprotect", 0, 1, 1, "rw"),
)


@pytest.mark.parametrize(("kernel", "degree"), [("3.19-rc4", 1), ("3.19", 2)])
def test_bug_d_import_misses_a_degree(kernel: str, degree: int) -> None:
    """
    ABC.....   A rw, B rwx (both unfaulted), C rw faulted (AV1: self + C = degree 2)
    AAA.....   mprotect B rw: case 6, A absorbs B and C and imports AV1 from C.  3.19-rc4 clones
               before setting A's anon_vma, so A is never counted; C's unlink takes its degree off.
    """
    k, results, bad = checked(kernel, *BUG_D)
    assert results == ["ok"] * 4
    assert shape(k) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    assert k.anon_vmas[0].degree == degree
    if kernel == "3.19":
        assert bad is None
    else:
        assert bad is not None and (bad[0], bad[1].invariant) == (3, "counters")


# ---- CVE-2022-42703 (bug G), constructed from docs/model.md#bug-g ----

# X = AV3 is P2's leaf.  P3 reuses AV2 (P1 exited), so AV3 gets no child.  P2 and P3 split their
# VMA while P2 is alive (AV3 degree 2), so P3's fork gives both halves new anon_vmas (AV4, AV5,
# children of AV2, not of AV3).  P2 exits: AV3 is an abandoned leaf with degree 0, linked by
# P3's and P4's halves.  P4 faults page 2 (-> AV5) and forks: on 3.19 both halves of P5 reuse
# AV3 although their chains differ; the mprotect merge then drops [AV5, ...] from page 2's VMA.
CVE_2022_42703: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 4, "rw"),  # 0
    ("write", 0, 0),  # 1  AV1
    ("fork", 0),  # 2  P1: AV2
    ("fork", 1),  # 3  P2: AV3 (parent AV2)
    ("exit", 1),  # 4  AV2: no VMA, one child
    ("fork", 2),  # 5  P3 reuses AV2
    ("mprotect", 2, 0, 2, "r"),  # 6  P2: two VMAs on AV3
    ("mprotect", 3, 0, 2, "r"),  # 7  P3: two VMAs on AV2
    ("fork", 3),  # 8  P4: AV4, AV5 (parent AV2)
    ("exit", 2),  # 9  AV3 abandoned
    ("write", 4, 2),  # 10 P4 page 2 -> AV5
    ("fork", 4),  # 11 P5: both halves reuse AV3 on 3.19
    ("mprotect", 5, 0, 2, "rw"),  # 12 merge: case 8 drops [AV5, AV3, AV2, AV1]
    ("exit", 4),  # 13 AV5 freed under P5's page 2
)


def test_cve_2022_42703_same_chain_on_3_19() -> None:
    """
    P4: AABB....   A [0,2) r  anon=AV4 chain=[AV4, AV3, AV2, AV1]
                   B [2,4) rw anon=AV5 chain=[AV5, AV3, AV2, AV1], page 2 -> AV5
    P5: AABB....   both anon=AV3: [AV4, AV3, AV2, AV1] vs [AV5, AV3, AV2, AV1]   (I3 broken)
    """
    k, results, bad = checked("3.19", *CVE_2022_42703)
    assert results == ["ok"] * 12
    assert bad is not None
    step_no, v = bad
    assert (step_no, v.invariant) == (11, "same-chain")
    assert v.message == (
        "P5:[0,2) and P5:[2,4) share anon_vma AV3 but their chains differ: [AV4, AV3, AV2, AV1] vs [AV5, AV3, AV2, AV1]"
    )
    assert shape(k, 4) == (
        "AABB....",
        [
            "[0,2) r-- ac pgoff=0 anon=AV4 chain=[AV4, AV3, AV2, AV1]",
            "[2,4) rw- ac pgoff=2 anon=AV5 chain=[AV5, AV3, AV2, AV1]",
        ],
    )
    assert shape(k, 5) == (
        "AABB....",
        [
            "[0,2) r-- ac pgoff=0 anon=AV3 chain=[AV4, AV3, AV2, AV1]",
            "[2,4) rw- ac pgoff=2 anon=AV3 chain=[AV5, AV3, AV2, AV1]",
        ],
    )
    # the second reuse is what I6 forbids: AV3 already had an active VMA
    assert isinstance(k.trace, Probe)
    unsafe = inv.check(k, inv.LATER_GENERATIONS, k.trace.record)
    assert [x.invariant for x in unsafe] == ["reuse-safe"]
    assert unsafe[0].message == (
        "fork reused AV3 for P5:[2,4) while VMAs using it were [P5:[0,2)] and it had 0 children"
    )


def test_cve_2022_42703_merge_then_dangling_on_3_19() -> None:
    """
    P5: AAAA....   mprotect [0,2) rw: case 8, [0,2) grows over [2,4) and keeps [AV4, AV3, AV2, AV1];
                   page 2 (-> AV5) is no longer reachable (step 12); P4 exits: AV5 is freed (step 13).
    """
    v = run("3.19", *CVE_2022_42703, invariants=["merge-superset"])
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == ("merge-superset", 12)
    assert "P5:[0,4) took over P5:[2,4)" in v.violation.message and "lacks AV5" in v.violation.message
    v = run("3.19", *CVE_2022_42703, invariants=["no-dangling"])
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == ("no-dangling", 13)
    assert "P5 page 2 maps page2 (index 2) whose anon_vma AV5(freed) is freed" in v.violation.message
    assert shape(v.final, 5) == ("AAAA....", ["[0,4) rw- ac pgoff=0 anon=AV3 chain=[AV4, AV3, AV2, AV1]"])


@pytest.mark.parametrize("kernel", ["3.19+2555283e", "6.0"])
def test_cve_2022_42703_clean_with_2555283e(kernel: str) -> None:
    """
    P5: AABB....   [0,2) reuses AV3 (no active VMA, no child); [2,4) may not (one active VMA now):
                   it gets AV6 (parent AV5), so the halves differ in anon_vma and never merge.
    """
    k, results, bad = checked(kernel, *CVE_2022_42703)
    assert bad is None and results == ["ok"] * len(CVE_2022_42703)
    assert shape(k, 5) == (
        "AABB....",
        [
            "[0,2) rw- ac pgoff=0 anon=AV3 chain=[AV4, AV3, AV2, AV1]",
            "[2,4) rw- ac pgoff=2 anon=AV6 chain=[AV6, AV5, AV3, AV2, AV1]",
        ],
    )
    assert walk(k, page_at(k, 5, 2)) == [("P5:[2,4)", 2)]


def test_cve_2022_42703_classified_as_g() -> None:
    assert classify("3.19", steps(*CVE_2022_42703)) == ["G"]


# ---- the later-generation invariants ----


def test_later_invariants_are_quiet_on_2634() -> None:
    """2.6.34 has none of the counters; a corrupted refcount or degree is not judged."""
    k = boot("2.6.34")
    for t in (("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fork", 0)):
        assert k.apply(step(t)) == "ok"
    k.anon_vmas[0].refcount = -5
    k.anon_vmas[0].degree = -5
    assert inv.check(k, inv.LATER_GENERATIONS) == []


@pytest.mark.parametrize(
    ("kernel", "field", "value", "message"),
    [
        ("2.6.35", "refcount", 7, "AV1.refcount is 7 but the structure says 2"),
        ("3.19", "degree", -1, "AV1.degree is negative: -1"),
        ("6.0", "num_children", 5, "AV1.num_children is 5 but the structure says 2"),
        ("6.0", "num_active_vmas", 0, "AV1.num_active_vmas is 0 but the structure says 1"),
    ],
)
def test_counters_fires_on_a_corrupted_counter(kernel: str, field: str, value: int, message: str) -> None:
    """
    P0: A  anon=AV1 [AV1];  P1: A  anon=AV2 [AV2, AV1]
    """
    k = boot(kernel)
    for t in (("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fork", 0)):
        assert k.apply(step(t)) == "ok"
    assert inv.check(k, inv.LATER_GENERATIONS) == []
    setattr(k.anon_vmas[0], field, value)
    found = inv.check(k, inv.select([]) + inv.LATER_GENERATIONS[:1])
    assert [(f.invariant, f.message, f.objects) for f in found] == [("counters", message, ("AV1",))]


# P0 faults; then each generation forks a child and exits
FORK_LOOP: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 1, "rw"),
    ("write", 0, 0),
    *(t for pid in range(5) for t in (("fork", pid), ("exit", pid))),
)


@pytest.mark.parametrize(("kernel", "length"), [("2.6.34", 6), ("3.0", 6), ("3.19", 3), ("6.0", 3)])
def test_bounded_chain_fork_loop(kernel: str, length: int) -> None:
    """
    Each process forks and exits (7a3ef208e662's reproducer shape): 2.6.34 and 3.0 chains grow by
    one per generation, which those generations promise nothing about; 3.19 and 6.0 reuse the
    abandoned anon_vma and stay at three, under their bound of 16.
    """
    k = boot(kernel)
    for t in FORK_LOOP:
        assert k.apply(step(t)) == "ok"
    assert len(vma_at(k, 5, 0).anon_vma_chain) == length
    assert k.features.chain_bound == (None if length > 3 else 16)
    assert [f.message for f in inv.check(k, inv.LATER_GENERATIONS) if f.invariant == "bounded-chain"] == []


class BoundedLinux2634(KERNELS["2.6.34"]):  # type: ignore[misc, valid-type]
    """2.6.34 as if it promised a chain of at most four entries."""

    name = "2.6.34+bound-4"
    feature_changes = FeatureChanges(chain_bound=4)


def test_bounded_chain_fires_past_the_generation_bound() -> None:
    k = BoundedLinux2634()
    for t in FORK_LOOP:
        assert k.apply(step(t)) == "ok"
    found = [f.message for f in inv.check(k, inv.LATER_GENERATIONS) if f.invariant == "bounded-chain"]
    assert found == ["P5:[0,1)'s chain has 6 entries, more than 4"]


def test_reuse_events_are_per_step() -> None:
    runner = Runner("3.19")
    for t in REUSE:
        assert runner.step(step(t)) == ("ok", [])
    assert len(runner.probe.record.reuses) == 1
    assert runner.step(step(("read", 0, 0))) == ("ok", [])
    assert runner.probe.record.reuses == []
