"""A pytest plugin: check an rmapfuzz corpus inside another project's test suite.

Registered as the ``rmapfuzz`` pytest11 entry point (or load it with ``-p rmapfuzz.pytest_plugin``).
Two ways to use it:

1. Collection.  Name the corpus and the fixed kernels in the ini file, and let pytest walk the
   corpus directory (put it in ``testpaths`` or pass it on the command line)::

       [tool.pytest.ini_options]
       testpaths = ["tests", "corpus"]
       rmapfuzz_corpus = "corpus"
       rmapfuzz_kernels = ["2.6.34"]

   Every ``*.json`` file directly in that directory becomes test items: ``<file>::own`` (the
   recorded violation still reproduces on the file's own kernel) and ``<file>::clean-on-<kernel>``
   for each fixed kernel (skipped for ``divergence`` entries), exactly as ``rmapfuzz check``.

2. Explicit tests, with the :func:`corpus_cases` helper and the ``rmapfuzz_check`` fixture::

       from rmapfuzz.pytest_plugin import corpus_cases

       @pytest.mark.parametrize("path", corpus_cases("corpus"))
       def test_corpus(path, rmapfuzz_check):
           rmapfuzz_check(path, kernels=["2.6.34"])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rmapfuzz import corpus


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("rmapfuzz_corpus", "rmapfuzz: directory of reproducers to collect (relative to the ini file)")
    parser.addini("rmapfuzz_kernels", "rmapfuzz: fixed kernels that must replay the corpus clean", type="args")


def _corpus_dir(config: pytest.Config) -> Path | None:
    value = config.getini("rmapfuzz_corpus")
    if not value:
        return None
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return (base / str(value)).resolve()


def _kernels(config: pytest.Config) -> list[str]:
    return [str(k) for k in config.getini("rmapfuzz_kernels") or []]


def pytest_report_header(config: pytest.Config) -> str | None:
    directory = _corpus_dir(config)
    if directory is None:
        return None
    kernels = ", ".join(_kernels(config)) or "none"
    return f"rmapfuzz corpus: {directory} (fixed kernels: {kernels})"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    directory = _corpus_dir(parent.config)
    if directory is None or file_path.suffix != ".json" or file_path.parent.resolve() != directory:
        return None
    return ReproducerFile.from_parent(parent, path=file_path)


class ReproducerFailed(Exception):
    """A check of a reproducer did not pass; the message is the report."""


class ReproducerFile(pytest.File):
    """One reproducer file: an item per check, or one failing ``load`` item if it does not load."""

    def collect(self) -> Iterator[pytest.Item]:
        try:
            rep = corpus.load(self.path)
        except corpus.CorpusError as exc:
            yield ReproducerItem.from_parent(self, name="load", rep=None, kernel=None, error=str(exc))
            return
        yield ReproducerItem.from_parent(self, name="own", rep=rep, kernel=None, error=None)
        for kernel in _kernels(self.config):
            yield ReproducerItem.from_parent(self, name=f"clean-on-{kernel}", rep=rep, kernel=kernel, error=None)


class ReproducerItem(pytest.Item):
    """One check of one reproducer: its own kernel (``kernel`` None) or one fixed kernel."""

    def __init__(self, *, rep: corpus.Reproducer | None, kernel: str | None, error: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rep = rep
        self.kernel = kernel
        self.error = error

    def runtest(self) -> None:
        if self.rep is None:
            raise ReproducerFailed(self.error)
        results = corpus.check_reproducer(self.rep, [] if self.kernel is None else [self.kernel])
        result = results[0] if self.kernel is None else results[-1]
        if result.status == "skipped":
            pytest.skip(result.detail)
        if not result.ok:
            raise ReproducerFailed(f"{self.path.name}: {result.status}: {result.detail}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ReproducerFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"rmapfuzz {self.path.name}::{self.name}"


def corpus_cases(directory: Path | str) -> list[Any]:
    """Every reproducer file in ``directory`` as a ``pytest.param`` with the file name as id."""
    return [pytest.param(path, id=path.name) for path in corpus.iter_corpus(directory)]


CheckFunction = Callable[..., list[corpus.CheckResult]]


@pytest.fixture
def rmapfuzz_check(request: pytest.FixtureRequest) -> CheckFunction:
    """``check(path_or_reproducer, kernels=None)``: fail the test unless every check passes.

    ``kernels`` defaults to the ``rmapfuzz_kernels`` ini option; returns the check results.
    """
    default = _kernels(request.config)

    def check(what: Path | str | corpus.Reproducer, kernels: Iterable[str] | None = None) -> list[corpus.CheckResult]:
        error = None
        try:
            rep = what if isinstance(what, corpus.Reproducer) else corpus.load(what)
        except corpus.CorpusError as exc:
            error = str(exc)
        if error is not None:
            pytest.fail(error, pytrace=False)
        results = corpus.check_reproducer(rep, default if kernels is None else list(kernels))
        bad = [r for r in results if not r.ok]
        if bad:
            pytest.fail("\n".join(f"{r.name} [{r.case}] {r.status}: {r.detail}" for r in bad), pytrace=False)
        return results

    return check
