"""The exhaustive search that proves a reproducer minimal, or finds a shorter one.

Breadth first over the op language, pruned, with canonical-state dedup; the soundness argument for
every pruning is in docs/minimality.md, and the comments name it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import attrs

from rmapfuzz import invariants as inv
from rmapfuzz import ops
from rmapfuzz.corpus import step_shape
from rmapfuzz.kernels import boot
from rmapfuzz.minimize.snapshot import PROT_CLASSES, clone, fingerprint
from rmapfuzz.model.objects import VM_PROT_MASK, VM_WRITE
from rmapfuzz.model.syscalls import SyscallMixin
from rmapfuzz.replay import Runner

MMAP_FLAG_SETS: tuple[tuple[str, ...], ...] = ((), ("noreserve",))
MREMAP_FLAG_SETS: tuple[tuple[str, ...], ...] = (
    (),
    ("dontunmap",),
    ("maymove", "fixed"),
    ("maymove", "fixed", "dontunmap"),
)


def _prots(present: frozenset[str]) -> list[str]:
    """The prot values worth trying in a state: those it holds, plus one fresh value per class."""
    out = [p for p in ops.PROTS if p in present]
    for values in PROT_CLASSES:
        fresh = next((p for p in values if p not in present), None)
        if fresh is not None:
            out.append(fresh)
    return out


def _covered(k: SyscallMixin, pid: int) -> dict[int, int]:
    """addr -> vm_flags for every page of the process's VMAs."""
    return {a: v.vm_flags for v in k.mms[pid].vmas for a in range(v.vm_start, v.vm_end)}


def alphabet(
    k: SyscallMixin,
    present: frozenset[str],
    processes: int,
    fail_nths: Sequence[int],
    writes_only: bool = False,
    pages: tuple[int, int] | None = None,
) -> list[ops.Op]:
    """Every op worth trying in state ``k``: the op language over the window (or only the pages
    ``lo..hi-1`` of ``pages = (lo, hi)``) and the live pids, minus ops that provably change nothing
    (docs/minimality.md, "no-op steps")."""
    lo, w = (0, k.window) if pages is None else pages
    out: list[ops.Op] = []
    live = [pid for pid, mm in sorted(k.mms.items()) if mm.alive]
    prots = _prots(present)
    advices = [a for a in ops.ADVICES if k.madvise_behavior_valid(a)]
    flag_sets = [f for f in MREMAP_FLAG_SETS if k.mremap_flags_valid(frozenset(f))]
    for pid in live:
        covered = _covered(k, pid)
        for addr, vm_flags in sorted(covered.items()):
            if not lo <= addr < w:
                continue
            if vm_flags & VM_WRITE:
                out.append(ops.Write(pid, addr))
            if vm_flags & VM_PROT_MASK and not writes_only:
                out.append(ops.Read(pid, addr))
        if writes_only:
            continue
        for start in range(lo, w):
            for size in range(1, w - start + 1):
                out.extend(ops.Mmap(pid, start, size, prot, flags) for flags in MMAP_FLAG_SETS for prot in prots)
                if any(a in covered for a in range(start, start + size)):
                    out.append(ops.Munmap(pid, start, size))
                    out.extend(ops.Madvise(pid, start, size, advice) for advice in advices)
                if start in covered:
                    out.extend(ops.Mprotect(pid, start, size, prot) for prot in prots)
        for flags in flag_sets:
            for start in range(lo, w):
                for size in range(w - start + 1):
                    if "fixed" not in flags:
                        out.extend(
                            ops.Mremap(pid, start, size, start, new, flags)
                            for new in range(1, w - start + 1)
                            if new != size
                        )
                        continue
                    for new_start in range(lo, w):
                        for new in range(1, w - new_start + 1):
                            if not (new_start <= start < new_start + new or start <= new_start < start + size):
                                out.append(ops.Mremap(pid, start, size, new_start, new, flags))
        if k.next_pid < processes:
            out.append(ops.Fork(pid))
        out.append(ops.Exit(pid))
    if not writes_only:
        out.extend(ops.FailAlloc(nth) for nth in fail_nths)
    # mremaps of 0 pages last: of two witnesses of one length, the first found is the one kept, and
    # Linux 4.17+ refuses to "duplicate" a private mapping (dba58d3b8c50), which the model allows
    return [op for op in out if not _degenerate(op)] + [op for op in out if _degenerate(op)]


def _degenerate(op: ops.Op) -> bool:
    return isinstance(op, ops.Mremap) and op.pages == 0


