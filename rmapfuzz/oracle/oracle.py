"""The differential oracle: the same steps on the running kernel and on the ``current`` model.

:class:`Oracle` owns an :class:`~rmapfuzz.oracle.executor.Executor` and knows which levels it can
observe here (:func:`probe_levels`).  :meth:`Oracle.sequence` starts one sequence (a fresh worker
tree and a fresh model); :meth:`SequenceRun.step` runs one step on both and compares the result,
L0, L2 and L3 after it; :meth:`SequenceRun.finish` compares L1 (and L3, if it is not compared
after every step) at the end.  :meth:`Oracle.run` does a
whole list of steps and returns an :class:`Outcome`.  :func:`fuzz` is the differential campaign:
the Hypothesis machine on the model, every step also run live, a divergence a failure that
shrinks like any other.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import hypothesis

from rmapfuzz import __version__, corpus, ops
from rmapfuzz.campaign import Stop
from rmapfuzz.invariants import Violation
from rmapfuzz.machine import RmapMachine, generated_sequences, machine_settings, make_machine, run_machine
from rmapfuzz.minimize.greedy import minimize_more
from rmapfuzz.oracle import bpf, compare, observe, pages, swap
from rmapfuzz.oracle import syscalls as sc
from rmapfuzz.oracle.compare import Divergence
from rmapfuzz.oracle.executor import Executor, ExecutorError, Session, Window
from rmapfuzz.replay import Runner
from rmapfuzz.strategy import Strategy

LEVELS = ("L0", "L1", "L2", "L3", "L4")
DEFAULT_LEVELS = LEVELS  # those unavailable here are left out
NEEDS = {"L4": ("L2", "L3")}  # L4 names PFNs from L2's pagemap and anon_vmas as L3's graph does
MODEL = "current"


class OracleError(RuntimeError):
    """The oracle cannot run as asked (a level unavailable, the window taken, ...)."""


# Without swap, MADV_PAGEOUT pushes nothing out of the kernel while the model swaps the page out;
# from then on the two sides hold different pages there (the model swaps a fresh one in, on the
# faulting VMA's anon_vma or the root, or shares it from its swap cache after a fork; the kernel
# keeps the old one), and that difference follows the page through fork, mremap and COW.
NO_SWAP_L4 = "L4 compares a sequence only until the model swaps a page out (the kernel cannot)"


class LevelUnavailable(OracleError):
    """A level asked for with ``strict`` cannot be observed on this machine (no root, no BPF, ...):
    an infrastructure failure, not bad input."""


@attrs.frozen
class LevelInfo:
    name: str
    available: bool
    how: str  # what it reads, or why it is unavailable


def probe_levels(wanted: Sequence[str] = LEVELS) -> dict[str, LevelInfo]:
    """Which observation levels work on this machine, detected now.  L3's probe (BTF parse and
    a test program, about 0.2 s once per process) runs only if L3 is in ``wanted``."""
    out: dict[str, LevelInfo] = {}
    if not os.path.exists("/proc/self/maps"):
        out["L0"] = LevelInfo("L0", False, "no /proc/<pid>/maps")
    elif observe.procmap_query_works():
        out["L0"] = LevelInfo("L0", True, "PROCMAP_QUERY ioctl on /proc/<pid>/maps, and each step's result")
    else:
        out["L0"] = LevelInfo("L0", True, "/proc/<pid>/maps text (no PROCMAP_QUERY), and each step's result")
    try:
        with open("/proc/self/smaps") as fh:
            has_flags = "VmFlags:" in fh.read()
        out["L1"] = LevelInfo("L1", has_flags, "smaps VmFlags + Anonymous at the end" if has_flags else "no VmFlags")
    except OSError as exc:
        out["L1"] = LevelInfo("L1", False, f"no /proc/<pid>/smaps ({exc.strerror})")
    if not os.path.exists("/proc/self/pagemap"):
        out["L2"] = LevelInfo("L2", False, "no /proc/<pid>/pagemap")
    elif not observe.pfns_visible():
        out["L2"] = LevelInfo("L2", False, "pagemap hides PFNs (needs CAP_SYS_ADMIN)")
    elif observe.zero_page_pfn() is None:
        out["L2"] = LevelInfo("L2", False, "the zero page's PFN could not be found")
    else:
        out["L2"] = LevelInfo("L2", True, "pagemap PFN and swap-entry classes after every step, named across steps")
    if "L3" not in wanted:
        out["L3"] = LevelInfo("L3", False, "not probed (not requested)")
    elif (why := observe.graph_unavailable()) is not None:
        out["L3"] = LevelInfo("L3", False, f"BPF anon_vma graph unavailable: {why}")
    else:
        out["L3"] = LevelInfo("L3", True, "BPF task_vma iterator: the anon_vma graph after every step")
    if "L4" not in wanted:
        out["L4"] = LevelInfo("L4", False, "not probed (not requested)")
    elif not (out["L2"].available and out["L3"].available):
        need = "L2" if not out["L2"].available else "L3"
        out["L4"] = LevelInfo("L4", False, f"needs {need}, which is unavailable: {out[need].how}")
    elif (why := pages.pages_unavailable()) is not None:
        out["L4"] = LevelInfo("L4", False, f"BPF page reader unavailable: {why}")
    else:
        out["L4"] = LevelInfo("L4", True, "BPF syscall program: each present page's folio mapping and index")
    return out


def parse_levels(text: str) -> tuple[str, ...]:
    names = tuple(n.strip().upper() for n in text.split(",") if n.strip())
    bad = [n for n in names if n not in LEVELS]
    if bad or not names:
        raise OracleError(f"--levels: unknown level {bad[0] if bad else text!r} (known: {', '.join(LEVELS)})")
    names = ("L0", *names, *(need for n in names for need in NEEDS.get(n, ())))
    return tuple(n for n in LEVELS if n in names)


@attrs.define
class Outcome:
    """One sequence's verdict: ``agree``, ``diverge`` or ``skipped`` (with a reason)."""

    status: str
    steps: int  # steps run on both
    divergence: Divergence | None = None
    reason: str = ""
    notes: list[str] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "steps": self.steps,
            "divergence": None if self.divergence is None else self.divergence.to_json(),
            "reason": self.reason,
            "notes": self.notes,
        }


