"""The anon_vma graph of a model state as Graphviz DOT (``rmapfuzz show --dot / --graph-svg``).

What a kernel developer draws on a whiteboard for these bugs: each process's VMAs, the
anon_vma_chain links from a VMA to every anon_vma it is linked to (in same_vma order), each
VMA's own ``anon_vma``, the anon_vmas with their ``parent`` and ``root`` edges and the counters
their generation has (refcount; degree; num_children and num_active_vmas: :func:`render.av_fields`),
and each mapped page's ``mapping``.  Freed objects are red and dashed; the objects the broken
invariant names are drawn thick.  SVG goes through Graphviz's ``dot`` (``apt-get install graphviz``):
its layout of a graph with crossing chains is far better than anything worth writing here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Collection, Iterator
from shutil import which
from string import ascii_uppercase

from rmapfuzz.model.core import KernelCore
from rmapfuzz.model.objects import AnonVma, Page, Vma, describe_flags
from rmapfuzz.render import av_fields

INSTALL = "apt-get install graphviz"
FREED = 'color="red", fontcolor="red", style="dashed"'
NAMED = 'penwidth=3, color="darkorange"'

LEGEND = [
    ("box", "VMA: [start,end) in pages, prot and merge flags, pgoff"),
    ("ellipse", "anon_vma, with the counters its generation has"),
    ("note", "page: index and mapcount"),
    ("bold edge", "vma->anon_vma"),
    ("edge n", "anon_vma_chain link, n-th in the VMA's same_vma list (0 newest)"),
    ("dashed edge", "anon_vma->parent"),
    ("dotted edge", "anon_vma->root (when not itself)"),
    ("edge pte a", "a present pte at page a maps the page (w writable, ro read-only)"),
    ("page edge", "page->mapping: the page's anon_vma"),
    ("red, dashed", "freed object"),
    ("thick orange", "named by the broken invariant"),
]


class GraphvizMissing(RuntimeError):
    """Graphviz's ``dot`` is not installed: an infrastructure failure (exit 3)."""


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _av_id(prefix: str, av: AnonVma) -> str:
    return _quote(f"{prefix}AV{av.ident}")


def _vma_id(prefix: str, vma: Vma) -> str:
    return _quote(f"{prefix}VMA{vma.ident}")


def _page_id(prefix: str, page: Page) -> str:
    return _quote(f"{prefix}{page.name}")


def _anon_vmas(k: KernelCore) -> list[AnonVma]:
    """Every anon_vma the state still refers to, freed ones too, in creation order."""
    seen: dict[int, AnonVma] = {}

    def add(av: AnonVma | None) -> None:
        while av is not None and av.ident not in seen:
            seen[av.ident] = av
            add(av.root)
            av = av.parent

    for av in k.anon_vmas:
        add(av)
    for mm in k.mms.values():
        if not mm.alive:
            continue
        for vma in mm.vmas:
            add(vma.anon_vma)
            for chained in vma.chain_anon_vmas():
                add(chained)
        for pte in mm.ptes.values():
            if pte.page is not None:
                add(pte.page.mapping)
    return [seen[i] for i in sorted(seen)]


def _style(base: str, freed: bool, named: bool) -> str:
    marks = FREED + (", penwidth=3" if named else "") if freed else (NAMED if named else "")
    return ", ".join(p for p in (base, marks) if p)


def _vma_lines(k: KernelCore, prefix: str, names: frozenset[str]) -> Iterator[str]:
    for pid, mm in sorted(k.mms.items()):
        if not mm.alive:
            continue
        yield f"  subgraph {_quote(f'cluster_{prefix}P{pid}')} {{"
        yield f'    label={_quote(f"P{pid}")}; style="rounded"; color="gray50";'
        for i, vma in enumerate(mm.vmas):
            letter = ascii_uppercase[i % 26]
            label = f"{letter} [{vma.vm_start},{vma.vm_end})\n{describe_flags(vma.vm_flags)} pgoff={vma.vm_pgoff}"
            named = vma.name.removesuffix("(freed)") in names
            yield f"    {_vma_id(prefix, vma)} [shape=box, label={_quote(label)}{_extra(vma.freed, named)}];"
        yield "  }"


def _extra(freed: bool, named: bool) -> str:
    style = _style("", freed, named)
    return f", {style}" if style else ""


