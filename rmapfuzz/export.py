"""Export a reproducer as a standalone C program (kselftest style) or as a pytest regression test.

:func:`to_c` writes a libc-only C program that performs the steps on a real kernel in the window
at ``0x2000_0000_0000``: one controller process that never touches the window, and one forked
worker per op-language process; the controller sends step numbers down pipes, so the steps run
in the recorded order across processes; a ``fork`` step forks the worker (the child becomes the
next process), an ``exit`` step ``_exit``\\ s it and the controller waits on its pidfd.  Each step is
one system call (or one load/store) on its own line with the op as a comment.  At the end the
controller reads every live process's ``/proc/<pid>/maps``, compares the window's VMAs (and every
step's return value) with the ``current`` model's prediction, and prints ``PASS`` or ``FAIL``
(exit 0 / 1; 4 = KSFT_SKIP when the window is not free).  It also prints the model's verdict on the
reproducer's own kernel, i.e. what a kernel with the bug would do.

After the steps the program makes the kernel walk the reverse map of every page in every live
process's window, so that a page left pointing at a freed anon_vma is dereferenced (a KASAN report
or an oops on a kernel that has the bug, see docs/lab.md): the page_idle bitmap (each page's PFN
from /proc/PID/pagemap, marked idle: page_idle_clear_pte_refs() -> rmap_walk_anon(); needs root and
CONFIG_IDLE_PAGE_TRACKING), after an mlock() of a scratch page has drained the per-CPU LRU batches
(page_idle skips a page not yet on the LRU), then ``MADV_PAGEOUT`` over each worker's window
(folio_referenced() walks the rmap of each page mapped once).  What was unavailable is printed.

``fail_alloc`` steps become fault injection (:func:`fail_points`): the model's countdown is replayed
on the reproducer's own kernel to find the step whose allocation fails and which anon_vma /
anon_vma_chain allocation of that step it is (the c-th); the worker running that step writes c to
``/proc/thread-self/fail-nth`` just before its system call.  A kernel counts there only the
allocations that reach should_failslab() with the cache filter on: the lab boots with
``slub_debug=A,anon_vma,anon_vma_chain`` (SLAB_FAILSLAB on those two caches only) and sets
failslab's ``cache-filter`` to Y and ``ignore-gfp-wait`` to N (both allocate with GFP_KERNEL).
Where the kernel made fewer such allocations than the model in that step, the program says the
failure did not fire.  Every worker holds only the read end of its command pipe, so when the
controller dies (killed, crashed) each worker reads end-of-file and exits: nothing stays behind.

:func:`to_pytest` writes a test module that replays the steps with :mod:`rmapfuzz.replay` and
expects the recorded violation on the reproducer's kernel (clean if none is recorded); a
``divergence`` entry becomes a live-kernel test (skipped where the oracle cannot run) that is
expected to fail until the model is fixed.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Sequence

import attrs

from rmapfuzz import corpus, ops
from rmapfuzz.invariants import Violation
from rmapfuzz.model.objects import AnonVma, Vma, flags_to_prot
from rmapfuzz.model.trace import Tracer
from rmapfuzz.replay import Runner

MODEL = "current"
BASE = 0x2000_0000_0000


class ExportError(ValueError):
    """A reproducer that cannot be exported in the asked form (one line)."""


def _layouts(k: Runner) -> dict[int, list[tuple[int, int, str]]]:
    kern = k.kernel
    return {
        pid: [(v.vm_start, v.vm_end, flags_to_prot(v.vm_flags)) for v in mm.vmas]
        for pid, mm in sorted(kern.mms.items())
        if mm.alive
    }


def layout_string(vmas: Sequence[tuple[int, int, str]]) -> str:
    """The C program's spelling of a window layout: ``[0,4) rw; [4,8) r; `` (``none`` for PROT_NONE)."""
    return "".join(f"[{s},{e}) {p or 'none'}; " for s, e, p in vmas)


def model_run(kernel: str, steps: Sequence[ops.Op], window: int) -> tuple[list[str], Violation | None, Runner]:
    """Every step's result on ``kernel`` (going on past violations while the model can), the first
    violation, and the runner with the final state."""
    runner = Runner(kernel, window)
    results: list[str] = []
    first: Violation | None = None
    for op in steps:
        try:
            result, found = runner.step(op)
        except Exception:
            if first is None:
                raise
            break
        results.append(result)
        if found and first is None:
            first = found[0]
    return results, first, runner