def skip_reason(steps: Sequence[ops.Op], noreserve: bool = True) -> str | None:
    """Why a sequence cannot run live, or None.  ``noreserve``: the kernel honours MAP_NORESERVE."""
    for i, op in enumerate(steps):
        if isinstance(op, ops.FailAlloc):
            return f"step {i} is fail_alloc, which cannot be injected into a real kernel"
        if isinstance(op, ops.Mmap) and op.flags and not noreserve:
            return f"step {i} asks for MAP_NORESERVE, which this kernel ignores (vm.overcommit_memory is 2)"
    return None


class Oracle:
    """The live kernel against the ``current`` model, at the requested levels (those unavailable
    here are left out, unless ``strict``).  ``graph_every_step=False`` compares L3 only at the end
    of each sequence.  :meth:`close` releases the L3 program early (it is also released when the
    oracle is collected)."""

    def __init__(
        self,
        levels: Sequence[str] = DEFAULT_LEVELS,
        window: Window | None = None,
        kernel: str = MODEL,
        strict: bool = False,
        graph_every_step: bool = True,
        own_swap: bool = True,
    ) -> None:
        wanted = [n for n in LEVELS if n in levels]
        self.info = probe_levels(wanted)
        missing = [n for n in wanted if not self.info[n].available]
        if strict and missing:
            raise LevelUnavailable(f"level {missing[0]} is unavailable here: {self.info[missing[0]].how}")
        self.strict = strict
        self.used = tuple(n for n in wanted if self.info[n].available)
        self.left_out = {n: self.info[n].how for n in missing}  # asked for, not observable here
        if "L0" not in self.used:
            raise OracleError(f"L0 is unavailable here: {self.info['L0'].how}")
        self.kernel = kernel
        self.noreserve = sc.noreserve_honoured()
        self.executor = Executor(window)
        self.zero_pfns: set[int] = set()
        if "L2" in self.used:
            pfn = observe.zero_page_pfn()
            if pfn is not None:
                self.zero_pfns.add(pfn)
        # swap: the oracle's own device while it is open (:meth:`__enter__`), unless told not to
        self.own_swap = own_swap
        self._swap: contextlib.ExitStack | None = None
        self.swap = swap.SwapState(swap.swap_total_kb() > 0, "swap not set up (the oracle is not open)")
        self.swap_tolerant = not self.swap.active
        self.partial: dict[str, str] = {}  # levels observed only in part (no swap), and why
        self.uname = platform.release()
        # L3: after every step (about 70 µs per process), or only at the end of a sequence
        self.graph_every_step = graph_every_step
        self.graph: observe.GraphObserver | None = None
        if "L3" in self.used:
            w = self.executor.window
            self.graph = observe.GraphObserver(w.start, w.pages)
            self._graph_finalizer = weakref.finalize(self, self.graph.close)
        self.page_reader: pages.PageReader | None = None
        if "L4" in self.used:
            self.page_reader = pages.PageReader()
            self._pages_finalizer = weakref.finalize(self, self.page_reader.close)

    def __enter__(self) -> Oracle:
        if self.own_swap:
            stack = contextlib.ExitStack()
            self.swap = stack.enter_context(swap.own_swap())
            self._swap = stack
        else:
            self.swap = swap.SwapState(swap.swap_total_kb() > 0, "the machine's swap as it is (own_swap off)")
        self.swap_tolerant = not self.swap.active
        self.partial = {"L4": f"{self.swap.how}; {NO_SWAP_L4}"} if "L4" in self.used and self.swap_tolerant else {}
        if self.strict and self.partial:
            if self._swap is not None:
                self._swap.close()  # the readahead settings back
                self._swap = None
            name, why = next(iter(self.partial.items()))
            raise LevelUnavailable(f"level {name} cannot be fully observed here: {why}")
        self.executor.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.executor.__exit__(*exc)
        finally:
            if self._swap is not None:
                self._swap.close()
                self._swap = None

    def close(self) -> None:
        """Release the BPF programs (also done when the oracle is collected)."""
        if self.graph is not None:
            self._graph_finalizer()
        if self.page_reader is not None:
            self._pages_finalizer()

    def report(self) -> dict[str, Any]:
        return {
            "uname": self.uname,
            "model": self.kernel,
            "levels_used": list(self.used),
            "levels": {n: {"available": i.available, "how": i.how} for n, i in self.info.items()},
            "swap": {"active": self.swap.active, "how": self.swap.how},
            "levels_partial": dict(self.partial),
            "window": {
                "base": hex(self.executor.window.base),
                "offset": self.executor.window.offset,
                "pages": self.executor.window.pages,
            },
        }

    @contextlib.contextmanager
    def sequence(self, window: int, max_pids: int) -> Iterator[SequenceRun]:
        if window > self.executor.window.pages:
            raise OracleError(
                f"the sequence's window ({window} pages) is larger than the live window "
                f"({self.executor.window.pages} pages)"
            )
        with self.executor.session(max_pids) as session:
            try:
                yield SequenceRun(self, session, window)
            finally:
                if self.graph is not None:
                    self.graph.forget(w.pid for w in session.order)

    def run(self, steps: Sequence[ops.Op], window: int) -> Outcome:
        reason = skip_reason(steps, self.noreserve)
        if reason is not None:
            return Outcome("skipped", 0, reason=reason)
        forks = sum(isinstance(op, ops.Fork) for op in steps)
        with self.sequence(window, forks + 1) as run:
            for i, op in enumerate(steps):
                div = run.step(op)
                if div is not None:
                    return Outcome("diverge", i + 1, div, notes=run.notes)
            div = run.finish()
            if div is not None:
                return Outcome("diverge", len(steps), div, notes=run.notes)
        return Outcome("agree", len(steps), notes=run.notes)


