"""The Hypothesis state machine: draw an op, apply it to the model, check the invariants.

One rule per op of the language.  Hypothesis picks rules uniformly and does swarm testing by
filtering on per-rule feature flags, which costs several choices per step; the op mix of a
strategy and the per-step cost of generation decide what a campaign finds, so the machine replaces
the rule choice with :class:`WeightedRules`: swarm flags drawn once per test case, then one
weighted integer per step picks a rule in proportion to the strategy's weights.  Arguments are
small integers that shrink towards page 0, pid 0 and the first prot of the strategy; pids index
the list of live processes; fault addresses and mprotect/madvise starts index the mapped pages of
the process, so they seldom hit holes.

The machine judges with :class:`rmapfuzz.replay.Runner`, exactly as ``replay`` does, and records
every executed step as an op; an :class:`Observer` (the campaign) sees each step and each failure.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, ClassVar

import hypothesis
from hypothesis import HealthCheck, reject, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule
from hypothesis.stateful import get_state_machine_test as _get_state_machine_test
from hypothesis.strategies import SearchStrategy

from rmapfuzz import ops
from rmapfuzz.invariants import Violation
from rmapfuzz.model.objects import VM_READ, VM_WRITE
from rmapfuzz.replay import Runner
from rmapfuzz.strategy import Strategy


class Observer:
    """Hooks a campaign uses to watch the machine; the default does nothing."""

    def on_start(self) -> None:
        """A new test case (a fresh model kernel) starts."""

    def on_step(self, op: ops.Op, result: str) -> None:
        """A step ran clean."""

    def on_violation(self, steps: list[ops.Op], violations: list[Violation]) -> bool:
        """A step broke an invariant.  Return False to discard the test case (a bug already found)."""
        return True


class RmapMachine(RuleBasedStateMachine):
    """The base machine; :func:`make_machine` binds a kernel, a strategy and the rules."""

    kernel_name: ClassVar[str] = "2.6.34-rc3"
    strategy: ClassVar[Strategy]
    invariant_names: ClassVar[tuple[str, ...] | None] = None
    observer: ClassVar[Observer] = Observer()

    def __init__(self) -> None:
        super().__init__()
        self._rules_strategy = WeightedRules(self)  # type: ignore[assignment]
        self.runner = Runner(self.kernel_name, self.strategy.window, self.invariant_names)
        self.steps: list[ops.Op] = []
        self.live: list[int] = [0]
        self.observer.on_start()

    # ---- argument mapping ----

    def pid(self, i: int) -> int:
        return self.live[i % len(self.live)]

    def span(self, start: int, pages: int) -> int:
        return min(pages, self.strategy.window - start)

    def mapped_page(self, pid: int, i: int, need: int = 0) -> int:
        """The i-th mapped page of the process (mod their number), preferring VMAs whose flags
        include ``need``: faults, mprotect and madvise land inside a VMA (a write in a writable
        one), so few of them only fail with SEGV or ENOMEM."""
        vmas = self.runner.kernel.mms[pid].vmas
        fitting = [v for v in vmas if v.vm_flags & need == need] or vmas
        pages = [a for v in fitting for a in range(v.vm_start, v.vm_end)]
        return pages[i % len(pages)] if pages else i % self.strategy.window

    def move_target(self, pid: int, start: int, pages: int, i: int) -> int:
        """The i-th candidate target of a move: first the addresses where the moved range could
        merge (its own pgoff, where a faulted range lines up again with the memory it came from;
        right after or right before another VMA), then every page of the window."""
        vmas = self.runner.kernel.mms[pid].vmas
        src = next((v for v in vmas if v.vm_start <= start < v.vm_end), None)
        mergeable = [] if src is None else [src.vm_pgoff + (start - src.vm_start)]
        mergeable += [v.vm_end for v in vmas] + [v.vm_start - pages for v in vmas]
        window = self.strategy.window
        candidates = [a for a in mergeable if 0 <= a < window] + list(range(window))
        return candidates[i % len(candidates)]

    def abutting_pages(self, pid: int, start: int, i: int) -> int:
        """The i-th candidate length of a range from ``start``: first the lengths that end it
        exactly where another VMA begins (where a new or moved range can merge with its next),
        then every length that fits in the window."""
        ends = [v.vm_start - start for v in self.runner.kernel.mms[pid].vmas if v.vm_start > start]
        candidates = ends[:1] + list(range(1, self.strategy.window - start + 1))
        return candidates[i % len(candidates)]

    # ---- the one rule Hypothesis runs: a burst of ops (see WeightedRules) ----

    @rule(chunk=st.binary())
    def burst(self, chunk: bytes) -> None:
        rules: WeightedRules = self._rules_strategy  # type: ignore[assignment]
        for at in range(0, len(chunk) - OP_BYTES + 1, OP_BYTES):
            if len(self.steps) >= self.strategy.steps:
                return
            word = chunk[at : at + OP_BYTES]
            if not any(word):
                continue  # an all-zero slot is no op: Hypothesis's simplest choice deletes the op
            chosen = rules.pick(word[0])
            args = _decode_args(int.from_bytes(word[1:], "big"), chosen.function.rmap_args)
            chosen.function(self, **args)

    # ---- the one place a step happens ----

    def do(self, op: ops.Op) -> None:
        self.steps.append(op)
        result, found = self.runner.step(op)
        if found:
            if not self.observer.on_violation(list(self.steps), found):
                reject()
            raise found[0]
        if result == "ok":
            if isinstance(op, ops.Fork):
                self.live.append(self.runner.kernel.next_pid - 1)
            elif isinstance(op, ops.Exit):
                self.live.remove(op.pid)
        self.observer.on_step(op, result)


class WeightedRules(SearchStrategy[tuple[Any, dict[str, Any]]]):
    """The rule choice of one test case: swarm flags per op, then bursts of weighted picks.

    Swarm testing (Groce et al. 2012) as Hypothesis does it: a disable probability is drawn once,
    then one flag per op, all shrinking towards "enabled".

    A Hypothesis step costs tens of microseconds of bookkeeping whatever it draws, several times a
    model step, so each Hypothesis step is a *burst* of up to ``strategy.burst`` ops drawn as ONE
    byte string, :data:`OP_BYTES` bytes per op: the first byte picks an enabled op whose
    preconditions hold, through a 256-slot table with slots in proportion to the weights; the other
    three are the op's arguments as one mixed-radix number.  The burst is decoded op by op as it
    runs (an argument such as "the i-th mapped page" depends on the state the previous op left).
    Bytes shrink towards zero, so an op shrinks towards the first rule of :data:`RULE_ORDER` with
    its smallest arguments, and an op whose four bytes are all zero is no op: Hypothesis's
    simplest choice deletes it (and the all-zero bursts Hypothesis generates, about a quarter of
    them, cost no model time).  :mod:`rmapfuzz.minimize` then works op by op.
    """

    def __init__(self, machine: RmapMachine) -> None:
        super().__init__()
        self.machine = machine
        weights = machine.strategy.weights
        setup_state: Callable[[], Any] = type(machine).setup_state  # untyped in older Hypothesis
        by_name = {r.function.__name__: r for r in setup_state().rules}
        self.rules: list[tuple[Any, float]] = [
            (by_name[op], float(weights[op])) for op in RULE_ORDER if weights.get(op, 0) > 0 and op in by_name
        ]
        self.burst_rule = by_name["burst"]
        self.enabled: list[tuple[Any, float]] | None = None
        self._tables: dict[int, list[Any]] = {}

    def _swarm(self, data: Any) -> list[tuple[Any, float]]:
        """Swarm flags for a share ``strategy.swarm`` of the test cases (the rest run the whole
        mix: the catalogued bugs each need several kinds of op).  mmap is never switched off
        (without it a test case has no VMA to work on), but its weight shrinks with the share of
        the other ops left on, so it keeps its place in the mix."""
        if not data.draw_boolean(self.machine.strategy.swarm):
            return list(self.rules)
        p_disabled = data.draw_integer(0, 254) / 255
        kept = [(r, w) for r, w in self.rules if r.function.__name__ in ALWAYS_ON or not data.draw_boolean(p_disabled)]
        others = sum(w for r, w in self.rules if r.function.__name__ not in ALWAYS_ON)
        left = sum(w for r, w in kept if r.function.__name__ not in ALWAYS_ON)
        if not left:
            return list(self.rules)
        return [(r, w * left / others if r.function.__name__ in ALWAYS_ON else w) for r, w in kept]

    def do_draw(self, data: Any) -> tuple[Any, dict[str, Any]]:
        if self.enabled is None:
            self.enabled = self._swarm(data)
        size = OP_BYTES * self.machine.strategy.burst
        return self.burst_rule, {"chunk": data.draw_bytes(size, size)}

    def pick(self, slot: int) -> Any:
        """The rule of one op: slot (0-255) in the table of the enabled ops that may run now.  The
        preconditions (fork, exit) depend only on the number of live processes, which keys the
        tables."""
        machine = self.machine
        assert self.enabled is not None
        table = self._tables.get(len(machine.live))
        if table is None:
            table = self._tables[len(machine.live)] = _slot_table(
                [(r, w) for r, w in self.enabled if all(pred(machine) for pred in r.preconditions)]
                or [(r, w) for r, w in self.rules if all(pred(machine) for pred in r.preconditions)]
            )
        return table[slot]


OP_BYTES = 4  # one byte picks the op, three hold its arguments


def _slot_table(rules: list[tuple[Any, float]]) -> list[Any]:
    """256 slots shared out in proportion to the weights (each rule at least one), in rule order,
    so slot 0 is the first rule."""
    total = sum(w for _, w in rules)
    counts = [max(1, round(256 * w / total)) for _, w in rules]
    while sum(counts) > 256:
        counts[counts.index(max(counts))] -= 1
    counts[counts.index(max(counts))] += 256 - sum(counts)
    return [r for (r, _), n in zip(rules, counts, strict=True) for _ in range(n)]


ArgSpec = range | tuple[Any, ...]


def _decode_args(value: int, specs: dict[str, ArgSpec]) -> dict[str, Any]:
    """All of a rule's arguments from one number: its digits in the mixed radix of the argument
    ranges, first argument least significant (24 random bits leave at most a 1 % skew for
    the largest rule, mremap)."""
    out = {}
    for name, spec in specs.items():
        value, digit = divmod(value, len(spec))
        out[name] = spec[digit]
    return out


def _as_strategy(spec: ArgSpec) -> SearchStrategy[Any]:
    if isinstance(spec, range):
        return st.integers(spec.start, spec.stop - 1)
    return st.sampled_from(spec)


def _rule(*preconditions: Callable[..., bool], **args: ArgSpec) -> Callable[..., Any]:
    """``@rule`` with the argument strategies made from ``args``, which the fast path reads too."""

    def accept(fn: Callable[..., None]) -> Any:
        fn.rmap_args = args  # type: ignore[attr-defined]
        strategies: dict[str, Any] = {k: _as_strategy(v) for k, v in args.items()}
        make_rule: Callable[..., Callable[..., Any]] = rule  # untyped in older Hypothesis
        decorated = make_rule(**strategies)(fn)
        for pred in preconditions:
            decorated = precondition(pred)(decorated)
        return decorated

    return accept


ALWAYS_ON = frozenset({"mmap"})

# Shrinking lowers the rule pick, so the ops that build state come first.
RULE_ORDER = ("mmap", "write", "mprotect", "fork", "munmap", "exit", "read", "madvise", "mremap", "fail_alloc")


def recorded(build: Callable[..., ops.Op]) -> Callable[..., None]:
    """Applied under ``@rule``: the rule body builds an op; this runs and records it."""

    @functools.wraps(build)
    def run(self: RmapMachine, **kwargs: Any) -> None:
        self.do(build(self, **kwargs))

    return run


# Preconditions may read only the number of live processes (WeightedRules.pick caches on it).
def _can_fork(self: RmapMachine) -> bool:
    return len(self.live) < self.strategy.max_processes


def _can_exit(self: RmapMachine) -> bool:
    return len(self.live) > 1


def _rules(s: Strategy) -> dict[str, Callable[..., None]]:
    """One rule per op, with argument strategies sized by the strategy."""
    return _rule_set(s.window, s.max_processes, s.prots, s.advices, s.mremap_flags)


@functools.lru_cache(maxsize=64)
def _rule_set(
    w: int,
    max_processes: int,
    prots: tuple[str, ...],
    advices: tuple[str, ...],
    mremap_flags: tuple[tuple[str, ...], ...],
) -> dict[str, Callable[..., None]]:
    """The rules of :func:`_rules`, built once per argument space: building them (Hypothesis
    inspects every rule's signature) is a millisecond of each campaign's start-up."""
    proc = range(max(max_processes, 1))
    page = range(w)
    count = range(1, w + 1)

    def mmap(self: RmapMachine, p: int, start: int, pages: int, prot: str) -> ops.Op:
        pid = self.pid(p)
        return ops.Mmap(pid, start, self.abutting_pages(pid, start, pages), prot)

    def munmap(self: RmapMachine, p: int, start: int, pages: int) -> ops.Op:
        return ops.Munmap(self.pid(p), start, self.span(start, pages))

    def mprotect(self: RmapMachine, p: int, start: int, pages: int, prot: str) -> ops.Op:
        pid = self.pid(p)
        start = self.mapped_page(pid, start)
        return ops.Mprotect(pid, start, self.span(start, pages), prot)

    def madvise(self: RmapMachine, p: int, start: int, pages: int, advice: str) -> ops.Op:
        pid = self.pid(p)
        start = self.mapped_page(pid, start)
        return ops.Madvise(pid, start, self.span(start, pages), advice)

    def mremap(self: RmapMachine, p: int, start: int, pages: int, new_start: int, new_pages: int,
               flags: tuple[str, ...]) -> ops.Op:  # fmt: skip
        pid = self.pid(p)
        start = self.mapped_page(pid, start)
        pages = self.span(start, pages)
        new_start = self.move_target(pid, start, pages, new_start) if "fixed" in flags else start
        return ops.Mremap(pid, start, pages, new_start, self.abutting_pages(pid, new_start, new_pages), flags)

    def fork(self: RmapMachine, p: int) -> ops.Op:
        return ops.Fork(self.pid(p))

    def exit(self: RmapMachine, p: int) -> ops.Op:
        return ops.Exit(self.pid(p))

    def fail_alloc(self: RmapMachine, nth: int) -> ops.Op:
        return ops.FailAlloc(nth)

    def read(self: RmapMachine, p: int, i: int) -> ops.Op:
        pid = self.pid(p)
        return ops.Read(pid, self.mapped_page(pid, i, VM_READ))

    def write(self: RmapMachine, p: int, i: int) -> ops.Op:
        pid = self.pid(p)
        return ops.Write(pid, self.mapped_page(pid, i, VM_WRITE))

    ranged: dict[str, ArgSpec] = {"p": proc, "start": page, "pages": count}
    return {
        "mmap": _rule(**ranged, prot=prots)(recorded(mmap)),
        "munmap": _rule(**ranged)(recorded(munmap)),
        "mprotect": _rule(**ranged, prot=prots)(recorded(mprotect)),
        "madvise": _rule(**ranged, advice=advices)(recorded(madvise)),
        "mremap": _rule(**ranged, new_start=range(4 * w), new_pages=count, flags=mremap_flags)(recorded(mremap)),
        "fork": _rule(_can_fork, p=proc)(recorded(fork)),
        "exit": _rule(_can_exit, p=proc)(recorded(exit)),
        "read": _rule(p=proc, i=page)(recorded(read)),
        "write": _rule(p=proc, i=page)(recorded(write)),
        "fail_alloc": _rule(nth=range(1, 5))(recorded(fail_alloc)),
    }


def machine_settings(s: Strategy, **overrides: Any) -> settings:
    """Settings for a campaign: the strategy's run length, no deadline, no health checks that a
    stateful model search trips by design (slow data generation, filtered rules)."""
    base: dict[str, Any] = {
        "stateful_step_count": -(-s.steps // s.burst),  # bursts; the machine stops at s.steps ops
        "deadline": None,
        "suppress_health_check": list(HealthCheck),
        "print_blob": False,
        "report_multiple_bugs": False,
    }
    base.update(overrides)
    return settings(**base)


def make_machine(
    kernel: str,
    strategy: Strategy,
    invariants: tuple[str, ...] | None = None,
    observer: Observer | None = None,
) -> type[RmapMachine]:
    """A state-machine class for one kernel and strategy; its ``TestCase`` runs under pytest/HypoFuzz."""
    namespace: dict[str, Any] = {
        "kernel_name": kernel,
        "strategy": strategy,
        "invariant_names": invariants,
        "observer": observer or Observer(),
    }
    for op, rule_fn in _rules(strategy).items():
        if strategy.weights.get(op, 0) > 0:
            namespace[op] = rule_fn
    cls: type[RmapMachine] = type(
        f"Rmap_{kernel.replace('.', '_').replace('-', '_').replace('+', '_')}", (RmapMachine,), namespace
    )
    cls.TestCase.settings = machine_settings(strategy)
    return cls


class SequenceRecorder(Observer):
    """Keeps the steps of every test case, the failing step included."""

    def __init__(self) -> None:
        self.sequences: list[list[ops.Op]] = []

    def on_start(self) -> None:
        self.sequences.append([])

    def on_step(self, op: ops.Op, result: str) -> None:
        self.sequences[-1].append(op)

    def on_violation(self, steps: list[ops.Op], violations: list[Violation]) -> bool:
        self.sequences[-1].append(steps[-1])
        return True


# Annotated here: Hypothesis leaves it untyped.
get_state_machine_test: Callable[..., Any] = _get_state_machine_test


def run_machine(machine: type[RmapMachine], seed: int, settings: settings, database_key: bytes) -> None:
    """One seeded Hypothesis run of ``machine``, its examples stored under ``database_key``.  Not
    ``run_state_machine_as_test``: that keys the database on a digest of Hypothesis' own test
    function, which it finds by tokenizing stateful.py on every run (about 4 ms, the cost of a
    hundred steps, and most of a campaign's start-up).  ``get_state_machine_test`` is the entry
    point Hypothesis keeps for HypoFuzz; the factory is a ``partial``, which has no source to
    look for either."""
    factory = hypothesis.seed(seed)(functools.partial(machine))
    test = get_state_machine_test(factory, settings=settings)
    test._hypothesis_internal_database_key = database_key
    test()


def generated_sequences(
    kernel: str, strategy: Strategy, count: int, seed: int = 0, invariants: tuple[str, ...] | None = None
) -> list[list[ops.Op]]:
    """The op sequences of ``count`` test cases as the campaign's machine draws them on ``kernel``
    (a violation ends the run early); for measuring raw replay speed, coverage and agreement."""
    recorder = SequenceRecorder()
    machine = make_machine(kernel, strategy, invariants, recorder)
    settings = machine_settings(strategy, max_examples=count, database=None, derandomize=False)
    with contextlib.suppress(Violation):
        run_machine(machine, seed, settings, b"rmapfuzz/generated-sequences")
    return [case for case in recorder.sequences if case][:count]
