"""7.0-rc (docs/model.md, "Generations"): Lorenzo Stoakes' 2026 anon_vma clean-up on 6.18.8, with bug K
(anon_vma_clone()'s ENOMEM path keeps a merge target's anon_vma, uncounted) and its fix 3a206a8649f8."""

from __future__ import annotations

import pytest

from rmapfuzz.classify import classify
from rmapfuzz.kernels import BUG_PATHS, carriers, resolve
from rmapfuzz.pair import pair_replay
from tests.helpers import StepTuple, hits, run, run_clean, shape, steps

RC, FIXED, CURRENT = "7.0-rc", "7.0-rc+3a206a86", "6.18.8"

# A [0,2) unfaulted rw, B [2,4) faulted r; mprotect(B, rw) merges B into A: dup_anon_vma(A, B) and
# the one chain entry of its clone is the allocation that fails.
BUG_K: tuple[StepTuple, ...] = (
    ("mmap", 0, 2, 2, "rw"),
    ("write", 0, 2),
    ("mprotect", 0, 2, 2, "r"),
    ("mmap", 0, 0, 2, "rw"),
    ("fail_alloc", 1),
    ("mprotect", 0, 2, 2, "rw"),
)


def test_registry_names_7_0_and_its_fix() -> None:
    assert resolve(RC).base == CURRENT and resolve(RC).bugs == ("K",)
    assert resolve(FIXED).bugs == () and resolve(FIXED).commits[0][0] == "3a206a8649f8"
    assert carriers("K") == [RC]
    assert resolve("7.0-rc+3a206a86") is resolve(FIXED)


def test_bug_k_on_7_0_rc() -> None:
    """
    ..BB....   B faulted (AV1), then r--
    AABB....   A unfaulted rw
    AABB....   fail_alloc(1); mprotect(B, rw): prev A would absorb B, dup_anon_vma(A, B) sets
               A's anon_vma to AV1, the clone cannot allocate its chain entry, and
               cleanup_partial_anon_vmas() leaves A with AV1 and an empty chain, uncounted
    """
    v = run(RC, *BUG_K)
    assert v.results == ["ok"] * 5 + ["ENOMEM"]
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == ("primary-linked", 5)
    assert v.violation.message == "P0:[0,2) has anon_vma AV1 but its chain [] does not link it"
    assert hits(v.final)["cleanup_partial_anon_vmas: a merge target keeps an anon_vma it was never counted on"] == 1


def test_bug_k_counts_one_active_vma_short() -> None:
    """The same steps judged by the counters alone: AV1 counts B only, though A points at it too."""
    v = run(RC, *BUG_K, invariants=["counters"])
    assert v.violation is not None and (v.violation.invariant, v.violation.step) == ("counters", 5)
    assert v.violation.message == "AV1.num_active_vmas is 1 but the structure says 2"


@pytest.mark.parametrize("kernel", [FIXED, CURRENT])
def test_bug_k_scenario_clean_when_fixed(kernel: str) -> None:
    """
    AABB....   the failed merge leaves A unfaulted (3a206a8649f8; 6.18.8 cleared it in
               anon_vma_clone()'s error path, 3fe89b3e2a7b), mprotect answers ENOMEM
    """
    v = run(kernel, *BUG_K)
    assert v.violation is None
    assert v.results == ["ok"] * 5 + ["ENOMEM"]
    assert shape(v.final) == (
        "AABB....",
        ["[0,2) rw- ac pgoff=0 anon=- chain=[]", "[2,4) r-- ac pgoff=2 anon=AV1 chain=[AV1]"],
    )


def test_bug_k_classified() -> None:
    assert classify(RC, steps(*BUG_K)) == ["K"]
    assert set(BUG_PATHS["K"]) <= set(hits(run(RC, *BUG_K).final))


