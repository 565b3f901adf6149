"""The invariant catalogue: every oracle the fuzzer judges a model kernel by, in one place.

Each :class:`Invariant` has a stable ``name`` (used in reproducer files, on the command line and
in CI), the kernel assumption it encodes, its kind and a check.  State invariants judge the state
after a step; transition invariants (``Kind.TRANSITION``: ``merge-superset``, ``reuse-safe``,
``syscall-effect``, ``fail-injection``) judge what the step did, from the tracepoints the model
passes on its way (:mod:`rmapfuzz.model.trace`, :class:`rmapfuzz.probe.StepRecord`).  A broken
invariant becomes a :class:`Violation`, the one exception type the model and the checks raise;
it names the mm, VMAs (with their ranges), anon_vmas and pages involved.

The catalogue is ordered cheapest and earliest first (docs/model.md#catalogue-order): when one
step breaks several invariants, the first in this order is the one reported.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from rmapfuzz import ops
from rmapfuzz import scope as scopes
from rmapfuzz.model.objects import (
    VM_ACCOUNT,
    VM_DONTCOPY,
    VM_EXEC,
    VM_NORESERVE,
    VM_PROT_MASK,
    VM_READ,
    VM_WIPEONFORK,
    VM_WRITE,
)
from rmapfuzz.model.trace import UseAfterFree
from rmapfuzz.probe import RANGE_OPS, VIEW_FLAGS, PageView, StepRecord, page_views
from rmapfuzz.scope import Scope

if TYPE_CHECKING:
    from rmapfuzz.model.core import Features, KernelCore
    from rmapfuzz.model.objects import AnonVma, Mm, Page, Vma


class Violation(Exception):
    """A broken invariant: its name, the 0-based step (set by the replayer), a message and the objects."""

    def __init__(self, invariant: str, message: str, objects: Sequence[str] = (), step: int | None = None) -> None:
        super().__init__(message)
        self.invariant = invariant
        self.message = message
        self.objects = tuple(objects)
        self.step = step

    def __str__(self) -> str:
        where = "" if self.step is None else f" at step {self.step}"
        return f"{self.invariant}{where}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return {"invariant": self.invariant, "step": self.step, "message": self.message, "objects": list(self.objects)}


def _names(objs: Iterable[object]) -> list[str]:
    return [getattr(o, "name", repr(o)) for o in objs]


def use_after_free(uaf: UseAfterFree) -> Violation:
    """The model's own use of a freed anon_vma or VMA, as a ``no-dangling`` violation."""
    return Violation("no-dangling", "use-after-free: " + uaf.message, _names(uaf.objects))


Finding = tuple[str, Sequence[object]]  # message, objects involved
Check = Callable[["KernelCore", "StepRecord", Scope], Iterator[Finding]]


class Kind(enum.Enum):
    """What an invariant judges: the state a step leaves (a function of that state alone), or the
    step itself (what it reported through the tracepoints, its answer, the state before it)."""

    STATE = "state"
    TRANSITION = "transition"


@attrs.frozen
class Invariant:
    name: str
    ref: str  # where it comes from: the thread, a commit, or an I-number of docs/model.md
    assumption: str
    check: Check
    kind: Kind = Kind.STATE
    # A transition invariant that can only find something in steps of some sort says which: the
    # incremental runner skips the rest (the full judge still runs it on every step it judges)
    judges: Callable[[StepRecord], bool] | None = None


def _chain_str(vma: Vma) -> str:
    return "[" + ", ".join(av.name for av in vma.chain_anon_vmas()) + "]"


# ---- the checks ----


