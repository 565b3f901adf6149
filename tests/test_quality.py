"""The house rules as tests: ruff (lint and format) and mypy (strict) are clean; the docs the code
cites are in the repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_lint_and_format() -> None:
    lint = _run(sys.executable, "-m", "ruff", "check", "rmapfuzz", "tests", "bench")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _run(sys.executable, "-m", "ruff", "format", "--check", "rmapfuzz", "tests", "bench")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def _anchors(doc: Path) -> set[str]:
    """The GitHub anchors of a markdown file's headings (code fences skipped, repeats numbered)."""
    out: set[str] = set()
    seen: dict[str, int] = {}
    fence = False
    for line in doc.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        match = None if fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match is None:
            continue
        anchor = "".join(c for c in match.group(1).lower() if c.isalnum() or c in " -_").replace(" ", "-")
        n = seen.get(anchor, 0)
        seen[anchor] = n + 1
        out.add(anchor if n == 0 else f"{anchor}-{n}")
    return out


def test_every_docs_reference_resolves_inside_the_repository() -> None:
    """Docstrings, tests and docs cite ``docs/FILE.md#anchor``: each anchor is a heading there, and
    nothing cites documents the repository does not hold."""
    anchors = {doc.name: _anchors(doc) for doc in (ROOT / "docs").glob("*.md")}
    files = [p for d in ("rmapfuzz", "tests", "bench", "docs", "strategies") for p in (ROOT / d).rglob("*")
             if p.suffix in (".py", ".md", ".toml")] + [ROOT / "README.md"]  # fmt: skip
    cited = 0
    for path in files:
        if path == Path(__file__):  # this test names the patterns it looks for
            continue
        text = path.read_text()
        assert not re.search(r"kernel-rmap\.md|live-kernel\.md|\.\./shared|/work/shared", text), path
        for doc, anchor in re.findall(r"docs/([\w.-]+\.md)#([\w-]+)", text):
            cited += 1
            assert anchor in anchors.get(doc, set()), f"{path.relative_to(ROOT)}: docs/{doc}#{anchor}"
    assert cited > 30
