"""PageAnonExclusive and the page side from 6.0 on (rmapfuzz/kernels/v6_0.py): three model rules the
live oracle's L4 found, each against the generation before it.

Diagrams: one character per page of the window, one line per process; ``A`` is the VMA, ``.`` a
hole; ``AVn`` the anon_vmas (AV1 is P0's, the root; AV2 is P1's, forked from it), ``pageN`` the
pages in allocation order, ``<swap>`` a swap entry, ``(w)`` / ``(ro)`` the pte's write bit.
"""

from __future__ import annotations

import pytest

from rmapfuzz.layout import ptes_line
from tests.helpers import hits, page_at, run_clean, vma_at

MODERN = ("6.0", "6.15", "6.18.8")
OLDER = ("2.6.36", "3.19")  # the root rule (288468c334e9) and no exclusive swap-in on a read fault

SOLE_ENTRY_READ = (
    ("mmap", 0, 0, 1, "rw"),
    ("write", 0, 0),
    ("fork", 0),
    ("write", 1, 0),
    ("madvise", 1, 0, 1, "pageout"),
    ("read", 1, 0),
)


@pytest.mark.parametrize("kernel", MODERN)
def test_sole_swap_entry_swaps_in_to_a_fresh_exclusive_page_in_the_vmas_own_anon_vma(kernel: str) -> None:
    """
    P0  A   page1 -> AV1 (ro after the fork)
    P1  A   chain [AV2, AV1]; write: COW copy page2 -> AV2; pageout: <swap> (one user)
            read: do_swap_page() on zram reads the sole entry into a fresh page3, "certainly
            exclusive" (1493a1913e34): RMAP_EXCLUSIVE, so P1's own AV2, not the root AV1.
    6.0 maps it read-only on a read fault; 6.11+ (c18160dba5ff) writable, since the VMA is.
    """
    k = run_clean(kernel, *SOLE_ENTRY_READ)
    page = page_at(k, 1, 0)
    assert page.name == "page3" and page.exclusive
    assert page.mapping is vma_at(k, 1, 0).anon_vma
    assert ptes_line(k.mms[1]) == ("0:page3->AV2@0(ro)" if kernel == "6.0" else "0:page3->AV2@0(w)")
    assert ptes_line(k.mms[0]) == "0:page1->AV1@0(ro)"
    assert hits(k)["do_swap_page: a sole entry is read into a fresh exclusive page"] == 1


@pytest.mark.parametrize("kernel", OLDER)
def test_sole_swap_entry_read_before_5_19_goes_to_the_root(kernel: str) -> None:
    """
    The same steps before 1493a1913e34 (and without SWP_SYNCHRONOUS_IO's swap-cache bypass, 4.15):
    a read fault is never exclusive, so the page goes to the root AV1 (288468c334e9), read-only.
    """
    k = run_clean(kernel, *SOLE_ENTRY_READ)
    assert ptes_line(k.mms[1]) == "0:page3->AV1@0(ro)"
    assert hits(k)["do_swap_page: a sole entry is read into a fresh exclusive page"] == 0


def test_sole_swap_entry_read_then_write_reuses_in_place_on_6_0() -> None:
    """
    6.0 after the read above: page3 is exclusive but read-only; the write fault reuses it at once
    (do_wp_page's ``goto reuse``): no copy, still page3 on AV2.
    """
    k = run_clean("6.0", *SOLE_ENTRY_READ, ("write", 1, 0))
    assert ptes_line(k.mms[1]) == "0:page3->AV2@0(w)"
    assert hits(k)["do_wp_page: an exclusive page is reused where it is"] == 1
    assert hits(k)["do_wp_page: copy a shared page"] == 1  # only P1's first write (before the pageout)


# P0's page is paged out while P0 is its only user (6.x's MADV_PAGEOUT skips shared pages), then
# shared as a swap entry by the fork; P0 reads it back into the swap cache (two users: no bypass),
# so the page's first mapping is not exclusive and goes to the root AV1; P0's write copies it.
SWAPCACHE_PAGE_LEFT_BY_A_COPY = (
    ("mmap", 0, 0, 1, "rw"),
    ("write", 0, 0),
    ("madvise", 0, 0, 1, "pageout"),
    ("fork", 0),
    ("read", 0, 0),
    ("write", 0, 0),
)


