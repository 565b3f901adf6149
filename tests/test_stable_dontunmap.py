"""The 2026 stable fixes of MREMAP_DONTUNMAP (rmapfuzz/kernels/stable_dontunmap.py) and the
generations built from them, 6.1.192 and 6.12.118, which the lab's Debian kernels are compared with
(docs/lab.md, "What 6.1.192 and 6.12.118 carry that the models do not")."""

from __future__ import annotations

import pytest

from rmapfuzz.kernels import KERNELS, CannotCompose, compose, resolve
from rmapfuzz.kernels.stable_dontunmap import Linux60WithStableDontunmap, Linux612WithStableDontunmap
from rmapfuzz.lab import images
from tests.helpers import run_clean, shape

DONTUNMAP = ("maymove", "fixed", "dontunmap")
STABLE = ("6.1.192", "6.12.118", "6.1+stable-dontunmap-mmap", "6.15+stable-dontunmap-vma")
MAINLINE = ("6.0", "6.1", "6.12", "6.15", "6.18.8")


def test_the_generations_and_the_overlays() -> None:
    assert resolve("6.1.192").base == "6.1" and issubclass(resolve("6.1.192"), KERNELS["6.1"])
    assert resolve("6.12.118").base == "6.12" and issubclass(resolve("6.12.118"), KERNELS["6.12"])
    assert not issubclass(resolve("6.12.118"), KERNELS["6.15"])
    # 6.15's merge code is 6.12's: 6.15 adds no commit
    assert KERNELS["6.15"].base == "6.12" and KERNELS["6.15"].commits == ()
    assert {c[1] for c in KERNELS["6.1.192"].commits} == {
        "mm/mremap: fix locked_vm leak from MREMAP_DONTUNMAP self-merge",
        "mm/mremap: reset unfaulted VMA page offset for MREMAP_DONTUNMAP",
    }
    # composable like a bug's fix, on any generation with the code it patches
    assert resolve("6.1+stable-dontunmap-mmap").__mro__[1] is Linux60WithStableDontunmap
    assert resolve("6.16+stable-dontunmap-vma").__mro__[1] is Linux612WithStableDontunmap
    with pytest.raises(CannotCompose):
        compose(KERNELS["6.1"], Linux612WithStableDontunmap)  # 6.1 has no mm/vma.c


def test_the_lab_kernels_are_compared_with_the_stable_generations() -> None:
    assert images.get("debian-6.1").model == images.get("kasan-6.1").model == "6.1.192"
    assert images.get("debian-6.12").model == "6.12.118"


@pytest.mark.parametrize("kernel", MAINLINE + STABLE)
def test_an_unfaulted_vma_moved_next_to_itself(kernel: str) -> None:
    """
    ...A....   [3,4) r, never touched (pgoff 3); mremap [3,4) -> [2,3) DONTUNMAP
    ..AA....   mainline: copy_vma() re-bases the target to pgoff 2 and merges it into the source
    ..BA....   the stable fix: the kept source is not merged with its own new range
    (lab/cases/dontunmap-self-merge.json: both Debian kernels give two VMAs)
    """
    k = run_clean(kernel, ("mmap", 0, 3, 1, "r"), ("mremap", 0, 3, 1, 2, 1, DONTUNMAP))
    if kernel in STABLE:
        assert shape(k) == ("..AB....", ["[2,3) r-- pgoff=2 anon=- chain=[]", "[3,4) r-- pgoff=3 anon=- chain=[]"])
    else:
        assert shape(k) == ("..AA....", ["[2,4) r-- pgoff=2 anon=- chain=[]"])


@pytest.mark.parametrize(
    ("kernel", "after"),
    [
        ("6.1", ("AAA.....", ["[0,3) r-- pgoff=0 anon=- chain=[]"])),
        ("6.1.192", ("ABC.....", ["[0,1) r-- pgoff=0 anon=- chain=[]", "[1,2) r-- pgoff=1 anon=- chain=[]",
                                  "[2,3) r-- pgoff=2 anon=- chain=[]"])),
        ("6.12", ("AAA.....", ["[0,3) r-- pgoff=0 anon=- chain=[]"])),
        ("6.12.118", ("AAB.....", ["[0,2) r-- pgoff=0 anon=- chain=[]", "[2,3) r-- pgoff=2 anon=- chain=[]"])),
    ],
)  # fmt: skip
def test_the_two_shapes_of_the_self_merge_fix(kernel: str, after: tuple[str, list[str]]) -> None:
    """
    B.A.....   B [0,1) and A [2,3), both r and never touched; mremap A -> [1,2) DONTUNMAP:
               the target lies between B (prev) and the source A itself (next)
    AAA.....   mainline: all three merge (the source with its own new range)
    ABC.....   6.1.192: the source is adjacent, so copy_vma() tries no merge at all, not even with B
    AAB.....   6.12.118: the source is dropped as next; B grows over the new range
    (lab/cases/dontunmap-self-merge-prev.json measures both on the Debian kernels)
    """
    k = run_clean(kernel, ("mmap", 0, 0, 1, "r"), ("mmap", 0, 2, 1, "r"), ("mremap", 0, 2, 1, 1, 1, DONTUNMAP))
    assert shape(k) == after


# [0,1) written, moved to [4,5), then DONTUNMAP'd to [1,2): the whole old VMA [4,5) is unlinked
MOVED_THEN_DONTUNMAPPED = (
    ("mmap", 0, 0, 1, "rw"),
    ("write", 0, 0),
    ("mremap", 0, 0, 1, 4, 1, ("maymove", "fixed")),
    ("mremap", 0, 4, 1, 1, 1, DONTUNMAP),
)


@pytest.mark.parametrize(("kernel", "pgoff"), [("6.1", 0), ("6.12", 0), ("6.1.192", 4), ("6.12.118", 4)])
def test_the_unlinked_old_vma_gets_its_address_as_pgoff(kernel: str, pgoff: int) -> None:
    """
    A.......   [0,1) rw, written (AV1, pgoff 0); moved to [4,5), where it keeps pgoff 0
    ....A...   then DONTUNMAP'd to [1,2): the whole old VMA [4,5) is unlinked (1583aa278f5f)
    .B..A...   mainline: [4,5) keeps pgoff 0; the stable fix resets it to 4, its address
    (lab/cases/dontunmap-pgoff-reset.json: both Debian kernels show pgoff 4 at L3)
    """
    k = run_clean(
        kernel,
        *MOVED_THEN_DONTUNMAPPED,
    )
    old = shape(k)[1][1]
    assert old == f"[4,5) rw- ac pgoff={pgoff} anon=- chain=[]"


@pytest.mark.parametrize("kernel", ["6.1.192", "6.12.118"])
def test_the_reset_pgoff_lets_the_old_vma_merge_with_a_new_neighbour(kernel: str) -> None:
    """The same, then mmap [5,6) rw: with pgoff 4 the old VMA [4,5) and the new [5,6) merge
    (mainline keeps them apart: pgoff 0 does not continue to 5)."""
    k = run_clean(
        kernel,
        *MOVED_THEN_DONTUNMAPPED,
        ("mmap", 0, 5, 1, "rw"),
    )
    assert shape(k)[1][1] == "[4,6) rw- ac pgoff=4 anon=- chain=[]"