def language_size(window: int, processes: int, fail_nths: Sequence[int]) -> int:
    """The size of the unpruned op language over the window, ``processes`` pids, the 8 prots (mmap's
    with and without MAP_NORESERVE), the 6 advices, the 6 mremap flag sets and the fail_alloc counts:
    the alphabet a naive search uses."""
    ranges = sum(window - s + 1 for s in range(window))  # pages 0..window-start
    moves = sum(
        1 for s in range(window) for p in range(window - s + 1) for ns in range(window) for n in range(window - ns + 1)
    )
    in_place = sum(window - s + 1 for s in range(window) for _p in range(window - s + 1))
    mmaps = len(ops.PROTS) * len(MMAP_FLAG_SETS)
    per_pid = ranges * (mmaps + len(ops.PROTS) + 1 + len(ops.ADVICES)) + 2 * in_place + 4 * moves + 2 * window + 2
    return processes * per_pid + len(fail_nths)


@attrs.define
class SearchResult:
    """The outcome of :func:`exhaustive`: ``proved``, ``shorter`` (``witness`` is a shortest
    sequence breaking the invariant: every shorter length was exhausted) or ``not proved``
    (``reason`` says why).

    ``same_shape`` tells whether the witness's failing step has the searched shape; when it has
    not, ``shape_complete`` tells whether every sequence of the witness's length was tried for one
    that has (none does), or the budget ran out first.
    """

    status: str
    witness: list[ops.Op] | None
    bound: dict[str, Any]
    reason: str | None
    seconds: float
    same_shape: bool = True
    shape_complete: bool = True


def _run(kernel: str, window: int, path: Sequence[ops.Op]) -> Runner:
    """A runner in the state after a clean prefix, replayed from boot."""
    runner = Runner(kernel, window)
    for op in path:
        runner.run(op)
    return runner


def _branch(base: Runner) -> Runner:
    """A runner on a copy of ``base``'s state that goes on exactly as ``base`` would (the judge's
    fail_alloc shadow included)."""
    runner = Runner(clone(base.kernel), base.window)
    runner.probe.armed = base.probe.armed
    return runner


def processes_used(kernel: str, window: int, steps: Sequence[ops.Op]) -> int:
    """1 + the number of successful forks: the pids the reproducer can name."""
    runner = Runner(kernel, window, invariants=())
    count = 1
    for op in steps:
        result, record, _uaf = runner.run(op)
        if record is None:
            break
        count += isinstance(op, ops.Fork) and result == "ok"
    return count


def pages_spanned(steps: Sequence[ops.Op]) -> tuple[int, int]:
    """(lowest, 1 + highest) page any step names; (0, 0) for none."""
    ranges: list[tuple[int, int]] = []
    for op in steps:
        if isinstance(op, (ops.Read, ops.Write)):
            ranges.append((op.addr, op.addr + 1))
        elif isinstance(op, ops.Mremap):
            ranges.append((op.start, max(op.start + op.pages, op.start + 1)))
            ranges.append((op.new_start, max(op.new_start + op.new_pages, op.new_start + 1)))
        elif isinstance(op, (ops.Mmap, ops.Munmap, ops.Mprotect, ops.Madvise)):
            ranges.append((op.start, max(op.start + op.pages, op.start + 1)))
    if not ranges:
        return 0, 0
    return min(a for a, _ in ranges), max(b for _, b in ranges)


def pages_used(steps: Sequence[ops.Op]) -> int:
    """1 + the highest page any step names (0 for none): the smallest window the steps fit in."""
    return pages_spanned(steps)[1]


def _invariant_classes() -> tuple[tuple[inv.Invariant, ...], tuple[inv.Invariant, ...]]:
    """(transition invariants, state invariants) in catalogue order: the dedup's soundness rests on
    every state invariant being a function of the state the fingerprint serialises
    (docs/minimality.md)."""
    return (
        tuple(i for i in inv.CATALOGUE if i.kind is inv.Kind.TRANSITION),
        tuple(i for i in inv.CATALOGUE if i.kind is inv.Kind.STATE),
    )


