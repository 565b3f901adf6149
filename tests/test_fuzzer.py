"""The fuzzer: strategies, the state machine, the minimizer and campaigns."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest
from hypothesis import Phase
from hypothesis.stateful import run_state_machine_as_test

from rmapfuzz import campaign, corpus, ops, strategy
from rmapfuzz.classify import classify
from rmapfuzz.invariants import Violation
from rmapfuzz.kernels import KERNELS
from rmapfuzz.machine import Observer, generated_sequences, machine_settings, make_machine
from rmapfuzz.minimize import minimize_failure, without
from rmapfuzz.replay import replay
from tests.helpers import STRATEGY_FIELDS, steps

BUG_A = steps(("mmap", 0, 0, 3, "rw"), ("mprotect", 0, 1, 1, "rwx"), ("write", 0, 2), ("mprotect", 0, 2, 1, "rwx"))


# ---- strategies ----


@pytest.mark.parametrize("name", sorted(strategy.available()))
def test_every_shipped_strategy_loads(name: str) -> None:
    s = strategy.load(name)
    assert s.name == name
    assert 1 <= s.steps <= strategy.MAX_STEPS
    assert any(w > 0 for w in s.weights.values())


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('window = "8"', "window"),
        ("window = 1", "window"),
        ("steps = 5000", "steps"),
        ('prots = ["wr"]', "prots"),
        ('advices = ["hugepage"]', "advices"),
        ('mremap_flags = [["maymove"]]', "mremap_flags"),
        ("mremap_zero_old_len = -1", "mremap_zero_old_len"),
        ("bogus = 1", "bogus"),
        ("[weights]\nwrite = -1", "weights.write"),
        ("[weights]\nteleport = 3", "weights.teleport"),
    ],
)
def test_bad_strategy_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    key = text.split(" ")[0].split("\n")[0]
    body = [v for k, v in STRATEGY_FIELDS.items() if k != key]
    if not text.startswith("[weights]"):
        body.append(text)
        body.append("[weights]\nwrite = 1")
    else:
        body.append(text)
    path = tmp_path / "bad.toml"
    path.write_text("\n".join(body) + "\n")
    with pytest.raises(strategy.StrategyError) as err:
        strategy.load(str(path))
    assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(strategy.StrategyError, match=r"known: .*default"):
        strategy.load("no-such-strategy")


# ---- the state machine ----


class Recorder(Observer):
    def __init__(self) -> None:
        self.ops: list[ops.Op] = []
        self.failures: list[list[ops.Op]] = []
        self.lengths: list[int] = []

    def on_start(self) -> None:
        self.lengths.append(0)

    def on_step(self, op: ops.Op, result: str) -> None:
        self.ops.append(op)
        self.lengths[-1] += 1

    def on_violation(self, steps: list[ops.Op], violations: list[Violation]) -> bool:
        self.failures.append(steps)
        return True


def _run(kernel: str, strat: str, examples: int, observer: Observer | None = None) -> None:
    s = strategy.load(strat)
    machine = make_machine(kernel, s, observer=observer)
    # No Hypothesis shrinking: these tests judge what is found (minimize_failure reduces it), and
    # shrinking a long burst-built test case can take minutes.
    phases = (Phase.explicit, Phase.reuse, Phase.generate)
    run_state_machine_as_test(
        machine, settings=machine_settings(s, max_examples=examples, derandomize=True, database=None, phases=phases)
    )


def test_machine_finds_a_2010_bug_on_rc3_and_records_the_steps() -> None:
    """A short derandomized campaign on 2.6.34-rc3 fails, and the recorded failing run replays."""
    rec = Recorder()
    with pytest.raises(Violation):
        _run("2.6.34-rc3", "merge-storm", 1000, rec)
    shortest = min(rec.failures, key=len)
    from rmapfuzz.replay import replay

    assert replay(shortest, "2.6.34-rc3", window=5).violation is not None


def test_machine_runs_clean_on_2_6_34() -> None:
    """The same derandomized campaign on 2.6.34 (without mremap moves: see bug M) finds nothing."""
    _run("2.6.34", "merge-storm", 300)


def test_machine_ops_follow_the_strategy() -> None:
    rec = Recorder()
    _run("2.6.34", "merge-storm", 50, rec)
    kinds = {op.op for op in rec.ops}
    enabled = {op for op, w in strategy.load("merge-storm").weights.items() if w > 0}
    assert kinds <= enabled
    assert {"mprotect", "write", "mmap"} <= kinds


def test_testcase_is_exposed_for_pytest_and_hypofuzz() -> None:
    s = strategy.load("merge-storm")
    machine = make_machine("2.6.34", s)
    # Hypothesis steps are bursts of up to s.burst ops; the machine stops at s.steps ops.
    assert machine.TestCase.settings.stateful_step_count * s.burst >= s.steps
    assert (machine.TestCase.settings.stateful_step_count - 1) * s.burst < s.steps


def test_test_cases_never_run_more_ops_than_the_strategy_allows() -> None:
    rec = Recorder()
    _run("2.6.34", "merge-storm", 30, rec)
    assert 0 < max(rec.lengths) <= strategy.load("merge-storm").steps


def test_an_all_zero_op_slot_is_no_op() -> None:
    """Hypothesis's simplest choice (all-zero bytes) deletes an op: a zero burst runs nothing."""
    cls = make_machine("2.6.34", strategy.load("merge-storm"))
    machine = cls()
    machine.burst(bytes(4 * 8))
    assert machine.steps == []
    machine.burst(bytes([0, 0, 0, 1]) + bytes(28))  # slot 0 (mmap) with the smallest non-zero arguments
    assert [op.op for op in machine.steps] == ["mmap"]