def _av_lines(k: KernelCore, prefix: str, avs: list[AnonVma], names: frozenset[str]) -> Iterator[str]:
    for av in avs:
        fields = av_fields(k, av)
        counters = [f"{key} {value}" for key, value in fields.items() if key not in ("root", "parent")]
        label = "\n".join([av.name, *counters])
        named = f"AV{av.ident}" in names
        yield f"  {_av_id(prefix, av)} [shape=ellipse, label={_quote(label)}{_extra(av.freed, named)}];"
    if not k.features.refcount:  # 2.6.34 has no parent or root
        return
    for av in avs:
        if av.parent is not None and av.parent is not av:  # a root is its own parent
            yield f'  {_av_id(prefix, av)} -> {_av_id(prefix, av.parent)} [style="dashed", label="parent"];'
        if av.root is not None and av.root is not av:
            yield f'  {_av_id(prefix, av)} -> {_av_id(prefix, av.root)} [style="dotted", label="root"];'


def _link_lines(k: KernelCore, prefix: str) -> Iterator[str]:
    for mm in k.mms.values():
        if not mm.alive:
            continue
        for vma in mm.vmas:
            if vma.anon_vma is not None:
                yield f'  {_vma_id(prefix, vma)} -> {_av_id(prefix, vma.anon_vma)} [style="bold", label="anon_vma"];'
            for n, av in enumerate(vma.chain_anon_vmas()):
                yield f'  {_vma_id(prefix, vma)} -> {_av_id(prefix, av)} [label="{n}", color="gray30"];'


def _page_lines(k: KernelCore, prefix: str, names: frozenset[str]) -> Iterator[str]:
    pages: dict[int, Page] = {}
    for mm in k.mms.values():
        if not mm.alive:
            continue
        for addr, pte in sorted(mm.ptes.items()):
            page = pte.page
            if page is None or pte.swap is not None:
                continue
            vma = next((v for v in mm.vmas if v.vm_start <= addr < v.vm_end), None)
            if vma is not None:
                mode = "w" if pte.writable else "ro"
                edge = f'[label="pte {addr} {mode}", color="darkgreen"]'
                yield f"  {_vma_id(prefix, vma)} -> {_page_id(prefix, page)} {edge};"
            pages.setdefault(page.ident, page)
    for page in pages.values():
        label = f"{page.name}\nindex {page.index} mapcount {page.mapcount}"
        yield f"  {_page_id(prefix, page)} [shape=note, label={_quote(label)}{_extra(page.freed, page.name in names)}];"
        if page.mapping is not None:
            yield f'  {_page_id(prefix, page)} -> {_av_id(prefix, page.mapping)} [label="mapping", color="darkgreen"];'


def state_lines(k: KernelCore, prefix: str = "", highlight: Collection[str] = ()) -> list[str]:
    """The DOT statements of one state; ``prefix`` keeps two states apart in one graph."""
    names = frozenset(n.removesuffix("(freed)") for n in highlight)
    avs = _anon_vmas(k)
    return [
        *_vma_lines(k, prefix, names),
        *_av_lines(k, prefix, avs, names),
        *_link_lines(k, prefix),
        *_page_lines(k, prefix, names),
    ]


def legend_lines(k: KernelCore) -> list[str]:
    counters = ", ".join(key for key in av_fields(k, AnonVma(0)) if key not in ("root", "parent")) or "none"
    rows = [*LEGEND, ("counters here", counters)]
    text = "\\l".join(f"{what}: {meaning}" for what, meaning in rows) + "\\l"
    return [
        '  subgraph "cluster_legend" {',
        '    label="legend"; style="rounded"; color="gray70";',
        f'    "legend" [shape=plaintext, fontsize=10, label="{text}"];',
        "  }",
    ]


def dot(title: str, states: list[tuple[str, KernelCore, Collection[str]]]) -> str:
    """A digraph of one or more states (``(prefix, kernel, highlighted names)``), with a legend."""
    lines = [
        "digraph rmap {",
        f"  label={_quote(title)}; labelloc=t; rankdir=LR; fontname=monospace;",
        "  node [fontname=monospace, fontsize=11]; edge [fontname=monospace, fontsize=9];",
    ]
    for prefix, k, highlight in states:
        if prefix:
            lines.append(f"  subgraph {_quote(f'cluster_{prefix}')} {{ label={_quote(prefix.rstrip(':'))};")
        lines.extend(state_lines(k, prefix, highlight))
        if prefix:
            lines.append("  }")
    lines.extend(legend_lines(states[0][1]))
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(dot_text: str, timeout: float = 60.0) -> bytes:
    """``dot_text`` laid out by Graphviz as SVG."""
    exe = which("dot")
    if exe is None:
        raise GraphvizMissing(f"Graphviz's dot is not installed (it draws the SVG): {INSTALL}")
    done = subprocess.run([exe, "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise GraphvizMissing(f"dot failed: {done.stderr.decode(errors='replace').strip()[:200]}")
    return done.stdout
