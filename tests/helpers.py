"""Small helpers shared by the rmap model tests (in the style of tools/testing/vma).

Steps are written as short tuples: ``("mmap", pid, start, pages, prot)``, ``("write", pid, addr)``,
``("mremap", pid, start, pages, new_start, new_pages, ("maymove", "fixed"))``, ``("fork", pid)``...
the fields in the order of the op classes in :mod:`rmapfuzz.ops`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from rmapfuzz import ops
from rmapfuzz.layout import diagram, layout
from rmapfuzz.model.objects import Page, Pte, Vma
from rmapfuzz.model.syscalls import SyscallMixin
from rmapfuzz.probe import Probe
from rmapfuzz.replay import Verdict, replay

KERNELS: tuple[str, ...] = ("2.6.34-rc3", "2.6.34-rc3+hannes-v2", "2.6.34")
RC3, HANNES, FINAL = KERNELS

StepTuple = tuple[Any, ...]


def step(t: StepTuple | ops.Op) -> ops.Op:
    """One op from a short tuple: the op name, then the fields in declaration order."""
    if not isinstance(t, tuple):
        return t
    name, *args = t
    cls = ops.OP_CLASSES[name]
    if cls is ops.Mremap and len(args) == 6:
        args[5] = tuple(args[5])
    if cls is ops.Mmap and len(args) == 5:
        args[4] = tuple(args[4])
    op: ops.Op = cls(*args)
    return op


def steps(*ts: StepTuple | ops.Op) -> list[ops.Op]:
    return [step(t) for t in ts]


def run(
    kernel: str,
    *ts: StepTuple | ops.Op,
    window: int = 8,
    invariants: Iterable[str] | None = None,
    stop_at_violation: bool = True,
) -> Verdict:
    """Replay the steps on a fresh ``kernel``; see :func:`rmapfuzz.replay.replay`.

    The steps go in as op-language JSON, so the parser checks each one is part of the language.
    """
    objs = [ops.to_json(op) for op in steps(*ts)]
    return replay(objs, kernel, window, invariants, stop_at_violation, coverage=True)


def run_clean(kernel: str, *ts: StepTuple | ops.Op, window: int = 8) -> SyscallMixin:
    """Replay and insist every step succeeded and no invariant broke; the final kernel."""
    v = run(kernel, *ts, window=window)
    assert v.violation is None, f"{v.violation}"
    assert v.results == ["ok"] * len(ts), v.results
    return v.final


def vmas(k: SyscallMixin, pid: int = 0) -> list[Vma]:
    return list(k.mms[pid].vmas)


def vma_at(k: SyscallMixin, pid: int, addr: int) -> Vma:
    vma = k.find_vma(k.mms[pid], addr)
    assert vma is not None and vma.vm_start <= addr, f"no VMA at P{pid}:{addr}"
    return vma


def pte(k: SyscallMixin, pid: int, addr: int) -> Pte:
    return k.mms[pid].ptes[addr]


def page_at(k: SyscallMixin, pid: int, addr: int) -> Page:
    p = k.mms[pid].ptes[addr].page
    assert p is not None, f"P{pid}:{addr} maps the zero page or a swap entry"
    return p


def chain(vma: Vma) -> list[str]:
    return [av.name for av in vma.chain_anon_vmas()]


def shape(k: SyscallMixin, pid: int = 0) -> tuple[str, list[str]]:
    """``(diagram, layout)`` of one process, the pair most tests assert on."""
    return diagram(k, pid), layout(k, pid)


def walk(k: SyscallMixin, page: Page) -> list[tuple[str, int]]:
    """The (VMA name, address) pairs an rmap walk of ``page`` finds."""
    return [(vma.name, addr) for vma, addr in k.rmap_walk_anon(page)]


def hits(k: SyscallMixin) -> Counter[str]:
    """The coverage points the steps :func:`run` replayed on ``k`` reached, with their counts."""
    assert isinstance(k.trace, Probe) and k.trace.coverage is not None, "replayed without coverage"
    return k.trace.coverage


MERGING = (
    "vma_merge: case",
    "vma_merge_existing_range: prev",
    "vma_merge_existing_range: next",
    "vma_merge_new_range:",
)


def merges(k: SyscallMixin) -> list[str]:
    """The merges the steps made: every vma_merge() case (or 6.x merge shape) reached, in order."""
    return [point for point, n in hits(k).items() if point.startswith(MERGING) for _ in range(n)]


def cow(k: SyscallMixin) -> tuple[int, int]:
    """(write faults that copied, write faults that reused the page) in do_wp_page()."""
    h = hits(k)
    return h["do_wp_page: copy the zero page"] + h["do_wp_page: copy a shared page"], h["do_wp_page: reuse the page"]


def describe_steps(ts: Sequence[ops.Op]) -> str:
    return "; ".join(ops.describe(op) for op in ts)


# ---- op-language steps as reproducer files write them (dicts), for the live-oracle tests ----

Step = dict[str, Any]


def mm(pid: int, start: int, pages: int, prot: str = "rw") -> Step:
    return {"op": "mmap", "pid": pid, "start": start, "pages": pages, "prot": prot}


def mp(pid: int, start: int, pages: int, prot: str) -> Step:
    return {"op": "mprotect", "pid": pid, "start": start, "pages": pages, "prot": prot}


def wr(pid: int, addr: int) -> Step:
    return {"op": "write", "pid": pid, "addr": addr}


def rd(pid: int, addr: int) -> Step:
    return {"op": "read", "pid": pid, "addr": addr}


def mv(pid: int, start: int, pages: int, new_start: int) -> Step:
    """A same-size MREMAP_MAYMOVE|MREMAP_FIXED move."""
    return {
        "op": "mremap",
        "pid": pid,
        "start": start,
        "pages": pages,
        "new_start": new_start,
        "new_pages": pages,
        "flags": ["maymove", "fixed"],
    }


def fork(pid: int) -> Step:
    return {"op": "fork", "pid": pid}


def ex(pid: int) -> Step:
    return {"op": "exit", "pid": pid}


# A valid strategy file's fields, one TOML line each (the tests of bad strategy files change one).
STRATEGY_FIELDS: dict[str, str] = {
    "window": "window = 8",
    "max_processes": "max_processes = 3",
    "steps": "steps = 20",
    "prots": 'prots = ["rw"]',
    "advices": 'advices = ["pageout"]',
    "mremap_flags": 'mremap_flags = [["maymove", "fixed"]]',
}
