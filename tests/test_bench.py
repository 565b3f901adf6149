"""The benchmark helpers: the naive walker and the mutant generator (not the timings)."""

from __future__ import annotations

import ast
import math
import random
import time
from typing import Any

import pytest

from bench.mutants import KINDS, PACKAGE, mutate, sites
from bench.walk import UNIFORM, Language, random_sequence, uniform_mix, walk
from rmapfuzz import strategy


def test_mutant_sites_cover_every_kind_and_mutate_to_different_code() -> None:
    pool = sites()
    assert {s.kind for s in pool} == set(KINDS)
    for site in random.Random(0).sample(pool, 25):
        code = mutate(site)
        ast.parse(code)
        original = ast.unparse(ast.parse((PACKAGE / site.file).read_text()))
        assert code != original, site.label


def test_walker_finds_bug_a_on_rc3_and_nothing_on_current() -> None:
    found = walk("2.6.34-rc3", 1, ["A"], 20.0, mix=UNIFORM)
    assert "A" in found.found
    clean = walk("6.18.8", 1, ["A"], 1.0, mix=UNIFORM)
    assert clean.violations == 0 and clean.steps > 0


def test_random_sequences_track_pids() -> None:
    seq = random_sequence(random.Random(3), 200)
    assert len(seq) == 200


def test_the_walker_speaks_the_strategy_language() -> None:
    s = strategy.load("enomem")
    lang = Language.of(s)
    seq = random_sequence(random.Random(5), 400, lang, uniform_mix(s))
    kinds = {op.op for op in seq}
    assert "fail_alloc" in kinds and kinds <= set(s.weights) | {"write"}
    assert all(getattr(op, "prot", "rw") in s.prots for op in seq)


def test_mutant_sites_leave_out_methods_the_kernel_overrides() -> None:
    """6.18.8 overrides mmap_merge (vma_merge_new_range) and mprotect_charge (9b9143298585), 3.7 does not."""
    for name in ("mmap_merge", "mprotect_charge"):
        assert any(s.function == name and s.file.startswith("model/") for s in sites("3.7"))
        assert not any(s.function == name and s.file.startswith("model/") for s in sites("6.18.8"))
    assert set(sites("6.18.8")) <= set(sites()) and set(sites("3.7")) <= set(sites())


def test_mutant_sites_include_the_overlays_the_kernel_is_built_from() -> None:
    """The overlays hold much of what a generation runs (6.x's merge code, 3.19's reuse): their
    functions are mutated too, where the generation runs them and no newer overlay replaces them."""
    current = sites("current")
    files = {s.file for s in current}
    assert "kernels/v6_12.py" in files and "kernels/v3_19_rc4.py" in files
    assert not files & {"kernels/v3_12.py", "kernels/v7_0.py", "kernels/__init__.py"}  # not in current's line
    reuse = {s.function for s in sites("3.19-rc4") if s.file == "kernels/v3_19_rc4.py"}
    assert "anon_vma_clone" in reuse  # 3.19-rc4 runs its own
    assert "anon_vma_clone" not in {s.function for s in current if s.file == "kernels/v3_19_rc4.py"}  # 2555283e's
    site = next(s for s in current if s.file == "kernels/v6_12.py" and s.kind == "negate-if")
    text = (PACKAGE / site.file).read_text()
    mutant = mutate(site)
    assert ast.dump(ast.parse(mutant)) != ast.dump(ast.parse(text))


def test_mutant_sites_leave_out_equivalent_mutants() -> None:
    """Swapping max()'s arguments or dropping a tracepoint changes nothing the model does: such a
    mutant can never be killed and would only lower the score."""
    lines = (PACKAGE / "model/mprotect.py").read_text().splitlines()
    at = next(i for i, line in enumerate(lines, 1) if "nstart = max(tmp, prev.vm_end)" in line)
    pool = sites()
    assert not any(s.file == "model/mprotect.py" and s.lineno == at and s.kind == "swap-args" for s in pool)
    lines = (PACKAGE / "kernels/fix_d0e9fe17.py").read_text().splitlines()
    same = next(i for i, line in enumerate(lines, 1) if "reusable_anon_vma(near, near, vma)" in line)
    other = next(i for i, line in enumerate(lines, 1) if "reusable_anon_vma(near, vma, near)" in line)
    swaps = {s.lineno for s in pool if s.file == "kernels/fix_d0e9fe17.py" and s.kind == "swap-args"}
    assert same not in swaps and other in swaps  # swapping two equal arguments changes nothing
    for s in pool:
        if s.kind == "drop-call":
            assert "self.trace." not in (PACKAGE / s.file).read_text().splitlines()[s.lineno - 1], s.label


