"""The project's own corpus: every reproducer, one test case each, against its expectation.

Each entry must still break its recorded invariant on the kernel it was found on, and replay
clean on current (6.18.8), which carries none of the catalogued bugs (the same check as the
``rmapfuzz check corpus --kernel current`` gate in .ci/run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rmapfuzz import corpus
from rmapfuzz.pytest_plugin import corpus_cases

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


def test_the_corpus_is_not_empty() -> None:
    assert corpus.iter_corpus(CORPUS)


@pytest.mark.parametrize("path", corpus_cases(CORPUS))
def test_reproducer(path: Path) -> None:
    results = corpus.check_reproducer(corpus.load(path), kernels=["current"])
    assert [r.case for r in results] == ["own", "current"]
    failed = [f"{r.case}: {r.status} {r.detail}" for r in results if not r.ok]
    assert not failed, failed
