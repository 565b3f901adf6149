"""Fuzz campaigns: search a kernel model until the budget runs out or a bug is found, shrink what
is found and save it in the corpus.

A campaign is a :class:`Hunt`: a coverage-guided search (:mod:`rmapfuzz.search`) whose time is
shared between fresh random test cases, mutations of the kept ones, and runs of Hypothesis' own
generator over the same state machine (:mod:`rmapfuzz.machine`), by what each has recently found.
Every failure gets a signature (kernel, invariant, failing op); a new one is classified
(:mod:`rmapfuzz.classify`), reduced by :mod:`rmapfuzz.minimize` and saved with :func:`corpus.save`.
With ``keep_going`` the hunt then goes on against the kernel *with that bug's fix*
(:func:`rmapfuzz.kernels.with_fix`), so its time goes to new bugs instead of new shapes of one
already found.

The Hypothesis example database keeps what a campaign found for the next one (or for the other
workers and machines sharing it): Hypothesis' own entries under :func:`database_key`, and the
guided search's failing test cases under the same key plus ``.guided``, replayed first.
A Redis outage does not stop a campaign: its workers go on with their local database and write
to Redis what they saved meanwhile once it is back (:class:`rmapfuzz.database.ResilientRedisDatabase`).

With ``workers > 1`` every worker is a process with its own seed; they share the example database
and the corpus directory, and report to the parent through a queue.
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import queue
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import hypothesis
from hypothesis.database import ExampleDatabase
from hypothesis.errors import Flaky

from rmapfuzz import __version__, corpus, coverage, ops
from rmapfuzz.classify import classify
from rmapfuzz.database import Outage, Report, make_database
from rmapfuzz.generate import Swarm
from rmapfuzz.invariants import CATALOGUE, Violation
from rmapfuzz.kernels import Kernel, resolve, with_fix
from rmapfuzz.machine import Observer, RmapMachine, machine_settings, make_machine, run_machine
from rmapfuzz.minimize import minimize_failure, shows_bugs
from rmapfuzz.replay import replay
from rmapfuzz.search import ARMS, DEFAULT_ARMS, Arms, Case, Pool, execute
from rmapfuzz.strategy import Strategy

# The version of the machine's choice sequence and of the guided test cases: bump it when a change to
# machine.py or generate.py makes old database entries mean other operations.
# 5: fail_alloc in one slot of a portfolio mix; the mremap mix draws old length 0.  6: a portfolio
# mix's test cases run its strategy's own length.
MACHINE_FORMAT = 6


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
    keep_going: bool = False  # after a find, look for other bugs (on the kernel with the find's fix)
    shrink_seconds: float = 1.0  # Hypothesis' shrinking of a find from its own runs, before minimize
    chunk_examples: int = 300  # test cases per Hypothesis run (examples-bound campaigns)
    targets: tuple[str, ...] = ()  # with keep_going: stop once these catalogued bugs are found
    arms: tuple[str, ...] = DEFAULT_ARMS  # the ways of proposing test cases the hunt uses (rmapfuzz.search)
    until_covered: bool = False  # stop once every coverage point the language can reach was reached


@attrs.define
class Find:
    signature: str
    steps: list[ops.Op]
    violation: dict[str, Any]
    seconds: float  # from the campaign start to the first failing step
    steps_before: int  # steps executed before that first failing step (all test cases)
    examples_before: int
    raw_length: int  # length of the failing run as first kept
    seed: int
    worker: int
    bugs: list[str] = attrs.field(factory=list)  # catalogued bugs it shows (rmapfuzz.classify)
    kernel: str = ""  # the kernel the reproducer is for (the campaign's, or it with found bugs' fixes)
    via: str = ""  # which arm of the hunt found it
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
    coverage: Counter[str] = attrs.field(factory=Counter)  # point -> test cases that reached it
    arms: dict[str, tuple[float, float]] = attrs.field(factory=dict)  # arm -> (reward, seconds)
    kernel: str = ""  # the kernel being searched now (with found bugs' fixes under keep_going)
    kernels: list[str] = attrs.field(factory=list)  # every kernel searched, in order
    covered_at: float | None = None  # with until_covered: seconds until every reachable point was reached

    def search(self, kernel: str) -> None:
        self.kernel = kernel
        if kernel not in self.kernels:
            self.kernels.append(kernel)

    def snapshot(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "steps": self.steps,
            "checks": self.checks,
            "ops": dict(self.ops),
            "results": dict(self.results),
            "coverage": dict(self.coverage),
            "arms": {arm: list(v) for arm, v in self.arms.items()},
            "kernel": self.kernel,
            "kernels": list(self.kernels),
            "covered_at": self.covered_at,
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

    def coverage(self) -> coverage.Report:
        """The kernel-path coverage the campaign reached, over every kernel it searched."""
        return coverage_of(self.config, self.stats)


def coverage_of(config: Config, stats: dict[str, Any]) -> coverage.Report:
    names = stats.get("kernels") or [config.kernel]
    return coverage.report([resolve(name) for name in names], stats.get("coverage", {}))


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
    kernel: str
    via: str
    bugs: list[str]


def database_key(config: Config, kernel: str | None = None) -> bytes:
    """The key of a campaign's entries in the Hypothesis example database: the kernel, strategy and
    invariants (so a shared database keeps them apart), the machine's format and Hypothesis'
    version (so a database outlives neither a change of what its choice sequences mean)."""
    invariants = ",".join(config.invariants) if config.invariants else "all"
    name = kernel or config.kernel
    key = f"rmapfuzz/{MACHINE_FORMAT}/{hypothesis.__version__}/{name}/{config.strategy.name}/{invariants}"
    return key.encode()


def _database(config: Config, report: Report | None = None) -> ExampleDatabase | None:
    """A worker's database; with Redis, an outage is told to ``report`` (rmapfuzz.database)."""
    return make_database(config.database_url, config.database, report=report)