def check_merge_superset(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    for ev in step.takeovers:
        missing = [av for av in ev.taken_chain if av not in ev.taker_chain]
        if missing:
            yield (
                f"{ev.where}: {ev.taker.name} took over {ev.taken_name} (chain "
                f"[{', '.join(a.name for a in ev.taken_chain)}]) but its chain "
                f"[{', '.join(a.name for a in ev.taker_chain)}] lacks {', '.join(a.name for a in missing)}",
                [ev.taker, *missing],
            )


def check_chain_consistency(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    heads: dict[int, set[int]] = {}  # id(anon_vma) -> ids of the links on its list
    for vma in scope.vmas:
        for avc in vma.anon_vma_chain:
            listed = heads.get(id(avc.anon_vma))
            if listed is None:
                listed = heads[id(avc.anon_vma)] = {id(x) for x in avc.anon_vma.head}
            if avc.vma is not vma or id(avc) not in listed:
                yield (
                    f"{vma.name}'s chain entry for {avc.anon_vma.name} is not on that anon_vma's list",
                    [vma, avc.anon_vma],
                )
    chains: dict[int, set[int]] = {}  # id(vma) -> ids of the links on its chain
    for av in scope.avs:
        for avc in av.head:
            vma = avc.vma
            if vma.freed or not vma.mm.alive:
                yield (f"{av.name}'s list links freed VMA {vma.name}", [av, vma])
                continue
            linked = chains.get(id(vma))
            if linked is None:
                linked = chains[id(vma)] = {id(x) for x in vma.anon_vma_chain}
            if id(avc) not in linked:
                yield (f"{av.name}'s list entry for {vma.name} is not in that VMA's chain", [av, vma])


def check_primary_linked(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    for vma in scope.vmas:
        av = vma.anon_vma
        if av is not None and av not in vma.chain_anon_vmas():
            yield (f"{vma.name} has anon_vma {av.name} but its chain {_chain_str(vma)} does not link it", [vma, av])


def check_unfaulted_empty(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    for vma in scope.vmas:
        if (vma.anon_vma is None) != (not vma.anon_vma_chain):
            state = "no anon_vma" if vma.anon_vma is None else f"anon_vma {vma.anon_vma.name}"
            yield (f"{vma.name} has {state} but chain {_chain_str(vma)}", [vma])


def check_vma_tree(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    mms = {vma.mm: None for vma in scope.vmas}
    for mm in mms:
        end = 0
        for vma in mm.vmas:
            if vma.vm_start >= vma.vm_end:
                yield (f"{vma.name} is empty or reversed", [vma])
            elif vma.vm_start < end:
                yield (f"{vma.name} overlaps the VMA before it, which ends at page {end}", [vma])
            end = max(end, vma.vm_end)


def check_no_dangling(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    for vma in scope.vmas:
        if vma.anon_vma is not None and vma.anon_vma.freed:
            yield (f"{vma.name}'s anon_vma {vma.anon_vma.name} is freed", [vma, vma.anon_vma])
        for av in vma.chain_anon_vmas():
            if av.freed:
                yield (f"{vma.name}'s chain links freed {av.name}", [vma, av])
    for mm, addr, page in scope.mapped:
        if page.freed:
            yield (f"P{mm.pid} page {addr} maps freed {page.name}", [page])
        elif page.mapping is not None and page.mapping.freed:
            yield (
                f"P{mm.pid} page {addr} maps {page.name} (index {page.index}) "
                f"whose anon_vma {page.mapping.name} is freed",
                [page, page.mapping],
            )
    ptes_of = _ptes_per_page(scope)
    for page in scope.pages:
        # a page table freed under a pte (3.12's bug F) leaves its page counted as mapped
        if page.mapcount > 0 and id(page) not in ptes_of and page.mapping is not None and page.mapping.freed:
            yield (
                f"{page.name} (index {page.index}) is counted as mapped ({page.mapcount}) with no pte left, "
                f"and its anon_vma {page.mapping.name} is freed",
                [page, page.mapping],
            )


def _groups_by_anon_vma(scope: Scope) -> Iterator[tuple[AnonVma, list[Vma]]]:
    for mm in scope.groups:
        groups: dict[int, tuple[AnonVma, list[Vma]]] = {}
        for vma in mm.vmas:
            if vma.anon_vma is not None:
                groups.setdefault(id(vma.anon_vma), (vma.anon_vma, []))[1].append(vma)
        for av, vmas in groups.values():
            if len(vmas) > 1:
                yield av, vmas


def check_same_chain(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    for av, vmas in _groups_by_anon_vma(scope):
        first = vmas[0]
        ref = set(map(id, first.chain_anon_vmas()))
        for other in vmas[1:]:
            if set(map(id, other.chain_anon_vmas())) != ref:
                yield (
                    f"{first.name} and {other.name} share anon_vma {av.name} but their chains differ: "
                    f"{_chain_str(first)} vs {_chain_str(other)}",
                    [first, other, av],
                )


def check_singleton(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    for av, vmas in _groups_by_anon_vma(scope):
        for i, a in enumerate(vmas):
            for b in vmas[i + 1 :]:
                ca, cb = a.chain_anon_vmas(), b.chain_anon_vmas()
                if set(map(id, ca)) == set(map(id, cb)):
                    continue
                if ca == [av] or cb == [av]:
                    continue
                yield (
                    f"{a.name} and {b.name} share anon_vma {av.name}, neither chain is the singleton [{av.name}], "
                    f"and they differ: {_chain_str(a)} vs {_chain_str(b)}",
                    [a, b, av],
                )


def _mapped_pages(scope: Scope) -> dict[int, tuple[Page, list[tuple[int, int]]]]:
    """Ground truth from the page tables: page -> every (pid, address) whose present pte maps it."""
    truth: dict[int, tuple[Page, list[tuple[int, int]]]] = {}
    for mm, addr, page in scope.mapped:
        truth.setdefault(id(page), (page, []))[1].append((mm.pid, addr))
    return truth


def check_page_index(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    for mm, addr, page in scope.mapped:
        vma = k.find_vma(mm, addr)
        if vma is None or vma.vm_start > addr:
            yield (f"P{mm.pid} page {addr} maps {page.name} outside any VMA", [page])
            continue
        expected = vma.vm_pgoff + (addr - vma.vm_start)
        if page.index != expected:
            yield (
                f"{vma.name} (pgoff {vma.vm_pgoff}) maps {page.name} at page {addr}: index {page.index}, "
                f"linear_page_index {expected}",
                [vma, page],
            )


def check_rmap_complete(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    for page, where in _mapped_pages(scope).values():
        found = {(vma.mm.pid, addr) for vma, addr in k.rmap_walk_anon(page)}  # type: ignore[attr-defined]
        for pid, addr in where:
            if (pid, addr) in found:
                continue
            vma = k.find_vma(k.mms[pid], addr)
            vname = vma.name if vma is not None else f"P{pid}:(no VMA)"
            chain = _chain_str(vma) if vma is not None else "[]"
            yield (
                f"rmap walk of {page.name} from {page.mapping!r} misses P{pid} page {addr}: "
                f"{vname} chain {chain} does not link {page.mapping!r}",
                [page, *([vma] if vma is not None else []), *([page.mapping] if page.mapping is not None else [])],
            )


def _ptes_per_page(scope: Scope) -> dict[int, int]:
    """id(page) -> the present ptes that map it."""
    ptes_of: dict[int, int] = {}
    for _mm, _addr, page in scope.mapped:
        ptes_of[id(page)] = ptes_of.get(id(page), 0) + 1
    return ptes_of


def check_mapcount(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    ptes_of = _ptes_per_page(scope)
    for page in scope.pages:
        mapped = ptes_of.get(id(page), 0)
        if page.mapcount != mapped:
            yield (f"{page.name}'s mapcount is {page.mapcount} but {mapped} ptes map it", [page])
        elif mapped == 0 and page.swapcache is None:
            yield (f"{page.name} is neither mapped nor in the swap cache but was never freed", [page])
    for slot, n in scope.swaps.values():
        if slot.count != n:
            yield (f"swap slot {slot!r} counts {slot.count} references but {n} swap ptes hold it", [slot])


def check_pte_prot(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    for mm in scope.pte_mms:
        for vma in mm.vmas:
            if vma.vm_flags & VM_WRITE:
                continue
            for addr in range(vma.vm_start, vma.vm_end):
                pte = mm.ptes.get(addr)
                if pte is not None and pte.swap is None and pte.writable:
                    yield (f"{vma.name} is not writable but its pte at page {addr} is", [vma])


def check_cow_exclusive(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    ptes_of = _ptes_per_page(scope)
    for mm, addr, page in scope.mapped:
        if not mm.ptes[addr].writable:
            continue
        others = ptes_of[id(page)] - 1
        slot = page.swapcache
        held = 0 if slot is None else scope.swaps.get(id(slot), (slot, 0))[1]
        if others or held:
            whom = f"{others} other pte(s) map it" if others else f"{held} swap pte(s) still refer to its slot"
            yield (f"P{mm.pid} page {addr} maps {page.name} writable while {whom}", [page])
    for mm in scope.pte_mms:
        for addr, pte in mm.ptes.items():
            if pte.writable and pte.swap is None and pte.page is None:
                yield (f"P{mm.pid} page {addr} maps the zero page writable", [])


# ---- invariants of the later generations (2.6.35 refcount, 3.19 degree, 6.0 fork counters) ----
#
# Each is a no-op on a generation without the fields it judges (``k.features`` says which it has).


def check_counters(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    features = k.features
    refcount, degree, fork_counters = features.refcount, features.degree, features.fork_counters
    if not (refcount or degree or fork_counters):
        return
    for av in scope.avs:
        expected: list[tuple[str, int, int]] = []
        active = scope.active.get(id(av), 0)
        children = scope.children.get(id(av), 0)
        if refcount:
            expected.append(("refcount", av.refcount, (1 if av.head else 0) + scope.pins.get(id(av), 0) + av.pins))
        if degree:
            expected.append(("degree", av.degree, active + children))
        if fork_counters:
            expected.append(("num_children", av.num_children, children))
            expected.append(("num_active_vmas", av.num_active_vmas, active))
        for field, value, want in expected:
            if value < 0:
                yield (f"{av.name}.{field} is negative: {value}", [av])
            elif value != want:
                yield (f"{av.name}.{field} is {value} but the structure says {want}", [av])


def check_reuse_safe(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    for ev in step.reuses:
        if ev.active or ev.children >= 2:
            users = ", ".join(ev.active) if ev.active else "none"
            yield (
                f"fork reused {ev.anon_vma.name} for {ev.vma_name} while VMAs using it were [{users}] "
                f"and it had {ev.children} children",
                [ev.anon_vma],
            )


def check_bounded_chain(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    bound = k.features.chain_bound
    if bound is None:
        return
    for vma in scope.vmas:
        if len(vma.anon_vma_chain) > bound:
            yield (f"{vma.name}'s chain has {len(vma.anon_vma_chain)} entries, more than {bound}", [vma])


def _covering(mm: Mm, start: int, end: int) -> list[Vma] | None:
    """The VMAs that cover [start, end) without a hole, or None."""
    vmas = [v for v in mm.vmas if v.vm_start < end and v.vm_end > start]
    at = start
    for v in vmas:
        if v.vm_start > at:
            return None
        at = v.vm_end
    return vmas if at >= end else None


# The kernel's answers (rmapfuzz.model.core), and the protection letters of the op language as
# calc_vm_prot_bits() reads them: written down here again so the judge does not use the code it judges.
OUTCOMES = frozenset({"ok", "EINVAL", "ENOMEM", "EFAULT", "EACCES", "ESRCH", "SEGV", "OOM"})
_PROT_BITS = {"r": VM_READ, "w": VM_WRITE, "x": VM_EXEC}
# madvise advice -> (flag, set or cleared) on every VMA of the range
_ADVICE_FLAGS = {
    "dontfork": (VM_DONTCOPY, True),
    "dofork": (VM_DONTCOPY, False),
    "wipeonfork": (VM_WIPEONFORK, True),
    "keeponfork": (VM_WIPEONFORK, False),
}


def _bits(prot: str) -> int:
    return sum(bit for letter, bit in _PROT_BITS.items() if letter in prot)


_PROT_OF: dict[str, int] = {prot: _bits(prot) for prot in ops.PROTS}


def _prot_bits(prot: str) -> int:
    return _PROT_OF[prot]


def _mremap_target(op: ops.Mremap) -> int:
    """Where an mremap's new range starts: MREMAP_FIXED's address, else in place."""
    return op.new_start if "fixed" in op.flags else op.start


def _touched(op: object) -> set[int]:
    """The pages a range op may change; every other page of the process must look the same after."""
    assert isinstance(op, RANGE_OPS)
    pages = set(range(op.start, op.start + op.pages))
    if isinstance(op, ops.Mremap):
        dst = _mremap_target(op)
        pages.update(range(dst, dst + op.new_pages))
    return pages


def _vmas_at(mm: Mm, addr: int) -> list[Vma]:
    return [v for v in mm.vmas if v.vm_start <= addr < v.vm_end]


def _same_page(before: PageView | None, after: PageView | None) -> bool:
    """One page as a process sees it is unchanged: same VMA flags, same pte, and the same linear
    index unless the VMA had no anon_vma before (then nothing depended on it)."""
    if before is None or after is None:
        return before is after
    (vma_b, pte_b), (vma_a, pte_a) = before, after
    if pte_b != pte_a:
        return False
    if vma_b is None or vma_a is None:
        return vma_b is vma_a
    return bool(vma_b[0] == vma_a[0] and (vma_b[1] is None or vma_b[1] == vma_a[1]))


def _unmap_effect(op: ops.Munmap, mm: Mm) -> Iterator[Finding]:
    """munmap that returned 0: no VMA is left in the range."""
    start, end = op.start, op.start + op.pages
    left = [v for v in mm.vmas if v.vm_start < end and v.vm_end > start]
    if left:
        yield (f"munmap {_where(op)} returned 0 but {', '.join(v.name for v in left)} still maps it", left)


def _mapping_effect(op: ops.Mmap | ops.Mprotect, vmas: list[Vma]) -> Iterator[Finding]:
    """mmap and mprotect that returned 0: the VMAs covering the range have the asked protection;
    after mmap, VM_NORESERVE exactly if MAP_NORESERVE was asked, and VM_ACCOUNT exactly if the
    mapping is writable without it (accountable_mapping(): private writable memory is charged);
    after an mprotect that grants write, VM_ACCOUNT exactly where there is no VM_NORESERVE
    (mprotect_fixup() charges a private mapping's first write permission, in every generation)."""
    want = _prot_bits(op.prot)
    wrong = [v for v in vmas if v.vm_flags & VM_PROT_MASK != want]
    if wrong:
        yield (f"{op.op} {_where(op)} {op.prot or 'none'} returned 0 but {', '.join(v.name for v in wrong)} "
               f"has other protections", wrong)  # fmt: skip
    if isinstance(op, ops.Mmap):
        asked = bool(op.flags)
        wrong = [v for v in vmas if bool(v.vm_flags & VM_NORESERVE) != asked or (asked and v.vm_flags & VM_ACCOUNT)]
        if wrong:
            what = "is charged or lacks VM_NORESERVE" if asked else "has VM_NORESERVE"
            yield (f"mmap {_where(op)} {'with' if asked else 'without'} MAP_NORESERVE returned 0 but "
                   f"{', '.join(v.name for v in wrong)} {what}", wrong)  # fmt: skip
            return
        charged = not asked and bool(want & VM_WRITE)
        wrong = [v for v in vmas if bool(v.vm_flags & VM_ACCOUNT) != charged]
        if wrong:
            yield (f"mmap {_where(op)} {op.prot or 'none'} returned 0 but {', '.join(v.name for v in wrong)} "
                   f"{'is not' if charged else 'is'} charged (VM_ACCOUNT)", wrong)  # fmt: skip
    elif want & VM_WRITE:
        for wrong, what in (
            ([v for v in vmas if not v.vm_flags & (VM_ACCOUNT | VM_NORESERVE)], "is not charged (VM_ACCOUNT)"),
            ([v for v in vmas if v.vm_flags & VM_ACCOUNT and v.vm_flags & VM_NORESERVE], "is charged but VM_NORESERVE"),
        ):
            if wrong:
                yield (f"mprotect {_where(op)} {op.prot} returned 0 but {', '.join(v.name for v in wrong)} {what}",
                       wrong)  # fmt: skip


def _madvise_effect(k: KernelCore, op: ops.Madvise, mm: Mm, vmas: list[Vma]) -> Iterator[Finding]:
    """madvise that returned 0: the flag advices set or clear their flag on the whole range,
    DONTNEED leaves no pte in it, PAGEOUT no present page it may reclaim (every page, or with
    pageout_skips_shared (from the model's 6.0), every page mapped once)."""
    if op.advice in _ADVICE_FLAGS:
        flag, on = _ADVICE_FLAGS[op.advice]
        wrong = [v for v in vmas if bool(v.vm_flags & flag) != on]
        if wrong:
            yield (f"madvise {_where(op)} {op.advice} returned 0 but {', '.join(v.name for v in wrong)} "
                   f"{'lacks' if on else 'keeps'} the flag", wrong)  # fmt: skip
        return
    skips_shared = k.features.pageout_skips_shared
    for addr in range(op.start, op.start + op.pages):
        pte = mm.ptes.get(addr)
        if pte is None:
            continue
        if op.advice == "dontneed":
            yield (f"madvise {_where(op)} dontneed returned 0 but P{op.pid} page {addr} still has a pte", [])
        elif (
            op.advice == "pageout"
            and pte.swap is None
            and pte.page is not None
            and (not skips_shared or pte.page.mapcount == 1)
        ):
            yield (f"madvise {_where(op)} pageout returned 0 but P{op.pid} page {addr} still maps "
                   f"{pte.page.name}", [pte.page])  # fmt: skip


def _at(view: PageView | None, addr: int) -> PageView | None:
    """``view`` of the page at ``addr`` with its VMA's offset turned into that page's linear index,
    so that views of two addresses compare."""
    if view is None:
        return None
    vma, pte = view
    if vma is None or vma[1] is None:
        return view
    return (vma[0], vma[1] + addr), pte


def _mremap_effect(
    op: ops.Mremap, mm: Mm, before: dict[int, PageView], after: dict[int, PageView], alloc_failed: bool
) -> Iterator[Finding]:
    """mremap that returned 0: the new range holds what the old range held (same VMA flags and
    linear page index, same page or swap entry), page for page over the shorter of the two.  A gap
    in the old range (a 6.17+ move of several VMAs) leaves the page across from it as it was.  The
    pages of the old range outside the new one are unmapped (a shrink unmaps the tail, a move the
    source; gaps stay gaps), or with MREMAP_DONTUNMAP keep their VMA's flags and lose their ptes
    (e346b3813067).  move_vma() answers success when the unmap of the source fails for want of
    memory (the old range then stays as it was), so a step with a failed allocation is not judged
    on the old range."""
    dst = _mremap_target(op)
    where = f"mremap P{op.pid}:[{op.start},{op.start + op.pages}) -> [{dst},{dst + op.new_pages}) returned 0 but"
    for i in range(min(op.pages, op.new_pages)):
        old = before.get(op.start + i)
        if old is not None and old[0] is not None and not _same_page(_at(old, op.start + i),
                                                                     _at(after.get(dst + i), dst + i)):  # fmt: skip
            yield (f"{where} page {dst + i} does not hold what page {op.start + i} held", _vmas_at(mm, dst + i))
            return
    if alloc_failed:
        return
    kept = "dontunmap" in op.flags
    for addr in range(op.start, op.start + op.pages):
        if dst <= addr < dst + op.new_pages:
            continue
        seen, pte = after.get(addr, _NO_VIEW)
        was = before.get(addr, _NO_VIEW)[0]
        left = (seen is None or seen[0] != was[0]) if kept and was is not None else seen is not None
        if pte is not None or left:
            what = "still maps" if pte is not None else "lost its VMA" if kept else "still has a VMA"
            yield (f"{where} page {addr} of the old range {what}", _vmas_at(mm, addr))
            return


def _frame(op: object, mm: Mm, before: dict[int, PageView], after: dict[int, PageView]) -> Iterator[Finding]:
    """A range op changes only its range (and an mremap its target): every other page of the
    process keeps its VMA flags, linear page index and pte."""
    if before == after:
        return
    touched = _touched(op)
    outside_before = {addr: view for addr, view in before.items() if addr not in touched}
    outside_after = {addr: view for addr, view in after.items() if addr not in touched}
    if outside_before == outside_after:
        return
    for addr in sorted(outside_before.keys() | outside_after.keys()):
        b, a = outside_before.get(addr), outside_after.get(addr)
        if b != a and not _same_page(b, a):
            yield (f"{op.op} P{op.pid}:[{op.start},{op.start + op.pages}) changed page {addr} outside "  # type: ignore[attr-defined]
                   f"its range", _vmas_at(mm, addr))  # fmt: skip
            return


# ---- an answer's cause: what the caller could see before the step that makes the answer right ----

_NO_VIEW: PageView = (None, None)
_ADVICE_SINCE_4_14 = ("wipeonfork", "keeponfork")  # MADV_WIPEONFORK / MADV_KEEPONFORK (d2cd9ede6e19)


def _hole(before: dict[int, PageView], start: int, pages: int) -> bool:
    """Some page of [start, start + pages) lay in no VMA before the step."""
    return any(before.get(addr, _NO_VIEW)[0] is None for addr in range(start, start + pages))


def _inside_one(spans: tuple[tuple[int, int], ...], start: int, pages: int) -> bool:
    """[start, start + pages) lay inside a single VMA."""
    return any(s <= start and start + pages <= e for s, e in spans)


def _fault_answer(op: ops.Read | ops.Write, result: str, mm: Mm) -> Finding | None:
    """x86's access_error(): a write needs a VMA with VM_WRITE, a read one with any of R/W/X; a fault
    that passes it ends with a present pte at the address, writable after a write (else the access
    would fault again).  A fault changes no VMA bounds or flags, so the VMAs after it are those before."""
    write = isinstance(op, ops.Write)
    addr = op.addr
    vmas = _vmas_at(mm, addr)
    vma = vmas[0] if vmas else None
    allowed = vma is not None and bool(vma.vm_flags & (VM_WRITE if write else VM_READ | VM_WRITE | VM_EXEC))
    if result == "SEGV":
        if not allowed:
            return None
        assert vma is not None
        return (f"{ops.describe(op)} faulted with SEGV but {vma.name} allows a {'write' if write else 'read'}",
                [vma])  # fmt: skip
    if not allowed:
        return (f"{ops.describe(op)} answered {result} but no VMA at page {addr} allows a "
                f"{'write' if write else 'read'}", vmas)  # fmt: skip
    pte = mm.ptes.get(addr)
    if result != "ok" or (pte is not None and pte.swap is None and (pte.writable or not write)):
        return None
    state = "no pte" if pte is None else "a swap entry" if pte.swap is not None else "a read-only pte"
    return (f"{ops.describe(op)} returned ok but leaves {state} at page {addr}", vmas)


def _expandable(spans: tuple[tuple[int, int], ...], op: ops.Mremap) -> bool:
    """The old range ended its VMA and no VMA lay in the pages the growth takes (vma_expandable())."""
    end = op.start + op.pages
    own = next(((s, e) for s, e in spans if s <= op.start < e), None)
    grown = op.start + op.new_pages
    return own is not None and own[1] == end and not any(s < grown and e > end for s, e in spans)


def _mremap_invalid(op: ops.Mremap, features: Features) -> bool:
    """What makes an mremap EINVAL in some generation: an empty old or new range (an old length of
    0 on a private mapping since dba58d3b8c50), MREMAP_FIXED without MREMAP_MAYMOVE or with ranges
    that overlap, MREMAP_DONTUNMAP where the generation lacks it (before 5.7) or without
    MREMAP_MAYMOVE and equal lengths (e346b3813067)."""
    flags = op.flags
    if op.pages == 0 or op.new_pages == 0:
        return True
    fixed = "fixed" in flags
    maymove = "maymove" in flags
    overlap = op.start < op.new_start + op.new_pages and op.new_start < op.start + op.pages
    if fixed and (not maymove or overlap):
        return True
    return "dontunmap" in flags and (not features.dontunmap or not maymove or op.pages != op.new_pages)


def _moves_many(op: ops.Mremap, features: Features) -> bool:
    """A move that 6.17's remap_move() may take over several VMAs: MREMAP_MAYMOVE|MREMAP_FIXED,
    same size, not empty."""
    return features.multi_vma_move and {"maymove", "fixed"} <= set(op.flags) and op.pages == op.new_pages > 0


def _range_answer(
    k: KernelCore, op: ops.Mmap | ops.Munmap | ops.Mprotect | ops.Madvise | ops.Mremap, result: str, step: StepRecord
) -> Finding | None:
    """An error of a range op that the VMAs before the step do not explain (mmap(2), mprotect(2),
    madvise(2), mremap(2); an ENOMEM that an injected allocation failure explains is always right):
    mmap and munmap are EINVAL only for an empty range; mprotect is never EINVAL and ENOMEM only for a range
    with a hole; madvise EINVAL only for an advice the generation lacks, ENOMEM only for a range
    with a hole; mremap is EINVAL only for arguments some check refuses (:func:`_mremap_invalid`),
    EFAULT only when the old range (up to the new length) did not lie inside one VMA
    (vma_to_resize(), and the 5.16 and 6.17 lookups before it) and, from 6.17 on, for a same-size
    fixed move (which may span VMAs and gaps, d23cb648e365) only when it starts in a gap, ENOMEM
    only for a growth in place (no MREMAP_FIXED) that vma_expandable() refuses: of a range that does
    not end its VMA, or into pages another VMA holds."""
    wrong = ""
    if isinstance(op, ops.Mmap | ops.Munmap):
        # MAP_FIXED|MAP_PRIVATE|MAP_ANONYMOUS of a non-empty, aligned range inside the address
        # space has nothing invalid about it (mmap(2)), nor has munmap of one: only an empty one is EINVAL
        if result == "EINVAL" and op.pages > 0:
            wrong = "a valid non-empty range" if isinstance(op, ops.Mmap) else "a non-empty range"
    elif isinstance(op, ops.Mprotect | ops.Madvise):
        if isinstance(op, ops.Mprotect) and result == "EINVAL":
            wrong = "a valid protection"
        elif isinstance(op, ops.Madvise) and result == "EINVAL":
            wrong = "" if op.advice in _ADVICE_SINCE_4_14 and not k.features.wipeonfork else "an advice it knows"
        elif result == "ENOMEM" and not step.alloc_failed and not _hole(step.before or {}, op.start, op.pages):
            wrong = "a range without a hole"
    elif isinstance(op, ops.Mremap):
        kept = min(op.pages, op.new_pages)
        if result == "EINVAL" and not _mremap_invalid(op, k.features):
            wrong = "valid arguments"
        elif result == "EFAULT" and kept > 0 and _inside_one(step.spans or (), op.start, kept):
            wrong = "an old range inside one VMA"
        elif result == "EFAULT" and _moves_many(op, k.features) and _inside_one(step.spans or (), op.start, 1):
            wrong = "a same-size fixed move whose old range starts in a VMA"
        elif result == "ENOMEM" and not step.alloc_failed:
            if "fixed" in op.flags or op.new_pages <= op.pages:
                wrong = "a move or a shrink" if "fixed" in op.flags else "a shrink"
            elif _expandable(step.spans or (), op):
                wrong = "a growth into free pages after its VMA"
    return (f"{ops.describe(op)} answered {result} for {wrong}", []) if wrong else None


def _answer_cause(k: KernelCore, step: StepRecord) -> Finding | None:
    """ESRCH exactly for a process that is gone; a fault's answer and a range op's error have the
    cause their manual pages give them."""
    op, result = step.op, step.result
    if isinstance(op, ops.FailAlloc):
        return None
    if (result == "ESRCH") == step.alive:
        return (f"{ops.describe(op)} answered {result} but P{op.pid} "
                f"{'was alive' if step.alive else 'had exited'}", [])  # fmt: skip
    if not step.alive:
        return None
    if isinstance(op, ops.Read | ops.Write):
        return _fault_answer(op, result, k.mms[op.pid])
    if result == "ok" or step.before is None or not isinstance(op, RANGE_OPS):
        return None
    return _range_answer(k, op, result, step)


def check_syscall_effect(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    op, result = step.op, step.result
    if result not in OUTCOMES:
        yield (f"{ops.describe(op)} returned {result!r}, which is not an answer the kernel gives", [])
        return
    cause = _answer_cause(k, step)
    if cause is not None:
        yield cause
        return
    before = step.before
    if before is None:  # not a range op or a fork (or its process was gone): only the answer is judged
        return
    if isinstance(op, ops.Fork):
        yield from _fork_effect(k, op, result, step)
        return
    assert isinstance(op, RANGE_OPS)
    mm = k.mms[op.pid]
    after = page_views(mm)
    if result != "ESRCH":
        yield from _frame(op, mm, before, after)
    if result != "ok" or op.pages == 0:
        return
    if isinstance(op, ops.Munmap):
        yield from _unmap_effect(op, mm)
        return
    if isinstance(op, ops.Mremap):
        yield from _mremap_effect(op, mm, before, after, step.alloc_failed)
        return
    vmas = _covering(mm, op.start, op.start + op.pages)
    if vmas is None:
        yield (f"{op.op} {_where(op)} returned 0 but the range is not all mapped", [])
    elif isinstance(op, ops.Madvise):
        yield from _madvise_effect(k, op, mm, vmas)
    else:
        yield from _mapping_effect(op, vmas)


def _fork_effect(k: KernelCore, op: ops.Fork, result: str, step: StepRecord) -> Iterator[Finding]:
    """fork(2) (dup_mmap(), copy_page_range()): the parent's pages look as they did (only their
    ptes' write bits may change); a fork that returned 0 made a child with a copy of every VMA but
    the VM_DONTCOPY ones (same bounds, flags and offset; one copy per VMA) and the parent's ptes
    (pages and swap entries) in each VMA with an anon_vma, none in a VM_WIPEONFORK one (which
    starts unfaulted) or in one without an anon_vma; a failed fork leaves no child."""
    assert step.before is not None and step.child is not None
    parent = k.mms[op.pid]
    after = page_views(parent)
    if after != step.before:
        changed = min(a for a in step.before.keys() | after.keys() if step.before.get(a) != after.get(a))
        yield (f"{ops.describe(op)} changed the parent's page {changed}", _vmas_at(parent, changed))
        return
    child = k.mms.get(step.child)
    made = child is not None and child.alive and k.next_pid == step.child + 1
    if result != "ok":
        if made or k.next_pid != step.child:
            yield (f"{ops.describe(op)} failed with {result} but left P{step.child}", [])
        return
    if not made:
        yield (f"{ops.describe(op)} returned 0 but made no child P{step.child}", [])
        return
    assert child is not None
    wrong = _fork_copy_differs(parent, child)
    if wrong is not None:
        yield (f"{ops.describe(op)}'s child P{step.child} does not have at page {wrong} what the parent has",
               _vmas_at(child, wrong))  # fmt: skip


def _fork_copy_differs(parent: Mm, child: Mm) -> int | None:
    """The first page where ``child`` is not the copy of ``parent`` that fork makes, or None."""
    copies = iter(child.vmas)
    ptes, child_ptes = parent.ptes, child.ptes
    copied: list[int] = []
    for v in parent.vmas:
        if v.vm_flags & VM_DONTCOPY:
            continue
        c = next(copies, None)
        wiped = bool(v.vm_flags & VM_WIPEONFORK)
        if (
            c is None
            or (c.vm_start, c.vm_end, c.vm_flags & VIEW_FLAGS) != (v.vm_start, v.vm_end, v.vm_flags & VIEW_FLAGS)
            or (c.anon_vma is None) != (v.anon_vma is None or wiped)
            or (c.anon_vma is not None and c.vm_pgoff != v.vm_pgoff)
        ):
            return v.vm_start if c is None else min(v.vm_start, c.vm_start)
        if v.anon_vma is None or wiped:
            continue
        for addr in range(v.vm_start, v.vm_end):
            pte = ptes.get(addr)
            if pte is None:
                continue
            copy = child_ptes.get(addr)
            if copy is None or copy.page is not pte.page or copy.swap is not pte.swap:
                return addr
            copied.append(addr)
    extra = next(copies, None)
    if extra is not None:
        return extra.vm_start
    # a pte fork should not have made (with overlapping VMAs, which vma-tree reports, a page can be
    # copied twice: nothing is extra then)
    uncopied = child_ptes.keys() - set(copied)
    return min(uncopied) if uncopied else None


def _where(op: ops.Mmap | ops.Munmap | ops.Mprotect | ops.Madvise | ops.Mremap) -> str:
    return f"P{op.pid}:[{op.start},{op.start + op.pages})"


# The answers that only an allocation failure explains, by op (mmap's and munmap's only allocation
# is __split_vma()'s: the map count limit is outside the language)
_FAILURE_ANSWER: dict[type, str] = {ops.Fork: "ENOMEM", ops.Read: "OOM", ops.Write: "OOM", ops.Mmap: "ENOMEM",
                                    ops.Munmap: "ENOMEM"}  # fmt: skip


def check_fail_injection(k: KernelCore, step: StepRecord, scope: Scope) -> Iterator[Finding]:
    if step.armed is not None and step.armed <= 0:
        yield ("fail_alloc armed a failure but the allocation it named went through", [])
    if step.alloc_failed:
        return
    op, result = step.op, step.result
    if result == _FAILURE_ANSWER.get(type(op)):
        verb = "faulted with" if result == "OOM" else "failed with"
        yield (f"{ops.describe(op)} {verb} {result} but no injected allocation failure fired", [])


LATER_GENERATIONS: tuple[Invariant, ...] = (
    Invariant(
        "counters",
        "I5",
        "The anon_vma counters equal what the structure says and are never negative: refcount (2.6.35+) "
        "= 1 while its tree is not empty, + one per live descendant for a root, + external pins (KSM, "
        "migration); degree (3.19 … 6.0-rc3) = VMAs using it + children with a non-empty tree (a linked "
        "root is its own child); num_children and num_active_vmas (6.0-rc4+) = those two parts.",
        check_counters,
    ),
    Invariant(
        "reuse-safe",
        "I6",
        "Fork-time reuse hands an anon_vma to a new VMA only if no VMA uses it as its anon_vma and it has at "
        "most one child (2555283eb40d's rule, judged on the structure, not on the counters).",
        check_reuse_safe,
        Kind.TRANSITION,
        lambda step: bool(step.reuses),
    ),
    Invariant(
        "bounded-chain",
        "7a3ef208e662",
        "From 3.19 on, no VMA's anon_vma chain is longer than the generation's chain_bound (16): fork "
        "loops must not grow the hierarchy without bound.  Earlier generations promise no bound.",
        check_bounded_chain,
    ),
)


CATALOGUE: tuple[Invariant, ...] = (
    Invariant(
        "merge-superset",
        "LKML 2010-04-09 (Linus)",
        "A VMA that takes over another VMA's range or pages (merge, boundary shift, mremap move) ends up "
        "with a chain containing every anon_vma of the chain it took over; anon_vma_merge() just drops "
        "the other chain.",
        check_merge_superset,
        Kind.TRANSITION,
        lambda step: bool(step.takeovers),
    ),
    Invariant(
        "chain-consistency",
        "anon_vma_chain",
        "Both directions of every anon_vma_chain link agree: the entry is on the VMA's same_vma list and "
        "on the anon_vma's same_anon_vma list, and no anon_vma links a freed VMA.",
        check_chain_consistency,
    ),
    Invariant(
        "primary-linked",
        "I2",
        "If vma->anon_vma is set, the VMA's chain links it.",
        check_primary_linked,
    ),
    Invariant(
        "unfaulted-empty",
        "I7",
        "vma->anon_vma is NULL exactly when the VMA's chain is empty.",
        check_unfaulted_empty,
    ),
    Invariant(
        "no-dangling",
        "I4",
        "No mapped page, no VMA and no chain link points at a freed anon_vma (an anon_vma is freed when "
        "its last link goes, so this holds as long as rmap-complete does).  A page counts as mapped while a "
        "pte maps it or its mapcount says so (page_mapped(), which reclaim's rmap walk trusts).",
        check_no_dangling,
    ),
    Invariant(
        "same-chain",
        "I3",
        "Two VMAs of one mm with the same non-NULL anon_vma have identical chains (Linus' design rule "
        "since d0e9fe1758f2; merging relies on it).",
        check_same_chain,
    ),
    Invariant(
        "singleton",
        "LKML 2010-04-09 (Johannes)",
        "Two VMAs of one mm that share a non-NULL anon_vma have equivalent chains, unless one of the two "
        "chains is exactly that single anon_vma.",
        check_singleton,
    ),
    Invariant(
        "page-index",
        "I1'",
        "A mapped page's index equals linear_page_index() at every address that maps it.",
        check_page_index,
    ),
    Invariant(
        "rmap-complete",
        "I1",
        "Every present pte mapping an anonymous page is found by an rmap walk from the page's anon_vma.",
        check_rmap_complete,
    ),
    Invariant(
        "mapcount",
        "_mapcount / swap_map",
        "A page's mapcount equals the number of present ptes that map it, and a swap entry's count the "
        "number of swap ptes that hold it (what reuse, COW and freeing decide on); a page that no pte maps "
        "and no swap cache holds has been freed (its last reference went with its last mapping).",
        check_mapcount,
    ),
    Invariant(
        "pte-prot",
        "change_protection",
        "No present pte is writable inside a VMA without VM_WRITE.",
        check_pte_prot,
    ),
    *LATER_GENERATIONS,
    Invariant(
        "cow-exclusive",
        "6c287605fd56",
        "A present pte is writable only where its page is exclusive: no other pte maps the page and no swap "
        "pte still refers to its swap slot, and the shared zero page is never mapped writable (copy on write: "
        "do_wp_page() reuses a page only when nobody else can see it; PG_anon_exclusive, 5.19, names the rule).",
        check_cow_exclusive,
    ),
    Invariant(
        "vma-tree",
        "validate_mm()",
        "Each process's VMAs are non-empty, sorted by address and disjoint (what validate_mm() and, from 6.1, "
        "the maple tree's own checks assert under CONFIG_DEBUG_VM): a step that leaves two VMAs over one page "
        "has corrupted the address space.",
        check_vma_tree,
    ),
    Invariant(
        "syscall-effect",
        "mmap(2), munmap(2), mprotect(2), madvise(2), mremap(2), fork(2)",
        "A call answers ok or an errno the kernel gives, and one that returned 0 did what it says: after mmap "
        "or mprotect the whole range is mapped with the asked protection (after mmap, VM_NORESERVE and no "
        "VM_ACCOUNT exactly where MAP_NORESERVE was asked, VM_ACCOUNT where the mapping is writable without it; "
        "after an mprotect that grants write, VM_ACCOUNT exactly where there is no VM_NORESERVE), "
        "after munmap none of it is; madvise "
        "sets or clears its flag on the range, DONTNEED leaves no pte there and PAGEOUT no page it may "
        "reclaim; mremap's new range holds what the old range held and the rest of the old range is unmapped "
        "(MREMAP_DONTUNMAP: keeps its VMA, loses its ptes); fork's child has the parent's VMAs (but "
        "VM_DONTCOPY ones) and, where a VMA has an anon_vma and is not VM_WIPEONFORK, its ptes, and a failed fork "
        "leaves no child.  A range op changes no page of the process outside its range (and an mremap's "
        "target), a fork none of the parent's.  mmap of a non-empty range is never EINVAL.  An "
        "error has its documented cause: ESRCH only for an exited process, SEGV exactly where no VMA allows the "
        "access, EINVAL only for an argument some check refuses, ENOMEM from mprotect or madvise only for a range "
        "with a hole, EFAULT from mremap only for an old range not inside one VMA (from 6.17, for a same-size "
        "fixed move, only for one that starts in a gap) and ENOMEM only for a growth in place that finds no room "
        "(unless an injected allocation failure explains an ENOMEM).",
        check_syscall_effect,
        Kind.TRANSITION,
    ),
    Invariant(
        "fail-injection",
        "fail_nth (the syzkaller idea)",
        "Allocation failures happen only where fail_alloc put them: fork, mmap and munmap fail with ENOMEM and "
        "a fault with OOM only in a step where an injected failure fired, and an armed failure fires at the Nth "
        "anon_vma/anon_vma_chain allocation after fail_alloc N.",
        check_fail_injection,
        Kind.TRANSITION,
    ),
)

BY_NAME: dict[str, Invariant] = {inv.name: inv for inv in CATALOGUE}
DEFAULT: tuple[str, ...] = tuple(inv.name for inv in CATALOGUE)


def select(names: Iterable[str] | None) -> tuple[Invariant, ...]:
    """The invariants to check, in catalogue order; unknown names raise ValueError."""
    if names is None:
        return CATALOGUE
    wanted = set(names)
    unknown = wanted - BY_NAME.keys()
    if unknown:
        raise ValueError(f"unknown invariant {sorted(unknown)[0]!r} (known: {', '.join(DEFAULT)})")
    return tuple(inv for inv in CATALOGUE if inv.name in wanted)


def breaks(k: KernelCore, invariants: Sequence[Invariant], step: StepRecord) -> bool:
    """Whether any of the (transition) invariants finds something after ``step`` (no report)."""
    try:
        for inv in invariants:
            if inv.judges is not None and not inv.judges(step):
                continue
            for _ in inv.check(k, step, _NO_SCOPE):
                return True
    except UseAfterFree:
        return True
    return False


_NO_SCOPE: Any = None  # the transition invariants never read the scope


def check(
    k: KernelCore, invariants: Sequence[Invariant], step: StepRecord | None = None, scope: Scope | None = None
) -> list[Violation]:
    """Run the given invariants on ``k`` after ``step``: every finding, in catalogue order.  The state
    invariants look at ``scope`` (default: all of the state).  Without a step record only the state
    invariants among them run (a state judged on its own; they never read the record)."""
    record: Any = step
    found: list[Violation] = []
    judged = scope
    for inv in invariants:
        if step is None and inv.kind is not Kind.STATE:
            continue
        if judged is None and inv.kind is Kind.STATE:
            judged = scopes.full(k)
        try:
            for message, objs in inv.check(k, record, judged):  # type: ignore[arg-type]
                found.append(Violation(inv.name, message, _names(objs)))
        except UseAfterFree as uaf:  # a walk inside a check dereferenced a freed object
            found.append(use_after_free(uaf))
    return found
