"""The kernel's VMA merge selftests (tools/testing/selftests/mm/merge.c), ported to the op language.

merge.c maps over a PROT_NONE carve-out with MAP_FIXED, faults, mprotects, mremaps and forks, then
asks PROCMAP_QUERY which VMA covers an address and checks its bounds.  Each test below replays the
same steps on the model through :func:`tests.helpers.run` and checks the same bounds (the covering
VMA of :func:`tests.helpers.vma_at`), and that every step succeeded, as the selftest asserts.  The
facts are the kernel's, the code is not.

The mapping onto the window (:data:`WINDOW` pages): the fixture's carve-out (30 pages from 6.17;
the first file's 12 pages are the same PROT_NONE backdrop, which never merges with the test's
mappings) is window pages [0,30), so ``carveout[n]`` is page ``n``.  A move "further away" to
``ptr + 1000 * page_size`` lands at :func:`far` (``page + 31``), one to ``ptr + 2000 * page_size``
at :func:`farther` (``page + 40``): every page offset is kept, the two far areas stay apart from
each other and from the carve-out, as in the kernel.  A write stands for ``ptr[i] = 'x'``; after a
fork the child (pid 1) goes on alone, as in the selftest (the parent only waits).

Diagrams show the carve-out's 30 pages, one character per page: ``-`` the carve-out's PROT_NONE
remainder, ``.`` a hole, a letter per VMA of the test (``ptr`` A, ``ptr2`` B, ``ptr3`` C, or the
selftest's own A/B/C names), lower case once faulted.

Versions (lore and torvalds/linux; the model's generations from each version on, fix overlays
included):

* 6.16 (879bca0a2c4f's series, "tools/testing/selftests: assert that anon merge cases behave as
  expected"): mprotect_unfaulted_left, mprotect_unfaulted_right, mprotect_unfaulted_both,
  mprotect_faulted_left_unfaulted_right, mprotect_unfaulted_left_faulted_right,
  forked_target_vma, forked_source_vma.
* After 6.16 (Lorenzo Stoakes' "tools/testing/selftests: add mremap() cases that merge normally",
  posted in June 2025 after 6.16's merge window; 0ace8f2db6b3's 6.18-stable backport applies on
  top of them): mremap_unfaulted_to_faulted, mremap_unfaulted_behind_faulted,
  mremap_unfaulted_between_faulted, mremap_unfaulted_between_faulted_unfaulted,
  mremap_unfaulted_between_correctly_placed_faulted, mremap_correct_placed_faulted.  The first
  modelled generation after 6.16 is 6.18.8.
* 0ace8f2db6b3 "tools/testing/selftests: add tests for !tgt, src mremap() merges" (January 2026,
  with 61f67c230a5e) and fb39444732f0 "tools/testing/selftests: add forked (un)/faulted VMA merge
  tests" (with 3b617fd3d317: the merge_with_fork fixture, forked and unforked variants); 6.19-rc,
  in 6.18.7 stable (the fixes themselves in 6.18.8):
  mremap_faulted_to_unfaulted_prev, _next, _prev_unfaulted_next, _prev_faulted_next.  They pin
  both fixes, so they also run on 6.16 (neither fix: bug J) and 6.16+61f67c23 (no 3b617fd3d317)
  with the old expectation, and on 6.12/6.12.118/6.15 (before 879bca0a2c4f) where they differ.

Not ported, because the op language cannot express them:

* handle_uprobe_upon_merged_vma: a file-backed PROT_EXEC mapping carrying a uprobe
  (perf_event_open); the model has anonymous memory only.
* ksm_merge: PR_SET_MEMORY_MERGE (KSM's VM_MERGEABLE); the model has no KSM.

The selftests' MAP_NORESERVE is the op language's ``noreserve`` mmap flag: without it, since
9b9143298585 (6.7) mprotect_fixup() (mm/mprotect.c) uncharges only an unfaulted side that loses
write, so the two sides' flags would differ whatever the anon_vma rule
(test_mprotect_unfaulted_left_needs_noreserve shows it).
"""

