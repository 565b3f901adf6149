"""Replay-based reduction of a failing step sequence, after (or instead of) Hypothesis' shrinking.

Hypothesis shrinks the choices behind a run; this works on the ops themselves, which it can do
much faster and more aggressively because the model is deterministic and a replay costs well under
a millisecond: delete chunks and single steps (deleting a fork deletes its child's steps and
renumbers the later pids, as pids are handed out in fork order), then lower each step's arguments.
A candidate is kept if it still breaks the same invariant at a step with the same op.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from rmapfuzz import __version__, ops
from rmapfuzz import invariants as inv
from rmapfuzz.corpus import Reproducer, dumps, step_shape, write_atomic
from rmapfuzz.kernels import boot
from rmapfuzz.model.core import KernelCore
from rmapfuzz.model.objects import VM_PROT_MASK, VM_WRITE, Vma, flags_to_prot
from rmapfuzz.model.syscalls import SyscallMixin
from rmapfuzz.replay import Runner, replay

Predicate = Callable[[list[ops.Op]], bool]


def failure_key(
    kernel: str, window: int, steps: Sequence[ops.Op], invariants: Sequence[str] | None
) -> tuple[str, str] | None:
    """(invariant, op of the failing step) for a failing sequence, else None."""
    verdict = replay(steps, kernel, window, invariants)
    v = verdict.violation
    if v is None or v.step is None:
        return None
    return v.invariant, verdict.steps[v.step].op


def same_failure(kernel: str, window: int, key: tuple[str, str], invariants: Sequence[str] | None) -> Predicate:
    def still_fails(steps: list[ops.Op]) -> bool:
        return failure_key(kernel, window, steps, invariants) == key

    return still_fails


def _pid_of(op: ops.Op) -> int | None:
    return None if isinstance(op, ops.FailAlloc) else op.pid


def without(steps: Sequence[ops.Op], drop: set[int], fold: bool = False) -> list[ops.Op]:
    """``steps`` minus the indices in ``drop``, with pids renumbered in fork order.

    Pid numbers are assigned by successful forks in order, so removing a fork removes every
    step of the process it created (or, with ``fold``, hands them to the parent) and shifts the
    later pids down.  Forks are assumed to succeed (a candidate where one does not simply fails
    the check).
    """
    new_of: dict[int, int] = {0: 0}
    old_next, new_next = 1, 1
    out: list[ops.Op] = []
    for i, op in enumerate(steps):
        pid = _pid_of(op)
        keep = i not in drop and (pid is None or pid in new_of)
        if isinstance(op, ops.Fork):
            child = old_next
            old_next += 1
            if keep:
                new_of[child] = new_next
                new_next += 1
            elif fold and pid in new_of:
                new_of[child] = new_of[pid]
        if keep:
            out.append(op if pid is None else attrs.evolve(op, pid=new_of[pid]))  # type: ignore[arg-type]
    return out


def _deletions(n: int) -> Iterator[set[int]]:
    """Chunks from large to single steps, last steps first (the end matters least)."""
    size = max(n // 2, 1)
    while True:
        for start in range(n - size, -1, -size):
            yield set(range(start, min(start + size, n)))
        if size == 1:
            return
        size //= 2


def _simpler_args(op: ops.Op) -> Iterator[ops.Op]:
    """Smaller versions of one step: fewer pages, lower addresses, simpler flags."""
    if isinstance(op, (ops.Read, ops.Write)):
        if op.addr > 0:
            yield attrs.evolve(op, addr=op.addr - 1)
        if isinstance(op, ops.Write):
            yield ops.Read(op.pid, op.addr)
        return
    if isinstance(op, (ops.Fork, ops.Exit, ops.FailAlloc)):
        return
    if op.pages > 1:
        yield attrs.evolve(op, pages=1)
        yield attrs.evolve(op, pages=op.pages - 1)
    if op.start > 0:
        yield attrs.evolve(op, start=op.start - 1)
    if isinstance(op, (ops.Mmap, ops.Mprotect)) and op.prot not in ("rw",):
        yield attrs.evolve(op, prot="rw")
    if isinstance(op, ops.Mremap):
        if op.new_pages > 1:
            yield attrs.evolve(op, new_pages=op.new_pages - 1)
        if "fixed" in op.flags and op.new_start > 0:
            yield attrs.evolve(op, new_start=op.new_start - 1)


def minimize(steps: Sequence[ops.Op], still_fails: Predicate, max_rounds: int = 50) -> list[ops.Op]:
    """Greedy reduction to a fixpoint: no single deletion or argument lowering keeps the failure."""
    best = list(steps)
    for _ in range(max_rounds):
        changed = False
        for drop in _deletions(len(best)):
            if max(drop) >= len(best):
                continue
            candidate = without(best, drop)
            if len(candidate) < len(best) and still_fails(candidate):
                best, changed = candidate, True
                break
        if changed:
            continue
        for i, op in enumerate(best):
            if isinstance(op, ops.Fork):
                candidate = without(best, {i}, fold=True)
                if still_fails(candidate):
                    best, changed = candidate, True
                    break
        if changed:
            continue
        for i, op in enumerate(best):
            for simpler in _simpler_args(op):
                candidate = [*best[:i], simpler, *best[i + 1 :]]
                if still_fails(candidate):
                    best, changed = candidate, True
                    break
            if changed:
                break
        if not changed:
            return best
    return best


def minimize_failure(
    kernel: str, window: int, steps: Sequence[ops.Op], invariants: Sequence[str] | None = None
) -> list[ops.Op]:
    """Minimise a failing sequence for the failure it shows now; a clean one is returned as it is."""
    prefix = list(steps)
    verdict = replay(prefix, kernel, window, invariants)
    if verdict.violation is None or verdict.violation.step is None:
        return prefix
    prefix = prefix[: verdict.violation.step + 1]
    key = (verdict.violation.invariant, prefix[-1].op)
    return minimize(prefix, same_failure(kernel, window, key, invariants))


# ---- the failure a reduction must keep ----


def first_violations(kernel: str, window: int, steps: Sequence[ops.Op]) -> tuple[int, list[str]] | None:
    """(index, invariants) of the first violating step of ``steps`` judged by the whole catalogue."""
    runner = Runner(kernel, window)
    for i, op in enumerate(steps):
        _result, found = runner.step(op)
        if found:
            return i, [v.invariant for v in found]
    return None


def reproduces(kernel: str, window: int, invariant: str, shape: str | None) -> Predicate:
    """The predicate a candidate must meet: its first violating step is its last step, breaks
    ``invariant`` (among the invariants broken there) and, if ``shape`` is given, has that shape
    (op name, plus mremap flags / madvise advice, as in a reproducer's signature)."""

    def still_fails(steps: list[ops.Op]) -> bool:
        first = first_violations(kernel, window, steps)
        if first is None or first[0] != len(steps) - 1 or invariant not in first[1]:
            return False
        return shape is None or step_shape(steps[-1]) == shape

    return still_fails


# ---- greedy extensions: merging neighbours, renaming processes ----

_RangeOp = ops.Mmap | ops.Munmap | ops.Mprotect | ops.Madvise


def _merged(a: ops.Op, b: ops.Op) -> ops.Op | None:
    """One op over the union of two adjacent same-kind range ops (same pid, prot, advice), if the
    ranges touch or overlap."""
    if type(a) is not type(b) or not isinstance(a, (ops.Mmap, ops.Munmap, ops.Mprotect, ops.Madvise)):
        return None
    assert isinstance(b, (ops.Mmap, ops.Munmap, ops.Mprotect, ops.Madvise))
    if a.pid != b.pid or attrs.evolve(a, start=b.start, pages=b.pages) != b:
        return None
    lo, hi = min(a.start, b.start), max(a.start + a.pages, b.start + b.pages)
    if hi - lo > a.pages + b.pages:  # a gap between them
        return None
    return attrs.evolve(a, start=lo, pages=hi - lo)


def _pids(steps: Sequence[ops.Op]) -> list[int]:
    return [p for p in map(_pid_of, steps) if p is not None]


def _swapped(steps: Sequence[ops.Op], a: int, b: int) -> list[ops.Op]:
    """Every step of process ``a`` given to ``b`` and back (forks keep their order, so the pid a
    fork creates is unchanged: the two processes swap roles)."""
    out: list[ops.Op] = []
    for op in steps:
        pid = _pid_of(op)
        if pid in (a, b):
            op = attrs.evolve(op, pid=b if pid == a else a)  # type: ignore[arg-type]
        out.append(op)
    return out


def _extra_candidates(steps: list[ops.Op]) -> Iterator[list[ops.Op]]:
    """Candidates the basic reducer does not try: adjacent merges, then process swaps that lower
    the pid sequence."""
    for i in range(len(steps) - 1):
        merged = _merged(steps[i], steps[i + 1])
        if merged is not None:
            yield [*steps[:i], merged, *steps[i + 2 :]]
    pids = sorted(set(_pids(steps)))
    for x in range(len(pids)):
        for y in range(x + 1, len(pids)):
            candidate = _swapped(steps, pids[x], pids[y])
            if _pids(candidate) < _pids(steps):
                yield candidate


def minimize_more(steps: Sequence[ops.Op], still_fails: Predicate, max_rounds: int = 50) -> list[ops.Op]:
    """:func:`minimize`, then merges and process swaps, repeated to a joint fixpoint."""
    best = minimize(steps, still_fails, max_rounds)
    for _ in range(max_rounds):
        for candidate in _extra_candidates(best):
            if still_fails(candidate):
                best = minimize(candidate, still_fails, max_rounds)
                break
        else:
            return best
    return best


# ---- the exhaustive search ----
#
# The soundness argument for every pruning below is in docs/minimality.md; the comments name it.

# Prot values by class: a bijection of PROTS that keeps the class of every value leaves the model's
# behaviour unchanged (docs/minimality.md, "prot renaming").  The first value of a class is the one
# a fresh value is renamed to.
PROT_CLASSES: tuple[tuple[str, ...], ...] = (("",), ("r", "x", "rx"), ("rw", "w", "wx", "rwx"))
_PROT_CLASS: dict[str, int] = {p: c for c, values in enumerate(PROT_CLASSES) for p in values}
MREMAP_FLAG_SETS: tuple[tuple[str, ...], ...] = (
    (),
    ("dontunmap",),
    ("maymove", "fixed"),
    ("maymove", "fixed", "dontunmap"),
)
# Kernel attributes that never decide what a later step does: names and statistics only.  The
# anon_vma and page lists are replaced by what is reachable (plus unreachable live anon_vmas).
_KERNEL_IGNORED = frozenset(
    {"events", "counters", "_next_vma", "_next_page", "_next_swap", "window", "anon_vmas", "pages", "mms"}
)


def fingerprint(k: KernelCore) -> tuple[bytes, frozenset[str]]:
    """A canonical digest of the model state up to renaming of objects and of prot values, and
    the prot values the state holds.

    Every attrs object reachable from the processes (and every live anon_vma, reachable or not)
    is numbered by first appearance in a fixed traversal (pids in order, list orders kept) and
    serialised with all its fields but ``ident``; prot bits are renamed by first appearance
    within their class.  Equal digests mean isomorphic states, which have the same futures.
    """
    ids: dict[int, int] = {}
    queue: list[object] = []
    rank: dict[str, int] = {}
    used = [0] * len(PROT_CLASSES)
    present: set[str] = set()

    def flags(value: int) -> tuple[int, int, int]:
        prot = flags_to_prot(value)
        present.add(prot)
        cls = _PROT_CLASS[prot]
        if prot not in rank:
            rank[prot] = used[cls]
            used[cls] += 1
        return value & ~VM_PROT_MASK, cls, rank[prot]

    def ref(value: object) -> object:
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, (list, tuple)):
            return tuple(ref(v) for v in value)
        if isinstance(value, dict):
            return tuple(sorted((key, ref(v)) for key, v in value.items()))
        if attrs.has(type(value)):
            key = id(value)
            if key not in ids:
                ids[key] = len(ids)
                queue.append(value)
            return ("@", ids[key])
        raise TypeError(f"fingerprint: cannot serialise {type(value).__name__}")

    out: list[object] = [
        tuple(sorted((name, ref(v)) for name, v in vars(k).items() if name not in _KERNEL_IGNORED)),
        tuple((pid, ref(mm)) for pid, mm in sorted(k.mms.items())),
    ]

    def drain() -> None:
        while len(out) - 2 < len(queue):
            obj = queue[len(out) - 2]
            fields = []
            for field in attrs.fields(type(obj)):  # type: ignore[arg-type]
                if field.name == "ident":
                    continue
                value = getattr(obj, field.name)
                fields.append(flags(value) if isinstance(obj, Vma) and field.name == "vm_flags" else ref(value))
            out.append((type(obj).__name__, tuple(fields)))

    drain()
    live = tuple(ref(av) for av in k.anon_vmas if not av.freed and id(av) not in ids)
    drain()
    out.append(live)
    digest = hashlib.blake2b(repr(out).encode(), digest_size=20).digest()
    return digest, frozenset(present)


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
    k: SyscallMixin, present: frozenset[str], processes: int, fail_nths: Sequence[int], writes_only: bool = False
) -> list[ops.Op]:
    """Every op worth trying in state ``k``: the op language over the window and the live pids,
    minus ops that provably change nothing (docs/minimality.md, "no-op steps")."""
    w = k.window
    out: list[ops.Op] = []
    live = [pid for pid, mm in sorted(k.mms.items()) if mm.alive]
    prots = _prots(present)
    advices = [a for a in ops.ADVICES if k.madvise_behavior_valid(a)]
    flag_sets = [f for f in MREMAP_FLAG_SETS if k.mremap_flags_valid(frozenset(f))]
    for pid in live:
        covered = _covered(k, pid)
        for addr, vm_flags in sorted(covered.items()):
            if vm_flags & VM_WRITE:
                out.append(ops.Write(pid, addr))
            if vm_flags & VM_PROT_MASK and not writes_only:
                out.append(ops.Read(pid, addr))
        if writes_only:
            continue
        for start in range(w):
            for pages in range(1, w - start + 1):
                out.extend(ops.Mmap(pid, start, pages, prot) for prot in prots)
                if any(a in covered for a in range(start, start + pages)):
                    out.append(ops.Munmap(pid, start, pages))
                    out.extend(ops.Madvise(pid, start, pages, advice) for advice in advices)
                if start in covered:
                    out.extend(ops.Mprotect(pid, start, pages, prot) for prot in prots)
        for flags in flag_sets:
            for start in range(w):
                for pages in range(w - start + 1):
                    if "fixed" not in flags:
                        out.extend(
                            ops.Mremap(pid, start, pages, start, new, flags)
                            for new in range(1, w - start + 1)
                            if new != pages
                        )
                        continue
                    for new_start in range(w):
                        for new in range(1, w - new_start + 1):
                            if not (new_start <= start < new_start + new or start <= new_start < start + pages):
                                out.append(ops.Mremap(pid, start, pages, new_start, new, flags))
        if k.next_pid < processes:
            out.append(ops.Fork(pid))
        out.append(ops.Exit(pid))
    if not writes_only:
        out.extend(ops.FailAlloc(nth) for nth in fail_nths)
    return out


