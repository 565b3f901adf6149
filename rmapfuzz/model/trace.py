"""The model's tracepoints: the one way anything outside the model sees what a kernel function did.

The kernel has ``include/trace/events/`` and kcov; the model has :class:`Tracer`.  A model kernel
calls ``self.trace`` at a few places, and whoever watches it (the judge, coverage recording, the
fuzzer) installs a tracer that records what it needs.  The model never reads anything back, so a
model kernel with the default tracer (which does nothing) behaves exactly as one being watched.

Tracepoints:

* :meth:`Tracer.cover` names a branch of a kernel function, ``"function: branch"`` (with the
  context that decides anon_vma safety where it matters, e.g. ``"dup_anon_vma: src faulted, dst
  unfaulted"``).  Its argument is a string literal, or a conditional expression choosing between
  literals: :mod:`rmapfuzz.coverage` reads the set of points a generation can reach from the source.
* :meth:`Tracer.alloc` reports every anon_vma / anon_vma_chain allocation and whether it failed
  (the fail_nth countdown).
* :meth:`Tracer.takeover` reports a VMA taking over another VMA's range or pages in a merge (both
  still intact); :meth:`Tracer.moving` and :meth:`Tracer.moved` bracket mremap's move, whose source
  the merge may already have dropped by the time the target is known.
* :meth:`Tracer.reuse` reports fork-time reuse of an existing anon_vma (3.19+).

A use of a freed object is not a tracepoint: the model raises :class:`UseAfterFree`, as the kernel
would oops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rmapfuzz.model.objects import AnonVma, Vma


class UseAfterFree(Exception):
    """The model dereferenced a freed anon_vma or VMA (where KASAN would report a use-after-free)."""

    def __init__(self, message: str, objects: Sequence[object] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.objects = tuple(objects)


class Tracer:
    """The tracepoints, doing nothing (a model kernel nobody watches)."""

    __slots__ = ()

    def cover(self, point: str) -> None:
        """A named branch of a kernel function ran."""

    def alloc(self, failed: bool) -> None:
        """An anon_vma or anon_vma_chain allocation was attempted (``failed``: fail_nth fired)."""

    def takeover(self, where: str, taker: Vma, taken: Vma) -> None:
        """``taker`` took over (part of) ``taken``'s range or pages; both chains are still as the merge
        found them (the taker's after any import)."""

    def moving(self, vma: Vma) -> None:
        """mremap is about to move (part of) ``vma``."""

    def moved(self, vma: Vma, new_vma: Vma) -> None:
        """mremap moved (part of) ``vma`` (announced by :meth:`moving`, possibly since merged away)
        into ``new_vma``; the page tables have moved."""

    def reuse(self, vma: Vma, anon_vma: AnonVma) -> None:
        """Fork gives ``vma`` the existing ``anon_vma`` instead of a new one (linked to it, not yet its
        ``anon_vma``)."""


NO_TRACER = Tracer()
