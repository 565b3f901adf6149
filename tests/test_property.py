"""Hypothesis property tests over random op sequences (window 8, up to 4 processes, up to 30 steps).

(a) every kernel answers every step with a defined result and never raises;
(b) 2.6.34 without mremap moves (and without fail_alloc: bug C) stays clean;
(c) 2.6.34 with mremap moves only ever breaks an invariant through a move_vma merge (bug M).

Sequences are drawn step by step against a shadow model, so that most steps name a live process
(pids 0-3) and land on mapped pages; the sequence is then judged by a fresh ``replay``.
Deterministic: every test uses the ``rmapfuzz-ci`` profile (derandomized, no deadline).
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmapfuzz import ops
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
    cls = draw(st.sampled_from([ops.Write, ops.Write, ops.Read]))
    op: ops.Op = cls(pid=pid, addr=addr)
    return op


def procs(live: list[int]) -> st.SearchStrategy[ops.Op]:
    if len(live) > MAX_PID:  # up to 4 processes
        return st.builds(ops.Exit, pid=pids(live))
    fork = st.builds(ops.Fork, pid=pids(live))
    return st.one_of(fork, fork, fork, st.builds(ops.Exit, pid=pids(live)))


def no_moves(live: list[int]) -> st.SearchStrategy[ops.Op]:
    return st.one_of(
        mmaps(live),
        munmaps(live),
        mprotects(live),
        mprotects(live),
        madvises(live),
        resizes(live),
        faults(live),
        faults(live),
        faults(live),
        procs(live),
    )


def with_moves(live: list[int]) -> st.SearchStrategy[ops.Op]:
    return st.one_of(no_moves(live), moves(live), moves(live))


def everything(live: list[int]) -> st.SearchStrategy[ops.Op]:
    return st.one_of(with_moves(live), st.builds(ops.FailAlloc, nth=st.integers(1, 4)))


def draw_sequence(data: st.DataObject, kernel: str, strategy: OpStrategy) -> list[ops.Op]:
    """Up to 30 steps: a writable mmap by P0, then ops drawn against a shadow model's live pids."""
    shadow = Runner(kernel, W, invariants=[])
    start, pages = data.draw(ranges(min_pages=1))
    seq: list[ops.Op] = [ops.Mmap(pid=0, start=start, pages=pages, prot=data.draw(st.sampled_from(["rw", "rwx"])))]
    shadow.step(seq[0])
    for _ in range(data.draw(st.integers(4, 29))):
        live = sorted(pid for pid, mm in shadow.kernel.mms.items() if mm.alive)
        if not live:
            break
        MAPPED.clear()
        for pid in live:
            MAPPED[pid] = [a for v in shadow.kernel.mms[pid].vmas for a in range(v.vm_start, v.vm_end)]
        op = data.draw(strategy(live))
        shadow.step(op)
        seq.append(op)
    return seq


def describe(seq: list[ops.Op]) -> str:
    return "\n".join(f"{i}: {ops.describe(op)}" for i, op in enumerate(seq))


@settings(CI, max_examples=100)
@given(st.data())
def test_generated_ops_are_in_the_language(data: st.DataObject) -> None:
    seq = draw_sequence(data, FINAL, everything)
    assert ops.parse_steps([ops.to_json(op) for op in seq], W) == seq


@settings(CI, max_examples=1200)
@given(st.sampled_from(KERNELS), st.data())
def test_a_every_kernel_answers_with_a_defined_result(kernel: str, data: st.DataObject) -> None:
    seq = draw_sequence(data, kernel, everything)
    v = replay(seq, kernel, window=W, stop_at_violation=False)
    assert len(v.results) == len(seq)
    assert set(v.results) <= RESULTS, describe(seq)


@settings(CI, max_examples=3000)
@given(st.data())
def test_b_2634_without_moves_is_clean(data: st.DataObject) -> None:
    seq = draw_sequence(data, FINAL, no_moves)
    v = replay(seq, FINAL, window=W)
    assert v.clean, f"{v.violation}\n{describe(seq)}"


@settings(CI, max_examples=2000)
@given(st.data())
def test_c_2634_violations_come_from_move_vma_only(data: st.DataObject) -> None:
    seq = draw_sequence(data, FINAL, with_moves)
    v = replay(seq, FINAL, window=W)
    if v.violation is not None:
        assert v.violation.invariant == "merge-superset", f"{v.violation}\n{describe(seq)}"
        assert v.violation.message.startswith("move_vma: "), f"{v.violation}\n{describe(seq)}"
        assert v.violation.step is not None and isinstance(seq[v.violation.step], ops.Mremap)
