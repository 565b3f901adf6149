"""The Hypothesis state machine: draw bursts of op words, apply each op to the model, judge it.

The machine has one rule, ``burst``: a byte string of op words that :mod:`rmapfuzz.generate`
decodes op by op against the state (see :class:`Bursts`).  It judges with
:class:`rmapfuzz.replay.Runner`, exactly as ``replay`` does, and records every executed step as an
op; an :class:`Observer` (the campaign) sees each step and each failure.  Under pytest or HypoFuzz
a failure prints its steps as op-language JSON and as ``replay(...)`` code (:func:`note_failure`).
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections import Counter
from collections.abc import Callable
from typing import Any, ClassVar

import hypothesis
from hypothesis import HealthCheck, note, reject, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule
from hypothesis.stateful import get_state_machine_test as _get_state_machine_test
from hypothesis.strategies import SearchStrategy

from rmapfuzz import generate, ops
from rmapfuzz.generate import HEADER_BYTES, OP_BYTES, Decoder, Swarm
from rmapfuzz.invariants import Violation
from rmapfuzz.replay import Runner
from rmapfuzz.strategy import Strategy
from rmapfuzz.strategy import load as load_strategy


class Observer:
    """Hooks a campaign uses to watch the machine; the default does nothing."""

    # With coverage, the machine counts the coverage points each test case reaches (and after which
    # op word each was first reached) and hands them to on_end with the test case's bytes.
    coverage: ClassVar[bool] = False

    def on_start(self) -> None:
        """A new test case (a fresh model kernel) starts."""

    def on_step(self, op: ops.Op, result: str) -> None:
        """A step ran clean."""

    def on_violation(self, steps: list[ops.Op], violations: list[Violation]) -> bool:
        """A step broke an invariant.  Return False to discard the test case (a bug already found)."""
        return True

    def on_end(self, machine: RmapMachine) -> None:
        """A test case ended (clean, or after its violation)."""


class RmapMachine(RuleBasedStateMachine):
    """The base machine; :func:`make_machine` binds a kernel, a strategy and the observer."""

    kernel_name: ClassVar[str] = "2.6.34-rc3"
    strategy: ClassVar[Strategy]
    invariant_names: ClassVar[tuple[str, ...] | None] = None
    observer: ClassVar[Observer] = Observer()

    def __init__(self) -> None:
        super().__init__()
        self._rules_strategy = Bursts(self)  # type: ignore[assignment]
        self.hits: Counter[str] | None = Counter() if self.observer.coverage else None
        self.runner = Runner(self.kernel_name, self.strategy.window, self.invariant_names, self.hits)
        self.decoder: Decoder | None = None  # set by the first draw (the test case's mix)
        self.header: bytes | None = None  # the test case's mix header, if it drew one
        self.words = bytearray()  # the op words decoded so far
        self.first: dict[str, int] = {}  # coverage point -> the word after which it was first reached
        self.lives: list[int] = []  # processes alive before each word
        self.steps: list[ops.Op] = []
        self.live: list[int] = [0]
        self.failed = False
        self.burst_start = 0  # the first step of the burst running now
        self.observer.on_start()

    def teardown(self) -> None:
        self.observer.on_end(self)

    # ---- the one rule Hypothesis runs: a burst of op words (rmapfuzz.generate) ----

    @rule(chunk=st.binary())
    def burst(self, chunk: bytes) -> None:
        self.burst_start = len(self.steps)
        decoder = self.decoder or generate.decoder(_swarm(self.strategy).base)
        for at in range(0, len(chunk) - OP_BYTES + 1, OP_BYTES):
            if len(self.steps) >= decoder.mix.steps:
                return
            word = chunk[at : at + OP_BYTES]
            self.words += word
            self.lives.append(len(self.live))
            op = decoder.decode(word, self.runner.kernel, self.live)
            if op is not None:
                self.do(op)

    def _repr_step(self, rule: Any, data: Any, result: Any) -> str:
        """How Hypothesis prints a step of a failing example: the ops the burst ran, as calls of
        :meth:`do` one can paste and run (``from rmapfuzz.ops import *``), instead of its bytes.
        (Hypothesis prints a step's arguments before the step runs, when the ops a burst's bytes
        mean are not known yet; this override, after it, is the one place to say them.)"""
        ran = self.steps[self.burst_start :] if rule.function.__name__ == "burst" else []
        if not ran:
            return super()._repr_step(rule, data, result) + "  # no op"
        return "\n".join(f"state.do({op!r})" for op in ran)

    # ---- the one place a step happens ----

    def do(self, op: ops.Op) -> None:
        self.steps.append(op)
        hits = self.hits
        seen = len(hits) if hits is not None else 0
        result, found = self.runner.step(op)
        if hits is not None and len(hits) != seen:
            word = len(self.words) // OP_BYTES - 1
            for point in list(hits)[seen:]:
                self.first[point] = word
        if found:
            self.failed = True
            if not self.observer.on_violation(list(self.steps), found):
                reject()
            note_failure(self.runner.kernel.name, self.strategy.window, self.steps, found[0])
            raise found[0]
        if result == "ok":
            if isinstance(op, ops.Fork):
                self.live.append(self.runner.kernel.next_pid - 1)
            elif isinstance(op, ops.Exit):
                self.live.remove(op.pid)
        self.observer.on_step(op, result)


_SWARMS: dict[int, tuple[Strategy, Swarm]] = {}


def _swarm(strategy: Strategy) -> Swarm:
    """The strategy's swarm, built once (its portfolio loads other strategy files)."""
    known = _SWARMS.get(id(strategy))
    if known is None or known[0] is not strategy:
        known = _SWARMS[id(strategy)] = (strategy, Swarm.of(strategy))
    return known[1]


