"""Rich views of a model kernel's state and of a reproducer, step by step.

``step_tree(k)`` is a :class:`rich.tree.Tree` of every live process (VMAs, then ptes and pages)
and every anon_vma; ``state_json(k)`` is the same as data.  ``trace`` replays a reproducer one
step at a time (with the same :class:`rmapfuzz.replay.Runner` as ``replay``) and keeps a snapshot
after every step; ``print_reproducer_steps`` prints it, the violating step highlighted with the
objects the broken invariant names.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from string import ascii_uppercase
from typing import Any

import attrs
from rich.columns import Columns
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text
from rich.tree import Tree

from rmapfuzz import ops
from rmapfuzz.corpus import Reproducer
from rmapfuzz.invariants import Violation
from rmapfuzz.layout import diagram
from rmapfuzz.model.core import KernelCore
from rmapfuzz.model.objects import AnonVma, Pte, Vma, describe_flags
from rmapfuzz.pair import LEVELS, Difference, PairRunner
from rmapfuzz.replay import Runner, Verdict

LEGEND = (
    "legend: a VMA is [start,end) in pages, its prot (rw-) and the VmFlags that decide merges (ac VM_ACCOUNT, "
    "dc VM_DONTCOPY, wf VM_WIPEONFORK), pgoff, anon= its anon_vma, chain= its anon_vma_chain oldest first; "
    "a pte is page -> the page's anon_vma, its index and mapcount, (w) writable or (ro); <swap> a swap entry"
)
HIGHLIGHT = "bold reverse red"
SHOWN_STATES = 50  # a long reproducer's state trees are drawn for its last steps only
FREED = "red"
DIM = "dim"


def _base(name: str) -> str:
    return name.removesuffix("(freed)")


def _av_name(av: AnonVma) -> str:
    return f"AV{av.ident}"


def _names(highlight: Iterable[str]) -> frozenset[str]:
    return frozenset(_base(n) for n in highlight)


def _av_text(av: AnonVma | None, hl: frozenset[str]) -> Text:
    if av is None:
        return Text("-", style=DIM)
    style = HIGHLIGHT if _av_name(av) in hl else (FREED if av.freed else "cyan")
    return Text(av.name, style=style)


def _vma_text(letter: str, vma: Vma, hl: frozenset[str]) -> Text:
    text = Text.assemble(
        (f"{letter} ", "bold"),
        (f"[{vma.vm_start},{vma.vm_end})", HIGHLIGHT if _base(vma.name) in hl else "bold"),
        f" {describe_flags(vma.vm_flags)} pgoff={vma.vm_pgoff} anon=",
    )
    text.append_text(_av_text(vma.anon_vma, hl))
    text.append(" chain=[")
    for i, av in enumerate(vma.chain_anon_vmas()):
        if i:
            text.append(", ")
        text.append_text(_av_text(av, hl))
    text.append("]")
    return text


def _pte_text(addr: int, pte: Pte, hl: frozenset[str]) -> Text:
    if pte.swap is not None:
        return Text(f"{addr}: <{pte.swap!r}>", style=DIM)
    mode = "w" if pte.writable else "ro"
    page = pte.page
    if page is None:
        return Text(f"{addr}: zero page ({mode})", style=DIM)
    text = Text.assemble(f"{addr}: ", (page.name, HIGHLIGHT if page.name in hl else "green"), " -> ")
    text.append_text(_av_text(page.mapping, hl))
    text.append(f" index={page.index} mapcount={page.mapcount} ({mode})")
    if page.freed:
        text.append(" freed", style=FREED)
    return text


def step_tree(k: KernelCore, highlight: Collection[str] = (), title: str = "state") -> Tree:
    """Every live process (VMAs, then ptes) and every anon_vma; objects named in ``highlight`` stand out.

    ``highlight`` holds object names as a :class:`~rmapfuzz.invariants.Violation` gives them:
    ``"AV1"``, ``"P1:[0,3)"``, ``"page3"`` (a ``(freed)`` suffix is ignored).
    """
    hl = _names(highlight)
    tree = Tree(Text(title, style="bold"))
    for pid, mm in sorted(k.mms.items()):
        if not mm.alive:
            continue
        proc = tree.add(Text.assemble((f"P{pid}", "bold magenta"), "  ", diagram(k, pid)))
        if not mm.vmas:
            proc.add(Text("no VMAs", style=DIM))
        for i, vma in enumerate(mm.vmas):
            proc.add(_vma_text(ascii_uppercase[i % 26], vma, hl))
        if mm.ptes:
            ptes = proc.add(Text("ptes", style="bold"))
            for addr in sorted(mm.ptes):
                ptes.add(_pte_text(addr, mm.ptes[addr], hl))
    if k.anon_vmas:
        avs = tree.add(Text("anon_vmas", style="bold"))
        for av in k.anon_vmas:
            text = _av_text(av, hl)
            linked = [avc.vma.name for avc in av.head]
            text.append(" links " + (", ".join(linked) if linked else "nothing"))
            fields = av_fields(k, av)
            if fields:
                text.append("  " + " ".join(f"{key} {value}" for key, value in fields.items()), style=DIM)
            avs.add(text)
    return tree


def av_fields(k: KernelCore, av: AnonVma) -> dict[str, str | int]:
    """The anon_vma's fields that this generation has (docs/model.md, "Generations"): root and
    parent (2.6.35+), refcount, degree (3.19-rc4 to 6.0-rc3), num_children and num_active_vmas (6.0+)."""
    f = k.features
    out: dict[str, str | int] = {}
    if f.refcount:
        out["root"] = _av_name(av.root) if av.root is not None else "-"
        out["parent"] = _av_name(av.parent) if av.parent is not None else "-"
        out["refcount"] = av.refcount
    if f.degree:
        out["degree"] = av.degree
    if f.fork_counters:
        out["num_children"] = av.num_children
        out["num_active_vmas"] = av.num_active_vmas
    return out


def state_json(k: KernelCore) -> dict[str, Any]:
    """The state as data: live processes with VMAs and ptes, and every anon_vma with its links."""
    processes = []
    for pid, mm in sorted(k.mms.items()):
        if not mm.alive:
            continue
        vmas = [
            {
                "name": vma.name,
                "start": vma.vm_start,
                "end": vma.vm_end,
                "flags": describe_flags(vma.vm_flags),
                "pgoff": vma.vm_pgoff,
                "anon_vma": None if vma.anon_vma is None else _av_name(vma.anon_vma),
                "chain": [_av_name(av) for av in vma.chain_anon_vmas()],
            }
            for vma in mm.vmas
        ]
        ptes = []
        for addr in sorted(mm.ptes):
            pte = mm.ptes[addr]
            page = pte.page
            ptes.append(
                {
                    "addr": addr,
                    "swap": None if pte.swap is None else repr(pte.swap),
                    "page": None if page is None or pte.swap is not None else page.name,
                    "anon_vma": None if page is None or page.mapping is None else _av_name(page.mapping),
                    "index": None if page is None else page.index,
                    "writable": pte.writable,
                }
            )
        processes.append({"pid": pid, "diagram": diagram(k, pid), "vmas": vmas, "ptes": ptes})
    anon_vmas = [
        {"name": _av_name(av), "freed": av.freed, "vmas": [avc.vma.name for avc in av.head], **av_fields(k, av)}
        for av in k.anon_vmas
    ]
    return {"processes": processes, "anon_vmas": anon_vmas}


@attrs.frozen
class TraceStep:
    """One replayed step: the op, its result, what it broke, and snapshots of the state after it."""

    index: int
    op: ops.Op
    result: str
    violations: list[Violation]
    state: dict[str, Any]
    tree: Tree | None  # None: not drawn (a step long before the end of a long reproducer)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "op": ops.to_json(self.op),
            "text": ops.describe(self.op),
            "result": self.result,
            "violations": [v.to_json() for v in self.violations],
            "state": self.state,
        }


def trace(
    steps: Iterable[ops.Op],
    kernel: str,
    window: int = 8,
    invariants: Iterable[str] | None = None,
    stop_at_violation: bool = True,
    trees_from: int = 0,
) -> list[TraceStep]:
    """Replay step by step and snapshot the state after each step (data, and from step
    ``trees_from`` on, or at a violation, the tree)."""
    runner = Runner(kernel, window, invariants)
    out = []
    for i, op in enumerate(steps):
        result, found = runner.step(op)
        names = found[0].objects if found else ()
        tree = step_tree(runner.kernel, names, f"after step {i}") if i >= trees_from or found else None
        out.append(TraceStep(i, op, result, found, state_json(runner.kernel), tree))
        if found and stop_at_violation:
            break
    return out


def _vma_rows(state: dict[str, Any]) -> dict[str, str]:
    return {
        f"P{p['pid']} [{v['start']},{v['end']})": f"{v['flags']} pgoff={v['pgoff']} anon={v['anon_vma'] or '-'} "
        f"chain=[{','.join(v['chain'])}]"
        for p in state["processes"]
        for v in p["vmas"]
    }


def _pte_rows(state: dict[str, Any]) -> dict[str, str]:
    return {
        f"P{p['pid']} pte {t['addr']}": (
            f"swap {t['swap']}" if t["swap"] else f"{t['page'] or 'zero'}->{t['anon_vma'] or '-'}@{t['index']}"
        )
        + (" w" if t["writable"] else "")
        for p in state["processes"]
        for t in p["ptes"]
    }


def _av_rows(state: dict[str, Any]) -> dict[str, str]:
    def row(av: dict[str, Any]) -> str:
        fields = " ".join(f"{k}={v}" for k, v in av.items() if k not in ("name", "freed", "vmas"))
        links = f"links {','.join(av['vmas'])}" if av["vmas"] else "links nothing"
        return ("freed, " if av["freed"] else "") + links + (f" {fields}" if fields else "")

    return {av["name"]: row(av) for av in state["anon_vmas"]}


def state_changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """What a step changed, from the states before and after it (``state_json``): VMAs, ptes and
    anon_vmas that came (+), went (-) or changed (~)."""
    empty: dict[str, Any] = {"processes": [], "anon_vmas": []}
    old = before or empty
    out: list[str] = []
    for rows in (_vma_rows, _pte_rows, _av_rows):
        a, b = rows(old), rows(after)
        out += [f"-{key}" for key in a if key not in b]
        out += [f"+{key} {b[key]}" for key in b if key not in a]
        out += [f"~{key} {b[key]}" for key in b if key in a and a[key] != b[key]]
    return out


def _header(i: int, op: ops.Op, result: str, bad: bool) -> Text:
    return Text.assemble(
        (f"step {i}", "bold red" if bad else "bold"),
        "  ",
        (ops.describe(op), "bold"),
        "  -> ",
        (result, "green" if result == "ok" else "yellow"),
    )


def print_reproducer_steps(
    console: Console,
    rep: Reproducer,
    verdict: Verdict | None = None,
    *,
    kernel: str | None = None,
    invariants: Iterable[str] | None = None,
    states: bool = True,
) -> list[TraceStep]:
    """Print ``rep`` step by step: each op, its result and (``states``) the tree after it.

    The steps run on ``kernel`` (default: the verdict's kernel, else the reproducer's).  The
    violating step is marked and its tree highlights the objects the invariant names.  If a
    ``verdict`` is given (e.g. the fuzzer's), the replay stops where it stopped.  Returns the trace.
    """
    kernel = kernel or (verdict.kernel if verdict is not None else rep.kernel)
    steps = rep.steps if verdict is None else rep.steps[: len(verdict.results)]
    where = f" ({rep.path})" if rep.path is not None else ""
    console.print(
        Text.assemble(("reproducer", "bold"), where, f": {len(rep.steps)} steps on {kernel}, window {rep.window}")
    )
    if rep.violation is not None:
        recorded = f"recorded: {rep.invariant} at step {rep.violation.get('step')} on {rep.kernel}"
        console.print(Text(recorded, style=DIM))
    trees_from = max(len(steps) - SHOWN_STATES, 0) if states else len(steps)
    if states:
        console.print(Text(LEGEND, style=DIM))
    if states and trees_from:
        console.print(Text(f"states drawn for the last {SHOWN_STATES} steps (show --json has every step's)", style=DIM))
    result = trace(steps, kernel, rep.window, invariants, trees_from=trees_from)
    before: dict[str, Any] | None = None
    for step in result:
        console.print(_header(step.index, step.op, step.result, bool(step.violations)))
        changes = state_changes(before, step.state)
        before = step.state
        if changes:
            console.print(Text("  changed: " + "; ".join(changes), style=DIM))
        if states and step.tree is not None:
            console.print(step.tree, soft_wrap=False)
        if step.violations:
            first = step.violations[0]
            lines = [Text(first.message), Text("objects: " + ", ".join(first.objects), style=DIM)]
            others = sorted({v.invariant for v in step.violations[1:]} - {first.invariant})
            if others:
                lines.append(Text("also broken: " + ", ".join(others), style=DIM))
            title = Text(f"{first.invariant} broken at step {step.index}")
            console.print(Panel(Group(*lines), title=title, border_style="red"), soft_wrap=False)
    if not any(step.violations for step in result):
        console.print(Text(f"clean on {kernel}", style="bold green"))
    return result


__all__ = ["TraceStep", "print_reproducer_steps", "state_json", "step_tree", "trace"]


# ---- two models side by side (rmapfuzz diff) ----


@attrs.frozen
class PairStep:
    index: int
    op: ops.Op
    results: tuple[str, str]  # on A, on B
    difference: Difference | None
    states: tuple[dict[str, Any], dict[str, Any]]
    trees: tuple[Tree, Tree]

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "op": ops.to_json(self.op),
            "results": list(self.results),
            "difference": None if self.difference is None else self.difference.to_json(),
            "states": list(self.states),
        }


def pair_trace(
    steps: Iterable[ops.Op], a: str, b: str, window: int = 8, levels: Sequence[str] = LEVELS
) -> list[PairStep]:
    """Both models step by step, up to the first step after which they differ."""
    runner = PairRunner(a, b, window, levels=levels)
    out = []
    for i, op in enumerate(steps):
        _, found = runner.step(op)
        diff = found[0] if found and isinstance(found[0], Difference) else None
        kernels = (runner.a.kernel, runner.b.kernel)
        trees = (
            step_tree(kernels[0], (), f"A: {a} after step {i}"),
            step_tree(kernels[1], (), f"B: {b} after step {i}"),
        )
        out.append(PairStep(i, op, runner.results, diff, (state_json(kernels[0]), state_json(kernels[1])), trees))
        if found:
            break
    return out


def difference_panel(diff: Difference, a: str, b: str) -> Panel:
    """Every level that differs at the step, A's view above B's."""
    lines: list[Text] = []
    for d in diff.found:
        lines.append(Text.assemble((d.level, "bold"), f": {d.message}"))
        lines.append(Text.assemble(("  A ", DIM), f"{a}: {d.a}"))
        lines.append(Text.assemble(("  B ", DIM), f"{b}: {d.b}"))
    title = Text(f"{diff.level} difference at step {diff.step}")
    return Panel(Group(*lines), title=title, border_style="red")


def print_difference_steps(
    console: Console,
    rep: Reproducer,
    *,
    against: str | None = None,
    levels: Sequence[str] = LEVELS,
    states: bool = True,
) -> list[PairStep]:
    """Print a reproducer run on its kernel and ``against`` (default: the entry's own): each step's
    result on both, (``states``) both trees side by side, and the first difference."""
    b = against or rep.against or rep.kernel
    where = f" ({rep.path})" if rep.path is not None else ""
    console.print(
        Text.assemble(
            ("reproducer", "bold"), where, f": {len(rep.steps)} steps on {rep.kernel} against {b}, window {rep.window}"
        )
    )
    if rep.kind == "difference" and rep.violation is not None:
        recorded = f"recorded: a {rep.violation.get('level')} difference at step {rep.failing_step}"
        console.print(Text(recorded, style=DIM))
    result = pair_trace(rep.steps, rep.kernel, b, rep.window, levels)
    for step in result:
        bad = step.difference is not None
        ra, rb = step.results
        console.print(
            Text.assemble(
                (f"step {step.index}", "bold red" if bad else "bold"), "  ", (ops.describe(step.op), "bold"),
                "  -> A ", (ra, "green" if ra == "ok" else "yellow"), ", B ", (rb, "green" if rb == "ok" else "yellow"),
            )
        )  # fmt: skip
        if states or bad:
            console.print(Columns(list(step.trees), padding=(0, 4)), soft_wrap=False)
        if step.difference is not None:
            console.print(difference_panel(step.difference, rep.kernel, b), soft_wrap=False)
    if not any(step.difference for step in result):
        console.print(Text(f"no difference: {rep.kernel} and {b} agree at every step", style="bold green"))
    return result