def test_slot_table_follows_the_weights() -> None:
    from rmapfuzz.generate import slot_table

    table = slot_table([("a", 3.0), ("b", 1.0), ("c", 0.001)])
    assert len(table) == 256
    assert table[0] == "a" and table.count("c") == 1
    assert abs(table.count("a") / table.count("b") - 3) < 0.1


# ---- the minimizer ----


def test_minimize_removes_noise_and_renumbers_pids() -> None:
    noisy = steps(
        ("fork", 0),
        ("exit", 0),
        ("mmap", 1, 0, 3, "rw"),
        ("fork", 1),
        ("mprotect", 1, 1, 1, "rwx"),
        ("write", 1, 2),
        ("read", 2, 0),
        ("mprotect", 1, 2, 1, "rwx"),
    )
    small = minimize_failure("2.6.34-rc3", 8, noisy)
    assert len(small) == 4
    assert {op.pid for op in small if not isinstance(op, ops.FailAlloc)} == {0}


def test_without_drops_a_forked_process_with_its_fork() -> None:
    seq = steps(("fork", 0), ("fork", 0), ("write", 1, 0), ("write", 2, 0))
    assert without(seq, {0}) == steps(("fork", 0), ("write", 1, 0))
    assert without(seq, {0}, fold=True) == steps(("fork", 0), ("write", 0, 0), ("write", 1, 0))


def test_minimize_keeps_a_minimal_sequence() -> None:
    assert minimize_failure("2.6.34-rc3", 8, BUG_A) == BUG_A


# ---- campaigns ----


def _config(tmp_path: Path, kernel: str, **kw: object) -> campaign.Config:
    base: dict[str, object] = {
        "kernel": kernel,
        "strategy": strategy.load("merge-storm"),
        "seed": 3,
        "budget": 20.0,
        "corpus_dir": tmp_path / "corpus",
        "database": tmp_path / "db",
    }
    base.update(kw)
    return campaign.Config(**base)  # type: ignore[arg-type]


def test_campaign_saves_a_shrunk_classified_reproducer(tmp_path: Path) -> None:
    result = campaign.run(_config(tmp_path, "2.6.34-rc3"))
    assert result.exit_code == 1
    find = result.finds[0]
    assert find.path is not None and find.status == "new"
    rep = corpus.load(find.path)
    assert rep.kernel == "2.6.34-rc3" and rep.steps == find.steps
    assert rep.violation is not None and rep.violation["invariant"] == find.violation["invariant"]
    assert set(find.bugs) <= {"A", "B", "S"} and find.bugs
    assert len(find.steps) <= 6
    assert rep.found["strategy"] == "merge-storm"


def test_campaign_dedups_by_signature(tmp_path: Path) -> None:
    """The same seeded campaign twice writes one file per signature.  (Hypothesis' shrinking is cut
    by time, so the second run may end with a shorter reproducer: that one replaces the file.)"""
    first = campaign.run(_config(tmp_path, "2.6.34-rc3", database=None))
    second = campaign.run(_config(tmp_path, "2.6.34-rc3", database=None))
    assert {f.status for f in first.finds} == {"new"}
    repeated = [f for f in second.finds if f.signature in {g.signature for g in first.finds}]
    assert repeated and {f.status for f in repeated} <= {"duplicate", "shorter"}
    signatures = {f.signature for f in first.finds + second.finds}
    assert len(list((tmp_path / "corpus").glob("*.json"))) == len(signatures)


