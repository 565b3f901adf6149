"""Reproducer files: round trip, hand-written files, malformed files, atomic and concurrent saves."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from rmapfuzz import corpus, ops
from rmapfuzz.corpus import CorpusError, Reproducer

# Bug A: vma_adjust imports the anon_vma but clones the importer's own (empty) chain.
BUG_A_STEPS: list[dict[str, Any]] = [
    {"op": "mmap", "pid": 0, "start": 0, "pages": 3, "prot": "rw"},
    {"op": "mprotect", "pid": 0, "start": 1, "pages": 1, "prot": "rwx"},
    {"op": "write", "pid": 0, "addr": 2},
    {"op": "mprotect", "pid": 0, "start": 2, "pages": 1, "prot": "rwx"},
]
BUG_A_VIOLATION = {"invariant": "merge-superset", "step": 3, "message": "vma_adjust: ..."}


def bug_a(padding: int = 0, **kw: Any) -> Reproducer:
    """Bug A on 2.6.34-rc3, with ``padding`` harmless reads in front (a longer reproducer)."""
    pad = [{"op": "read", "pid": 0, "addr": 7}] * padding
    steps = ops.parse_steps(pad + BUG_A_STEPS, 8)
    violation = dict(BUG_A_VIOLATION, step=3 + padding)
    return Reproducer(kernel="2.6.34-rc3", window=8, steps=steps, violation=violation, **kw)


def test_round_trip(tmp_path: Path) -> None:
    rep = bug_a(found={"seed": 42, "strategy": "default", "examples": 17}, minimal={"shrunk": True})
    text = corpus.dumps(rep)
    path = tmp_path / "r.json"
    path.write_text(text)
    back = corpus.load(path)
    assert back == rep
    assert back.path == path
    assert corpus.dumps(back) == text


def test_dumps_layout() -> None:
    text = corpus.dumps(bug_a())
    data = json.loads(text)
    assert list(data) == [f for f in corpus._FIELDS if f != "against"]  # "against": differences only
    assert data["format"] == "rmapfuzz-reproducer"
    assert data["version"] == 1  # what version 2 added is not used here: older readers still read it
    assert data["signature"] == "2.6.34-rc3:merge-superset:mprotect"
    lines = text.splitlines()
    # one step per line, compact JSON
    assert lines[-4] == '    {"op": "write", "pid": 0, "addr": 2},'
    assert sum(line.strip().startswith('{"op"') for line in lines) == 4


def test_signature_shapes() -> None:
    assert bug_a().signature == "2.6.34-rc3:merge-superset:mprotect"
    steps = ops.parse_steps(
        [
            {"op": "mmap", "pid": 0, "start": 0, "pages": 2, "prot": "rw"},
            {
                "op": "mremap",
                "pid": 0,
                "start": 0,
                "pages": 1,
                "new_start": 4,
                "new_pages": 1,
                "flags": ["fixed", "maymove"],
            },
            {"op": "madvise", "pid": 0, "start": 0, "pages": 1, "advice": "dontneed"},
        ],
        8,
    )
    rep = Reproducer("2.6.34", 8, steps, violation={"invariant": "rmap-complete", "step": 1, "message": ""})
    assert rep.signature == "2.6.34:rmap-complete:mremap-maymove-fixed"
    rep.violation = {"invariant": "no-dangling", "step": 2, "message": ""}
    assert rep.signature == "2.6.34:no-dangling:madvise-dontneed"
    assert corpus.filename(rep.signature) == "2.6.34--no-dangling--madvise-dontneed.json"
    assert Reproducer("2.6.34", 8, steps[:1]).signature == "2.6.34:clean:mmap"
    noreserve: list[ops.Op] = [ops.Mmap(0, 0, 2, "rw", ("noreserve",))]
    assert Reproducer("2.6.34", 8, noreserve).signature == "2.6.34:clean:mmap-noreserve"


def test_hand_written_minimal_file(tmp_path: Path) -> None:
    path = tmp_path / "hand.json"
    path.write_text(json.dumps({"kernel": "2.6.34-rc3", "window": 8, "steps": BUG_A_STEPS}))
    rep = corpus.load(path)
    assert rep.kernel == "2.6.34-rc3" and rep.window == 8 and len(rep.steps) == 4
    assert rep.violation is None and rep.found == {} and rep.kind == "violation" and rep.minimal is None


BAD_FILES = {
    "not-json": ("{\n  kernel: 1\n}\n", "not JSON"),
    "truncated": (corpus.dumps(bug_a())[:200], "truncated"),
    "empty": ("", "empty"),
    "list": ("[1, 2]", "not a reproducer"),
    "missing-steps": (json.dumps({"kernel": "2.6.34", "window": 8}), "missing field 'steps'"),
    "missing-kernel": (json.dumps({"window": 8, "steps": []}), "missing field 'kernel'"),
    "future": (json.dumps({"version": 99, "kernel": "2.6.34", "window": 8, "steps": []}), "newer rmapfuzz"),
    "bad-step": (
        json.dumps({"kernel": "2.6.34", "window": 8, "steps": [*BUG_A_STEPS, {"op": "mmap", "pid": 0}]}),
        "step 4",
    ),
    "outside-window": (json.dumps({"kernel": "2.6.34", "window": 2, "steps": BUG_A_STEPS}), "step 0"),
    "unknown-kernel": (json.dumps({"kernel": "2.4.0", "window": 8, "steps": []}), "unknown kernel '2.4.0'"),
    "bad-window": (json.dumps({"kernel": "2.6.34", "window": "8", "steps": []}), "window"),
    "unknown-invariant": (
        json.dumps({"kernel": "2.6.34", "window": 8, "steps": BUG_A_STEPS, "violation": {"invariant": "x", "step": 0}}),
        "unknown invariant",
    ),
    "violation-step": (
        json.dumps(
            {"kernel": "2.6.34", "window": 8, "steps": BUG_A_STEPS, "violation": {"invariant": "singleton", "step": 9}}
        ),
        "step 9",
    ),
    "bad-kind": (json.dumps({"kernel": "2.6.34", "window": 8, "steps": [], "kind": "?"}), "kind"),
    "other-format": (json.dumps({"format": "x", "kernel": "2.6.34", "window": 8, "steps": []}), "format"),
    "unknown-field": (json.dumps({"kernel": "2.6.34", "window": 8, "steps": [], "sped": 1}), "unknown field 'sped'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_files(tmp_path: Path, case: str) -> None:
    text, needle = BAD_FILES[case]
    path = tmp_path / f"{case}.json"
    path.write_text(text)
    with pytest.raises(CorpusError) as info:
        corpus.load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert needle in message
    assert path.read_text() == text  # never modified


def test_not_json_names_line(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{\n"kernel": "2.6.34",\n"window": 8 8,\n"steps": []}')
    with pytest.raises(CorpusError, match="line 3"):
        corpus.load(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such file"):
        corpus.load(tmp_path / "nope.json")
    with pytest.raises(CorpusError, match="no such corpus directory"):
        corpus.iter_corpus(tmp_path / "nope")


def test_save_dedup(tmp_path: Path) -> None:
    path, status = corpus.save(tmp_path, bug_a(padding=2))
    assert status == "new"
    assert path.name == "2.6.34-rc3--merge-superset--mprotect.json"
    assert len(corpus.load(path).steps) == 6
    assert corpus.save(tmp_path, bug_a(padding=3)) == (path, "duplicate")
    assert corpus.save(tmp_path, bug_a(padding=2)) == (path, "duplicate")
    assert len(corpus.load(path).steps) == 6
    assert corpus.save(tmp_path, bug_a()) == (path, "shorter")
    assert len(corpus.load(path).steps) == 4
    assert corpus.iter_corpus(tmp_path) == [path]
    assert not list(tmp_path.glob(".tmp-*"))  # no temp files left behind


def test_save_replaces_unreadable(tmp_path: Path) -> None:
    target = tmp_path / corpus.filename(bug_a().signature)
    target.write_text("{")
    assert corpus.save(tmp_path, bug_a(padding=1)) == (target, "shorter")
    assert len(corpus.load(target).steps) == 5


def _save_worker(args: tuple[str, int]) -> str:
    directory, padding = args
    return corpus.save(Path(directory), bug_a(padding=padding))[1]


def test_concurrent_saves(tmp_path: Path) -> None:
    paddings = [7, 3, 5, 0, 6, 2, 4, 1] * 3
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(6) as pool:
        statuses = pool.map(_save_worker, [(str(tmp_path), p) for p in paddings])
    assert statuses.count("new") == 1
    files = corpus.iter_corpus(tmp_path)
    assert len(files) == 1
    rep = corpus.load(files[0])
    assert len(rep.steps) == 4  # the shortest one won
    assert not list(tmp_path.glob(".tmp-*"))


def test_check_reproducer() -> None:
    results = corpus.check_reproducer(bug_a(), ["2.6.34"])
    assert [(r.case, r.status) for r in results] == [("own", "ok"), ("2.6.34", "ok")]
    stale = Reproducer("2.6.34", 8, bug_a().steps, violation=BUG_A_VIOLATION)
    assert corpus.check_reproducer(stale)[0].status == "stale"
    changed = Reproducer("2.6.34-rc3", 8, bug_a().steps, violation=dict(BUG_A_VIOLATION, invariant="singleton"))
    assert corpus.check_reproducer(changed)[0].status == "changed"
    fails = corpus.check_reproducer(bug_a(), ["2.6.34-rc3"])
    assert fails[1].status == "fail"
    divergence = bug_a(kind="divergence")
    assert corpus.check_reproducer(divergence, ["2.6.34-rc3"])[1].status == "skipped"


def test_divergence_entries_record_the_divergence(tmp_path: Path) -> None:
    """A divergence entry (rmapfuzz oracle) records the pseudo-invariant ``divergence``; the gate skips it."""
    steps = '[{"op": "mmap", "pid": 0, "start": 0, "pages": 1, "prot": "rw"}]'
    good = tmp_path / "good.json"
    good.write_text(
        '{"kernel": "current", "window": 8, "kind": "divergence", "steps": ' + steps + ", "
        '"violation": {"invariant": "divergence", "step": 0, "message": "L0 differs"}}'
    )
    rep = corpus.load(good)
    assert rep.invariant == "divergence"
    assert {r.status for r in corpus.check_reproducer(rep, ["current"])} == {"skipped"}
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"kernel": "current", "window": 8, "kind": "divergence", "steps": ' + steps + ", "
        '"violation": {"invariant": "merge-superset", "step": 0, "message": ""}}'
    )
    with pytest.raises(corpus.CorpusError, match="a divergence entry records 'divergence'"):
        corpus.load(bad)
