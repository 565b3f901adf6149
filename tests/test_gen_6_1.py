"""6.1 (rmapfuzz/kernels/v6_1.py): mmap_region() expands next, then prev asked with next's
anon_vma (4dd1b84140c1), and mremap's in-place growth merges (ca3d76b0aa80); against 6.0 and 6.15."""

from __future__ import annotations

import pytest

from rmapfuzz.kernels import KERNELS, resolve
from rmapfuzz.lab import images
from tests.helpers import StepTuple, run_clean, shape

HOLE_BETWEEN_UNFAULTED_AND_FAULTED: tuple[StepTuple, ...] = (
    ("mmap", 0, 0, 1, "rw"),
    ("mmap", 0, 2, 1, "rw"),
    ("write", 0, 2),
    ("mmap", 0, 1, 1, "rw"),
)


def test_registry_has_6_1_between_6_0_and_6_15() -> None:
    cls = resolve("6.1")
    assert cls.base == "6.0" and issubclass(cls, KERNELS["6.0"]) and not cls.bugs
    assert [c[0] for c in cls.commits] == ["4dd1b84140c1", "ca3d76b0aa80"]
    assert cls.features.dontunmap and cls.features.fork_counters
    names = list(KERNELS)
    assert names.index("6.0") < names.index("6.1") < names.index("6.15")


def test_the_6_1_lab_kernels_are_compared_with_6_1_and_its_stable_fixes() -> None:
    assert images.get("debian-6.1").model == images.get("kasan-6.1").model == "6.1.192"
    assert resolve("6.1.192").base == "6.1"


@pytest.mark.parametrize(
    ("kernel", "after"),
    [
        ("6.0", ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]"]),
        ("6.1", ["[0,1) rw- ac pgoff=0 anon=- chain=[]", "[1,3) rw- ac pgoff=1 anon=AV1 chain=[AV1]"]),
        ("6.15", ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]"]),
    ],
)
def test_mmap_into_a_hole_before_a_faulted_vma(kernel: str, after: list[str]) -> None:
    """
    A.B.....   A unfaulted, B faulted (AV1); mmap [1,2):
    AAA.....   6.0: vma_merge() case 1 (prev asked with no anon_vma), prev imports B's AV1
    ABB.....   6.1: next taken first; prev asked with next's AV1, refused (empty chain): B grows down
    AAA.....   6.15: vma_merge_new_range() asks prev with no anon_vma again
    """
    k = run_clean(kernel, *HOLE_BETWEEN_UNFAULTED_AND_FAULTED)
    assert shape(k)[1] == after


@pytest.mark.parametrize(
    ("kernel", "after"),
    [
        ("6.0", ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[2,3) rw- ac pgoff=2 anon=AV2 chain=[AV2]"]),
        ("6.1", ["[0,1) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[1,3) rw- ac pgoff=1 anon=AV2 chain=[AV2]"]),
    ],
)
def test_mmap_between_two_faulted_vmas_with_other_anon_vmas(kernel: str, after: list[str]) -> None:
    """
    A.B.....   A (AV1) and B (AV2) both faulted; mmap [1,2) cannot close the hole:
    AAB.....   6.0: case 2, prev grows
    ABB.....   6.1: next grows down (prev, asked with AV2, refuses: AV1 != AV2)
    """
    k = run_clean(kernel, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), *HOLE_BETWEEN_UNFAULTED_AND_FAULTED[1:])
    assert shape(k)[1] == after


@pytest.mark.parametrize("kernel", ["6.0", "6.1"])
def test_mmap_next_to_a_faulted_prev_and_an_unfaulted_next_closes_the_hole(kernel: str) -> None:
    """
    A.B.....   A faulted (AV1), B unfaulted; mmap [1,2):
    AAA.....   both: next accepts (no anon_vma), prev accepts next's none; prev grows over B
    """
    k = run_clean(kernel, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("mmap", 0, 2, 1, "rw"), ("mmap", 0, 1, 1, "rw"))
    assert shape(k) == ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])


@pytest.mark.parametrize(
    ("kernel", "after"),
    [
        ("6.0", ("AAB.....", ["[0,2) rw- ac pgoff=0 anon=- chain=[]", "[2,3) rw- ac pgoff=2 anon=- chain=[]"])),
        ("6.1", ("AAA.....", ["[0,3) rw- ac pgoff=0 anon=- chain=[]"])),
    ],
)
def test_mremap_growth_in_place_merges_with_next_from_6_1(kernel: str, after: tuple[str, list[str]]) -> None:
    """
    A.B.....   A and B unfaulted; mremap A to 2 pages in place:
    AAB.....   6.0: vma_adjust() of A alone
    AAA.....   6.1: vma_merge() of the extension with A as prev reaches B: case 1, one VMA
    """
    k = run_clean(kernel, ("mmap", 0, 0, 1, "rw"), ("mmap", 0, 2, 1, "rw"), ("mremap", 0, 0, 1, 0, 2, ()))
    assert shape(k) == after


@pytest.mark.parametrize("kernel", ["6.0", "6.1"])
def test_mremap_growth_of_a_faulted_vma_does_not_merge_into_an_unfaulted_next(kernel: str) -> None:
    """
    A.B.....   A faulted (AV1), B unfaulted; mremap A to 2 pages in place:
    AAB.....   6.1 asks B with AV1 and 3.0's rule refuses (B's chain is empty): A grows alone, as in 6.0
    """
    k = run_clean(
        kernel, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("mmap", 0, 2, 1, "rw"), ("mremap", 0, 0, 1, 0, 2, ())
    )
    assert shape(k) == (
        "AAB.....",
        ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]", "[2,3) rw- ac pgoff=2 anon=- chain=[]"],
    )
