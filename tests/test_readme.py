"""The README's "Using it" commands run as written: flags that exist, files that are there, exit 0
or 1.  The only changes made to them: budgets shortened to 2 s, the placeholders FILE.json and
my_patch.py given a real reproducer and a real overlay, and the run done in a scratch copy of the
corpus (``minimize --write`` rewrites a file)."""

from __future__ import annotations

import glob
import re
import shlex
import shutil
from pathlib import Path

import pytest

from rmapfuzz.cli import main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def using_it_commands() -> list[str]:
    section = README.split("## Using it", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.startswith("    rmapfuzz ")]
    return [re.split(r"\s{2,}#", line)[0].strip() for line in lines]


def as_run_here(command: str) -> list[str]:
    command = re.sub(r" \[--svg [^]]*\]", "", command)  # the alternatives in brackets: the plain form
    command = command.replace("corpus/FILE.json", "corpus/2.6.34-rc3--merge-superset--mprotect.json")
    command = command.replace("my_patch.py", "examples/mremap_dup_source.py")
    argv = shlex.split(command)[1:]
    expanded: list[str] = []
    for arg in argv:
        expanded += sorted(glob.glob(arg)) if "*" in arg else [arg]
    if "--budget" in expanded:
        expanded[expanded.index("--budget") + 1] = "2"
    elif expanded[0] in ("fuzz", "diff") or "--exhaustive" in expanded:
        expanded += ["--budget", "2"]
    return expanded


COMMANDS = using_it_commands()


def test_the_section_is_found() -> None:
    assert len(COMMANDS) >= 12 and all(c.startswith("rmapfuzz ") for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "corpus", tmp_path / "corpus")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    argv = as_run_here(command)
    if "--graph-svg" in argv and shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz; .ci/run does)")
    code = main(argv)
    _, err = capsys.readouterr()
    if argv[0] == "oracle" and code == 2 and "unavailable" in err:
        pytest.skip(f"the live oracle cannot run here: {err.strip()}")
    assert code in (0, 1), f"{command!r} as {argv}: exit {code}: {err}"