from __future__ import annotations

from typing import Any

import pytest

from rmapfuzz.layout import diagram
from rmapfuzz.replay import Verdict
from tests.helpers import StepTuple, run, vma_at

WINDOW = 64
CARVEOUT = 30
MOVE = ("maymove", "fixed")
DONTUNMAP = ("maymove", "fixed", "dontunmap")
NORESERVE = ("noreserve",)  # MAP_NORESERVE

# merge.c's first tests shipped with 879bca0a2c4f (6.16).
SINCE_6_16 = ("6.16", "6.16+61f67c23", "6.18.8", "7.0-rc", "7.0-rc+3a206a86")
# The mremap merge tests came after 6.16; 6.18.8 is the first modelled generation after it.
AFTER_6_16 = ("6.18.8", "7.0-rc", "7.0-rc+3a206a86")
# The !tgt,src mremap tests (0ace8f2db6b3) and their forked variants: 6.19-rc, backported to 6.18.7+.
SINCE_0ACE8F2D = ("6.18.8", "7.0-rc", "7.0-rc+3a206a86")
# Before 879bca0a2c4f: 6.12's is_mergeable_anon_vma() (mm/vma.c, read in Debian's 6.12.118 source;
# 6.15 has the same rule) lets one NULL anon_vma merge only when the target's anon_vma_chain is
# singular (965f55dea0e3's rule), and an unfaulted target's chain is empty: a faulted range never
# merges into an unfaulted neighbour.
PRE_879BCA0A = ("6.12", "6.12.118", "6.15")


def far(page: int) -> int:
    """Where ``carveout[page] + 1000 pages`` lands in the window."""
    return page + 31


def farther(page: int) -> int:
    """Where ``carveout[page] + 2000 pages`` lands in the window."""
    return page + 40


def carveout() -> StepTuple:
    """FIXTURE_SETUP: the PROT_NONE carve-out the tests map over."""
    return ("mmap", 0, 0, CARVEOUT, "")


def replay(gen: str, *ts: StepTuple) -> Verdict:
    """Replay the steps on ``gen``; every step must succeed, as every selftest step is asserted."""
    v = run(gen, *ts, window=WINDOW)
    assert v.results == ["ok"] * len(ts), v.results
    return v


def bounds(v: Verdict, pid: int, addr: int) -> tuple[int, int]:
    """find_vma_procmap(): the bounds of the VMA covering ``addr`` (PROCMAP_QUERY's vma_start, vma_end)."""
    vma = vma_at(v.final, pid, addr)
    return vma.vm_start, vma.vm_end


def clean(v: Verdict) -> None:
    assert v.violation is None, f"{v.violation}"


def where(v: Verdict, pid: int) -> str:
    return diagram(v.final, pid)[:CARVEOUT]


# ---- 6.16: forked VMAs never merge with an unfaulted neighbour ----


@pytest.mark.parametrize("gen", SINCE_6_16)
def test_forked_target_vma(gen: str) -> None:
    """
    -aaaaa------------------------   A [1,6) faulted, then fork; the child writes its five pages
    -aaaaaBBBBB-------------------   the child maps B [6,11): A is a fork child, A stays [1,6)
    """
    v = replay(
        gen,
        carveout(),
        ("mmap", 0, 1, 5, "rw"),
        ("write", 0, 1),
        ("fork", 0),
        *(("write", 1, page) for page in range(1, 6)),
        ("mmap", 1, 6, 5, "rw"),
    )
    clean(v)
    assert bounds(v, 1, 1) == (1, 6), where(v, 1)


