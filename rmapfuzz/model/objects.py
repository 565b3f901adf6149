"""The objects of the anonymous reverse map: mm, VMA, anon_vma, anon_vma_chain, page, swap slot, pte.

Field names follow the kernel's (``vm_start``, ``vm_pgoff``, ``anon_vma_chain`` ...), see
``include/linux/mm_types.h`` and ``include/linux/rmap.h`` (2.6.34).  Addresses are page numbers
inside the model's window, so ``vm_pgoff`` of a fresh anonymous mapping equals its first page
(the kernel's ``addr >> PAGE_SHIFT`` minus a constant window base).

Freed objects are never dropped: they stay reachable from whatever still points at them with
``freed = True`` (a tombstone), so that a dangling pointer is detected instead of silently
collected.  All classes compare by identity (``eq=False``): two anon_vmas with equal fields are
still two anon_vmas.
"""

from __future__ import annotations

import attrs

# The roles of a field beyond being state (attrs metadata, read by rmapfuzz.minimize.snapshot): an
# identity only names or numbers objects (two states that differ only there are the same state); an
# observer is whoever watches the kernel (not part of it); a registry lists every object of a kind
# ever allocated (freed ones included, as tombstones); vm_flags hold protection bits.
IDENTITY = "identity"
OBSERVER = "observer"
REGISTRY = "registry"
VM_FLAGS = "vm_flags"
_NAME_ONLY = {IDENTITY: True}

# vm_flags bits (include/linux/mm.h); only the ones that decide merging or forking.
VM_READ = 0x1
VM_WRITE = 0x2
VM_EXEC = 0x4
VM_MAYREAD = 0x10
VM_MAYWRITE = 0x20
VM_MAYEXEC = 0x40
VM_DONTCOPY = 0x20000  # MADV_DONTFORK
VM_ACCOUNT = 0x100000  # private writable memory charged to overcommit
VM_NORESERVE = 0x200000  # MAP_NORESERVE: never charged (overcommit not in "never" mode)
VM_WIPEONFORK = 0x2000000  # MADV_WIPEONFORK (4.14+)

VM_PROT_MASK = VM_READ | VM_WRITE | VM_EXEC
VM_MAY_ALL = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC

# The merge-relevant flags beyond prot, by their smaps VmFlags names (the oracle compares these).
FLAG_NAMES = (
    (VM_ACCOUNT, "ac"),
    (VM_NORESERVE, "nr"),
    (VM_DONTCOPY, "dc"),
    (VM_WIPEONFORK, "wf"),
)


def prot_to_flags(prot: str) -> int:
    """calc_vm_prot_bits(): "rwx" subset to VM_READ|VM_WRITE|VM_EXEC."""
    flags = 0
    if "r" in prot:
        flags |= VM_READ
    if "w" in prot:
        flags |= VM_WRITE
    if "x" in prot:
        flags |= VM_EXEC
    return flags


def flags_to_prot(flags: int) -> str:
    return "".join(c for bit, c in ((VM_READ, "r"), (VM_WRITE, "w"), (VM_EXEC, "x")) if flags & bit)


def describe_flags(flags: int) -> str:
    """smaps-like rendering: prot as ``rw-`` plus the merge-relevant VmFlags (:data:`FLAG_NAMES`)."""
    prot = "".join(c if flags & bit else "-" for bit, c in ((VM_READ, "r"), (VM_WRITE, "w"), (VM_EXEC, "x")))
    extra = [name for bit, name in FLAG_NAMES if flags & bit]
    return prot + ("" if not extra else " " + ",".join(extra))


@attrs.define(eq=False, repr=False)
class AnonVma:
    """struct anon_vma.

    ``head`` is the same_anon_vma list (2.6.34) of the chains linking this anon_vma; later
    generations use ``root``, ``parent``, ``refcount`` and the fork-reuse counters.
    """

    ident: int = attrs.field(metadata=_NAME_ONLY)
    head: list[AnonVmaChain] = attrs.field(factory=list)
    freed: bool = False
    root: AnonVma | None = None
    parent: AnonVma | None = None
    refcount: int = 1
    pins: int = 0  # references from outside the VMA structure (KSM, migration), part of refcount
    degree: int = 1
    num_children: int = 0
    num_active_vmas: int = 0

    @property
    def name(self) -> str:
        return f"AV{self.ident}" + ("(freed)" if self.freed else "")

    def __repr__(self) -> str:
        return self.name