class SequenceRun:
    """One sequence on both sides, a step at a time."""

    def __init__(self, oracle: Oracle, session: Session, window: int) -> None:
        self.oracle = oracle
        self.session = session
        self.window = window
        self.runner = Runner(oracle.kernel, window, invariants=())
        self.index = -1
        self.last_result = ""  # the model's result of the last step
        self.notes: list[str] = []
        self.swapped = False  # the model swapped something out (MADV_PAGEOUT)
        self.l4_stopped = False  # L4 compares no more in this sequence (no swap: NO_SWAP_L4)
        self.history = compare.PageHistory()  # L2 across steps
        self.last_kernel_graph: compare.Graph | None = None  # L3's snapshot, which L4 names by
        self.last_model_graph: compare.Graph | None = None
        # L0 and L2 as last read, per process: a step reads only the processes it can change
        self.layouts: dict[int, list[observe.KVma]] = {}
        self.page_states: dict[int, list[str | int | observe.SwapEntry]] = {}
        self.observed_all = True  # the last step read every live process
        self.graph_records: dict[int, list[bpf.VmaRecord]] = {}  # L3 as last read, per process

    def _div(self, level: str, mismatch: compare.Mismatch | None) -> Divergence | None:
        if mismatch is None:
            return None
        kernel, model, message = mismatch
        return Divergence(self.index, level, kernel, model, message)

    def step(self, op: ops.Op) -> Divergence | None:
        """Run ``op`` on the model and the kernel; the first divergence it shows, or None."""
        self.index += 1
        try:
            model_result, _ = self.runner.step(op)
        except Violation as exc:  # the model itself broke (a UAF): nothing to compare with
            raise OracleError(f"the model failed at step {self.index}: {exc}") from None
        self.last_result = model_result
        kernel_result = self.session.run(op, skip_fault=model_result == "SEGV")
        if model_result == "SEGV" and isinstance(op, (ops.Read, ops.Write)):
            self.notes.append(f"step {self.index}: {ops.describe(op)} not executed (the model says SEGV)")
        div = self._div("result", compare.compare_result(kernel_result, model_result))
        if div is not None:
            return div
        changed = None if self.observe_all(op) else self.changed_by(op)
        self.read_processes(changed)
        div = self.compare_layouts_and_pages(compare_history=True)
        if div is not None or self.oracle.graph is None or not self.oracle.graph_every_step:
            return div
        div = self.compare_graph(changed)
        if div is None and self.oracle.page_reader is not None:
            div = self.compare_page_side(self.kernel_page_states())
        return div

    # ---- which processes a step is observed in ----

    FULL_EVERY = 16  # every so many steps (and at the end) every live process is read again

    def observe_all(self, op: ops.Op) -> bool:
        """Read every live process after this step: periodically, and after an MADV_PAGEOUT (the
        reclaim walk unmaps a page from every process that maps it; 6.x skips shared pages, but
        that is a kernel rule the oracle is here to check, not to assume)."""
        return self.index % self.FULL_EVERY == 0 or (isinstance(op, ops.Madvise) and op.advice == "pageout")

    def changed_by(self, op: ops.Op) -> set[int]:
        """The processes whose L0 layout or L2 page states ``op`` can change: the one that acts,
        and a fork's child.  Why that is enough: every op but MADV_PAGEOUT changes only the page
        tables and VMAs of the process that makes it (a COW fault installs a pte there; fork
        write-protects the parent's ptes, which pagemap's PFN and swap fields do not show, and
        fills the child's; exit, munmap, MADV_DONTNEED and a swap-in drop references to pages
        and swap entries other processes keep mapped at the same PFN or swap offset).  The
        exclusive-mapping bit of pagemap, which another process's COW or exit does flip, is not
        compared.  Kernel work outside the steps (compaction moving a page) is seen at the next
        full observation, as before at the next step."""
        actor: int | None = getattr(op, "pid", None)  # fail_alloc has none (and is never run live)
        new = set(self.session.live) - set(self.layouts)  # a fork's child
        return new if actor is None else new | {actor}

    def read_processes(self, pids: set[int] | None) -> None:
        """Read L0 (and L2) of ``pids`` (None: every live process); forget the processes gone."""
        live = self.session.live
        for cache in (self.layouts, self.page_states):
            for gone in set(cache) - set(live):
                del cache[gone]
        wanted = live if pids is None else [pid for pid in live if pid in pids]
        self.observed_all = pids is None
        for pid in wanted:
            self.layouts[pid] = self.session.vmas(pid)
        if "L2" in self.oracle.used:
            zero = self.oracle.zero_pfns
            for pid in wanted:
                entries = self.session.pagemap(pid, self.window)
                for entry in entries:
                    if entry.present and entry.pfn not in zero and observe.is_zero_pfn_by_flags(entry.pfn):
                        zero.add(entry.pfn)  # e.g. a second zero page; learnt once
                self.page_states[pid] = [observe.page_state(entry, zero) for entry in entries]

    def kernel_page_states(self) -> dict[observe.Cell, object]:
        """L2 of every live process as last read (the read processes fresh, the others unchanged)."""
        return {(pid, n): v for pid in self.session.live for n, v in enumerate(self.page_states.get(pid, ()))}

    def compare_layouts_and_pages(self, compare_history: bool) -> Divergence | None:
        """L0 and L2 of every live process against the model."""
        k = self.runner.kernel
        kernel_layouts = {pid: self.layouts[pid] for pid in self.session.live}
        div = self._div("L0", compare.compare_layouts(kernel_layouts, compare.model_layouts(k)))
        if div is not None:
            return div
        if "L2" in self.oracle.used:
            model_pages = compare.model_page_states(k, self.window)
            self.swapped = self.swapped or any(compare.is_swap(v) for v in model_pages.values())
            kernel_pages = self.kernel_page_states()
            tolerant = self.oracle.swap_tolerant
            div = self._div("L2", compare.compare_pages(kernel_pages, model_pages, self.window, tolerant))
            if div is None and not tolerant and compare_history:
                div = self._div("L2", self.history.check(kernel_pages, model_pages, self.window))
            if div is not None:
                return div
        return None

    def compare_page_side(self, kernel_pages: dict[observe.Cell, object]) -> Divergence | None:
        """L4, on L3's snapshot of this step: each present page's anon_vma and index; without
        swap, only until the model has swapped a page out (:data:`NO_SWAP_L4`)."""
        if self.swapped and self.oracle.swap_tolerant:
            if not self.l4_stopped:
                self.l4_stopped = True
                self.notes.append(f"step {self.index}: L4 not compared from here on: the model swapped a page out "
                                  "and the kernel, without swap, could not")  # fmt: skip
            return None
        reader = self.oracle.page_reader
        graph = self.oracle.graph
        assert reader is not None and graph is not None
        assert self.last_kernel_graph is not None and self.last_model_graph is not None
        pfns = [v for v in kernel_pages.values() if isinstance(v, int)]
        folios = reader.read(pfns)
        first = graph.start // graph.page
        kernel = compare.kernel_page_side(kernel_pages, folios, first)
        model = compare.model_page_side(self.runner.kernel, self.window)
        mismatch = compare.compare_page_side(kernel, model, self.last_kernel_graph, self.last_model_graph)
        return self._div("L4", mismatch)

    def kernel_graph(self, pids: set[int] | None = None) -> compare.Graph:
        """The kernel's anon_vma graph now (the workers are idle between steps), reading only
        ``pids`` (None: every live process) when that is sound, and every process otherwise.

        A step changes the VMA records (anon_vma, chain) of the processes it changes only; what it
        changes elsewhere are the fields of anon_vmas (num_children, num_active_vmas, refcount),
        and every anon_vma whose fields it can change is chained to a VMA of the acting process
        before or after the step (its own, their parents and root; a fork's child's).  So the
        fields are taken from the fresh records, and if an anon_vma the re-read processes chained
        before is chained by none of them now (an unmap, an exit) while another process still
        chains it, its fields are stale there: every process is read again.  So it is when a
        re-read chain was cut at the iterator's limit (a fork chain deeper than 32): the anon_vmas
        past the cut (the root among them, whose refcount every fork changes) are then visible
        only in other processes' shorter chains."""
        graph = self.oracle.graph
        assert graph is not None
        live = self.session.live
        for gone in set(self.graph_records) - set(live):
            pids = None if pids is None else pids | {gone}  # its anon_vmas count as re-read below
        read = live if pids is None else [pid for pid in live if pid in pids]
        fresh = graph.snapshot({pid: self.session.workers[pid].pid for pid in read})
        if pids is not None:
            before = {c.anon_vma for pid in pids for r in self.graph_records.get(pid, ()) for c in r.chain}
            now = {c.anon_vma for recs in fresh.values() for r in recs for c in r.chain}
            others = {c.anon_vma for pid in live if pid not in pids for r in self.graph_records[pid] for c in r.chain}
            cut = any(r.status != bpf.END_COMPLETE for recs in fresh.values() for r in recs)
            if cut or (before - now) & others:
                fresh = graph.snapshot({pid: self.session.workers[pid].pid for pid in live})
                pids = None
        if pids is None:
            self.graph_records = fresh
        else:
            self.graph_records = {pid: fresh.get(pid, self.graph_records.get(pid, [])) for pid in live}
        kernel = compare.kernel_graph(self.graph_records, graph.start, graph.page)
        kernel.avs.update(compare.kernel_graph(fresh, graph.start, graph.page).avs)  # fresh fields win
        return kernel

    def compare_graph(self, pids: set[int] | None = None) -> Divergence | None:
        """L3 (reading ``pids`` only where that is sound, see :meth:`kernel_graph`).  A mismatch is
        confirmed by a second snapshot of every process a moment later: the kernel's refcount
        also counts short-lived references (page migration, an rmap walk that had to sleep) that
        the model does not have."""
        graph = self.oracle.graph
        assert graph is not None
        model = compare.model_graph(self.runner.kernel, graph.max_chain)
        kernel = self.kernel_graph(pids)
        self.last_kernel_graph, self.last_model_graph = kernel, model
        mismatch = compare.compare_graphs(kernel, model)
        if mismatch is None:
            return None
        time.sleep(0.005)
        kernel = self.kernel_graph()
        self.last_kernel_graph = kernel
        second = compare.compare_graphs(kernel, model)
        if second is None:
            self.notes.append(f"step {self.index}: L3 differed once, then agreed ({mismatch[2]})")
            return None
        return self._div("L3", second)

    def finish(self) -> Divergence | None:
        """End-of-sequence checks (L0 and L2 of every process, if the last step did not read them
        all; L1; L3 if not compared after every step), while the workers are still alive."""
        if not self.observed_all:
            self.read_processes(None)
            div = self.compare_layouts_and_pages(compare_history=False)  # same step: nothing new
            if div is None and self.oracle.graph is not None and self.oracle.graph_every_step:
                div = self.compare_graph()
                if div is None and self.oracle.page_reader is not None:
                    div = self.compare_page_side(self.kernel_page_states())
            if div is not None:
                return div
        if "L1" in self.oracle.used:
            tolerant = self.oracle.swap_tolerant
            kernel = compare.kernel_flags({pid: self.session.smaps(pid) for pid in self.session.live})
            model = compare.model_flags(self.runner.kernel, tolerant)
            div = self._div("L1", compare.compare_flags(kernel, model))
            if div is not None:
                return div
        if self.oracle.graph is not None and not self.oracle.graph_every_step:
            div = self.compare_graph()
            if div is None and self.oracle.page_reader is not None:
                div = self.compare_page_side(self.kernel_page_states())
            return div
        return None