@pytest.mark.parametrize("gen", SINCE_6_16)
def test_forked_source_vma(gen: str) -> None:
    """
    -aaaaa------------------------   A [1,6) rw faulted, then fork; the child writes all five pages
    -aaaaaBBBBB-------------------   the child maps B [6,11) rwx: not merged (the prots differ)
    -aaaaaBBBBB-------------------   the child makes A rwx: A would be the merge's source, but it
                                     is a fork child, so B stays [6,11)
    """
    steps: list[StepTuple] = [
        carveout(),
        ("mmap", 0, 1, 5, "rw", NORESERVE),
        ("write", 0, 1),
        ("fork", 0),
        *(("write", 1, page) for page in range(1, 6)),
        ("mmap", 1, 6, 5, "rwx", NORESERVE),
    ]
    v = replay(gen, *steps)
    assert bounds(v, 1, 6) == (6, 11), where(v, 1)
    v = replay(gen, *steps, ("mprotect", 1, 1, 5, "rwx"))
    clean(v)
    assert bounds(v, 1, 6) == (6, 11), where(v, 1)


# ---- 6.16: mprotect() merges a faulted VMA with an unfaulted neighbour (MAP_NORESERVE) ----


def mprotect_case(gen: str, first: int, pages: int, steps: list[StepTuple], noreserve: bool = True) -> Verdict:
    """The selftest's mmap of ``pages`` rw pages at ``first`` (MAP_NORESERVE unless told not to),
    then ``steps``; every step must succeed."""
    mapping: StepTuple = ("mmap", 0, first, pages, "rw", NORESERVE if noreserve else ())
    v = replay(gen, carveout(), mapping, *steps)
    clean(v)
    return v


# 879bca0a2c4f let a faulted VMA merge into an unfaulted neighbour: before it, the mprotect() that
# makes both sides read-only leaves them apart (PRE_879BCA0A).
MPROTECT_CASES = [pytest.param(gen, True, id=gen) for gen in SINCE_6_16] + [
    pytest.param(gen, False, id=f"{gen}-apart") for gen in PRE_879BCA0A
]


@pytest.mark.parametrize(("gen", "merges"), MPROTECT_CASES)
def test_mprotect_unfaulted_left(gen: str, merges: bool) -> None:
    """
    -AAAAAAAAAA-------------------   [1,11) rw, MAP_NORESERVE
    -AAAAABBBBB-------------------   [1,6) made read-only: A ro, B rw
    -AAAAAbbbbb-------------------   B faulted
    -aaaaaaaaaa-------------------   B made read-only: merged into A, [1,11)
    """
    steps: list[StepTuple] = [("mprotect", 0, 1, 5, "r"), ("write", 0, 6), ("mprotect", 0, 6, 5, "r")]
    v = mprotect_case(gen, 1, 10, steps)
    assert bounds(v, 0, 1) == ((1, 11) if merges else (1, 6)), where(v, 0)


@pytest.mark.parametrize(("gen", "merges"), MPROTECT_CASES)
def test_mprotect_unfaulted_right(gen: str, merges: bool) -> None:
    """
    -AAAAAAAAAA-------------------   [1,11) rw, MAP_NORESERVE
    -AAAAABBBBB-------------------   [6,11) made read-only: A rw, B ro
    -aaaaaBBBBB-------------------   A faulted
    -aaaaaaaaaa-------------------   A made read-only: B merged into it, [1,11)
    """
    steps: list[StepTuple] = [("mprotect", 0, 6, 5, "r"), ("write", 0, 1), ("mprotect", 0, 1, 5, "r")]
    v = mprotect_case(gen, 1, 10, steps)
    assert bounds(v, 0, 1) == ((1, 11) if merges else (1, 6)), where(v, 0)


@pytest.mark.parametrize(("gen", "merges"), MPROTECT_CASES)
def test_mprotect_unfaulted_both(gen: str, merges: bool) -> None:
    """
    --AAAAAAAAA-------------------   [2,11) rw, MAP_NORESERVE
    --AAABBBCCC-------------------   the first and last three pages made read-only
    --AAAbbbCCC-------------------   B faulted
    --aaaaaaaaa-------------------   B made read-only: all three merged, [2,11)
    """
    steps: list[StepTuple] = [
        ("mprotect", 0, 2, 3, "r"),
        ("mprotect", 0, 8, 3, "r"),
        ("write", 0, 5),
        ("mprotect", 0, 5, 3, "r"),
    ]
    v = mprotect_case(gen, 2, 9, steps)
    assert bounds(v, 0, 2) == ((2, 11) if merges else (2, 5)), where(v, 0)