def language_size(window: int, processes: int, fail_nths: Sequence[int]) -> int:
    """The size of the unpruned op language over the window, ``processes`` pids, the 8 prots, the
    6 advices, the 6 mremap flag sets and the fail_alloc counts: the alphabet a naive search uses."""
    ranges = sum(window - s + 1 for s in range(window))  # pages 0..window-start
    moves = sum(
        1 for s in range(window) for p in range(window - s + 1) for ns in range(window) for n in range(window - ns + 1)
    )
    in_place = sum(window - s + 1 for s in range(window) for _p in range(window - s + 1))
    per_pid = ranges * (len(ops.PROTS) * 2 + 1 + len(ops.ADVICES)) + 2 * in_place + 4 * moves + 2 * window + 2
    return processes * per_pid + len(fail_nths)


@attrs.define
class SearchResult:
    """The outcome of :func:`exhaustive`: ``proved``, ``shorter`` (``witness`` is a shorter
    reproducer, itself minimal) or ``not proved`` (``reason`` says why)."""

    status: str
    witness: list[ops.Op] | None
    bound: dict[str, Any]
    reason: str | None
    seconds: float


def _run(kernel: str, window: int, path: Sequence[ops.Op]) -> SyscallMixin:
    """The state after a clean prefix (replay from boot: cheaper than copying a model)."""
    k = boot(kernel, window)
    for op in path:
        k.events.clear()
        k.apply(op)
    k.events.clear()
    return k


