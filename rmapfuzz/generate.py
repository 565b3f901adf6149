"""How bytes become ops: the one decoder behind the Hypothesis machine and the guided search.

A test case is a :class:`Mix` (which ops may be drawn, how often, with which values, over how many
pages and processes) and a string of *op words*, :data:`OP_BYTES` bytes each.  The first byte of a
word picks an op through a 256-slot table whose slots are shared out in proportion to the mix's
weights (among the ops whose preconditions hold: fork below the process bound, exit above one
process); the other three are the op's arguments as one mixed-radix number.  Arguments are mapped
onto the state the previous ops left, so most ops land somewhere that matters: a pid indexes the
live processes, a fault address or an mprotect/madvise start indexes the mapped pages, mmap and
mremap lengths try first to end where the next VMA begins, a move's target tries first where the
moved range could merge.  A word of four zero bytes is no op (shrinking a word to zero deletes it),
and every byte shrinks towards the simplest op and the smallest arguments.

A :class:`Mix` comes from a named strategy (:meth:`Mix.of`), or from a :data:`HEADER_BYTES`-byte
header drawn per test case over a whole language (:meth:`Mix.from_header`): the strategy-free
search's swarm of mixes, where the all-zero header is the language's base mix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import attrs

from rmapfuzz import ops
from rmapfuzz.model.objects import VM_READ, VM_WRITE
from rmapfuzz.model.syscalls import SyscallMixin
from rmapfuzz.strategy import Strategy

OP_BYTES = 4  # one byte picks the op, three hold its arguments
# The order of the slot table: shrinking lowers the first byte, so the ops that build state come first.
RULE_ORDER = ("mmap", "write", "mprotect", "fork", "munmap", "exit", "read", "madvise", "mremap", "fail_alloc")
FAIL_NTH = range(1, 5)


@attrs.frozen
class Mix:
    """What one test case may draw."""

    window: int  # pages 0 .. window-1
    max_processes: int
    weights: tuple[tuple[str, int], ...]  # (op, weight > 0), in RULE_ORDER
    prots: tuple[str, ...]
    advices: tuple[str, ...]
    mremap_flags: tuple[tuple[str, ...], ...]

    @classmethod
    def of(cls, s: Strategy) -> Mix:
        weights = tuple((op, s.weights[op]) for op in RULE_ORDER if s.weights.get(op, 0) > 0)
        return cls(s.window, s.max_processes, weights, s.prots, s.advices, s.mremap_flags)

    @classmethod
    def for_kernel(cls, s: Strategy, kernel: type[SyscallMixin]) -> Mix:
        """The strategy's mix without the advice and mremap flags ``kernel`` does not have (it would
        answer EINVAL to every one of them): WIPEONFORK/KEEPONFORK before 4.14, DONTUNMAP before 5.7."""
        mix = cls.of(s)
        features = kernel.features
        advices = tuple(a for a in mix.advices if features.wipeonfork or a not in ("wipeonfork", "keeponfork"))
        flags = tuple(f for f in mix.mremap_flags if features.dontunmap or "dontunmap" not in f)
        return attrs.evolve(mix, advices=advices or mix.advices, mremap_flags=flags or mix.mremap_flags)

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(op for op, _ in self.weights)

    def without(self, op: str) -> Mix:
        return attrs.evolve(self, weights=tuple((o, w) for o, w in self.weights if o != op))


# ---- the swarm of mixes over a language ----

# header byte -> window (pages), process bound, an op's weight level, in that order of shrinking
_WINDOWS = (8, 6, 5, 4, 7, 3)
_PROCESSES = (3, 2, 4, 6, 5, 1)
_LEVELS = (None, 0, 1, 2, 4, 8, 16, 32)  # None: the base weight
HEADER_BYTES = 2 + len(RULE_ORDER) + 3


def _subset(values: Sequence[object], mask: int) -> tuple[int, ...]:
    """The indices ``mask`` selects (bit i: value i), or all of them for mask 0."""
    chosen = tuple(i for i in range(len(values)) if mask >> (i % 8) & 1)
    return chosen or tuple(range(len(values)))


def from_header(base: Mix, header: bytes) -> Mix:
    """One test case's mix over ``base``'s language: its window and process bound, each op's
    weight (switched off, or one of several levels, or the base weight; mmap is never switched
    off: without it there is nothing to work on), and a subset of each value set."""
    assert len(header) == HEADER_BYTES
    window = min(base.window, _WINDOWS[header[0] % len(_WINDOWS)])
    procs = min(base.max_processes, _PROCESSES[header[1] % len(_PROCESSES)])
    base_weights = dict(base.weights)
    weights = []
    for i, op in enumerate(RULE_ORDER):
        if op not in base_weights:
            continue
        level = _LEVELS[header[2 + i] % len(_LEVELS)]
        w = base_weights[op] if level is None else level
        if op == "mmap":
            w = max(w, 1)
        if w > 0:
            weights.append((op, w))
    at = 2 + len(RULE_ORDER)
    prots = tuple(base.prots[i] for i in _subset(base.prots, header[at]))
    advices = tuple(base.advices[i] for i in _subset(base.advices, header[at + 1]))
    flags = tuple(base.mremap_flags[i] for i in _subset(base.mremap_flags, header[at + 2]))
    return Mix(window, procs, tuple(weights), prots, advices, flags)


# ---- the decoder ----


def slot_table(weights: Sequence[tuple[str, float]]) -> list[str]:
    """256 slots shared out in proportion to the weights (each op at least one), in order, so slot 0
    is the first op."""
    total = sum(w for _, w in weights)
    counts = [max(1, round(256 * w / total)) for _, w in weights]
    while sum(counts) > 256:
        counts[counts.index(max(counts))] -= 1
    counts[counts.index(max(counts))] += 256 - sum(counts)
    return [op for (op, _), n in zip(weights, counts, strict=True) for _ in range(n)]


ArgSpec = range | tuple[object, ...]


def decode_args(value: int, specs: Sequence[ArgSpec]) -> list[object]:
    """All of an op's arguments from one number: its digits in the mixed radix of the argument
    ranges, first argument least significant (24 random bits leave at most a 1 % skew for the
    largest op, mremap)."""
    out = []
    for spec in specs:
        value, digit = divmod(value, len(spec))
        out.append(spec[digit])
    return out


Builder = Callable[["Decoder", int, SyscallMixin, list[int]], ops.Op]


class Decoder:
    """Op words to ops under one :class:`Mix`."""

    def __init__(self, mix: Mix) -> None:
        self.mix = mix
        w = mix.window
        proc = range(max(mix.max_processes, 1))
        page, count = range(w), range(1, w + 1)
        self.specs: dict[str, list[ArgSpec]] = {
            "mmap": [proc, page, count, mix.prots],
            "munmap": [proc, page, count],
            "mprotect": [proc, page, count, mix.prots],
            "madvise": [proc, page, count, mix.advices],
            "mremap": [proc, page, count, range(4 * w), count, mix.mremap_flags],
            "fork": [proc],
            "exit": [proc],
            "read": [proc, page],
            "write": [proc, page],
            "fail_alloc": [FAIL_NTH],
        }
        self._tables: dict[int, list[str]] = {}

    def table(self, live: int) -> list[str]:
        """The slot table for ``live`` processes (fork needs room for one more, exit one to spare)."""
        table = self._tables.get(live)
        if table is None:
            allowed = [
                (op, w)
                for op, w in self.mix.weights
                if not (op == "fork" and live >= self.mix.max_processes) and not (op == "exit" and live <= 1)
            ]
            table = self._tables[live] = slot_table(allowed or [("mmap", 1)])
        return table

    def decode(self, word: bytes, k: SyscallMixin, live: list[int]) -> ops.Op | None:
        """The op of one word in state ``k`` with processes ``live``; None for the all-zero word."""
        if not any(word):
            return None
        name = self.table(len(live))[word[0]]
        args = decode_args(int.from_bytes(word[1:OP_BYTES], "big"), self.specs[name])
        return _BUILD[name](self, args, k, live)

    # ---- arguments mapped onto the state ----

    def span(self, start: int, pages: int) -> int:
        return min(pages, self.mix.window - start)

    def mapped_page(self, k: SyscallMixin, pid: int, i: int, need: int = 0) -> int:
        """The i-th mapped page of the process (mod their number), preferring VMAs whose flags
        include ``need``: faults, mprotect and madvise land inside a VMA (a write in a writable
        one), so few of them only fail with SEGV or ENOMEM."""
        vmas = k.mms[pid].vmas
        fitting = [v for v in vmas if v.vm_flags & need == need] or vmas
        pages = [a for v in fitting for a in range(v.vm_start, v.vm_end)]
        return pages[i % len(pages)] if pages else i % self.mix.window

    def move_target(self, k: SyscallMixin, pid: int, start: int, pages: int, i: int) -> int:
        """The i-th candidate target of a move: first the addresses where the moved range could
        merge (its own pgoff, where a faulted range lines up again with the memory it came from;
        right after or right before another VMA), then every page of the window."""
        vmas = k.mms[pid].vmas
        src = next((v for v in vmas if v.vm_start <= start < v.vm_end), None)
        mergeable = [] if src is None else [src.vm_pgoff + (start - src.vm_start)]
        mergeable += [v.vm_end for v in vmas] + [v.vm_start - pages for v in vmas]
        window = self.mix.window
        candidates = [a for a in mergeable if 0 <= a < window] + list(range(window))
        return candidates[i % len(candidates)]

    def abutting_pages(self, k: SyscallMixin, pid: int, start: int, i: int) -> int:
        """The i-th candidate length of a range from ``start``: first the length that ends it
        exactly where another VMA begins (where a new or moved range can merge with its next),
        then every length that fits in the window."""
        ends = [v.vm_start - start for v in k.mms[pid].vmas if v.vm_start > start]
        candidates = ends[:1] + list(range(1, self.mix.window - start + 1))
        return candidates[i % len(candidates)]


def _pid(live: list[int], p: object) -> int:
    assert isinstance(p, int)
    return live[p % len(live)]


def _mmap(d: Decoder, a: list[object], k: SyscallMixin, live: list[int]) -> ops.Op:
    p, start, pages, prot = a
    pid = _pid(live, p)
    assert isinstance(start, int) and isinstance(pages, int) and isinstance(prot, str)
    return ops.Mmap(pid, start, d.abutting_pages(k, pid, start, pages), prot)


def _munmap(d: Decoder, a: list[object], k: SyscallMixin, live: list[int]) -> ops.Op:
    p, start, pages = a
    assert isinstance(start, int) and isinstance(pages, int)
    return ops.Munmap(_pid(live, p), start, d.span(start, pages))


def _mprotect(d: Decoder, a: list[object], k: SyscallMixin, live: list[int]) -> ops.Op:
    p, start, pages, prot = a
    pid = _pid(live, p)
    assert isinstance(start, int) and isinstance(pages, int) and isinstance(prot, str)
    start = d.mapped_page(k, pid, start)
    return ops.Mprotect(pid, start, d.span(start, pages), prot)


def _madvise(d: Decoder, a: list[object], k: SyscallMixin, live: list[int]) -> ops.Op:
    p, start, pages, advice = a
    pid = _pid(live, p)
    assert isinstance(start, int) and isinstance(pages, int) and isinstance(advice, str)
    start = d.mapped_page(k, pid, start)
    return ops.Madvise(pid, start, d.span(start, pages), advice)


def _mremap(d: Decoder, a: list[object], k: SyscallMixin, live: list[int]) -> ops.Op:
    p, start, pages, new_start, new_pages, flags = a
    pid = _pid(live, p)
    assert isinstance(start, int) and isinstance(pages, int) and isinstance(new_start, int)
    assert isinstance(new_pages, int) and isinstance(flags, tuple)
    start = d.mapped_page(k, pid, start)
    pages = d.span(start, pages)
    new_start = d.move_target(k, pid, start, pages, new_start) if "fixed" in flags else start
    return ops.Mremap(pid, start, pages, new_start, d.abutting_pages(k, pid, new_start, new_pages), flags)


def _fork(d: Decoder, a: list[object], k: SyscallMixin, live: list[int]) -> ops.Op:
    return ops.Fork(_pid(live, a[0]))


def _exit(d: Decoder, a: list[object], k: SyscallMixin, live: list[int]) -> ops.Op:
    return ops.Exit(_pid(live, a[0]))


def _read(d: Decoder, a: list[object], k: SyscallMixin, live: list[int]) -> ops.Op:
    pid = _pid(live, a[0])
    assert isinstance(a[1], int)
    return ops.Read(pid, d.mapped_page(k, pid, a[1], VM_READ))


def _write(d: Decoder, a: list[object], k: SyscallMixin, live: list[int]) -> ops.Op:
    pid = _pid(live, a[0])
    assert isinstance(a[1], int)
    return ops.Write(pid, d.mapped_page(k, pid, a[1], VM_WRITE))


def _fail_alloc(d: Decoder, a: list[object], k: SyscallMixin, live: list[int]) -> ops.Op:
    assert isinstance(a[0], int)
    return ops.FailAlloc(a[0])


_BUILD: dict[str, Callable[[Decoder, list[object], SyscallMixin, list[int]], ops.Op]] = {
    "mmap": _mmap,
    "munmap": _munmap,
    "mprotect": _mprotect,
    "madvise": _madvise,
    "mremap": _mremap,
    "fork": _fork,
    "exit": _exit,
    "read": _read,
    "write": _write,
    "fail_alloc": _fail_alloc,
}


@functools.lru_cache(maxsize=4096)
def decoder(mix: Mix) -> Decoder:
    """The decoder of a mix, built once (a swarm of test cases shares a few hundred mixes)."""
    return Decoder(mix)
