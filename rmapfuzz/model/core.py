"""The state a model kernel carries, and the allocators and list helpers every area shares.

This is the model's ``include/linux/mm.h``: the per-area mixins (``rmap``, ``memory``, ``mmap``,
``mprotect``, ``madvise``, ``mremap``, ``fork``) build on it, and a kernel generation is the stack
of them, overridden where its commits changed the code (see :mod:`rmapfuzz.kernels`).

Functions that return an ``int`` error in the kernel return an :data:`Err` here: ``None`` on
success, or the errno's name ("ENOMEM", ...).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import attrs

from rmapfuzz.model.objects import IDENTITY, OBSERVER, REGISTRY, AnonVma, AnonVmaChain, Mm, Page, SwapSlot, Vma
from rmapfuzz.model.trace import NO_TRACER, Tracer, UseAfterFree

Err = str | None

OK = "ok"
EINVAL = "EINVAL"
ENOMEM = "ENOMEM"
EFAULT = "EFAULT"
EACCES = "EACCES"
ESRCH = "ESRCH"
SEGV = "SEGV"  # a fault without permission: the kernel would send SIGSEGV
OOM = "OOM"  # VM_FAULT_OOM from a fault whose allocation failed


@attrs.frozen
class Features:
    """What a generation has, as the areas that branch on it and the judge read it.

    Each overlay states what its commits change with a :class:`FeatureChanges`; a generation's
    features are those changes applied down its class hierarchy (see ``KernelCore.__init_subclass__``),
    so a fix composed onto any kernel (:func:`rmapfuzz.kernels.compose`) brings its changes along.
    """

    refcount: bool = False  # 76545066c852 (2.6.35): anon_vma->refcount; descendants pin their root
    degree: bool = False  # 7a3ef208e662 (3.19-rc4 ... 6.0-rc3): anon_vma->degree
    fork_counters: bool = False  # 2555283eb40d (6.0-rc4): num_children and num_active_vmas
    chain_bound: int | None = None  # 7a3ef208e662: the hierarchy stops growing (None: no bound)
    wipeonfork: bool = False  # MADV_WIPEONFORK / MADV_KEEPONFORK (4.14)
    dontunmap: bool = False  # MREMAP_DONTUNMAP (e346b3813067, 5.7)
    pageout_skips_shared: bool = False  # MADV_PAGEOUT (1a4e58cce84e, 5.4) skips pages mapped twice
    case6_imports_first: bool = False  # 734537c9cb72 (4.8): vma_adjust case 6 picks its exporter up front
    multi_vma_move: bool = False  # d23cb648e365 (6.17): a same-size MREMAP_FIXED move may span VMAs and gaps


@attrs.frozen
class FeatureChanges:
    """The features an overlay's commits turn on or off (None: unchanged)."""

    refcount: bool | None = None
    degree: bool | None = None
    fork_counters: bool | None = None
    chain_bound: int | None = None
    wipeonfork: bool | None = None
    dontunmap: bool | None = None
    pageout_skips_shared: bool | None = None
    case6_imports_first: bool | None = None
    multi_vma_move: bool | None = None

    def apply(self, features: Features) -> Features:
        changed = {f.name: v for f in attrs.fields(FeatureChanges) if (v := getattr(self, f.name)) is not None}
        return attrs.evolve(features, **changed)


def _first_process() -> dict[int, Mm]:
    return {0: Mm(pid=0)}


@attrs.define(slots=False, eq=False, repr=False)
class KernelCore(ABC):
    """A booted model kernel: the processes, every anon_vma and page ever allocated, and its tracer.

    Class attributes describe the generation; subclasses override them (and add no fields: the
    state of every generation is these fields and the objects they reach).
    """

    name: ClassVar[str] = "core"
    base: ClassVar[str | None] = None
    commits: ClassVar[tuple[tuple[str, str], ...]] = ()
    bugs: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    feature_changes: ClassVar[FeatureChanges] = FeatureChanges()
    features: ClassVar[Features] = Features()

    window: int = 8
    trace: Tracer = attrs.field(default=NO_TRACER, metadata={OBSERVER: True})
    mms: dict[int, Mm] = attrs.field(factory=_first_process)
    next_pid: int = 1
    anon_vmas: list[AnonVma] = attrs.field(factory=list, metadata={REGISTRY: True})
    pages: list[Page] = attrs.field(factory=list, metadata={REGISTRY: True})
    swap_slots: list[SwapSlot] = attrs.field(factory=list, metadata={REGISTRY: True})
    fail_nth: int | None = None  # the fail_alloc countdown
    next_vma_ident: int = attrs.field(default=1, metadata={IDENTITY: True})
    next_page_ident: int = attrs.field(default=1, metadata={IDENTITY: True})
    next_swap_ident: int = attrs.field(default=1, metadata={IDENTITY: True})

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        features = Features()
        for klass in reversed(cls.__mro__):
            changes = klass.__dict__.get("feature_changes")
            if isinstance(changes, FeatureChanges):
                features = changes.apply(features)
        cls.features = features

    # ---- allocators (mm/rmap.c: anon_vma_alloc, anon_vma_chain_alloc; kmem_cache_alloc) ----

    def should_fail_alloc(self) -> bool:
        """The fail_nth countdown (should_failslab()): the Nth anon_vma/anon_vma_chain allocation from
        now fails."""
        failed = False
        if self.fail_nth is not None:
            self.fail_nth -= 1
            if self.fail_nth <= 0:
                self.fail_nth = None
                failed = True
        self.trace.alloc(failed)
        return failed

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
        vma = Vma(ident=self.next_vma_ident, mm=mm, vm_start=start, vm_end=end, vm_pgoff=pgoff, vm_flags=flags)
        self.next_vma_ident += 1
        return vma

    def vm_area_dup(self, orig: Vma) -> Vma:
        """``*new = *vma``: a struct copy, which copies the anon_vma pointer (and the swap readahead
        state) but not the chain."""
        new = self.vm_area_alloc(orig.mm, orig.vm_start, orig.vm_end, orig.vm_pgoff, orig.vm_flags)
        new.anon_vma = orig.anon_vma
        new.swap_ra_addr, new.swap_ra_win, new.swap_ra_hits = orig.swap_ra_addr, orig.swap_ra_win, orig.swap_ra_hits
        return new

    def remove_vma(self, vma: Vma) -> None:
        """remove_vma(): the struct is freed (a tombstone for any stale anon_vma_chain)."""
        vma.freed = True

    def alloc_page(self, mapping: AnonVma | None, index: int) -> Page:
        page = Page(ident=self.next_page_ident, mapping=mapping, index=index)
        self.next_page_ident += 1
        self.pages.append(page)
        return page

    def alloc_swap_slot(self) -> SwapSlot:
        slot = SwapSlot(ident=self.next_swap_ident)
        self.next_swap_ident += 1
        self.swap_slots.append(slot)
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
            raise UseAfterFree(f"vm_next of freed {vma.name}", [vma])
        vmas = vma.mm.vmas
        i = vmas.index(vma)
        return vmas[i + 1] if i + 1 < len(vmas) else None

    @staticmethod
    def vma_prev(vma: Vma) -> Vma | None:
        if vma.freed:
            raise UseAfterFree(f"vm_prev of freed {vma.name}", [vma])
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