# ---- C ----

_PROT = {"r": "PROT_READ", "w": "PROT_WRITE", "x": "PROT_EXEC"}
_MADV = {
    "dontneed": "MADV_DONTNEED",
    "dontfork": "MADV_DONTFORK",
    "dofork": "MADV_DOFORK",
    "wipeonfork": "MADV_WIPEONFORK",
    "keeponfork": "MADV_KEEPONFORK",
    "pageout": "MADV_PAGEOUT",
}
_MREMAP = {"maymove": "MREMAP_MAYMOVE", "fixed": "MREMAP_FIXED", "dontunmap": "MREMAP_DONTUNMAP"}
_MMAP = {"noreserve": "MAP_NORESERVE"}


def _prot_c(prot: str) -> str:
    return " | ".join(_PROT[c] for c in prot) or "PROT_NONE"


def _c_call(op: ops.Op) -> str:
    """The one line of C for a step that a worker runs (returns 0 or -errno)."""
    if isinstance(op, ops.Mmap):
        flags = "MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED" + "".join(f" | {_MMAP[f]}" for f in op.flags)
        return (
            f"return mmap(W({op.start}), {op.pages} * PG, {_prot_c(op.prot)}, "
            f"{flags}, -1, 0) == MAP_FAILED ? -errno : 0;"
        )
    if isinstance(op, ops.Munmap):
        return f"return munmap(W({op.start}), {op.pages} * PG) ? -errno : 0;"
    if isinstance(op, ops.Mprotect):
        return f"return mprotect(W({op.start}), {op.pages} * PG, {_prot_c(op.prot)}) ? -errno : 0;"
    if isinstance(op, ops.Madvise):
        return f"return madvise(W({op.start}), {op.pages} * PG, {_MADV[op.advice]}) ? -errno : 0;"
    if isinstance(op, ops.Mremap):
        flags = " | ".join(_MREMAP[f] for f in op.flags) or "0"
        new = f"W({op.new_start})" if "fixed" in op.flags else "0"
        return (
            f"return syscall(SYS_mremap, W({op.start}), {op.pages} * PG, {op.new_pages} * PG, {flags}, {new}) "
            "== -1 ? -errno : 0;"
        )
    if isinstance(op, ops.Read):
        return f"(void)*(volatile char *)W({op.addr}); return 0;"
    if isinstance(op, ops.Write):
        return f"*(volatile char *)W({op.addr}) = 1; return 0;"
    raise TypeError(f"no C line for {op!r}")


def _expect_c(result: str) -> str:
    if result in ("ok", "OOM"):  # a real kernel retries a fault that leaked VM_FAULT_OOM
        return "0"
    if result.startswith("E"):
        return f"-{result}"
    raise ExportError(f"a step answers {result!r}, which a C program cannot check")


def _c_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid C string literal for ASCII text


class _CloneWatch(Tracer):
    """Forwards every tracepoint; notes whether a failed allocation was made by anon_vma_clone()."""

    def __init__(self, inner: Tracer) -> None:
        self.inner = inner
        self.in_clone = False

    def cover(self, point: str) -> None:
        self.inner.cover(point)

    def alloc(self, failed: bool) -> None:
        self.inner.alloc(failed)
        if failed:
            self.in_clone = any(frame.function == "anon_vma_clone" for frame in inspect.stack()[1:10])

    def takeover(self, where: str, taker: Vma, taken: Vma) -> None:
        self.inner.takeover(where, taker, taken)

    def moving(self, vma: Vma) -> None:
        self.inner.moving(vma)

    def moved(self, vma: Vma, new_vma: Vma) -> None:
        self.inner.moved(vma, new_vma)

    def reuse(self, vma: Vma, anon_vma: AnonVma) -> None:
        self.inner.reuse(vma, anon_vma)


@attrs.frozen
class FailPoints:
    """Where each ``fail_alloc`` fires on a model: ``at`` {step index: c}, the c-th anon_vma /
    anon_vma_chain allocation of that step fails (what ``fail-nth`` = c does to the task that runs
    it); ``in_clone``, the steps whose failing allocation is anon_vma_clone()'s (a real kernel tries
    that one twice, GFP_NOWAIT then GFP_KERNEL, so both must fail); ``unfired``, the fail_alloc
    steps whose countdown never fired (nothing to inject)."""

    at: dict[int, int]
    in_clone: frozenset[int]
    unfired: tuple[int, ...]


