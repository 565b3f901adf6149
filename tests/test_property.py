"""Hypothesis property tests over random op sequences (window 8, up to 4 processes, up to 30 steps).

(a) every kernel answers every step with a defined result and never raises;
(b) 2.6.34 without mremap moves (and without fail_alloc: bug C) stays clean;
(c) 2.6.34 with mremap moves only ever breaks an invariant through a move_vma merge (bug M).

Sequences are drawn step by step against a shadow model, so that most steps name a live process
(pids 0-3) and land on mapped pages; the sequence is then judged by a fresh ``replay``.
Deterministic: every test uses the ``rmapfuzz-ci`` profile (derandomized, no deadline).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmapfuzz import ops
from rmapfuzz.invariants import Violation
from rmapfuzz.replay import Runner, replay
from tests.helpers import FINAL, KERNELS

W = 8
MAX_PID = 3
# Writable first: a fault needs a writable mapping to create an anon_vma.
PROTS = st.sampled_from(["rw", "rw", "r", "rwx", "", "w", "x", "rx", "wx"])
RESULTS = {"ok", "EINVAL", "ENOMEM", "EFAULT", "SEGV", "OOM", "ESRCH", "UAF"}

settings.register_profile(
    "rmapfuzz-ci",
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CI = settings.get_profile("rmapfuzz-ci")

OpStrategy = Callable[[list[int]], st.SearchStrategy[ops.Op]]
# Mapped pages of each live pid in the shadow model, refreshed before every draw.
MAPPED: dict[int, list[int]] = {}


def pids(live: list[int]) -> st.SearchStrategy[int]:
    """Mostly a live process; sometimes any pid 0-3 (ESRCH when it does not exist)."""
    return st.one_of(st.sampled_from(live), st.sampled_from(live), st.sampled_from(live), st.integers(0, MAX_PID))


@st.composite
def ranges(draw: st.DrawFn, min_pages: int = 0) -> tuple[int, int]:
    start = draw(st.integers(0, W - 1))
    pages = draw(st.integers(min_pages, W - start))
    return start, pages


@st.composite
def mmaps(draw: st.DrawFn, live: list[int]) -> ops.Op:
    start, pages = draw(ranges())
    return ops.Mmap(pid=draw(pids(live)), start=start, pages=pages, prot=draw(PROTS))


@st.composite
def munmaps(draw: st.DrawFn, live: list[int]) -> ops.Op:
    start, pages = draw(ranges())
    return ops.Munmap(pid=draw(pids(live)), start=start, pages=pages)


@st.composite
def mprotects(draw: st.DrawFn, live: list[int]) -> ops.Op:
    start, pages = draw(ranges())
    return ops.Mprotect(pid=draw(pids(live)), start=start, pages=pages, prot=draw(PROTS))


@st.composite
def madvises(draw: st.DrawFn, live: list[int]) -> ops.Op:
    start, pages = draw(ranges())
    return ops.Madvise(pid=draw(pids(live)), start=start, pages=pages, advice=draw(st.sampled_from(ops.ADVICES)))


@st.composite
def resizes(draw: st.DrawFn, live: list[int]) -> ops.Op:
    """In-place mremap: new_start == start, no flags."""
    start, pages = draw(ranges())
    new_pages = draw(st.integers(0, W - start))
    return ops.Mremap(pid=draw(pids(live)), start=start, pages=pages, new_start=start, new_pages=new_pages)


MOVE_FLAGS = [("maymove", "fixed"), ("maymove", "fixed"), ("maymove", "fixed", "dontunmap"), ("fixed",)]


@st.composite
def moves(draw: st.DrawFn, live: list[int]) -> ops.Op:
    start, pages = draw(ranges())
    new_start, new_pages = draw(ranges())
    return ops.Mremap(
        pid=draw(pids(live)),
        start=start,
        pages=pages,
        new_start=new_start,
        new_pages=new_pages,
        flags=draw(st.sampled_from(MOVE_FLAGS)),
    )


@st.composite
def faults(draw: st.DrawFn, live: list[int]) -> ops.Op:
    """A read or write, mostly at a page the process has mapped."""
    pid = draw(pids(live))
    mapped = MAPPED.get(pid) or list(range(W))
    addr = draw(st.one_of(st.sampled_from(mapped), st.sampled_from(mapped), st.integers(0, W - 1)))
    if draw(st.sampled_from([True, True, False])):
        return ops.Write(pid=pid, addr=addr)
    return ops.Read(pid=pid, addr=addr)


def procs(live: list[int]) -> st.SearchStrategy[ops.Op]:
    if len(live) > MAX_PID:  # up to 4 processes
        return st.builds(ops.Exit, pid=pids(live))
    fork = st.builds(ops.Fork, pid=pids(live))
    return st.one_of(fork, fork, fork, st.builds(ops.Exit, pid=pids(live)))


@functools.cache
def _no_moves(live: tuple[int, ...]) -> st.SearchStrategy[ops.Op]:
    return st.one_of(
        mmaps(list(live)),
        munmaps(list(live)),
        mprotects(list(live)),
        mprotects(list(live)),
        madvises(list(live)),
        resizes(list(live)),
        faults(list(live)),
        faults(list(live)),
        faults(list(live)),
        procs(list(live)),
    )


@functools.cache
def _with_moves(live: tuple[int, ...]) -> st.SearchStrategy[ops.Op]:
    return st.one_of(_no_moves(live), moves(list(live)), moves(list(live)))


@functools.cache
def _everything(live: tuple[int, ...]) -> st.SearchStrategy[ops.Op]:
    return st.one_of(_with_moves(live), st.builds(ops.FailAlloc, nth=st.integers(1, 4)))


# The strategies are built once per set of live pids (building them is most of the cost).
def no_moves(live: list[int]) -> st.SearchStrategy[ops.Op]:
    return _no_moves(tuple(live))


def with_moves(live: list[int]) -> st.SearchStrategy[ops.Op]:
    return _with_moves(tuple(live))


def everything(live: list[int]) -> st.SearchStrategy[ops.Op]:
    return _everything(tuple(live))


@attrs.define
class Drawn:
    """A sequence drawn step by step and judged as it went (Runner is what replay() drives)."""

    steps: list[ops.Op]
    results: list[str]
    violation: Violation | None


def draw_sequence(data: st.DataObject, kernel: str, strategy: OpStrategy, stop_at_violation: bool = True) -> Drawn:
    """Up to 30 steps: a writable mmap by P0, then ops drawn against the live pids and mapped pages."""
    runner = Runner(kernel, W)
    start, pages = data.draw(ranges(min_pages=1))
    first = ops.Mmap(pid=0, start=start, pages=pages, prot=data.draw(st.sampled_from(["rw", "rwx"])))
    drawn = Drawn([], [], None)
    op: ops.Op = first
    for i in range(data.draw(st.integers(5, 30))):
        if i:
            live = sorted(pid for pid, mm in runner.kernel.mms.items() if mm.alive)
            if not live:
                break
            MAPPED.clear()
            for pid in live:
                MAPPED[pid] = [a for v in runner.kernel.mms[pid].vmas for a in range(v.vm_start, v.vm_end)]
            op = data.draw(strategy(live))
        result, found = runner.step(op)
        drawn.steps.append(op)
        drawn.results.append(result)
        if found and drawn.violation is None:
            drawn.violation = found[0]
            if stop_at_violation:
                break
    return drawn


def describe(seq: list[ops.Op]) -> str:
    return "\n".join(f"{i}: {ops.describe(op)}" for i, op in enumerate(seq))


@settings(CI, max_examples=50)
@given(st.data())
def test_generated_ops_are_in_the_language(data: st.DataObject) -> None:
    seq = draw_sequence(data, FINAL, everything).steps
    assert ops.parse_steps([ops.to_json(op) for op in seq], W) == seq


@settings(CI, max_examples=1000)
@given(st.sampled_from(KERNELS), st.data())
def test_a_every_kernel_answers_with_a_defined_result(kernel: str, data: st.DataObject) -> None:
    d = draw_sequence(data, kernel, everything, stop_at_violation=False)
    assert set(d.results) <= RESULTS, describe(d.steps)


def test_a_replay_agrees_with_the_runner() -> None:
    """The drawn sequences are judged by Runner; replay() must give the same verdict."""

    @settings(CI, max_examples=100)
    @given(st.sampled_from(KERNELS), st.data())
    def check(kernel: str, data: st.DataObject) -> None:
        d = draw_sequence(data, kernel, everything)
        v = replay(d.steps, kernel, window=W)
        assert v.results == d.results
        assert (v.violation is None) == (d.violation is None)
        if v.violation is not None and d.violation is not None:
            assert (v.violation.invariant, v.violation.step) == (d.violation.invariant, d.violation.step)

    check()


@settings(CI, max_examples=2500)
@given(st.data())
def test_b_2634_without_moves_is_clean(data: st.DataObject) -> None:
    d = draw_sequence(data, FINAL, no_moves)
    assert d.violation is None, f"{d.violation}\n{describe(d.steps)}"


@settings(CI, max_examples=1200)
@given(st.data())
def test_c_2634_violations_come_from_move_vma_only(data: st.DataObject) -> None:
    d = draw_sequence(data, FINAL, with_moves)
    v = d.violation
    if v is not None:
        assert v.invariant == "merge-superset", f"{v}\n{describe(d.steps)}"
        assert v.message.startswith("move_vma: "), f"{v}\n{describe(d.steps)}"
        assert v.step is not None and isinstance(d.steps[v.step], ops.Mremap)
