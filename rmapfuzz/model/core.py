"""The state a model kernel carries, and the allocators and list helpers every area shares.

This is the model's ``include/linux/mm.h``: the per-area mixins (``rmap``, ``memory``, ``mmap``,
``mprotect``, ``madvise``, ``mremap``, ``fork``) build on it, and a kernel generation is the stack
of them, overridden where its commits changed the code (see :mod:`rmapfuzz.kernels`).

Functions that return an ``int`` error in the kernel return an :data:`Err` here: ``None`` on
success, or the errno's name ("ENOMEM", ...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import attrs

from rmapfuzz.invariants import use_after_free
from rmapfuzz.model.objects import AnonVma, AnonVmaChain, Mm, Page, SwapSlot, Vma

Err = str | None

OK = "ok"
EINVAL = "EINVAL"
ENOMEM = "ENOMEM"
EFAULT = "EFAULT"
EACCES = "EACCES"
ESRCH = "ESRCH"
SEGV = "SEGV"  # a fault without permission: the kernel would send SIGSEGV
OOM = "OOM"  # VM_FAULT_OOM from a fault whose allocation failed


@attrs.define(eq=False)
class TakeOver:
    """A merge event: ``taker`` took over the range or pages of a VMA whose chain was ``taken``.

    Recorded by the model where it happens (vma_adjust, move_vma) and judged by the
    ``merge-superset`` invariant.
    """

    where: str
    taker: Vma
    taken_name: str
    taken_chain: tuple[AnonVma, ...]
    taker_chain: tuple[AnonVma, ...]


@attrs.define(eq=False)
class Counters:
    """What the model did, for the fuzzer's statistics and targets."""

    merges: int = 0
    splits: int = 0
    borrows: int = 0  # anon_vma_prepare reused a neighbour's anon_vma
    reuses: int = 0  # fork-time reuse of an ancestor's anon_vma (3.19+)
    cow_copies: int = 0
    cow_reuses: int = 0
    swapouts: int = 0
    swapins: int = 0