@attrs.define(eq=False, repr=False)
class AnonVmaChain:
    """struct anon_vma_chain: one link between one VMA and one anon_vma."""

    vma: Vma
    anon_vma: AnonVma

    def __repr__(self) -> str:
        return f"AVC({self.vma.name}->{self.anon_vma.name})"


@attrs.define(eq=False, repr=False)
class Vma:
    """struct vm_area_struct: [vm_start, vm_end) in pages, private anonymous.

    ``anon_vma_chain`` is the same_vma list, head first: index 0 is the most recently added
    link, as the kernel's ``list_add`` leaves it.
    """

    ident: int = attrs.field(metadata=_NAME_ONLY)
    mm: Mm
    vm_start: int
    vm_end: int
    vm_pgoff: int
    vm_flags: int = attrs.field(metadata={VM_FLAGS: True})
    anon_vma: AnonVma | None = None
    anon_vma_chain: list[AnonVmaChain] = attrs.field(factory=list)
    freed: bool = False
    # swap_readahead_info (4.14+, VMA-based swap readahead): the page of the last swap-in fault in
    # this VMA, the readahead window it got and the readahead hits since.  The kernel packs them in
    # one word whose unset value 0 reads as 4 hits at address 0 (no page of the window: None).
    # Copied with the struct (vm_area_dup).
    swap_ra_addr: int | None = None
    swap_ra_win: int = 0
    swap_ra_hits: int = 4

    @property
    def pages(self) -> int:
        """vma_pages()"""
        return self.vm_end - self.vm_start

    @property
    def name(self) -> str:
        return f"P{self.mm.pid}:[{self.vm_start},{self.vm_end})" + ("(freed)" if self.freed else "")

    def chain_anon_vmas(self) -> list[AnonVma]:
        return [avc.anon_vma for avc in self.anon_vma_chain]

    def __repr__(self) -> str:
        return self.name


@attrs.define(eq=False, repr=False)
class SwapSlot:
    """A swap entry: ``count`` swap ptes refer to it (swap_map); ``page`` is its swap-cache page."""

    ident: int = attrs.field(metadata=_NAME_ONLY)
    count: int = 0
    page: Page | None = None

    @property
    def freed(self) -> bool:
        """No swap pte and no swap-cache page holds it: swap_map's entry is free again."""
        return self.count == 0 and self.page is None

    def __repr__(self) -> str:
        return f"swap{self.ident}"


@attrs.define(eq=False, repr=False)
class Page:
    """An anonymous struct page: ``mapping`` (the anon_vma, PAGE_MAPPING_ANON), ``index``.

    ``mapcount`` counts present ptes (the kernel's ``_mapcount + 1``); ``swapcache`` is the slot
    while the page is in the swap cache (PageSwapCache); ``exclusive`` is PageAnonExclusive
    (5.19+; unused by older generations).
    """

    ident: int = attrs.field(metadata=_NAME_ONLY)
    mapping: AnonVma | None
    index: int
    mapcount: int = 0
    swapcache: SwapSlot | None = None
    freed: bool = False
    exclusive: bool = False
    readahead: bool = False  # PG_readahead: read into the swap cache by readahead, not yet faulted on

    @property
    def name(self) -> str:
        return f"page{self.ident}"

    def __repr__(self) -> str:
        return self.name


@attrs.define(eq=False, repr=False)
class Pte:
    """A page table entry: present (``page``; None is the shared zero page) or a swap entry.

    ``swap_exclusive`` is a swap pte's exclusive bit (1493a1913e34, 5.19): set when an exclusive
    page is unmapped to swap, cleared in both processes when fork shares the entry.
    """

    page: Page | None = None
    swap: SwapSlot | None = None
    writable: bool = False
    swap_exclusive: bool = False

    @property
    def present(self) -> bool:
        return self.swap is None

    def __repr__(self) -> str:
        if self.swap is not None:
            return f"<{self.swap!r}>"
        target = "zero" if self.page is None else self.page.name
        return target + ("(w)" if self.writable else "(ro)")


@attrs.define(eq=False, repr=False)
class Mm:
    """struct mm_struct: the VMA list sorted by address (mm->mmap) and the page tables."""

    pid: int
    vmas: list[Vma] = attrs.field(factory=list)
    ptes: dict[int, Pte] = attrs.field(factory=dict)
    alive: bool = True

    def __repr__(self) -> str:
        return f"P{self.pid}"