def test_mutant_sites_leave_out_code_that_only_observes() -> None:
    """6.12's cover_new_range() only picks a coverage point, and vma_merge_new_range() calls it
    under an ``if`` of its own: mutants of either change what the coverage sees, never the model.
    A method that traces and then acts (6.0's wp_page_reuse) is mutated as before."""
    from bench.mutants import observers, source_files

    watching = observers([ast.parse(p.read_text()) for p in source_files()])
    assert "cover_new_range" in watching and "wp_page_reuse" not in watching
    pool = sites("current")
    assert not any(s.function == "cover_new_range" for s in pool)
    lines = (PACKAGE / "kernels/v6_12.py").read_text().splitlines()
    at = next(i for i, line in enumerate(lines, 1) if line.strip() == "if can_left or can_right:")
    assert not any(s.file == "kernels/v6_12.py" and s.lineno == at for s in pool)
    assert any(s.function == "wp_page_reuse" and s.kind == "drop-call" for s in pool)


def test_verdicts_compare_counts_and_shows_what_moved() -> None:
    """bench/verdicts.py: per kernel both trees know, the verdicts that moved, with examples."""
    from bench.verdicts import compare, replay_all, sequences

    seqs = sequences(2, seed=1)
    assert len(seqs) == 10 and all(steps for _, steps in seqs)
    here = replay_all(seqs)
    assert set(here) >= {"current", "2.6.34-rc3"} and all(len(v) == 10 for v in here.values())
    there = {k: list(v) for k, v in here.items() if k != "current"}
    there["2.6.34"] = ["merge-superset @3: made up", *there["2.6.34"][1:]]
    lines = compare(here, there, "REV")
    assert "| 2.6.34 | 10 |" in "\n".join(lines)
    assert "1 verdicts changed on 1 of 39 kernels." in lines
    assert "Kernels only one tree knows (not compared): current." in lines
    assert any(line.startswith("- 2.6.34, sequence 0: `REV` 'merge-superset @3: made up'") for line in lines)


def test_a_bench_run_is_added_to_the_results_file_not_written_over_it() -> None:
    """bench/run.py keeps the older runs: the new one goes after the title, before them."""
    from bench.run import with_run

    old = "# rmapfuzz benchmarks\n\nIntro.\n\n## Older run\n\nfigures\n"
    new = with_run(old, ["## rmapfuzz benchmarks (today)", "", "new figures", ""])
    intro, today, older = (
        "# rmapfuzz benchmarks\n\nIntro.\n\n",
        "## rmapfuzz benchmarks (today)\n\nnew figures\n\n",
        "## Older run\n\nfigures\n",
    )
    assert new == intro + today + older
    assert with_run(new, ["## again"]).count("## ") == 3
    assert with_run("", ["## first"]) == "## first\n\n"


def test_best_fixed_share_solves_the_game_of_sources_against_bugs() -> None:
    """Two bugs each found by one source only: no share does better than half of each (the ratio 2
    the bench's criterion allows, at best).  With a third source fair at both, the best share mixes
    it with the first: x + 0.6 (1 - x) = 0.9 (1 - x) at x = 3/13, a value of 9/13."""
    from bench.portfolio import best_fixed_share

    value, share = best_fixed_share([[1.0, 0.0], [0.0, 1.0]])
    assert abs(value - 0.5) < 1e-6 and abs(share[0] - 0.5) < 1e-6
    value, share = best_fixed_share([[1.0, 0.0, 0.6], [0.0, 1.0, 0.9]])
    assert abs(value - 9 / 13) < 1e-6 and abs(share[0] - 3 / 13) < 1e-6 and share[1] < 1e-6


def test_best_schedule_runs_each_source_before_its_bugs_deadline() -> None:
    """A fast bug only source 0 finds (one find per step, as its named strategy) and a slow one only
    source 1 finds (one per 100 steps): a fixed share pays 2x on one of them, but a schedule giving
    source 0 every step until the fast bug's deadline and source 1 the rest pays 1x on the fast bug
    and 100/99x on the slow one (its deadline comes x ln 2 steps late).  A bug nothing finds has
    no schedule."""
    from bench.portfolio import best_schedule

    plan = best_schedule([[1.0, 0.0], [0.0, 0.01]], [1.0, 0.01])
    assert plan is not None
    assert abs(plan.ratio - 100 / 99) < 0.002 * plan.ratio
    assert plan.shares[0][0] >= 1 / plan.ratio - 1e-6 and plan.shares[1][1] > 0.99
    assert abs(plan.ends[-1] - plan.ratio * math.log(2) * 100) < 1e-6
    both = best_schedule([[1.0, 0.0], [0.0, 1.0]], [1.0, 1.0])  # the same deadline: no order helps
    assert both is not None and abs(both.ratio - 2.0) < 0.005
    assert best_schedule([[1.0, 0.0], [0.0, 0.0]], [1.0, 1.0]) is None


def test_portfolio_rate_stops_at_its_finds_or_its_time() -> None:
    """A source that finds the bug every test case stops after the finds asked for, long before its
    time; one that never finds it stops when its time is up."""
    from bench.portfolio import Effort, _rate

    start = time.monotonic()
    assert _rate(lambda: (10, True), Effort(3, 60.0)) == (3, 30)
    finds, steps = _rate(lambda: (10, False), Effort(3, 0.05))
    assert finds == 0 and steps > 0 and time.monotonic() - start < 5


