"""The live-kernel oracle on the running kernel: skipped where it cannot run.

Needs Linux, root (PFNs in pagemap for L2), and a free window at 0x2000_0000_0000.  The scenarios
are docs/live-oracle.md#scenario-corpus, measured on 6.18.44; each must agree with the ``current`` model at
L0/L1/L2, and its final layout is checked against the kernel result recorded there.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rmapfuzz import corpus, ops
from rmapfuzz.cli import main
from tests.helpers import ex, fork, mm, mp, mv, rd, wr


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "not Linux"
    try:
        from rmapfuzz.oracle import observe
        from rmapfuzz.oracle.executor import DEFAULT_BASE
    except OSError as exc:  # no libc
        return f"cannot load the bindings: {exc}"
    if not os.path.exists("/proc/self/pagemap"):
        return "no /proc/self/pagemap"
    if not observe.pfns_visible():
        return "pagemap hides PFNs (needs root / CAP_SYS_ADMIN)"
    taken = observe.window_is_free(DEFAULT_BASE, 64)
    if taken is not None:
        return f"the window is not free: {taken}"
    return None


WHY_NOT = _why_not()
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"live kernel oracle unavailable: {WHY_NOT}")


def noreserve(step: dict[str, object]) -> dict[str, object]:
    return {**step, "flags": ["noreserve"]}


# (name, steps, {pid: final layout on 6.18.44 as recorded in docs/live-oracle.md#scenario-corpus})
SCENARIOS = [
    ("a1", [mm(0, 0, 4), mm(0, 4, 4)], {0: [(0, 8, "rw")]}),
    ("b3", [mm(0, 0, 4), rd(0, 0), mm(0, 4, 4)], {0: [(0, 8, "rw")]}),
    ("b4", [mm(0, 0, 4), wr(0, 0), mm(0, 8, 4), wr(0, 8), mm(0, 4, 4)], {0: [(0, 8, "rw"), (8, 12, "rw")]}),
    ("c2", [mm(0, 4, 4), wr(0, 4), mp(0, 4, 4, "r"), mm(0, 0, 4), wr(0, 0), mp(0, 4, 4, "rw")], {0: [(0, 8, "rw")]}),
    (
        "c2d",
        [mm(0, 14, 4), wr(0, 14), mv(0, 14, 4, 4), mp(0, 4, 4, "r"), mm(0, 0, 4), wr(0, 0), mp(0, 4, 4, "rw")],
        {0: [(0, 4, "rw"), (4, 8, "rw")]},
    ),
    ("c4", [mm(0, 0, 4), mp(0, 0, 4, "r"), mm(0, 4, 4, "r")], {0: [(0, 8, "r")]}),
    (
        "c6",
        [mm(0, 0, 4), mm(0, 4, 4), mp(0, 0, 4, "r"), wr(0, 4), mp(0, 4, 2, "r")],
        {0: [(0, 4, "r"), (4, 6, "r"), (6, 8, "rw")]},
    ),
    ("d1", [mm(0, 0, 4), wr(0, 0), fork(0), mm(1, 4, 4)], {0: [(0, 4, "rw")], 1: [(0, 4, "rw"), (4, 8, "rw")]}),
    ("d1''", [mm(0, 0, 4), wr(0, 0), fork(0), ex(1), mm(0, 4, 4)], {0: [(0, 8, "rw")]}),
    ("e1", [mm(0, 0, 4), wr(0, 0), mm(0, 10, 4), wr(0, 10), mv(0, 10, 4, 4)], {0: [(0, 4, "rw"), (4, 8, "rw")]}),
    ("e2", [mm(0, 0, 4), wr(0, 0), mm(0, 10, 4), mv(0, 10, 4, 4)], {0: [(0, 8, "rw")]}),
    (
        "f5",
        [mm(0, 0, 4), mm(0, 4, 4), {"op": "munmap", "pid": 0, "start": 2, "pages": 4}, wr(0, 0), wr(0, 6), mm(0, 2, 4)],
        {0: [(0, 6, "rw"), (6, 8, "rw")]},
    ),
    (
        "h3",
        [
            mm(0, 0, 4),
            wr(0, 0),
            {"op": "madvise", "pid": 0, "start": 0, "pages": 4, "advice": "wipeonfork"},
            fork(0),
            mm(1, 4, 4),
            {"op": "madvise", "pid": 1, "start": 4, "pages": 4, "advice": "wipeonfork"},
        ],
        {0: [(0, 4, "rw")], 1: [(0, 8, "rw")]},
    ),
    (
        "cow",
        [mm(0, 0, 4), wr(0, 0), wr(0, 1), rd(0, 2), fork(0), wr(1, 0), fork(1), mp(2, 2, 1, "r")],
        {0: [(0, 4, "rw")], 1: [(0, 4, "rw")], 2: [(0, 2, "rw"), (2, 3, "r"), (3, 4, "rw")]},
    ),
    # MAP_NORESERVE (measured on 6.18.44 with this test): merge.c's mprotect_unfaulted_left merges,
    # its charged twin does not, and a charged and an uncharged neighbour never merge
    ("nr1", [noreserve(mm(0, 0, 8)), mp(0, 0, 4, "r"), wr(0, 4), mp(0, 4, 4, "r")], {0: [(0, 8, "r")]}),
    ("nr2", [mm(0, 0, 8), mp(0, 0, 4, "r"), wr(0, 4), mp(0, 4, 4, "r")], {0: [(0, 4, "r"), (4, 8, "r")]}),
    ("nr3", [mm(0, 0, 4), noreserve(mm(0, 4, 4))], {0: [(0, 4, "rw"), (4, 8, "rw")]}),
]
WINDOW = 20


@pytest.fixture(scope="module")
def oracle():
    from rmapfuzz.oracle.oracle import Oracle

    with Oracle(("L0", "L1", "L2"), strict=True) as o:
        yield o


@pytest.mark.parametrize(("name", "steps", "layout"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenario_agrees_with_current(oracle, name, steps, layout):
    parsed = ops.parse_steps(steps, WINDOW)
    outcome = oracle.run(parsed, WINDOW)
    assert outcome.status == "agree", str(outcome.divergence)
    from rmapfuzz.replay import replay

    final = replay(parsed, "current", WINDOW, invariants=()).final
    got = {
        pid: [
            (v.vm_start, v.vm_end, "".join(c for c, b in (("r", 1), ("w", 2), ("x", 4)) if v.vm_flags & b))
            for v in m.vmas
        ]
        for pid, m in final.mms.items()
        if m.alive
    }
    assert got == layout


def test_a_divergence_is_reported():
    """An mremap whose source is a hole: 6.18 fails before unmapping the target; the 2.6.34 model
    (mremap_to unmaps the target first) diverges from the live kernel at L0."""
    from rmapfuzz.oracle.oracle import Oracle

    steps = ops.parse_steps(
        [
            mm(0, 6, 2, "r"),
            {
                "op": "mremap",
                "pid": 0,
                "start": 4,
                "pages": 2,
                "new_start": 7,
                "new_pages": 1,
                "flags": ["maymove", "fixed"],
            },
        ],
        8,
    )
    with Oracle(("L0",), kernel="2.6.34") as old:
        outcome = old.run(steps, 8)
    assert outcome.status == "diverge"
    div = outcome.divergence
    assert div is not None
    assert div.step == 1 and div.level == "L0"
    assert div.kernel == "P0 [6,8) r"


def test_fail_alloc_is_skipped(oracle):
    assert oracle.run([ops.FailAlloc(1), ops.Fork(0)], 8).status == "skipped"


def test_noreserve_is_skipped_where_the_kernel_ignores_it(oracle, monkeypatch):
    """With vm.overcommit_memory at 2 the kernel ignores MAP_NORESERVE: such a sequence is skipped,
    and a campaign draws plain mmaps only."""
    from rmapfuzz import strategy
    from rmapfuzz.oracle.oracle import live_language

    steps = [ops.Mmap(0, 0, 2, "rw", ("noreserve",))]
    assert oracle.run(steps, 8).status == "agree"
    monkeypatch.setattr(oracle, "noreserve", False)
    out = oracle.run(steps, 8)
    assert out.status == "skipped" and "vm.overcommit_memory is 2" in (out.reason or "")
    default = strategy.load("default")
    assert default.mmap_flags == ((), ("noreserve",))
    assert live_language(default, False).mmap_flags == ((),)
    assert live_language(default, True).mmap_flags == default.mmap_flags


def test_no_worker_left_behind(oracle):
    before = set(os.listdir("/proc"))
    oracle.run(ops.parse_steps([mm(0, 0, 4), fork(0), fork(1), fork(0), ex(0), wr(1, 0)], 8), 8)
    mine = [p for p in set(os.listdir("/proc")) - before if p.isdigit()]
    leftovers = []
    for p in mine:
        try:
            with open(f"/proc/{p}/stat") as fh:
                if int(fh.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    leftovers.append(p)
        except OSError:
            pass
    assert leftovers == []


def test_cli_oracle_on_files(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(corpus.dumps(corpus.Reproducer("current", WINDOW, ops.parse_steps(SCENARIOS[2][1], WINDOW))))
    assert main(["oracle", str(good)]) == 0
    out = capsys.readouterr().out
    assert "agree" in out
    assert re.search(r"; swap (on|off): \S", out)  # whether L4 could see pages swapped out
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"kernel": "current", "window": 8, "steps": [{"op": "mremap", "pid": 0, "start": 6, "pages": 2, '
        '"new_start": 6, "new_pages": 2, "flags": []}]}'
    )
    assert main(["oracle", "--json", "--levels", "L0", str(bad)]) == 0  # 6.18: EFAULT on both sides
    assert main(["oracle", "--json", "--levels", "L0", "--kernel", "2.6.34", str(bad)]) == 1
    assert '"diverge"' in capsys.readouterr().out
    assert main(["oracle"]) == 2
    assert main(["oracle", "--levels", "L9", str(good)]) == 2


def test_cli_oracle_fuzz_short(tmp_path, capsys):
    code = main(
        [
            "oracle",
            "--fuzz",
            "--budget",
            "2",
            "--seed",
            "3",
            "--strategy",
            "merge-storm",
            "--corpus",
            str(tmp_path / "div"),
        ]
    )
    assert code in (0, 1)
    out = capsys.readouterr().out
    assert "sequences" in out and re.search(r", swap (on|off): \S", out)
    if code == 1:
        saved = list((tmp_path / "div").glob("*.json"))
        assert saved and '"kind": "divergence"' in saved[0].read_text()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")
def test_exported_c_program_passes(tmp_path):
    from rmapfuzz import export

    steps = ops.parse_steps(SCENARIOS[-1][1] + SCENARIOS[-3][1], WINDOW)  # nr3 then nr1 over it
    source = export.to_c(corpus.Reproducer("current", WINDOW, steps), "noreserve scenarios")
    assert "MAP_NORESERVE" in source
    c_file = tmp_path / "repro.c"
    c_file.write_text(source)
    subprocess.run(["cc", "-Wall", "-O0", "-o", str(tmp_path / "repro"), str(c_file)], check=True)
    run = subprocess.run([str(tmp_path / "repro")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout
    assert run.stdout.strip().endswith("PASS")


def test_a_level_that_cannot_be_observed_is_never_dropped_silently(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --strict the text output names the level left out and why; with it, exit 3."""
    from rmapfuzz.oracle import oracle as orc

    real = orc.probe_levels

    def without_l3(wanted: tuple[str, ...] = orc.LEVELS) -> dict[str, orc.LevelInfo]:
        out = real([n for n in wanted if n != "L3"])
        if "L3" in wanted:
            out["L3"] = orc.LevelInfo("L3", False, "BPF anon_vma graph unavailable: pretend")
        return out

    monkeypatch.setattr(orc, "probe_levels", without_l3)
    entry = str(Path(__file__).resolve().parent.parent / "corpus" / "3.19--reuse-safe--fork.json")
    assert main(["oracle", "--levels", "L0,L3", entry]) == 0
    out = capsys.readouterr().out
    assert "warning: level L3 left out: BPF anon_vma graph unavailable: pretend" in out and "agree" in out
    assert main(["oracle", "--levels", "L0,L3", "--strict", entry]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "infrastructure failure: level L3 is unavailable here" in err


def test_a_step_reads_only_the_processes_it_can_change() -> None:
    """After a partial step the other processes' L0/L2 are as last read; MADV_PAGEOUT, every
    FULL_EVERY-th step and the end of the sequence read every live process again."""
    from rmapfuzz.oracle.oracle import Oracle, SequenceRun

    steps = [ops.parse_step(s, 8) for s in (mm(0, 0, 2), wr(0, 0), fork(0), fork(1), wr(2, 0), wr(1, 1))]
    reads: list[list[int]] = []
    with Oracle(levels=("L0", "L2"), own_swap=False) as oracle, oracle.sequence(8, 3) as run:
        assert isinstance(run, SequenceRun)
        vmas = run.session.vmas

        def counting(pid: int) -> list[tuple[int, int, str]]:
            reads[-1].append(pid)
            return vmas(pid)

        run.session.vmas = counting  # type: ignore[method-assign]
        for op in steps:
            reads.append([])
            assert run.step(op) is None
        assert reads == [[0], [0], [0, 1], [1, 2], [2], [1]]
        assert not run.observed_all
        reads.append([])
        assert run.finish() is None
        assert reads[-1] == [0, 1, 2] and run.observed_all
        reads.append([])
        out = run.step(ops.parse_step({"op": "madvise", "pid": 2, "start": 0, "pages": 2, "advice": "pageout"}, 8))
        assert out is None and reads[-1] == [0, 1, 2]


def test_a_deep_fork_chain_agrees_at_every_level() -> None:
    """40 forks (past the L3 iterator's chain limit of 32, where L3 reads every process again) and a
    write at the end, compared after every step at every level this machine has."""
    from bench.oracle_fork_chain import chain
    from rmapfuzz.oracle.oracle import Oracle

    with Oracle(own_swap=False, levels=("L0", "L1", "L2", "L3", "L4")) as oracle:
        out = oracle.run(chain(40), 2)
    assert out.status == "agree", out.divergence
    assert not any("differed once" in note for note in out.notes)


def test_a_divergence_is_reported_only_if_a_replay_shows_it_again() -> None:
    """A difference seen once in a campaign and never on replay is the kernel's timing (a page still
    in a per-CPU batch when MADV_PAGEOUT ran): unconfirmed, shown, not a find."""
    from types import SimpleNamespace

    from rmapfuzz.oracle.oracle import REPLAYS, confirm

    shrunk: list[ops.Op] = [ops.Mmap(0, 0, 2, "rw")]
    found: list[ops.Op] = [ops.Mmap(0, 0, 2, "rw"), ops.Write(0, 0)]
    calls: list[list[ops.Op]] = []

    class Flaky:
        def __init__(self, diverges_on: int | None) -> None:
            self.diverges_on = diverges_on

        def run(self, steps: list[ops.Op], window: int) -> SimpleNamespace:
            calls.append(steps)
            return SimpleNamespace(divergence="seen" if len(calls) == self.diverges_on else None)

    assert confirm(Flaky(None), [shrunk, found], 8) is None  # type: ignore[arg-type]
    assert calls == [shrunk] * REPLAYS + [found] * REPLAYS
    calls.clear()
    assert confirm(Flaky(REPLAYS + 1), [shrunk, found], 8) == (found, "seen")  # type: ignore[arg-type,comparison-overlap]


@pytest.mark.parametrize(
    "name", ["shared-entry-read-ahead", "sole-entry-never-read-ahead", "exclusive-entry-read-ahead", "bit-cleared"]
)
def test_swap_readahead_cases_agree_at_l4(name: str) -> None:
    """The swap-in cases of tests/test_swap_readahead.py on the live kernel, with the oracle's own
    swap (zram) and the readahead settings the model assumes, compared at every level after every
    step: the default strategy's former L4 divergence (a page read ahead into the swap cache,
    mapped later on the root), the case a first fix broke (a sole entry nothing read ahead: a fresh
    page on the VMA's own anon_vma), and a read-ahead page whose swap pte is exclusive (the VMA's
    own anon_vma).  The last one also runs with the exclusive-bit rule taken out, which L4 must
    catch."""
    from rmapfuzz.kernels import resolve
    from rmapfuzz.model.memory import MemoryMixin
    from rmapfuzz.oracle import oracle as orc
    from tests import test_swap_readahead as cases
    from tests.helpers import steps

    table = {
        "shared-entry-read-ahead": cases.SHARED_ENTRY_READ_AHEAD,
        "sole-entry-never-read-ahead": cases.SOLE_ENTRY_NEVER_READ_AHEAD,
        "exclusive-entry-read-ahead": cases.EXCLUSIVE_ENTRY_READ_AHEAD,
        "bit-cleared": cases.EXCLUSIVE_ENTRY_READ_AHEAD,
    }
    with orc.Oracle(levels=("L0", "L1", "L2", "L3", "L4")) as oracle:
        if not oracle.swap.active or "L4" not in oracle.used:
            pytest.skip(f"needs swap and L4 here: {oracle.swap.how}; levels {', '.join(oracle.used)}")
        if name != "bit-cleared":
            out = oracle.run(steps(*table[name]), 8)
            assert out.status == "agree", out.divergence
            return
        cls = resolve(orc.MODEL)
        saved = cls.swapin_exclusive
        try:
            cls.swapin_exclusive = MemoryMixin.swapin_exclusive  # type: ignore[method-assign]
            out = oracle.run(steps(*table[name]), 8)
        finally:
            cls.swapin_exclusive = saved  # type: ignore[method-assign]
        assert out.divergence is not None and out.divergence.level == "L4"
        assert "P1 page 1" in out.divergence.message


def test_minimize_divergence_deletes_processes_and_chunks() -> None:
    """The replay-based reducer (no kernel needed: a stand-in oracle) takes a 24-step sequence whose
    divergence needs only a written page, a fork and the child's write down to those 4 steps; a
    fork whose process never matters goes with all its steps, and later pids are renumbered."""
    from types import SimpleNamespace

    from rmapfuzz.oracle.oracle import minimize_divergence

    def diverges(steps: list[ops.Op]) -> int | None:
        """L4 at the first write by a forked child to page 1 after its parent wrote page 1."""
        mapped, written, forked = False, False, 0
        for i, op in enumerate(steps):
            if isinstance(op, ops.Mmap) and op.pid == 0 and op.start <= 1 < op.start + op.pages:
                mapped, written = True, False
            elif isinstance(op, ops.Write) and op.addr == 1 and op.pid == 0 and mapped:
                written = True
            elif isinstance(op, ops.Fork) and op.pid == 0 and written:
                forked += 1
            elif isinstance(op, ops.Write) and op.addr == 1 and op.pid >= 1 and forked:
                return i
        return None

    class StandIn:
        runs = 0

        def run(self, steps: list[ops.Op], window: int) -> SimpleNamespace:
            StandIn.runs += 1
            at = diverges(steps)
            return SimpleNamespace(divergence=None if at is None else SimpleNamespace(level="L4", step=at))

    long = [ops.parse_step(s, 8) for s in (mm(0, 0, 4), wr(0, 0), fork(0), wr(1, 2), mp(1, 0, 2, "r"), ex(1))]
    long += [ops.parse_step(s, 8) for s in (wr(0, 3), rd(0, 2), mm(0, 6, 2), wr(0, 1), fork(0), wr(2, 3))]
    long += [ops.parse_step(s, 8) for s in (fork(2), rd(3, 0), fork(0), mp(0, 6, 1, "r"), wr(4, 0), rd(2, 1))]
    long += [ops.parse_step(s, 8) for s in (wr(4, 1), wr(3, 3), mm(0, 6, 1), ex(3), wr(2, 1), wr(0, 0))]
    assert diverges(long) == 18
    best = minimize_divergence(StandIn(), long, 8, budget=30.0)  # type: ignore[arg-type]
    assert [ops.describe(op) for op in best] == ["mmap(P0, [0,2), rw)", "write(P0, 1)", "fork(P0)", "write(P1, 1)"]
    assert diverges(best) == 3 and StandIn.runs < 2000


# A page written, then paged out (the model swaps it out; the kernel, without swap, cannot), then
# shared by a fork, read by the child and written by the parent: from the pageout on, the kernel's
# page and the model's swapped-in pages differ in where they are placed.
PAGEOUT_WITHOUT_SWAP = [
    mm(0, 0, 2), wr(0, 0), {"op": "madvise", "pid": 0, "start": 0, "pages": 1, "advice": "pageout"},
    fork(0), rd(1, 0), wr(0, 0),
]  # fmt: skip


def _no_swap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The oracle sees a machine without swap (no swap on, no zram device it could use)."""
    from rmapfuzz.oracle import swap

    monkeypatch.setattr(swap, "swap_total_kb", lambda: 0)
    monkeypatch.setattr(swap, "_why_not", lambda: "no zram device (pretend)")


def test_without_swap_l4_stops_comparing_where_the_model_swaps_a_page_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """No swap: MADV_PAGEOUT swaps the page out in the model only, and L4 compares that sequence
    no further (where it used to report the kernel's page as a divergence); the steps before the
    pageout are compared at L4 as ever, and so is a sequence with no pageout."""
    from rmapfuzz.oracle.oracle import Oracle

    _no_swap(monkeypatch)
    with Oracle(levels=("L0", "L1", "L2", "L3", "L4")) as oracle:
        if "L4" not in oracle.used:
            pytest.skip(f"L4 unavailable here: {oracle.info['L4'].how}")
        assert not oracle.swap.active and "L4" in oracle.partial
        out = oracle.run(ops.parse_steps(PAGEOUT_WITHOUT_SWAP, 8), 8)
        assert out.status == "agree", out.divergence
        assert any(note.startswith("step 2: L4 not compared from here on") for note in out.notes), out.notes
        out = oracle.run(ops.parse_steps([mm(0, 0, 2), wr(0, 0), fork(0), wr(1, 0)], 8), 8)
        assert out.status == "agree" and not any("L4 not compared" in note for note in out.notes)


def test_without_swap_strict_l4_is_an_infrastructure_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--strict: L4 cannot be fully observed without swap, so the run refuses (one line, exit 3);
    without --strict it runs and says L4 is observed in part."""
    import json

    from rmapfuzz.oracle import oracle as orc

    if not orc.probe_levels(orc.LEVELS)["L4"].available:
        pytest.skip("L4 unavailable here")
    _no_swap(monkeypatch)
    entry = tmp_path / "pageout.json"
    entry.write_text(json.dumps({"kernel": "current", "window": 8, "steps": PAGEOUT_WITHOUT_SWAP}))
    assert main(["oracle", "--levels", "L0,L4", "--strict", str(entry)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "infrastructure failure: level L4 cannot be fully observed here: no swap" in err
    assert main(["oracle", "--levels", "L0,L2", "--strict", str(entry)]) == 0  # L2 leaves swapped cells out
    capsys.readouterr()
    assert main(["oracle", "--levels", "L0,L4", str(entry)]) == 0
    out = capsys.readouterr().out
    assert "warning: level L4 observed in part: no swap" in out and "agree" in out