# ---- the differential campaign ----


class ShrinkBudgetSpent(BaseException):
    """Raised in a machine step once shrinking has used its time: a BaseException, so that
    Hypothesis lets it through at once instead of treating it as another failure."""


class DivergenceFound(AssertionError):
    """Raised in a machine step: a divergence (Hypothesis shrinks it like any failure)."""

    def __init__(self, divergence: Divergence, steps: list[ops.Op]) -> None:
        super().__init__(str(divergence))
        self.divergence = divergence
        self.steps = steps


def live_language(strategy: Strategy, noreserve: bool) -> Strategy:
    """``strategy`` as a live kernel can run it: no fail_alloc, and plain mmaps only where the
    kernel ignores MAP_NORESERVE (``noreserve`` false)."""
    strategy = no_fail_alloc(strategy)
    return strategy if noreserve else strategy.plain_mmaps()


def no_fail_alloc(strategy: Strategy) -> Strategy:
    """``strategy`` with fail_alloc left out of every mix it draws, its portfolio's included (a
    real kernel cannot fail an allocation on demand)."""
    weights = {op: w for op, w in strategy.weights.items() if op != "fail_alloc"}
    return attrs.evolve(strategy, weights=weights, without=(*strategy.without, "fail_alloc"))


class OracleMachine(RmapMachine):
    """The model's machine, with every step also run live (bound by :func:`oracle_machine`)."""

    oracle: ClassVar[Oracle]
    stats: ClassVar[dict[str, int]]
    last_failure: ClassVar[list[DivergenceFound]]
    deadline: ClassVar[float | None] = None

    def __init__(self) -> None:
        super().__init__()
        self._cm = self.oracle.sequence(self.strategy.window, self.strategy.steps + 1)
        self.run = self._cm.__enter__()
        self.runner = self.run.runner  # the machine draws its arguments from the oracle's model
        self.failed = False
        self.stats["sequences"] += 1

    def _fail(self, div: Divergence) -> None:
        self.failed = True
        if not self.failed_at:
            self.failed_at.append(time.monotonic())
        found = DivergenceFound(div, list(self.steps))
        if not self.last_failure or len(found.steps) <= len(self.last_failure[0].steps):
            self.last_failure[:] = [found]  # the shortest failure seen (shrinking makes them shorter)
        raise found

    shrink_deadline: ClassVar[float | None] = None
    hypothesis_shrink: ClassVar[float | None] = None  # seconds Hypothesis may shrink after the first failure
    failed_at: ClassVar[list[float]]  # when the first failure of this run was seen

    def do(self, op: ops.Op) -> None:
        now = time.monotonic()
        if self.deadline is not None and not self.last_failure and now > self.deadline:
            raise Stop("budget spent")
        if self.last_failure and self._shrinking_done(now):
            raise ShrinkBudgetSpent()  # the shortest failure so far is the result
        self.steps.append(op)
        div = self.run.step(op)
        self.stats["steps"] += 1
        if div is not None:
            self._fail(div)
        if self.run.last_result == "ok":
            if isinstance(op, ops.Fork):
                self.live.append(self.runner.kernel.next_pid - 1)
            elif isinstance(op, ops.Exit):
                self.live.remove(op.pid)

    def _shrinking_done(self, now: float) -> bool:
        if self.shrink_deadline is not None and now > self.shrink_deadline:
            return True
        return (
            self.hypothesis_shrink is not None
            and bool(self.failed_at)
            and now > self.failed_at[0] + self.hypothesis_shrink
        )

    def teardown(self) -> None:
        try:
            if not self.failed:
                div = self.run.finish()
                if div is not None:
                    self._fail(div)
        finally:
            self._cm.__exit__(None, None, None)


