"""The model's predictions at the oracle's levels, and their comparison with what the kernel showed.

Levels (each a function of a model kernel, and of plain data for the live kernel):

* **result** -- the step's answer (``ok``, an errno name, ``SEGV``, ``ESRCH``);
* **L0** -- per live process, the window's VMAs as ``(start, end, prot)``: merging must match
  exactly (``VM_ACCOUNT``, ``vm_pgoff`` and anon_vma identity are hidden state the model carries);
* **L1** -- per VMA, the merge-relevant VmFlags (``ac``, ``dc``, ``wf``; ``nr``, ``hg``, ``nh`` must
  be absent) and smaps ``Anonymous``;
* **L2** -- per (pid, page): not present, the zero page, or a physical page, compared as classes
  (which cells share one page), not as PFNs.

When the machine has no swap device ``MADV_PAGEOUT`` cannot push anon pages out, while the model
swaps them: cells the model holds as swap entries are then left out of L2, and L1's ``Anonymous``
may count them (``swap_tolerant``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from rmapfuzz.model.core import KernelCore
from rmapfuzz.model.objects import VM_ACCOUNT, VM_DONTCOPY, VM_WIPEONFORK, flags_to_prot
from rmapfuzz.oracle.observe import COMPARED_FLAGS, Cell, KVma, SmapsVma, canonical_classes

PAGE_KB = 4


@attrs.frozen
class Divergence:
    """The first place kernel and model disagree: ``step`` is the 0-based step index (after which
    the observation was taken), ``level`` one of ``result``, ``L0``, ``L1``, ``L2``."""

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
    """``"-"`` / ``"S"`` / ``"0"`` or the model's Page object (compared by identity)."""
    out: dict[Cell, object] = {}
    for pid in model_live(k):
        ptes = k.mms[pid].ptes
        for n in range(pages):
            pte = ptes.get(n)
            if pte is None:
                out[(pid, n)] = "-"
            elif pte.swap is not None:
                out[(pid, n)] = "S"
            elif pte.page is None:
                out[(pid, n)] = "0"
            else:
                out[(pid, n)] = ("page", id(pte.page))
    return out


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
            names = {
                name
                for bit, name in ((VM_ACCOUNT, "ac"), (VM_DONTCOPY, "dc"), (VM_WIPEONFORK, "wf"))
                if v.vm_flags & bit
            }
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
    skip = {c for c, v in model.items() if v == "S"} if swap_tolerant else set()
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