def processes_used(kernel: str, window: int, steps: Sequence[ops.Op]) -> int:
    """1 + the number of successful forks: the pids the reproducer can name."""
    k = boot(kernel, window)
    count = 1
    for op in steps:
        try:
            result = k.apply(op)
        except inv.Violation:
            break
        count += isinstance(op, ops.Fork) and result == "ok"
    return count


def exhaustive(
    kernel: str,
    window: int,
    steps: Sequence[ops.Op],
    invariant: str,
    budget: float = 300.0,
    max_steps: int | None = None,
    max_states: int = 1_000_000,
) -> SearchResult:
    """Prove that no sequence shorter than ``steps`` breaks ``invariant`` first (breadth first
    over the pruned alphabet with canonical-state dedup), or find the shortest one that does.

    A sequence counts when its first violating step breaks ``invariant`` (among the invariants
    broken there), whatever its op: the proof covers every shape.
    """
    t0 = time.monotonic()
    deadline = t0 + budget
    depth = len(steps) - 1
    if max_steps is not None:
        depth = min(depth, max_steps)
    processes = processes_used(kernel, window, steps)
    fail_nths = list(range(1, max((op.nth for op in steps if isinstance(op, ops.FailAlloc)), default=0) + 1))
    target = inv.BY_NAME[invariant]
    stats = {"sequences": 0, "states": 1, "model_errors": 0, "alphabet_max": 0, "completed_length": 0}
    bound: dict[str, Any] = {
        "length": depth,
        "window": window,
        "processes": processes,
        "prots": "classes none / read-only (r, x, rx) / writable (rw, w, wx, rwx), renamed",
        "fail_alloc": fail_nths[-1] if fail_nths else 0,
        "language_size": language_size(window, processes, fail_nths),
        "stats": stats,
    }

    def done(status: str, witness: list[ops.Op] | None = None, reason: str | None = None) -> SearchResult:
        seconds = time.monotonic() - t0
        bound["seconds"] = round(seconds, 3)
        return SearchResult(status, witness, bound, reason, seconds)

    seen: set[bytes] = set()
    root = boot(kernel, window)
    digest, present = fingerprint(root)
    seen.add(digest)
    frontier: list[tuple[tuple[ops.Op, ...], frozenset[str], bool]] = [((), present, True)]
    for level in range(depth):
        last = level == depth - 1
        nxt: list[tuple[tuple[ops.Op, ...], frozenset[str], bool]] = []
        for path, present, anon_free in frontier:
            base = _run(kernel, window, path)
            letters = alphabet(base, present, processes, fail_nths, writes_only=last and anon_free)
            stats["alphabet_max"] = max(stats["alphabet_max"], len(letters))
            if time.monotonic() > deadline:
                return done(
                    "not proved",
                    reason=f"budget of {budget:g} s exhausted while searching length {level + 1} "
                    f"(every sequence of length <= {level} searched)",
                )
            for op in letters:
                k = _run(kernel, window, path)
                stats["sequences"] += 1
                try:
                    k.apply(op)
                except inv.Violation as uaf:
                    if uaf.invariant == invariant:
                        return done("shorter", [*path, op])
                    continue
                except Exception:  # the model failed: not a reproducer (replay would raise)
                    stats["model_errors"] += 1
                    continue
                if last:  # a walk inside the check may raise a use-after-free: another invariant
                    if any(v.invariant == invariant for v in inv.check(k, [target])):
                        return done("shorter", [*path, op])
                    continue
                found = inv.check(k, inv.CATALOGUE)
                if found:
                    if any(v.invariant == invariant for v in found):
                        return done("shorter", [*path, op])
                    continue
                digest, now = fingerprint(k)
                if digest in seen:
                    continue
                seen.add(digest)
                nxt.append(((*path, op), now, not k.anon_vmas and not k.pages))
            if len(seen) > max_states:
                return done(
                    "not proved",
                    reason=f"state space: more than {max_states} distinct states while searching length "
                    f"{level + 1} (every sequence of length <= {level} searched)",
                )
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


