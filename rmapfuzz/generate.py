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
header drawn per test case (:class:`Swarm`): the header's first byte picks one of the strategy's
portfolio (other strategies' mixes) or a mix drawn over the strategy's own language
(:func:`from_header`: swarm testing).
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
    steps: int  # ops per test case: its strategy's run length (a portfolio mix keeps its own)
    weights: tuple[tuple[str, int], ...]  # (op, weight > 0), in RULE_ORDER
    prots: tuple[str, ...]
    advices: tuple[str, ...]
    mremap_flags: tuple[tuple[str, ...], ...]
    mremap_zero_old_len: int = 0  # one mremap in this many has an old length of 0 (0: none)
    mmap_flags: tuple[tuple[str, ...], ...] = ((),)

    @classmethod
    def of(cls, s: Strategy) -> Mix:
        weights = tuple((op, s.weights[op]) for op in RULE_ORDER if s.weights.get(op, 0) > 0)
        return cls(s.window, s.max_processes, s.steps, weights, s.prots, s.advices, s.mremap_flags,
                   s.mremap_zero_old_len, s.mmap_flags)  # fmt: skip

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

    def with_rare_op(self, op: str) -> Mix:
        """The mix with ``op`` in one slot of the 256 (0.4 % of the ops drawn), the others' shares as
        they were: there for the search to insert, seldom drawn."""
        scaled = attrs.evolve(self, weights=tuple((o, w * 256) for o, w in self.weights))
        return scaled.with_op(op, 1)

    def with_op(self, op: str, weight: int) -> Mix:
        """The mix with ``op`` drawn at ``weight`` too (kept in RULE_ORDER)."""
        weights = dict(self.weights) | {op: weight}
        return attrs.evolve(self, weights=tuple((o, weights[o]) for o in RULE_ORDER if o in weights))


# ---- the swarm of mixes over a language ----

# header byte -> window (pages), process bound, an op's weight level, in that order of shrinking
_WINDOWS = (8, 6, 5, 4, 7, 3)
_PROCESSES = (3, 2, 4, 6, 5, 1)
# An op's weight in a drawn mix, in halves of its base weight: off in one mix of five (swarm testing's
# feature omission, Groce et al. 2012), else the base weight, half or twice it.  (Absolute
# levels from 1 to 32 made most mixes degenerate: measured, the drawn mixes found 5 of 10 catalogued
# bugs per test case 3 to 10 times less often than these.)
_SCALES = (2, 2, 0, 1, 4)
MIX_BYTES = 2 + len(RULE_ORDER) + 3  # a mix drawn over a language
HEADER_BYTES = 1 + MIX_BYTES  # the portfolio pick, then a mix


def _subset(values: Sequence[object], mask: int) -> tuple[int, ...]:
    """The indices ``mask`` selects (bit i: value i), or all of them for mask 0."""
    chosen = tuple(i for i in range(len(values)) if mask >> (i % 8) & 1)
    return chosen or tuple(range(len(values)))


def from_header(base: Mix, header: bytes) -> Mix:
    """One test case's mix over ``base``'s language from :data:`MIX_BYTES` bytes: its window and
    process bound, each op's weight (switched off, or a multiple of its base weight; mmap is never
    switched off: without it there is nothing to work on), and a subset of each value set."""
    assert len(header) == MIX_BYTES
    window = min(base.window, _WINDOWS[header[0] % len(_WINDOWS)])
    procs = min(base.max_processes, _PROCESSES[header[1] % len(_PROCESSES)])
    base_weights = dict(base.weights)
    weights = []
    for i, op in enumerate(RULE_ORDER):
        if op not in base_weights:
            continue
        w = base_weights[op] * _SCALES[header[2 + i] % len(_SCALES)]
        if op == "mmap":
            w = w or base_weights[op]
        if w > 0:
            weights.append((op, w))
    at = 2 + len(RULE_ORDER)
    prots = tuple(base.prots[i] for i in _subset(base.prots, header[at]))
    advices = tuple(base.advices[i] for i in _subset(base.advices, header[at + 1]))
    flags = tuple(base.mremap_flags[i] for i in _subset(base.mremap_flags, header[at + 2]))
    # mmap's flag sets take the flag byte's high half (mremap's sets, four at most in the named
    # strategies, its low half), so a header picks the same mremap sets as before MAP_NORESERVE
    mmap_flags = tuple(base.mmap_flags[i] for i in _subset(base.mmap_flags, header[at + 2] >> 4))
    return Mix(window, procs, base.steps, tuple(weights), prots, advices, flags, base.mremap_zero_old_len, mmap_flags)


@attrs.frozen
class Swarm:
    """The mixes a strategy's test cases draw: with no header, the strategy's own; with one, a
    portfolio mix (its first byte, from 1) or a mix drawn over the strategy's language (0)."""

    base: Mix
    portfolio: tuple[Mix, ...] = ()

    @classmethod
    def of(cls, s: Strategy, kernel: type[SyscallMixin] | None = None) -> Swarm:
        def mix(t: Strategy) -> Mix:
            return Mix.of(t) if kernel is None else Mix.for_kernel(t, kernel)

        base = mix(s)
        portfolio = tuple(mix(p) for p in s.portfolio_strategies())
        if "fail_alloc" in base.ops:
            # The search injects an allocation failure right before the step that first reached a
            # path (search.Pool.fail_before), which needs fail_alloc in the test case's mix: a
            # portfolio mix without it gets it in one slot (drawn more often, it broke the fork
            # trees that fork-tree's mix exists to build: bench/RESULTS.md).
            portfolio = tuple(m if "fail_alloc" in m.ops else m.with_rare_op("fail_alloc") for m in portfolio)
        return cls(base, portfolio).without(s.without)

    def without(self, ops_out: tuple[str, ...]) -> Swarm:
        """The same swarm with ``ops_out`` left out of every mix (e.g. fail_alloc, for a comparison
        of the paths without allocation failures)."""

        def cut(mix: Mix) -> Mix:
            for op in ops_out:
                mix = mix.without(op)
            return mix

        return Swarm(cut(self.base), tuple(cut(m) for m in self.portfolio))

    @property
    def picks(self) -> int:
        """How many different sources of mixes a header can pick: the portfolio's and the swarm."""
        return 1 + len(self.portfolio)

    def source(self, header: bytes | None) -> int:
        """The source ``header`` picks: a portfolio mix (from 1), or 0 for the strategy's own mix
        (no header) or one drawn over its language."""
        return 0 if header is None else header[0] % self.picks

    def steps(self, header: bytes | None) -> int:
        """The run length of the mix ``header`` picks (:meth:`mix`'s ``steps``, without building it:
        a drawn mix keeps the base's)."""
        pick = self.source(header)
        return self.portfolio[pick - 1].steps if pick else self.base.steps

    def mix(self, header: bytes | None) -> Mix:
        pick = self.source(header)
        if pick:
            return self.portfolio[pick - 1]
        return self.base if header is None else from_header(self.base, header[1:])


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
    largest op, mremap).  :class:`Decoder` takes the digits the same way, op by op."""
    out = []
    for spec in specs:
        value, digit = divmod(value, len(spec))
        out.append(spec[digit])
    return out


class Decoder:
    """Op words to ops under one :class:`Mix`.

    Each op's arguments are the digits of the word's last three bytes in the mixed radix of its
    argument ranges (:func:`decode_args`): a process index, then (by op) a page, a length, a
    protection / advice, a move target and a new length, a flag set; fail_alloc's ``nth``.
    """

    def __init__(self, mix: Mix) -> None:
        self.mix = mix
        self.procs = max(mix.max_processes, 1)
        self.window = mix.window
        self._tables: dict[int, list[str]] = {}
        self._build: dict[str, Callable[[int, SyscallMixin, list[int]], ops.Op]] = {
            "mmap": self._mmap,
            "munmap": self._munmap,
            "mprotect": self._mprotect,
            "madvise": self._madvise,
            "mremap": self._mremap,
            "fork": self._fork,
            "exit": self._exit,
            "read": self._read,
            "write": self._write,
            "fail_alloc": self._fail_alloc,
        }

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
        table = self._tables.get(len(live)) or self.table(len(live))
        return self._build[table[word[0]]]((word[1] << 16) | (word[2] << 8) | word[3], k, live)

    # ---- the ops: digits of the value, then arguments mapped onto the state ----

    def _range(self, value: int, live: list[int]) -> tuple[int, int, int, int]:
        """(pid, start page, pages, the rest of the value): the digits every range op starts with."""
        value, p = divmod(value, self.procs)
        value, start = divmod(value, self.window)
        value, pages = divmod(value, self.window)
        return live[p % len(live)], start, pages + 1, value

    def _mmap(self, value: int, k: SyscallMixin, live: list[int]) -> ops.Op:
        pid, start, pages, value = self._range(value, live)
        prots = self.mix.prots
        value, prot = divmod(value, len(prots))
        flag_sets = self.mix.mmap_flags  # a mix of plain mmaps only draws as it did before MAP_NORESERVE
        flags = flag_sets[value % len(flag_sets)]
        return ops.Mmap(pid, start, self.abutting_pages(k, pid, start, pages), prots[prot], flags)

    def _munmap(self, value: int, k: SyscallMixin, live: list[int]) -> ops.Op:
        pid, start, pages, _ = self._range(value, live)
        return ops.Munmap(pid, start, self.span(start, pages))

    def _mprotect(self, value: int, k: SyscallMixin, live: list[int]) -> ops.Op:
        pid, start, pages, value = self._range(value, live)
        prots = self.mix.prots
        start = self.mapped_page(k, pid, start)
        return ops.Mprotect(pid, start, self.span(start, pages), prots[value % len(prots)])

    def _madvise(self, value: int, k: SyscallMixin, live: list[int]) -> ops.Op:
        pid, start, pages, value = self._range(value, live)
        advices = self.mix.advices
        start = self.mapped_page(k, pid, start)
        return ops.Madvise(pid, start, self.span(start, pages), advices[value % len(advices)])

    def _mremap(self, value: int, k: SyscallMixin, live: list[int]) -> ops.Op:
        pid, start, pages, value = self._range(value, live)
        value, new_start = divmod(value, 4 * self.window)
        value, new_pages = divmod(value, self.window)
        flag_sets = self.mix.mremap_flags
        value, flag_index = divmod(value, len(flag_sets))
        flags = flag_sets[flag_index]
        start = self.mapped_page(k, pid, start)
        pages = self.span(start, pages)
        new_start = self.move_target(k, pid, start, pages, new_start) if "fixed" in flags else start
        new_pages = self.abutting_pages(k, pid, new_start, new_pages + 1)
        # an old length of 0 asks to duplicate the mapping, EINVAL for a private one since dba58d3b8c50:
        # drawn from the word's digits above all others, so a mix without it draws as before
        one_in = self.mix.mremap_zero_old_len
        if one_in and value % one_in == 0:
            pages = 0
        return ops.Mremap(pid, start, pages, new_start, new_pages, flags)

    def _fork(self, value: int, k: SyscallMixin, live: list[int]) -> ops.Op:
        return ops.Fork(live[value % self.procs % len(live)])

    def _exit(self, value: int, k: SyscallMixin, live: list[int]) -> ops.Op:
        return ops.Exit(live[value % self.procs % len(live)])

    def _fault(self, value: int, k: SyscallMixin, live: list[int], need: int) -> tuple[int, int]:
        value, p = divmod(value, self.procs)
        pid = live[p % len(live)]
        return pid, self.mapped_page(k, pid, value % self.window, need)

    def _read(self, value: int, k: SyscallMixin, live: list[int]) -> ops.Op:
        return ops.Read(*self._fault(value, k, live, VM_READ))

    def _write(self, value: int, k: SyscallMixin, live: list[int]) -> ops.Op:
        return ops.Write(*self._fault(value, k, live, VM_WRITE))

    def _fail_alloc(self, value: int, k: SyscallMixin, live: list[int]) -> ops.Op:
        return ops.FailAlloc(FAIL_NTH[value % len(FAIL_NTH)])

    # ---- arguments mapped onto the state ----

    def span(self, start: int, pages: int) -> int:
        return min(pages, self.window - start)

    def mapped_page(self, k: SyscallMixin, pid: int, i: int, need: int = 0) -> int:
        """The i-th mapped page of the process (mod their number), preferring VMAs whose flags
        include ``need``: faults, mprotect and madvise land inside a VMA (a write in a writable
        one), so few of them only fail with SEGV or ENOMEM."""
        vmas = k.mms[pid].vmas
        if not vmas:
            return i % self.window
        fitting = [v for v in vmas if v.vm_flags & need == need] or vmas
        total = sum(v.vm_end - v.vm_start for v in fitting)
        i %= total
        for v in fitting:
            n = v.vm_end - v.vm_start
            if i < n:
                return v.vm_start + i
            i -= n
        raise AssertionError("unreachable")

    def move_target(self, k: SyscallMixin, pid: int, start: int, pages: int, i: int) -> int:
        """The i-th candidate target of a move: first the addresses where the moved range could
        merge (its own pgoff, where a faulted range lines up again with the memory it came from;
        right after or right before another VMA), then every page of the window."""
        vmas = k.mms[pid].vmas
        src = next((v for v in vmas if v.vm_start <= start < v.vm_end), None)
        mergeable = [] if src is None else [src.vm_pgoff + (start - src.vm_start)]
        mergeable += [v.vm_end for v in vmas] + [v.vm_start - pages for v in vmas]
        window = self.window
        candidates = [a for a in mergeable if 0 <= a < window] + list(range(window))
        return candidates[i % len(candidates)]

    def abutting_pages(self, k: SyscallMixin, pid: int, start: int, i: int) -> int:
        """The i-th candidate length of a range from ``start``: first the length that ends it
        exactly where another VMA begins (where a new or moved range can merge with its next),
        then every length that fits in the window."""
        fits = self.window - start
        nxt = next((v.vm_start - start for v in k.mms[pid].vmas if v.vm_start > start), None)
        if nxt is None:
            return i % fits + 1
        i %= fits + 1
        return nxt if i == 0 else i


@functools.lru_cache(maxsize=4096)
def decoder(mix: Mix) -> Decoder:
    """The decoder of a mix, built once (a swarm of test cases shares a few hundred mixes)."""
    return Decoder(mix)
