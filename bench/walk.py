"""The naive random walker: the baseline every rmapfuzz figure is measured against.

It drives the same model and op language with plain ``random``: each step picks an op (uniformly,
or with a weighted mix), picks its arguments uniformly in the window, applies it and checks the
invariants exactly as ``replay`` does.  Runs have a fixed length; a violation ends the run.  No
shrinking, no feedback.  It is also the fastest way to generate sequences for the raw model speed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Mapping

import attrs

from rmapfuzz import ops
from rmapfuzz.classify import classify
from rmapfuzz.invariants import Violation
from rmapfuzz.replay import Runner
from rmapfuzz.strategy import Strategy

UNIFORM = {op: 1 for op in ("mmap", "munmap", "mprotect", "mremap", "madvise", "fork", "exit", "read", "write")}
# The mix of the independent 2.6.34-rc3 measurement in the developers' guide.
WEIGHTED = {"write": 30, "mmap": 25, "mprotect": 20, "munmap": 10, "fork": 10, "exit": 5}


@attrs.frozen
class Language:
    """What the walker may draw: the same op language and bounds a campaign's strategy has."""

    window: int = 8
    max_procs: int = 3
    prots: tuple[str, ...] = ("rw", "r", "rwx", "")
    advices: tuple[str, ...] = ("pageout", "dontneed", "dontfork", "dofork")
    mremap_flags: tuple[tuple[str, ...], ...] = (("maymove", "fixed"),)
    mmap_flags: tuple[tuple[str, ...], ...] = ((),)

    @classmethod
    def of(cls, s: Strategy) -> Language:
        return cls(s.window, s.max_processes, s.prots, s.advices, s.mremap_flags, s.mmap_flags)


def uniform_mix(s: Strategy) -> dict[str, int]:
    """The naive baseline's op choice for a strategy: every op the strategy enables, equally likely."""
    return {op: 1 for op, w in s.weights.items() if w > 0}


def random_op(rng: random.Random, live: list[int], lang: Language, mix: Mapping[str, int]) -> ops.Op:
    """One step with every argument drawn uniformly (a fork beyond the process bound or an exit of
    the last process becomes a write)."""
    name = rng.choices(list(mix), weights=list(mix.values()))[0]
    window = lang.window
    pid = rng.choice(live)
    start = rng.randrange(window)
    pages = rng.randint(1, window - start)
    if (name == "fork" and len(live) >= lang.max_procs) or (name == "exit" and len(live) == 1):
        name = "write"
    if name == "mmap":
        # no draw when there is no choice: a language of plain mmaps walks as it did before noreserve
        flags = rng.choice(lang.mmap_flags) if len(lang.mmap_flags) > 1 else lang.mmap_flags[0]
        return ops.Mmap(pid, start, pages, rng.choice(lang.prots), flags)
    if name == "munmap":
        return ops.Munmap(pid, start, pages)
    if name == "mprotect":
        return ops.Mprotect(pid, start, pages, rng.choice(lang.prots))
    if name == "madvise":
        return ops.Madvise(pid, start, pages, rng.choice(lang.advices))
    if name == "mremap":
        flags = rng.choice(lang.mremap_flags)
        new_start = rng.randrange(window) if "fixed" in flags else start
        return ops.Mremap(pid, start, pages, new_start, rng.randint(1, window - new_start), flags)
    if name == "fork":
        return ops.Fork(pid)
    if name == "exit":
        return ops.Exit(pid)
    if name == "fail_alloc":
        return ops.FailAlloc(rng.randint(1, 4))
    if name == "read":
        return ops.Read(pid, rng.randrange(window))
    return ops.Write(pid, rng.randrange(window))


def random_sequence(
    rng: random.Random, length: int, lang: Language = Language(), mix: Mapping[str, int] = WEIGHTED
) -> list[ops.Op]:
    """A sequence as the walker would run it (pids tracked by assuming forks succeed)."""
    live, next_pid, out = [0], 1, []
    for _ in range(length):
        op = random_op(rng, live, lang, mix)
        out.append(op)
        if isinstance(op, ops.Fork):
            live.append(next_pid)
            next_pid += 1
        elif isinstance(op, ops.Exit):
            live.remove(op.pid)
    return out


@attrs.define
class WalkResult:
    found: dict[str, tuple[float, int]]  # bug -> (seconds, steps) of its first sighting
    steps: int
    seconds: float
    violations: int


def walk(
    kernel: str,
    seed: int,
    targets: Iterable[str],
    budget: float,
    run_length: int = 50,
    lang: Language = Language(),
    mix: Mapping[str, int] = UNIFORM,
) -> WalkResult:
    """Walk until every target bug (kernels.classify) was seen, or the budget is spent."""
    rng = random.Random(seed)
    wanted = set(targets)
    found: dict[str, tuple[float, int]] = {}
    steps = violations = 0
    start = time.perf_counter()
    while wanted - found.keys() and time.perf_counter() - start < budget:
        runner = Runner(kernel, lang.window)
        live, seq = [0], []
        for _ in range(run_length):
            op = random_op(rng, live, lang, mix)
            seq.append(op)
            steps += 1
            result, broken = runner.step(op)
            if broken:
                violations += 1
                for bug in classify(kernel, seq, lang.window):
                    found.setdefault(bug, (time.perf_counter() - start, steps))
                break
            if result == "ok" and isinstance(op, ops.Fork):
                live.append(runner.kernel.next_pid - 1)
            elif result == "ok" and isinstance(op, ops.Exit):
                live.remove(op.pid)
    return WalkResult(found, steps, time.perf_counter() - start, violations)


def replay_speed(kernel: str, sequences: list[list[ops.Op]], window: int = 8, invariants: bool = True) -> float:
    """Raw model steps per second replaying ``sequences`` (invariants on or off)."""
    names: tuple[str, ...] | None = None if invariants else ()
    steps = 0
    start = time.perf_counter()
    for seq in sequences:
        runner = Runner(kernel, window, names)
        for op in seq:
            steps += 1
            try:
                _, broken = runner.step(op)
            except Violation:
                break
            if broken:
                break
    return steps / (time.perf_counter() - start)
