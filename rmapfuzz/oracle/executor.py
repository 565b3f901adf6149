"""Run op-language steps on the running kernel: a controller and a tree of forked workers.

The controller (the calling Python process) never touches the window.  Per sequence it forks
worker 0; a ``fork`` step makes a worker fork a new worker, which joins the tree with the next
op-language pid.  Workers only execute commands: one text line down a pre-created command pipe,
one reply (``0`` or ``-errno``) up a reply pipe.  The controller observes the workers from outside
through ``/proc/<pid>`` (:mod:`rmapfuzz.oracle.observe`) and holds a pidfd for each, so an
``exit`` step returns only once the worker's mm is gone, and a worker killed by a fault is seen.

Hygiene: the controller is a child subreaper while an :class:`Executor` is open (orphaned
workers come back to it and are reaped by pid); workers ignore SIGINT (Ctrl-C reaches the
controller, whose ``finally`` kills the tree), ignore SIGCHLD (their own children are reaped
automatically), disable THP (``PR_SET_THP_DISABLE``), worker 0 dies with the controller
(``PR_SET_PDEATHSIG``), and every worker exits on EOF of its command pipe and leaves with
``os._exit``.  At the end of a sequence every worker is killed, youngest first, and reaped.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Iterator

import attrs

from rmapfuzz import ops
from rmapfuzz.oracle import observe
from rmapfuzz.oracle import syscalls as sc

DEFAULT_BASE = 0x2000_0000_0000
DEFAULT_PAGES = 64
REPLY_TIMEOUT = 10.0


class ExecutorError(RuntimeError):
    """The executor cannot run here (window taken, no /proc, ...) or a worker misbehaved."""


class Unsupported(ExecutorError):
    """A step that cannot run on a real kernel (``fail_alloc``)."""


@attrs.frozen
class Window:
    """The private address range the workers use: ``pages`` pages starting ``offset`` pages above
    ``base``.  Op-language page ``n`` is at ``start + n * PAGE``."""

    base: int = DEFAULT_BASE
    offset: int = 0
    pages: int = DEFAULT_PAGES

    @property
    def start(self) -> int:
        return self.base + self.offset * sc.PAGE

    def addr(self, page: int) -> int:
        return self.start + page * sc.PAGE

    def length(self, pages: int) -> int:
        return pages * sc.PAGE


# ---- the worker side ----


def _worker_setup(first: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    if first:
        sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
        sc.prctl(sc.PR_SET_THP_DISABLE, 1)
        # One CPU for the whole tree (inherited by forks): a page just faulted in waits in that
        # CPU's LRU batch, and the lru_add_drain() of MADV_PAGEOUT and of a COW's reuse check
        # drains only the local CPU's batch; on another CPU the page would stay off the LRU
        # (not paged out) or hold an extra reference (copied instead of reused) by chance.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def _execute(line: list[str], window: Window) -> tuple[int, int]:
    """One command in the worker: ``(0 or -errno, extra)``."""
    kind, args = line[0], [int(a) for a in line[1:]]
    if kind == "m":
        return sc.mmap_fixed(window.addr(args[0]), window.length(args[1]), args[2], extra=args[3]), 0
    if kind == "u":
        return sc.munmap(window.addr(args[0]), window.length(args[1])), 0
    if kind == "p":
        return sc.mprotect(window.addr(args[0]), window.length(args[1]), args[2]), 0
    if kind == "a":
        return sc.madvise(window.addr(args[0]), window.length(args[1]), args[2]), 0
    if kind == "r":
        start, pages, new_pages, flags, new_start = args
        new_addr = window.addr(new_start) if flags & sc.MREMAP_FIXED else 0
        return sc.mremap(window.addr(start), window.length(pages), window.length(new_pages), flags, new_addr), 0
    if kind == "R":
        sc.load(window.addr(args[0]))
        return 0, 0
    if kind == "W":
        sc.store(window.addr(args[0]))
        return 0, 0
    raise ValueError(f"unknown command {kind!r}")


def _worker_loop(index: int, cmd_fds: list[int], reply_fds: list[int], window: Window) -> None:
    """Serve commands until ``x`` (exit) or EOF; never returns."""
    try:
        while True:
            data = os.read(cmd_fds[index], 256)
            if not data:
                break
            line = data.decode().split()
            if line[0] == "x":
                break
            if line[0] == "f":
                child = int(line[1])
                pid = os.fork()
                if pid == 0:
                    index = child
                    _worker_setup(first=False)
                    continue
                os.write(reply_fds[index], f"0 {pid}\n".encode())
                continue
            rc, extra = _execute(line, window)
            os.write(reply_fds[index], f"{rc} {extra}\n".encode())
    except BaseException:
        pass
    os._exit(0)


# ---- the controller side ----


@attrs.define
class Worker:
    index: int  # op-language pid
    pid: int  # the OS pid
    pidfd: int
    view: observe.ProcView
    dead: bool = False


class Executor:
    """The controller.  ``with Executor(window) as ex: with ex.session(n) as s: s.run(op)``."""

    def __init__(self, window: Window | None = None, use_query: bool | None = None) -> None:
        if not sys.platform.startswith("linux"):
            raise ExecutorError("the live-kernel oracle needs Linux")
        self.window = window or Window()
        if not os.path.exists("/proc/self/maps"):
            raise ExecutorError("no /proc/self/maps")
        self.use_query = observe.procmap_query_works() if use_query is None else use_query
        self._old_subreaper: int | None = None

    def __enter__(self) -> Executor:
        self._old_subreaper = 0
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, self._old_subreaper or 0)

    def check_window(self) -> None:
        taken = observe.window_is_free(self.window.start, self.window.pages)
        if taken is not None:
            raise ExecutorError(f"the window {self.window.start:#x} (+{self.window.pages} pages) is not free: {taken}")

    @contextlib.contextmanager
    def session(self, max_pids: int) -> Iterator[Session]:
        s = Session(self, max_pids)
        try:
            yield s
        finally:
            s.close()


class Session:
    """One sequence's worker tree.  :meth:`run` executes one op and returns the kernel's answer."""

    def __init__(self, executor: Executor, max_pids: int) -> None:
        self.executor = executor
        self.window = executor.window
        self.max_pids = max(1, max_pids)
        self.workers: dict[int, Worker] = {}
        self.order: list[Worker] = []  # creation order, for teardown youngest first
        self.next_pid = 1
        self.cmd_w: list[int] = []
        self.reply_r: list[int] = []
        self._closed = False
        executor.check_window()
        cmd_r: list[int] = []
        reply_w: list[int] = []
        try:
            for _ in range(self.max_pids):
                r, w = os.pipe()
                cmd_r.append(r)
                self.cmd_w.append(w)
                r, w = os.pipe()
                self.reply_r.append(r)
                reply_w.append(w)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # worker 0
                try:
                    for fd in self.cmd_w + self.reply_r:
                        os.close(fd)
                    _worker_setup(first=True)
                finally:
                    _worker_loop(0, cmd_r, reply_w, self.window)
        finally:
            for fd in cmd_r + reply_w:
                os.close(fd)
        self._adopt(0, pid)

    def _adopt(self, index: int, pid: int) -> None:
        pidfd = os.pidfd_open(pid)
        try:
            view = observe.ProcView(pid, self.executor.use_query)
        except OSError:
            os.close(pidfd)
            raise
        w = Worker(index, pid, pidfd, view)
        self.workers[index] = w
        self.order.append(w)

    @property
    def live(self) -> list[int]:
        return sorted(i for i, w in self.workers.items() if not w.dead)

    def _ask(self, w: Worker, command: str) -> tuple[int, int] | None:
        """Send one command; the reply, or None if the worker died (a fault killed it)."""
        os.write(self.cmd_w[w.index], (command + "\n").encode())
        poller = select.poll()
        poller.register(self.reply_r[w.index], select.POLLIN)
        poller.register(w.pidfd, select.POLLIN)
        deadline = time.monotonic() + REPLY_TIMEOUT
        while True:
            events = dict(poller.poll(max(0.0, deadline - time.monotonic()) * 1000))
            if self.reply_r[w.index] in events:
                data = os.read(self.reply_r[w.index], 256)
                if data:
                    rc, extra = data.split()
                    return int(rc), int(extra)
            if w.pidfd in events:
                self._reap(w)
                return None
            if time.monotonic() > deadline:
                raise ExecutorError(f"worker P{w.index} (pid {w.pid}) did not answer {command!r}")

    def _wait_exit(self, w: Worker, timeout: float = REPLY_TIMEOUT) -> None:
        poller = select.poll()
        poller.register(w.pidfd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            raise ExecutorError(f"worker P{w.index} (pid {w.pid}) did not exit")
        self._reap(w)

    def _reap(self, w: Worker) -> None:
        w.dead = True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(w.pid, 0)  # ours if it is worker 0 or an orphan we adopted as subreaper

    def fault_allowed(self, pid: int, addr: int, write: bool) -> bool:
        """What the kernel's current layout says about a fault (x86's access_error())."""
        for start, end, prot in self.workers[pid].view.vmas(self.window.start, self.window.pages):
            if start <= addr < end:
                return "w" in prot if write else bool(prot)
        return False

    def run(self, op: ops.Op, skip_fault: bool = False) -> str:
        """Execute one step; returns ``"ok"``, an errno name, ``"SEGV"`` or ``"ESRCH"``.

        A fault is executed only if the kernel's current layout allows it; otherwise (and with
        ``skip_fault``, when the model says SEGV) it is not executed and answers ``"SEGV"``.
        """
        if isinstance(op, ops.FailAlloc):
            raise Unsupported("fail_alloc cannot be injected into a real kernel")
        w = self.workers.get(op.pid)
        if w is None or w.dead:
            return "ESRCH"
        if isinstance(op, (ops.Read, ops.Write)):
            write = isinstance(op, ops.Write)
            if skip_fault or not self.fault_allowed(op.pid, op.addr, write):
                return "SEGV"
            reply = self._ask(w, f"{'W' if write else 'R'} {op.addr}")
            return "SEGV" if reply is None else sc.errno_name(reply[0])
        if isinstance(op, ops.Exit):
            os.write(self.cmd_w[w.index], b"x\n")
            self._wait_exit(w)
            return "ok"
        if isinstance(op, ops.Fork):
            child = self.next_pid
            if child >= self.max_pids:
                raise ExecutorError(f"more than {self.max_pids} processes in one sequence")
            reply = self._ask(w, f"f {child}")
            if reply is None:
                raise ExecutorError(f"worker P{w.index} died in fork")
            self.next_pid += 1
            self._adopt(child, reply[1])
            return "ok"
        reply = self._ask(w, self._command(op))
        if reply is None:
            raise ExecutorError(f"worker P{w.index} died executing {ops.describe(op)}")
        return sc.errno_name(reply[0])

    @staticmethod
    def _command(op: ops.Op) -> str:
        if isinstance(op, ops.Mmap):
            return f"m {op.start} {op.pages} {sc.prot_bits(op.prot)} {sum(sc.MMAP_BITS[f] for f in op.flags)}"
        if isinstance(op, ops.Munmap):
            return f"u {op.start} {op.pages}"
        if isinstance(op, ops.Mprotect):
            return f"p {op.start} {op.pages} {sc.prot_bits(op.prot)}"
        if isinstance(op, ops.Madvise):
            return f"a {op.start} {op.pages} {sc.MADV[op.advice]}"
        if isinstance(op, ops.Mremap):
            flags = sum(sc.MREMAP_BITS[f] for f in op.flags)
            return f"r {op.start} {op.pages} {op.new_pages} {flags} {op.new_start}"
        raise TypeError(f"not a command op: {op!r}")

    # ---- observation ----

    def vmas(self, pid: int) -> list[observe.KVma]:
        return self.workers[pid].view.vmas(self.window.start, self.window.pages)

    def pagemap(self, pid: int, pages: int) -> list[observe.PagemapEntry]:
        return self.workers[pid].view.pagemap(self.window.start, pages)

    def smaps(self, pid: int) -> list[observe.SmapsVma]:
        return self.workers[pid].view.smaps(self.window.start, self.window.pages)

    # ---- teardown ----

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in reversed(self.order):
            if not w.dead:
                with contextlib.suppress(ProcessLookupError, OSError):
                    signal.pidfd_send_signal(w.pidfd, signal.SIGKILL)
                with contextlib.suppress(ExecutorError):
                    self._wait_exit(w, timeout=5.0)
        for w in self.order:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(w.pid, os.WNOHANG)
            w.view.close()
            os.close(w.pidfd)
        for fd in self.cmd_w + self.reply_r:
            os.close(fd)
        self.cmd_w, self.reply_r = [], []