@pytest.mark.parametrize(("gen", "merges"), MPROTECT_CASES)
def test_mprotect_faulted_left_unfaulted_right(gen: str, merges: bool) -> None:
    """
    --AAAAAAAAA-------------------   [2,11) rw, MAP_NORESERVE
    --AAAAAACCC-------------------   the last three pages made read-only
    --aaaaaaCCC-------------------   A faulted
    --aaabbbCCC-------------------   A's first three pages made read-only (B: the rest of A)
    --aaaaaaaaa-------------------   B made read-only: all three merged, [2,11)
    """
    steps: list[StepTuple] = [
        ("mprotect", 0, 8, 3, "r"),
        ("write", 0, 2),
        ("mprotect", 0, 2, 3, "r"),
        ("mprotect", 0, 5, 3, "r"),
    ]
    v = mprotect_case(gen, 2, 9, steps)
    # before 879bca0a2c4f the two faulted thirds (one anon_vma) merge, the unfaulted one stays apart
    assert bounds(v, 0, 2) == ((2, 11) if merges else (2, 8)), where(v, 0)


@pytest.mark.parametrize(("gen", "merges"), MPROTECT_CASES)
def test_mprotect_unfaulted_left_faulted_right(gen: str, merges: bool) -> None:
    """
    --AAAAAAAAA-------------------   [2,11) rw, MAP_NORESERVE
    --AAABBBBBB-------------------   the first three pages made read-only
    --AAAbbbbbb-------------------   B faulted
    --AAAbbbccc-------------------   B's last three pages made read-only (C)
    --aaaaaaaaa-------------------   B made read-only: all three merged, [2,11)
    """
    steps: list[StepTuple] = [
        ("mprotect", 0, 2, 3, "r"),
        ("write", 0, 5),
        ("mprotect", 0, 8, 3, "r"),
        ("mprotect", 0, 5, 3, "r"),
    ]
    v = mprotect_case(gen, 2, 9, steps)
    assert bounds(v, 0, 5) == ((2, 11) if merges else (5, 11)), where(v, 0)


@pytest.mark.parametrize("gen", SINCE_6_16)
def test_mprotect_unfaulted_left_needs_noreserve(gen: str) -> None:
    """
    -AAAAAAAAAA-------------------   [1,11) rw, charged (no MAP_NORESERVE): VM_ACCOUNT
    -AAAAABBBBB-------------------   [1,6) made read-only: unfaulted, so uncharged (9b9143298585)
    -AAAAAbbbbb-------------------   B faulted
    -AAAAAbbbbb-------------------   B made read-only: faulted, so still charged; the flags differ
                                     and nothing merges, the failure MAP_NORESERVE is there to avoid
    """
    steps: list[StepTuple] = [("mprotect", 0, 1, 5, "r"), ("write", 0, 6), ("mprotect", 0, 6, 5, "r")]
    v = mprotect_case(gen, 1, 10, steps, noreserve=False)
    assert bounds(v, 0, 1) == (1, 6), where(v, 0)


# ---- 6.17: mremap() merges that need no anon_vma relocation ----


@pytest.mark.parametrize("gen", AFTER_6_16)
def test_mremap_unfaulted_to_faulted(gen: str) -> None:
    """
    -AAAAA-BBBBB------------------   A [1,6), B [7,12)
    -aaaaa-.....------------------   B moved far away (to far(7)), A faulted
    -aaaaaaaaaa.------------------   B moved to [6,11), right after A: one VMA [1,11)
    """
    v = replay(
        gen,
        carveout(),
        ("mmap", 0, 1, 5, "rw"),
        ("mmap", 0, 7, 5, "rw"),
        ("mremap", 0, 7, 5, far(7), 5, MOVE),
        ("write", 0, 1),
        ("mremap", 0, far(7), 5, 6, 5, MOVE),
    )
    clean(v)
    assert bounds(v, 0, 1) == (1, 11), where(v, 0)