def test_campaign_with_an_examples_budget_ends_clean(tmp_path: Path) -> None:
    result = campaign.run(_config(tmp_path, "2.6.34", budget=None, examples=40))
    assert result.exit_code == 0
    assert result.stats["examples"] >= 40
    assert result.stats["steps"] > 0


def test_campaign_with_two_workers_shares_one_corpus(tmp_path: Path) -> None:
    result = campaign.run(_config(tmp_path, "2.6.34-rc3", workers=2))
    assert result.exit_code == 1
    files = list((tmp_path / "corpus").glob("*.json"))
    assert files and all(corpus.load(f).violation for f in files)
    assert {f.worker for f in result.finds} <= {0, 1}


def test_a_parallel_campaign_reports_progress_by_the_clock(tmp_path: Path) -> None:
    """The live view of a --workers 2 campaign is refreshed every PROGRESS_EVERY seconds, although
    the workers' stats keep the parent's queue from ever falling quiet (it used to refresh only then)."""
    calls: list[float] = []
    config = _config(tmp_path, "current", workers=2, budget=3.0)
    campaign.run(config, on_progress=lambda stats, finds: calls.append(stats["steps"]))
    assert len(calls) >= 3.0 / campaign.PROGRESS_EVERY / 2, calls  # half the ticks, on a busy machine
    assert calls == sorted(calls) and calls[-1] > 0


def test_keep_going_stops_once_targets_are_found(tmp_path: Path) -> None:
    result = campaign.run(_config(tmp_path, "2.6.34-rc3", keep_going=True, targets=("A",), budget=30.0))
    assert any("A" in f.bugs for f in result.finds)
    assert result.seconds < 30.0


def test_database_key_names_what_the_examples_mean(tmp_path: Path) -> None:
    """The key keeps a shared database's entries apart per kernel, strategy and invariant
    selection, and drops them when the machine's format or Hypothesis changes."""
    import hypothesis

    base = _config(tmp_path, "2.6.34")
    keys = {
        campaign.database_key(base),
        campaign.database_key(_config(tmp_path, "2.6.35")),
        campaign.database_key(_config(tmp_path, "2.6.34", strategy=strategy.load("swap"))),
        campaign.database_key(_config(tmp_path, "2.6.34", invariants=("same-chain",))),
    }
    assert len(keys) == 4
    assert campaign.database_key(base) == campaign.database_key(_config(tmp_path, "2.6.34", seed=99))
    assert hypothesis.__version__.encode() in campaign.database_key(base)
    assert f"/{campaign.MACHINE_FORMAT}/".encode() in campaign.database_key(base)


def test_a_second_campaign_replays_the_first_ones_find_from_the_database(tmp_path: Path) -> None:
    first = campaign.run(_config(tmp_path, "2.6.34-rc3", seed=1))
    assert first.finds
    second = campaign.run(_config(tmp_path, "2.6.34-rc3", seed=2, corpus_dir=tmp_path / "corpus2"))
    assert second.finds[0].signature == first.finds[0].signature
    assert second.finds[0].steps_before < strategy.load("merge-storm").steps  # in its first test cases


def test_settings_profile_does_not_leak() -> None:
    # machine_settings() sets everything a campaign relies on explicitly, so the built-in "ci"
    # profile (loaded when CI is set) cannot turn the database off or derandomize a campaign.
    s = machine_settings(strategy.load("default"), database=None, derandomize=False)
    assert s.derandomize is False and s.deadline is None


# ---- a short derandomized campaign per kernel ----

# (kernel, strategy, must it find something in 300 deterministic test cases?)
KERNEL_CAMPAIGNS = [
    ("2.6.34-rc3", "default", True),
    ("2.6.34-rc3+hannes-v2", "default", True),
    ("2.6.34-rc3+d0e9fe17", "default", True),
    ("2.6.34-rc3+287d97ac", "default", False),
    ("2.6.34-rc4", "swap", False),
    ("2.6.34", "merge-storm", False),
    ("3.19", "fork-tree", False),
    ("6.0", "fork-tree", False),
]


@pytest.mark.parametrize(("kernel", "strat", "must_find"), KERNEL_CAMPAIGNS)
def test_derandomized_campaign_per_kernel(kernel: str, strat: str, must_find: bool) -> None:
    """Whatever a short deterministic campaign finds is one of the bugs the kernel is known to
    carry (judged by the single-fix overlays where there is one); kernels that carry none stay clean."""
    rec = Recorder()
    with contextlib.suppress(Violation):
        _run(kernel, strat, 300, rec)
    carried = set(KERNELS[kernel].bugs)
    assert rec.failures or not must_find
    if rec.failures:
        window = strategy.load(strat).window
        small = minimize_failure(kernel, window, min(rec.failures, key=len))
        assert carried, f"{kernel} carries no catalogued bug, yet: {[ops.describe(op) for op in small]}"
        assert set(classify(kernel, small, window)) <= carried