class Hunt:
    """One worker's search: the kernel it is on, the pool and arms of the guided search, the
    signatures seen, and the failures waiting to be reduced and saved."""

    def __init__(
        self,
        config: Config,
        worker: int,
        stats: Stats,
        deadline: float | None,
        stop_event: Any = None,
        on_database: Report | None = None,
    ) -> None:
        self.config = config
        self.worker = worker
        self.stats = stats
        self.deadline = deadline
        self.stop_event = stop_event
        self.kernel: Kernel = resolve(config.kernel)
        self.rng = random.Random(config.seed * 1_000_003 + worker * 10_007)
        self.swarm = Swarm.of(config.strategy, self.kernel)
        self.pool = Pool(self.swarm, self.rng, headers=config.strategy.swarm > 0)
        self.arms = Arms(self.rng, tuple(a for a in ARMS if a in config.arms))
        self.known: set[str] = set()
        self.pending: dict[str, _Pending] = {}
        self.deferred: dict[str, _Pending] = {}  # off-target finds, reduced when the search ends
        self.shrink_deadline: float | None = None
        self.seed = 0
        self.n_checks = len(config.invariants) if config.invariants else len(CATALOGUE)
        self.db = _database(config, on_database)
        self.machines: dict[str, type[RmapMachine]] = {}
        self.lineage: list[Kernel] = [self.kernel]  # the kernels searched, each with one more found fix
        self.found_bugs: set[str] = set()
        self._coverage_seen = -1
        self.stats.search(self.kernel.name)

    def covered(self) -> bool:
        """Whether every point the op language can reach on the kernel searched now was reached
        (on it or on the kernels searched before it); notes the time it first was."""
        stats = self.stats
        if len(stats.coverage) != self._coverage_seen:
            self._coverage_seen = len(stats.coverage)
            wanted = {p.name for p in coverage.reachable(self.kernel)}
            if stats.covered_at is None and wanted <= stats.coverage.keys():
                stats.covered_at = time.monotonic() - stats.started
        return stats.covered_at is not None

    # ---- time ----

    def out_of_time(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            return True
        return self.stop_event is not None and self.stop_event.is_set()

    # ---- failures ----

    def failed(
        self, kernel: Kernel, steps: list[ops.Op], violations: list[Violation], via: str, case: Case | None
    ) -> bool:
        """A failing run on ``kernel``; returns whether it is new (worth shrinking).  Under keep_going
        the hunt moves on to the kernel with the fix of the catalogued bugs it shows."""
        now = time.monotonic()  # when the failing step ran (classifying it takes replays)
        sig = signature(kernel.name, violations[0], steps[-1])
        found = self.pending.get(sig)
        if found is not None:
            if len(steps) < len(found.best) and self._shows(kernel, steps, found.bugs):
                found.best = steps
            return True
        if sig in self.known:
            return False
        self.known.add(sig)
        bugs = classify(kernel, steps, self.config.strategy.window)
        if bugs and set(bugs) <= self.found_bugs:
            return False  # another shape of bugs already found: not worth reducing
        self.found_bugs.update(bugs)
        pending = _Pending(sig, steps, now - self.stats.started, self.stats.steps, self.stats.examples, self.seed,
                           kernel.name, via, bugs)  # fmt: skip
        targets = self.config.targets
        if targets and not set(targets) & set(bugs):
            # Hunting named bugs: another bug is kept as first seen and reduced after the search.
            self.deferred[sig] = pending
        else:
            self.pending[sig] = pending
            if via == "hypothesis" and self.shrink_deadline is None:
                self.shrink_deadline = now + self.config.shrink_seconds
        if self.db is not None and case is not None:
            self.db.save(database_key(self.config) + b".guided", kernel.name.encode() + b"\0" + case.to_bytes())
        if self.config.keep_going and any(bug in self.kernel.bugs for bug in bugs):
            for bug in bugs:
                if bug in self.kernel.bugs:
                    self.kernel = with_fix(self.kernel, bug)
            self.lineage.append(self.kernel)
            self.stats.search(self.kernel.name)
        return sig in self.pending

    def _shows(self, kernel: Kernel, steps: list[ops.Op], bugs: list[str]) -> bool:
        """Whether a shorter failure of a pending signature shows the bugs it was classified as
        (another bug can fail with the same signature: it must not replace the find)."""
        return not bugs or shows_bugs(kernel.name, self.config.strategy.window, bugs)(steps)

    def harvest(self) -> list[_Pending]:
        out = list(self.pending.values())
        self.pending.clear()
        self.shrink_deadline = None
        return out

    # ---- the guided arms ----

    def kernel_for_case(self) -> Kernel:
        """The kernel with every found bug's fix, but a share of the time one from before the last
        fixes: a fix can close more than its own bug (965f55dea0e3, bug M's, refuses the merges
        that bug B needs), and what it hides there would otherwise never be found."""
        if len(self.lineage) > 1 and self.rng.random() < EARLIER_KERNELS_SHARE:
            return self.rng.choice(self.lineage[:-1])
        return self.kernel

    def run_case(self, case: Case, via: str) -> float:
        """Execute one test case; returns its reward (rmapfuzz.search.Pool.add)."""
        kernel = self.kernel_for_case()
        out = execute(kernel, self.swarm, case, self.config.invariants)
        stats = self.stats
        stats.examples += 1
        stats.steps += len(out.ops)
        stats.checks += len(out.ops) * self.n_checks
        stats.ops.update(op.op for op in out.ops)
        stats.results.update(out.results)
        stats.coverage.update(out.hits.keys())
        if out.violations:
            self.failed(kernel, out.ops, out.violations, via, case)
            return 0
        return self.pool.add(case, out)

    def guided(self, arm: str, cases: int) -> float:
        new = 0.0
        for _ in range(cases):
            case = self.pool.fresh() if arm == "fresh" else self.pool.mutate()
            new += self.run_case(case, arm)
            if self.pending and not self.config.keep_going:
                break
            if self.out_of_time() or self.examples_spent():
                break
        return new

    def examples_spent(self) -> bool:
        """An examples-bound campaign has run all the test cases it was given."""
        return self.config.examples is not None and self.stats.examples >= self.config.examples

    def replay_database(self) -> None:
        """The failing test cases stored for this campaign (by any worker or machine) run first: a
        bug found before fails again at once.  One that no longer fails is deleted."""
        if self.db is None:
            return
        key = database_key(self.config) + b".guided"
        for value in list(self.db.fetch(key)):
            name, _, data = value.partition(b"\0")
            case = Case.from_bytes(data)
            try:
                kernel = resolve(name.decode())
            except (KeyError, UnicodeDecodeError):
                kernel = None
            if case is None or kernel is None:
                self.db.delete(key, value)
                continue
            out = execute(kernel, self.swarm, case, self.config.invariants)
            self.stats.examples += 1
            self.stats.steps += len(out.ops)
            if out.violations:
                self.failed(kernel, out.ops, out.violations, "database", None)
            else:
                self.db.delete(key, value)

    # ---- the Hypothesis arm ----

    def machine(self) -> type[RmapMachine]:
        cls = self.machines.get(self.kernel.name)
        if cls is None:
            observer = CampaignObserver(self, self.kernel)
            cls = self.machines[self.kernel.name] = make_machine(
                self.kernel.name, self.config.strategy, self.config.invariants, observer
            )
        return cls

    def hypothesis(self, examples: int, chunk: int) -> tuple[float, bool]:
        """One Hypothesis run of ``examples`` test cases; (reward, interrupted)."""
        machine = self.machine()
        observer: CampaignObserver = machine.observer  # type: ignore[assignment]
        observer.new = 0.0
        self.seed = self.config.seed * 1_000_003 + self.worker * 10_007 + chunk
        settings = machine_settings(self.config.strategy, max_examples=examples, database=self.db, derandomize=False)
        interrupted = False
        try:
            run_machine(machine, self.seed, settings, database_key(self.config, self.kernel.name))
        except Stop:
            pass
        except KeyboardInterrupt:
            interrupted = True
        except (Violation, Flaky):  # a find (Flaky: a time-cut replay); the hunt kept it
            pass
        return observer.new, interrupted


class CampaignObserver(Observer):
    """The Hypothesis arm's view of its runs: counts, hands each test case to the pool, reports
    failures to the hunt, and ends runs when time is up or a find has been shrunk long enough."""

    coverage = True

    def __init__(self, hunt: Hunt, kernel: Kernel) -> None:
        self.hunt = hunt
        self.kernel = kernel  # the kernel this observer's machine runs
        self.new = 0.0

    def on_start(self) -> None:
        self.hunt.stats.examples += 1

    def _tick(self) -> None:
        hunt = self.hunt
        stats = hunt.stats
        stats.steps += 1
        stats.checks += hunt.n_checks
        if stats.steps & 255:
            return
        if hunt.shrink_deadline is not None:
            if time.monotonic() > hunt.shrink_deadline:
                raise Stop("shrink allowance spent")
        elif hunt.out_of_time():
            raise Stop("budget spent")

    def on_step(self, op: ops.Op, result: str) -> None:
        self.hunt.stats.ops[op.op] += 1
        self.hunt.stats.results[result] += 1
        self._tick()

    def on_violation(self, steps: list[ops.Op], violations: list[Violation]) -> bool:
        self.hunt.stats.ops[steps[-1].op] += 1
        keep = self.hunt.failed(self.kernel, steps, violations, "hypothesis", None)
        self._tick()
        return keep

    def on_end(self, machine: RmapMachine) -> None:
        if machine.hits is None:
            return
        self.hunt.stats.coverage.update(machine.hits.keys())
        if machine.steps and not machine.failed:
            case = Case(machine.header, bytes(machine.words))
            outcome = _Outcome(machine)
            self.new += self.hunt.pool.add(case, outcome)  # type: ignore[arg-type]


@attrs.frozen
class _Outcome:
    """A Hypothesis test case as the pool sees it."""

    machine: RmapMachine

    @property
    def hits(self) -> Counter[str]:
        assert self.machine.hits is not None
        return self.machine.hits

    @property
    def first(self) -> dict[str, int]:
        return self.machine.first

    @property
    def live(self) -> list[int]:
        return self.machine.lives


def _finish(config: Config, pending: _Pending, worker: int) -> Find:
    """Minimise a kept failure on the kernel it was found on, say it for the campaign's own kernel
    when it fails there the same way, and save it."""
    window = config.strategy.window
    kernel = pending.kernel
    own_kernel = resolve(config.kernel).name  # config.kernel may be an alias or an overlay file
    steps = minimize_failure(kernel, window, pending.best, config.invariants, pending.bugs)
    verdict = replay(steps, kernel, window, config.invariants)
    assert verdict.violation is not None
    if kernel != own_kernel:
        own = replay(steps, own_kernel, window, config.invariants)
        if own.violation is not None and (own.violation.invariant, own.violation.step) == (
            verdict.violation.invariant,
            verdict.violation.step,
        ):
            kernel, verdict = own_kernel, own
    assert verdict.violation is not None
    violation = verdict.violation.to_json()
    bugs = classify(kernel, list(steps), window)
    find = Find(
        signature=signature(kernel, verdict.violation, steps[-1]),
        steps=steps,
        violation=violation,
        seconds=pending.first_seconds,
        steps_before=pending.steps_before,
        examples_before=pending.examples_before,
        raw_length=len(pending.best),
        seed=pending.seed,
        worker=worker,
        bugs=bugs,
        kernel=kernel,
        via=pending.via,
    )
    if config.corpus_dir is not None:
        rep = corpus.Reproducer(
            kernel=kernel,
            window=window,
            steps=steps,
            violation={k: violation[k] for k in ("invariant", "step", "message")},
            found={
                "seed": pending.seed,
                "campaign_seed": config.seed,
                "campaign_kernel": config.kernel,
                "strategy": config.strategy.name,
                "invariants": list(config.invariants) if config.invariants else "all",
                "tool": f"rmapfuzz {__version__}",
                "hypothesis": hypothesis.__version__,
                "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "seconds": round(pending.first_seconds, 3),
                "steps_before": pending.steps_before,
                "found_length": len(pending.best),
                "via": pending.via,
                "bugs": bugs,
            },
        )
        path, status = corpus.save(config.corpus_dir, rep)
        find.path, find.status = str(path), status
    return find


GUIDED_BATCH = 16  # test cases per turn of a guided arm
EARLIER_KERNELS_SHARE = 0.1  # under keep_going, test cases run on a kernel without the latest fixes
HYPOTHESIS_BATCH = 40  # test cases per turn of the Hypothesis arm


def run_worker(
    config: Config,
    worker: int = 0,
    stats: Stats | None = None,
    stop_event: Any = None,
    on_find: Callable[[Find], None] | None = None,
    started: float | None = None,
    on_database: Report | None = None,
) -> tuple[list[Find], bool]:
    """One worker's share of the campaign; returns its finds and whether it was interrupted.
    ``on_database`` hears of a Redis outage and of the server's return (default: stderr)."""
    stats = stats or Stats()
    if started is not None:
        stats.started = started
    deadline = None if config.budget is None else stats.started + config.budget
    hunt = Hunt(config, worker, stats, deadline, stop_event, on_database)
    finds: list[Find] = []
    interrupted = False
    turn = 0

    def finish(pending: _Pending) -> None:
        find = _finish(config, pending, worker)
        finds.append(find)
        if on_find is not None:
            on_find(find)

    def done() -> bool:
        if interrupted or (finds and not config.keep_going) or hunt.out_of_time():
            return True
        if config.targets and set(config.targets) <= {b for f in finds for b in f.bugs}:
            return True
        if config.until_covered and hunt.covered():
            return True
        return hunt.examples_spent()

    try:
        hunt.replay_database()
        for pending in hunt.harvest():
            finish(pending)
        while not done():
            arm = hunt.arms.pick()
            t0 = time.monotonic()
            if arm == "hypothesis":
                left = HYPOTHESIS_BATCH if config.examples is None else config.examples - stats.examples
                new, interrupted = hunt.hypothesis(max(min(HYPOTHESIS_BATCH, left), 1), turn)
            else:
                new = hunt.guided(arm, GUIDED_BATCH)
            hunt.arms.credit(arm, new, time.monotonic() - t0)
            stats.arms = dict(hunt.arms.totals)
            turn += 1
            for pending in hunt.harvest():
                finish(pending)
    except KeyboardInterrupt:
        interrupted = True
    for pending in hunt.deferred.values():
        finish(pending)
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

    def on_database(outage: Outage) -> None:  # the parent says it once for all the workers
        out.put(("database", worker, outage))

    ticker = _Ticker(stats, [], send)
    ticker.start()
    interrupted = False
    try:
        _, interrupted = run_worker(config, worker, stats, stop_event, on_find, stats.started, on_database)
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


PROGRESS_EVERY = 0.25  # seconds between two calls of a campaign's on_progress


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
        while not self._done.wait(PROGRESS_EVERY):
            try:
                snapshot = self.stats.snapshot()
            except RuntimeError:  # a counter grew while it was copied (the search runs on): next tick
                continue
            self.on_progress(snapshot, list(self.finds))

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()


def _merge(per_worker: dict[int, dict[str, Any]]) -> dict[str, Any]:
    total = Stats().snapshot()
    for key in ("ops", "results", "coverage"):
        total[key] = Counter()
    for snap in per_worker.values():
        for key in ("examples", "steps", "checks"):
            total[key] += snap[key]
        for key in ("ops", "results", "coverage"):
            total[key].update(snap[key])
        total["kernel"] = snap["kernel"]
        total["kernels"] += [k for k in snap["kernels"] if k not in total["kernels"]]
        if snap["covered_at"] is not None:
            total["covered_at"] = min(snap["covered_at"], total["covered_at"] or snap["covered_at"])
        for arm, (found, seconds) in snap["arms"].items():
            old = total["arms"].get(arm, [0, 0.0])
            total["arms"][arm] = [old[0] + found, old[1] + seconds]
    for key in ("ops", "results", "coverage"):
        total[key] = dict(total[key])
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
    outages = _Outages()
    shown = time.monotonic()
    while len(done) < len(procs):
        if on_progress is not None and time.monotonic() - shown >= PROGRESS_EVERY:
            # by the clock, not when the queue falls quiet: the workers' stats keep it busy
            on_progress(_merge(per_worker), finds)
            shown = time.monotonic()
        try:
            kind, worker, payload = out.get(timeout=PROGRESS_EVERY)
        except queue.Empty:
            if all(not p.is_alive() for p in procs):
                break
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
        elif kind == "database":
            outages.heard(worker, payload)
    for p in procs:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    outages.end()
    return Result(config, finds, _merge(per_worker), time.monotonic() - started, interrupted)


class _Outages:
    """A Redis outage as the workers report it, said once for the campaign: "down" when the first
    worker finds the server gone, "back" when every worker that did has written it what it saved
    meanwhile (their counts added), or at the end with what those that got through wrote."""

    def __init__(self) -> None:
        self.down: set[int] = set()
        self.back: Outage | None = None

    def heard(self, worker: int, outage: Outage) -> None:
        if not outage.back:
            if not self.down and self.back is None:
                print(outage.line(), file=sys.stderr, flush=True)
            self.down.add(worker)
            return
        self.down.discard(worker)
        self.back = outage if self.back is None else self.back + outage
        if not self.down:
            self.end()

    def end(self) -> None:
        if self.back is not None:
            print(self.back.line(), file=sys.stderr, flush=True)
            self.back = None


def default_database() -> Path:
    return Path(os.environ.get("RMAPFUZZ_DATABASE", ".hypothesis/rmapfuzz"))