def oracle_machine(oracle: Oracle, strategy: Strategy, stats: dict[str, int]) -> type[OracleMachine]:
    base = make_machine(oracle.kernel, live_language(strategy, oracle.noreserve), invariants=())
    namespace: dict[str, Any] = {"oracle": oracle, "stats": stats, "last_failure": [], "failed_at": []}
    cls: type[OracleMachine] = type("OracleMachine_" + base.__name__, (OracleMachine, base), namespace)
    cls.TestCase.settings = machine_settings(strategy)
    return cls


@attrs.frozen
class Unconfirmed:
    """A divergence the campaign saw that did not happen again when its steps were replayed on a
    fresh worker tree (the kernel's timing: a page still in a per-CPU batch when it was paged out,
    a /proc file read mid-change): shown, not reported as found."""

    steps: list[ops.Op]
    divergence: Divergence


@attrs.define
class FuzzResult:
    seconds: float
    sequences: int
    steps: int
    divergence: Divergence | None = None
    steps_list: list[ops.Op] = attrs.field(factory=list)
    path: str | None = None
    status: str | None = None
    unconfirmed: list[Unconfirmed] = attrs.field(factory=list)


REPLAYS = 3  # a divergence is confirmed when one of this many replays of its steps shows it again


def confirm(oracle: Oracle, candidates: list[list[ops.Op]], window: int) -> tuple[list[ops.Op], Divergence] | None:
    """The first of ``candidates`` (shrunk steps, then the steps as found) whose replay diverges."""
    for steps in candidates:
        for _ in range(REPLAYS):
            div = oracle.run(steps, window).divergence
            if div is not None:
                return steps, div
    return None