def fail_points(kernel: str, steps: Sequence[ops.Op], window: int) -> FailPoints:
    """Replay ``steps`` on ``kernel``'s model and find its :class:`FailPoints`.

    The model's countdown is global and goes on across steps and processes; a kernel's fail-nth is
    per task, so the program injects at the firing step only, with the countdown left there."""
    runner = Runner(kernel, window, invariants=())
    kern = runner.kernel
    watch = _CloneWatch(kern.trace)
    kern.trace = watch
    points: dict[int, int] = {}
    in_clone: set[int] = set()
    pending: int | None = None  # the fail_alloc step whose countdown runs
    unfired: list[int] = []
    for i, op in enumerate(steps):
        if isinstance(op, ops.FailAlloc):
            if pending is not None:
                unfired.append(pending)
            pending = i
        before = kern.fail_nth
        watch.in_clone = False
        try:
            runner.step(op)
        except Exception:
            break
        if not isinstance(op, ops.FailAlloc) and before is not None and kern.fail_nth is None:
            points[i] = before
            if watch.in_clone:
                in_clone.add(i)
            pending = None
    if pending is not None:
        unfired.append(pending)
    return FailPoints(points, frozenset(in_clone), tuple(unfired))


def to_c(rep: corpus.Reproducer, source: str = "") -> str:
    """The reproducer as a standalone C program; raises :class:`ExportError` for a step a C program
    cannot check."""
    points = fail_points(rep.kernel, rep.steps, rep.window)
    inject, unfired = points.at, points.unfired
    current_inject = fail_points(MODEL, rep.steps, rep.window).at
    results, _, runner = model_run(MODEL, rep.steps, rep.window)
    model_name = runner.kernel.name
    own_results, own_violation, own_runner = model_run(rep.kernel, rep.steps, rep.window)
    own_name = own_runner.kernel.name
    expected = _layouts(runner)
    own_layouts = _layouts(own_runner)
    nprocs = 1 + sum(1 for op, r in zip(rep.steps, results, strict=True) if isinstance(op, ops.Fork) and r == "ok")

    cases: list[str] = []
    plan: list[str] = []
    next_pid = 1
    for i, (op, result) in enumerate(zip(rep.steps, results, strict=True)):
        what = ops.describe(op)
        nth = inject.get(i, 0)
        pair = int(i in points.in_clone)
        if nth:
            what += f" [fail-nth {nth}: its allocation #{nth} fails{' (both tries)' if pair else ''}]"
        if isinstance(op, ops.FailAlloc):
            where = next((f"injected at step {j} as fail-nth {c}" for j, c in inject.items() if j > i), "never fires")
            if i in unfired:
                where = "never fires on the model, nothing injected"
            plan.append(f"\t{{ {i}, 0, SKIP, 0, 0, 0, {_c_string(f'{what}: {where}')} }},")
            continue
        pid = op.pid
        if result == "ESRCH":
            plan.append(f"\t{{ {i}, {pid}, SKIP, 0, 0, 0, {_c_string(what + ': no such process, not run')} }},")
            continue
        if isinstance(op, ops.Fork):
            if result == "ok":
                plan.append(
                    f"\t{{ {i}, {pid}, FORK, {next_pid}, {nth}, {pair}, {_c_string(what + f' -> P{next_pid}')} }},"
                )
                next_pid += 1
            else:
                plan.append(f"\t{{ {i}, {pid}, FORK, -1, {nth}, {pair}, {_c_string(what + f' -> {result}')} }},")
            continue
        if isinstance(op, ops.Exit):
            plan.append(f"\t{{ {i}, {pid}, EXIT, 0, 0, 0, {_c_string(what)} }},")
            continue
        if result == "SEGV":
            plan.append(f"\t{{ {i}, {pid}, SKIP, 0, 0, 0, {_c_string(what + ': SIGSEGV in the model, not run')} }},")
            continue
        cases.append(f"\tcase {i}: /* {what} */\n\t\t{_c_call(op)}")
        plan.append(f"\t{{ {i}, {pid}, RUN, {_expect_c(result)}, {nth}, {pair}, {_c_string(what)} }},")

    expect_lines = [f"\t[{pid}] = {_c_string(layout_string(v))}," for pid, v in expected.items()]
    verdict = (
        f"{own_name}: {own_violation.invariant} at step {own_violation.step}: {own_violation.message}"
        if own_violation is not None
        else f"{own_name}: no invariant broken"
    )
    own_lines = [f"P{pid} {layout_string(v) or '(empty)'}" for pid, v in own_layouts.items()]
    differs = own_layouts != expected or own_results[: len(results)] != results[: len(own_results)]
    notes = [
        f"reproducer: {source or rep.name} (kernel {rep.kernel}, window {rep.window} pages, {len(rep.steps)} steps)",
        f"the model of {verdict}",
    ]
    if differs:
        notes.append(f"on the {own_name} model the final layout is: " + " | ".join(own_lines))
        diff_steps = [
            f"step {i}: {a} there, {b} on {model_name}"
            for i, (a, b) in enumerate(zip(own_results, results, strict=False))
            if a != b
        ]
        if diff_steps:
            notes.append("results that differ: " + "; ".join(diff_steps))
    else:
        notes.append(f"on the {own_name} model the layout and results are the same as on {model_name}")
    if inject:
        spots = ", ".join(f"step {j} allocation #{c}" for j, c in inject.items())
        notes.append(f"fault injection (fail-nth on anon_vma, anon_vma_chain), as {own_name} counts: {spots}")
        if current_inject != inject:
            there = ", ".join(f"step {j} allocation #{c}" for j, c in current_inject.items()) or "nowhere"
            notes.append(f"the {model_name} model would fail {there}; the expected results are its own")
    if any(r == "OOM" for r in results):
        notes.append("a fault the model ends in VM_FAULT_OOM is retried by a real kernel, so it expects 0")
    header = "\n".join(f" * {n}" for n in notes)
    note_prints = "\n".join(f'\tprintf("# %s\\n", {_c_string(n)});' for n in notes)
    return _C_TEMPLATE.format(
        header=header,
        model=model_name,
        window=rep.window,
        nprocs=nprocs,
        nsteps=len(rep.steps),
        cases="\n".join(cases),
        plan="\n".join(plan),
        expect="\n".join(expect_lines),
        note_prints=note_prints,
        base=f"{BASE:#x}UL",
    )