def note_failure(kernel: str, window: int, steps: list[ops.Op], violation: Violation) -> None:
    """What Hypothesis prints with a failing example: the steps as op-language JSON and as a
    ``replay(...)`` call to paste, and the violation (the bursts' bytes mean nothing to a reader)."""
    listing = json.dumps([ops.to_json(op) for op in steps])
    note(f"rmapfuzz: {violation}")
    note(f"rmapfuzz: the steps as op-language JSON ({len(steps)} steps):\n{listing}")
    note(
        "rmapfuzz: to replay them:\n"
        "from rmapfuzz.replay import replay\n"
        f"verdict = replay({listing}, {kernel!r}, window={window})\n"
        "print(verdict.violation)"
    )


class Bursts(SearchStrategy[tuple[Any, dict[str, Any]]]):
    """The rule choice of one test case: the test case's mix, then bursts of op words.

    A Hypothesis step costs tens of microseconds of bookkeeping whatever it draws, several times a
    model step, so each Hypothesis step is a *burst* of up to ``strategy.burst`` ops drawn as ONE
    byte string of op words (:mod:`rmapfuzz.generate`), decoded op by op as it runs (an argument
    such as "the i-th mapped page" depends on the state the previous op left).  Before the first
    burst, a share ``strategy.swarm`` of the test cases draws a header that makes its own mix over
    the strategy's language (swarm testing, Groce et al. 2012); the rest run the strategy's mix.
    Bytes shrink towards zero: the base mix, the first op of :data:`rmapfuzz.generate.RULE_ORDER`,
    its smallest arguments, and the all-zero word that is no op.
    """

    def __init__(self, machine: RmapMachine) -> None:
        super().__init__()
        self.machine = machine
        setup_state: Callable[[], Any] = type(machine).setup_state  # untyped in older Hypothesis
        self.burst_rule = next(r for r in setup_state().rules if r.function.__name__ == "burst")

    def do_draw(self, data: Any) -> tuple[Any, dict[str, Any]]:
        machine = self.machine
        if machine.decoder is None:
            strat = machine.strategy
            if strat.swarm > 0 and data.draw_boolean(strat.swarm):
                machine.header = data.draw_bytes(HEADER_BYTES, HEADER_BYTES)
            machine.decoder = generate.decoder(_swarm(strat).mix(machine.header))
        size = OP_BYTES * machine.strategy.burst
        return self.burst_rule, {"chunk": data.draw_bytes(size, size)}


def machine_settings(s: Strategy, **overrides: Any) -> settings:
    """Settings for a campaign: the strategy's run length, no deadline, no health checks that a
    stateful model search trips by design (slow data generation, filtered rules)."""
    base: dict[str, Any] = {
        "stateful_step_count": -(-s.longest_run() // s.burst),  # bursts; the machine stops at its mix's steps
        "deadline": None,
        "suppress_health_check": list(HealthCheck),
        "print_blob": False,
        "report_multiple_bugs": False,
    }
    base.update(overrides)
    return settings(**base)


def make_machine(
    kernel: str,
    strategy: Strategy | str,
    invariants: tuple[str, ...] | None = None,
    observer: Observer | None = None,
) -> type[RmapMachine]:
    """A state-machine class for one kernel and strategy (a :class:`Strategy`, or a name or ``.toml``
    path for :func:`rmapfuzz.strategy.load`); its ``TestCase`` runs under pytest/HypoFuzz."""
    if isinstance(strategy, str):
        strategy = load_strategy(strategy)
    namespace: dict[str, Any] = {
        "kernel_name": kernel,
        "strategy": strategy,
        "invariant_names": invariants,
        "observer": observer or Observer(),
    }
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