@pytest.mark.parametrize("gen", AFTER_6_16)
def test_mremap_unfaulted_behind_faulted(gen: str) -> None:
    """
    ------AAAAA---BBBBB-----------   A [6,11), B [14,19)
    ------aaaaa---.....-----------   B moved far away (to far(14)), A faulted
    -bbbbbbbbbb---.....-----------   B moved to [1,6), right before A: one VMA [1,11)
    """
    v = replay(
        gen,
        carveout(),
        ("mmap", 0, 6, 5, "rw"),
        ("mmap", 0, 14, 5, "rw"),
        ("mremap", 0, 14, 5, far(14), 5, MOVE),
        ("write", 0, 6),
        ("mremap", 0, far(14), 5, 1, 5, MOVE),
    )
    clean(v)
    assert bounds(v, 0, 1) == (1, 11), where(v, 0)


def _three_apart(faulted_c: bool) -> tuple[StepTuple, ...]:
    """A [1,6), B [7,12), C [14,19); C and B moved far away; A (and C) faulted; C back to [11,16)."""
    return (
        carveout(),
        ("mmap", 0, 1, 5, "rw"),
        ("mmap", 0, 7, 5, "rw"),
        ("mmap", 0, 14, 5, "rw"),
        ("mremap", 0, 14, 5, farther(14), 5, MOVE),
        ("mremap", 0, 7, 5, far(7), 5, MOVE),
        ("write", 0, 1),
        *((("write", 0, farther(14)),) if faulted_c else ()),
        ("mremap", 0, farther(14), 5, 11, 5, MOVE),
    )


@pytest.mark.parametrize("gen", AFTER_6_16)
def test_mremap_unfaulted_between_faulted(gen: str) -> None:
    """
    -AAAAA-BBBBB--CCCCC-----------   A [1,6), B [7,12), C [14,19)
    -aaaaa-.....--.....-----------   C (to farther(14)) then B (to far(7)) moved away; A, C faulted
    -aaaaa-....ccccc...-----------   C moved to [11,16); its pgoff is farther(14)'s, the address it
                                     was faulted at (an unfaulted move resets the pgoff)
    -aaaaaaaaaaccccc...-----------   B moved to [6,11): A and B merge [1,11), C stays [11,16)
    """
    v = replay(gen, *_three_apart(faulted_c=True), ("mremap", 0, far(7), 5, 6, 5, MOVE))
    clean(v)
    assert bounds(v, 0, 1) == (1, 11), where(v, 0)
    assert bounds(v, 0, 11) == (11, 16), where(v, 0)


@pytest.mark.parametrize("gen", AFTER_6_16)
def test_mremap_unfaulted_between_faulted_unfaulted(gen: str) -> None:
    """
    -AAAAA-BBBBB--CCCCC-----------   A [1,6), B [7,12), C [14,19)
    -aaaaa-.....--.....-----------   C (to farther(14)) then B (to far(7)) moved away; A faulted
    -aaaaa-....CCCCC...-----------   C moved to [11,16) (unfaulted: its pgoff follows it)
    -aaaaaaaaaaaaaaa...-----------   B moved to [6,11): all three merge, [1,16)
    """
    v = replay(gen, *_three_apart(faulted_c=False), ("mremap", 0, far(7), 5, 6, 5, MOVE))
    clean(v)
    assert bounds(v, 0, 1) == (1, 16), where(v, 0)


