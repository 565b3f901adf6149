"""Replay-based reduction of a failing step sequence, after (or instead of) Hypothesis' shrinking.

Hypothesis shrinks the choices behind a run; this works on the ops themselves, which it can do
much faster and more aggressively because the model is deterministic and a replay costs well under
a millisecond: delete chunks and single steps (deleting a fork deletes its child's steps and
renumbers the later pids, as pids are handed out in fork order), then lower each step's arguments.
A candidate is kept if it still breaks the same invariant at a step with the same op.
"""

from __future__ import annotations

import copy
import hashlib
import marshal
import re
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
_PROT_OF_BITS: tuple[tuple[str, int], ...] = tuple(
    (flags_to_prot(bits), _PROT_CLASS[flags_to_prot(bits)]) for bits in range(VM_PROT_MASK + 1)
)
MREMAP_FLAG_SETS: tuple[tuple[str, ...], ...] = (
    (),
    ("dontunmap",),
    ("maymove", "fixed"),
    ("maymove", "fixed", "dontunmap"),
)
# Kernel attributes that never decide what a later step does: names and statistics only.  The
# anon_vma and page lists are replaced by what is reachable (plus unreachable live objects).
# ``events`` and ``reuse_events`` describe the last step only (cleared before the next one) and are
# judged with that step (the transition invariants below), so they are not part of the state.
_KERNEL_IGNORED = frozenset(
    {
        "events",
        "reuse_events",
        "last_call",
        "alloc_failed",
        "fail_armed",
        "counters",
        "_next_vma",
        "_next_page",
        "_next_swap",
        "window",
        "anon_vmas",
        "pages",
        "mms",
        "external_pins",
    }
)
# The invariants that judge the step rather than the state it leaves: they read the per-step event
# lists.  Every other invariant is a function of the state the fingerprint serialises.
TRANSITION_INVARIANTS = frozenset({"merge-superset", "reuse-safe", "syscall-effect", "fail-injection"})
STATE_INVARIANTS = frozenset(
    {
        "chain-consistency",
        "primary-linked",
        "unfaulted-empty",
        "no-dangling",
        "same-chain",
        "singleton",
        "page-index",
        "rmap-complete",
        "mapcount",
        "pte-prot",
        "counters",
        "bounded-chain",
    }
)
_SCALARS = (int, bool, str, type(None))
_SCALAR_TYPES = frozenset({"int", "bool", "str"})
_Ref = Callable[[object], int | None]
_Flags = Callable[[int], tuple[int, int, int]]
_Serialiser = Callable[[object, _Ref, _Flags, Callable[[object], object]], tuple[object, ...]]
_SERIALISERS: dict[type, _Serialiser | None] = {}
_KERNEL_FIELDS: dict[type, tuple[frozenset[str], list[str]]] = {}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _field_code(cls: type, field: attrs.Attribute[Any]) -> str:
    """The expression serialising one field of ``cls``, chosen by its declared type: scalars as
    they are, objects and lists or int-keyed dicts of objects as reference numbers, anything else
    through the generic encoder."""
    get = f"o.{field.name}"
    kind = (field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")).replace(" ", "")
    if cls is Vma and field.name == "vm_flags":
        return f"fl({get})"
    if kind in _SCALAR_TYPES:
        return get
    if kind.endswith("|None") and _NAME.match(kind[:-5]) and kind[:-5] not in _SCALAR_TYPES:
        return f"ref({get})"
    if _NAME.match(kind) and kind not in _SCALAR_TYPES:
        return f"ref({get})"
    if kind.startswith("list[") and _NAME.match(kind[5:-1]) and kind[5:-1] not in _SCALAR_TYPES:
        return f"tuple(map(ref, {get}))"
    if kind.startswith("dict[int,") and _NAME.match(kind[9:-1]) and kind[9:-1] not in _SCALAR_TYPES:
        return f"tuple([(a, ref(b)) for a, b in {get}.items()])"  # insertion order: checks iterate it
    return f"enc({get})"


def _serialiser(cls: type) -> _Serialiser | None:
    """A compiled function serialising an object of attrs class ``cls`` (every field but
    ``ident``, in declaration order, after the class name), or None for other classes."""
    try:
        return _SERIALISERS[cls]
    except KeyError:
        pass
    fn: _Serialiser | None = None
    if attrs.has(cls):
        parts = [repr(cls.__name__)]
        parts += [_field_code(cls, f) for f in attrs.fields(cls) if f.name != "ident"]
        scope: dict[str, Any] = {}
        exec(f"def ser(o, ref, fl, enc):\n    return ({', '.join(parts)},)\n", scope)
        fn = scope["ser"]
    _SERIALISERS[cls] = fn
    return fn


def fingerprint(k: KernelCore) -> tuple[bytes, frozenset[str]]:
    """A canonical digest of the model state up to renaming of objects and of prot values, and
    the prot values the state holds.

    Every attrs object reachable from the processes (then every live anon_vma and live page,
    reachable or not) is numbered by first appearance in a fixed traversal (pids in order, list
    orders kept) and serialised with all its fields but ``ident``; prot bits are renamed by first
    appearance within their class.  Equal digests mean isomorphic states, which have the same
    futures and the same verdict for every state invariant (docs/minimality.md, "state dedup").
    """
    if getattr(k, "external_pins", None):  # keyed by id(): no op of the language pins an anon_vma
        raise TypeError("fingerprint: external pins cannot be canonicalised")
    ids: dict[int, int] = {}
    queue: list[object] = []
    rank: dict[int, int] = {}
    used = [0] * len(PROT_CLASSES)
    present: set[str] = set()

    def ref(value: object) -> int | None:
        if value is None:
            return None
        i = ids.get(id(value))
        if i is None:
            if _serialiser(type(value)) is None:
                raise TypeError(f"fingerprint: cannot serialise {type(value).__name__}")
            i = ids[id(value)] = len(queue)
            queue.append(value)
        return i

    def fl(value: int) -> tuple[int, int, int]:
        bits = value & VM_PROT_MASK
        r = rank.get(bits)
        prot, c = _PROT_OF_BITS[bits]
        if r is None:
            present.add(prot)
            r = rank[bits] = used[c]
            used[c] += 1
        return value & ~VM_PROT_MASK, c, r

    def enc(value: object) -> object:
        t = type(value)
        if t in _SCALARS:
            return value
        if t is list or t is tuple:
            return ("[", *[enc(v) for v in value])  # type: ignore[attr-defined]
        if t is dict:
            return ("{", *[(key, enc(v)) for key, v in value.items()])  # type: ignore[attr-defined]
        return ("@", ref(value))

    state = vars(k)
    names = _KERNEL_FIELDS.get(type(k))
    if names is None or state.keys() != names[0]:
        names = _KERNEL_FIELDS[type(k)] = (frozenset(state), sorted(set(state) - _KERNEL_IGNORED))
    out: list[object] = [
        tuple([(name, enc(state[name])) for name in names[1]]),
        tuple((pid, ref(mm)) for pid, mm in sorted(k.mms.items())),
    ]
    done = 0

    def drain() -> None:
        nonlocal done
        while done < len(queue):
            obj = queue[done]
            done += 1
            out.append(_SERIALISERS[type(obj)](obj, ref, fl, enc))  # type: ignore[misc]

    drain()
    out.append(("live", *[ref(av) for av in k.anon_vmas if not av.freed and id(av) not in ids]))
    drain()
    out.append(("pages", *[ref(page) for page in k.pages if not page.freed and id(page) not in ids]))
    drain()
    # marshal version 2 writes no back-references: equal structures give equal bytes
    digest = hashlib.blake2b(marshal.dumps(out, 2), digest_size=20).digest()
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
                out.extend(ops.Mmap(pid, start, size, prot) for prot in prots)
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


def _run(kernel: str, window: int, path: Sequence[ops.Op]) -> SyscallMixin:
    """The state after a clean prefix, replayed from boot."""
    k = boot(kernel, window)
    for op in path:
        k.events.clear()
        k.apply(op)
    k.events.clear()
    return k


# ---- copying a state (docs/minimality.md, "copies") ----

_Copier = Callable[[Any, dict[int, Any]], Any]
_COPIERS: dict[type, _Copier] = {}
# kernel attributes that hold the last step's events: a copy starts with none (every step clears them)
_PER_STEP = frozenset({"events", "reuse_events", "last_call"})


def _copy_code(field: attrs.Attribute[Any]) -> str:
    """The statement copying one field of an attrs object ``x`` into ``n``, by its declared type:
    scalars are shared, objects (and lists or int-keyed dicts of them) copied once each through
    ``memo``; anything else goes through ``copy.deepcopy`` with the same memo."""
    get = f"x.{field.name}"
    kind = (field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")).replace(" ", "")
    obj = "(memo.get(id({v})) or CP[type({v})]({v}, memo))"
    if kind in _SCALAR_TYPES:
        value = get
    elif kind.endswith("|None") and _NAME.match(kind[:-5]) and kind[:-5] not in _SCALAR_TYPES:
        value = f"(None if {get} is None else {obj.format(v=get)})"
    elif _NAME.match(kind) and kind not in _SCALAR_TYPES:
        value = obj.format(v=get)
    elif kind.startswith("list[") and _NAME.match(kind[5:-1]) and kind[5:-1] not in _SCALAR_TYPES:
        value = f"[{obj.format(v='y')} for y in {get}]"
    elif kind.startswith("dict[int,") and _NAME.match(kind[9:-1]) and kind[9:-1] not in _SCALAR_TYPES:
        value = f"{{a: {obj.format(v='y')} for a, y in {get}.items()}}"
    else:
        value = f"deepcopy({get}, memo)"
    return f"    n.{field.name} = {value}"


class _Copiers(dict[type, _Copier]):
    """type -> compiled copier, built on first use (attrs classes only)."""

    def __missing__(self, cls: type) -> _Copier:
        if not attrs.has(cls) or hasattr(cls, "__bool__") or hasattr(cls, "__len__"):
            raise TypeError(f"copy: cannot copy {cls.__name__}")  # the copiers test objects for truth
        lines = ["def cp(x, memo):", "    n = new(cls)", "    memo[id(x)] = n"]
        lines += [_copy_code(f) for f in attrs.fields(cls)]
        lines.append("    return n")
        scope: dict[str, Any] = {"new": object.__new__, "cls": cls, "CP": self, "deepcopy": copy.deepcopy}
        exec("\n".join(lines), scope)
        fn: _Copier = scope["cp"]
        self[cls] = fn
        return fn


_CP = _Copiers()


def clone(k: SyscallMixin) -> SyscallMixin:
    """A deep copy of a model state between steps: every object reachable from the kernel's
    attributes copied once (sharing and list and dict orders kept, ``ident`` included), the
    per-step event lists empty.  Behaves as ``k`` does in every future step."""
    memo: dict[int, Any] = {}
    new = object.__new__(type(k))
    out = new.__dict__
    for name, value in vars(k).items():
        t = type(value)
        if name in _PER_STEP:
            out[name] = []
        elif t in _SCALARS:
            out[name] = value
        elif t is dict and name == "mms":
            out[name] = {pid: memo.get(id(mm)) or _CP[type(mm)](mm, memo) for pid, mm in value.items()}
        elif t is list and name in ("anon_vmas", "pages"):
            out[name] = [memo.get(id(y)) or _CP[type(y)](y, memo) for y in value]
        elif attrs.has(t):
            out[name] = memo.get(id(value)) or _CP[t](value, memo)
        elif name == "external_pins" and value:  # keyed by id(): no op of the language pins an anon_vma
            raise TypeError("copy: external pins cannot be copied")
        else:
            out[name] = copy.deepcopy(value, memo)
    return new


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
    """(transition invariants, state invariants) in catalogue order; an invariant in neither set
    is refused, since the dedup's soundness depends on the class (docs/minimality.md)."""
    unknown = set(inv.BY_NAME) - TRANSITION_INVARIANTS - STATE_INVARIANTS
    if unknown:
        raise ValueError(
            f"exhaustive search: invariant {sorted(unknown)[0]!r} is neither a state nor a transition "
            "invariant for the minimality search (rmapfuzz/minimize.py)"
        )
    return (
        tuple(i for i in inv.CATALOGUE if i.name in TRANSITION_INVARIANTS),
        tuple(i for i in inv.CATALOGUE if i.name in STATE_INVARIANTS),
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
    root = boot(kernel, window)
    digest, present = fingerprint(root)
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
            letters = alphabet(base, present, processes, fail_nths, final and anon_free, pages)
            stats["alphabet_max"] = max(stats["alphabet_max"], len(letters))
            for op in letters:
                if other is not None and step_shape(op) != shape:
                    continue
                k = clone(base)
                stats["sequences"] += 1
                try:
                    k.apply(op)
                except inv.Violation as uaf:  # the model's own use-after-free: judged at this step
                    hit = uaf.invariant == invariant
                except Exception:  # the model failed: not a reproducer (replay would raise)
                    stats["model_errors"] += 1
                    continue
                else:
                    if final or other is not None:  # no extension will be searched: judge I only
                        hit = any(v.invariant == invariant for v in inv.check(k, target))
                    else:
                        found = inv.check(k, transition_checks)
                        if not found:
                            digest, now = fingerprint(k)
                            if digest in seen or digest in dead:  # judged already: clean, or dead
                                continue
                            found = inv.check(k, state_checks)
                            if not found:
                                seen.add(digest)
                                nxt.append(((*path, op), now, not k.anon_vmas and not k.pages))
                                continue
                            if all(v.invariant != invariant for v in found):
                                dead.add(digest)
                                continue
                        else:
                            found += inv.check(k, state_checks)
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


def span_search(
    kernel: str, window: int, steps: Sequence[ops.Op], invariant: str, budget: float, shape: str
) -> dict[str, Any] | None:
    """The fallback when the search over the whole window is out of reach: the same search, once
    for every position of a range of pages as wide as the one ``steps`` name, over sequences that
    name no page outside it.  None when the steps span the whole window (nothing to restrict).

    ``status: proved`` means: no sequence shorter than ``steps`` whose pages all lie within some
    ``pages`` consecutive pages of the window breaks ``invariant`` first (same processes and
    fail_alloc bound as the full search)."""
    lo, hi = pages_spanned(steps)
    width = max(hi - lo, 1)
    if width >= window:
        return None
    t0 = time.monotonic()
    totals = {"sequences": 0, "states": 0, "model_errors": 0}
    out: dict[str, Any] = {"pages": width, "positions": window - width + 1, "length": len(steps) - 1}
    status, reason = "proved", None
    for start in range(window - width + 1):
        left = budget - (time.monotonic() - t0)
        result = exhaustive(
            kernel, window, steps, invariant, budget=max(left, 0.001), shape=shape, pages=(start, start + width)
        )
        for key in totals:
            totals[key] += result.bound["stats"][key]
        if result.witness is not None:
            w = result.witness
            status = "not proved"
            reason = (
                f"a {len(w)}-step sequence over pages {start}..{start + width - 1} breaks {invariant} with a "
                f"{step_shape(w[-1])} step: {'; '.join(ops.describe(op) for op in w)}"
            )
            break
        if result.status != "proved":
            status, reason = "not proved", f"pages {start}..{start + width - 1}: {result.reason}"
            break
    out.update(status=status, reason=reason, stats=totals, seconds=round(time.monotonic() - t0, 3))
    return out


def minimize_reproducer(
    rep: Reproducer,
    exhaustive_search: bool = False,
    budget: float = 300.0,
    max_steps: int | None = None,
    window: int | None = None,
) -> Outcome:
    """Shrink ``rep`` greedily (same invariant, same failing-step shape), reduce its window to the
    pages its steps name (or set it to ``window``), then, if asked, prove the result minimal over
    that window or replace it by the shortest reproducer of the same shape the search finds.

    Raises ValueError when the file records no violation or no longer reproduces it, or when
    ``window`` is too small for the steps.
    """
    invariant = rep.invariant
    index = rep.failing_step
    if invariant is None or index is None or rep.kind != "violation":
        raise ValueError(f"{rep.name}: records no violation to minimise")
    steps = rep.steps[: index + 1]
    first = first_violations(rep.kernel, rep.window, steps)
    if first is None or first[0] != index or invariant not in first[1]:
        raise ValueError(f"{rep.name}: no longer breaks {invariant} first at step {index} on {rep.kernel}")
    shape = step_shape(steps[-1])
    best = minimize_more(steps, reproduces(rep.kernel, rep.window, invariant, shape))
    greedy_len = len(best)
    fit = max(pages_used(best), 1)
    if window is not None and window < fit:
        raise ValueError(f"{rep.name}: a window of {window} pages is too small, the steps name page {fit - 1}")
    new_window = fit if window is None else window
    # The model never reads the window size (it only bounds the pages a step may name), so the
    # replay in the new window is the same; checked anyway.
    if new_window != rep.window and not reproduces(rep.kernel, new_window, invariant, shape)(best):
        new_window = rep.window
    search: SearchResult | None = None
    if exhaustive_search:
        search = exhaustive(rep.kernel, new_window, best, invariant, budget=budget, max_steps=max_steps, shape=shape)
        bound = dict(search.bound)
        if new_window != rep.window:
            bound["window_from"] = rep.window
        if search.witness is not None and not search.same_shape:
            # a shorter sequence breaks the invariant through another kind of step (often another
            # bug): the file keeps its steps and its signature, and is recorded as not minimal
            w = search.witness
            m = len(w)
            if search.shape_complete:
                tail = f"no {m}-step sequence breaks it with a {shape} step"
                if m == len(best) - 1:
                    tail += f": the reproducer is minimal among those whose failing step is a {shape} step"
            else:
                tail = f"whether a {m}-step sequence breaks it with a {shape} step is open: {search.reason}"
            record = minimal_record(
                "not proved",
                "exhaustive",
                bound,
                f"not minimal for {invariant}: a {m}-step sequence breaks it with a {step_shape(w[-1])} step "
                f"(kept the {shape} reproducer): {'; '.join(ops.describe(op) for op in w)}; {tail}",
            )
        elif search.witness is not None:
            best = search.witness
            record = minimal_record("proved", "exhaustive", {**bound, "length": len(best) - 1}, None)
        else:
            status = "proved" if search.status == "proved" else "not proved"
            record = minimal_record(status, "exhaustive", bound, search.reason)
            if status == "not proved" and max_steps is None and "--max-steps" not in (search.reason or ""):
                span = span_search(rep.kernel, new_window, best, invariant, budget, shape)
                if span is not None:
                    record["span"] = span
    else:
        bound = {"length": len(best), "window": new_window}
        if new_window != rep.window:
            bound["window_from"] = rep.window
        record = minimal_record(
            "not proved",
            "greedy",
            bound,
            "greedy fixpoint: no chunk deletion, fork fold, argument lowering, merge of adjacent ops or "
            "process swap keeps the failure; shorter sequences were not searched",
        )
    violation = rep.violation if best == rep.steps else _violation(rep.kernel, new_window, best, invariant)
    new = Reproducer(
        kernel=rep.kernel,
        window=new_window,
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
