"""Faults (docs/model.md#faults): zero page, COW copy, reuse with page_move_anon_rmap, SEGV, swap out/in
(docs/model.md#swap-out-and-swap-in), and bug S (docs/model.md#bug-s)."""

from __future__ import annotations

import pytest

from rmapfuzz.layout import ptes_line
from tests.helpers import FINAL, HANNES, KERNELS, RC3, cow, hits, page_at, run, run_clean, shape, step, vma_at, walk


@pytest.mark.parametrize("kernel", KERNELS)
def test_read_maps_zero_page_without_anon_vma(kernel: str) -> None:
    """
    AA   read page 0  ->  zero-page pte, the VMA stays unfaulted
    """
    k = run_clean(kernel, ("mmap", 0, 0, 2, "rw"), ("read", 0, 0))
    assert shape(k) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=- chain=[]"])
    assert ptes_line(k.mms[0]) == "0:zero(ro)"


@pytest.mark.parametrize("kernel", KERNELS)
def test_write_on_zero_page_copies(kernel: str) -> None:
    """
    AA   read 0 (zero page), write 0  ->  COW into a new page of AV1
    """
    k = run_clean(kernel, ("mmap", 0, 0, 2, "rw"), ("read", 0, 0), ("write", 0, 0))
    assert shape(k) == ("AA......", ["[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]"])
    assert ptes_line(k.mms[0]) == "0:page1->AV1@0(w)"
    assert cow(k) == (1, 0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_write_after_fork_copies_into_childs_anon_vma(kernel: str) -> None:
    """
    P0: A (AV1) writes page 0, forks; P1 writes page 0  ->  P1 gets a copy in its own AV2,
    P0's page stays in AV1 with mapcount 1.
    """
    k = run_clean(kernel, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fork", 0), ("write", 1, 0))
    assert ptes_line(k.mms[1]) == "0:page2->AV2@0(w)"
    assert ptes_line(k.mms[0]) == "0:page1->AV1@0(ro)"
    assert page_at(k, 0, 0).mapcount == 1
    assert cow(k)[0] == 1
    assert walk(k, page_at(k, 1, 0)) == [("P1:[0,1)", 0)]


@pytest.mark.parametrize("kernel", KERNELS)
def test_last_user_reuses_and_moves_page_to_own_anon_vma(kernel: str) -> None:
    """
    P0 writes, forks; P0 writes (copy: P0's new page2 in AV1); P1 writes page1 (mapping AV1,
    mapcount 1 now): reuse, and page_move_anon_rmap moves it to P1's own AV2.
    """
    k = run_clean(kernel, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fork", 0), ("write", 0, 0), ("write", 1, 0))
    assert cow(k) == (1, 1)
    assert ptes_line(k.mms[0]) == "0:page2->AV1@0(w)"
    assert ptes_line(k.mms[1]) == "0:page1->AV2@0(w)"
    assert walk(k, page_at(k, 1, 0)) == [("P1:[0,1)", 0)]


@pytest.mark.parametrize("kernel", KERNELS)
def test_read_on_prot_none_is_segv_and_changes_nothing(kernel: str) -> None:
    v = run(kernel, ("mmap", 0, 0, 2, ""), ("read", 0, 0), ("write", 0, 1), ("read", 0, 5))
    assert v.results == ["ok", "SEGV", "SEGV", "SEGV"]
    assert shape(v.final) == ("AA......", ["[0,2) --- pgoff=0 anon=- chain=[]"])
    assert v.final.mms[0].ptes == {}


@pytest.mark.parametrize("kernel", KERNELS)
def test_write_on_read_only_is_segv_and_changes_nothing(kernel: str) -> None:
    """
    A = rw, faulted at 0, then mprotect(r): a write is SEGV, the page stays read-only.
    """
    v = run(kernel, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("mprotect", 0, 0, 1, "r"), ("write", 0, 0))
    assert v.results == ["ok", "ok", "ok", "SEGV"]
    assert ptes_line(v.final.mms[0]) == "0:page1->AV1@0(ro)"
    assert cow(v.final) == (0, 0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_pageout_then_read_and_write_swap_in(kernel: str) -> None:
    """One process: pageout turns the pte into a swap entry; a read swaps in read-only, a write reuses."""
    v = run(kernel, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("madvise", 0, 0, 1, "pageout"))
    k = v.final
    assert v.clean
    assert ptes_line(k.mms[0]) == "0:<swap1>"
    assert hits(k)["try_to_unmap: page mapped once"] == 1
    assert k.apply(step(("read", 0, 0))) == "ok"
    assert ptes_line(k.mms[0]) == "0:page2->AV1@0(ro)"
    assert hits(k)["do_swap_page: read fault"] == 1
    assert k.apply(step(("write", 0, 0))) == "ok"
    assert ptes_line(k.mms[0]) == "0:page2->AV1@0(w)"
    assert hits(k)["do_wp_page: reuse the page"] == 1


@pytest.mark.parametrize("kernel", KERNELS)
def test_write_swap_in_by_sole_user_is_writable(kernel: str) -> None:
    k = run_clean(kernel, ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("madvise", 0, 0, 1, "pageout"), ("write", 0, 0))
    assert ptes_line(k.mms[0]) == "0:page2->AV1@0(w)"
    assert page_at(k, 0, 0).swapcache is None


@pytest.mark.parametrize(("kernel", "mapping"), [(RC3, "AV2"), (HANNES, "AV2"), (FINAL, "AV1")])
def test_shared_swap_in_mapping_rule(kernel: str, mapping: str) -> None:
    """
    P0 writes page 0, forks (P1 chain [AV2, AV1]); pageout swaps both ptes; P1 reads first.
    rc3 (and hannes-v2): the page goes to the first faulter's own AV2.  2.6.34: the oldest AV1.
    """
    k = run(
        kernel,
        ("mmap", 0, 0, 1, "rw"),
        ("write", 0, 0),
        ("fork", 0),
        ("madvise", 0, 0, 1, "pageout"),
        ("read", 1, 0),
    ).final
    assert ptes_line(k.mms[0]) == "0:<swap1>"
    assert ptes_line(k.mms[1]) == f"0:page2->{mapping}@0(ro)"
    own = vma_at(k, 1, 0).anon_vma
    assert own is not None and own.name == "AV2"


BUG_S = (
    ("mmap", 0, 0, 1, "rw"),
    ("write", 0, 0),
    ("fork", 0),
    ("madvise", 0, 0, 1, "pageout"),
    ("read", 1, 0),
    ("read", 0, 0),
)


@pytest.mark.parametrize(("kernel", "expected"), [(RC3, "rmap-complete"), (HANNES, "rmap-complete"), (FINAL, None)])
def test_bug_s(kernel: str, expected: str | None) -> None:
    """
    Bug S: P1's swap-in gives the shared page P1's own AV2; P0 then maps it too, but P0's chain
    [AV1] does not link AV2: the walk from AV2 misses P0.
    """
    v = run(kernel, *BUG_S)
    assert v.results == ["ok"] * 6
    if expected is None:
        assert v.clean
        page = page_at(v.final, 0, 0)
        assert sorted(walk(v.final, page)) == [("P0:[0,1)", 0), ("P1:[0,1)", 0)]
        return
    assert v.violation is not None
    assert (v.violation.invariant, v.violation.step) == (expected, 5)
    assert "misses P0 page 0" in v.violation.message
    assert "P0:[0,1) chain [AV1] does not link AV2" in v.violation.message