@pytest.mark.parametrize("gen", AFTER_6_16)
def test_mremap_unfaulted_between_correctly_placed_faulted(gen: str) -> None:
    """
    -aaaaaaaaaaaaaaa--------------   A [1,16) faulted at 1
    -aaaaa.....bbbbb--------------   [6,11) unmapped: two VMAs, one anon_vma, pgoffs in place
    -aaaaa.....bbbbb----CCCCC-----   C [20,25) (the selftest maps it at carveout[20] too)
    -aaaaaaaaaaaaaaa----.....-----   C moved to [6,11): one VMA [1,16)
    """
    v = replay(
        gen,
        carveout(),
        ("mmap", 0, 1, 15, "rw"),
        ("write", 0, 1),
        ("munmap", 0, 6, 5),
        ("mmap", 0, 20, 5, "rw"),
        ("mremap", 0, 20, 5, 6, 5, MOVE),
    )
    clean(v)
    assert bounds(v, 0, 1) == (1, 16), where(v, 0)


@pytest.mark.parametrize("gen", AFTER_6_16)
def test_mremap_correct_placed_faulted(gen: str) -> None:
    """
    -aaaaaaaaaaaaaaa--------------   A [1,16) faulted at 1: ptr 1, ptr2 6, ptr3 11
    -aaaaa..........--------------   ptr3 [11,16) to farther(11), ptr2 [6,11) to far(6)
    -aaaaaaaaaa.....--------------   ptr2 back to [6,11): [1,11)
    -.....bbbbb.....--------------   ptr to far(1) ...
    -aaaaaaaaaa.....--------------   ... and back: [1,11)
    -.....bbbbbbbbbb--------------   ptr to far(1) again; ptr3 back to [11,16): [6,16)
    -aaaaaaaaaaaaaaa--------------   ptr back: [1,16)
    -aaaaaaaaaaaaaaa--------------   ptr2 to far(6) and back: [1,16)
    -aaaaaaaaaaaaaaa--------------   ptr3 to far(11) and back: [1,16)
    """
    steps: list[StepTuple] = [
        carveout(),
        ("mmap", 0, 1, 15, "rw"),
        ("write", 0, 1),
        ("mremap", 0, 11, 5, farther(11), 5, MOVE),
        ("mremap", 0, 6, 5, far(6), 5, MOVE),
        ("mremap", 0, far(6), 5, 6, 5, MOVE),
    ]
    checks: list[tuple[int, int, tuple[int, int]]] = [(len(steps), 1, (1, 11))]
    steps += [("mremap", 0, 1, 5, far(1), 5, MOVE), ("mremap", 0, far(1), 5, 1, 5, MOVE)]
    checks.append((len(steps), 1, (1, 11)))
    steps += [("mremap", 0, 1, 5, far(1), 5, MOVE), ("mremap", 0, farther(11), 5, 11, 5, MOVE)]
    checks.append((len(steps), 6, (6, 16)))
    steps += [("mremap", 0, far(1), 5, 1, 5, MOVE)]
    checks.append((len(steps), 1, (1, 16)))
    steps += [("mremap", 0, 6, 5, far(6), 5, MOVE), ("mremap", 0, far(6), 5, 6, 5, MOVE)]
    checks.append((len(steps), 1, (1, 16)))
    steps += [("mremap", 0, 11, 5, far(11), 5, MOVE), ("mremap", 0, far(11), 5, 11, 5, MOVE)]
    checks.append((len(steps), 1, (1, 16)))
    for n, addr, want in checks:
        v = replay(gen, *steps[:n])
        clean(v)
        assert bounds(v, 0, addr) == want, f"after {n} steps: {where(v, 0)}"


# ---- 0ace8f2db6b3 and the merge_with_fork variants: a faulted source mremap()ed next to an
# unfaulted target, with MREMAP_DONTUNMAP ----

# 6.16 has 879bca0a2c4f's three-way rule but neither fix: vma_expand() grows the unfaulted target
# over the moved pages without dup'ing the source's anon_vma (bug J, fixed by 61f67c230a5e), and
# a forked source is merged too (the fork-child check looks only at vmg->middle, none for a new
# range; 3b617fd3d317 falls back to vmg->copied_from).  6.16+61f67c23 has only the first fix.
# Mark Brown's 6.18.7-rc1 report (stable list, January 2026) saw all four forked variants fail
# just so, merged (vma_end 3 or 6 pages too far; prev_faulted_next starting at ptr_a), on a tree
# that had the tests but not the fixes (those came in 6.18.8 as a4d9dbfc1bab and 5b0caf3913e7).