_C_TEMPLATE = r"""// SPDX-License-Identifier: GPL-2.0
/*
 * Generated by `rmapfuzz export --c`: a reproducer run on a real kernel.
{header}
 *
 * The expected per-step results and final window layouts are the {model} model's prediction.
 * Then the kernel walks the reverse map of every page in the window (page_idle bitmap, needs root;
 * MADV_PAGEOUT), which dereferences a freed anon_vma left under a page: on a kernel with the bug
 * that is a KASAN report or an oops (the console shows it; see docs/lab.md, `rmapfuzz lab repro`).
 * Build: cc -O0 -o repro repro.c     Run: ./repro   (PASS: exit 0, FAIL: exit 1, SKIP: exit 4)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
#ifndef MADV_KEEPONFORK
#define MADV_KEEPONFORK 19
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef PR_SET_CHILD_SUBREAPER
#define PR_SET_CHILD_SUBREAPER 36
#endif
#ifndef PR_SET_THP_DISABLE
#define PR_SET_THP_DISABLE 41
#endif

#define BASE {base}
#define PG 4096UL
#define WINDOW {window}
#define W(p) ((void *)(BASE + (unsigned long)(p) * PG))
#define NPROCS {nprocs}
#define NSTEPS {nsteps}

enum {{ RUN, FORK, EXIT, SKIP }};
/* expect: RUN: the return value; FORK: the child's process number, -1 if the fork fails.
 * inject: 0, or c > 0: the c-th anon_vma / anon_vma_chain allocation of the step fails (fail-nth);
 * pair: it is anon_vma_clone()'s, which a kernel retries (GFP_NOWAIT, then GFP_KERNEL): the c+1-th
 * fails too (failslab: probability 100, times 2, task-filter, this task's make-it-fail) */
struct step {{ int index, proc, kind; long expect; int inject, pair; const char *what; }};
#define WALK (-1) /* the command after the steps: page out the window (MADV_PAGEOUT) */

static const struct step plan[] = {{
{plan}
}};

/* the final layout of each live process, as the model predicts it */
static const char *const expected[NPROCS] = {{
{expect}
}};

static int cmd[NPROCS][2], rep[NPROCS][2];
static pid_t pids[NPROCS];
static int pidfds[NPROCS], alive[NPROCS];

/* one system call (or one load / store) per step */
static long step(int i)
{{
	switch (i) {{
{cases}
	}}
	return -ENOSYS;
}}

/* fault injection: the n-th failslab-filtered allocation of this task fails (0: off) */
static int fail_nth(int n)
{{
	char text[16];
	int fd = open("/proc/thread-self/fail-nth", O_RDWR), len, ok;

	if (fd < 0)
		return -1;
	if (n > 0) {{
		len = snprintf(text, sizeof(text), "%d", n);
		ok = write(fd, text, (size_t)len) == len;
	}} else {{
		/* what is left of the countdown: 0 when it fired */
		len = (int)read(fd, text, sizeof(text) - 1);
		text[len > 0 ? len : 0] = 0;
		ok = write(fd, "0", 1) == 1 ? atoi(text) : -1;
	}}
	close(fd);
	return ok;
}}

static void put(const char *path, const char *value)
{{
	int fd = open(path, O_WRONLY);

	if (fd >= 0) {{
		if (write(fd, value, strlen(value)) < 0)
			printf("# cannot write %s\n", path);
		close(fd);
	}}
}}

/* arm (or disarm) the retry's failure too: once fail-nth has fired, this task's next failslab
 * attempt goes through probability (100), task-filter (make-it-fail) and times (one left) */
static void fail_pair(int on)
{{
	put("/sys/kernel/debug/failslab/task-filter", "Y");
	put("/sys/kernel/debug/failslab/times", on ? "2" : "0"); /* the fail-nth failure counts one */
	put("/sys/kernel/debug/failslab/probability", on ? "100" : "0");
	put("/proc/thread-self/make-it-fail", on ? "1" : "0");
}}

static int arm(const struct step *s)
{{
	if (s->pair)
		fail_pair(1);
	return fail_nth(s->inject);
}}

static int disarm(const struct step *s)
{{
	int left = fail_nth(0);

	if (s->pair)
		fail_pair(0);
	return left;
}}

/* MADV_PAGEOUT page by page (a hole or an unmappable VMA only skips that page) */
static long page_out(void)
{{
	long n = 0;

	for (unsigned long p = 0; p < WINDOW; p++)
		if (madvise(W(p), PG, MADV_PAGEOUT) == 0)
			n++;
	return n;
}}

static void worker(int me)
{{
	/* only the controller writes commands and reads replies: once it is gone, read() sees EOF */
	for (int k = 0; k < NPROCS; k++) {{
		close(cmd[k][1]);
		close(rep[k][0]);
	}}
	for (;;) {{
		int i, left = 0;
		long r;

		if (read(cmd[me][0], &i, sizeof(i)) != sizeof(i))
			_exit(0);
		if (i == WALK) {{
			r = page_out();
		}} else if (plan[i].kind == EXIT) {{
			_exit(0);
		}} else if (plan[i].kind == FORK) {{
			pid_t c;

			if (plan[i].inject && arm(&plan[i]) < 0)
				left = -1;
			c = fork();
			if (c == 0) {{
				if (plan[i].expect < 0)
					_exit(0); /* the model says this fork fails: no process to be */
				me = (int)plan[i].expect;
				continue;
			}}
			r = c < 0 ? -errno : c;
			if (plan[i].inject && left == 0)
				left = disarm(&plan[i]);
		}} else {{
			if (plan[i].inject && arm(&plan[i]) < 0)
				left = -1;
			r = step(i);
			if (plan[i].inject && left == 0)
				left = disarm(&plan[i]);
		}}
		if (write(rep[me][1], &r, sizeof(r)) != sizeof(r) || write(rep[me][1], &left, sizeof(left)) != sizeof(left))
			_exit(1);
	}}
}}

static void adopt(int proc, pid_t pid)
{{
	pids[proc] = pid;
	pidfds[proc] = (int)syscall(SYS_pidfd_open, pid, 0);
	alive[proc] = 1;
}}

static void wait_exit(int proc)
{{
	struct pollfd p = {{ .fd = pidfds[proc], .events = POLLIN }};

	if (pidfds[proc] >= 0)
		poll(&p, 1, 10000);
	waitpid(pids[proc], NULL, 0); /* ours if it is P0 or an adopted orphan */
	alive[proc] = 0;
}}

/* send command i (a step, or WALK) to process proc; 1 with the reply in *r and what was left of
 * an injected failure's countdown in *left (-1: fail-nth unavailable), 0 if the process died */
static int ask(int proc, int i, long *r, int *left)
{{
	struct pollfd p[2] = {{ {{ .fd = rep[proc][0], .events = POLLIN }}, {{ .fd = pidfds[proc], .events = POLLIN }} }};

	if (write(cmd[proc][1], &i, sizeof(i)) != sizeof(i))
		return 0;
	if (poll(p, 2, 60000) <= 0 || !(p[0].revents & POLLIN))
		return 0;
	return read(rep[proc][0], r, sizeof(*r)) == sizeof(*r) && read(rep[proc][0], left, sizeof(*left)) == sizeof(*left);
}}

/* mark idle (page_idle bitmap) every present page of process proc's window: the kernel walks each
 * page's reverse map to clear its young bits (page_idle_clear_pte_refs -> rmap_walk); -1 if the
 * pagemap's PFNs or the bitmap are unavailable (not root, no CONFIG_IDLE_PAGE_TRACKING) */
static long idle_walk(int proc)
{{
	char path[64];
	long n = 0;
	int map, bitmap;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pids[proc]);
	map = open(path, O_RDONLY);
	bitmap = open("/sys/kernel/mm/page_idle/bitmap", O_RDWR);
	if (map < 0 || bitmap < 0) {{
		if (map >= 0)
			close(map);
		if (bitmap >= 0)
			close(bitmap);
		return -1;
	}}
	for (unsigned long p = 0; p < WINDOW; p++) {{
		uint64_t entry, pfn, bits;
		off_t at = (off_t)((BASE / PG + p) * sizeof(entry));

		if (pread(map, &entry, sizeof(entry), at) != sizeof(entry) || !(entry >> 63))
			continue;
		pfn = entry & ((1ULL << 55) - 1);
		if (!pfn) {{
			n = -1; /* PFNs hidden: not CAP_SYS_ADMIN */
			break;
		}}
		bits = 1ULL << (pfn % 64);
		if (pwrite(bitmap, &bits, sizeof(bits), (off_t)(pfn / 64 * 8)) == sizeof(bits))
			n++;
		(void)!pread(bitmap, &bits, sizeof(bits), (off_t)(pfn / 64 * 8)); /* reading walks idle pages again */
	}}
	close(map);
	close(bitmap);
	return n;
}}

/* after the steps: make the kernel walk the reverse map of every page the workers map */
static void rmap_walk(void)
{{
	static char scratch[4096] __attribute__((aligned(4096)));
	long walked = 0, paged = 0, r;
	int left, idle_ok = 1;

	/* page_idle only walks pages on the LRU: mlock() drains every CPU's LRU batch first */
	scratch[0] = 1;
	if (mlock(scratch, sizeof(scratch)) == 0)
		munlock(scratch, sizeof(scratch));
	for (int k = 0; k < NPROCS; k++) {{
		if (!alive[k])
			continue;
		r = idle_walk(k);
		if (r < 0)
			idle_ok = 0;
		else
			walked += r;
	}}
	for (int k = 0; k < NPROCS; k++)
		if (alive[k] && ask(k, WALK, &r, &left))
			paged += r;
	if (idle_ok)
		printf("# rmap walk: page_idle walked %ld pages, MADV_PAGEOUT took %ld\n", walked, paged);
	else
		printf("# rmap walk: page_idle unavailable (needs root and CONFIG_IDLE_PAGE_TRACKING), "
			"MADV_PAGEOUT took %ld\n", paged);
}}

static void window_layout(int proc, char *out, size_t size)
{{
	char path[64], line[512];
	FILE *f;

	out[0] = 0;
	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pids[proc]);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {{
		unsigned long s, e;
		char perms[8], prot[8], *q = prot;
		size_t n = strlen(out);

		if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) != 3)
			continue;
		if (e <= BASE || s >= BASE + WINDOW * PG)
			continue;
		for (int k = 0; k < 3; k++)
			if (perms[k] != '-')
				*q++ = perms[k];
		*q = 0;
		snprintf(out + n, size - n, "[%lu,%lu) %s; ", (s - BASE) / PG, (e - BASE) / PG, prot[0] ? prot : "none");
	}}
	fclose(f);
}}

static int window_free(void)
{{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	int ok = 1;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {{
		unsigned long s, e;

		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s < BASE + (WINDOW + 1) * PG && e > BASE - PG)
			ok = 0;
	}}
	fclose(f);
	return ok;
}}

int main(void)
{{
	int failed = 0;
	pid_t p0;

	setvbuf(stdout, NULL, _IONBF, 0);
{note_prints}
	if (!window_free()) {{
		printf("SKIP: the window at %#lx is not free\n", BASE);
		return 4;
	}}
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	for (int k = 0; k < NPROCS; k++)
		if (pipe(cmd[k]) || pipe(rep[k])) {{
			perror("pipe");
			return 4;
		}}
	p0 = fork();
	if (p0 == 0) {{
		signal(SIGCHLD, SIG_IGN); /* workers' own children are reaped automatically */
		prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		worker(0);
	}}
	adopt(0, p0);
	for (size_t n = 0; n < sizeof(plan) / sizeof(plan[0]); n++) {{
		const struct step *s = &plan[n];
		long r = 0;
		int left = 0;

		if (s->kind == SKIP) {{
			printf("# step %d: %s\n", s->index, s->what);
			continue;
		}}
		if (s->kind == EXIT) {{
			write(cmd[s->proc][1], &s->index, sizeof(s->index));
			wait_exit(s->proc);
			printf("# step %d: %s\n", s->index, s->what);
			continue;
		}}
		if (!ask(s->proc, s->index, &r, &left)) {{
			printf("FAIL: step %d: %s: the process died (SIGSEGV?)\n", s->index, s->what);
			alive[s->proc] = 0;
			failed = 1;
			break;
		}}
		if (s->inject && left)
			printf("# step %d: the injected failure did not fire (%s)\n", s->index, left < 0
				? "no /proc/thread-self/fail-nth: CONFIG_FAULT_INJECTION"
				: "the kernel made fewer anon_vma / anon_vma_chain allocations than the model");
		if (s->kind == FORK) {{
			if (r > 0 && s->expect >= 0) {{
				adopt((int)s->expect, (pid_t)r);
				printf("# step %d: %s\n", s->index, s->what);
			}} else if (r > 0) {{
				printf("FAIL: step %d: %s: the fork succeeded, the model says ENOMEM\n", s->index, s->what);
				failed = 1;
			}} else if (s->expect >= 0) {{
				printf("FAIL: step %d: %s: fork returned %ld (%s)\n", s->index, s->what, r, strerror((int)-r));
				failed = 1;
				break;
			}} else {{
				printf("# step %d: %s = %ld\n", s->index, s->what, r);
			}}
			continue;
		}}
		printf("# step %d: %s = %ld%s\n", s->index, s->what, r, r == s->expect ? "" : "  <- unexpected");
		if (r != s->expect) {{
			printf("FAIL: step %d: %s returned %ld (%s), the model says %ld\n", s->index, s->what,
				r, r < 0 ? strerror((int)-r) : "success", s->expect);
			failed = 1;
		}}
	}}
	for (int k = 0; k < NPROCS; k++) {{
		char got[4096];

		if (!alive[k])
			continue;
		window_layout(k, got, sizeof(got));
		if (!expected[k] || strcmp(got, expected[k])) {{
			printf("FAIL: P%d's window is \"%s\", the model says \"%s\"\n", k, got,
				expected[k] ? expected[k] : "(no process)");
			failed = 1;
		}} else {{
			printf("# P%d: %s\n", k, got);
		}}
	}}
	rmap_walk();
	for (int k = NPROCS - 1; k >= 0; k--)
		if (alive[k]) {{
			kill(pids[k], SIGKILL);
			wait_exit(k);
		}}
	printf("%s\n", failed ? "FAIL" : "PASS");
	return failed;
}}
"""


