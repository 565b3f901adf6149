"""Two kernel selftests ported to the op language: tools/testing/selftests/mm/mremap_dontunmap.c and
the anonymous-memory part of tools/testing/selftests/mm/cow.c.

Both selftests check what memory reads back (memset a byte, memcmp it later).  The model has no
data; page identity stands for it.  "The destination contains the source's bytes" becomes "the
destination's ptes map the very pages the source's ptes mapped" (``page_at(...) is ...``); "the
source reads as zeroes" becomes "the source keeps its VMA but has no pte" (a read would fault in
the zero page); "the child still reads the old values" becomes "the child still maps the page it
mapped before the parent wrote, and the parent maps another one".  Every step must answer "ok",
as every selftest step is asserted (BUG_ON / ksft_test_result_fail), and the whole sequence is
replayed once more with the invariants checked (:func:`tests.helpers.run_clean`).  The facts are
the kernel's, the code is not.

Mapping onto the window (:data:`WINDOW` pages): a selftest ``mmap(NULL, ...)`` becomes a MAP_FIXED
mmap at a free place of the window, and ``mremap(..., MREMAP_MAYMOVE | MREMAP_DONTUNMAP, NULL)``
(the kernel picks the address) a MREMAP_FIXED move to a hole of the window two pages or more away
from every other mapping, so nothing merges that would not merge in the kernel's free area.  A
``memset`` of a range is a write to each of its pages; a ``memcmp`` or ``memcpy`` of a range a read
of each page.  After fork() the child is pid 1; the selftest's pipes only order the two
processes' steps, which the op sequence does already.

Versions (torvalds/linux; the model's generations, overlays left out):

* mremap_dontunmap.c came with MREMAP_DONTUNMAP itself (e346b3813067, 5.7; Brian Geffon's
  selftest in the same series).  The model has MREMAP_DONTUNMAP from 6.0 on, with 1583aa278f5f
  (a wholly moved source VMA drops its anon_vma, so it reads as unfaulted).  Run on
  :data:`GENS`.
* cow.c's anonymous tests check PageAnonExclusive-era COW (6c287605fd56, 1493a1913e34, 5.19);
  the model's first generation with that page side is 6.0.  Run on :data:`GENS`.  The mprotect()
  variant meets change_protection()'s MM_CP_TRY_CHANGE_WRITABLE (64fe24a3e05e, modelled from 6.12
  on: rmapfuzz/kernels/v6_12.py), which must leave a COW-shared page's pte read-only.

Ported:

* mremap_dontunmap.c: mremap_dontunmap_simple, mremap_dontunmap_simple_fixed,
  mremap_dontunmap_partial_mapping, mremap_dontunmap_partial_mapping_overwrite (and
  kernel_support_for_mremap_dontunmap's probe, a PROT_NONE one-page move).
* cow.c, anon_test_cases run_with_base_page and run_with_base_page_swap (MADV_PAGEOUT first; the
  model's swap needs no set-up on these generations, as in tests/test_swap_exclusive.py):
  "Basic COW after fork()" (test_cow_in_parent) and "Basic COW after fork() with mprotect()
  optimization" (test_cow_in_parent_mprotect).  The other direction the table's comment names (the
  child writes, the parent keeps its page) cow.c checks only through do_test_vmsplice_in_parent;
  it is ported here without the vmsplice() pin.
* cow.c, non_anon_test_cases "Basic COW" (test_cow) run_with_zeropage: both mappings are private
  anonymous memory, so the op language expresses it.

Not ported, because the op language cannot express them:

* mremap_dontunmap_simple_shmem: a memfd MAP_SHARED mapping; the model has private anonymous memory only.
* cow.c test_vmsplice_in_child, _in_child_mprotect, _before_fork, _after_fork: vmsplice() takes an R/O GUP pin.
* cow.c test_iouring_ro, test_iouring_fork: an io_uring fixed buffer (a longterm R/W pin).
* cow.c test_ro_pin_on_shared, _on_ro_previously_shared, _on_ro_exclusive (and their GUP-fast
  twins), non-anon test_ro_pin, test_ro_fast_pin: the gup_test debugfs pin; no pins in the model.
* cow.c run_with_thp, _thp_swap, _pte_mapped_thp(_swap), _single_pte_of_thp(_swap),
  _partial_mremap_thp, _partial_shared_thp: THP (MADV_HUGEPAGE, mTHP sizes); the model has base pages only.
* cow.c anon_thp_test_cases (test_anon_thp_collapse_*): MADV_COLLAPSE of a THP.
* cow.c run_with_hugetlb, run_with_memfd_hugetlb: hugetlb pages.
* cow.c run_with_huge_zeropage: the huge zero page (THP).
* cow.c run_with_memfd, run_with_tmpfile: file and shmem page-cache pages.
* KSM, userfaultfd and mlock do not appear in either file's anonymous tests; the model has none.

Diagrams: one character per window page, one line per process (or per moment), ``A``/``B`` the
test's VMAs, lower case where a pte maps a page, ``.`` a hole; ``pageN`` are the pages in
allocation order.
"""

