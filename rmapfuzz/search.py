"""The coverage-guided search: test cases that reached rare kernel paths, mutated to go further.

A test case (:class:`Case`) is a mix header (see :mod:`rmapfuzz.generate`; none for a strategy
with a fixed mix) and a string of op words.  :func:`execute` runs one on a model kernel with a
judge and records which coverage points (:mod:`rmapfuzz.coverage`) it reached, after which word
each was first reached, and how often.

:class:`Pool` keeps the test cases that were the first to reach a point or to reach it a new number
of times (AFL's hit-count buckets), and for every point the case that reached it soonest.  It
proposes the next case three ways, and :class:`Arms` shares the time between them by what each
has recently found (new points and new hit-count buckets per second), the way a fuzzer's scheduler
would:

* ``fresh``: a new random test case (with a freshly drawn mix: swarm testing);
* ``mutate``: a kept case that reached a rarely reached point, mutated: cut right after the word
  that reached the point and continued at random (the state that made the point reachable is the
  precondition of its rare neighbours), or edited word by word, or spliced with another kept case,
  or given another mix;
* ``hypothesis``: a run of Hypothesis' own generator over the same state machine (it draws the same
  bytes, so what it finds joins the pool); the campaign runs it (:mod:`rmapfuzz.campaign`).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from rmapfuzz import generate, ops
from rmapfuzz.generate import FAIL_NTH, HEADER_BYTES, OP_BYTES, Swarm
from rmapfuzz.invariants import Violation
from rmapfuzz.kernels import Kernel
from rmapfuzz.model.syscalls import SyscallMixin
from rmapfuzz.replay import Runner


@attrs.frozen
class Case:
    """One test case: the mix header (None: the strategy's own mix) and the op words."""

    header: bytes | None
    words: bytes

    def to_bytes(self) -> bytes:
        """The database form: a flag byte, the header if any, the words."""
        return (b"\x01" + self.header if self.header is not None else b"\x00") + self.words

    @classmethod
    def from_bytes(cls, data: bytes) -> Case | None:
        """The case stored by :meth:`to_bytes`, or None for bytes that are not one."""
        if not data or data[0] not in (0, 1):
            return None
        if data[0] == 1:
            if len(data) < 1 + HEADER_BYTES:
                return None
            return cls(data[1 : 1 + HEADER_BYTES], data[1 + HEADER_BYTES :])
        return cls(None, data[1:])

    @property
    def length(self) -> int:
        return len(self.words) // OP_BYTES


@attrs.define
class Outcome:
    """What running a case did."""

    ops: list[ops.Op]  # the steps executed, the failing one included
    results: list[str]  # each step's answer
    hits: Counter[str]  # coverage points reached, with counts
    first: dict[str, int]  # point -> the word after which it was first reached
    violations: list[Violation]  # at the failing step (empty when clean)
    words: int  # words consumed
    live: list[int]  # how many processes were alive before each word


class Stepper(Protocol):
    """What :func:`execute` drives: a :class:`rmapfuzz.replay.Runner`, or a pair of them
    (:class:`rmapfuzz.pair.PairRunner`); ops are decoded against ``kernel``'s state."""

    @property
    def kernel(self) -> SyscallMixin: ...

    def step(self, op: ops.Op) -> tuple[str, list[Violation]]: ...


def execute(
    kernel: Kernel,
    swarm: Swarm,
    case: Case,
    invariants: Sequence[str] | None,
    runner: Callable[[Counter[str]], Stepper] | None = None,
) -> Outcome:
    """Run ``case`` on a fresh ``kernel`` (or on what ``runner(coverage)`` makes), judging every
    step; stop at the first violation or after its mix's run length (``Mix.steps``) in ops."""
    hits: Counter[str] = Counter()
    stepper: Stepper = Runner(kernel, swarm.base.window, invariants, coverage=hits) if runner is None else runner(hits)
    mix = swarm.mix(case.header)
    decoder = generate.decoder(mix)
    max_steps = mix.steps
    k = stepper.kernel
    live = [0]
    steps: list[ops.Op] = []
    results: list[str] = []
    lives: list[int] = []
    first: dict[str, int] = {}
    seen = 0
    words = case.words
    n = len(words) - OP_BYTES + 1
    index = 0
    for index, at in enumerate(range(0, max(n, 0), OP_BYTES)):
        if len(steps) >= max_steps:
            break
        lives.append(len(live))
        op = decoder.decode(words[at : at + OP_BYTES], k, live)
        if op is None:
            continue
        steps.append(op)
        result, found = stepper.step(op)
        results.append(result)
        if len(hits) != seen:
            for point in list(hits)[seen:]:
                first[point] = index
            seen = len(hits)
        if found:
            return Outcome(steps, results, hits, first, found, index + 1, lives)
        if result == "ok":
            if isinstance(op, ops.Fork):
                live.append(k.next_pid - 1)
            elif isinstance(op, ops.Exit):
                live.remove(op.pid)
    return Outcome(steps, results, hits, first, [], index + 1, lives)


def bucket(count: int) -> int:
    """AFL's hit-count classes: 1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+."""
    if count <= 3:
        return count
    if count < 8:
        return 4
    if count < 16:
        return 8
    if count < 32:
        return 16
    return 32 if count < 128 else 128


@attrs.define
class Entry:
    case: Case
    first: dict[str, int]  # point -> word after which it was first reached
    live: list[int]  # processes alive before each word


@attrs.define
class Pool:
    """The kept test cases, and what the search has reached so far."""

    swarm: Swarm
    rng: random.Random
    reached: Counter[str] = attrs.field(factory=Counter)  # point -> test cases that reached it
    buckets: set[tuple[str, int]] = attrs.field(factory=set)
    soonest: dict[str, Entry] = attrs.field(factory=dict)  # point -> the case reaching it soonest
    entries: list[Entry] = attrs.field(factory=list)
    headers: bool = True  # test cases draw their own mix (else the strategy's)
    picks: Picks | None = None

    # ---- feedback ----

    def add(self, case: Case, outcome: Outcome) -> float:
        """Count what ``case`` reached; keep it if it reached something new.  Returns its reward:
        how rare the kernel paths it went through are (the sum, over the points it reached, of one
        over the number of test cases that reached each), plus one per new (point, hit-count bucket)
        pair.  A source of test cases that keeps reaching paths the others seldom reach earns
        more time, until those paths are no longer rare."""
        new = 0
        rarity = 0.0
        entry: Entry | None = None
        for point, count in outcome.hits.items():
            self.reached[point] += 1
            rarity += 1 / self.reached[point]
            key = (point, bucket(count))
            if key not in self.buckets:
                self.buckets.add(key)
                new += 1
            best = self.soonest.get(point)
            where = outcome.first.get(point, 0)
            if best is None or where < best.first.get(point, 0):
                entry = entry or Entry(case, outcome.first, outcome.live)
                self.soonest[point] = entry
        reward = rarity + new
        if self.picks is not None and case.header is not None:
            self.picks.credit(case.header[0] % self.swarm.picks, reward)
        if new or entry is not None:
            self.entries.append(entry or Entry(case, outcome.first, outcome.live))
            if len(self.entries) > 4096:  # keep the soonest of each point and the newest
                keep = {id(e) for e in self.soonest.values()}
                self.entries = [e for e in self.entries[:-1024] if id(e) in keep] + self.entries[-1024:]
        return reward

    # ---- proposals ----

    def random_words(self, n: int) -> bytes:
        return self.rng.randbytes(OP_BYTES * n)

    def length(self, header: bytes | None) -> int:
        """Words in a test case of this mix: its strategy's run length (a portfolio source's own, so
        fork-tree's and mremap's longer runs are not cut short in the default campaign)."""
        return self.swarm.steps(header)

    def fresh(self) -> Case:
        if not self.headers:
            return Case(None, self.random_words(self.length(None)))
        header = bytearray(self.rng.randbytes(HEADER_BYTES))
        if self.picks is None:
            self.picks = Picks(self.swarm.picks)
        header[0] = self.picks.pick(self.rng)
        return Case(bytes(header), self.random_words(self.length(bytes(header))))

    def target(self) -> str:
        """A point to push from: rarely reached points more often (weight 1 / sqrt(cases))."""
        points = list(self.soonest)
        weights = [1 / math.sqrt(self.reached[p]) for p in points]
        return self.rng.choices(points, weights)[0]

    def mutate(self) -> Case:
        if not self.soonest:
            return self.fresh()
        point = self.target()
        entry = self.soonest[point]
        rng = self.rng
        roll = rng.random()
        if roll < 0.4:
            return self.extend(entry, point)
        if roll < 0.55:
            failing = self.fail_before(entry, point)
            if failing is not None:
                return failing
        if roll < 0.75:
            return self.havoc(entry.case)
        if roll < 0.9 and len(self.entries) > 1:
            return self.splice(entry.case, rng.choice(self.entries).case)
        if entry.case.header is not None:
            header = bytearray(entry.case.header)
            header[rng.randrange(HEADER_BYTES)] = rng.randrange(256)
            return Case(bytes(header), entry.case.words)
        return self.havoc(entry.case)

    def extend(self, entry: Entry, point: str) -> Case:
        """The case cut right after the word that first reached ``point``, continued at random."""
        cut = entry.first.get(point, 0) + 1
        keep = entry.case.words[: OP_BYTES * cut]
        return Case(entry.case.header, keep + self.random_words(max(self.length(entry.case.header) - cut, 1)))

    def fail_before(self, entry: Entry, point: str) -> Case | None:
        """The case with an injected allocation failure (fail_alloc N) right before the word that
        first reached ``point``: the error paths of whatever allocates there (syzkaller's fault
        injection).  None when the case's mix has no fail_alloc."""
        at = entry.first.get(point, 0)
        if at >= len(entry.live):
            return None
        table = generate.decoder(self.swarm.mix(entry.case.header)).table(entry.live[at])
        if "fail_alloc" not in table:
            return None
        nth = self.rng.randrange(len(FAIL_NTH))
        word = bytes([table.index("fail_alloc")]) + nth.to_bytes(OP_BYTES - 1, "big")
        words = entry.case.words
        failing = words[: OP_BYTES * at] + word + words[OP_BYTES * at :]
        return Case(entry.case.header, failing[: OP_BYTES * self.length(entry.case.header)])

    def havoc(self, case: Case) -> Case:
        """A few word-level edits: replace, insert, delete, change an argument byte, repeat a run."""
        rng = self.rng
        words = [case.words[i : i + OP_BYTES] for i in range(0, len(case.words), OP_BYTES)]
        for _ in range(rng.randint(1, 4)):
            if not words:
                words.append(self.random_words(1))
            i = rng.randrange(len(words))
            edit = rng.randrange(5)
            if edit == 0:
                words[i] = self.random_words(1)
            elif edit == 1:
                words.insert(i, self.random_words(1))
            elif edit == 2 and len(words) > 1:
                del words[i]
            elif edit == 3:
                w = bytearray(words[i])
                w[rng.randrange(OP_BYTES)] = rng.randrange(256)
                words[i] = bytes(w)
            else:
                j = rng.randrange(len(words))
                run = words[min(i, j) : max(i, j) + 1][:8]
                words[i:i] = run
        return Case(case.header, b"".join(words[: self.length(case.header)]))

    def splice(self, a: Case, b: Case) -> Case:
        """The head of ``a`` and the tail of ``b`` (``a``'s mix)."""
        i = self.rng.randrange(a.length + 1)
        j = self.rng.randrange(b.length + 1)
        words = a.words[: OP_BYTES * i] + b.words[OP_BYTES * j :]
        return Case(a.header, words[: OP_BYTES * self.length(a.header)])


class Picks:
    """Which source of mixes fresh test cases draw from (a portfolio strategy or the swarm): each
    in turn at first, then in proportion to the square of its recent mean reward per test case
    (:meth:`Pool.add`), with a share drawn uniformly so no source is starved."""

    explore = 0.15

    def __init__(self, n: int) -> None:
        self.n = n
        self.cases = [0.0] * n
        self.found = [0.0] * n
        self.next = 0

    def pick(self, rng: random.Random) -> int:
        if self.next < self.n:
            self.next += 1
            return self.next - 1
        if rng.random() < self.explore:
            best = rng.randrange(self.n)
        else:
            weights = [(self.found[i] / self.cases[i]) ** 2 if self.cases[i] else 1.0 for i in range(self.n)]
            best = rng.choices(range(self.n), weights)[0] if sum(weights) > 0 else rng.randrange(self.n)
        return best + self.n * rng.randrange(256 // self.n)  # any byte that picks it

    def credit(self, pick: int, new: float, fade: float = 0.995) -> None:
        for i in range(self.n):
            self.cases[i] *= fade
            self.found[i] *= fade
        self.cases[pick] += 1
        self.found[pick] += new


ARMS = ("fresh", "mutate", "hypothesis")
# What a campaign uses unless told otherwise: Hypothesis' own generator adds little over the other two
# and costs time at the start of every campaign (bench/RESULTS.md measures each arm's share).
DEFAULT_ARMS = ("fresh", "mutate")


@attrs.define
class Arms:
    """Shares the search's time between its ways of proposing test cases: mostly the one with the
    best recent yield (reward per second, :meth:`Pool.add`, with old results fading), sometimes
    another one, so a way that starts to pay is noticed."""

    rng: random.Random
    names: tuple[str, ...] = ARMS
    explore: float = 0.15
    half_life: float = 2.0  # seconds of an arm's own time after which a result counts half
    found: dict[str, float] = attrs.field(factory=dict)
    spent: dict[str, float] = attrs.field(factory=dict)
    totals: dict[str, tuple[float, float]] = attrs.field(factory=dict)  # arm -> (reward, seconds), for reports

    def pick(self) -> str:
        untried = [a for a in self.names if a not in self.spent]
        if untried:
            return untried[0]
        if self.rng.random() < self.explore:
            return self.rng.choice(self.names)
        return max(self.names, key=self.rate)

    def rate(self, arm: str) -> float:
        return (self.found.get(arm, 0.0) + 1.0) / (self.spent.get(arm, 0.0) + 0.05)

    def credit(self, arm: str, new: float, seconds: float) -> None:
        decay = 0.5 ** (seconds / self.half_life)
        self.found[arm] = self.found.get(arm, 0.0) * decay + new
        self.spent[arm] = self.spent.get(arm, 0.0) * decay + seconds
        found, spent = self.totals.get(arm, (0.0, 0.0))
        self.totals[arm] = (found + new, spent + seconds)


def now() -> float:
    return time.monotonic()
