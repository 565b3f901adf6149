"""Hardening of what a campaign leaves and how it stops: files honour the umask, no lock or temp
file is left in a corpus, Ctrl-C is one line and exit 130 from the first instant, the places a
campaign writes to are checked before it starts."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rmapfuzz import corpus
from rmapfuzz.cli import main

ROOT = Path(__file__).resolve().parent.parent
BUG_A = ROOT / "corpus" / "2.6.34-rc3--merge-superset--mprotect.json"


@pytest.fixture
def mask() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize(("umask", "mode"), [(0o027, 0o640), (0o002, 0o664), (0o077, 0o600)])
def test_saved_and_rewritten_files_honour_the_umask(tmp_path: Path, mask: None, umask: int, mode: int) -> None:
    os.umask(umask)
    assert corpus.umask() == umask
    path, status = corpus.save(tmp_path, corpus.load(BUG_A))
    assert status == "new" and path.stat().st_mode & 0o777 == mode
    assert main(["minimize", "--write", "--budget", "5", str(path)]) == 0  # rewritten atomically
    assert path.stat().st_mode & 0o777 == mode


def test_a_corpus_keeps_only_its_reproducers(tmp_path: Path) -> None:
    rep = corpus.load(BUG_A)
    corpus.save(tmp_path, rep)
    corpus.save(tmp_path, rep)  # a duplicate
    assert [p.name for p in tmp_path.iterdir()] == [BUG_A.name]  # no lock file, no temp file


def test_a_campaign_leaves_nothing_but_finds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["fuzz", "--kernel", "2.6.34-rc3", "--strategy", "merge-storm", "--seed", "1", "--budget", "60",
            "--no-database", "--corpus", str(tmp_path)]  # fmt: skip
    assert main(argv) == 1
    assert {p.suffix for p in tmp_path.iterdir()} == {".json"}


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("delay", [0.05, 0.3, 1.0, 2.5])
def test_ctrl_c_at_any_instant_is_one_line_and_130(tmp_path: Path, delay: float) -> None:
    """From the interpreter's first instant (the imports), through the start, into the campaign."""
    argv = [sys.executable, "-m", "rmapfuzz", "fuzz", "--kernel", "current", "--budget", "60", "--no-database",
            "--corpus", str(tmp_path / "c")]  # fmt: skip
    # a shell running this in the background starts it with SIGINT ignored, which Python (rightly)
    # keeps: the user's Ctrl-C reaches a command run from a terminal, so start it as one would
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=_default_sigint)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err + out
    # before the campaign: one error line; during it, the summary on stdout says it was interrupted
    assert err == b"rmapfuzz: error: interrupted\n" if err else b"interrupted" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["diff", "--kernel", "6.16", "--against", "6.18.8", "--examples", "1", "--corpus", "{file}"],
        ["fuzz", "--examples", "1", "--corpus", "/proc/rmapfuzz-corpus"],
        ["fuzz", "--examples", "1", "--corpus", "{dir}", "--database", "{file}"],
        ["fuzz", "--examples", "0"],
        ["fuzz", "--budget", "-5"],
        ["diff", "--kernel", "6.16", "--against", "6.18.8", "--budget", "nan", "--no-corpus"],
        ["minimize", "--budget", "0", str(BUG_A)],
        ["oracle", "--fuzz", "--sequences", "0"],
        ["oracle", "--fuzz", "--window-pages", "1"],
        ["oracle", "--fuzz", "--window-pages", "100000000000"],
        ["oracle", "--fuzz", "--offset", "-1"],
    ],
)
def test_places_and_flag_ranges_are_checked_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    (tmp_path / "a-file").write_text("")
    args = [a.format(file=tmp_path / "a-file", dir=tmp_path / "c") for a in argv]
    started = time.monotonic()
    code = main(args)
    _out, err = capsys.readouterr()
    assert code == 2 and "error: " in err.splitlines()[-1], err
    assert err.count("\n") == 1 or err.startswith("usage: ")  # ours, or argparse's usage and one line
    assert time.monotonic() - started < 5  # nothing ran


def test_version() -> None:
    done = subprocess.run([sys.executable, "-m", "rmapfuzz", "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("rmapfuzz 0.")


def _with_fd_limit(soft: int, hard: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_oracle_needs_fds_for_its_workers_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "forks.json"
    steps = [{"op": "mmap", "pid": 0, "start": 0, "pages": 1, "prot": "rw"}] + [{"op": "fork", "pid": 0}] * 40
    path.write_text(json.dumps({"kernel": "current", "window": 8, "steps": steps}))
    argv = [sys.executable, "-m", "rmapfuzz", "oracle", "--levels", "L0", str(path)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, preexec_fn=_with_fd_limit(100, 100))
    assert done.returncode == 3
    assert done.stderr.count("\n") == 1 and "41 processes" in done.stderr and "ulimit -n" in done.stderr
    # a soft limit below the need and a hard one above: raised, nothing to say
    script = (
        "import resource; from rmapfuzz.cli import oracle_limits; oracle_limits(41); "
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          preexec_fn=_with_fd_limit(100, 4096))  # fmt: skip
    assert done.returncode == 0 and int(done.stdout) >= 4 * 41 + 64


def test_oracle_files_are_a_batch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["oracle", str(bad), str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "bad.json" in err and "missing.json" in err  # each file judged
