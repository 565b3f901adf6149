"""``rmapfuzz minimize``: the greedy reducer's extensions, the exhaustive minimality search, the
``minimal`` record in reproducer files, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from rmapfuzz import corpus, ops
from rmapfuzz.cli import main
from rmapfuzz.kernels import boot
from rmapfuzz.minimize import (
    alphabet,
    exhaustive,
    fingerprint,
    minimize_reproducer,
    reproduces,
    write_reproducer,
)
from rmapfuzz.minimize.greedy import _merged
from rmapfuzz.replay import replay

RC3 = "2.6.34-rc3"
BUG_A: list[ops.Op] = [
    ops.Mmap(0, 0, 3, "rw"),
    ops.Mprotect(0, 1, 1, "rwx"),
    ops.Write(0, 2),
    ops.Mprotect(0, 2, 1, "rwx"),
]


def rep_of(steps: list[ops.Op], window: int = 8, kernel: str = RC3, path: Path | None = None) -> corpus.Reproducer:
    verdict = replay(steps, kernel, window)
    assert verdict.violation is not None
    return corpus.Reproducer(
        kernel=kernel,
        window=window,
        steps=list(steps),
        violation=verdict.violation,
        found={"seed": 1},
        path=path,
    )


def test_bug_a_breaks_merge_superset_at_its_last_step() -> None:
    assert reproduces(RC3, 8, "merge-superset", "mprotect")(list(BUG_A))


def test_greedy_drops_map_noreserve_that_the_failure_does_not_need() -> None:
    """Bug A with its first mmap asking for MAP_NORESERVE: the whole range is then uncharged and its
    mprotect still splits and merges the same way, so the reduction keeps the step, plain."""
    steps: list[ops.Op] = [ops.Mmap(0, 0, 3, "rw", ("noreserve",)), *BUG_A[1:]]
    assert BUG_A[0] == ops.Mmap(0, 0, 3, "rw")
    rep = rep_of(steps)
    assert rep.invariant == "merge-superset"
    out = minimize_reproducer(rep)
    assert out.rep.steps == list(BUG_A)


def test_greedy_shrinks_a_padded_bug_a_to_four_steps() -> None:
    padded: list[ops.Op] = [
        ops.Mmap(0, 6, 2, "r", ("noreserve",)),
        ops.Read(0, 6),
        ops.Fork(0),
        BUG_A[0],
        ops.Write(1, 7),
        ops.Mprotect(0, 1, 2, "rwx"),
        ops.Mprotect(0, 1, 2, "rw"),
        BUG_A[1],
        ops.Read(0, 0),
        BUG_A[2],
        ops.Madvise(0, 6, 1, "dontneed"),
        BUG_A[3],
        ops.Write(0, 0),  # after the failing step: cut
    ]
    rep = rep_of(padded)
    assert rep.failing_step == 11
    out = minimize_reproducer(rep)
    assert len(out.rep.steps) == 4
    assert out.rep.invariant == "merge-superset"
    assert out.rep.failing_step == 3
    assert ops.describe(out.rep.steps[-1]).startswith("mprotect")
    assert out.rep.minimal is not None
    assert out.rep.minimal["method"] == "greedy"
    assert out.rep.minimal["status"] == "not proved"
    assert out.rep.found == {"seed": 1}


def test_merge_of_adjacent_same_kind_ops() -> None:
    assert _merged(ops.Mprotect(0, 0, 2, "r"), ops.Mprotect(0, 2, 1, "r")) == ops.Mprotect(0, 0, 3, "r")
    assert _merged(ops.Mprotect(0, 0, 2, "r"), ops.Mprotect(0, 1, 3, "r")) == ops.Mprotect(0, 0, 4, "r")
    assert _merged(ops.Mprotect(0, 0, 1, "r"), ops.Mprotect(0, 2, 1, "r")) is None  # a gap
    assert _merged(ops.Mprotect(0, 0, 1, "r"), ops.Mprotect(0, 1, 1, "w")) is None  # another prot
    assert _merged(ops.Mprotect(0, 0, 1, "r"), ops.Mprotect(1, 1, 1, "r")) is None  # another process
    assert _merged(ops.Write(0, 0), ops.Write(0, 1)) is None


def test_fingerprint_renames_objects_and_prots_within_a_class() -> None:
    def state(*steps: ops.Op) -> bytes:
        k = boot(RC3, 8)
        for op in steps:
            k.apply(op)
        return fingerprint(k)[0]

    assert state(ops.Mmap(0, 0, 2, "r")) == state(ops.Mmap(0, 0, 2, "x"))
    assert state(ops.Mmap(0, 0, 2, "rw")) == state(ops.Mmap(0, 0, 2, "wx"))
    assert state(ops.Mmap(0, 0, 2, "r")) != state(ops.Mmap(0, 0, 2, "rw"))
    assert state(ops.Mmap(0, 0, 2, "r")) != state(ops.Mmap(0, 0, 2, ""))
    # equal prots stay equal, different ones stay different
    assert state(ops.Mmap(0, 0, 1, "r"), ops.Mmap(0, 2, 1, "r")) != state(
        ops.Mmap(0, 0, 1, "r"), ops.Mmap(0, 2, 1, "x")
    )
    # the same state reached two ways (an anon_vma allocated, then the page zapped again)
    assert state(ops.Mmap(0, 0, 2, "rw"), ops.Write(0, 0), ops.Madvise(0, 0, 1, "dontneed")) == state(
        ops.Mmap(0, 0, 2, "rw"), ops.Write(0, 1), ops.Madvise(0, 1, 1, "dontneed")
    )
    # where the page is matters
    assert state(ops.Mmap(0, 0, 2, "rw"), ops.Write(0, 0)) != state(ops.Mmap(0, 0, 2, "rw"), ops.Write(0, 1))


def test_alphabet_skips_steps_that_change_nothing() -> None:
    k = boot(RC3, 8)
    present = fingerprint(k)[1]
    letters = alphabet(k, present, processes=1, fail_nths=[])
    assert {op.op for op in letters} == {"mmap", "mremap", "exit"}  # nothing mapped: no fault, no munmap
    assert {op.prot for op in letters if isinstance(op, ops.Mmap)} == {"", "r", "rw"}  # one per class
    assert {op.flags for op in letters if isinstance(op, ops.Mmap)} == {(), ("noreserve",)}  # MAP_NORESERVE too
    assert not any(isinstance(op, ops.Madvise) and op.advice == "wipeonfork" for op in letters)
    k.apply(ops.Mmap(0, 2, 2, "r"))
    letters = alphabet(k, fingerprint(k)[1], processes=2, fail_nths=[])
    assert ops.Fork(0) in letters
    assert {op.addr for op in letters if isinstance(op, ops.Read)} == {2, 3}
    assert not any(isinstance(op, ops.Write) for op in letters)  # read-only: a write is SEGV


def test_exhaustive_proves_the_four_step_bug_a_minimal() -> None:
    result = exhaustive(RC3, 8, BUG_A, "merge-superset", budget=120)
    assert result.status == "proved", result.reason
    assert result.witness is None
    assert result.bound["length"] == 3
    assert result.bound["window"] == 8
    assert result.bound["processes"] == 1
    assert result.bound["stats"]["completed_length"] == 3
    assert result.bound["stats"]["sequences"] > 0


def test_exhaustive_finds_a_shorter_sequence() -> None:
    padded = [ops.Read(0, 0), *BUG_A]  # five steps; bug A needs four (and fits in a 3-page window)
    assert reproduces(RC3, 3, "merge-superset", None)(padded)
    result = exhaustive(RC3, 3, padded, "merge-superset", budget=120)
    assert result.status == "shorter"
    assert result.witness is not None
    assert len(result.witness) == 4
    assert reproduces(RC3, 3, "merge-superset", None)(result.witness)


def test_exhaustive_reports_the_budget() -> None:
    result = exhaustive(RC3, 8, BUG_A, "merge-superset", budget=0.001)
    assert result.status == "not proved"
    assert result.reason is not None and "budget" in result.reason


def test_exhaustive_max_steps_is_not_a_proof() -> None:
    result = exhaustive(RC3, 8, BUG_A, "merge-superset", max_steps=1)
    assert result.status == "not proved"
    assert result.reason is not None and "--max-steps" in result.reason


def test_the_minimal_field_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "bug-a.json"
    rep = rep_of([ops.Read(0, 0), *BUG_A], window=3, path=path)
    path.write_text(corpus.dumps(rep), encoding="utf-8")
    out = minimize_reproducer(corpus.load(path), exhaustive_search=True, budget=120)
    write_reproducer(out.rep)
    loaded = corpus.load(path)
    assert len(loaded.steps) == 4
    assert loaded.minimal == out.rep.minimal
    assert loaded.minimal is not None
    assert loaded.minimal["status"] == "proved"
    assert loaded.minimal["method"] == "exhaustive"
    assert loaded.minimal["tool"].startswith("rmapfuzz ")
    assert loaded.found == {"seed": 1}
    assert loaded.violation is not None and loaded.violation["step"] == 3
    assert corpus.dumps(loaded) == path.read_text(encoding="utf-8")
    assert [r.status for r in corpus.check_reproducer(loaded)] == ["ok"]
    assert not list(tmp_path.glob(".tmp-*"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_greedy_json_without_write_leaves_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "padded.json"
    path.write_text(corpus.dumps(rep_of([ops.Mmap(0, 6, 1, "r"), *BUG_A])), encoding="utf-8")
    before = path.read_text(encoding="utf-8")
    code, out, _ = run(capsys, "minimize", str(path), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["steps_before"] == 5
    assert data["steps_after"] == 4
    assert data["minimal"]["method"] == "greedy"
    assert path.read_text(encoding="utf-8") == before
    code, out, _ = run(capsys, "minimize", str(path), "--write")
    assert code == 0
    assert "5 -> 4 steps" in out
    assert len(corpus.load(path).steps) == 4


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["minimize", "/nonexistent/x.json"], "no such file"),
        (["minimize", "CLEAN", "--json"], "records no violation"),
        (["minimize", "BUG", "--budget", "0"], "--budget"),
        (["minimize", "BUG", "--max-steps", "-1"], "--max-steps"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps({"kernel": RC3, "window": 8, "steps": [ops.to_json(BUG_A[0])]}), encoding="utf-8")
    bug = tmp_path / "bug.json"
    bug.write_text(corpus.dumps(rep_of(BUG_A)), encoding="utf-8")
    argv = [{"CLEAN": str(clean), "BUG": str(bug)}.get(a, a) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert (json.loads(out) == {"error": err.removeprefix("rmapfuzz: error: ").rstrip("\n"), "exit_code": 2}
            if "--json" in argv else out == "")  # fmt: skip
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("rmapfuzz: error: ")
    assert needle in err


def test_every_simpler_step_is_a_valid_op() -> None:
    """The greedy reducer's argument lowering keeps every op valid as the loader checks it (an
    in-place mremap moved down stays in place), so a reduced reproducer always saves and loads."""
    import random

    from rmapfuzz.generate import OP_BYTES, Decoder, Mix
    from rmapfuzz.minimize.greedy import _simpler_args
    from rmapfuzz.strategy import load

    rng = random.Random(7)
    mix = Mix.of(load("default"))
    decoder = Decoder(mix)
    kernel = boot("6.18.8", mix.window)
    checked = 0
    for _ in range(3000):
        op = decoder.decode(rng.randbytes(OP_BYTES), kernel, [0])
        if op is None:
            continue
        for simpler in _simpler_args(op):
            assert ops.parse_step(ops.to_json(simpler), mix.window) == simpler, (op, simpler)
            checked += 1
    assert checked > 1000


def test_save_refuses_a_reproducer_its_loader_would_reject(tmp_path: Path) -> None:
    bad = ops.Mremap(0, 1, 1, 0, 2, ())  # in place, but new_start != start
    rep = corpus.Reproducer(RC3, 8, [ops.Mmap(0, 0, 3, "rw"), bad], violation={"invariant": "counters", "step": 1})
    with pytest.raises(corpus.CorpusError, match="in-place"):
        corpus.save(tmp_path, rep)
    assert list(tmp_path.iterdir()) == []


def test_reduction_keeps_the_bug_it_was_classified_as() -> None:
    """D and E on 3.19-rc4 both leave a degree wrong after an mprotect: a campaign's D find, reduced
    only for its invariant and op, became an E reproducer and D was never reported.  With the bugs
    it was classified as, every candidate must still show them."""
    from rmapfuzz.classify import classify
    from rmapfuzz.minimize import minimize_failure

    data = json.loads((Path(__file__).parent / "data" / "d-slips-to-e.json").read_text())
    kernel, window = data["kernel"], data["window"]
    raw = ops.parse_steps(data["steps"], window)
    assert classify(kernel, raw, window) == ["D"]
    assert classify(kernel, minimize_failure(kernel, window, raw), window) == ["E"], (
        "no longer slips: pick another case"
    )
    kept = minimize_failure(kernel, window, raw, bugs=["D"])
    assert classify(kernel, kept, window) == ["D"] and len(kept) <= 5


def test_the_budget_bounds_the_greedy_phase_too() -> None:
    """--budget is the most a file's minimisation takes, greedy reduction included: out of time, the
    reducer keeps the shortest sequence it has and the record says why it is not a fixpoint."""
    import time

    rep = corpus.load(Path(__file__).resolve().parent.parent / "corpus" / "2.6.34-rc3--merge-superset--mprotect.json")
    assert rep.violation is not None
    pad = [ops.Read(0, 7)] * 1500  # a fault on an unmapped page: SEGV, changes nothing
    long = attrs.evolve(rep, steps=pad + rep.steps, violation={**rep.violation, "step": 1500 + rep.violation["step"]})
    started = time.monotonic()
    cut = minimize_reproducer(long, budget=0.01)
    assert time.monotonic() - started < 3.0  # the budget, plus a replay or two on a loaded machine
    assert cut.rep.minimal is not None and "budget (0.01 s) ran out" in cut.rep.minimal["reason"]
    whole = minimize_reproducer(long, budget=300)
    assert len(whole.rep.steps) == 4 < len(cut.rep.steps)
    assert whole.rep.minimal is not None and "fixpoint" in whole.rep.minimal["reason"]
