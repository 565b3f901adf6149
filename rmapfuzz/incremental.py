"""The incremental judge: after each step, only what the step touched is judged.

The state invariants held before the step (they were judged after the previous one), so only what
the step touched can break them.  :class:`Incremental` takes a small snapshot of the acting process
before the step and, after it, judges that process (and a fork's child) whole, and everything else
by how it changed:

* The model changes VMAs, chains and ptes only in the acting process and a process the step
  creates; the one exception is reclaim, whose rmap walk turns other processes' ptes into swap
  entries (MADV_PAGEOUT): for those steps every process counts as acting.
* An anon_vma's list can change only where the acting process is linked, before or after: if it
  holds a different number of other processes' links than before, or an anon_vma others link is
  freed, the step is suspect.  Counters change by what changed: the step's own VMAs using the
  anon_vma, its children whose tree emptied or filled, its descendants freed, each compared with
  how the counter moved (the counters held before, so matching moves keep them right).
* A page or swap slot other processes map is judged by arithmetic: its mapcount must have moved by
  exactly the acting process's ptes that came and went; a page others still map must not be freed
  or lose its anon_vma.  The rmap walk is run for the pages the acting process maps.
* A writable pte of the acting process must map an exclusive page (cow-exclusive).  Another
  process's writable page was exclusive before the step, so the step could share it only by
  mapping it, which it could not do without mapping it already (fork) or holding its swap slot.

:meth:`Incremental.suspect` answers only whether a step *may* break an invariant; the runner then
has the invariant catalogue judge the whole state and report (:class:`rmapfuzz.replay.Runner`), so
a verdict reads exactly as if every step had been judged whole, and a false alarm costs only time.
The runner also judges the whole state every so many steps and at the end of every sequence, and
bench/equivalence.py runs both judges side by side on every generation.
"""

from __future__ import annotations

from rmapfuzz import ops
from rmapfuzz.model.core import KernelCore
from rmapfuzz.model.objects import VM_WRITE, AnonVma, Mm, Page, SwapSlot, Vma
from rmapfuzz.model.trace import UseAfterFree

# An anon_vma before the step: (the acting process's links to it, its list's length, the acting
# process's VMAs using it, refcount, degree, num_children, num_active_vmas, pins, freed, non-empty)
_AvBefore = tuple[int, int, int, int, int, int, int, int, bool, bool]
# what a new anon_vma was "before": no links, no users, every counter 0, freed, empty
_NEW_AV: _AvBefore = (0, 0, 0, 0, 0, 0, 0, 0, True, False)
# A page before the step: (the acting process's ptes mapping it, mapcount, anon_vma)
_PageBefore = tuple[int, int, AnonVma | None]
# A swap slot before the step: (the acting process's swap ptes holding it, its count)
_SlotBefore = tuple[int, int]


def _av_state(av: AnonVma, links: int, active: int) -> _AvBefore:
    return (links, len(av.head), active, av.refcount, av.degree, av.num_children, av.num_active_vmas, av.pins,
            av.freed, bool(av.head))  # fmt: skip