def test_portfolio_refuses_a_bug_outside_the_find_suite(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.portfolio import main

    with pytest.raises(SystemExit) as stop:
        main(["--bugs", "A,Q", "--seconds", "0.01"])
    assert stop.value.code == 2 and "Q not in the find suite" in capsys.readouterr().err


def test_portfolio_table_plans_only_bugs_with_a_find() -> None:
    """The table's two bounds over the bugs some source found; a bug that no source found in the
    time given is named as left out, not planned for as if it could not be found at all."""
    from bench.portfolio import Effort, table

    def rows(a: tuple[int, int], b: tuple[int, int], named: tuple[int, int]) -> dict[str, tuple[int, int]]:
        return {"classic": a, "enomem": b, "walker": (1, 1000), "named x": named}

    results = {"A": rows((10, 1000), (1, 1000), (10, 1000)), "C": rows((1, 1000), (10, 1000), (10, 1000)),
               "M": rows((0, 5000), (0, 5000), (1, 5000))}  # fmt: skip
    text = "\n".join(table(results, Effort(30, 1.0), 0))
    assert "over bugs A, C (a linear program)" in text and "Left out, no find to plan by: M." in text
    assert "at best 0.550 of the named strategy's" in text  # an even share: (1 + 0.1) / 2
    assert "worst bug of A, C" in text
    assert "| A | 2.6.34-rc3 | 100 (10) | 1,000 (1) | 1,000 (1) | 100 (10) (x) |" in text  # short of 30 finds
    assert "| A | 2.6.34-rc3 | 100 | 1,000 (1) | 1,000 (1) | 100 (x) |" in "\n".join(table(results, Effort(10, 1.0), 0))
    lines = [line for line in text.splitlines() if line.startswith("* ")]
    assert len(lines) == 1 and "classic 50%" in lines[0] and "enomem 50%" in lines[0]


def test_coverage_row_counts_each_run_against_its_own_points() -> None:
    """A run that moved on to a fixed kernel has more reachable points than one that did not: the
    row shows the range, and a run that reached all of its own leaves nothing unreached."""
    from bench.run import coverage_rows

    runs: list[dict[str, Any]] = [
        {"covered_at": 30.0, "reachable": 96, "reached": 96, "unreached": []},
        {"covered_at": 40.0, "reachable": 94, "reached": 94, "unreached": []},
        {"covered_at": None, "reachable": 96, "reached": 95, "unreached": ["vma_expand: ENOMEM"]},
    ]
    row, missed = coverage_rows("6.16", runs)
    assert row == "| 6.16 | 94-96 | 2/3 | 35.0 | 40.0 | 1 |"
    assert missed == {"vma_expand: ENOMEM": 1}


@pytest.mark.parametrize("module", ["bench.verdicts", "bench.speed", "bench.run"])
def test_an_unknown_revision_is_a_usage_error(module: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--against`` names a commit that does not exist: one line and exit 2, before anything runs
    (it used to end in git's CalledProcessError traceback after the first tree's replays)."""
    import importlib

    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exc:
        main(["--against", "no-such-revision", "--out", "/dev/null"] if module == "bench.run" else
             ["--against", "no-such-revision"])  # fmt: skip
    assert exc.value.code == 2
    assert "--against no-such-revision: not a commit of this repository" in capsys.readouterr().err


def test_blindness_compares_the_same_campaign_on_the_bug_s_kernel_and_with_its_fix() -> None:
    """Bug A's default campaign, and as many test cases with the same seed on 2.6.34-rc3 with A's
    fix (and the kernel's other bugs fixed): counted up to the finding test case.  A kernel run
    twice with one seed runs the same test cases."""
    from bench.portfolio import _cases_run, blindness, hunted_kernel

    kernel = hunted_kernel("A", "2.6.34-rc3").name
    first, found = _cases_run(kernel, 5, "A", 20.0, None)
    again, _ = _cases_run(kernel, 5, "A", None, len(first))
    assert found is not None and 1 <= found <= len(first) and again[:found] == first[:found]
    result = blindness("A", "2.6.34-rc3", "classic", 5, 20.0)
    assert result is not None and result.cases == found and 0 <= result.same <= result.cases
    assert result.same_again == result.cases  # a campaign this short does not part from its rerun
    assert 0.0 <= result.own_share <= 1.0 and 0.0 <= result.own_share_fixed <= 1.0


def test_the_model_s_own_tests_kill_a_merge_mutant_the_unmutated_model_passes() -> None:
    """``bench.mutants --tests``: vma_merge() with its test for cases 6-8 negated fails the drawn
    merge cases (tests/test_vma_merge.py); the unmutated model passes them.  Every file the second
    score runs exists."""
    from bench.mutants import MODEL_TESTS, ROOT, run_tests

    assert all((ROOT / "tests" / name).is_file() for name in MODEL_TESTS)
    lines = (PACKAGE / "model" / "mmap.py").read_text().splitlines()
    site = next(s for s in sites() if s.file == "model/mmap.py" and s.kind == "negate-if"
                and s.function == "vma_merge" and lines[s.lineno - 1].strip().startswith("if middle:"))  # fmt: skip
    assert run_tests(None, ("test_vma_merge.py",)) == "survived"
    assert run_tests(site, ("test_vma_merge.py",)) == "killed"
