"""The model's predictions at the oracle's levels, and their comparison with what the kernel showed.

Levels (each a function of a model kernel, and of plain data for the live kernel):

* **result** -- the step's answer (``ok``, an errno name, ``SEGV``, ``ESRCH``);
* **L0** -- per live process, the window's VMAs as ``(start, end, prot)``: merging must match
  exactly (``VM_ACCOUNT``, ``vm_pgoff`` and anon_vma identity are hidden state the model carries);
* **L1** -- per VMA, the merge-relevant VmFlags (``ac``, ``dc``, ``wf``; ``nr``, ``hg``, ``nh`` must
  be absent) and smaps ``Anonymous``;
* **L2** -- per (pid, page): not present, the zero page, or a physical page, compared as classes
  (which cells share one page), not as PFNs;
* **L3** -- the anon_vma graph up to renaming: per VMA ``vm_pgoff``, the model's ``vm_flags`` bits,
  which anon_vma it has (anon_vmas are named ``av0``, ``av1`` ... by first appearance walking
  processes in pid order, VMAs by address, each VMA's anon_vma and then its chain in order), its
  chain as a list of those names, and per chained anon_vma its root and parent (renamed),
  ``num_children``, ``num_active_vmas`` and ``refcount``.

When the machine has no swap device ``MADV_PAGEOUT`` cannot push anon pages out, while the model
swaps them: cells the model holds as swap entries are then left out of L2, and L1's ``Anonymous``
may count them (``swap_tolerant``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import NamedTuple

import attrs

from rmapfuzz.model.core import KernelCore
from rmapfuzz.model.objects import (
    FLAG_NAMES,
    VM_MAY_ALL,
    VM_PROT_MASK,
    describe_flags,
    flags_to_prot,
)
from rmapfuzz.oracle.bpf import END_COMPLETE, END_NULL, END_TRUNCATED, VmaRecord
from rmapfuzz.oracle.observe import COMPARED_FLAGS, Cell, KVma, SmapsVma, SwapEntry, canonical_classes

PAGE_KB = 4


@attrs.frozen
class Divergence:
    """The first place kernel and model disagree: ``step`` is the 0-based step index (after which
    the observation was taken), ``level`` one of ``result``, ``L0``, ``L1``, ``L2``, ``L3``."""

    step: int
    level: str
    kernel: str
    model: str
    message: str

    def to_json(self) -> dict[str, object]:
        return attrs.asdict(self)

    def __str__(self) -> str:
        return f"step {self.step} {self.level}: {self.message}\n  kernel: {self.kernel}\n  model:  {self.model}"


# ---- rendering ----


def layout_text(vmas: Sequence[KVma]) -> str:
    return ", ".join(f"[{s},{e}) {p or 'none'}" for s, e, p in vmas) or "(empty)"


def layouts_text(layouts: Mapping[int, Sequence[KVma]]) -> str:
    return "; ".join(f"P{pid} {layout_text(v)}" for pid, v in sorted(layouts.items())) or "(no process)"


def classes_text(classes: Mapping[Cell, str], pids: Sequence[int], pages: int) -> str:
    return "; ".join(f"P{pid} " + " ".join(classes.get((pid, n), "?") for n in range(pages)) for pid in pids)


# ---- the model's side ----


def model_live(k: KernelCore) -> list[int]:
    return sorted(pid for pid, mm in k.mms.items() if mm.alive)


def model_layouts(k: KernelCore) -> dict[int, list[KVma]]:
    return {pid: [(v.vm_start, v.vm_end, flags_to_prot(v.vm_flags)) for v in k.mms[pid].vmas] for pid in model_live(k)}


def model_page_states(k: KernelCore, pages: int) -> dict[Cell, object]:
    """``"-"`` / ``"0"``, the model's Page object, or a :class:`SwapEntry` of its SwapSlot (both
    compared by identity; holding them keeps their identity from being reused across steps)."""
    out: dict[Cell, object] = {}
    for pid in model_live(k):
        ptes = k.mms[pid].ptes
        for n in range(pages):
            pte = ptes.get(n)
            if pte is None:
                out[(pid, n)] = "-"
            elif pte.swap is not None:
                out[(pid, n)] = SwapEntry(pte.swap)
            elif pte.page is None:
                out[(pid, n)] = "0"
            else:
                out[(pid, n)] = pte.page
    return out


def is_swap(value: object) -> bool:
    return isinstance(value, SwapEntry)


@attrs.frozen
class FlagsView:
    """One VMA at L1: bounds, the compared VmFlags, and Anonymous as a range in kB."""

    start: int
    end: int
    flags: frozenset[str]
    anon_lo: int
    anon_hi: int

    def text(self) -> str:
        anon = f"{self.anon_lo}k" if self.anon_lo == self.anon_hi else f"{self.anon_lo}-{self.anon_hi}k"
        return f"[{self.start},{self.end}) {{{' '.join(sorted(self.flags))}}} anon {anon}"


def model_flags(k: KernelCore, swap_tolerant: bool) -> dict[int, list[FlagsView]]:
    out: dict[int, list[FlagsView]] = {}
    for pid in model_live(k):
        mm = k.mms[pid]
        views = []
        for v in mm.vmas:
            names = {name for bit, name in FLAG_NAMES if v.vm_flags & bit}
            present = swapped = 0
            for n in range(v.vm_start, v.vm_end):
                pte = mm.ptes.get(n)
                if pte is None:
                    continue
                if pte.swap is not None:
                    swapped += 1
                elif pte.page is not None:
                    present += 1
            hi = present + (swapped if swap_tolerant else 0)
            views.append(FlagsView(v.vm_start, v.vm_end, frozenset(names), PAGE_KB * present, PAGE_KB * hi))
        out[pid] = views
    return out


def kernel_flags(smaps: Mapping[int, Sequence[SmapsVma]]) -> dict[int, list[FlagsView]]:
    return {
        pid: [FlagsView(s.start, s.end, s.flags & COMPARED_FLAGS, s.anonymous_kb, s.anonymous_kb) for s in vmas]
        for pid, vmas in smaps.items()
    }


# ---- comparisons: None when they agree, else (kernel text, model text, message) ----

Mismatch = tuple[str, str, str]


def compare_result(kernel: str, model: str) -> Mismatch | None:
    if kernel == model:
        return None
    return kernel, model, f"the step returned {kernel} on the kernel, {model} in the model"


def compare_layouts(kernel: Mapping[int, Sequence[KVma]], model: Mapping[int, Sequence[KVma]]) -> Mismatch | None:
    """L0: the same live processes, each with exactly the same VMAs."""
    if sorted(kernel) != sorted(model):
        return (
            f"processes {sorted(kernel)}",
            f"processes {sorted(model)}",
            "the live processes differ",
        )
    for pid in sorted(model):
        k, m = list(kernel[pid]), list(model[pid])
        if k != m:
            return f"P{pid} {layout_text(k)}", f"P{pid} {layout_text(m)}", f"P{pid}'s VMAs differ"
    return None


def compare_flags(
    kernel: Mapping[int, Sequence[FlagsView]], model: Mapping[int, Sequence[FlagsView]]
) -> Mismatch | None:
    """L1: per process and VMA, the VmFlags and Anonymous (within the model's range)."""
    for pid in sorted(model):
        k, m = list(kernel.get(pid, [])), list(model[pid])
        same = len(k) == len(m) and all(
            (a.start, a.end, a.flags) == (b.start, b.end, b.flags) and b.anon_lo <= a.anon_lo <= b.anon_hi
            for a, b in zip(k, m, strict=True)
        )
        if not same:
            return (
                f"P{pid} " + ", ".join(v.text() for v in k),
                f"P{pid} " + ", ".join(v.text() for v in m),
                f"P{pid}'s VmFlags/Anonymous differ",
            )
    return None


def compare_pages(
    kernel: Mapping[Cell, object], model: Mapping[Cell, object], pages: int, swap_tolerant: bool
) -> Mismatch | None:
    """L2: the same cells not present / zero page, and the same sharing classes."""
    skip = {c for c, v in model.items() if is_swap(v)} if swap_tolerant else set()
    kc = canonical_classes({c: v for c, v in kernel.items() if c not in skip})
    mc = canonical_classes({c: v for c, v in model.items() if c not in skip})
    if kc == mc:
        return None
    pids = sorted({pid for pid, _ in model} | {pid for pid, _ in kernel})
    for pid in pids:
        row_k = [kc.get((pid, n), "?") for n in range(pages)]
        row_m = [mc.get((pid, n), "?") for n in range(pages)]
        if row_k != row_m:
            break
    mark = {c: "~" for c in skip}
    return (
        classes_text({**kc, **mark}, pids, pages),
        classes_text({**mc, **mark}, pids, pages),
        f"page identity differs (first in P{pid}; '-' not present, '0' zero page, pN a shared class, '~' not compared)",
    )


# ---- L3: the anon_vma graph, up to renaming ----

# The vm_flags bits L3 compares: the ones the model carries.  Others the kernel may set on these
# VMAs (VM_SOFTDIRTY with CONFIG_MEM_SOFT_DIRTY, ...) are not part of the model.
GRAPH_FLAGS = VM_PROT_MASK | VM_MAY_ALL | sum(bit for bit, _ in FLAG_NAMES)


class AvState(NamedTuple):
    """One anon_vma at L3; ``root`` and ``parent`` are identities (kernel pointers, or the
    model's AnonVma objects)."""

    root: Hashable | None
    parent: Hashable | None
    num_children: int
    num_active_vmas: int
    refcount: int


class GraphVma(NamedTuple):
    """One VMA at L3: window pages, ``pgoff`` relative to the window's first page, flags masked
    with :data:`GRAPH_FLAGS`; ``chain`` is the same_vma list from its head, as far as it was read
    (``status`` says whether it was cut: ``END_TRUNCATED`` past the iterator's limit,
    ``END_NULL`` at a NULL link)."""

    start: int
    end: int
    pgoff: int
    flags: int
    anon_vma: Hashable | None
    chain: tuple[Hashable, ...]
    status: int = END_COMPLETE


@attrs.define
class Graph:
    """Per process (op-language pid) its VMAs by address, and the state of every chained anon_vma."""

    vmas: dict[int, list[GraphVma]]
    avs: dict[Hashable, AvState]


def model_graph(k: KernelCore, max_chain: int) -> Graph:
    """The model's graph, with chains cut at ``max_chain`` as the iterator cuts them."""
    vmas: dict[int, list[GraphVma]] = {}
    avs: dict[Hashable, AvState] = {}
    for pid in model_live(k):
        rows = []
        for v in k.mms[pid].vmas:
            chain = v.chain_anon_vmas()
            status = END_TRUNCATED if len(chain) > max_chain else END_COMPLETE
            rows.append(
                GraphVma(
                    v.vm_start,
                    v.vm_end,
                    v.vm_pgoff,
                    v.vm_flags & GRAPH_FLAGS,
                    v.anon_vma,
                    tuple(chain[:max_chain]),
                    status,
                )
            )
            for av in chain[:max_chain]:
                avs[av] = AvState(av.root, av.parent, av.num_children, av.num_active_vmas, av.refcount)
        vmas[pid] = rows
    return Graph(vmas, avs)


def kernel_graph(records: Mapping[int, Sequence[VmaRecord]], start: int, page: int) -> Graph:
    """The kernel's graph from the iterator's records (per op-language pid); ``start`` is the
    window's first address."""
    first = start // page
    vmas: dict[int, list[GraphVma]] = {}
    avs: dict[Hashable, AvState] = {}
    for pid, recs in records.items():
        rows = []
        for r in sorted(recs, key=lambda r: r.start):
            chain = tuple(c.anon_vma for c in r.chain)
            rows.append(
                GraphVma(
                    (r.start - start) // page,
                    (r.end - start) // page,
                    r.pgoff - first,
                    r.flags & GRAPH_FLAGS,
                    r.anon_vma or None,
                    chain,
                    r.status,
                )
            )
            for c in r.chain:
                avs[c.anon_vma] = AvState(
                    c.root or None, c.parent or None, c.num_children, c.num_active_vmas, c.refcount
                )
        vmas[pid] = rows
    return Graph(vmas, avs)


class CanonAv(NamedTuple):
    """A chained anon_vma under its canonical name; ``root``/``parent`` are names too (``None``
    for NULL)."""

    name: str
    root: str | None
    parent: str | None
    num_children: int
    num_active_vmas: int
    refcount: int

    def text(self) -> str:
        if self.root == self.name and self.parent == self.name:
            where = "root"
        else:
            where = f"root {self.root or 'NULL'}, parent {self.parent or 'NULL'}"
        return f"{self.name} ({where}, ch={self.num_children} act={self.num_active_vmas} ref={self.refcount})"


class CanonVma(NamedTuple):
    start: int
    end: int
    pgoff: int
    flags: int
    anon_vma: str | None
    chain: tuple[CanonAv, ...]
    status: int

    def text(self, seen: set[str] | None = None) -> str:
        """``[s,e) pgoff +n rw- ac av1, chain [av1 (root av0, ...), av0 (...)]``; anon_vmas named
        in ``seen`` are not described again (and are added to it)."""
        flags = describe_flags(self.flags)
        if self.flags & VM_MAY_ALL != VM_MAY_ALL:
            flags += f" (vm_flags {self.flags:#x})"
        head = f"[{self.start},{self.end}) pgoff {self.pgoff:+d} {flags}"
        if self.anon_vma is None and not self.chain:
            body = "none"
        else:
            entries = []
            for c in self.chain:
                entries.append(c.name if seen is not None and c.name in seen else c.text())
                if seen is not None:
                    seen.add(c.name)
            body = f"{self.anon_vma or 'no anon_vma'}, chain [{', '.join(entries)}"
            body += {END_COMPLETE: "]", END_TRUNCATED: ", ...] (cut)", END_NULL: ", NULL link]"}.get(self.status, "]")
        return f"{head} {body}"


def canonical_names(g: Graph) -> dict[Hashable, str]:
    """The anon_vmas' names by first appearance: pids in order, VMAs by address; a VMA's anon_vma,
    then its chain, then each chained anon_vma's root and parent."""
    names: dict[Hashable, str] = {}

    def see(key: Hashable | None) -> None:
        if key is not None and key not in names:
            names[key] = f"av{len(names)}"

    for pid in sorted(g.vmas):
        for v in g.vmas[pid]:
            see(v.anon_vma)
            for key in v.chain:
                see(key)
            for key in v.chain:
                see(g.avs[key].root)
                see(g.avs[key].parent)
    return names


def canonical_graph(g: Graph) -> dict[int, list[CanonVma]]:
    """The graph with anon_vmas renamed (:func:`canonical_names`).  Two graphs are the same up to
    renaming exactly when their canonical forms are equal."""
    names = canonical_names(g)

    def name(key: Hashable | None) -> str | None:
        return None if key is None else names[key]

    out: dict[int, list[CanonVma]] = {}
    for pid in sorted(g.vmas):
        rows = []
        for v in g.vmas[pid]:
            chain = []
            for key in v.chain:
                st = g.avs[key]
                chain.append(
                    CanonAv(
                        names[key], name(st.root), name(st.parent), st.num_children, st.num_active_vmas, st.refcount
                    )
                )
            rows.append(CanonVma(v.start, v.end, v.pgoff, v.flags, name(v.anon_vma), tuple(chain), v.status))
        out[pid] = rows
    return out


def _vma_difference(k: CanonVma, m: CanonVma) -> str | None:
    """The first field in which two canonical VMAs differ, in words."""
    if (k.start, k.end) != (m.start, m.end):
        return "the VMAs differ"
    if k.pgoff != m.pgoff:
        return "vm_pgoff differs"
    if k.flags != m.flags:
        return "vm_flags differ"
    if (k.anon_vma is None) != (m.anon_vma is None):
        return "whether it has an anon_vma differs"
    if k.anon_vma != m.anon_vma:
        return "its anon_vma differs (which VMAs share an anon_vma)"
    if len(k.chain) != len(m.chain) or k.status != m.status:
        return "the anon_vma_chain's length differs"
    for i, (a, b) in enumerate(zip(k.chain, m.chain, strict=True)):
        if a.name != b.name:
            return f"anon_vma_chain[{i}] differs"
    for i, (a, b) in enumerate(zip(k.chain, m.chain, strict=True)):
        for fld in ("root", "parent", "num_children", "num_active_vmas", "refcount"):
            if getattr(a, fld) != getattr(b, fld):
                return f"{fld} of anon_vma_chain[{i}] ({a.name}) differs"
    return None


def compare_graphs(kernel: Graph, model: Graph) -> Mismatch | None:
    """L3: the same processes, and per VMA the same canonical row (see :func:`canonical_graph`);
    the first differing VMA is reported with the field."""
    kc, mc = canonical_graph(kernel), canonical_graph(model)
    if kc == mc:
        return None
    if sorted(kc) != sorted(mc):
        return f"processes {sorted(kc)}", f"processes {sorted(mc)}", "the live processes differ"
    for pid in sorted(mc):
        krows, mrows = kc[pid], mc[pid]
        for a, b in zip(krows, mrows, strict=False):
            what = _vma_difference(a, b)
            if what is not None:
                return f"P{pid} {a.text()}", f"P{pid} {b.text()}", f"P{pid} [{b.start},{b.end}): {what}"
        if len(krows) != len(mrows):
            ktext = "; ".join(r.text() for r in krows) or "(empty)"
            mtext = "; ".join(r.text() for r in mrows) or "(empty)"
            return f"P{pid} {ktext}", f"P{pid} {mtext}", f"P{pid}'s VMAs differ"
    return None


def graph_text(g: Graph) -> str:
    """The whole canonical graph, one process after another, each anon_vma described where it
    first appears (for reports and tests)."""
    seen: set[str] = set()
    parts = []
    for pid, rows in canonical_graph(g).items():
        parts.append(f"P{pid} " + (", ".join(v.text(seen) for v in rows) or "(empty)"))
    return "; ".join(parts)


# ---- L2 over time: a page keeps its name from one step to the next ----


def _identity_key(value: object) -> tuple[str, object] | None:
    """What names a page or swap slot across steps (None for "-", "0", "S")."""
    if isinstance(value, str):
        return None
    return ("s", value) if isinstance(value, SwapEntry) else ("p", value)


@attrs.define
class PageHistory:
    """Which kernel page (PFN) or swap entry stood for which model page or slot after the last
    step, among those some cell showed.  A page that the kernel kept while the model replaced it
    (or the other way round) is a COW reused in place on one side and copied on the other; a
    page seen by no cell is forgotten (its PFN may be reused later)."""

    kernel_to_model: dict[object, tuple[str, object]] = attrs.field(factory=dict)
    model_to_kernel: dict[object, tuple[str, object]] = attrs.field(factory=dict)
    cells: dict[object, Cell] = attrs.field(factory=dict)  # model key -> a cell that showed it

    def check(self, kernel: Mapping[Cell, object], model: Mapping[Cell, object], pages: int) -> Mismatch | None:
        """Compare this step's pairing with the last one, then remember this step's."""
        k2m: dict[object, tuple[str, object]] = {}
        m2k: dict[object, tuple[str, object]] = {}
        cells: dict[object, Cell] = {}
        found: Mismatch | None = None
        for cell in sorted(model):
            kk, mk = _identity_key(kernel.get(cell, "-")), _identity_key(model[cell])
            if kk is None or mk is None:
                continue
            k2m[kk], m2k[mk] = mk, kk
            cells.setdefault(mk, cell)
            if found is not None:
                continue
            before_m = self.kernel_to_model.get(kk)
            before_k = self.model_to_kernel.get(mk)
            what = "page" if mk[0] == "p" else "swap entry"
            pid, n = cell
            if before_m is not None and before_m != mk:
                was = self.cells.get(before_m, cell)
                found = (
                    f"P{pid} page {n}: the same {what} as P{was[0]} page {was[1]} showed after the last step",
                    f"P{pid} page {n}: another {what} than P{was[0]} page {was[1]} showed after the last step",
                    f"P{pid} page {n}: the kernel kept the {what} (same PFN) where the model has a new one "
                    "(reused in place on the kernel, copied in the model)",
                )
            elif before_k is not None and before_k != kk:
                was = self.cells.get(mk, cell)
                found = (
                    f"P{pid} page {n}: another {what} than P{was[0]} page {was[1]} showed after the last step",
                    f"P{pid} page {n}: the same {what} as P{was[0]} page {was[1]} showed after the last step",
                    f"P{pid} page {n}: the model kept the {what} where the kernel has a new one "
                    "(copied on the kernel, reused in place in the model)",
                )
        self.kernel_to_model, self.model_to_kernel, self.cells = k2m, m2k, cells
        return found


# ---- L4: the page side (which anon_vma each page belongs to, and its index) ----


class PageSide(NamedTuple):
    """One present anonymous page: its anon_vma (a kernel pointer or the model's AnonVma; None
    for a page that is not anonymous) and its index relative to the window's first page."""

    anon_vma: Hashable | None
    page_index: int


def model_page_side(k: KernelCore, pages: int) -> dict[Cell, PageSide]:
    out: dict[Cell, PageSide] = {}
    for pid in model_live(k):
        ptes = k.mms[pid].ptes
        for n in range(pages):
            pte = ptes.get(n)
            if pte is not None and pte.swap is None and pte.page is not None:
                out[(pid, n)] = PageSide(pte.page.mapping, pte.page.index)
    return out


def kernel_page_side(
    states: Mapping[Cell, object], folios: Mapping[int, tuple[int, bool, int]], first: int
) -> dict[Cell, PageSide]:
    """The kernel's side from L2's states (PFNs) and each PFN's folio ``(anon_vma, anon,
    index)``; ``first`` is the window's first page number (indexes are relative to it)."""
    out: dict[Cell, PageSide] = {}
    for cell, value in states.items():
        if isinstance(value, int) and value in folios:
            anon_vma, anon, index = folios[value]
            out[cell] = PageSide(anon_vma if anon and anon_vma else None, index - first)
    return out


def page_side_names(g: Graph, side: Mapping[Cell, PageSide]) -> dict[Hashable, str]:
    """The L3 graph's anon_vma names (:func:`canonical_names`), extended by first appearance in
    (pid, page) order for anon_vmas that pages name but no window VMA's chain holds."""
    names = canonical_names(g)
    for cell in sorted(side):
        av = side[cell].anon_vma
        if av is not None and av not in names:
            names[av] = f"av{len(names)}"
    return names


def compare_page_side(
    kernel: Mapping[Cell, PageSide],
    model: Mapping[Cell, PageSide],
    kernel_graph_: Graph,
    model_graph_: Graph,
) -> Mismatch | None:
    """L4: the same cells hold anonymous pages, each of the same anon_vma (as named in the L3
    graph, up to renaming) and index."""
    kn, mn = page_side_names(kernel_graph_, kernel), page_side_names(model_graph_, model)

    def text(side: Mapping[Cell, PageSide], names: Mapping[Hashable, str], cell: Cell) -> str:
        ps = side.get(cell)
        if ps is None:
            return "-"
        av = "not anon" if ps.anon_vma is None else names[ps.anon_vma]
        return f"{av}@{ps.page_index:+d}"

    for cell in sorted(set(kernel) | set(model)):
        kt, mt = text(kernel, kn, cell), text(model, mn, cell)
        if kt == mt:
            continue
        pid, n = cell
        row = sorted(c for c in set(kernel) | set(model) if c[0] == pid)

        def row_text(
            side: Mapping[Cell, PageSide], names: Mapping[Hashable, str], pid: int = pid, row: list[Cell] = row
        ) -> str:
            return f"P{pid} " + " ".join(f"{c[1]}:{text(side, names, c)}" for c in row)

        what = "anon_vma" if kt.split("@")[0] != mt.split("@")[0] else "index"
        return (
            row_text(kernel, kn),
            row_text(model, mn),
            f"P{pid} page {n}: the page's {what} differs (kernel {kt}, model {mt}; avN as in the L3 graph)",
        )
    return None
