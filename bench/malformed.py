"""The malformed-file run: every mutated reproducer and every bad strategy file through every command
that reads one, counting what must never happen.

    python -m bench.malformed [--every N] [--minimize-budget S] [--oracle-every N]

The mutants are the hardening test's (tests/test_malformed.py: byte flips, truncation, type swaps,
huge numbers, deep nesting, wrong kinds, too many steps or forks, ... of each corpus file), the bad
strategy files its BAD_STRATEGIES.  Each file goes through ``rmapfuzz.cli.main`` in a forked child
(a chunk of files per child, so a crash or a runaway allocation cannot hide), and each run is
judged: an exit code other than 0, 1 or 2 (3 is "internal error" or an infrastructure failure none
of these runs should meet), a traceback on stderr, a run over 5 s, a child whose peak RSS passed
500 MB.  Prints one line per problem and the totals; exit 1 if there was any.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rmapfuzz.cli import main
from tests.test_malformed import BAD_STRATEGIES, MUTATIONS, mutants

SECONDS = 5.0
RSS_MB = 500
CHUNK = 100  # files per forked child


def reproducer_commands(path: Path, folder: Path, minimize_budget: float, oracle: bool) -> Iterator[list[str]]:
    p = str(path)
    yield ["replay", p]
    yield ["replay", "--json", "--trace", p]
    yield ["show", p]
    yield ["show", "--json", p]
    yield ["show", "--dot", str(folder / "g.dot"), p]
    yield ["check", str(folder)]
    yield ["check", "--tap", str(folder)]
    yield ["minimize", "--budget", str(minimize_budget), p]
    yield ["export", "--pytest", p, "-o", str(folder / "t.py")]
    yield ["export", "--c", p, "-o", str(folder / "r.c")]
    if oracle:  # the live kernel: a sample only (it forks and maps for real)
        yield ["oracle", "--levels", "L0,L1,L2", p]


def strategy_commands(path: Path, folder: Path) -> Iterator[list[str]]:
    p = str(path)
    corpus = str(folder / "corpus")
    yield ["fuzz", "--strategy", p, "--examples", "1", "--no-database", "--corpus", corpus]
    yield ["diff", "--kernel", "6.16", "--against", "6.18.8", "--strategy", p, "--examples", "1", "--no-corpus"]
    yield ["coverage", "--kernel", "3.19", "--strategy", p, "--budget", "1"]
    if os.geteuid() == 0:
        yield ["oracle", "--fuzz", "--strategy", p, "--sequences", "1", "--levels", "L0", "--corpus", corpus]


def _run(argv: list[str]) -> tuple[int, str, float]:
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except BaseException as exc:  # main must catch everything: count it
            code = -1
            err.write(f"Traceback (escaped main): {type(exc).__name__}: {exc}\n")
    return code, err.getvalue(), time.perf_counter() - started


def _judge(name: str, argv: list[str], code: int, err: str, seconds: float) -> list[str]:
    problems = []
    if code not in (0, 1, 2):
        problems.append(f"{name}: {argv[0]}: exit {code}: {err.strip()[:200]}")
    if "Traceback" in err:
        problems.append(f"{name}: {argv[0]}: traceback: {err.strip()[-200:]}")
    if seconds > SECONDS:
        problems.append(f"{name}: {' '.join(argv[:2])}: {seconds:.1f} s")
    return problems


def _child(jobs: list[tuple[str, bytes, str]], workdir: Path, options: argparse.Namespace, write: int) -> None:
    """Run one chunk; report (runs, problems, slowest) as JSON on the pipe ``write``."""
    runs, slowest = 0, 0.0
    problems: list[str] = []
    for i, (name, data, kind) in enumerate(jobs):
        folder = workdir / f"f{i}"
        folder.mkdir()
        path = folder / (f"{name}.json" if kind == "reproducer" else f"{name}.toml")
        path.write_bytes(data)
        oracle = os.geteuid() == 0 and options.oracle_every > 0 and i % options.oracle_every == 0
        argvs = (
            reproducer_commands(path, folder, options.minimize_budget, oracle)
            if kind == "reproducer"
            else strategy_commands(path, folder)
        )
        for argv in argvs:
            code, err, seconds = _run(argv)
            runs += 1
            slowest = max(slowest, seconds)
            problems += _judge(name, argv, code, err, seconds)
        if path.read_bytes() != data:
            problems.append(f"{name}: a command modified the file")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if rss_mb > RSS_MB:
        problems.append(f"chunk from {jobs[0][0]}: peak RSS {rss_mb:.0f} MB")
    os.write(write, json.dumps({"runs": runs, "problems": problems, "slowest": slowest, "rss_mb": rss_mb}).encode())


def _chunks(
    jobs: list[tuple[str, bytes, str]], workdir: Path, options: argparse.Namespace
) -> Iterator[dict[str, object]]:
    for start in range(0, len(jobs), CHUNK):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(read)
            code = 0
            try:
                chunk = workdir / f"c{start}"
                chunk.mkdir()
                _child(jobs[start : start + CHUNK], chunk, options, write)
            except BaseException as exc:
                os.write(write, json.dumps({"runs": 0, "problems": [f"child died: {exc!r}"]}).encode())
                code = 1
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as fh:
            data = fh.read()
        _pid, status = os.waitpid(pid, 0)
        if not data:
            yield {"runs": 0, "problems": [f"chunk from {jobs[start][0]}: child ended with status {status}"]}
            continue
        yield json.loads(data)


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.malformed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--every", type=int, default=1, help="take every N-th mutant (default: all)")
    parser.add_argument("--minimize-budget", type=float, default=1.0, help="minimize --budget per file (1 s)")
    parser.add_argument("--oracle-every", type=int, default=20, help="as root, every N-th file through the live oracle")
    args = parser.parse_args(argv)
    jobs = [
        (name, data, "reproducer") for kind in sorted(MUTATIONS) for name, data in list(mutants(kind))[:: args.every]
    ]
    reproducers = len(jobs)
    jobs += [(name, raw.encode() if isinstance(raw, str) else raw, "strategy") for name, raw in BAD_STRATEGIES.items()]
    started = time.monotonic()
    runs, slowest, rss = 0, 0.0, 0.0
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rmapfuzz-malformed-") as tmp:
        for done in _chunks(jobs, Path(tmp), args):
            runs += int(done["runs"])  # type: ignore[call-overload]
            problems += done["problems"]  # type: ignore[arg-type]
            slowest = max(slowest, float(done.get("slowest", 0.0)))  # type: ignore[arg-type]
            rss = max(rss, float(done.get("rss_mb", 0.0)))  # type: ignore[arg-type]
            print(f"  {runs:,} runs, {len(problems)} problems, {time.monotonic() - started:.0f} s", file=sys.stderr)
    for line in problems:
        print(line)
    tracebacks = sum("traceback" in p or "exit 3" in p or "exit -1" in p for p in problems)
    slow = sum(p.endswith(" s") and ": exit" not in p for p in problems)
    print(f"{reproducers:,} mutated reproducers, {len(BAD_STRATEGIES)} bad strategy files, {runs:,} command runs "
          f"in {time.monotonic() - started:.0f} s: {tracebacks} tracebacks or internal errors, {slow} runs over "
          f"{SECONDS:g} s (slowest {slowest:.2f} s), peak RSS of a child {rss:.0f} MB (limit {RSS_MB})")  # fmt: skip
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main_())
