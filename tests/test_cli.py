"""The command line: kernels, invariants, replay, show, check; bad input is one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from rmapfuzz import corpus
from rmapfuzz.cli import main
from rmapfuzz.invariants import DEFAULT
from rmapfuzz.kernels import KERNELS
from tests.test_corpus import BAD_FILES, bug_a

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bug_a_file(tmp_path: Path) -> Path:
    path, _ = corpus.save(tmp_path / "corpus", bug_a())
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_kernels_listing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "kernels", "--json")
    assert code == 0
    data = json.loads(out)
    assert [k["name"] for k in data] == list(KERNELS)
    rc3 = data[0]
    assert rc3["name"] == "2.6.34-rc3"
    assert {b["letter"] for b in rc3["bugs"]} >= {"A", "B"}
    assert all(b["description"] for b in rc3["bugs"])
    assert rc3["commits"][0]["id"] and rc3["commits"][0]["title"]
    code, out, _ = run(capsys, "kernels")
    assert code == 0 and "2.6.34-rc3" in out and "bug A" in out


def test_invariants_listing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "invariants", "--json")
    assert code == 0
    assert [i["name"] for i in json.loads(out)] == list(DEFAULT)
    assert all(i["ref"] and i["assumption"] for i in json.loads(out))
    code, out, _ = run(capsys, "invariants")
    assert code == 0 and "merge-superset" in out


def test_replay(capsys: pytest.CaptureFixture[str], bug_a_file: Path) -> None:
    code, out, _ = run(capsys, "replay", str(bug_a_file))
    assert code == 1
    assert "merge-superset at step 3" in out
    code, out, _ = run(capsys, "replay", str(bug_a_file), "--json")
    assert code == 1
    assert json.loads(out) == {
        "file": str(bug_a_file),
        "kernel": "2.6.34-rc3",
        "violation": {"invariant": "merge-superset", "step": 3, "message": json.loads(out)["violation"]["message"]},
    }
    code, out, _ = run(capsys, "replay", str(bug_a_file), "--json", "--kernel", "2.6.34")
    assert code == 0
    assert json.loads(out)["violation"] is None and json.loads(out)["kernel"] == "2.6.34"


def test_replay_several_files_json_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path, bug_a_file: Path) -> None:
    clean = tmp_path / "clean.json"
    clean.write_text(json.dumps({"kernel": "2.6.34", "window": 8, "steps": [{"op": "fork", "pid": 0}]}))
    code, out, _ = run(capsys, "replay", str(clean), str(bug_a_file), "--json")
    assert code == 1
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["violation"] is None for line in lines] == [True, False]
    code, out, _ = run(capsys, "replay", str(clean))
    assert code == 0 and "clean" in out


def test_replay_invariants(capsys: pytest.CaptureFixture[str], bug_a_file: Path) -> None:
    code, out, _ = run(capsys, "replay", str(bug_a_file), "--json", "--invariants", "no-dangling,rmap-complete")
    assert code == 1
    assert json.loads(out)["violation"]["invariant"] == "no-dangling"
    code, out, _ = run(capsys, "replay", str(bug_a_file), "--json", "--invariants", "page-index")
    assert code == 0


def test_replay_trace(capsys: pytest.CaptureFixture[str], bug_a_file: Path) -> None:
    code, out, _ = run(capsys, "replay", str(bug_a_file), "--trace")
    assert code == 1
    for i in range(4):
        assert f"step {i}" in out
    assert "mprotect(P0, [2,3), rwx)" in out
    assert "P0:[1,3)" in out and "AV1" in out
    code, out, _ = run(capsys, "replay", str(bug_a_file), "--trace", "--json")
    trace = json.loads(out)["trace"]
    assert [s["result"] for s in trace] == ["ok"] * 4
    assert trace[3]["violations"][0]["invariant"] == "merge-superset"


def test_show(capsys: pytest.CaptureFixture[str], tmp_path: Path, bug_a_file: Path) -> None:
    code, out, _ = run(capsys, "show", str(bug_a_file))
    assert code == 1
    assert "merge-superset broken at step 3" in out
    svg = tmp_path / "out.svg"
    code, out, _ = run(capsys, "show", str(bug_a_file), "--svg", str(svg))
    assert code == 1
    text = svg.read_text()
    assert text.lstrip().startswith("<svg") and "merge" in text
    code, out, _ = run(capsys, "show", str(bug_a_file), "--json")
    data = json.loads(out)
    assert data["violation"]["invariant"] == "merge-superset"
    assert len(data["steps"]) == 4
    after = data["steps"][3]["state"]
    assert after["processes"][0]["vmas"][1] == {
        "name": "P0:[1,3)",
        "start": 1,
        "end": 3,
        "flags": "rwx ac",
        "pgoff": 1,
        "anon_vma": "AV1",
        "chain": [],
    }
    assert after["anon_vmas"] == [{"name": "AV1", "freed": True, "vmas": []}]
    assert data["steps"][2]["state"]["processes"][0]["ptes"][0]["anon_vma"] == "AV1"


def test_check(capsys: pytest.CaptureFixture[str], tmp_path: Path, bug_a_file: Path) -> None:
    directory = bug_a_file.parent
    junit = tmp_path / "junit.xml"
    code, out, _ = run(capsys, "check", str(directory), "--kernel", "2.6.34", "--junit", str(junit))
    assert code == 0, out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "2" and suite.get("failures") == "0"
    # the reproducer does not replay clean on its own buggy kernel
    code, out, _ = run(capsys, "check", str(directory), "--kernel", "2.6.34-rc3")
    assert code == 1 and "FAIL" in out
    # a divergence entry (judged by `rmapfuzz oracle` against the live kernel) is skipped
    divergence = bug_a(kind="divergence")
    divergence.violation = {"invariant": "divergence", "step": 3, "message": "L0: the kernel showed ..."}
    (directory / "divergence.json").write_text(corpus.dumps(divergence))
    code, out, _ = run(capsys, "check", str(directory), "--kernel", "2.6.34-rc3", "--junit", str(junit))
    assert code == 1 and "SKIPPED" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("skipped") == "2" and suite.get("failures") == "1"


def test_check_flags_stale_and_changed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    directory = tmp_path / "corpus"
    directory.mkdir()
    stale = bug_a()
    stale.kernel = "2.6.34"  # recorded a violation that 2.6.34 does not have
    (directory / "stale.json").write_text(corpus.dumps(stale))
    changed = bug_a()
    changed.violation = {"invariant": "singleton", "step": 3, "message": ""}
    (directory / "changed.json").write_text(corpus.dumps(changed))
    before = {p.name: p.read_text() for p in directory.iterdir()}
    junit = tmp_path / "j.xml"
    code, out, _ = run(capsys, "check", str(directory), "--junit", str(junit))
    assert code == 1
    assert "STALE" in out and "CHANGED" in out
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "2"
    failures = {f.get("type") for f in suite.iter("failure")}
    assert failures == {"stale", "changed"}
    assert {p.name: p.read_text() for p in directory.iterdir()} == before


def test_check_empty_and_missing(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _ = run(capsys, "check", str(tmp_path))
    assert code == 0
    code, _, err = run(capsys, "check", str(tmp_path / "nope"))
    assert code == 2 and err.startswith("rmapfuzz: error: ")


def test_check_unreadable_entry(capsys: pytest.CaptureFixture[str], tmp_path: Path, bug_a_file: Path) -> None:
    bad = bug_a_file.parent / "bad.json"
    bad.write_text("{")
    junit = tmp_path / "j.xml"
    code, _, err = run(capsys, "check", str(bug_a_file.parent), "--junit", str(junit))
    assert code == 2
    assert err.count("\n") == 1 and "bad.json" in err and "Traceback" not in err
    assert ET.parse(junit).getroot().find("testsuite").get("errors") == "1"  # type: ignore[union-attr]
    assert bad.read_text() == "{"


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str) -> None:
    text, needle = BAD_FILES[case]
    path = tmp_path / f"{case}.json"
    path.write_text(text)
    for argv in (["replay", str(path)], ["show", str(path)], ["replay", "--json", str(path)]):
        code, out, err = run(capsys, *argv)
        assert code == 2
        assert err.startswith("rmapfuzz: error: ") and err.count("\n") == 1
        assert needle in err and "Traceback" not in err
        # under --json the same error is a JSON object on stdout; otherwise stdout stays empty
        assert json.loads(out)["error"] in err if "--json" in argv else out == ""
    assert path.read_text() == text


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "{file}", "--kernel", "2.4.0"],
        ["replay", "{file}", "--invariants", "nope"],
        ["replay", "{dir}/missing.json"],
        ["show", "{dir}/missing.json"],
        ["show", "{dir}"],
        ["check", "{dir}", "--kernel", "2.4.0"],
    ],
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], bug_a_file: Path, argv: list[str]) -> None:
    args = [a.format(file=bug_a_file, dir=bug_a_file.parent) for a in argv]
    code, out, err = run(capsys, *args)
    assert code == 2
    assert err.startswith("rmapfuzz: error: ") and err.count("\n") == 1
    assert out == ""


def test_usage_error_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "replay")
    assert code == 2 and "rmapfuzz replay: error:" in err
    code, _, _ = run(capsys, "frobnicate")
    assert code == 2


def test_subprocess_bad_file_and_plain_output(tmp_path: Path, bug_a_file: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"kernel": "2.6.34", "window": 8, "steps": [{"op": "mmap"')
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    proc = subprocess.run(
        [sys.executable, "-m", "rmapfuzz", "replay", str(bad)], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr == f"rmapfuzz: error: {bad}: truncated: the JSON ends early (line 1)\n"
    proc = subprocess.run(
        [sys.executable, "-m", "rmapfuzz", "show", str(bug_a_file)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 1
    assert "\x1b[" not in proc.stdout  # plain when not a terminal
    assert "merge-superset broken at step 3" in proc.stdout


def _plugin_flag() -> list[str]:
    """``-p rmapfuzz.pytest_plugin`` unless the installed package already registers it (pytest11)."""
    installed = any(ep.value == "rmapfuzz.pytest_plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "rmapfuzz.pytest_plugin"]


def test_pytest_plugin(tmp_path: Path) -> None:
    directory = tmp_path / "corpus"
    corpus.save(directory, bug_a())
    stale = bug_a()
    stale.kernel = "2.6.34"
    corpus.save(directory, stale)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\ntestpaths = corpus tests\nrmapfuzz_corpus = corpus\nrmapfuzz_kernels = 2.6.34\n"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_mine.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from rmapfuzz.pytest_plugin import corpus_cases

            @pytest.mark.parametrize("path", corpus_cases("corpus"))
            def test_entry(path, rmapfuzz_check):
                rmapfuzz_check(path, kernels=[])
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *_plugin_flag(), "-q", "-rA", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "PASSED corpus/2.6.34-rc3--merge-superset--mprotect.json::own" in out
    assert "PASSED corpus/2.6.34-rc3--merge-superset--mprotect.json::clean-on-2.6.34" in out
    assert "FAILED corpus/2.6.34--merge-superset--mprotect.json::own" in out
    assert "PASSED corpus/2.6.34--merge-superset--mprotect.json::clean-on-2.6.34" in out
    assert "PASSED tests/test_mine.py::test_entry[2.6.34-rc3--merge-superset--mprotect.json]" in out
    assert "FAILED tests/test_mine.py::test_entry[2.6.34--merge-superset--mprotect.json]" in out


def test_coverage_static_listing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "coverage", "--kernel", "3.7", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["kernel"] == "3.7" and data["reached"] == 0
    assert "vma_merge: case 8, next absorbs the middle" in data["unreached"]
    # 3.7 has no MADV_WIPEONFORK: its fork branch is listed with the reason, not as a gap
    assert "4.14" in data["beyond_the_language"]["dup_mmap: VM_WIPEONFORK copy starts unfaulted"]
    assert data["reachable"] == data["points"] - len(data["beyond_the_language"])


def test_coverage_campaign_and_fuzz_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_md = tmp_path / "cov.md"
    argv = ["coverage", "--kernel", "6.16", "--budget", "2", "--seed", "1", "--json", "-o", str(out_md)]
    code, out, _ = run(capsys, *argv)
    assert code == 0
    data = json.loads(out)
    assert data["seed"] == 1 and 0 < data["reached"] <= data["reachable"]
    assert sum(1 for n in data["hits"].values() if n) == data["reached"]
    assert out_md.read_text().startswith("# Coverage of the 6.16 ")  # "model", or "then, with found bugs' fixes"
    out_json = tmp_path / "fuzz-cov.json"
    code, _, _ = run(capsys, "fuzz", "--kernel", "current", "--examples", "20", "--seed", "2", "--no-database",
                     "--corpus", str(tmp_path / "corpus"), "--coverage", str(out_json))  # fmt: skip
    assert code == 0
    assert json.loads(out_json.read_text())["reached"] > 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["coverage", "--kernel", "2.4.0"], "2.4.0"),
        (["coverage", "--budget", "-1"], "--budget"),
        (["coverage", "--budget", "1", "--strategy", "no-such"], "no-such"),
        (["coverage", "-o", "/nonexistent/dir/c.md"], "cannot write"),
    ],
)
def test_coverage_bad_input(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith("rmapfuzz: error: ") and err.count("\n") == 1
    assert needle in err and out == ""


def test_kernels_where(capsys: pytest.CaptureFixture[str]) -> None:
    """The definition a generation runs, then each one it overrides through super()."""
    code, out, _ = run(capsys, "kernels", "--where", "anon_vma_fork", "3.19+2555283e", "--json")
    assert code == 0
    found = json.loads(out)
    assert [d["generation"] for d in found] == ["3.19-rc4+2555283e", "3.19-rc4", ""]
    assert found[0]["file"] == "rmapfuzz/kernels/fix_2555283e.py" and found[-1]["file"] == "rmapfuzz/model/rmap.py"
    code, out, _ = run(capsys, "kernels", "--where", "vma_merge", "current")
    assert code == 0 and "rmapfuzz/model/mmap.py" in out
    code, out, err = run(capsys, "kernels", "--where", "vma_merg", "3.7")
    assert code == 2 and "did you mean vma_merge" in err and out == ""
    code, _, err = run(capsys, "kernels", "--where", "vma_merge", "2.4.0")
    assert code == 2 and "2.4.0" in err


def test_version_and_unexpected_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """--version; an unexpected failure is one line and exit 3 (the traceback only on request);
    an interrupt is exit 130."""
    import rmapfuzz.cli as cli

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("rmapfuzz ")

    def broken(_args: object) -> int:
        raise OSError(28, "No space left on device")

    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_invariants", broken)  # the parser binds it when main() builds it
    code, out, err = run(capsys, "invariants")
    assert code == 3 and out == "" and err.count("\n") == 1
    assert "infrastructure failure" in err and "No space left" in err
    monkeypatch.setattr(cli, "cmd_invariants", interrupted)
    code, _, err = run(capsys, "invariants")
    assert code == 130 and "interrupted" in err
    monkeypatch.setattr(cli, "cmd_invariants", broken)
    monkeypatch.setenv("RMAPFUZZ_DEBUG", "1")
    with pytest.raises(OSError):
        cli.main(["invariants"])


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["fuzz", "--workers", "1000"], "--workers"),
        (["fuzz", "--shrink-seconds", "-1"], "--shrink-seconds"),
        (["fuzz", "--corpus", "{file}"], "--corpus"),
        (["fuzz", "--corpus", "{dir}", "--database", "/proc/rmapfuzz-db"], "--database"),
    ],
)
def test_fuzz_checks_its_flags_and_places_before_starting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], needle: str
) -> None:
    (tmp_path / "a-file").write_text("")
    args = [a.format(file=tmp_path / "a-file", dir=tmp_path / "corpus") for a in argv]
    code, out, err = run(capsys, *args, "--budget", "1")
    assert code == 2 and out == "" and err.count("\n") == 1 and needle in err


def test_show_of_a_long_reproducer_draws_its_last_states_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    steps = [{"op": "mmap", "pid": 0, "start": 0, "pages": 8, "prot": "rw"}]
    steps += [{"op": "write" if i % 2 else "read", "pid": 0, "addr": i % 8} for i in range(599)]
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"kernel": "current", "window": 8, "steps": steps}))
    assert main(["show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "states drawn for the last 50 steps" in out
    assert out.count("after step ") == 50 and "after step 599" in out and "step 0 " in out


def test_fuzz_off_a_terminal_prints_progress_lines_and_names_known_bugs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from rmapfuzz import live

    monkeypatch.setattr(live, "PROGRESS_EVERY", 0.0)
    code = main(["fuzz", "--kernel", "2.6.34-rc3", "--budget", "3", "--seed", "5", "--no-database", "--keep-going",
                 "--corpus", str(tmp_path)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1, err
    # each find's title, from classification: the catalogued bug and its fix
    assert "known bug B: anon_vma_prepare borrows a neighbour's" in out and "(fixed by d0e9fe1758f2)" in out
    lines = [line for line in err.splitlines() if line.startswith("rmapfuzz: ")]
    assert lines and all(" test cases, " in line and " steps (" in line and " found" in line for line in lines)


def test_check_as_tap_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    corpus_dir = Path(__file__).resolve().parent.parent / "corpus"
    for name in ("2.6.34-rc3--merge-superset--mprotect.json", "3.19--reuse-safe--fork.json"):
        (tmp_path / name).write_text((corpus_dir / name).read_text())
    (tmp_path / "bad.json").write_text("{")
    moved = tmp_path / "3.19--reuse-safe--fork.json"  # recorded as another invariant: its own check fails
    data = json.loads(moved.read_text())
    data["violation"]["invariant"] = "counters"
    moved.write_text(json.dumps(data))
    code = main(["check", str(tmp_path), "--kernel", "2.6.34-rc3", "--tap"])
    out = capsys.readouterr().out.splitlines()
    assert code == 2 and out[:2] == ["TAP version 13", "1..5"]
    assert "ok 1 2.6.34-rc3--merge-superset--mprotect.json::own" in out
    assert "ok 2 2.6.34-rc3--merge-superset--mprotect.json::2.6.34-rc3 # SKIP" in out[3]  # it carries bug A
    assert "not ok 3 3.19--reuse-safe--fork.json::own" in out
    assert "not ok 5 bad.json::load" in out
    code = main(["check", str(tmp_path), "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 2 and {r["status"] for r in rows} == {"ok", "changed", "unreadable"} and len(rows) == 3


def test_errors_under_json_are_json_too(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["diff", "--kernel", "6.61", "--against", "6.16", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "did you mean 6.1, 6.16" in err
    assert json.loads(out) == {"error": err.removeprefix("rmapfuzz: error: ").rstrip("\n"), "exit_code": 2}
    code = main(["replay", "/nonexistent.json", "--json"])
    out, _ = capsys.readouterr()
    assert code == 2 and json.loads(out)["error"] == "/nonexistent.json: no such file"


def test_show_gives_each_anon_vma_the_fields_its_generation_has(capsys: pytest.CaptureFixture[str]) -> None:
    entry = str(Path(__file__).resolve().parent.parent / "corpus" / "3.19--reuse-safe--fork.json")
    for kernel, present, absent in (("3.19", {"root", "parent", "refcount", "degree"}, {"num_children"}),
                                    ("current", {"root", "num_children", "num_active_vmas"}, {"degree"}),
                                    ("2.6.34-rc3", set(), {"root", "refcount", "degree"})):  # fmt: skip
        main(["show", entry, "--kernel", kernel, "--json"])
        avs = json.loads(capsys.readouterr().out)["steps"][-1]["state"]["anon_vmas"]
        assert avs and all(present <= av.keys() and not absent & av.keys() for av in avs), kernel


def test_show_says_what_each_step_changed(capsys: pytest.CaptureFixture[str]) -> None:
    """
    A.   mmap [0,1) none, mmap [1,2) rw, write 1 (AV1), then mprotect [0,1) rw merges A into B
    AA   the changes: both VMAs gone, [0,2) new without a chain (bug A), AV1 freed
    """
    entry = str(Path(__file__).resolve().parent.parent / "corpus" / "2.6.34-rc3--merge-superset--mprotect.json")
    main(["show", entry])
    changes = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  changed: ")]
    assert changes[0] == "changed: +P0 [0,1) --- pgoff=0 anon=- chain=[]"
    assert "+AV1 links P0:[1,2)" in changes[2] and "+P0 pte 1 page1->AV1@1 w" in changes[2]
    assert changes[3].startswith("changed: -P0 [0,1); -P0 [1,2); +P0 [0,2) rw- ac pgoff=0 anon=AV1 chain=[]")
    assert changes[3].endswith("~AV1 freed, links nothing")  # freed while P0:[0,2) still points at it


def test_check_fails_a_stale_bug_label_and_relabel_rewrites_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """found.bugs says which catalogued bug an entry shows (the gate skips kernels by it): a label
    that classification no longer agrees with fails the gate until --relabel rewrites it."""
    corpus_dir = Path(__file__).resolve().parent.parent / "corpus"
    entry = tmp_path / "3.19--reuse-safe--fork.json"
    data = json.loads((corpus_dir / entry.name).read_text())
    data["found"]["bugs"] = []  # as an older classification recorded it
    entry.write_text(json.dumps(data))
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "RELABEL" in out and "found.bugs records [] but the steps show [G] on 3.19" in out
    assert main(["check", str(tmp_path), "--relabel"]) == 0
    assert "relabelled 3.19--reuse-safe--fork.json: found.bugs [] -> [G]" in capsys.readouterr().err
    again = json.loads(entry.read_text())
    assert (
        again["found"]["bugs"] == ["G"]
        and again["steps"] == data["steps"]
        and again["found"]["seed"] == data["found"]["seed"]
    )


@pytest.mark.parametrize(("argv", "code"), [(["replay", "--trace"], 0), (["show"], 1)])
def test_a_reader_that_stops_early_leaves_the_commands_own_exit_code(
    tmp_path: Path, argv: list[str], code: int
) -> None:
    """``rmapfuzz show X | head -1``: the reader goes after one line of hundreds of KB; the command
    ends as it would have (0 clean, 1 a violation shown), nothing on stderr."""
    steps = [{"op": "mmap", "pid": 0, "start": 0, "pages": 3, "prot": "rw"}]
    steps += [{"op": "read", "pid": 0, "addr": 7}] * 9000  # SEGV: an unmapped page, nothing changes
    if code:  # bug A's last three steps
        steps += [{"op": "mprotect", "pid": 0, "start": 1, "pages": 1, "prot": "rwx"},
                  {"op": "write", "pid": 0, "addr": 2},
                  {"op": "mprotect", "pid": 0, "start": 2, "pages": 1, "prot": "rwx"}]  # fmt: skip
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"kernel": "2.6.34-rc3", "window": 8, "steps": steps}))
    command = [sys.executable, "-m", "rmapfuzz", *argv, str(path)]
    assert len(subprocess.run(command, capture_output=True, check=False).stdout) > 256 * 1024  # past any pipe buffer
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"reproducer")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == code
    assert err == b""
