"""Fuzz campaigns: run the state machine against a kernel model until the budget runs out or a
bug is found, shrink what it finds and save it in the corpus.

A campaign runs the machine in chunks (each a Hypothesis run of many test cases with its own seed
derived from the campaign seed), so a time budget can end it between chunks.  Inside a chunk the
:class:`CampaignObserver` counts steps, keeps the shortest failing sequence per signature while
Hypothesis shrinks, and stops the run (a ``KeyboardInterrupt`` subclass, the one exception
Hypothesis passes straight through) when the budget or the shrink allowance is spent.  What it
keeps is then reduced further by :mod:`rmapfuzz.minimize` and saved with :func:`corpus.save`.

With ``workers > 1`` every worker is a process with its own seed; they share the Hypothesis
example database and the corpus directory, and report to the parent through a queue.
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import queue
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import hypothesis
from hypothesis.database import ExampleDatabase
from hypothesis.errors import Flaky

from rmapfuzz import __version__, corpus, ops
from rmapfuzz.classify import classify
from rmapfuzz.database import make_database
from rmapfuzz.invariants import CATALOGUE, Violation
from rmapfuzz.machine import Observer, machine_settings, make_machine, run_machine
from rmapfuzz.minimize import minimize_failure
from rmapfuzz.replay import replay
from rmapfuzz.strategy import Strategy

# The version of the machine's choice sequence: bump it when a change to machine.py makes old
# Hypothesis database entries mean other operations.
MACHINE_FORMAT = 1


class Stop(KeyboardInterrupt):
    """Ends a Hypothesis run from inside a step (budget spent, shrinking long enough, or told to)."""


@attrs.define
class Config:
    kernel: str
    strategy: Strategy
    seed: int = 0
    budget: float | None = 60.0  # seconds; None with ``examples`` set
    examples: int | None = None  # test cases in all; None with ``budget`` set
    workers: int = 1
    corpus_dir: Path | None = Path("corpus")
    database: Path | None = None  # a local directory (rmapfuzz.database)
    database_url: str | None = None  # redis://host:port/db, shared between machines; with database, both
    invariants: tuple[str, ...] | None = None
    keep_going: bool = False  # after a find, look for other signatures
    shrink_seconds: float = 1.0  # Hypothesis' shrinking of one find, before minimize takes over
    chunk_examples: int = 300
    targets: tuple[str, ...] = ()  # with keep_going: stop once these catalogued bugs are found


@attrs.define
class Find:
    signature: str
    steps: list[ops.Op]
    violation: dict[str, Any]
    seconds: float  # from the campaign start to the first failing step
    steps_before: int  # steps executed before that first failing step (all test cases)
    examples_before: int
    raw_length: int  # length of the shortest failing run Hypothesis produced
    seed: int
    worker: int
    bugs: list[str] = attrs.field(factory=list)  # catalogued bugs it shows (kernels.classify)
    path: str | None = None
    status: str | None = None


@attrs.define
class Stats:
    started: float = attrs.field(factory=time.monotonic)
    examples: int = 0
    steps: int = 0
    checks: int = 0
    ops: Counter[str] = attrs.field(factory=Counter)
    results: Counter[str] = attrs.field(factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "steps": self.steps,
            "checks": self.checks,
            "ops": dict(self.ops),
            "results": dict(self.results),
        }


@attrs.define
class Result:
    config: Config
    finds: list[Find]
    stats: dict[str, Any]
    seconds: float
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.finds:
            return 1
        return 130 if self.interrupted else 0


def signature(kernel: str, violation: Violation, failing_op: ops.Op) -> str:
    return f"{kernel}:{violation.invariant}:{corpus.step_shape(failing_op)}"


@attrs.define
class _Pending:
    signature: str
    best: list[ops.Op]
    first_seconds: float
    steps_before: int
    examples_before: int
    seed: int


class CampaignObserver(Observer):
    """Counts, keeps the shortest failure per signature, and ends runs when time is up."""

    def __init__(self, config: Config, stats: Stats, deadline: float | None, stop_event: Any = None) -> None:
        self.config = config
        self.stats = stats
        self.deadline = deadline
        self.stop_event = stop_event
        self.known: set[str] = set()
        self.pending: dict[str, _Pending] = {}
        self.deferred: dict[str, _Pending] = {}  # off-target finds, reduced when the search ends
        self.shrink_deadline: float | None = None
        self.seed = 0
        self.n_checks = 0

    def on_start(self) -> None:
        self.stats.examples += 1

    def _tick(self) -> None:
        self.stats.steps += 1
        self.stats.checks += self.n_checks
        if self.stats.steps & 255:
            return
        now = time.monotonic()
        if self.shrink_deadline is not None and now > self.shrink_deadline:
            raise Stop("shrink allowance spent")
        if self.shrink_deadline is None:
            if self.deadline is not None and now > self.deadline:
                raise Stop("budget spent")
            if self.stop_event is not None and self.stop_event.is_set():
                raise Stop("another worker found a bug")

    def on_step(self, op: ops.Op, result: str) -> None:
        self.stats.ops[op.op] += 1
        self.stats.results[result] += 1
        self._tick()

    def on_violation(self, steps: list[ops.Op], violations: list[Violation]) -> bool:
        self.stats.ops[steps[-1].op] += 1
        sig = signature(self.config.kernel, violations[0], steps[-1])
        if sig in self.known:
            self._tick()
            return False
        now = time.monotonic()
        found = self.pending.get(sig)
        if found is None and self._off_target(steps):
            # Hunting named bugs: another bug is kept as first seen and reduced after the search,
            # so no search time goes into shrinking it.
            self.deferred[sig] = _Pending(sig, steps, now - self.stats.started, self.stats.steps,
                                          self.stats.examples, self.seed)  # fmt: skip
            self.known.add(sig)
            self._tick()
            return False
        if found is None:
            self.pending[sig] = _Pending(sig, steps, now - self.stats.started, self.stats.steps,
                                         self.stats.examples, self.seed)  # fmt: skip
            if self.shrink_deadline is None:
                self.shrink_deadline = now + self.config.shrink_seconds
        elif len(steps) < len(found.best):
            found.best = steps
        self._tick()
        return True

    def _off_target(self, steps: list[ops.Op]) -> bool:
        """With ``targets`` set: the failure shows none of the targeted bugs."""
        targets = self.config.targets
        if not targets:
            return False
        return not set(targets) & set(classify(self.config.kernel, steps, self.config.strategy.window))

    def harvest(self) -> list[_Pending]:
        out = list(self.pending.values())
        self.known.update(self.pending)
        self.pending.clear()
        self.shrink_deadline = None
        return out


def _finish(config: Config, pending: _Pending, worker: int) -> Find:
    """Minimise a kept failure, replay it for its violation, and save it."""
    window = config.strategy.window
    steps = minimize_failure(config.kernel, window, pending.best, config.invariants)
    verdict = replay(steps, config.kernel, window, config.invariants)
    assert verdict.violation is not None
    violation = verdict.violation.to_json()
    bugs = classify(config.kernel, list(steps), window)
    find = Find(
        signature=pending.signature,
        steps=steps,
        violation=violation,
        seconds=pending.first_seconds,
        steps_before=pending.steps_before,
        examples_before=pending.examples_before,
        raw_length=len(pending.best),
        seed=pending.seed,
        worker=worker,
        bugs=bugs,
    )
    if config.corpus_dir is not None:
        rep = corpus.Reproducer(
            kernel=config.kernel,
            window=window,
            steps=steps,
            violation={k: violation[k] for k in ("invariant", "step", "message")},
            found={
                "seed": pending.seed,
                "campaign_seed": config.seed,
                "strategy": config.strategy.name,
                "invariants": list(config.invariants) if config.invariants else "all",
                "tool": f"rmapfuzz {__version__}",
                "hypothesis": hypothesis.__version__,
                "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "seconds": round(pending.first_seconds, 3),
                "steps_before": pending.steps_before,
                "hypothesis_shrunk_length": len(pending.best),
                "bugs": bugs,
            },
        )
        path, status = corpus.save(config.corpus_dir, rep)
        find.path, find.status = str(path), status
    return find


def _database(config: Config) -> ExampleDatabase | None:
    return make_database(config.database_url, config.database)


def database_key(config: Config) -> bytes:
    """The key of a campaign's entries in the Hypothesis example database: the kernel, strategy and
    invariants (so a shared database keeps them apart), the machine's format and Hypothesis'
    version (so a database outlives neither a change of what its choice sequences mean)."""
    invariants = ",".join(config.invariants) if config.invariants else "all"
    key = f"rmapfuzz/{MACHINE_FORMAT}/{hypothesis.__version__}/{config.kernel}/{config.strategy.name}/{invariants}"
    return key.encode()


def run_worker(
    config: Config,
    worker: int = 0,
    stats: Stats | None = None,
    stop_event: Any = None,
    on_find: Callable[[Find], None] | None = None,
    started: float | None = None,
) -> tuple[list[Find], bool]:
    """One worker's share of the campaign; returns its finds and whether it was interrupted."""
    stats = stats or Stats()
    if started is not None:
        stats.started = started
    deadline = None if config.budget is None else stats.started + config.budget
    observer = CampaignObserver(config, stats, deadline, stop_event)
    observer.n_checks = len(config.invariants) if config.invariants else len(CATALOGUE)
    finds: list[Find] = []
    interrupted = False
    examples_left = config.examples
    chunk = 0
    db = _database(config)
    machine = make_machine(config.kernel, config.strategy, config.invariants, observer)
    while True:
        size = config.chunk_examples if examples_left is None else min(config.chunk_examples, examples_left)
        if size <= 0:
            break
        observer.seed = config.seed * 1_000_003 + worker * 10_007 + chunk
        settings = machine_settings(config.strategy, max_examples=size, database=db, derandomize=False)
        try:
            run_machine(machine, observer.seed, settings, database_key(config))
        except Stop:
            pass
        except KeyboardInterrupt:
            interrupted = True
        except (Violation, Flaky):  # a find (Flaky: a time-cut replay); the observer kept it
            pass
        for pending in observer.harvest():
            find = _finish(config, pending, worker)
            finds.append(find)
            if on_find is not None:
                on_find(find)
        if interrupted or (finds and not config.keep_going):
            break
        if config.targets and set(config.targets) <= {b for f in finds for b in f.bugs}:
            break
        if deadline is not None and time.monotonic() > deadline:
            break
        if stop_event is not None and stop_event.is_set():
            break
        if examples_left is not None:
            examples_left -= size
        chunk += 1
    for pending in observer.deferred.values():
        find = _finish(config, pending, worker)
        finds.append(find)
        if on_find is not None:
            on_find(find)
    return finds, interrupted


