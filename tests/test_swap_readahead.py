"""Swap readahead and the swap pte's exclusive bit (rmapfuzz/kernels/v6_0.py, from 6.0 on): the rule
behind the live oracle's open L4 divergence of the default strategy (docs/live-oracle.md, "L4
and swap readahead").

A swap-in that cannot skip the swap cache (an entry with more than one user) reads ahead
(ec560175c0b6, 4.14): the entries of the swap ptes around the fault, in the same VMA, go into the
swap cache too.  Such a page is mapped later as it is: on the root anon_vma, unless its swap pte
is exclusive (1493a1913e34), which puts it on the faulting VMA's own anon_vma.

Diagrams: one character per page of the window, one line per process; ``A`` is the VMA, ``.`` a
hole; ``AVn`` the anon_vmas in allocation order, ``<sN>`` a swap entry (``!`` its exclusive bit),
``[cache]`` a page in the swap cache that no pte maps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rmapfuzz.kernels.v6_0 import Linux60, swapin_nr_pages
from rmapfuzz.layout import ptes_line
from rmapfuzz.model.objects import Mm, Pte, SwapSlot, Vma
from tests.helpers import hits, page_at, pte, run_clean, vma_at

MODERN = ("6.0", "6.15", "6.18.8")
OLDER = ("2.6.36", "3.19")

# The default strategy's 12 steps (seed 1 at L0-L4): P1 and P3 are gone from the window by the end.
SHARED_ENTRY_READ_AHEAD = (
    ("mmap", 0, 0, 3, "rw"),
    ("fork", 0),
    ("fork", 0),
    ("write", 1, 1),
    ("fork", 1),
    ("exit", 1),
    ("write", 3, 2),
    ("madvise", 3, 1, 2, "pageout"),
    ("fork", 3),
    ("write", 3, 2),
    ("mmap", 3, 0, 3, "rw"),
    ("read", 4, 1),
)


@pytest.mark.parametrize("kernel", MODERN)
def test_a_read_ahead_entry_left_to_one_user_is_mapped_from_the_swap_cache_on_the_root(kernel: str) -> None:
    """
    P3  AAA  .<s1><s2>   chain [AV2, AV1]; P1's page 1 (AV1) and P3's page 2 (AV2) paged out
    P4  AAA  .<s1><s2>   fork: both entries have two users now, chain [AV3, AV2, AV1]
    P3  write 2: <s2> has two users, no skipping the swap cache: readahead, a window of 8 around
        page 2 clamped to the VMA, reads s1 too: s1 [cache], PG_readahead
    P3  mmap [0,3) over it: s1 has one user left (P4), its page stays in the swap cache
    P4  read 1: a swap-cache hit, so not the fresh exclusive page of a sole entry: the cached page
        is mapped as it is, not exclusive (P4's pte lost the bit at the fork) -> the root AV1
    """
    k = run_clean(kernel, *SHARED_ENTRY_READ_AHEAD[:10])
    slot = pte(k, 4, 1).swap
    assert slot is not None and slot.count == 2 and slot.page is not None and slot.page.readahead
    assert slot.page.mapcount == 0 and slot.page.mapping is None
    k = run_clean(kernel, *SHARED_ENTRY_READ_AHEAD)
    page = page_at(k, 4, 1)
    root = vma_at(k, 4, 1).anon_vma
    assert root is not None and page.mapping is root.root and page.mapping is not root
    assert ptes_line(k.mms[4]).startswith("1:page") and "->AV1@1(ro)" in ptes_line(k.mms[4])
    h = hits(k)
    assert h["swapin_readahead: a neighbour is read into the swap cache"] == 1
    assert h["swap_update_readahead: a readahead hit"] == 1
    assert h["do_swap_page: a sole entry is read into a fresh exclusive page"] == 0


@pytest.mark.parametrize("kernel", OLDER)
def test_no_readahead_before_6_0_in_the_model(kernel: str) -> None:
    """The 2.6.36-3.19 models have neither readahead nor the exclusive bit: P4's read maps a page
    read for it alone, on the root (288468c334e9: a read fault is never exclusive)."""
    k = run_clean(kernel, *SHARED_ENTRY_READ_AHEAD)
    assert hits(k)["swapin_readahead: a window of several pages"] == 0
    page = page_at(k, 4, 1)
    vma = vma_at(k, 4, 1)
    assert vma.anon_vma is not None and page.mapping is vma.anon_vma.root


# P1's page shared by a fork, P1 maps over it, P2 pages it out (one user, no exclusive bit: the
# page was shared) and reads it back: nothing read it ahead, so the sole entry skips the swap cache.
SOLE_ENTRY_NEVER_READ_AHEAD = (
    ("mmap", 0, 0, 2, "rw"),
    ("fork", 0),
    ("write", 1, 0),
    ("fork", 1),
    ("mmap", 1, 0, 2, "rw"),
    ("madvise", 2, 0, 1, "pageout"),
    ("read", 2, 0),
)


@pytest.mark.parametrize("kernel", MODERN)
def test_a_sole_entry_nothing_read_ahead_still_gets_a_fresh_page_on_the_vmas_own_anon_vma(kernel: str) -> None:
    """
    P2  A.  <s1>   one user, no exclusive bit, not in the swap cache
    P2  read 0: SWP_SYNCHRONOUS_IO and one user: a fresh page, certainly exclusive: P2's AV2
    """
    k = run_clean(kernel, *SOLE_ENTRY_NEVER_READ_AHEAD)
    page = page_at(k, 2, 0)
    assert page.mapping is vma_at(k, 2, 0).anon_vma and page.exclusive
    assert hits(k)["do_swap_page: a sole entry is read into a fresh exclusive page"] == 1
    assert hits(k)["do_swap_page: the page is in the swap cache"] == 0


# P1 (a child: its own AV2 under the root AV1) pages out page 0, forks (the entry is shared now),
# writes page 1 and pages it out alone (an exclusive entry), then reads page 0: readahead brings
# page 1's entry into the swap cache; reading page 1 then finds it there.
EXCLUSIVE_ENTRY_READ_AHEAD = (
    ("mmap", 0, 0, 2, "rw"),
    ("write", 0, 0),
    ("fork", 0),
    ("write", 1, 0),
    ("madvise", 1, 0, 1, "pageout"),
    ("fork", 1),
    ("write", 1, 1),
    ("madvise", 1, 1, 1, "pageout"),
    ("read", 1, 0),
    ("read", 1, 1),
)


@pytest.mark.parametrize("kernel", MODERN)
def test_a_read_ahead_page_whose_swap_pte_is_exclusive_goes_to_the_vmas_own_anon_vma(kernel: str) -> None:
    """
    P1  AA  <s1><s2!>   s1 shared with P2 (no bit), s2 P1's alone, exclusive
    P1  read 0: s1 has two users: readahead reads s2 too (s2 [cache]); page 0 -> the root AV1
    P1  read 1: a swap-cache hit with the exclusive bit: RMAP_EXCLUSIVE -> P1's own AV2, left in
        the swap cache (a read does not free it); writable from c18160dba5ff (6.11) on
    """
    k = run_clean(kernel, *EXCLUSIVE_ENTRY_READ_AHEAD[:8])
    assert pte(k, 1, 1).swap_exclusive and not pte(k, 1, 0).swap_exclusive and not pte(k, 2, 0).swap_exclusive
    k = run_clean(kernel, *EXCLUSIVE_ENTRY_READ_AHEAD)
    own = vma_at(k, 1, 0).anon_vma
    assert own is not None and own.root is not own
    assert page_at(k, 1, 0).mapping is own.root
    page = page_at(k, 1, 1)
    assert page.mapping is own and page.exclusive and page.swapcache is not None
    assert pte(k, 1, 1).writable is (kernel != "6.0")


def test_without_the_exclusive_bit_the_read_ahead_page_would_go_to_the_root() -> None:
    """The rule above is what the live kernel showed (docs/live-oracle.md): reading the bit is
    what puts the page on AV2; the 2.6.36 rule alone (a read is never exclusive) gives AV1."""
    from rmapfuzz.kernels import resolve
    from rmapfuzz.model.memory import MemoryMixin

    cls = resolve("6.18.8")
    k = run_clean("6.18.8", *EXCLUSIVE_ENTRY_READ_AHEAD)
    own = vma_at(k, 1, 1).anon_vma
    saved = cls.swapin_exclusive
    try:
        cls.swapin_exclusive = MemoryMixin.swapin_exclusive  # type: ignore[method-assign]
        k2 = run_clean("6.18.8", *EXCLUSIVE_ENTRY_READ_AHEAD)
    finally:
        cls.swapin_exclusive = saved  # type: ignore[method-assign]
    assert own is not None and page_at(k, 1, 1).mapping is own
    assert page_at(k2, 1, 1).mapping is vma_at(k2, 1, 1).anon_vma.root  # type: ignore[union-attr]


def test_fork_clears_the_exclusive_bit_in_both_processes() -> None:
    """
    P0  A  <s1!>   written, paged out alone
    P0, P1 after the fork: <s1> in both, neither exclusive (the entry has two users)
    """
    k = run_clean("6.18.8", ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("madvise", 0, 0, 1, "pageout"))
    assert pte(k, 0, 0).swap_exclusive
    k = run_clean("6.18.8", ("mmap", 0, 0, 1, "rw"), ("write", 0, 0), ("madvise", 0, 0, 1, "pageout"), ("fork", 0))
    assert not pte(k, 0, 0).swap_exclusive and not pte(k, 1, 0).swap_exclusive


# ---- the window (swap_vma_ra_win, __swapin_nr_pages) ----


@pytest.mark.parametrize(
    ("adjacent", "hits", "prev_win", "pages"),
    [
        (False, 4, 0, 8),  # a VMA's first swap-in: an unset state reads as 4 hits -> 6 -> 8
        (False, 0, 8, 4),  # no hits: 1, but at least half the last window
        (False, 0, 4, 2),
        (False, 0, 2, 1),
        (True, 0, 2, 2),  # next to the last fault: 2
        (False, 1, 0, 4),  # hits + 2 rounded up to a power of two, from 4
        (False, 7, 0, 8),  # capped at 2**page-cluster
    ],
)
def test_swapin_nr_pages(adjacent: bool, hits: int, prev_win: int, pages: int) -> None:
    assert swapin_nr_pages(adjacent, hits, 8, prev_win) == pages


UNSET = (None, 0, 4)  # the kernel's 0: 4 hits at no address


def ra(vma: Vma) -> tuple[int | None, int, int]:
    """The VMA's swap_readahead_info: (last fault page, window, hits)."""
    return vma.swap_ra_addr, vma.swap_ra_win, vma.swap_ra_hits


def _shared_swapped_vma(start: int, end: int) -> tuple[Linux60, Vma]:
    """One VMA whose every page is a swap pte of an entry with two users, nothing in the cache."""
    from rmapfuzz.kernels import resolve

    k = resolve("6.18.8")()
    assert isinstance(k, Linux60)
    mm = Mm(pid=0)
    vma = k.vm_area_alloc(mm, start, end, start, 0)
    mm.vmas.append(vma)
    for addr in range(start, end):
        mm.ptes[addr] = Pte(swap=SwapSlot(ident=addr, count=2))
    return k, vma


def _cached(vma: Vma) -> str:
    """``c`` for a page whose entry is in the swap cache, ``r`` if read ahead, ``-`` otherwise."""
    out = ""
    for addr in range(vma.vm_start, vma.vm_end):
        slot = vma.mm.ptes[addr].swap
        assert slot is not None
        out += "-" if slot.page is None else "r" if slot.page.readahead else "c"
    return out


def test_the_window_follows_the_faults() -> None:
    """
    A VMA of 16 pages, all swapped out and shared.
    fault 8 (first): window 8, centred: pages 5..12, 8 itself not marked readahead
    fault 14 (no hit, not adjacent): half the last window, 4: pages 13..16 clamped to the VMA
    fault 2 (no hit): 2, not adjacent: pages 2..3
    fault 3 (adjacent to 2, already cached: a hit, no readahead at all)
    """
    k, vma = _shared_swapped_vma(0, 16)
    k.swapin_readahead(vma, 8)
    assert _cached(vma) == "-----rrrcrrrr---"
    assert ra(vma) == (8, 8, 0)
    k.swapin_readahead(vma, 14)
    assert _cached(vma) == "-----rrrcrrrrrcr"
    assert ra(vma) == (14, 4, 0)
    k.swapin_readahead(vma, 2)
    assert _cached(vma) == "--cr-rrrcrrrrrcr"
    page = vma.mm.ptes[3].swap.page  # type: ignore[union-attr]
    assert page is not None
    k.swap_update_readahead(page, vma, 3)
    assert ra(vma) == (3, 2, 1) and not page.readahead


def test_the_window_stays_in_the_vma_and_moves_with_the_direction() -> None:
    """
    A VMA [4,12): a first fault at 5 reads 4..9 (the centred window [2,10) clamped at 4).  Then a
    fault at 11 after a fault at 12 (the last one was just above): a window of 4 ends at 11.
    """
    k, vma = _shared_swapped_vma(4, 12)
    k.swapin_readahead(vma, 5)
    assert _cached(vma) == "rcrrrr--"
    k2, vma2 = _shared_swapped_vma(4, 16)
    vma2.swap_ra_addr, vma2.swap_ra_win, vma2.swap_ra_hits = 12, 8, 0
    assert k2.swap_vma_ra_win(vma2, 11) == (8, 12)
    vma2.swap_ra_addr, vma2.swap_ra_win, vma2.swap_ra_hits = 10, 8, 0
    assert k2.swap_vma_ra_win(vma2, 11) == (11, 15)


def test_fork_and_split_copy_the_readahead_state() -> None:
    """vm_area_dup() copies the struct, swap_readahead_info included: the child's VMA and both halves
    of a split VMA start from the parent's last fault; a new mapping starts unset."""
    steps = (
        ("mmap", 0, 0, 4, "rw"),
        ("write", 0, 0),
        ("write", 0, 1),
        ("madvise", 0, 0, 2, "pageout"),
        ("fork", 0),
        ("read", 0, 0),
    )
    k = run_clean("6.18.8", *steps, ("fork", 0), ("mprotect", 0, 2, 1, "r"))
    info = ra(vma_at(k, 0, 0))
    assert info[0] == 0 and info != UNSET
    assert ra(vma_at(k, 2, 0)) == info
    assert ra(vma_at(k, 0, 2)) == info
    assert ra(vma_at(k, 1, 0)) == UNSET  # forked before the fault
    k = run_clean("6.18.8", *steps, ("mmap", 0, 5, 1, "rw"))
    assert ra(vma_at(k, 0, 5)) == UNSET


# ---- mremap: an old length of 0 overlaps nothing (6.17's vrm_overlaps) ----


def test_mremap_of_old_length_0_onto_its_own_address_is_efault_on_an_empty_window() -> None:
    """
    ........   mremap([4,4) -> [4,5), maymove|fixed): the ranges only touch, so 6.18's
    check_mremap_params() lets it through to the source lookup: no VMA at 4, EFAULT (found by
    the oracle at L0-L4, seed 4).  6.0 looks the source up even earlier (550a7d60bd5e); 3.19 keeps
    the 2.6.34 overlap test, which calls it EINVAL.
    """
    from rmapfuzz.replay import replay

    step = {"op": "mremap", "pid": 0, "start": 4, "pages": 0, "new_start": 4, "new_pages": 1}
    step["flags"] = ["maymove", "fixed"]
    assert replay([step], "6.18.8", 8).results == ["EFAULT"]
    assert replay([step], "6.0", 8).results == ["EFAULT"]
    assert replay([step], "3.19", 8).results == ["EINVAL"]


# ---- the oracle runs the kernel with the readahead the model assumes ----


def test_the_oracle_sets_the_readahead_settings_for_its_run_and_puts_them_back(tmp_path: Path) -> None:
    """swap.modelled_readahead on stand-in files: a setting that differs is set and restored, one
    that matches is left alone, a missing one is skipped, one that cannot be written is a note."""
    from rmapfuzz.oracle import swap

    cluster, ra, missing = (tmp_path / n for n in ("page-cluster", "vma_ra_enabled", "gone"))
    cluster.write_text("0\n")
    ra.write_text("true\n")
    readonly = Path("/proc/version")  # readable, and not writable even by root
    if not readonly.exists():
        pytest.skip("no /proc/version to stand for a setting that cannot be written")
    settings = ((cluster, "3"), (ra, "true"), (missing, "1"), (readonly, "1"))
    with swap.modelled_readahead(settings) as note:
        assert cluster.read_text().strip() == "3" and ra.read_text().strip() == "true"
        assert f"{cluster} set to 3 for the run (was 0)" in note
        assert "the model assumes 1" in note and str(missing) not in note
    assert cluster.read_text().strip() == "0" and ra.read_text() == "true\n"