from __future__ import annotations

import pytest

from rmapfuzz.model.objects import Page
from rmapfuzz.model.syscalls import SyscallMixin
from tests.helpers import StepTuple, hits, page_at, pte, run_clean, step, vma_at

WINDOW = 32
GENS = ("6.0", "6.1", "6.12", "6.15", "6.16", "6.18.8", "7.0-rc")
DONTUNMAP = ("maymove", "fixed", "dontunmap")
MADE_WRITABLE = "change_protection: an exclusive anon page's pte made writable"


def start(gen: str, *ts: StepTuple) -> SyscallMixin:
    """A fresh ``gen`` after the steps, each of which must answer "ok"."""
    return run_clean(gen, *ts, window=WINDOW)


def then(k: SyscallMixin, *ts: StepTuple) -> None:
    """Go on with the same kernel (so page objects keep their identity); each step must answer "ok"."""
    for t in ts:
        assert k.apply(step(t)) == "ok", t


def fill(pid: int, first: int, pages: int) -> tuple[StepTuple, ...]:
    """``memset`` of ``pages`` pages from ``first``: one write per page."""
    return tuple(("write", pid, a) for a in range(first, first + pages))


def pages(k: SyscallMixin, pid: int, first: int, n: int) -> list[Page]:
    return [page_at(k, pid, a) for a in range(first, first + n)]


def assert_same_pages(k: SyscallMixin, pid: int, first: int, want: list[Page]) -> None:
    got = pages(k, pid, first, len(want))
    assert all(g is w for g, w in zip(got, want, strict=True)), ([p.name for p in got], [p.name for p in want])


def assert_no_ptes(k: SyscallMixin, pid: int, first: int, n: int) -> None:
    """The range reads as zero-fill: its VMA is there, no pte (nor swap entry) is."""
    for a in range(first, first + n):
        vma_at(k, pid, a)
        assert a not in k.mms[pid].ptes, f"P{pid}:{a} still has a pte"


# ---- mremap_dontunmap.c ----


@pytest.mark.parametrize("gen", GENS)
def test_kernel_support_for_mremap_dontunmap(gen: str) -> None:
    """
    A...............   one PROT_NONE page, moved with MREMAP_DONTUNMAP: the move succeeds (the
    A.......B.......   selftest's probe for kernel support), and both ranges munmap cleanly
    """
    k = start(gen, ("mmap", 0, 0, 1, ""), ("mremap", 0, 0, 1, 8, 1, DONTUNMAP))
    assert (vma_at(k, 0, 0).vm_start, vma_at(k, 0, 0).vm_end) == (0, 1)
    assert (vma_at(k, 0, 8).vm_start, vma_at(k, 0, 8).vm_end) == (8, 9)
    then(k, ("munmap", 0, 8, 1), ("munmap", 0, 0, 1))
    assert not k.mms[0].vmas


@pytest.mark.parametrize("gen", GENS)
def test_mremap_dontunmap_simple(gen: str) -> None:
    """
    aaaaa.....................   A [0,5) rw, memset: page1..page5
    AAAAA.....aaaaa...........   MREMAP_DONTUNMAP to [10,15) (the kernel's choice in the selftest):
                                 the ptes moved, the source keeps its VMA without a pte
    """
    setup: tuple[StepTuple, ...] = (("mmap", 0, 0, 5, "rw"), *fill(0, 0, 5))
    k = start(gen, *setup)
    source = pages(k, 0, 0, 5)
    move: StepTuple = ("mremap", 0, 0, 5, 10, 5, DONTUNMAP)
    then(k, move)
    assert_same_pages(k, 0, 10, source)
    assert_no_ptes(k, 0, 0, 5)
    assert (vma_at(k, 0, 0).vm_start, vma_at(k, 0, 0).vm_end) == (0, 5)
    assert (vma_at(k, 0, 10).vm_start, vma_at(k, 0, 10).vm_end) == (10, 15)
    # 1583aa278f5f: the wholly moved source gives up its anon_vma
    assert vma_at(k, 0, 0).anon_vma is None
    then(k, ("munmap", 0, 10, 5), ("munmap", 0, 0, 5))
    run_clean(gen, *setup, move, ("munmap", 0, 10, 5), ("munmap", 0, 0, 5), window=WINDOW)