def g3_cases(uaf_on_6_16: bool) -> list[Any]:
    """(gen, forked, merged, uaf): the selftest's expectation on the generations carrying it, the
    old one where a generation predates a fix."""
    cases = [pytest.param(gen, False, True, False, id=f"{gen}-unforked") for gen in SINCE_0ACE8F2D]
    cases += [pytest.param(gen, True, False, False, id=f"{gen}-forked") for gen in SINCE_0ACE8F2D]
    # 61f67c230a5e alone: the unforked cases hold; the forked source still merges (no 3b617fd3d317).
    cases += [
        pytest.param("6.16+61f67c23", False, True, False, id="6.16+61f67c23-unforked"),
        pytest.param("6.16+61f67c23", True, True, False, id="6.16+61f67c23-forked-old"),
    ]
    # 6.16: the same merges; where the target grows over the source alone, its anon_vma is freed
    # under the moved pages once MREMAP_DONTUNMAP unlinks the source (bug J, 61f67c230a5e).
    if uaf_on_6_16:
        cases.append(pytest.param("6.16", False, True, True, id="6.16-unforked-old"))
    cases.append(pytest.param("6.16", True, True, uaf_on_6_16, id="6.16-forked-old"))
    # Before 879bca0a2c4f nothing faulted merges into an unfaulted neighbour (PRE_879BCA0A).
    cases += [pytest.param(gen, False, False, False, id=f"{gen}-unforked-old") for gen in PRE_879BCA0A]
    return cases


def fork_point(forked: bool) -> tuple[tuple[StepTuple, ...], int]:
    """The optional do_fork(): the steps to add and the pid that goes on (the child, if forked)."""
    return ((("fork", 0),), 1) if forked else ((), 0)


def check_dontunmap_move(v: Verdict, uaf: bool) -> None:
    """The last step (the MREMAP_DONTUNMAP move) left the moved pages' anon_vma freed, or nothing
    wrong (selftest: KASAN or the anon_vma refcount assert would fire on a buggy kernel)."""
    if not uaf:
        clean(v)
        return
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == ("merge-superset", len(v.steps) - 1)
    assert "(freed)" in v.violation.message


@pytest.mark.parametrize(("gen", "forked", "merged", "uaf"), g3_cases(uaf_on_6_16=True))
def test_mremap_faulted_to_unfaulted_prev(gen: str, forked: bool, merged: bool, uaf: bool) -> None:
    """
    ----aaa-----------------------   A [4,7) faulted (then the fork, if forked)
    ----...-------------aaa-------   A moved to [20,23)
    -BBB...-------------aaa-------   B [1,4) unfaulted
    -bbbbbb-------------CCC-------   A moved back to [4,7) with MREMAP_DONTUNMAP (C: the old range,
                                     kept empty): B grows over it, [1,7)
    -BBBaaa-------------CCC-------   forked: B stays [1,4)
    """
    fork, pid = fork_point(forked)
    v = replay(
        gen,
        carveout(),
        ("mmap", 0, 4, 3, "rw"),
        ("write", 0, 4),
        *fork,
        ("mremap", pid, 4, 3, 20, 3, MOVE),
        ("mmap", pid, 1, 3, "rw"),
        ("mremap", pid, 20, 3, 4, 3, DONTUNMAP),
    )
    check_dontunmap_move(v, uaf)
    assert bounds(v, pid, 1) == ((1, 7) if merged else (1, 4)), where(v, pid)