# ---- several workers ----


def _worker_main(config: Config, worker: int, out: Any, stop_event: Any, started_wall: float) -> None:
    """A worker process: run its share and report stats, finds and the end through ``out``."""
    stats = Stats(started=time.monotonic() - (time.time() - started_wall))

    def send(snapshot: dict[str, Any], _finds: list[Find]) -> None:
        out.put(("stats", worker, snapshot))

    def on_find(find: Find) -> None:
        out.put(("find", worker, find_to_json(find)))
        if not config.keep_going:
            stop_event.set()

    ticker = _Ticker(stats, [], send)
    ticker.start()
    interrupted = False
    try:
        _, interrupted = run_worker(config, worker, stats, stop_event, on_find, stats.started)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        ticker.stop()
        out.put(("stats", worker, stats.snapshot()))
        out.put(("done", worker, interrupted))


def find_to_json(find: Find) -> dict[str, Any]:
    data = attrs.asdict(find)
    data["steps"] = [ops.to_json(op) for op in find.steps]
    return data


def _find_from_dict(data: dict[str, Any], window: int) -> Find:
    data = dict(data)
    data["steps"] = ops.parse_steps(data["steps"], window)
    return Find(**data)


def run(config: Config, on_progress: Callable[[dict[str, Any], list[Find]], None] | None = None) -> Result:
    """Run a campaign; ``on_progress`` is called with merged stats and the finds so far."""
    started = time.monotonic()
    if config.workers <= 1:
        stats = Stats(started=started)
        finds: list[Find] = []

        def progress(find: Find) -> None:
            finds.append(find)
            if on_progress is not None:
                on_progress(stats.snapshot(), finds)

        ticker = _Ticker(stats, finds, on_progress)
        try:
            ticker.start()
            _, interrupted = run_worker(config, 0, stats, None, progress, started)
        finally:
            ticker.stop()
        return Result(config, finds, stats.snapshot(), time.monotonic() - started, interrupted)
    return _run_parallel(config, on_progress, started)