def exhaustive(
    kernel: str,
    window: int,
    steps: Sequence[ops.Op],
    invariant: str,
    budget: float = 300.0,
    max_steps: int | None = None,
    max_states: int = 1_000_000,
    shape: str | None = None,
    pages: tuple[int, int] | None = None,
) -> SearchResult:
    """Prove that no sequence shorter than ``steps`` breaks ``invariant`` first (breadth first
    over the pruned alphabet with canonical-state dedup), or find the shortest one that does.

    A sequence counts when its first violating step breaks ``invariant`` (among the invariants
    broken there), whatever its op: the proof covers every shape.  At the first length where one
    is found, the rest of that length is searched for one whose failing step has ``shape``
    (default: that of ``steps``' last step), which is returned in preference.  With ``pages =
    (lo, hi)`` only sequences naming no page outside ``lo..hi-1`` are searched.
    """
    t0 = time.monotonic()
    deadline = t0 + budget
    depth = len(steps) - 1
    if max_steps is not None:
        depth = min(depth, max_steps)
    if shape is None:
        shape = step_shape(steps[-1])
    processes = processes_used(kernel, window, steps)
    fail_nths = list(range(1, max((op.nth for op in steps if isinstance(op, ops.FailAlloc)), default=0) + 1))
    target = (inv.BY_NAME[invariant],)
    transition_checks, state_checks = _invariant_classes()
    by_length = [1]
    stats: dict[str, Any] = {
        "sequences": 0,
        "states": 1,
        "model_errors": 0,
        "alphabet_max": 0,
        "completed_length": 0,
        "states_by_length": by_length,
    }
    bound: dict[str, Any] = {
        "length": depth,
        "window": window,
        "processes": processes,
        "prots": "classes none / read-only (r, x, rx) / writable (rw, w, wx, rwx), renamed",
        "fail_alloc": fail_nths[-1] if fail_nths else 0,
        "language_size": language_size(window if pages is None else pages[1] - pages[0], processes, fail_nths),
        "stats": stats,
    }
    if pages is not None:
        bound["pages"] = list(pages)

    def done(status: str, witness: list[ops.Op] | None = None, reason: str | None = None) -> SearchResult:
        seconds = time.monotonic() - t0
        bound["seconds"] = round(seconds, 3)
        same = witness is None or step_shape(witness[-1]) == shape
        complete = same or reason is None
        return SearchResult(status, witness, bound, reason, seconds, same, complete)

    seen: set[bytes] = set()  # clean states (the state invariants hold in them)
    dead: set[bytes] = set()  # states where a state invariant other than ``invariant`` breaks
    digest, present = fingerprint(boot(kernel, window))
    seen.add(digest)
    frontier: list[tuple[tuple[ops.Op, ...], frozenset[str], bool]] = [((), present, True)]
    other: list[ops.Op] | None = None  # the first witness found, of another shape
    for level in range(depth):
        final = level == depth - 1
        nxt: list[tuple[tuple[ops.Op, ...], frozenset[str], bool]] = []
        for n, (path, present, anon_free) in enumerate(frontier):
            if time.monotonic() > deadline:
                what = f"a {shape} step among the sequences" if other is not None else "sequences"
                return done(
                    "shorter" if other is not None else "not proved",
                    other,
                    f"budget of {budget:g} s exhausted while searching {what} of length {level + 1} ({n} of the "
                    f"{len(frontier)} states of length {level} expanded; every sequence of length <= {level} searched)",
                )
            base = _run(kernel, window, path)
            letters = alphabet(base.kernel, present, processes, fail_nths, final and anon_free, pages)
            stats["alphabet_max"] = max(stats["alphabet_max"], len(letters))
            for op in letters:
                if other is not None and step_shape(op) != shape:
                    continue
                runner = _branch(base)
                stats["sequences"] += 1
                try:
                    _result, record, uaf = runner.run(op)
                except Exception:  # the model failed: not a reproducer (replay would raise)
                    stats["model_errors"] += 1
                    continue
                if record is None:  # the model's own use-after-free: judged at this step
                    hit = uaf is not None and uaf.invariant == invariant
                elif final or other is not None:  # no extension will be searched: judge I only
                    hit = any(v.invariant == invariant for v in runner.judge(record, target))
                else:
                    k = runner.kernel
                    found = runner.judge(record, transition_checks)
                    if not found:
                        digest, now = fingerprint(k)
                        if digest in seen or digest in dead:  # judged already: clean, or dead
                            continue
                        found = runner.judge(record, state_checks)
                        if not found:
                            seen.add(digest)
                            nxt.append(((*path, op), now, not k.anon_vmas and not k.pages))
                            continue
                        if all(v.invariant != invariant for v in found):
                            dead.add(digest)
                            continue
                    else:
                        found += runner.judge(record, state_checks)
                    hit = any(v.invariant == invariant for v in found)
                if not hit:
                    continue
                witness = [*path, op]
                if step_shape(op) == shape:
                    return done("shorter", witness)
                if other is None:
                    other, nxt = witness, []  # nothing longer will be searched
            if len(seen) > max_states:
                return done(
                    "not proved",
                    reason=f"state space: more than {max_states} distinct states while searching length "
                    f"{level + 1} (every sequence of length <= {level} searched)",
                )
        if other is not None:
            return done("shorter", other)
        if not final:
            by_length.append(len(nxt))
        stats["states"] = len(seen)
        stats["completed_length"] = level + 1
        frontier = nxt
    if depth < len(steps) - 1:
        return done(
            "not proved",
            reason=f"--max-steps {max_steps}: only sequences of length <= {depth} searched, the reproducer has "
            f"{len(steps)} steps",
        )
    return done("proved")
