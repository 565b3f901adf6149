"""The system-call layer: one op of the op language (:mod:`rmapfuzz.ops`) in, the kernel's answer out.

Each op maps to the kernel entry point a process would reach (sys_mmap -> do_mmap_pgoff, ...).
Page numbers are window-relative; an op naming a process that does not exist (never forked, or
exited) answers ESRCH and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
        entry = _ENTRY.get(type(op))
        if entry is None:
            raise TypeError(f"not an op: {op!r}")
        return entry(self, mm, op)


# Each op's entry point (dispatched by the op's class: one dict look-up instead of a chain of
# isinstance tests, on the path every step takes)
def _mmap(k: SyscallMixin, mm: Mm, op: ops.Mmap) -> str:
    return k.mmap_region(mm, op.start, op.pages, op.prot)


def _munmap(k: SyscallMixin, mm: Mm, op: ops.Munmap) -> str:
    return k.do_munmap(mm, op.start, op.pages) or OK


def _mprotect(k: SyscallMixin, mm: Mm, op: ops.Mprotect) -> str:
    return k.sys_mprotect(mm, op.start, op.pages, op.prot)


def _mremap(k: SyscallMixin, mm: Mm, op: ops.Mremap) -> str:
    return k.do_mremap(mm, op.start, op.pages, op.new_pages, frozenset(op.flags), op.new_start)


def _madvise(k: SyscallMixin, mm: Mm, op: ops.Madvise) -> str:
    return k.sys_madvise(mm, op.start, op.pages, op.advice)


def _fork(k: SyscallMixin, mm: Mm, op: ops.Fork) -> str:
    return k.do_fork(mm)


def _exit(k: SyscallMixin, mm: Mm, op: ops.Exit) -> str:
    return k.do_exit(mm)


def _read(k: SyscallMixin, mm: Mm, op: ops.Read) -> str:
    return k.handle_mm_fault(mm, op.addr, write=False)


def _write(k: SyscallMixin, mm: Mm, op: ops.Write) -> str:
    return k.handle_mm_fault(mm, op.addr, write=True)


_ENTRY: dict[type, Callable[[SyscallMixin, Mm, Any], str]] = {
    ops.Mmap: _mmap,
    ops.Munmap: _munmap,
    ops.Mprotect: _mprotect,
    ops.Mremap: _mremap,
    ops.Madvise: _madvise,
    ops.Fork: _fork,
    ops.Exit: _exit,
    ops.Read: _read,
    ops.Write: _write,
}