class _Ticker:
    """Calls on_progress a few times a second from a timer thread (single-worker campaigns)."""

    def __init__(self, stats: Stats, finds: list[Find], on_progress: Any) -> None:
        import threading

        self.stats, self.finds, self.on_progress = stats, finds, on_progress
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        if self.on_progress is not None:
            self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(0.25):
            self.on_progress(self.stats.snapshot(), self.finds)

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()


def _merge(per_worker: dict[int, dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"examples": 0, "steps": 0, "checks": 0, "ops": Counter(), "results": Counter()}
    for snap in per_worker.values():
        for key in ("examples", "steps", "checks"):
            total[key] += snap[key]
        total["ops"].update(snap["ops"])
        total["results"].update(snap["results"])
    total["ops"], total["results"] = dict(total["ops"]), dict(total["results"])
    return total


def _run_parallel(config: Config, on_progress: Any, started: float) -> Result:
    ctx = mp.get_context("fork")
    out: Any = ctx.Queue()
    stop_event = ctx.Event()
    wall = time.time()
    procs = [
        ctx.Process(target=_worker_main, args=(config, w, out, stop_event, wall), daemon=True)
        for w in range(config.workers)
    ]
    for p in procs:
        p.start()
    per_worker: dict[int, dict[str, Any]] = {}
    finds: list[Find] = []
    done: set[int] = set()
    interrupted = False
    while len(done) < len(procs):
        try:
            kind, worker, payload = out.get(timeout=0.25)
        except queue.Empty:
            if all(not p.is_alive() for p in procs):
                break
            if on_progress is not None:
                on_progress(_merge(per_worker), finds)
            continue
        except KeyboardInterrupt:
            interrupted = True
            stop_event.set()
            continue
        if kind == "stats":
            per_worker[worker] = payload
        elif kind == "find":
            finds.append(_find_from_dict(payload, config.strategy.window))
        elif kind == "done":
            done.add(worker)
            interrupted = interrupted or bool(payload)
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    return Result(config, finds, _merge(per_worker), time.monotonic() - started, interrupted)


def default_database() -> Path:
    return Path(os.environ.get("RMAPFUZZ_DATABASE", ".hypothesis/rmapfuzz"))
