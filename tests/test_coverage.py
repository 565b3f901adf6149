"""Kernel-path coverage (rmapfuzz.coverage): the points each generation can reach are read from its
source, every point a run reaches is one of them, and the reports say what was and was not reached."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from rmapfuzz import coverage
from rmapfuzz.kernels import BUG_PATHS, KERNELS, resolve
from rmapfuzz.replay import Runner
from tests.helpers import hits, run, run_clean

ALL_OPS = {"mmap": 4, "munmap": 2, "mprotect": 3, "mremap": 3, "madvise": 2, "fork": 2, "exit": 1, "read": 2,
           "write": 4, "fail_alloc": 1}  # fmt: skip


def names(kernel: str) -> set[str]:
    return {p.name for p in coverage.points(resolve(kernel))}


def test_every_generation_has_points_named_after_kernel_functions() -> None:
    for name, cls in KERNELS.items():
        points = coverage.points(cls)
        assert len(points) > 40, name
        for p in points:
            assert p.name.startswith(p.function + ": "), p
            assert p.path.startswith("rmapfuzz/") and p.line > 0


def test_overlays_replace_and_add_points() -> None:
    """6.x merges through vma_merge_existing_range()/vma_merge_new_range(): 2.6.34's vma_merge()
    cases are gone from its points; 6.16+61f67c23 adds vma_expand's dup from mremap's source and
    its ENOMEM path (before it, 6.16 has no such dup to fail)."""
    old, new = names("2.6.34-rc3"), names("6.16")
    assert "vma_merge: case 6, prev and next absorb the middle" in old
    assert not any(p.startswith("vma_merge: ") for p in new)
    assert "dup_anon_vma: src faulted, dst unfaulted" in new and "dup_anon_vma: src faulted, dst unfaulted" not in old
    assert names("6.16+61f67c23") - new == {
        "vma_expand: dup from mremap's source (copied_from)",
        "vma_expand: ENOMEM dup'ing mremap's source",
    }
    assert "remap_move: a fixed move of several VMAs" in names("6.18.8") - names("6.16+61f67c23")


def test_every_bug_path_is_a_point_of_every_kernel_that_carries_the_bug() -> None:
    for name, cls in KERNELS.items():
        for bug in cls.bugs:
            assert set(BUG_PATHS[bug]) & names(name), (name, bug)


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_a_run_reaches_only_points_the_source_has(kernel: str) -> None:
    """Random sequences over the whole language: every point hit is in the static set."""
    from bench.walk import Language, random_op

    rng = random.Random(kernel)
    lang = Language(window=6, max_procs=4, prots=("rw", "r", ""),
                    advices=("pageout", "dontneed", "dontfork", "dofork", "wipeonfork", "keeponfork"),
                    mremap_flags=(("maymove", "fixed"), ("maymove", "fixed", "dontunmap"), ()))  # fmt: skip
    hits: Counter[str] = Counter()
    for _ in range(60):
        runner = Runner(kernel, 6, coverage=hits)
        live = [0]
        for _ in range(40):
            op = random_op(rng, live, lang, ALL_OPS)
            result, found = runner.step(op)
            if found:
                break
            if result == "ok" and op.op == "fork":
                live.append(runner.kernel.next_pid - 1)
            elif result == "ok" and op.op == "exit":
                live.remove(op.pid)  # type: ignore[union-attr]
    report = coverage.report(resolve(kernel), hits)
    assert report.foreign == []
    assert len(report.reached) > 20


def test_the_report_lists_reached_and_unreached_points() -> None:
    v = run("2.6.34-rc3", ("mmap", 0, 0, 1, "rw"), ("mmap", 0, 2, 1, "rw"), ("mmap", 0, 1, 1, "rw"))
    assert v.coverage is not None
    report = coverage.report(resolve("2.6.34-rc3"), v.coverage)
    data = report.to_json()
    assert data["hits"]["vma_merge: case 1, prev and next close the hole"] == 1
    assert "vma_merge: case 6, prev and next absorb the middle" in data["unreached"]
    assert data["reached"] == len(report.reached) and data["reachable"] == data["points"] - len(report.beyond)
    text = report.markdown()
    assert "| `vma_merge` | case 1, prev and next close the hole | 1 |" in text
    assert "| `vma_merge` | case 6, prev and next absorb the middle | **never** |" in text


def test_exclusive_reuse_in_place_is_beyond_the_language_from_6_15() -> None:
    """do_wp_page()'s in-place reuse of an exclusive page needs a write-protected pte on one
    (tests/test_swap_exclusive.py reaches it on 6.0); from 6.15 the model's mprotect makes such a
    pte writable and a read swap-in maps it writable, so a campaign can never reach it there."""
    from rmapfuzz import coverage
    from rmapfuzz.kernels import resolve

    point = "do_wp_page: an exclusive page is reused where it is"
    for name in ("6.0", "6.1"):
        assert point in {p.name for p in coverage.reachable(resolve(name))}, name
    for name in ("6.15", "6.16", "current", "7.0-rc"):
        assert "64fe24a3e05e" in coverage.beyond_the_language(resolve(name))[point], name


def test_swap_cache_read_back_is_beyond_the_language_from_6_0() -> None:
    """2.6.34's do_swap_page() reads a swap-cache miss back itself; from 6.0 the model reads every
    miss in first (a sole entry on a synchronous device into a fresh page, any other through
    swapin_readahead()), so that branch is listed as beyond the language there, with the reason.
    The same swap-in (the entry shared by a fork, then faulted by the child) shows both sides."""
    point = "do_swap_page: read the page back into the swap cache"
    shared_swap_in = [("mmap", 0, 0, 2, "rw"), ("write", 0, 0), ("madvise", 0, 0, 2, "pageout"), ("fork", 0),
                      ("read", 1, 0)]  # fmt: skip
    before = hits(run_clean("3.19", *shared_swap_in))
    assert before[point] == 1
    assert point in {p.name for p in coverage.reachable(resolve("3.19"))}
    for name in ("6.0", "6.1.192", "6.12", "6.16", "current", "7.0-rc"):
        after = hits(run_clean(name, *shared_swap_in))
        assert after[point] == 0 and after["swapin_readahead: a window of several pages"] == 1, name
        assert "swapin_readahead()" in coverage.beyond_the_language(resolve(name))[point], name
