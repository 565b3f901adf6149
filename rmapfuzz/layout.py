"""Plain-text views of a model kernel's state, for tests, messages and traces.

``diagram(k, pid)`` draws one process's window a character per page, in the style of the
kernel's tools/testing/vma harness: each VMA gets a letter (A, B, ... by address), a hole is ``.``::

    AAB.CC..        A = [0,2)  B = [2,3)  C = [4,6)

``vma_line`` and ``describe_state`` give the anon_vma side: anon_vma, chain, flags, pgoff, pages.
"""

from __future__ import annotations

from string import ascii_uppercase

from rmapfuzz.model.core import KernelCore
from rmapfuzz.model.objects import Mm, Pte, Vma, describe_flags


def diagram(k: KernelCore, pid: int) -> str:
    """One character per window page: the VMA's letter, or ``.`` for a hole."""
    cells = ["."] * k.window
    mm = k.mms[pid]
    for i, vma in enumerate(mm.vmas):
        for page in range(max(vma.vm_start, 0), min(vma.vm_end, k.window)):
            cells[page] = ascii_uppercase[i % 26]
    return "".join(cells)


def chain_text(vma: Vma) -> str:
    return "[" + ", ".join(av.name for av in vma.chain_anon_vmas()) + "]"


def vma_line(vma: Vma) -> str:
    """``[0,2) rw- ac pgoff=0 anon=AV1 chain=[AV1]``"""
    anon = vma.anon_vma.name if vma.anon_vma is not None else "-"
    flags = describe_flags(vma.vm_flags)
    return f"[{vma.vm_start},{vma.vm_end}) {flags} pgoff={vma.vm_pgoff} anon={anon} chain={chain_text(vma)}"


def layout(k: KernelCore, pid: int) -> list[str]:
    """Every VMA of one process, by address, as :func:`vma_line` strings."""
    return [vma_line(v) for v in k.mms[pid].vmas]


def pte_text(addr: int, pte: Pte) -> str:
    """``2:page3->AV1@2(ro)``, ``0:zero(ro)`` or ``4:<swap1>``"""
    if pte.swap is not None:
        return f"{addr}:<{pte.swap!r}>"
    mode = "w" if pte.writable else "ro"
    page = pte.page
    if page is None:
        return f"{addr}:zero({mode})"
    mapping = page.mapping.name if page.mapping is not None else "-"
    return f"{addr}:{page.name}->{mapping}@{page.index}({mode})"


def ptes_line(mm: Mm) -> str:
    return " ".join(pte_text(addr, mm.ptes[addr]) for addr in sorted(mm.ptes))


def describe_state(k: KernelCore) -> str:
    """Every live process: its diagram, VMAs and ptes."""
    lines = []
    for pid, mm in sorted(k.mms.items()):
        if not mm.alive:
            continue
        lines.append(f"P{pid} {diagram(k, pid)}")
        lines.extend(f"  {ascii_uppercase[i % 26]} {vma_line(v)}" for i, v in enumerate(mm.vmas))
        if mm.ptes:
            lines.append(f"  ptes {ptes_line(mm)}")
    return "\n".join(lines)