@pytest.mark.parametrize("gen", GENS)
def test_mremap_dontunmap_simple_fixed(gen: str) -> None:
    """
    ..........bbbbb...........   dest B [10,15) rw, memset 'X': page1..page5
    aaaaa.....bbbbb...........   source A [0,5) rw, memset 'a': page6..page10
    AAAAA.....aaaaa...........   MREMAP_FIXED|MREMAP_DONTUNMAP onto B: B's pages are gone, the
                                 destination maps page6..page10, the source keeps a pte-less VMA
    """
    setup: tuple[StepTuple, ...] = (
        ("mmap", 0, 10, 5, "rw"),
        *fill(0, 10, 5),
        ("mmap", 0, 0, 5, "rw"),
        *fill(0, 0, 5),
    )
    k = start(gen, *setup)
    dest_old = pages(k, 0, 10, 5)
    source = pages(k, 0, 0, 5)
    move: StepTuple = ("mremap", 0, 0, 5, 10, 5, DONTUNMAP)
    then(k, move)
    assert_same_pages(k, 0, 10, source)
    assert all(p.freed and p.mapcount == 0 for p in dest_old)
    assert_no_ptes(k, 0, 0, 5)
    assert (vma_at(k, 0, 10).vm_start, vma_at(k, 0, 10).vm_end) == (10, 15)
    then(k, ("munmap", 0, 10, 5), ("munmap", 0, 0, 5))
    run_clean(gen, *setup, move, ("munmap", 0, 10, 5), ("munmap", 0, 0, 5), window=WINDOW)


@pytest.mark.parametrize("gen", GENS)
def test_mremap_dontunmap_partial_mapping(gen: str) -> None:
    """
    aaaaaaaaaa................   A [0,10) rw, memset: page1..page10
    aaaaaAAAAA..........aaaaa.   its last five pages MREMAP_DONTUNMAP'ed to [20,25) (the kernel's
                                 choice in the selftest): [0,5) keeps page1..page5, [5,10) has no
                                 pte, the destination maps page6..page10
    """
    setup: tuple[StepTuple, ...] = (("mmap", 0, 0, 10, "rw"), *fill(0, 0, 10))
    k = start(gen, *setup)
    head, tail = pages(k, 0, 0, 5), pages(k, 0, 5, 5)
    move: StepTuple = ("mremap", 0, 5, 5, 20, 5, DONTUNMAP)
    then(k, move)
    assert_same_pages(k, 0, 0, head)
    assert_no_ptes(k, 0, 5, 5)
    assert_same_pages(k, 0, 20, tail)
    assert (vma_at(k, 0, 20).vm_start, vma_at(k, 0, 20).vm_end) == (20, 25)
    then(k, ("munmap", 0, 20, 5), ("munmap", 0, 0, 10))
    run_clean(gen, *setup, move, ("munmap", 0, 20, 5), ("munmap", 0, 0, 10), window=WINDOW)


@pytest.mark.parametrize("gen", GENS)
def test_mremap_dontunmap_partial_mapping_overwrite(gen: str) -> None:
    """
    aaaaa.....................   source A [0,5) rw, memset 'a': page1..page5
    aaaaa.....bbbbbbbbbb......   dest B [10,20) rw, memset 'X': page6..page15
    AAAAA.....aaaaabbbbb......   MREMAP_FIXED|MREMAP_DONTUNMAP of A onto B's first half: [10,15)
                                 maps page1..page5, [15,20) keeps page11..page15, A has no pte
    """
    setup: tuple[StepTuple, ...] = (
        ("mmap", 0, 0, 5, "rw"),
        *fill(0, 0, 5),
        ("mmap", 0, 10, 10, "rw"),
        *fill(0, 10, 10),
    )
    k = start(gen, *setup)
    source = pages(k, 0, 0, 5)
    overwritten, kept = pages(k, 0, 10, 5), pages(k, 0, 15, 5)
    move: StepTuple = ("mremap", 0, 0, 5, 10, 5, DONTUNMAP)
    then(k, move)
    assert_no_ptes(k, 0, 0, 5)
    assert_same_pages(k, 0, 10, source)
    assert_same_pages(k, 0, 15, kept)
    assert all(p.freed for p in overwritten)
    then(k, ("munmap", 0, 10, 10), ("munmap", 0, 0, 5))
    run_clean(gen, *setup, move, ("munmap", 0, 10, 10), ("munmap", 0, 0, 5), window=WINDOW)


# ---- cow.c: anonymous base pages ----