# ---- pytest ----


def _ident(text: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()
    return out or "reproducer"


def to_pytest(rep: corpus.Reproducer, source: str = "") -> str:
    """The reproducer as a standalone pytest module."""
    steps = "\n".join(f"    {json.dumps(ops.to_json(op))}," for op in rep.steps)
    name = _ident(rep.signature)
    origin = source or rep.name
    if rep.kind == "divergence":
        message = (rep.violation or {}).get("message", "")
        return _PYTEST_DIVERGENCE.format(
            origin=origin, window=rep.window, steps=steps, name=name, reason=repr(f"recorded divergence: {message}")
        )
    if rep.kind == "difference":
        return _PYTEST_DIFFERENCE.format(
            origin=origin, kernel=repr(rep.kernel), against=repr(rep.against), window=rep.window, steps=steps,
            name=name, level=repr((rep.violation or {}).get("level")), step=repr(rep.failing_step),
        )  # fmt: skip
    invariant = rep.invariant
    return _PYTEST_VIOLATION.format(
        origin=origin,
        kernel=repr(rep.kernel),
        window=rep.window,
        steps=steps,
        name=name,
        invariant=repr(invariant),
        step=repr(rep.failing_step),
    )


_PYTEST_VIOLATION = '''"""Regression test generated by `rmapfuzz export --pytest` from {origin}."""

from rmapfuzz.replay import Runner, as_ops

KERNEL = {kernel}
WINDOW = {window}
INVARIANT = {invariant}  # None: the steps must replay clean
RECORDED_STEP = {step}
STEPS = [
{steps}
]


def test_{name}():
    runner = Runner(KERNEL, WINDOW)
    broken = []
    for op in as_ops(STEPS, WINDOW):
        try:
            _result, found = runner.step(op)
        except Exception:
            if not broken:
                raise
            break  # the model cannot go on from the state a violation left
        broken.extend(found)
        if INVARIANT is not None and any(v.invariant == INVARIANT for v in found):
            break
    if INVARIANT is None:
        assert not broken, f"expected a clean replay on {{KERNEL}}, got {{broken[0]}}"
    else:
        names = [v.invariant for v in broken]
        expected = f"expected {{INVARIANT}} on {{KERNEL}} (recorded at step {{RECORDED_STEP}})"
        assert INVARIANT in names, f"{{expected}}, got {{names}}"
'''

_PYTEST_DIFFERENCE = '''"""Regression test generated by `rmapfuzz export --pytest` from {origin}.

Two model kernels differ after these steps (`rmapfuzz diff`): the test passes while they still
differ first at the recorded level and step.
"""

from rmapfuzz.pair import pair_replay
from rmapfuzz.replay import as_ops

KERNEL = {kernel}
AGAINST = {against}
WINDOW = {window}
LEVEL = {level}
RECORDED_STEP = {step}
STEPS = [
{steps}
]


def test_{name}():
    found = pair_replay(as_ops(STEPS, WINDOW), KERNEL, AGAINST, WINDOW)
    recorded = f"recorded: {{LEVEL}} at step {{RECORDED_STEP}}"
    assert found is not None, f"{{KERNEL}} and {{AGAINST}} no longer differ ({{recorded}})"
    assert (found.level, found.step) == (LEVEL, RECORDED_STEP), str(found)
'''

_PYTEST_DIVERGENCE = '''"""Regression test generated by `rmapfuzz export --pytest` from {origin}.

A recorded divergence between the running kernel and the `current` model: the test runs the steps
on both (rmapfuzz.oracle) and fails while they disagree (xfail, strict: it starts passing, and
then fails as XPASS, once the model is fixed).  Skipped where the live oracle cannot run.
"""

import pytest

from rmapfuzz import ops

WINDOW = {window}
STEPS = [
{steps}
]


@pytest.mark.xfail(reason={reason}, strict=True)
def test_{name}():
    try:
        from rmapfuzz.oracle.oracle import Oracle, OracleError
        from rmapfuzz.oracle.executor import ExecutorError

        oracle = Oracle()
    except Exception as exc:  # no Linux, no /proc, ...
        pytest.skip(f"the live oracle cannot run here: {{exc}}")
    try:
        with oracle:
            outcome = oracle.run(ops.parse_steps(STEPS, WINDOW), WINDOW)
    except (OracleError, ExecutorError) as exc:
        pytest.skip(f"the live oracle cannot run here: {{exc}}")
    assert outcome.status == "agree", str(outcome.divergence)
'''