def test_generated_sequences_keep_each_test_case_and_its_failing_step() -> None:
    s = strategy.load("default")
    clean = generated_sequences("current", s, 20, seed=1)
    assert 0 < len(clean) <= 20 and all(0 < len(seq) <= s.longest_run() for seq in clean)
    found = generated_sequences("2.6.34-rc3", s, 300, seed=1)
    assert any(not replay(seq, "2.6.34-rc3", s.window).clean for seq in found)


def test_a_failure_under_pytest_prints_ops_not_bytes(tmp_path: Path) -> None:
    """Hypothesis prints a failing state machine's steps: they read as ops one can paste
    (``state.do(Mmap(...))``), with the op-language JSON and the ``replay(...)`` call in notes."""
    (tmp_path / "test_machine.py").write_text(
        textwrap.dedent(
            """
            from hypothesis import Phase
            from rmapfuzz import strategy
            from rmapfuzz.machine import machine_settings, make_machine

            s = strategy.load("merge-storm")
            TestRc3 = make_machine("2.6.34-rc3", s).TestCase
            TestRc3.settings = machine_settings(
                s, max_examples=500, derandomize=True, database=None,
                phases=(Phase.explicit, Phase.reuse, Phase.generate),
            )
            """
        )
    )
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, check=False, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "state.do(Mmap(pid=0" in proc.stdout
    assert "state.burst(chunk=" not in proc.stdout
    assert "rmapfuzz: the steps as op-language JSON" in proc.stdout
    assert "verdict = replay([" in proc.stdout


def test_the_live_oracles_sequences_never_inject_an_allocation_failure() -> None:
    """A real kernel cannot fail an allocation on demand: the oracle's language leaves fail_alloc out
    of every mix, the default strategy's portfolio (enomem among them) included."""
    from rmapfuzz import strategy
    from rmapfuzz.oracle.oracle import no_fail_alloc, sample_sequences

    default = strategy.load("default")
    assert "enomem" in default.portfolio
    drawn = [op.op for seq in sample_sequences(default, 200, seed=3) for op in seq]
    assert len(drawn) > 2000 and "fail_alloc" not in drawn
    assert all("fail_alloc" not in s.weights or s.without for s in no_fail_alloc(default).portfolio_strategies())


def test_only_a_strategy_that_asks_draws_mremaps_of_old_length_zero() -> None:
    """mremap.toml's ``mremap_zero_old_len = 8``: about one mremap in 8 has an old length of 0 (a
    duplication request, EINVAL for a private mapping); the default strategy's own mix draws none,
    but its portfolio (which the CI oracle runs) includes the mremap mix."""
    from rmapfuzz.oracle.oracle import sample_sequences

    mremap = strategy.load("mremap")
    assert mremap.mremap_zero_old_len == 8 and "mremap" in strategy.load("default").portfolio
    drawn = [op for seq in sample_sequences(mremap, 30, seed=5) for op in seq if isinstance(op, ops.Mremap)]
    zero = sum(op.pages == 0 for op in drawn)
    assert len(drawn) > 300 and len(drawn) / 20 < zero < len(drawn) / 5
    plain = attrs.evolve(mremap, mremap_zero_old_len=0)
    drawn = [op for seq in sample_sequences(plain, 30, seed=5) for op in seq if isinstance(op, ops.Mremap)]
    assert drawn and all(op.pages > 0 for op in drawn)


def test_portfolio_mixes_hold_fail_alloc_in_one_slot() -> None:
    """The search inserts allocation failures into any kept case (search.Pool.fail_before), so every
    portfolio mix can decode fail_alloc; one without it of its own gets one slot of 256, so fresh
    cases seldom draw it (more often, it broke the fork trees fork-tree's mix builds: bug G took
    1.8x the steps).  The other ops keep their shares."""
    from rmapfuzz.generate import Mix, Swarm, slot_table
    from rmapfuzz.kernels import resolve

    default = strategy.load("default")
    swarm = Swarm.of(default, resolve("current"))
    for own, mix in zip(default.portfolio_strategies(), swarm.portfolio, strict=True):
        table = slot_table(mix.weights)
        if own.weights.get("fail_alloc", 0) == 0:
            assert table.count("fail_alloc") == 1
            plain = slot_table(Mix.for_kernel(own, resolve("current")).weights)
            for op in set(plain):
                assert abs(table.count(op) - plain.count(op)) <= 2, op
        else:
            assert table.count("fail_alloc") > 1


