"""The system-call layer: one op of the op language (:mod:`rmapfuzz.ops`) in, the kernel's answer out.

Each op maps to the kernel entry point a process would reach (sys_mmap -> do_mmap_pgoff, ...).
Page numbers are window-relative; an op naming a process that does not exist (never forked, or
exited) answers ESRCH and changes nothing.
"""

from __future__ import annotations

from rmapfuzz import ops
from rmapfuzz.model.core import ESRCH, OK
from rmapfuzz.model.fork import ForkMixin
from rmapfuzz.model.objects import Mm


class SyscallMixin(ForkMixin):
    """Dispatch of op-language steps to the model's kernel functions."""

    def process(self, pid: int) -> Mm | None:
        mm = self.mms.get(pid)
        return mm if mm is not None and mm.alive else None

    def apply(self, op: ops.Op) -> str:
        """Run one step; returns "ok" or the errno / fault outcome."""
        if isinstance(op, ops.FailAlloc):
            self.fail_nth = op.nth
            return OK
        mm = self.process(op.pid)
        if mm is None:
            return ESRCH
        if isinstance(op, ops.Mmap):
            return self.mmap_region(mm, op.start, op.pages, op.prot, "noreserve" in op.flags)
        if isinstance(op, ops.Munmap):
            return self.do_munmap(mm, op.start, op.pages) or OK
        if isinstance(op, ops.Mprotect):
            return self.sys_mprotect(mm, op.start, op.pages, op.prot)
        if isinstance(op, ops.Mremap):
            return self.do_mremap(mm, op.start, op.pages, op.new_pages, frozenset(op.flags), op.new_start)
        if isinstance(op, ops.Madvise):
            return self.sys_madvise(mm, op.start, op.pages, op.advice)
        if isinstance(op, ops.Fork):
            return self.do_fork(mm)
        if isinstance(op, ops.Exit):
            return self.do_exit(mm)
        if isinstance(op, ops.Read):
            return self.handle_mm_fault(mm, op.addr, write=False)
        if isinstance(op, ops.Write):
            return self.handle_mm_fault(mm, op.addr, write=True)
        raise TypeError(f"not an op: {op!r}")
