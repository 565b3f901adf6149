"""The library API: replay a sequence of steps on a model kernel and judge every step.

``replay(steps, kernel)`` needs nothing but the model: no Hypothesis, no files.  The fuzzer, the
corpus tools and the live-kernel oracle are all built on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from rmapfuzz import invariants as inv
from rmapfuzz import ops
from rmapfuzz.invariants import Violation
from rmapfuzz.kernels import boot
from rmapfuzz.model.syscalls import SyscallMixin


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

    The fuzzer's state machine drives one of these, so that it judges exactly as ``replay`` does.
    """

    def __init__(self, kernel: str, window: int = 8, invariants: Iterable[str] | None = None) -> None:
        self.kernel = boot(kernel, window)
        self.window = window
        self.checks: Sequence[inv.Invariant] = inv.select(invariants)
        self.state_checks = [c for c in self.checks if not c.on_events]
        self.event_checks = [c for c in self.checks if c.on_events]
        self.index = 0

    def step(self, op: ops.Op) -> tuple[str, list[Violation]]:
        """Apply ``op``; returns its result and every invariant it broke (empty when clean)."""
        k = self.kernel
        k.events.clear()
        try:
            result = k.apply(op)
        except Violation as uaf:
            uaf.step = self.index
            self.index += 1
            return "UAF", [uaf]
        found = inv.check(k, self.event_checks) if k.events else []
        found += inv.check(k, self.state_checks)
        for v in found:
            v.step = self.index
        self.index += 1
        return result, found


def replay(
    steps: StepsLike,
    kernel: str = "2.6.34",
    window: int = 8,
    invariants: Iterable[str] | None = None,
    stop_at_violation: bool = True,
) -> Verdict:
    """Replay ``steps`` (ops or op-language dicts) on a fresh ``kernel`` model of ``window`` pages.

    Raises :class:`rmapfuzz.ops.OpError` for a step outside the language, and
    :class:`rmapfuzz.kernels.UnknownKernel` for an unknown kernel name.
    """
    parsed = as_ops(steps, window)
    runner = Runner(kernel, window, invariants)
    results: list[str] = []
    first: list[Violation] = []
    for op in parsed:
        result, found = runner.step(op)
        results.append(result)
        if found and not first:
            first = found
            if stop_at_violation:
                break
    return Verdict(
        kernel=runner.kernel.name,
        window=window,
        steps=parsed,
        results=results,
        violation=first[0] if first else None,
        violations=first,
        final=runner.kernel,
    )