# ---- reproducer files ----


@attrs.define
class Outcome:
    """What ``rmapfuzz minimize`` did to one reproducer."""

    rep: Reproducer  # the (possibly shorter) reproducer, with its ``minimal`` record
    before: int  # steps before
    greedy: int  # steps after the greedy reducer
    search: SearchResult | None


def minimal_record(status: str, method: str, bound: dict[str, Any], reason: str | None) -> dict[str, Any]:
    return {
        "status": status,
        "method": method,
        "bound": bound,
        "reason": reason,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": f"rmapfuzz {__version__}",
    }


def _violation(kernel: str, window: int, steps: Sequence[ops.Op], invariant: str) -> dict[str, Any]:
    verdict = replay(steps, kernel, window)
    found = next(v for v in verdict.violations if v.invariant == invariant)
    return {"invariant": invariant, "step": len(steps) - 1, "message": found.message}


def minimize_reproducer(
    rep: Reproducer, exhaustive_search: bool = False, budget: float = 300.0, max_steps: int | None = None
) -> Outcome:
    """Shrink ``rep`` greedily (same invariant, same failing-step shape), then, if asked, prove the
    result minimal or replace it by the shortest reproducer the search finds.

    Raises ValueError when the file records no violation or no longer reproduces it.
    """
    invariant = rep.invariant
    index = rep.failing_step
    if invariant is None or index is None or rep.kind != "violation":
        raise ValueError(f"{rep.name}: records no violation to minimise")
    steps = rep.steps[: index + 1]
    first = first_violations(rep.kernel, rep.window, steps)
    if first is None or first[0] != index or invariant not in first[1]:
        raise ValueError(f"{rep.name}: no longer breaks {invariant} first at step {index} on {rep.kernel}")
    still_fails = reproduces(rep.kernel, rep.window, invariant, step_shape(steps[-1]))
    best = minimize_more(steps, still_fails)
    greedy_len = len(best)
    search: SearchResult | None = None
    if exhaustive_search:
        search = exhaustive(rep.kernel, rep.window, best, invariant, budget=budget, max_steps=max_steps)
        if search.witness is not None and step_shape(search.witness[-1]) != step_shape(best[-1]):
            # a shorter sequence breaks the invariant through another kind of step (often another
            # bug): the file keeps its steps and its signature, and is recorded as not minimal
            found = "; ".join(ops.describe(op) for op in search.witness)
            record = minimal_record(
                "not proved",
                "exhaustive",
                search.bound,
                f"not minimal for {invariant}: a {len(search.witness)}-step sequence breaks it with a "
                f"{step_shape(search.witness[-1])} step (kept the {step_shape(best[-1])} reproducer): {found}",
            )
        elif search.witness is not None:
            best = search.witness
            record = minimal_record("proved", "exhaustive", search.bound, None)
            record["bound"] = {**search.bound, "length": len(best) - 1}
        else:
            status = "proved" if search.status == "proved" else "not proved"
            record = minimal_record(status, "exhaustive", search.bound, search.reason)
    else:
        record = minimal_record(
            "not proved",
            "greedy",
            {"length": len(best)},
            "greedy fixpoint: no chunk deletion, fork fold, argument lowering, merge of adjacent ops or "
            "process swap keeps the failure; shorter sequences were not searched",
        )
    violation = rep.violation if best == rep.steps else _violation(rep.kernel, rep.window, best, invariant)
    new = Reproducer(
        kernel=rep.kernel,
        window=rep.window,
        steps=list(best),
        violation=violation,
        found=rep.found,
        kind=rep.kind,
        minimal=record,
        path=rep.path,
    )
    return Outcome(new, len(rep.steps), greedy_len, search)


def write_reproducer(rep: Reproducer) -> None:
    """Replace ``rep.path`` atomically with ``rep``."""
    assert rep.path is not None
    write_atomic(Path(rep.path), dumps(rep))