def fuzz(
    oracle: Oracle,
    strategy: Strategy,
    budget: float = 60.0,
    seed: int = 0,
    corpus_dir: Path | None = None,
    chunk: int = 100,
    sequences: int | None = None,
) -> FuzzResult:
    """Run the differential campaign until ``budget`` seconds pass, ``sequences`` sequences ran, or a
    divergence is found; a divergence is shrunk by Hypothesis, replayed to confirm it, and saved
    (kind ``divergence``).  One that no replay shows again is kept as unconfirmed and the campaign
    goes on."""
    stats = {"sequences": 0, "steps": 0}
    unconfirmed: list[Unconfirmed] = []
    started = time.monotonic()
    run_chunk = 0
    machine = oracle_machine(oracle, strategy, stats)
    # the model's own invariants are not checked here: the campaign is about the kernel
    while time.monotonic() - started < budget:
        left = chunk if sequences is None else min(chunk, sequences - stats["sequences"])
        if left <= 0:
            break
        settings = machine_settings(strategy, max_examples=left, database=None, derandomize=False)
        # nothing of Hypothesis' own on stdout (its slow-shrink warning broke --json)
        settings = hypothesis.settings(settings, verbosity=hypothesis.Verbosity.quiet)
        machine.last_failure[:] = []
        machine.failed_at[:] = []
        machine.deadline = started + budget
        machine.shrink_deadline = started + budget + shrink_budget(budget)
        machine.hypothesis_shrink = shrink_budget(budget) * HYPOTHESIS_SHARE
        try:
            run_machine(machine, seed * 1_000_003 + run_chunk, settings, b"rmapfuzz/oracle")
        except (DivergenceFound, ShrinkBudgetSpent):
            pass
        except hypothesis.errors.Flaky:
            # a failure that did not replay the same way under Hypothesis (the kernel's timing):
            # the shortest one seen is replayed below, and only a confirmed one is reported
            if not machine.last_failure:
                raise
        except Stop:
            break
        run_chunk += 1
        if machine.last_failure:
            found = machine.last_failure[0]
            # Hypothesis shrinks slowly here (every candidate runs live, and its choices are not
            # the steps): it had a third of the shrink budget; the replay-based reducer has the rest
            left_s = max(1.0, started + budget + shrink_budget(budget) - time.monotonic())
            steps = minimize_divergence(oracle, found.steps, strategy.window, budget=left_s)
            confirmed = confirm(oracle, [steps, found.steps], strategy.window)
            if confirmed is None:
                unconfirmed.append(Unconfirmed(found.steps, found.divergence))
                continue
            steps, div = confirmed
            result = FuzzResult(time.monotonic() - started, stats["sequences"], stats["steps"], div, steps,
                                unconfirmed=unconfirmed)  # fmt: skip
            if corpus_dir is not None:
                rep = divergence_reproducer(oracle, strategy, steps, div, seed)
                path, status = corpus.save(corpus_dir, rep)
                result.path, result.status = str(path), status
            return result
    return FuzzResult(time.monotonic() - started, stats["sequences"], stats["steps"], unconfirmed=unconfirmed)