@pytest.mark.parametrize(("gen", "forked", "merged", "uaf"), g3_cases(uaf_on_6_16=True))
def test_mremap_faulted_to_unfaulted_next(gen: str, forked: bool, merged: bool, uaf: bool) -> None:
    """
    -aaa--------------------------   A [1,4) faulted (then the fork, if forked)
    -...----------------aaa-------   A moved to [20,23)
    -...BBB-------------aaa-------   B [4,7) unfaulted
    -bbbbbb-------------CCC-------   A moved back to [1,4) with MREMAP_DONTUNMAP (C: the old range,
                                     kept empty): B grows down over it, [1,7)
    -aaaBBB-------------CCC-------   forked: A stays [1,4)
    """
    fork, pid = fork_point(forked)
    v = replay(
        gen,
        carveout(),
        ("mmap", 0, 1, 3, "rw"),
        ("write", 0, 1),
        *fork,
        ("mremap", pid, 1, 3, 20, 3, MOVE),
        ("mmap", pid, 4, 3, "rw"),
        ("mremap", pid, 20, 3, 1, 3, DONTUNMAP),
    )
    check_dontunmap_move(v, uaf)
    assert bounds(v, pid, 1) == ((1, 7) if merged else (1, 4)), where(v, pid)


@pytest.mark.parametrize(("gen", "forked", "merged", "uaf"), g3_cases(uaf_on_6_16=True))
def test_mremap_faulted_to_unfaulted_prev_unfaulted_next(gen: str, forked: bool, merged: bool, uaf: bool) -> None:
    """
    ----bbb-----------------------   B [4,7) faulted (then the fork, if forked)
    ----...-------------bbb-------   B moved to [20,23)
    -AAA...CCC----------bbb-------   A [1,4), C [7,10) unfaulted
    -aaaaaaaaa----------DDD-------   B moved back to [4,7) with MREMAP_DONTUNMAP (D: the old range,
                                     kept empty): one VMA [1,10)
    -AAAbbbCCC----------DDD-------   forked: A stays [1,4), B [4,7)
    """
    fork, pid = fork_point(forked)
    v = replay(
        gen,
        carveout(),
        ("mmap", 0, 4, 3, "rw"),
        ("write", 0, 4),
        *fork,
        ("mremap", pid, 4, 3, 20, 3, MOVE),
        ("mmap", pid, 1, 3, "rw"),
        ("mmap", pid, 7, 3, "rw"),
        ("mremap", pid, 20, 3, 4, 3, DONTUNMAP),
    )
    check_dontunmap_move(v, uaf)
    assert bounds(v, pid, 1) == ((1, 10) if merged else (1, 4)), where(v, pid)
    if forked:
        assert bounds(v, pid, 4) == ((1, 10) if merged else (4, 7)), where(v, pid)


@pytest.mark.parametrize(("gen", "forked", "merged", "uaf"), g3_cases(uaf_on_6_16=False))
def test_mremap_faulted_to_unfaulted_prev_faulted_next(gen: str, forked: bool, merged: bool, uaf: bool) -> None:
    """
    ----bbbbbb--------------------   B+C [4,10) mapped as one, faulted at 4 (then the fork, if forked)
    ----...ccc----------bbb-------   B [4,7) moved to [20,23), C [7,10) left in place
    -AAA...ccc----------bbb-------   A [1,4) unfaulted
    -aaaaaaaaa----------DDD-------   B moved back to [4,7) with MREMAP_DONTUNMAP (D: the old range,
                                     kept empty): one VMA [1,10)
    -AAAbbbbbb----------DDD-------   forked: only B and C merge, [4,10)

    ``merged`` is A with them.  On 6.16 no anon_vma is lost: vma_expand() removes C and dups its
    anon_vma, the moved pages' own.
    """
    fork, pid = fork_point(forked)
    v = replay(
        gen,
        carveout(),
        ("mmap", 0, 4, 6, "rw"),
        ("write", 0, 4),
        *fork,
        ("mremap", pid, 4, 3, 20, 3, MOVE),
        ("mmap", pid, 1, 3, "rw"),
        ("mremap", pid, 20, 3, 4, 3, DONTUNMAP),
    )
    check_dontunmap_move(v, uaf)
    if forked:
        assert bounds(v, pid, 4) == ((1, 10) if merged else (4, 10)), where(v, pid)
    else:
        assert bounds(v, pid, 1) == ((1, 10) if merged else (1, 4)), where(v, pid)