class Incremental:
    """The incremental judge of one runner's kernel (see the module docstring).  Objects are keyed
    by themselves: every model object compares and hashes by identity."""

    def __init__(self) -> None:
        self.acting: Mm | None = None
        self.mms: list[Mm] = []  # the processes the step may change: the acting one, or all (reclaim)
        self.next_pid = 0
        self.n_avs = 0
        self.n_pages = 0
        self.avs: dict[AnonVma, _AvBefore] = {}
        self.pages: dict[Page, _PageBefore] = {}
        self.slots: dict[SwapSlot, _SlotBefore] = {}
        self.fault: tuple[object, Page | None, bool] | None = None  # (pte, page, writable) of a no-op fault

    def before(self, k: KernelCore, acting: Mm | None, op: ops.Op) -> None:
        """Snapshot the acting process's side of the state, before the step runs."""
        self.acting = acting
        self.fault = None
        if acting is not None and isinstance(op, ops.Read | ops.Write):
            pte = acting.ptes.get(op.addr)
            if pte is not None and pte.swap is None and (pte.writable or isinstance(op, ops.Read)):
                # handle_mm_fault() returns at once for a present pte that needs no write: a fault
                # that leaves its pte as it was did nothing, and needs no snapshot
                self.fault = (pte, pte.page, pte.writable)
                return
        self.next_pid = k.next_pid
        self.n_avs = len(k.anon_vmas)
        self.n_pages = len(k.pages)
        avs: dict[AnonVma, _AvBefore] = {}
        pages: dict[Page, _PageBefore] = {}
        slots: dict[SwapSlot, _SlotBefore] = {}
        self.avs, self.pages, self.slots = avs, pages, slots
        if acting is None:
            return
        # reclaim's rmap walk reaches every process that maps a page it unmaps: all are acting
        reclaim = isinstance(op, ops.Madvise) and op.advice == "pageout"
        self.mms = mms = [mm for mm in k.mms.values() if mm.alive] if reclaim else [acting]
        links: dict[AnonVma, list[int]] = {}  # anon_vma -> [links, VMAs using it]
        for v in (v for mm in mms for v in mm.vmas) if reclaim else acting.vmas:
            for avc in v.anon_vma_chain:
                e = links.get(avc.anon_vma)
                if e is None:
                    links[avc.anon_vma] = [1, 0]
                else:
                    e[0] += 1
            av = v.anon_vma
            if av is not None:
                e = links.get(av)
                if e is None:
                    links[av] = [0, 1]
                else:
                    e[1] += 1
        for x in list(links):
            for y in (x.parent, x.root):
                if y is not None and y not in links:
                    links[y] = [0, 0]
        for x, (n, active) in links.items():
            avs[x] = _av_state(x, n, active)
        for pte in (pte for mm in mms for pte in mm.ptes.values()) if reclaim else acting.ptes.values():
            slot = pte.swap
            if slot is not None:
                s = slots.get(slot)
                slots[slot] = (1, slot.count) if s is None else (s[0] + 1, s[1])
                page = slot.page
                if page is not None and page not in pages:
                    pages[page] = (0, page.mapcount, page.mapping)
                continue
            page = pte.page
            if page is not None:
                p = pages.get(page)
                pages[page] = (1, page.mapcount, page.mapping) if p is None else (p[0] + 1, p[1], p[2])
        for page in pages:
            cached = page.swapcache
            if cached is not None and cached not in slots:
                slots[cached] = (0, cached.count)

    def suspect(self, k: KernelCore, op: ops.Op, result: str) -> bool:
        """Whether the step that just ran may have broken a state invariant."""
        acting = self.acting
        if acting is None or result == "SEGV":
            return False  # fail_alloc arms a countdown, a step of a gone process or a denied fault does nothing
        if self.fault is not None:
            pte, page, writable = self.fault
            assert isinstance(op, ops.Read | ops.Write)
            now = acting.ptes.get(op.addr)
            return now is not pte or now.page is not page or now.writable != writable  # type: ignore[union-attr]
        mms = [mm for mm in self.mms if mm.alive]
        if k.next_pid != self.next_pid:
            mms += [k.mms[p] for p in range(self.next_pid, k.next_pid) if p in k.mms and k.mms[p].alive]
        try:
            return self._after(k, mms)
        except UseAfterFree:
            return True

    def _after(self, k: KernelCore, mms: list[Mm]) -> bool:
        """One pass over the acting processes, then the anon_vmas, pages and slots they reach."""
        bound = k.features.chain_bound
        links: dict[AnonVma, list[int]] = {}  # [links, VMAs using it] of the processes after
        mapped: dict[Page, list[tuple[Mm, int]]] = {}  # page -> where the processes map it
        swapped: dict[SwapSlot, int] = {}
        for mm in mms:
            groups: dict[AnonVma, Vma] = {}
            ptes = mm.ptes
            inside = 0
            end = 0
            for v in mm.vmas:
                if v.freed or v.vm_start < end or v.vm_start >= v.vm_end:
                    return True  # freed, or the VMA list out of order (vma-tree)
                end = v.vm_end
                chain = v.anon_vma_chain
                av = v.anon_vma
                if av is None:
                    if chain:
                        return True
                else:
                    if av.freed or (bound is not None and len(chain) > bound):
                        return True
                    primary = False
                    for avc in chain:
                        x = avc.anon_vma
                        if avc.vma is not v or x.freed or avc not in x.head:
                            return True
                        if x is av:
                            primary = True
                        e = links.get(x)
                        if e is None:
                            links[x] = [1, 0]
                        else:
                            e[0] += 1
                    if not primary:
                        return True
                    links[av][1] += 1
                    first = groups.get(av)
                    if first is None:
                        groups[av] = v
                    elif {a.anon_vma for a in chain} != {a.anon_vma for a in first.anon_vma_chain}:
                        return True
                if not ptes:
                    continue
                writable = v.vm_flags & VM_WRITE
                offset = v.vm_pgoff - v.vm_start
                for addr in range(v.vm_start, v.vm_end):
                    pte = ptes.get(addr)
                    if pte is None:
                        continue
                    inside += 1
                    slot = pte.swap
                    if slot is not None:
                        swapped[slot] = swapped.get(slot, 0) + 1
                        continue
                    page = pte.page
                    if page is None:
                        if pte.writable:
                            return True  # the zero page mapped writable
                        continue
                    if (pte.writable and not writable) or page.freed or page.index != offset + addr:
                        return True
                    if pte.writable and (page.mapcount != 1 or (page.swapcache is not None and page.swapcache.count)):
                        return True  # a writable page that is not exclusive
                    if page.mapping is not None and page.mapping.freed:
                        return True
                    where = mapped.get(page)
                    if where is None:
                        mapped[page] = [(mm, addr)]
                    else:
                        where.append((mm, addr))
            if inside != len(ptes):
                return True  # a pte outside every VMA
        return self._anon_vmas(k, links) or self._pages(k, mapped, swapped)

    # ---- anon_vmas: lists and counters by how they moved ----

    def _anon_vmas(self, k: KernelCore, links: dict[AnonVma, list[int]]) -> bool:
        before = self.avs
        new = k.anon_vmas[self.n_avs :]
        objs: dict[AnonVma, _AvBefore | None] = dict.fromkeys(links)
        objs.update(dict.fromkeys(new, _NEW_AV))
        objs.update(before)
        for x in list(objs):
            for y in (x.parent, x.root):
                if y is not None and y not in objs:
                    objs[y] = None
        for x, prior in objs.items():
            if prior is None:
                prior = before.get(x)
                if prior is None:
                    return True  # an anon_vma the step reached that the snapshot did not see: judge whole
                objs[x] = prior
            n = links[x][0] if x in links else 0
            others = prior[1] - prior[0]
            if x.freed:
                if others:
                    return True  # freed while other processes still link it
            elif len(x.head) - n != others:
                return True  # another process's link came or went, or a link of a freed VMA stayed
        features = k.features
        if not (features.refcount or features.degree or features.fork_counters):
            return False
        # counters: each must have moved by what its structure did
        moved_children: dict[AnonVma, int] = {}
        moved_pins: dict[AnonVma, int] = {}
        for x, old in objs.items():
            assert old is not None
            live = not x.freed
            full = live and bool(x.head)
            if x.parent is not None and full != old[9]:
                moved_children[x.parent] = moved_children.get(x.parent, 0) + (1 if full else -1)
            if x.root is not None and x.root is not x and live == old[8]:
                moved_pins[x.root] = moved_pins.get(x.root, 0) + (1 if live else -1)
        for x, old in objs.items():
            if x.freed:
                continue
            assert old is not None
            active = (links[x][1] if x in links else 0) - old[2]
            children = moved_children.get(x, 0)
            if x.refcount < 0 or x.degree < 0 or x.num_children < 0 or x.num_active_vmas < 0:
                return True
            if features.refcount:
                expected = (bool(x.head) - old[9]) + moved_pins.get(x, 0) + (x.pins - old[7])
                if x.refcount - old[3] != expected:
                    return True
            if features.degree and x.degree - old[4] != active + children:
                return True
            if features.fork_counters and (x.num_children - old[5] != children or x.num_active_vmas - old[6] != active):
                return True
        return False

    # ---- pages and swap slots by arithmetic; the rmap walk of the acting process's pages ----

    def _pages(self, k: KernelCore, mapped: dict[Page, list[tuple[Mm, int]]], swapped: dict[SwapSlot, int]) -> bool:
        before = self.pages
        pages: dict[Page, None] = dict.fromkeys(before)
        pages.update(dict.fromkeys(mapped))
        if len(k.pages) != self.n_pages:
            pages.update(dict.fromkeys(k.pages[self.n_pages :]))
        slots: dict[SwapSlot, None] = dict.fromkeys(swapped)
        walk = k.rmap_walk_anon  # type: ignore[attr-defined]
        for page in pages:
            if page.swapcache is not None:
                slots[page.swapcache] = None
            b = before.get(page)
            others = 0 if b is None else b[1] - b[0]
            where = mapped.get(page)
            expected = others if where is None else others + len(where)
            if page.freed:
                if expected:
                    return True
                continue
            if page.mapcount != expected or (expected == 0 and page.swapcache is None):
                return True
            if others and b is not None and page.mapping is not b[2]:
                return True  # a page others map changed its anon_vma
            if where is not None:
                found = {(vma.mm, addr) for vma, addr in walk(page)}
                for loc in where:
                    if loc not in found:
                        return True
        old_slots = self.slots
        for slot in slots:
            s = old_slots.get(slot)
            others = 0 if s is None else s[1] - s[0]
            if slot.count != others + swapped.get(slot, 0):
                return True
        return any(slot not in slots and slot.count != s[1] - s[0] for slot, s in old_slots.items())