def test_mixes_draw_map_noreserve_only_where_the_strategy_asks() -> None:
    """The default strategy's drawn mixes (swarm: mmap's flag sets are a value set like prots) draw
    MAP_NORESERVE mmaps, plain ones too, and some mixes only one kind; a strategy without
    ``mmap_flags`` draws plain mmaps only."""
    from rmapfuzz.generate import HEADER_BYTES, Mix, Swarm, decoder, from_header
    from rmapfuzz.kernels import boot, resolve

    default = strategy.load("default")
    swarm = Swarm.of(default, resolve("current"))
    kinds = {from_header(swarm.base, bytes([0, 0, *[1] * 10, 0, 0, high << 4])).mmap_flags for high in range(4)}
    assert kinds == {((), ("noreserve",)), ((),), (("noreserve",),)}
    rng = random.Random(7)
    drawn = {((),): 0, (("noreserve",),): 0}
    for _ in range(200):
        header = bytes([0]) + rng.randbytes(HEADER_BYTES - 1)
        mix = swarm.mix(header)
        k = boot("current", mix.window)
        for _ in range(20):
            op = decoder(mix).decode(bytes([0]) + rng.randbytes(3), k, [0])
            assert isinstance(op, ops.Mmap)
            drawn[(op.flags,)] = drawn.get((op.flags,), 0) + 1
    assert drawn[((),)] > 1000 and drawn[(("noreserve",),)] > 1000
    classic = Mix.of(strategy.load("classic"))
    assert classic.mmap_flags == ((),)
    k = boot("current", classic.window)
    words = [bytes([0]) + rng.randbytes(3) for _ in range(200)]
    plain = [decoder(classic).decode(w, k, [0]) for w in words]
    assert all(isinstance(op, ops.Mmap) and op.flags == () for op in plain)


def test_a_portfolio_source_runs_its_own_strategys_length() -> None:
    """fork-tree's and mremap's files ask for 120 ops a test case (deep trees take long to grow); in
    the default campaign their test cases are that long too, not the default's 100 (cut short, the
    fork-tree source needed 1.2x the steps per find of bug G: bench/RESULTS.md).  A drawn mix runs
    the default's length; execute() stops at the mix's length however many words a case has."""
    from rmapfuzz.generate import HEADER_BYTES, OP_BYTES, Swarm
    from rmapfuzz.kernels import resolve
    from rmapfuzz.search import Case, Pool, execute

    default = strategy.load("default")
    k = resolve("current")
    swarm = Swarm.of(default, k)
    own = {t.name: t.steps for t in default.portfolio_strategies()}
    assert own["fork-tree"] == 120 and own["classic"] == default.steps == 100
    assert default.longest_run() == 120
    pool = Pool(swarm, random.Random(3))
    for _ in range(200):
        case = pool.fresh()
        assert case.header is not None
        pick = case.header[0] % swarm.picks
        assert case.length == (own[default.portfolio[pick - 1]] if pick else default.steps)
    for pick, name in enumerate(default.portfolio, start=1):
        header = bytes([pick]) + bytes(HEADER_BYTES - 1)
        words = bytes([1, 0, 0, 0]) * 200  # 200 writes (or whatever slot 1 holds): more than any run
        assert len(execute(k, swarm, Case(header, words), ()).ops) <= own[name]
        assert swarm.steps(header) == own[name] and len(words) // OP_BYTES > own[name]


def test_plain_mmaps_reach_the_portfolio(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that ignores MAP_NORESERVE (vm.overcommit_memory = 2) gets no noreserve mmap from any
    source: the strategy's own mix and every portfolio strategy's, even one whose file asks for it."""
    load = strategy.load
    asks = attrs.evolve(load("classic"), mmap_flags=((), ("noreserve",)))
    monkeypatch.setattr(strategy, "load", lambda name: asks if name == "classic" else load(name))
    default = load("default")
    assert "classic" in default.portfolio and default.mmap_flags != ((),)
    drawn = {t.name: t.mmap_flags for t in default.portfolio_strategies()}
    assert drawn["classic"] == ((), ("noreserve",))
    plain = default.plain_mmaps()
    assert plain.mmap_flags == ((),)
    assert all(t.mmap_flags == ((),) for t in plain.portfolio_strategies())