def test_reuse_is_fork_only() -> None:
    """maybe_reuse_anon_vma() runs on fork only: a split of P2's VMA keeps P2's AV3 even though
    AV2 (P1's, P1 gone) could be reused; P2's next fork reuses AV2 for its first VMA only.

    P0: AAAA  faulted (AV1);  P1 = fork(P0): AV2;  P2 = fork(P1): AV3;  P1 exits: AV2 unused
    P2: ABCC  mprotect(r) of [1,2): every part anon=AV3, no reuse
    P3: ABCC  fork(P2): [0,1) reuses AV2, then AV2 is in use: the others get new anon_vmas
    """
    ts: tuple[StepTuple, ...] = (
        ("mmap", 0, 0, 4, "rw"),
        ("write", 0, 0),
        ("fork", 0),
        ("fork", 1),
        ("exit", 1),
        ("mprotect", 2, 1, 1, "r"),
        ("fork", 2),
    )
    k = run_clean(RC, *ts)
    assert shape(k, 2) == (
        "ABCC....",
        [
            "[0,1) rw- ac pgoff=0 anon=AV3 chain=[AV3, AV2, AV1]",
            "[1,2) r-- ac pgoff=1 anon=AV3 chain=[AV3, AV2, AV1]",
            "[2,4) rw- ac pgoff=2 anon=AV3 chain=[AV3, AV2, AV1]",
        ],
    )
    # AV4 is the anon_vma anon_vma_fork() allocated before the clone and put back after the reuse
    assert shape(k, 3) == (
        "ABCC....",
        [
            "[0,1) rw- ac pgoff=0 anon=AV2 chain=[AV3, AV2, AV1]",
            "[1,2) r-- ac pgoff=1 anon=AV5 chain=[AV5, AV3, AV2, AV1]",
            "[2,4) rw- ac pgoff=2 anon=AV6 chain=[AV6, AV3, AV2, AV1]",
        ],
    )
    assert k.anon_vmas[3].freed
    h = hits(k)
    assert h["maybe_reuse_anon_vma: fork reuses an ancestor's anon_vma"] == 1
    assert h["anon_vma_fork: an anon_vma was reused, the preallocated one is put"] == 1
    assert h["__split_vma: faulted VMA split"] == 2
    # the same steps on 6.18.8 give the same graph up to names (no anon_vma allocated and put back)
    assert pair_replay(steps(*ts), RC, CURRENT) is None


FAULT_FREE: dict[str, tuple[StepTuple, ...]] = {
    "fork-chain-exit": (
        ("mmap", 0, 0, 4, "rw"),
        ("write", 0, 0),
        ("write", 0, 3),
        ("fork", 0),
        ("write", 1, 3),
        ("fork", 1),
        ("exit", 1),
        ("fork", 2),
        ("exit", 0),
    ),
    "merge-dup-unfaulted": (
        ("mmap", 0, 2, 2, "rw"),
        ("write", 0, 2),
        ("mprotect", 0, 2, 2, "r"),
        ("mmap", 0, 0, 2, "rw"),
        ("mprotect", 0, 2, 2, "rw"),
        ("write", 0, 0),
        ("munmap", 0, 1, 2),
    ),
    "mremap-and-split": (
        ("mmap", 0, 0, 3, "rw"),
        ("write", 0, 1),
        ("fork", 0),
        ("mremap", 1, 0, 3, 4, 3, ("maymove", "fixed")),
        ("mprotect", 1, 5, 1, "r"),
        ("write", 1, 6),
        ("exit", 0),
        ("munmap", 1, 4, 4),
    ),
    "dontunmap-then-fault": (
        ("mmap", 0, 0, 2, "rw"),
        ("write", 0, 0),
        ("mremap", 0, 0, 2, 4, 2, ("maymove", "fixed", "dontunmap")),
        ("write", 0, 1),
        ("fork", 0),
        ("munmap", 0, 0, 8),
    ),
}


@pytest.mark.parametrize("name", sorted(FAULT_FREE))
def test_no_difference_from_6_18_8_without_fail_alloc(name: str) -> None:
    """Without injected allocation failures the rework changes nothing a user or the reverse map
    can see: the fixed 7.0-rc and 6.18.8 agree at every level after every step."""
    ts = FAULT_FREE[name]
    run_clean(FIXED, *ts)
    assert pair_replay(steps(*ts), FIXED, CURRENT) is None
    assert pair_replay(steps(*ts), RC, CURRENT) is None
