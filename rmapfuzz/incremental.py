"""The incremental judge: after each step, only what the step touched is judged.

The state invariants held before the step (they were judged after the previous one), so only what
the step touched can break them.  :class:`Incremental` takes a small snapshot of the acting process
before the step and, after it, judges that process (and a fork's child) whole, and everything else
by how it changed:

* The model changes VMAs, chains and ptes only in the acting process and a process the step
  creates; the one exception is reclaim, whose rmap walk turns other processes' ptes into swap
  entries (MADV_PAGEOUT): those steps are judged whole.
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
from rmapfuzz.model.objects import VM_WRITE, AnonVma, Mm, Page, SwapSlot
from rmapfuzz.model.trace import UseAfterFree

# An anon_vma before the step: (the object, the acting process's links to it, its list's length, the
# acting process's VMAs using it, refcount, degree, num_children, num_active_vmas, pins, freed, non-empty)
_AvBefore = tuple[AnonVma, int, int, int, int, int, int, int, int, bool, bool]
# A page before the step: (the object, the acting process's ptes mapping it, mapcount, anon_vma)
_PageBefore = tuple[Page, int, int, AnonVma | None]


def _av_state(av: AnonVma, links: int, active: int) -> _AvBefore:
    return (av, links, len(av.head), active, av.refcount, av.degree, av.num_children, av.num_active_vmas,
            av.pins, av.freed, bool(av.head))  # fmt: skip


# what a new anon_vma was "before": (VMAs using it, refcount, degree, num_children, num_active_vmas,
# pins, freed, non-empty), the same fields as _AvBefore[3:]
_NEW_AV: tuple[int, int, int, int, int, int, bool, bool] = (0, 0, 0, 0, 0, 0, True, False)


class Incremental:
    """The incremental judge of one runner's kernel (see the module docstring)."""

    def __init__(self) -> None:
        self.acting: Mm | None = None
        self.next_pid = 0
        self.n_avs = 0
        self.n_pages = 0
        self.avs: dict[int, _AvBefore] = {}
        self.pages: dict[int, _PageBefore] = {}
        self.slots: dict[int, tuple[SwapSlot, int, int]] = {}  # (slot, acting swap ptes, count)
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
        avs: dict[int, _AvBefore] = {}
        pages: dict[int, _PageBefore] = {}
        slots: dict[int, tuple[SwapSlot, int, int]] = {}
        self.avs, self.pages, self.slots = avs, pages, slots
        if acting is None:
            return
        links: dict[int, list[int]] = {}  # id(av) -> [links, VMAs using it]
        objs: dict[int, AnonVma] = {}
        for v in acting.vmas:
            for avc in v.anon_vma_chain:
                x = avc.anon_vma
                e = links.get(id(x))
                if e is None:
                    links[id(x)] = [1, 0]
                    objs[id(x)] = x
                else:
                    e[0] += 1
            if v.anon_vma is not None:
                e = links.get(id(v.anon_vma))
                if e is None:
                    links[id(v.anon_vma)] = [0, 1]
                    objs[id(v.anon_vma)] = v.anon_vma
                else:
                    e[1] += 1
        for x in list(objs.values()):
            for y in (x.parent, x.root):
                if y is not None and id(y) not in objs:
                    objs[id(y)] = y
        for key, x in objs.items():
            n, active = links.get(key, (0, 0))
            avs[key] = _av_state(x, n, active)
        for pte in acting.ptes.values():
            slot = pte.swap
            if slot is not None:
                s = slots.get(id(slot))
                slots[id(slot)] = (slot, 1, slot.count) if s is None else (slot, s[1] + 1, s[2])
                page = slot.page
                if page is not None and id(page) not in pages:
                    pages[id(page)] = (page, 0, page.mapcount, page.mapping)
                continue
            page = pte.page
            if page is not None:
                p = pages.get(id(page))
                pages[id(page)] = (page, 1, page.mapcount, page.mapping) if p is None else (page, p[1] + 1, p[2], p[3])
        for p in list(pages.values()):
            cached = p[0].swapcache
            if cached is not None and id(cached) not in slots:
                slots[id(cached)] = (cached, 0, cached.count)

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
        if isinstance(op, ops.Madvise) and op.advice == "pageout":
            return True  # reclaim's rmap walk reaches other processes' ptes: judged whole
        mms = [acting] if acting.alive else []
        if k.next_pid != self.next_pid:
            mms += [k.mms[p] for p in range(self.next_pid, k.next_pid) if p in k.mms and k.mms[p].alive]
        try:
            return self._after(k, mms)
        except UseAfterFree:
            return True

    def _after(self, k: KernelCore, mms: list[Mm]) -> bool:
        """One pass over the acting processes, then the anon_vmas, pages and slots they reach."""
        bound = k.features.chain_bound
        links: dict[int, list[int]] = {}  # id(av) -> [links, VMAs using it] of the processes after
        objs: dict[int, AnonVma] = {}
        mapped: dict[int, list[object]] = {}  # id(page) -> [page, [(mm, addr), ...]]
        swapped: dict[int, int] = {}
        slots: dict[int, SwapSlot] = {}
        heads: dict[int, set[int]] = {}  # id(av) -> ids of the links on its list
        for mm in mms:
            groups: dict[int, object] = {}
            ptes = mm.ptes
            inside = 0
            for v in mm.vmas:
                if v.freed:
                    return True
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
                        listed = heads.get(id(x))
                        if listed is None:
                            listed = heads[id(x)] = {id(y) for y in x.head}
                        if avc.vma is not v or x.freed or id(avc) not in listed:
                            return True
                        if x is av:
                            primary = True
                        e = links.get(id(x))
                        if e is None:
                            links[id(x)] = [1, 0]
                            objs[id(x)] = x
                        else:
                            e[0] += 1
                    if not primary:
                        return True
                    links[id(av)][1] += 1
                    first = groups.get(id(av))
                    if first is None:
                        groups[id(av)] = v
                    elif {id(a.anon_vma) for a in chain} != {id(a.anon_vma) for a in first.anon_vma_chain}:  # type: ignore[attr-defined]
                        return True
                if not ptes:
                    continue
                start = v.vm_start
                writable = v.vm_flags & VM_WRITE
                offset = v.vm_pgoff - start
                for addr in range(start, v.vm_end):
                    pte = ptes.get(addr)
                    if pte is None:
                        continue
                    inside += 1
                    slot = pte.swap
                    if slot is not None:
                        swapped[id(slot)] = swapped.get(id(slot), 0) + 1
                        slots[id(slot)] = slot
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
                    e2 = mapped.get(id(page))
                    if e2 is None:
                        mapped[id(page)] = [page, [(mm, addr)]]
                    else:
                        e2[1].append((mm, addr))  # type: ignore[attr-defined]
            if inside != len(ptes):
                return True  # a pte outside every VMA
        return self._anon_vmas(k, links, objs) or self._pages(k, mapped, swapped, slots)

    # ---- anon_vmas: lists and counters by how they moved ----

    def _anon_vmas(self, k: KernelCore, links: dict[int, list[int]], objs: dict[int, AnonVma]) -> bool:
        features = k.features
        counted = features.refcount or features.degree or features.fork_counters
        before = self.avs
        n_avs = self.n_avs
        new = {id(x) for x in k.anon_vmas[n_avs:]} if len(k.anon_vmas) != n_avs else set()
        for x in k.anon_vmas[n_avs:]:
            objs.setdefault(id(x), x)
        for key, b in before.items():
            objs.setdefault(key, b[0])
        for x in list(objs.values()):
            for y in (x.parent, x.root):
                if y is not None:
                    objs.setdefault(id(y), y)
        for key, x in objs.items():
            prior = before.get(key)
            if prior is None and key not in new:
                return True  # an anon_vma the step reached that the snapshot did not see: judge whole
            n = links[key][0] if key in links else 0
            others = 0 if prior is None else prior[2] - prior[1]
            if x.freed:
                if others:
                    return True  # freed while other processes still link it
            elif len(x.head) - n != others:
                return True  # another process's link came or went, or a link of a freed VMA stayed
        if not counted:
            return False
        # counters: each must have moved by what its structure did
        moved_children: dict[int, int] = {}
        moved_pins: dict[int, int] = {}
        for key, x in objs.items():
            was = before.get(key)
            was_live, was_full = (not was[9], was[10]) if was is not None else (False, False)
            live, full = not x.freed, bool(x.head) and not x.freed
            if x.parent is not None and full != was_full:
                moved_children[id(x.parent)] = moved_children.get(id(x.parent), 0) + (1 if full else -1)
            if x.root is not None and x.root is not x and live != was_live:
                moved_pins[id(x.root)] = moved_pins.get(id(x.root), 0) + (1 if live else -1)
        for key, x in objs.items():
            if x.freed:
                continue
            then = before.get(key)
            old = then[3:] if then is not None else _NEW_AV
            active = (links[key][1] if key in links else 0) - old[0]
            children = moved_children.get(key, 0)
            if x.refcount < 0 or x.degree < 0 or x.num_children < 0 or x.num_active_vmas < 0:
                return True
            if features.refcount:
                expected = (bool(x.head) - old[7]) + moved_pins.get(key, 0) + (x.pins - old[5])
                if x.refcount - old[1] != expected:
                    return True
            if features.degree and x.degree - old[2] != active + children:
                return True
            if features.fork_counters and (x.num_children - old[3] != children or x.num_active_vmas - old[4] != active):
                return True
        return False

    # ---- pages and swap slots by arithmetic; the rmap walk of the acting process's pages ----

    def _pages(
        self, k: KernelCore, mapped: dict[int, list[object]], swapped: dict[int, int], slots: dict[int, SwapSlot]
    ) -> bool:
        before = self.pages
        pages: dict[int, Page] = {key: b[0] for key, b in before.items()}
        for key, entry in mapped.items():
            pages[key] = entry[0]  # type: ignore[assignment]
        if len(k.pages) != self.n_pages:
            for page in k.pages[self.n_pages :]:
                pages[id(page)] = page
        for page in pages.values():
            if page.swapcache is not None:
                slots.setdefault(id(page.swapcache), page.swapcache)
        walk = k.rmap_walk_anon  # type: ignore[attr-defined]
        for key, page in pages.items():
            b = before.get(key)
            others = 0 if b is None else b[2] - b[1]
            e = mapped.get(key)
            expected = others + (0 if e is None else len(e[1]))  # type: ignore[arg-type]
            if page.freed:
                if expected:
                    return True
                continue
            if page.mapcount != expected or (expected == 0 and page.swapcache is None):
                return True
            if others and b is not None and page.mapping is not b[3]:
                return True  # a page others map changed its anon_vma
            if e is not None:
                found = {(vma.mm, addr) for vma, addr in walk(page)}
                for loc in e[1]:  # type: ignore[attr-defined]
                    if loc not in found:
                        return True
        old_slots = self.slots
        for key, slot in slots.items():
            s = old_slots.get(key)
            others = 0 if s is None else s[2] - s[1]
            if slot.count != others + swapped.get(key, 0):
                return True
        return any(key not in slots and s[0].count != s[2] - s[1] for key, s in old_slots.items())