# The share of the shrink budget Hypothesis gets once a divergence is found; the replay-based
# reducer (minimize_divergence), which works on the steps themselves, has the rest.
HYPOTHESIS_SHARE = 1 / 3


def shrink_budget(budget: float) -> float:
    """Seconds a found divergence may be shrunk beyond the campaign's budget: half of it, at
    least 10 s and at most 60 s."""
    return min(60.0, max(10.0, budget / 2))


def divergence_reproducer(
    oracle: Oracle, strategy: Strategy, steps: list[ops.Op], div: Divergence, seed: int
) -> corpus.Reproducer:
    return corpus.Reproducer(
        kernel=Runner(oracle.kernel, strategy.window, invariants=()).kernel.name,
        window=strategy.window,
        steps=steps,
        kind="divergence",
        violation={"invariant": "divergence", "step": div.step, "message": f"{div.level}: {div.message}"},
        found={
            "seed": seed,
            "strategy": strategy.name,
            "tool": f"rmapfuzz {__version__}",
            "hypothesis": hypothesis.__version__,
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "uname": oracle.uname,
            "levels": list(oracle.used),
            "level": div.level,
            "kernel_showed": div.kernel,
            "model_predicted": div.model,
        },
    )


def load_reproducer(path: str | Path) -> corpus.Reproducer:
    """:func:`corpus.load` (divergence entries record the pseudo-invariant ``divergence``)."""
    return corpus.load(path)


