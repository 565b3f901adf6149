"""The library API: replay a sequence of steps on a model kernel and judge every step.

``replay(steps, kernel)`` needs nothing but the model: no Hypothesis, no files.  The fuzzer, the
corpus tools and the live-kernel oracle are all built on it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from rmapfuzz import invariants as inv
from rmapfuzz import ops
from rmapfuzz.incremental import Incremental
from rmapfuzz.invariants import Violation
from rmapfuzz.kernels import boot
from rmapfuzz.model.syscalls import SyscallMixin
from rmapfuzz.model.trace import UseAfterFree
from rmapfuzz.probe import Probe, StepRecord


@attrs.define
class Verdict:
    """What a replay found: the per-step results, the first violation (if any) and the final state."""

    kernel: str
    window: int
    steps: list[ops.Op]
    results: list[str]
    violation: Violation | None
    violations: list[Violation]  # every invariant broken at the violating step
    final: SyscallMixin
    coverage: Counter[str] | None = None  # the coverage points the steps reached (replay(coverage=True))

    @property
    def clean(self) -> bool:
        return self.violation is None

    def to_json(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "window": self.window,
            "results": self.results,
            "violation": None if self.violation is None else self.violation.to_json(),
        }


StepsLike = Iterable[ops.Op | dict[str, Any]]


def as_ops(steps: StepsLike, window: int) -> list[ops.Op]:
    out = []
    for i, step in enumerate(steps):
        if isinstance(step, dict):
            try:
                step = ops.parse_step(step, window)
            except ops.OpError as exc:
                raise ops.OpError(f"step {i}: {exc}") from None
        out.append(step)
    return out


class Runner:
    """Step-at-a-time replay: apply one op, then check the chosen invariants.

    The fuzzer drives one of these, so that it judges exactly as ``replay`` does.  ``kernel`` is a
    generation's name or class, or a booted kernel to go on from.  With ``coverage`` (a Counter)
    the coverage points every step reaches are counted into it.

    The state invariants are judged incrementally (:mod:`rmapfuzz.scope`): after a step, only what
    it touched; every ``full_every``-th step and in :meth:`finish`, the whole state; and whenever
    the incremental judge finds something, the whole state again, so a verdict reads exactly as if
    every step had been judged whole.  ``incremental=False`` judges the whole state every step.
    """

    def __init__(
        self,
        kernel: str | type[SyscallMixin] | SyscallMixin,
        window: int = 8,
        invariants: Iterable[str] | None = None,
        coverage: Counter[str] | None = None,
        incremental: bool = True,
        full_every: int = 64,
    ) -> None:
        self.checks: Sequence[inv.Invariant] = inv.select(invariants)
        self.probe = Probe(views=any(c.name == "syscall-effect" for c in self.checks), coverage=coverage)
        if isinstance(kernel, str):
            kernel = boot(kernel, window)
        elif isinstance(kernel, type):
            kernel = kernel(window)
        self.kernel = kernel
        self.probe.attach(kernel)
        self.state_checks = [c for c in self.checks if c.kind is inv.Kind.STATE]
        self.transition_checks = [c for c in self.checks if c.kind is inv.Kind.TRANSITION]
        self.incremental = Incremental() if incremental and self.state_checks else None
        self.full_every = full_every
        self.window = window
        self.index = 0

    def run(self, op: ops.Op) -> tuple[str, StepRecord | None, Violation | None]:
        """Apply ``op``: (its result, the step's record, None) or, when the model used freed memory,
        ("UAF", None, the ``no-dangling`` violation)."""
        k = self.kernel
        mm = None if isinstance(op, ops.FailAlloc) else k.process(op.pid)
        self.probe.begin(op, mm)
        if self.incremental is not None:
            self.incremental.before(k, mm, op)
        try:
            result = k.apply(op)
        except UseAfterFree as uaf:
            return "UAF", None, inv.use_after_free(uaf)
        return result, self.probe.end(result), None

    def judge(self, record: StepRecord, checks: Sequence[inv.Invariant] | None = None) -> list[Violation]:
        """The violations of ``checks`` (default: the runner's invariants) after the step ``record``."""
        k = self.kernel
        if checks is not None or self.incremental is None or self.index % self.full_every == self.full_every - 1:
            return inv.check(k, self.checks if checks is None else checks, record)
        if self.incremental.suspect(k, record.op, record.result) or inv.breaks(k, self.transition_checks, record):
            return inv.check(k, self.checks, record)
        return []

    def step(self, op: ops.Op) -> tuple[str, list[Violation]]:
        """Apply ``op``; returns its result and every invariant it broke (empty when clean)."""
        result, record, uaf = self.run(op)
        found = self.judge(record) if record is not None else [uaf] if uaf is not None else []
        for v in found:
            v.step = self.index
        self.index += 1
        return result, found

    def finish(self) -> list[Violation]:
        """The whole state judged by the state invariants once more (at the end of a sequence judged
        incrementally); a finding is reported at the last step."""
        if self.incremental is None or self.index == 0:
            return []
        found = inv.check(self.kernel, [c for c in self.checks if c.kind is inv.Kind.STATE])
        for v in found:
            v.step = self.index - 1
        return found


def replay(
    steps: StepsLike,
    kernel: str | type[SyscallMixin],  # no default: which kernel is always the caller's choice
    window: int = 8,
    invariants: Iterable[str] | None = None,
    stop_at_violation: bool = True,
    coverage: bool = False,
    incremental: bool = True,
) -> Verdict:
    """Replay ``steps`` (ops or op-language dicts) on a fresh ``kernel`` model of ``window`` pages.

    Raises :class:`rmapfuzz.ops.OpError` for a step outside the language, and
    :class:`rmapfuzz.kernels.UnknownKernel` for an unknown kernel name.
    """
    parsed = as_ops(steps, window)
    runner = Runner(kernel, window, invariants, Counter() if coverage else None, incremental)
    results: list[str] = []
    first: list[Violation] = []
    for op in parsed:
        result, found = runner.step(op)
        results.append(result)
        if found and not first:
            first = found
            if stop_at_violation:
                break
    if not first:
        first = runner.finish()
    return Verdict(
        kernel=runner.kernel.name,
        window=window,
        steps=parsed,
        results=results,
        violation=first[0] if first else None,
        violations=first,
        final=runner.kernel,
        coverage=runner.probe.coverage,
    )