class KernelCore(ABC):
    """A booted model kernel: the processes, every anon_vma ever allocated, and the counters.

    Class attributes describe the generation; subclasses override them.
    """

    name: ClassVar[str] = "core"
    base: ClassVar[str | None] = None
    commits: ClassVar[tuple[tuple[str, str], ...]] = ()
    bugs: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""

    # Feature switches that several areas read; generations flip them.
    has_wipeonfork: ClassVar[bool] = False  # MADV_WIPEONFORK/KEEPONFORK (4.14)
    has_dontunmap: ClassVar[bool] = False  # MREMAP_DONTUNMAP (5.7)

    def __init__(self, window: int = 8) -> None:
        self.window = window
        self.mms: dict[int, Mm] = {0: Mm(pid=0)}
        self.next_pid = 1
        self.anon_vmas: list[AnonVma] = []
        self.pages: list[Page] = []
        self.events: list[TakeOver] = []
        self.last_call: Any = None  # the last step: a syscalls.Call (SyscallMixin.apply)
        self.counters = Counters()
        self.fail_nth: int | None = None
        # The fail-injection invariant's shadow of the countdown (allocations left until the armed
        # failure is due), and whether an injected failure fired during the current step.
        self.fail_armed: int | None = None
        self.alloc_failed = False
        self._next_vma = 1
        self._next_page = 1
        self._next_swap = 1

    # ---- allocators (mm/rmap.c: anon_vma_alloc, anon_vma_chain_alloc; kmem_cache_alloc) ----

    def should_fail_alloc(self) -> bool:
        """The fail_nth countdown: the Nth anon_vma/anon_vma_chain allocation from now fails."""
        if self.fail_armed is not None:  # invariant bookkeeping
            self.fail_armed = self.fail_armed - 1  # invariant bookkeeping
        if self.fail_nth is None:
            return False
        self.fail_nth -= 1
        if self.fail_nth > 0:
            return False
        self.fail_nth = self.fail_armed = None
        self.alloc_failed = True  # invariant bookkeeping
        return True

    def anon_vma_alloc(self) -> AnonVma | None:
        """anon_vma_alloc() (mm/rmap.c); the refcount/root fields are set by later generations."""
        if self.should_fail_alloc():
            return None
        av = AnonVma(ident=len(self.anon_vmas) + 1)
        av.root = av
        self.anon_vmas.append(av)
        return av

    def anon_vma_free(self, av: AnonVma) -> None:
        """anon_vma_free(): the object stays as a tombstone."""
        av.freed = True

    def anon_vma_chain_alloc(self) -> bool:
        """anon_vma_chain_alloc(): only the failure matters; the link is built by the caller."""
        return not self.should_fail_alloc()

    def vm_area_alloc(self, mm: Mm, start: int, end: int, pgoff: int, flags: int) -> Vma:
        vma = Vma(ident=self._next_vma, mm=mm, vm_start=start, vm_end=end, vm_pgoff=pgoff, vm_flags=flags)
        self._next_vma += 1
        return vma

    def vm_area_dup(self, orig: Vma) -> Vma:
        """``*new = *vma``: a struct copy, which copies the anon_vma pointer but not the chain."""
        new = self.vm_area_alloc(orig.mm, orig.vm_start, orig.vm_end, orig.vm_pgoff, orig.vm_flags)
        new.anon_vma = orig.anon_vma
        return new

    def remove_vma(self, vma: Vma) -> None:
        """remove_vma(): the struct is freed (a tombstone for any stale anon_vma_chain)."""
        vma.freed = True

    def alloc_page(self, mapping: AnonVma | None, index: int) -> Page:
        page = Page(ident=self._next_page, mapping=mapping, index=index)
        self._next_page += 1
        self.pages.append(page)
        return page

    def alloc_swap_slot(self) -> SwapSlot:
        slot = SwapSlot(ident=self._next_swap)
        self._next_swap += 1
        return slot

    # ---- the VMA list (mm->mmap), sorted by address ----

    @staticmethod
    def find_vma(mm: Mm, addr: int) -> Vma | None:
        """find_vma(): the first VMA with vm_end > addr."""
        for vma in mm.vmas:
            if vma.vm_end > addr:
                return vma
        return None

    @staticmethod
    def find_vma_prev(mm: Mm, addr: int) -> tuple[Vma | None, Vma | None]:
        """find_vma_prev(): (find_vma(addr), the VMA before it)."""
        prev: Vma | None = None
        for vma in mm.vmas:
            if vma.vm_end > addr:
                return vma, prev
            prev = vma
        return None, prev

    @staticmethod
    def vma_next(vma: Vma) -> Vma | None:
        """vma->vm_next"""
        if vma.freed:
            raise use_after_free(f"vm_next of freed {vma.name}", vma)
        vmas = vma.mm.vmas
        i = vmas.index(vma)
        return vmas[i + 1] if i + 1 < len(vmas) else None

    @staticmethod
    def vma_prev(vma: Vma) -> Vma | None:
        if vma.freed:
            raise use_after_free(f"vm_prev of freed {vma.name}", vma)
        vmas = vma.mm.vmas
        i = vmas.index(vma)
        return vmas[i - 1] if i > 0 else None

    @staticmethod
    def vma_link(mm: Mm, vma: Vma) -> None:
        """vma_link() / __insert_vm_struct(): insert keeping the list sorted."""
        vmas = mm.vmas
        i = 0
        while i < len(vmas) and vmas[i].vm_start < vma.vm_start:
            i += 1
        vmas.insert(i, vma)

    @staticmethod
    def vma_unlink(mm: Mm, vma: Vma) -> None:
        """__vma_unlink() / detach_vmas_to_be_unmapped(): take it off mm->mmap."""
        mm.vmas.remove(vma)

    # ---- events ----

    def record_takeover(self, where: str, taker: Vma, taken_name: str, taken_chain: tuple[AnonVma, ...]) -> None:
        self.events.append(
            TakeOver(
                where=where,
                taker=taker,
                taken_name=taken_name,
                taken_chain=taken_chain,
                taker_chain=tuple(taker.chain_anon_vmas()),
            )
        )

    # ---- forward declarations (defined in a higher layer, used by a lower one) ----

    @abstractmethod
    def find_mergeable_anon_vma(self, vma: Vma) -> AnonVma | None:
        """mm/mmap.c, used by anon_vma_prepare() in mm/rmap.c."""

    @abstractmethod
    def zap_page_range(self, mm: Mm, start: int, end: int) -> None:
        """mm/memory.c, used by the mmap layer (unmap_region, exit_mmap)."""

    # ---- link helpers shared by rmap and its callers ----

    @staticmethod
    def anon_vma_chain_link(vma: Vma, av: AnonVma) -> AnonVmaChain:
        """anon_vma_chain_link() (2.6.34): list_add on the VMA (head), list_add_tail on the anon_vma."""
        avc = AnonVmaChain(vma=vma, anon_vma=av)
        vma.anon_vma_chain.insert(0, avc)
        av.head.append(avc)
        return avc