__all__ = ["DivergenceFound", "ExecutorError", "Oracle", "OracleError", "Outcome", "fuzz", "probe_levels"]


# ---- random sequences, for measuring agreement ----


def sample_sequences(strategy: Strategy, count: int, seed: int = 0) -> list[list[ops.Op]]:
    """``count`` random sequences as the campaign's machine draws them on the ``current`` model
    (fail_alloc left out, invariants off), without running anything live."""
    return generated_sequences(MODEL, no_fail_alloc(strategy), count, seed, invariants=())


def minimize_divergence(oracle: Oracle, steps: Sequence[ops.Op], window: int, budget: float = 30.0) -> list[ops.Op]:
    """Replay-based reduction of a diverging sequence (:func:`rmapfuzz.minimize.greedy.minimize_more`,
    the model minimiser's reducer, with a live replay as the test): chunks and single steps
    deleted (a fork with its child's steps, later pids renumbered), forks folded into their parent,
    arguments lowered, adjacent range ops merged and processes swapped, while the replay still
    diverges at the same level; truncated after the divergence.  Stops at a fixpoint or when
    ``budget`` seconds pass, with the shortest sequence found."""
    first = oracle.run(steps, window)
    if first.divergence is None:
        return list(steps)
    level = first.divergence.level

    def still_diverges(candidate: list[ops.Op]) -> bool:
        div = oracle.run(candidate, window).divergence
        return div is not None and div.level == level

    best = minimize_more(steps[: first.divergence.step + 1], still_diverges, deadline=time.monotonic() + budget)
    last = oracle.run(best, window).divergence
    return best if last is None else best[: last.step + 1]
