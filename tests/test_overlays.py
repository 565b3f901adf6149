"""Overlays from a user's file (``--kernel path.py[:Class]``): the examples in examples/ load and do
what their patches do; every way a file can be wrong is one line naming the file (and line)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rmapfuzz import corpus
from rmapfuzz.cli import main
from rmapfuzz.kernels import OverlayError, resolve
from rmapfuzz.replay import replay

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
J = ROOT / "corpus" / "6.16--merge-superset--mremap-maymove-fixed.json"
G = ROOT / "corpus" / "3.19--reuse-safe--fork.json"


def test_the_bug_j_fix_as_a_users_file_fixes_bug_j() -> None:
    """The 61f67c230a5e example: both J reproducers fail on 6.16 and replay clean on it."""
    fixed = resolve(str(EXAMPLES / "mremap_dup_source.py"))
    assert fixed.name == "6.16+patch-61f67c23" and fixed.bugs == ()
    for path in sorted((ROOT / "corpus").glob("6.16--*.json")):
        rep = corpus.load(path)
        assert replay(rep.steps, "6.16", rep.window).violation is not None
        assert replay(rep.steps, fixed, rep.window).violation is None, path.name


def test_the_reuse_patch_leaves_bug_g_alone(capsys: pytest.CaptureFixture[str]) -> None:
    """Wei Yang's 2019 reuse guard is not a fix of CVE-2022-42703: G's reproducer fails on it as on 3.19."""
    overlay = str(EXAMPLES / "clone_reuse_only_on_fork.py")
    code = main(["replay", str(G), "--kernel", overlay, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["violation"]["invariant"] == "reuse-safe"
    code = main(["kernels", "--where", "may_reuse_anon_vma", overlay, "--json"])
    where = json.loads(capsys.readouterr().out)
    assert code == 0 and where[0]["file"].endswith("examples/clone_reuse_only_on_fork.py")
    assert where[0]["generation"] == "3.19+reuse-only-on-fork"


def test_a_campaign_on_a_users_file_saves_reproducers_under_its_name(tmp_path: Path) -> None:
    overlay = str(EXAMPLES / "clone_reuse_only_on_fork.py")
    code = main(["fuzz", "--kernel", overlay, "--keep-going", "--examples", "400", "--seed", "3",
                 "--no-database", "--corpus", str(tmp_path), "--json"])  # fmt: skip
    assert code == 1
    saved = sorted(tmp_path.glob("*.json"))
    assert saved and all(p.name.startswith("3.19+reuse-only-on-fork") for p in saved)
    # the overlay is loaded in this process: its reproducers load and replay by name
    for path in saved:
        rep = corpus.load(path)
        assert rep.kernel == "3.19+reuse-only-on-fork"
        assert replay(rep.steps, rep.kernel, rep.window).violation is not None


BAD_OVERLAYS = {
    "syntax": ("class X(:\n", "bad.py:1: syntax error"),
    "raises": ("import rmapfuzz\n\nx = 1\ny = x / 0\n", "bad.py:4: ZeroDivisionError"),
    "none": ("x = 1\n", "defines 0 overlay classes"),
    "two": (
        "from rmapfuzz.kernels.v6_16 import Linux616\n"
        "class A(Linux616):\n    name = 'a'\nclass B(Linux616):\n    name = 'b'\n",
        "defines 2 overlay classes (A, B)",
    ),
    "no-name": ("from rmapfuzz.kernels.v6_16 import Linux616\nclass A(Linux616):\n    pass\n", "must set its own name"),
    "taken": ("from rmapfuzz.kernels.v6_16 import Linux616\nclass A(Linux616):\n    name = '6.0'\n", "is taken"),
    "bug": (
        "from rmapfuzz.kernels.v6_16 import Linux616\nclass A(Linux616):\n    name = 'x'\n    bugs = ('Z',)\n",
        "unknown: ['Z']",
    ),
    "not-a-generation": (
        "from rmapfuzz.model.syscalls import SyscallMixin\nclass A(SyscallMixin):\n    name = 'x'\n",
        "must subclass a rmapfuzz generation",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_OVERLAYS))
def test_a_bad_overlay_file_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str
) -> None:
    text, needle = BAD_OVERLAYS[case]
    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent(text))
    with pytest.raises(OverlayError, match=r"bad\.py"):
        resolve(str(bad))
    code = main(["replay", str(J), "--kernel", str(bad)])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("rmapfuzz: error: ") and err.count("\n") == 1
    assert needle in err and "Traceback" not in err


def test_missing_file_and_missing_class(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for spec, needle in ((tmp_path / "nope.py", "no such overlay file"),
                         (f"{EXAMPLES / 'mremap_dup_source.py'}:Nope", "no overlay class 'Nope'")):  # fmt: skip
        code = main(["kernels", "--where", "vma_expand", str(spec)])
        _, err = capsys.readouterr()
        assert code == 2 and needle in err


def test_a_reproducer_never_names_a_file(tmp_path: Path) -> None:
    """Loading a reproducer runs no code: a file name in its ``kernel`` field is refused."""
    data = json.loads(J.read_text())
    data["kernel"] = str(EXAMPLES / "mremap_dup_source.py")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(corpus.CorpusError, match="names a file"):
        corpus.load(path)


def test_minimize_takes_the_overlay_file_its_reproducers_were_found_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = str(EXAMPLES / "clone_reuse_only_on_fork.py")
    assert main(["fuzz", "--kernel", overlay, "--examples", "200", "--seed", "3", "--no-database",
                 "--corpus", str(tmp_path), "--json"]) == 1  # fmt: skip
    capsys.readouterr()
    [saved, *_] = sorted(tmp_path.glob("*.json"))
    # a fresh process knows the overlay's name only once it is given the file
    cmd = [sys.executable, "-m", "rmapfuzz", "minimize", str(saved), "--json"]
    alone = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert alone.returncode == 2 and "give it as --kernel FILE" in alone.stderr
    given = subprocess.run([*cmd, "--kernel", overlay], capture_output=True, text=True, timeout=120)
    assert given.returncode == 0, given.stderr
    out = json.loads(given.stdout)
    assert out["steps_after"] <= out["steps_before"]
    assert main(["minimize", str(saved), "--kernel", "3.19", "--write"]) == 2  # would rewrite its kernel
    assert "--write records the file's own kernel" in capsys.readouterr().err