@pytest.mark.parametrize("kernel", MODERN)
def test_anonymous_page_keeps_its_anon_vma_when_mapped_again(kernel: str) -> None:
    """
    P0  A   write page1, pageout: <swap>          P1 (fork)  A  <swap>, chain [AV2, AV1]
    P0      read: page2 in the swap cache, first mapping -> AV1 (not exclusive: two users)
    P0      write: COW copy page3 -> AV1; page2 is unmapped, still in the swap cache, still AV1
    P1      write: page2 again, now the sole user: reused exclusively (RMAP_EXCLUSIVE), but page2
            is already anonymous, so __page_set_anon_rmap() keeps AV1 (6.0; __folio_add_anon_rmap()
            in 6.7+) -- P1's own AV2 would be what a fresh mapping got.
    """
    k = run_clean(kernel, *SWAPCACHE_PAGE_LEFT_BY_A_COPY, ("write", 1, 0))
    page = page_at(k, 1, 0)
    assert page.name == "page2" and page.exclusive and page.swapcache is None
    assert ptes_line(k.mms[1]) == "0:page2->AV1@0(w)"
    assert vma_at(k, 1, 0).anon_vma is not page.mapping  # P1's own is AV2
    assert ptes_line(k.mms[0]) == "0:page3->AV1@0(w)"
    assert hits(k)["do_swap_page: write fault, page reused exclusively"] == 1


def test_anonymous_page_mapped_again_before_6_0_in_the_model() -> None:
    """
    The 3.19 model sets the mapping again at the page's new first mapping: page2 moves to AV2.
    (Real kernels from 288468c334e9, 2.6.36, on return early for a page already anonymous; the
    2.6.36-3.19 models leave that out, see kernels/v2_6_36.py.)  2.6.34 maps every swap-in
    non-exclusively (ea90002b0fa7), so there the page goes to the oldest anon_vma, AV1.
    """
    k = run_clean("3.19", *SWAPCACHE_PAGE_LEFT_BY_A_COPY, ("write", 1, 0))
    assert ptes_line(k.mms[1]) == "0:page2->AV2@0(w)"
    k = run_clean("2.6.34", *SWAPCACHE_PAGE_LEFT_BY_A_COPY, ("write", 1, 0))
    assert ptes_line(k.mms[1]) == "0:page2->AV1@0(w)"


WRITE_PROTECT_AND_WRITE = (("write", 1, 0), ("mprotect", 1, 0, 1, "r"), ("mprotect", 1, 0, 1, "rw"), ("write", 1, 0))


def test_cow_write_to_an_exclusive_page_reuses_it_without_moving_it_on_6_0() -> None:
    """
    As above, then P1: mprotect r (the pte is write-protected), mprotect rw, write.
    P1  A   page2 -> AV1, exclusive, (ro)  --write-->  page2 -> AV1 (w)
    6.0's do_wp_page() reuses a PageAnonExclusive page at once (6c287605fd56): no copy, and no
    page_move_anon_rmap() to P1's AV2.
    """
    k = run_clean("6.0", *SWAPCACHE_PAGE_LEFT_BY_A_COPY, *WRITE_PROTECT_AND_WRITE)
    page = page_at(k, 1, 0)
    assert page.name == "page2"
    assert ptes_line(k.mms[1]) == "0:page2->AV1@0(w)"
    assert hits(k)["do_wp_page: an exclusive page is reused where it is"] == 1
    assert hits(k)["do_wp_page: copy a shared page"] == 1  # P0's copy only


@pytest.mark.parametrize("kernel", ("6.15", "6.18.8"))
def test_exclusive_page_made_writable_by_mprotect_keeps_its_anon_vma(kernel: str) -> None:
    """
    The same steps on 6.15+: mprotect rw makes the exclusive page's pte writable at once
    (64fe24a3e05e), so the write does not fault; page2 stays on AV1 either way.
    """
    k = run_clean(kernel, *SWAPCACHE_PAGE_LEFT_BY_A_COPY, *WRITE_PROTECT_AND_WRITE)
    assert ptes_line(k.mms[1]) == "0:page2->AV1@0(w)"
    assert hits(k)["change_protection: an exclusive anon page's pte made writable"] == 1
    assert hits(k)["do_wp_page: an exclusive page is reused where it is"] == 0


def test_cow_write_reuse_before_5_19_moves_the_page() -> None:
    """
    3.19: the write to the write-protected page P1 alone maps reuses it through
    page_move_anon_rmap() (c44b674323f4), onto P1's own AV2.
    P0  A  page1 -> AV1, fork, P0 write: copy page2 -> AV1;  P1 write: reuse page1, moved to AV2.
    6.0 does the same for a page that is not exclusive (fork cleared the bit): it is moved too.
    """
    steps = (("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("fork", 0), ("write", 0, 0), ("write", 1, 0))
    for kernel in ("3.19", "6.0"):
        k = run_clean(kernel, *steps)
        assert ptes_line(k.mms[1]) == "0:page1->AV2@0(w)", kernel
        assert hits(k)["do_wp_page: reuse the page"] == 1
        assert hits(k)["do_wp_page: an exclusive page is reused where it is"] == 0
