"""How many deliberate semantic changes to the ``current`` model the live oracle notices.

    sudo .venv/bin/python -m bench.oracle_mutants [--budget 60] [--seed N] [--strategy default] [--only NAME,...]

Each mutant is one small change of what the model does (where a new page goes, whether a COW
write reuses or copies, where a swapped-in page goes, a merge rule, an errno, what fork shares),
written as a wrapper around one model method or a feature flag, and applied to the ``current``
model class in a fresh subprocess.  That subprocess runs ``oracle.fuzz`` (the differential
campaign at the oracle's default levels, L0-L4, on the host kernel) for ``--budget`` seconds; a
mutant is *detected* when the campaign reports a divergence, and the shrunk reproducer's length
is recorded.  The parent sets up the oracle's own swap device once for all of them (the
children use it as it is).  Needs root (L2-L4) and the zram device.

Prints one line per mutant and the totals; ``--json`` prints one object.  Exit 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs

from bench import fresh_seed

Patch = Callable[[type], None]


def _wrap(cls: type, name: str, make: Callable[[Any], Any]) -> None:
    setattr(cls, name, make(getattr(cls, name)))


# ---- the mutants (each a patch of the model class) ----


def new_page_root(cls: type) -> None:
    def make(orig: Any) -> Any:
        def f(self: Any, page: Any, vma: Any, addr: int) -> None:
            orig(self, page, vma, addr)
            if page.mapping is not None and page.mapping.root is not None:
                page.mapping = page.mapping.root

        return f

    _wrap(cls, "page_add_new_anon_rmap", make)


def new_page_parent(cls: type) -> None:
    def make(orig: Any) -> Any:
        def f(self: Any, page: Any, vma: Any, addr: int) -> None:
            orig(self, page, vma, addr)
            if page.mapping is not None and page.mapping.parent is not None:
                page.mapping = page.mapping.parent

        return f

    _wrap(cls, "page_add_new_anon_rmap", make)


def index_plus_one(cls: type) -> None:
    def make(orig: Any) -> Any:
        def f(self: Any, page: Any, vma: Any, addr: int, exclusive: bool) -> None:
            orig(self, page, vma, addr, exclusive)
            page.index += 1

        return f

    _wrap(cls, "page_set_anon_rmap", make)


def cow_always_copy(cls: type) -> None:
    cls.reuse_swap_page = lambda self, page: False  # type: ignore[attr-defined]


def cow_reuse_shared(cls: type) -> None:
    def make(orig: Any) -> Any:
        return lambda self, page: orig(self, page) or page.mapcount == 2

    _wrap(cls, "reuse_swap_page", make)


def cow_reuse_no_move(cls: type) -> None:
    cls.page_move_anon_rmap = lambda self, page, vma, addr: None  # type: ignore[attr-defined]


def swapin_always_swapcache(cls: type) -> None:
    cls.swap_synchronous = False  # type: ignore[attr-defined]


def swapin_remap_resets(cls: type) -> None:
    def make(orig: Any) -> Any:
        def f(self: Any, page: Any, vma: Any, addr: int, exclusive: bool = False) -> None:
            orig(self, page, vma, addr, exclusive)
            if page.mapcount == 1:
                self.page_set_anon_rmap(page, vma, addr, exclusive)

        return f

    _wrap(cls, "page_add_anon_rmap", make)


def swapin_sole_not_exclusive(cls: type) -> None:
    """The fresh page of a sole swap entry goes to the root, as a shared one would."""

    def make(orig: Any) -> Any:
        def f(self: Any, vma: Any, addr: int, pte: Any, write: bool) -> str:
            result: str = orig(self, vma, addr, pte, write)
            new = vma.mm.ptes.get(addr)
            if new is not None and new.page is not None and new.page.mapping is not None and not write:
                new.page.mapping = new.page.mapping.root or new.page.mapping
            return result

        return f

    _wrap(cls, "do_swap_page", make)


def pageout_shared(cls: type) -> None:
    cls.features = attrs.evolve(cls.features, pageout_skips_shared=False)  # type: ignore[attr-defined]


def pageout_noop(cls: type) -> None:
    cls.madvise_pageout = lambda self, vma, start, end: (None, vma)  # type: ignore[attr-defined]


def merge_any_anon_vma(cls: type) -> None:
    cls.anon_vmas_compatible = lambda self, a, b: True  # type: ignore[attr-defined]


def merge_never_new(cls: type) -> None:
    cls.vma_merge_new_range = lambda self, vmg: None  # type: ignore[attr-defined]


def errno_madvise_hole(cls: type) -> None:
    def make(orig: Any) -> Any:
        def f(self: Any, *args: Any) -> str:
            result: str = orig(self, *args)
            return "ok" if result == "ENOMEM" else result

        return f

    _wrap(cls, "sys_madvise", make)


def errno_mprotect_hole(cls: type) -> None:
    def make(orig: Any) -> Any:
        def f(self: Any, *args: Any) -> str:
            result: str = orig(self, *args)
            return "ok" if result == "ENOMEM" else result

        return f

    _wrap(cls, "sys_mprotect", make)


def errno_wipeonfork_einval(cls: type) -> None:
    def make(orig: Any) -> Any:
        return lambda self, advice: advice != "wipeonfork" and orig(self, advice)

    _wrap(cls, "madvise_behavior_valid", make)


def fork_dontcopy_ignored(cls: type) -> None:
    from rmapfuzz.model.objects import VM_DONTCOPY

    def make(orig: Any) -> Any:
        def f(self: Any, mm: Any, oldmm: Any) -> Any:
            marked = [v for v in oldmm.vmas if v.vm_flags & VM_DONTCOPY]
            for v in marked:
                v.vm_flags &= ~VM_DONTCOPY
            try:
                return orig(self, mm, oldmm)
            finally:
                for v in marked:
                    v.vm_flags |= VM_DONTCOPY

        return f

    _wrap(cls, "dup_mmap", make)


def fork_parent_stays_writable(cls: type) -> None:
    def make(orig: Any) -> Any:
        def f(self: Any, dst: Any, src: Any) -> None:
            orig(self, dst, src)
            for addr in range(src.vm_start, src.vm_end):
                pte = src.mm.ptes.get(addr)
                if pte is not None and pte.page is not None:
                    pte.writable = True

        return f

    _wrap(cls, "copy_page_range", make)


def fork_drops_zero_ptes(cls: type) -> None:
    def make(orig: Any) -> Any:
        def f(self: Any, dst: Any, src: Any) -> None:
            orig(self, dst, src)
            for addr in range(dst.vm_start, dst.vm_end):
                pte = dst.mm.ptes.get(addr)
                if pte is not None and pte.swap is None and pte.page is None:
                    del dst.mm.ptes[addr]

        return f

    _wrap(cls, "copy_page_range", make)


def fork_swap_not_shared(cls: type) -> None:
    """A swap entry shared by fork gets a slot of its own in the child."""

    def make(orig: Any) -> Any:
        def f(self: Any, dst: Any, src: Any) -> None:
            orig(self, dst, src)
            for addr in range(dst.vm_start, dst.vm_end):
                pte = dst.mm.ptes.get(addr)
                if pte is not None and pte.swap is not None:
                    pte.swap.count -= 1
                    slot = self.alloc_swap_slot()
                    slot.count = 1
                    pte.swap = slot

        return f

    _wrap(cls, "copy_page_range", make)


def read_fault_allocates(cls: type) -> None:
    def make(orig: Any) -> Any:
        return lambda self, vma, addr, write: orig(self, vma, addr, True)

    _wrap(cls, "do_anonymous_page", make)


def dontneed_noop(cls: type) -> None:
    cls.madvise_dontneed = lambda self, vma, start, end: (None, vma)  # type: ignore[attr-defined]


@attrs.frozen
class Mutant:
    name: str
    category: str
    what: str
    patch: Patch


MUTANTS = (
    Mutant("new-page-root", "page placement", "a new page goes to the root anon_vma", new_page_root),
    Mutant("new-page-parent", "page placement", "a new page goes to the parent anon_vma", new_page_parent),
    Mutant("index-plus-one", "page placement", "a page's index is one more than its linear index", index_plus_one),
    Mutant("cow-always-copy", "COW reuse/copy", "a write to a page nobody else maps copies it", cow_always_copy),
    Mutant("cow-reuse-shared", "COW reuse/copy", "a write to a page mapped twice reuses it", cow_reuse_shared),
    Mutant("cow-reuse-no-move", "COW reuse/copy", "a reused page stays on its old anon_vma", cow_reuse_no_move),
    Mutant(
        "swapin-via-swapcache",
        "swap-in placement",
        "a sole swap entry swaps in as a shared one",
        swapin_always_swapcache,
    ),
    Mutant(
        "swapin-remap-resets",
        "swap-in placement",
        "a swap-cache page mapped again is placed again",
        swapin_remap_resets,
    ),
    Mutant(
        "swapin-read-root",
        "swap-in placement",
        "a page swapped in by a read goes to the root",
        swapin_sole_not_exclusive,
    ),
    Mutant("pageout-shared", "swap-out", "MADV_PAGEOUT also swaps out pages mapped twice", pageout_shared),
    Mutant("pageout-noop", "swap-out", "MADV_PAGEOUT does nothing", pageout_noop),
    Mutant("merge-any-anon-vma", "merge rules", "VMAs merge whatever their anon_vmas", merge_any_anon_vma),
    Mutant("merge-never-new", "merge rules", "a new mapping never merges with a neighbour", merge_never_new),
    Mutant("errno-madvise-hole", "errnos", "madvise over a hole succeeds", errno_madvise_hole),
    Mutant("errno-mprotect-hole", "errnos", "mprotect over a hole succeeds", errno_mprotect_hole),
    Mutant("errno-wipeonfork", "errnos", "MADV_WIPEONFORK is EINVAL", errno_wipeonfork_einval),
    Mutant("fork-dontcopy-ignored", "fork sharing", "MADV_DONTFORK VMAs are copied", fork_dontcopy_ignored),
    Mutant(
        "fork-parent-writable", "fork sharing", "fork leaves the parent's ptes writable", fork_parent_stays_writable
    ),
    Mutant("fork-drops-zero-ptes", "fork sharing", "the child does not get the zero-page ptes", fork_drops_zero_ptes),
    Mutant(
        "fork-swap-not-shared", "fork sharing", "the child's swap entries get slots of their own", fork_swap_not_shared
    ),
    Mutant("read-fault-allocates", "faults", "a read fault allocates a page", read_fault_allocates),
    Mutant("dontneed-noop", "faults", "MADV_DONTNEED does nothing", dontneed_noop),
)
BY_NAME = {m.name: m for m in MUTANTS}


def run_one(name: str, budget: float, seed: int, strategy_name: str) -> dict[str, Any]:
    """In this process: patch the model, run the campaign, return what it found."""
    from rmapfuzz import ops, strategy
    from rmapfuzz.kernels import resolve
    from rmapfuzz.oracle import oracle as orc

    BY_NAME[name].patch(resolve(orc.MODEL))
    oracle = orc.Oracle(own_swap=False)
    with oracle:
        result = orc.fuzz(oracle, strategy.load(strategy_name), budget=budget, seed=seed)
    div = result.divergence
    return {
        "mutant": name,
        "detected": div is not None,
        "seconds": round(result.seconds, 1),
        "sequences": result.sequences,
        "level": None if div is None else div.level,
        "steps": len(result.steps_list) if div is not None else None,
        "message": None if div is None else div.message,
        "reproducer": [ops.describe(op) for op in result.steps_list],
        "levels": list(oracle.used),
        "swap": oracle.swap.active,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=None, help="default: drawn fresh and printed")
    p.add_argument("--strategy", default="default")
    p.add_argument("--only", default=None, help="comma-separated mutant names")
    p.add_argument("--json", action="store_true")
    p.add_argument("--run-one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.seed = fresh_seed(args.seed)  # one seed for every mutant's campaign, printed
    if args.run_one:
        print(json.dumps(run_one(args.run_one, args.budget, args.seed, args.strategy)))
        return 0
    from rmapfuzz.oracle import swap

    names = args.only.split(",") if args.only else [m.name for m in MUTANTS]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        print(f"unknown mutant {unknown[0]} (known: {', '.join(BY_NAME)})", file=sys.stderr)
        return 2
    rows = []
    started = time.monotonic()
    with swap.own_swap() as state:
        for name in names:
            cmd = [sys.executable, "-m", "bench.oracle_mutants", "--run-one", name, "--budget", str(args.budget)]
            cmd += ["--seed", str(args.seed), "--strategy", args.strategy]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            try:
                row = json.loads(proc.stdout.strip().splitlines()[-1])
            except (json.JSONDecodeError, IndexError):
                row = {"mutant": name, "detected": False, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
            rows.append(row)
            if not args.json:
                m = BY_NAME[name]
                if row.get("detected"):
                    print(f"detected  {name:24} {m.category:18} {row['seconds']:6.1f} s  {row['steps']} steps  "
                          f"{row['level']}: {row['message']}")  # fmt: skip
                else:
                    print(f"MISSED    {name:24} {m.category:18} {row.get('error', '')}")
                sys.stdout.flush()
    detected = [r for r in rows if r.get("detected")]
    short = [r for r in detected if r["steps"] is not None and r["steps"] <= 6]
    summary = {
        "mutants": len(rows),
        "detected": len(detected),
        "shrunk_to_6_or_fewer": len(short),
        "budget": args.budget,
        "seed": args.seed,
        "strategy": args.strategy,
        "swap": state.how,
        "seconds": round(time.monotonic() - started, 1),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{len(detected)}/{len(rows)} detected ({100 * len(detected) / max(1, len(rows)):.0f} %), "
              f"{len(short)} shrunk to <= 6 steps; {summary['seconds']} s; swap: {state.how}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