def base_page(swapout: bool) -> tuple[StepTuple, ...]:
    """do_run_with_base_page(): one rw page, populated; with ``swapout``, MADV_PAGEOUT."""
    populate: tuple[StepTuple, ...] = (("mmap", 0, 0, 1, "rw"), ("write", 0, 0))
    return (*populate, ("madvise", 0, 0, 1, "pageout")) if swapout else populate


SWAPOUT = [pytest.param(False, id="base_page"), pytest.param(True, id="base_page_swap")]


@pytest.mark.parametrize("swapout", SWAPOUT)
@pytest.mark.parametrize("mprotect", [pytest.param(False, id="plain"), pytest.param(True, id="mprotect")])
@pytest.mark.parametrize("gen", GENS)
def test_cow_in_parent(gen: str, mprotect: bool, swapout: bool) -> None:
    """test_cow_in_parent / test_cow_in_parent_mprotect (do_test_cow_in_parent, child_memcmp_fn).

    P0  a   page1 (rw)                     with swapout: <swap> (the selftest skips unless the
                                           pagemap says swapped; here the pte must be a swap entry)
    P0  a   fork
    P1  a   memcpy (read): the child maps the page (swapped in first: page2, from the swap cache)
    P0  a   [mprotect r, mprotect rw: the page is COW-shared, so even with 64fe24a3e05e the pte
            stays read-only]
    P0  a   memset (write): COW, P0 gets a fresh page
    P1  a   memcmp (read): the child still maps the page it copied from: no leak into the child
    """
    setup = (*base_page(swapout), ("fork", 0), ("read", 1, 0))
    k = start(gen, *setup)
    if swapout:
        assert pte(k, 0, 0).swap is not None, "MADV_PAGEOUT did not swap the page out"
    childs = page_at(k, 1, 0)
    protect: tuple[StepTuple, ...] = (("mprotect", 0, 0, 1, "r"), ("mprotect", 0, 0, 1, "rw")) if mprotect else ()
    then(k, *protect)
    if mprotect and not swapout:
        assert not pte(k, 0, 0).writable, "mprotect() made a COW-shared page writable"
    rest: tuple[StepTuple, ...] = (("write", 0, 0), ("read", 1, 0))
    then(k, *rest)
    assert page_at(k, 1, 0) is childs
    assert page_at(k, 0, 0) is not childs
    assert pte(k, 0, 0).writable and not pte(k, 1, 0).writable
    assert hits(k)[MADE_WRITABLE] == 0
    assert hits(k)["do_wp_page: copy a shared page"] == 1
    then(k, ("exit", 1))
    run_clean(gen, *setup, *protect, *rest, ("exit", 1), window=WINDOW)


@pytest.mark.parametrize("swapout", SWAPOUT)
@pytest.mark.parametrize("gen", GENS)
def test_cow_in_child(gen: str, swapout: bool) -> None:
    """The other direction anon_test_cases' comment names (do_test_vmsplice_in_parent without its
    vmsplice() pin): the child writes, the parent keeps its page.

    P0  a   page1 (rw), [pageout: <swap>], fork; P0 reads (maps the page, swapped in first)
    P1  a   memset (write): COW, the child gets a fresh page
    P0  a   read: P0 still maps the page it read before
    """
    setup = (*base_page(swapout), ("fork", 0), ("read", 0, 0))
    k = start(gen, *setup)
    parents = page_at(k, 0, 0)
    rest: tuple[StepTuple, ...] = (("write", 1, 0), ("read", 0, 0))
    then(k, *rest)
    assert page_at(k, 0, 0) is parents
    assert page_at(k, 1, 0) is not parents
    assert pte(k, 1, 0).writable
    assert hits(k)["do_wp_page: copy a shared page"] == 1
    run_clean(gen, *setup, *rest, ("exit", 1), window=WINDOW)


@pytest.mark.parametrize("gen", GENS)
def test_cow_with_shared_zeropage(gen: str) -> None:
    """non_anon_test_cases "Basic COW" (test_cow) with run_with_zeropage.

    A.B   mem A rw, smem B r; a read of each maps the shared zero page
    a.B   memset mem (write): A gets a fresh page; B still maps the zero page (no pte page)
    """
    setup: tuple[StepTuple, ...] = (("mmap", 0, 0, 1, "rw"), ("mmap", 0, 2, 1, "r"), ("read", 0, 0), ("read", 0, 2))
    k = start(gen, *setup)
    assert pte(k, 0, 0).page is None and pte(k, 0, 2).page is None
    then(k, ("write", 0, 0))
    assert page_at(k, 0, 0).mapcount == 1 and pte(k, 0, 0).writable
    smem = pte(k, 0, 2)
    assert smem.present and smem.page is None and not smem.writable
    run_clean(gen, *setup, ("write", 0, 0), window=WINDOW)
