"""Model against model (``rmapfuzz diff``): the pair runner, the search, and difference entries in
the corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rmapfuzz import corpus, differential, export, strategy
from rmapfuzz.cli import main
from rmapfuzz.pair import LEVELS, PairError, levels_without, pair_replay

ROOT = Path(__file__).resolve().parent.parent
J = ROOT / "corpus" / "6.16--merge-superset--mremap-maymove-fixed.json"
J_FIX = str(ROOT / "examples" / "mremap_dup_source.py")


def config(a: str, b: str, tmp_path: Path | None, **kw: object) -> differential.DiffConfig:
    return differential.DiffConfig(a, b, strategy.load("default"), corpus_dir=tmp_path, **kw)  # type: ignore[arg-type]


# ---- the pair runner ----


def test_the_j_fix_changes_the_anon_vma_graph_where_j_breaks() -> None:
    """
    AA......   mmap [0,2), write 0
    ..AA....   mremap dontunmap: A stays, unfaulted; the copy B at [2,4) takes the page
    BAA.....   mremap [2,3) back to 0: on 6.16 the merge with A skips dup_anon_vma (J),
               with 61f67c230a5e it duplicates the source's anon_vma: the graphs differ
    """
    rep = corpus.load(J)
    found = pair_replay(rep.steps, "6.16", J_FIX, rep.window)
    assert found is not None and found.step == rep.failing_step == 3
    assert [d.level for d in found.found] == ["graph", "invariants"]
    assert "merge-superset on A, clean on B" in found.found[-1].message


def test_ignoring_what_a_patch_is_meant_to_change() -> None:
    """The J fix changes which anon_vma a VMA has and nothing a user of the syscalls can see."""
    rep = corpus.load(J)
    visible = levels_without(["graph", "page-anon", "invariants"])
    assert visible == ("result", "layout", "flags", "pages")
    assert pair_replay(rep.steps, "6.16", J_FIX, rep.window, visible) is None


def test_a_model_agrees_with_itself_even_where_both_break() -> None:
    for path in sorted((ROOT / "corpus").glob("*.json")):
        rep = corpus.load(path)
        if rep.kind == "violation":
            assert pair_replay(rep.steps, rep.kernel, rep.kernel, rep.window) is None, path.name


def test_unknown_level() -> None:
    with pytest.raises(PairError, match="'nope'"):
        levels_without(["graph", "nope"])
    assert levels_without([]) == LEVELS


# ---- the search ----


def test_a_model_against_itself_is_clean(tmp_path: Path) -> None:
    result = differential.run(config("6.18.8", "6.18.8", tmp_path, seed=1, budget=None, examples=40))
    assert result.exit_code == 0 and not result.finds and result.examples == 40
    assert not list(tmp_path.iterdir())


def test_the_6_17_mremap_rework_is_found_reduced_and_saved(tmp_path: Path) -> None:
    result = differential.run(config("6.16", "6.18.8", tmp_path, seed=2, budget=None, examples=100, keep_going=True))
    assert result.exit_code == 1 and result.finds
    for find in result.finds:
        assert find.signature.startswith("6.16-vs-6.18.8:difference-")
        assert len(find.steps) <= find.found_steps and find.path is not None
        rep = corpus.load(find.path)
        assert rep.kind == "difference" and rep.kernel == "6.16" and rep.against == "6.18.8"
        assert json.loads(find.path.read_text())["version"] == corpus.FORMAT_VERSION
        assert rep.signature == find.signature
        # still differs, at the recorded level and step; and no shorter prefix does
        [own] = corpus.check_reproducer(rep, ["6.0"])[:1]
        assert own.status == "ok", own.detail
        assert pair_replay(rep.steps[:-1], "6.16", "6.18.8", rep.window) is None


# ---- difference entries ----


def _difference(tmp_path: Path) -> Path:
    rep = corpus.load(J)
    found = pair_replay(rep.steps, "6.16", "6.18.8", rep.window)
    assert found is not None and found.step is not None
    entry = corpus.Reproducer(kernel="6.16", against="6.18.8", window=rep.window, steps=rep.steps[: found.step + 1],
                              violation=found.to_json(), kind="difference")  # fmt: skip
    path, status = corpus.save(tmp_path, entry)
    assert status == "new"
    return path


def test_show_and_replay_run_both_kernels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _difference(tmp_path)
    assert main(["show", str(path)]) == 1
    out = capsys.readouterr().out
    assert "against 6.18.8" in out and "difference at step 3" in out and "B 6.18.8" in out
    assert main(["show", str(path), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["against"] == "6.18.8" and len(data["steps"]) == 4 and data["difference"]["step"] == 3
    assert set(data["steps"][0]["results"]) == {"ok"}
    assert main(["replay", str(path), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["difference"]["level"] == "graph"
    # with --kernel, the entry's steps run on one kernel as any reproducer's do
    assert main(["replay", str(path), "--kernel", "6.18.8"]) == 0


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d.pop("against"), "names the kernel it compares with"),
        (lambda d: d.update(kind="violation", violation=None), "no other does"),
        (lambda d: d["violation"].update(level="smell"), "'smell'"),
        (lambda d: d.update(against="9.9"), "9.9"),
    ],
)
def test_a_bad_difference_entry_is_one_clear_error(tmp_path: Path, edit: object, needle: str) -> None:
    path = _difference(tmp_path)
    data = json.loads(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))
    with pytest.raises(corpus.CorpusError, match=needle):
        corpus.load(path)


# ---- the command ----


def test_diff_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["diff", "--kernel", "6.16", "--against", J_FIX, "--ignore", "graph,page-anon,invariants",
                 "--examples", "30", "--seed", "1", "--no-corpus", "--json"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["against"] == "6.16+patch-61f67c23" and data["examples"] == 30
    assert data["levels"] == ["result", "layout", "flags", "pages"] and data["finds"] == []
    report = tmp_path / "mail.txt"
    code = main(["diff", "--kernel", "6.16", "--against", "6.18.8", "--examples", "50", "--seed", "2",
                 "--corpus", str(tmp_path), "--report", str(report)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1 and "6.16-vs-6.18.8:difference-" in out and list(tmp_path.glob("6.16-vs-6.18.8--*.json"))
    text = report.read_text()
    assert text.startswith("rmapfuzz diff --kernel 6.16 --against 6.18.8 --seed 2\nA = 6.16, B = 6.18.8;")
    assert "1. 6.16-vs-6.18.8:difference-" in text and "     A: " in text and "     B: " in text
    assert max(len(line) for line in text.splitlines()) < 200 and "\x1b" not in text  # plain text


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--against", "6.16", "--ignore", "smell"], "'smell'"),
        (["--against", "6.16", "--ignore", ",".join(LEVELS)], "nothing is left"),
        (["--against", "9.9"], "9.9"),
        (["--against", "6.16", "--budget", "-1"], "--budget"),
        (["--against", "6.16", "--budget", "1", "--examples", "2"], "not both"),
    ],
)
def test_diff_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(["diff", "--kernel", "6.16", "--no-corpus", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err


def test_export_of_a_difference_is_a_test_that_fails_once_they_agree(tmp_path: Path) -> None:
    rep = corpus.load(_difference(tmp_path))
    text = export.to_pytest(rep)
    for against, passes in (("6.18.8", True), ("6.16", False)):
        module: dict[str, object] = {}
        exec(compile(text.replace("AGAINST = '6.18.8'", f"AGAINST = {against!r}"), "exported.py", "exec"), module)
        [test] = [f for name, f in module.items() if name.startswith("test_")]
        if passes:
            test()  # type: ignore[operator]
        else:
            with pytest.raises(AssertionError, match="no longer differ"):
                test()  # type: ignore[operator]


def test_minimize_refuses_a_difference_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["minimize", str(_difference(tmp_path))]) == 2
    assert "reduced by `rmapfuzz diff`" in capsys.readouterr().err


def test_without_fail_alloc_the_7_0_rework_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """Lorenzo Stoakes' 2026 anon_vma rework (fixed) against 6.18.8: allocation failures aside, the
    same behaviour at every level (the bench runs the million-step version)."""
    code = main(["diff", "--kernel", "7.0-rc+3a206a86", "--against", "6.18.8", "--without", "fail_alloc",
                 "--examples", "150", "--seed", "1", "--no-corpus", "--json"])  # fmt: skip
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["finds"] == [] and data["without"] == ["fail_alloc"] and data["steps"] > 5000
    assert main(["diff", "--kernel", "6.16", "--against", "6.16", "--without", "mmap", "--no-corpus"]) == 2
    assert "'mmap' is not an op that can be left out" in capsys.readouterr().err
