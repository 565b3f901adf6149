"""The ``rmapfuzz`` command line.

Each subcommand is one ``add_<name>_command(subparsers)`` function that builds its parser and
sets ``func`` (``args -> exit code``); :data:`COMMANDS` lists them, so adding a subcommand is
writing one such function and appending it.  Exit codes: 0 clean / passed, 1 a violation or a
failed check, 2 bad usage or input, 3 an infrastructure failure (I/O, a database) or an internal
error, 130 interrupted; every error is one ``rmapfuzz: error: ...`` line on stderr (with
``RMAPFUZZ_DEBUG=1``, an unexpected one also raises with its traceback).

Human output goes through rich (plain when stdout is not a terminal or NO_COLOR is set);
``--json`` prints JSON for machines.  No command ever modifies a corpus file.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import io
import json
import math
import os
import random
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import attrs
from rich.console import Console
from rich.table import Table
from rich.text import Text

from rmapfuzz import __version__, campaign, corpus, coverage, database, differential, ops, render, schema, strategy
from rmapfuzz import invariants as inv
from rmapfuzz.campaign import Config
from rmapfuzz.differential import DiffConfig
from rmapfuzz.kernels import BUGS, KERNELS, OverlayError, UnknownKernel, resolve
from rmapfuzz.live import LiveView, bug_title, summary
from rmapfuzz.pair import LEVELS, PairError, levels_without, pair_replay
from rmapfuzz.replay import replay
from rmapfuzz.strategy import StrategyError

PROG = "rmapfuzz"
T = TypeVar("T")
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CliError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


class Infrastructure(Exception):
    """Something this machine lacks or refuses (a tool not installed): one line, exit code 3."""


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds (float() alone takes 'nan' and 'inf')."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, got {text!r}")
    return value


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _emit_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _error(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {message}\n")


def _kernel(name: str | None) -> str | None:
    if name is not None:
        resolve(name)  # raises UnknownKernel
    return name


def _invariants(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise CliError("--invariants: give at least one invariant name")
    try:
        inv.select(names)
    except ValueError as exc:  # names the unknown invariant
        raise CliError(str(exc)) from None
    return names


def _violation_json(v: inv.Violation | None) -> dict[str, Any] | None:
    return None if v is None else {"invariant": v.invariant, "step": v.step, "message": v.message}


# ---- kernels ----


def kernel_info(name: str) -> dict[str, Any]:
    cls = KERNELS[name]
    return {
        "name": name,
        "base": cls.base,
        "summary": cls.summary,
        "commits": [{"id": cid, "title": title} for cid, title in cls.commits],
        "bugs": [{"letter": letter, "description": BUGS.get(letter, "")} for letter in cls.bugs],
    }


def definitions(kernel: str, function: str) -> list[dict[str, Any]]:
    """Where ``kernel`` gets ``function`` from: the definition it runs first, then each one that
    definition overrides (reached through ``super()``), down the method resolution order."""
    cls = resolve(_kernel(kernel) or kernel)
    out = []
    for owner in cls.__mro__:
        fn = owner.__dict__.get(function)
        if fn is None:
            continue
        fn = getattr(fn, "__func__", fn)
        try:
            lines, first = inspect.getsourcelines(fn)
            path = inspect.getsourcefile(fn) or "?"
        except (OSError, TypeError):
            continue
        out.append({
            "class": owner.__name__,
            "generation": owner.__dict__.get("name", ""),
            "file": _relative(path),
            "line": first,
            "lines": len(lines),
            "doc": (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " "),
        })  # fmt: skip
    if not out:
        known = sorted({n for c in cls.__mro__ for n, v in vars(c).items() if callable(v) and not n.startswith("__")})
        close = difflib.get_close_matches(function, known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise CliError(f"{cls.name} has no function {function!r}{hint}")
    return out


def _relative(path: str) -> str:
    """A package file from the package's directory on; a user's overlay file from the working directory."""
    p = Path(path)
    if "rmapfuzz" in p.parts:
        return str(Path(*p.parts[p.parts.index("rmapfuzz") :]))
    return str(p.relative_to(Path.cwd())) if p.is_relative_to(Path.cwd()) else path


def cmd_kernels(args: argparse.Namespace) -> int:
    if args.where:
        function, kernel = args.where
        found = definitions(kernel, function)
        if args.json:
            _emit_json(found)
            return 0
        console = _console()
        for i, d in enumerate(found):
            lead = f"{function} on {kernel}:" if i == 0 else "  overrides"
            console.print(Text.assemble(lead + " ", (f"{d['file']}:{d['line']}", "bold cyan"), f" {d['class']}"
                                        + (f" ({d['generation']})" if d["generation"] else "")))  # fmt: skip
            if d["doc"]:
                console.print(Text(f"    {d['doc']}", style="dim"))
        return 0
    infos = [kernel_info(name) for name in KERNELS]
    if args.json:
        _emit_json(infos)
        return 0
    console = _console()
    for info in infos:
        title = Text.assemble((info["name"], "bold cyan"), f"  (on {info['base']})" if info["base"] else "")
        console.print(title)
        console.print(Text(f"  {info['summary']}"))
        for commit in info["commits"]:
            console.print(Text.assemble("  commit ", (commit["id"], "yellow"), f" {commit['title']}"))
        for bug in info["bugs"]:
            console.print(Text.assemble("  bug ", (bug["letter"], "bold red"), f"  {bug['description']}"))
        if not info["bugs"]:
            console.print(Text("  no catalogued bugs", style="green"))
        console.print()
    return 0


def add_kernels_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("kernels", help="list the model kernels, their commits and catalogued bugs")
    p.add_argument(
        "--where",
        nargs=2,
        metavar=("FUNCTION", "KERNEL"),
        help="the file, class and line that define a kernel function at that generation (and what it overrides)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_kernels)


# ---- invariants ----


def cmd_invariants(args: argparse.Namespace) -> int:
    if args.json:
        _emit_json(
            [{"name": i.name, "ref": i.ref, "assumption": i.assumption, "kind": i.kind.value} for i in inv.CATALOGUE]
        )
        return 0
    table = Table("name", "ref", "assumption", title="invariants (catalogue order)")
    for i in inv.CATALOGUE:
        table.add_row(Text(i.name, style="bold"), Text(i.ref), Text(i.assumption))
    _console().print(table)
    return 0


def add_invariants_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("invariants", help="list the invariant catalogue")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_invariants)


# ---- replay ----


class Batch:
    """The files of a batch command, loaded one at a time: a file that does not load is reported
    in one line and the others are still judged; :meth:`status` then gives 2 (bad input wins)."""

    def __init__(self, files: Sequence[str], as_json: bool = False) -> None:
        self.files = files
        self.as_json = as_json  # also one {"error": ...} object per bad file on stdout
        self.bad = 0

    def __iter__(self) -> Iterator[corpus.Reproducer]:
        for f in self.files:
            try:
                rep = corpus.load(f)
            except corpus.CorpusError as exc:
                self.report(str(exc))
                continue
            yield rep

    def report(self, message: str) -> None:
        _error(message)
        if self.as_json:
            _emit_json({"error": message, "exit_code": 2})
        self.bad += 1

    def status(self, status: int) -> int:
        return 2 if self.bad else status


def cmd_replay(args: argparse.Namespace) -> int:
    kernel = _kernel(args.kernel)
    names = _invariants(args.invariants)
    reps = Batch(args.files, args.json)
    console = _console()
    status = 0
    for rep in reps:
        if rep.kind == "difference" and kernel is None:
            status = max(status, _replay_difference(console, rep, args.json))
            continue
        target = kernel or rep.kernel
        if args.trace and not args.json:
            steps = render.print_reproducer_steps(console, rep, kernel=target, invariants=names)
            bad = next((s.violations[0] for s in steps if s.violations), None)
        else:
            verdict = replay(rep.steps, target, rep.window, names)
            bad = verdict.violation
        if bad is not None:
            status = 1
        if args.json:
            out: dict[str, Any] = {"file": str(rep.path), "kernel": target, "violation": _violation_json(bad)}
            if args.trace:
                out["trace"] = [s.to_json() for s in render.trace(rep.steps, target, rep.window, names)]
            _emit_json(out)
            continue
        head = Text.assemble((str(rep.path), "bold"), f" on {target}: ")
        if bad is None:
            head.append("clean", style="green")
            head.append(f" ({len(rep.steps)} steps)")
        else:
            head.append(f"{bad.invariant} at step {bad.step}", style="bold red")
            head.append(f": {bad.message}")
        if rep.violation is not None and target == rep.kernel:
            same = bad is not None and bad.invariant == rep.invariant
            head.append(f"  [recorded {rep.invariant} at step {rep.failing_step}]", style="dim" if same else "yellow")
        console.print(head)
    return reps.status(status)


def _replay_difference(console: Console, rep: corpus.Reproducer, as_json: bool) -> int:
    """A difference entry replays on both its kernels: 1 if they still differ."""
    assert rep.against is not None
    found = pair_replay(rep.steps, rep.kernel, rep.against, rep.window)
    if as_json:
        _emit_json({"file": str(rep.path), "kernel": rep.kernel, "against": rep.against,
                    "difference": None if found is None else found.to_json()})  # fmt: skip
        return 0 if found is None else 1
    head = Text.assemble((str(rep.path), "bold"), f" on {rep.kernel} against {rep.against}: ")
    if found is None:
        head.append("no difference", style="green")
    else:
        head.append(f"{found.level} difference at step {found.step}", style="bold red")
        head.append(f": {found.message}")
    console.print(head)
    return 0 if found is None else 1


def add_replay_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("replay", help="replay reproducer files on the model (no Hypothesis)")
    p.add_argument("files", nargs="+", metavar="FILE", help="reproducer files")
    p.add_argument("--kernel", help="replay on this model instead of each file's own kernel")
    p.add_argument("--invariants", help="comma-separated invariants to judge (default: the whole catalogue)")
    p.add_argument("--json", action="store_true", help="one JSON object per file per line")
    p.add_argument("--trace", action="store_true", help="print each step, its result and the state after it")
    p.set_defaults(func=cmd_replay)


# ---- show ----


def cmd_show(args: argparse.Namespace) -> int:
    kernel = _kernel(args.kernel)
    if args.step is not None and args.dot is None and args.graph_svg is None:
        raise CliError("--step chooses the state --dot or --graph-svg draws; give one of them")
    graphs = args.dot is not None or args.graph_svg is not None
    if graphs and (args.svg is not None or args.json):
        raise CliError("--dot and --graph-svg draw the graph; --svg and --json the step-by-step view: not both")
    rep = corpus.load(args.file)
    if graphs:
        return _show_graph(args, rep, kernel)
    if rep.kind == "difference" and kernel is None:
        return _show_difference(args, rep)
    target = kernel or rep.kernel
    if args.json:
        steps = render.trace(rep.steps, target, rep.window)
        bad = next((s.violations[0] for s in steps if s.violations), None)
        _emit_json(
            {
                "file": str(rep.path),
                "kernel": target,
                "window": rep.window,
                "signature": rep.signature,
                "violation": _violation_json(bad),
                "steps": [s.to_json() for s in steps],
            }
        )
    else:
        steps = _shown(args, rep, 110, lambda console: render.print_reproducer_steps(console, rep, kernel=target))
    return 1 if any(s.violations for s in steps) else 0


def _shown(args: argparse.Namespace, rep: corpus.Reproducer, width: int, draw: Callable[[Console], T]) -> T:
    """``draw`` on the terminal, or (``--svg OUT``) recorded at ``width`` columns and saved as SVG."""
    if args.svg is None:
        return draw(_console())
    recorder = Console(record=True, file=io.StringIO(), force_terminal=True, width=width, highlight=False)
    drawn = draw(recorder)
    try:
        recorder.save_svg(args.svg, title=f"rmapfuzz show {rep.path.name if rep.path else ''}")
    except OSError as exc:
        raise CliError(f"{args.svg}: cannot write: {exc.strerror}") from None
    _console().print(Text(f"wrote {args.svg}"))
    return drawn


def _show_difference(args: argparse.Namespace, rep: corpus.Reproducer) -> int:
    """Both kernels of a difference entry, step by step."""
    if args.json:
        steps = render.pair_trace(rep.steps, rep.kernel, rep.against or rep.kernel, rep.window)
        diff = next((s.difference for s in steps if s.difference is not None), None)
        _emit_json({"file": str(rep.path), "kernel": rep.kernel, "against": rep.against, "window": rep.window,
                    "signature": rep.signature, "difference": None if diff is None else diff.to_json(),
                    "steps": [s.to_json() for s in steps]})  # fmt: skip
        return 0 if diff is None else 1
    steps = _shown(args, rep, 160, lambda console: render.print_difference_steps(console, rep))
    return 1 if any(s.difference for s in steps) else 0


def _graph_states(rep: corpus.Reproducer, kernel: str | None, step: int | None) -> tuple[int, bool, list[Any]]:
    """Replay up to ``step`` (default: the first violating or differing step, else the last) and
    return (the step drawn, whether a violation or difference is among the steps, the states)."""
    from rmapfuzz.pair import Difference, PairRunner
    from rmapfuzz.replay import Runner

    if not rep.steps:
        raise CliError(f"{rep.name}: no steps, no state to draw")
    if step is not None and not 0 <= step < len(rep.steps):
        raise CliError(f"--step must be a step index of {rep.name} (0..{len(rep.steps) - 1}), got {step}")
    against = rep.against if rep.kind == "difference" and kernel is None else None
    pair = against is not None
    runner: Any = PairRunner(rep.kernel, against, rep.window) if against else Runner(kernel or rep.kernel, rep.window)
    last = len(rep.steps) - 1 if step is None else step
    highlight: tuple[str, ...] = ()
    bad = False
    for i, op in enumerate(rep.steps[: last + 1]):
        _result, found = runner.step(op)
        if found:
            bad = True
            if step is not None and i < step:
                raise CliError(
                    f"--step {step}: the replay stops at step {i}, where {found[0]} (draw that step or one before)"
                )
            highlight = () if isinstance(found[0], Difference) else tuple(found[0].objects)
            last = i
            break
    if pair:
        return last, bad, [(f"A: {rep.kernel}", runner.a.kernel, ()), (f"B: {rep.against}", runner.b.kernel, ())]
    return last, bad, [("", runner.kernel, highlight)]


def _show_graph(args: argparse.Namespace, rep: corpus.Reproducer, kernel: str | None) -> int:
    """``--dot OUT`` / ``--graph-svg OUT``: the anon_vma graph after one step."""
    from rmapfuzz import graph

    index, bad, states = _graph_states(rep, kernel, args.step)
    names = " against ".join(s[0][3:] for s in states) if len(states) > 1 else (kernel or rep.kernel)
    title = f"{rep.name}: {names}, after step {index} ({ops.describe(rep.steps[index])})"
    text = graph.dot(title, states)
    try:
        if args.dot == "-":
            sys.stdout.write(text)
        elif args.dot is not None:
            Path(args.dot).write_text(text, encoding="utf-8")
        if args.graph_svg is not None:
            Path(args.graph_svg).write_bytes(graph.svg(text))
    except graph.GraphvizMissing as exc:
        raise Infrastructure(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{exc.filename}: cannot write: {exc.strerror}") from None
    for out in (args.dot, args.graph_svg):
        if out not in (None, "-"):
            _console().print(Text(f"wrote {out} (the anon_vma graph after step {index})"))
    return 1 if bad else 0


def add_show_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("show", help="show a reproducer step by step with the state after each step")
    p.add_argument("file", metavar="FILE", help="a reproducer file")
    p.add_argument("--kernel", help="run on this model instead of the file's own kernel")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--svg", metavar="OUT", help="write the same view as an SVG file")
    out.add_argument("--json", action="store_true", help="print the per-step state as JSON")
    p.add_argument("--dot", metavar="OUT", help="write the anon_vma graph as Graphviz DOT ('-': stdout)")
    p.add_argument(
        "--graph-svg", metavar="OUT", help=f"write the anon_vma graph as SVG (Graphviz: {'apt-get install graphviz'})"
    )
    p.add_argument(
        "--step", type=int, metavar="N", help="the graph after step N (default: the violating step, else the last)"
    )
    p.set_defaults(func=cmd_show)


# ---- check ----


_FAILURES = ("stale", "changed", "relabel", "fail")
_JUNIT_CLASS = {"own": "rmapfuzz.own-kernel", "bugs": "rmapfuzz.bug-label"}


def junit_xml(results: Sequence[corpus.CheckResult], errors: Sequence[tuple[str, str]]) -> ET.ElementTree:
    """JUnit XML: one testcase per (file, case); failures for stale/changed/relabel/fail, errors for
    bad files."""
    failures = sum(r.status in _FAILURES for r in results)
    model_errors = sum(r.status == "error" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    suite = ET.Element(
        "testsuite",
        name="rmapfuzz.check",
        tests=str(len(results) + len(errors)),
        failures=str(failures),
        errors=str(model_errors + len(errors)),
        skipped=str(skipped),
    )
    for r in results:
        classname = _JUNIT_CLASS.get(r.case, f"rmapfuzz.clean-on.{r.case}")
        case = ET.SubElement(suite, "testcase", classname=classname, name=r.name)
        if r.status in _FAILURES:
            ET.SubElement(case, "failure", type=r.status, message=r.detail).text = r.detail
        elif r.status == "error":
            ET.SubElement(case, "error", type="error", message=r.detail).text = r.detail
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.detail)
        else:
            ET.SubElement(case, "system-out").text = r.detail
    for name, message in errors:
        case = ET.SubElement(suite, "testcase", classname="rmapfuzz.load", name=name)
        ET.SubElement(case, "error", type="CorpusError", message=message).text = message
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.ElementTree(root)


_STYLE = {"ok": "green", "skipped": "dim", "stale": "bold yellow", "changed": "bold red", "fail": "bold red",
          "relabel": "bold yellow"}  # fmt: skip


def cmd_check(args: argparse.Namespace) -> int:
    kernels: list[str] = args.kernel or []
    for k in kernels:
        _kernel(k)
    paths = corpus.iter_corpus(args.directory)
    console = _console()
    results: list[corpus.CheckResult] = []
    errors: list[tuple[str, str]] = []
    for path in paths:
        try:
            if args.relabel:
                _relabel(path, console)
            rep = corpus.load(path)
        except corpus.CorpusError as exc:
            _error(str(exc))
            errors.append((path.name, str(exc)))
            continue
        for r in corpus.check_reproducer(rep, kernels):
            results.append(r)
            if args.format == "text":
                style = _STYLE.get(r.status, "bold red")
                console.print(Text.assemble((f"{r.status.upper():8}", style), f"{r.name}  {r.detail}"))
    if args.format == "json":
        for r in results:
            _emit_json({"file": r.name, "case": r.case, "status": r.status, "ok": r.ok, "detail": r.detail})
        for name, why in errors:
            _emit_json({"file": name, "case": "load", "status": "unreadable", "ok": False, "detail": why})
    elif args.format == "tap":
        sys.stdout.write(tap_report(results, errors))
    if args.junit is not None:
        try:
            junit_xml(results, errors).write(args.junit, encoding="utf-8", xml_declaration=True)
        except OSError as exc:
            raise CliError(f"{args.junit}: cannot write: {exc.strerror}") from None
    failed = [r for r in results if not r.ok]
    summary = f"{len(paths)} reproducers, {len(results)} checks, {len(failed)} failed"
    if errors:
        summary += f", {len(errors)} unreadable"
    if args.format == "text":
        console.print(Text(summary, style="bold red" if failed or errors else "bold green"))
    if errors:
        return 2
    return 1 if failed else 0


def _relabel(path: Path, console: Console) -> None:
    """check --relabel: bring the entry's found.bugs up to what classification says, saying so."""
    try:
        changed = corpus.relabel(path)
    except OSError as exc:
        raise CliError(f"{path}: cannot rewrite: {exc.strerror}") from None
    if changed is not None:
        old, new = changed
        sys.stderr.write(f"{PROG}: relabelled {path.name}: found.bugs [{', '.join(old)}] -> [{', '.join(new)}]\n")


def tap_report(results: Sequence[corpus.CheckResult], errors: Sequence[tuple[str, str]]) -> str:
    """TAP version 13, as kselftest prints it: one line per check, skips as ``# SKIP``."""
    lines = ["TAP version 13", f"1..{len(results) + len(errors)}"]
    for n, r in enumerate(results, 1):
        verdict = "ok" if r.ok else "not ok"
        skip = f" # SKIP {r.detail}" if r.status == "skipped" else ""
        lines.append(f"{verdict} {n} {r.name}::{r.case}{skip}")
        if not r.ok:
            lines.append(f"# {r.status}: {r.detail}")
    for n, (name, why) in enumerate(errors, len(results) + 1):
        lines.append(f"not ok {n} {name}::load")
        lines.append(f"# unreadable: {why}")
    return "\n".join(lines) + "\n"


def add_check_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "check",
        help="regression gate: recorded violations still reproduce, fixed kernels replay the corpus clean",
    )
    p.add_argument("directory", nargs="?", default="corpus", metavar="DIR", help="corpus directory (default: corpus)")
    p.add_argument(
        "--kernel", action="append", metavar="K", help="a fixed kernel that must replay every entry clean (repeatable)"
    )
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML for CI")
    p.add_argument(
        "--relabel", action="store_true", help="first rewrite each entry's found.bugs to the bugs its steps show today"
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", dest="format", action="store_const", const="json", help="one JSON object per check")
    out.add_argument("--tap", dest="format", action="store_const", const="tap", help="TAP version 13 (kselftest)")
    p.set_defaults(func=cmd_check, format="text")


# ---- fuzz ----


def _seed(value: str | None) -> int:
    if value is None:
        return random.SystemRandom().randrange(2**32)
    try:
        return int(value)
    except ValueError:
        raise CliError(f"--seed must be an integer, got {value!r}") from None


def _fuzz_database(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """``--database`` (a directory, a ``redis://`` URL, or one of each) as (directory, URL); a URL's
    server is pinged here, so a wrong address is one line before the campaign starts."""
    if args.no_database:
        return None, None
    values: list[str] = args.database or [str(campaign.default_database())]
    urls = [v for v in values if database.is_url(v)]
    dirs = [v for v in values if not database.is_url(v)]
    if len(urls) > 1 or len(dirs) > 1:
        raise CliError("--database: give at most one directory and one redis:// URL")
    url = urls[0] if urls else None
    try:
        database.check(url)
    except database.DatabaseError as exc:
        raise CliError(str(exc)) from None
    return (Path(dirs[0]) if dirs else None), url


MAX_WORKERS = 64


def writable_directory(flag: str, path: Path) -> None:
    """Checked before a campaign starts, so a find is never lost to an unwritable place at its end."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".rmapfuzz-probe-"):
            pass
    except OSError as exc:
        raise CliError(f"{flag} {path}: not a writable directory ({exc.strerror or exc})") from None


def _budget_and_shrink(args: argparse.Namespace) -> float | None:
    """A campaign's time budget (None: bounded by --examples instead), its flags checked."""
    if args.budget is not None and args.examples is not None:
        raise CliError("give --budget or --examples, not both")
    if args.shrink_seconds < 0:
        raise CliError(f"--shrink-seconds must not be negative, got {args.shrink_seconds}")
    budget: float | None = args.budget if args.examples is None else None
    if budget is None and args.examples is None:
        budget = 60.0
    if budget is not None and budget <= 0:
        raise CliError(f"--budget must be positive, got {budget}")
    if args.examples is not None and args.examples < 1:
        raise CliError(f"--examples must be at least 1, got {args.examples}")
    return budget


def fuzz_config(args: argparse.Namespace) -> Config:
    kernel = _kernel(args.kernel) or args.kernel
    strat = strategy.load(args.strategy)
    if not 1 <= args.workers <= MAX_WORKERS:
        raise CliError(f"--workers must be between 1 and {MAX_WORKERS}, got {args.workers}")
    budget = _budget_and_shrink(args)
    names = _invariants(args.invariants)
    db_dir, db_url = _fuzz_database(args)
    writable_directory("--corpus", Path(args.corpus))
    if db_dir is not None:
        writable_directory("--database", db_dir)
    return Config(
        kernel=kernel,
        strategy=strat,
        seed=_seed(args.seed),
        budget=budget,
        examples=args.examples,
        workers=args.workers,
        corpus_dir=Path(args.corpus),
        database=db_dir,
        database_url=db_url,
        invariants=tuple(names) if names else None,
        keep_going=args.keep_going,
        shrink_seconds=args.shrink_seconds,
    )


def cmd_fuzz(args: argparse.Namespace) -> int:
    try:
        config = fuzz_config(args)
    except StrategyError as exc:
        raise CliError(str(exc)) from None
    console = _console()
    progress = None if args.json else Console(stderr=True, highlight=False, soft_wrap=True)
    with LiveView(console, config, progress) as view:
        result = campaign.run(config, on_progress=view.update)
    if args.coverage:
        write_coverage(args.coverage, result.coverage())
    if args.json:
        _emit_json(
            {
                "kernel": config.kernel,
                "strategy": config.strategy.name,
                "seed": config.seed,
                "seconds": round(result.seconds, 3),
                "interrupted": result.interrupted,
                "stats": result.stats,
                "coverage": result.coverage().to_json(),
                "finds": [campaign.find_to_json(f) for f in result.finds],
            }
        )
        return result.exit_code
    summary(console, result)
    for find in result.finds:
        rep = (
            corpus.load(find.path)
            if find.path
            else corpus.Reproducer(config.kernel, config.strategy.window, find.steps)
        )
        console.print(Text(f"{find.signature}: {find.status or 'not saved'} {find.path or ''}", style="bold red"))
        console.print(Text(bug_title(find.bugs)))
        render.print_reproducer_steps(console, rep, invariants=config.invariants, states=False)
    return result.exit_code


def add_fuzz_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "fuzz",
        help="run a fuzz campaign against a kernel model",
        description="Drive random op sequences against a kernel model with Hypothesis; every failure is "
        "shrunk and saved in the corpus. Exit 1 if a violation was found, 0 if the budget ran out clean.",
    )
    p.add_argument("--kernel", default="2.6.34-rc3", help="kernel model (see `rmapfuzz kernels`)")
    p.add_argument("--strategy", default="default", help="a strategy name or a .toml file (default: default)")
    p.add_argument("--seed", default=None, help="campaign seed (default: random, printed in the summary)")
    p.add_argument("--budget", type=seconds, default=None, help="seconds to run (default 60)")
    p.add_argument("--examples", type=int, default=None, help="test cases to run instead of a time budget")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--corpus", default="corpus", help="corpus directory for reproducers (default ./corpus)")
    p.add_argument(
        "--database",
        action="append",
        metavar="DIR|URL",
        help=f"Hypothesis example database: a directory (default {campaign.default_database()}) or "
        "redis://host[:port][/db], shared by many machines; give both to write to both",
    )
    p.add_argument("--no-database", action="store_true", help="run without a Hypothesis database")
    p.add_argument("--invariants", default=None, help="comma-separated invariants to check (default: all)")
    p.add_argument("--keep-going", action="store_true", help="after a find, look for other signatures")
    p.add_argument("--shrink-seconds", type=seconds, default=1.0, help="Hypothesis shrinking per find (then minimize)")
    p.add_argument(
        "--coverage", default=None, metavar="FILE", help="write the kernel-path coverage reached (.json or .md)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_fuzz)


# ---- coverage ----


def write_coverage(path: str, report: coverage.Report) -> None:
    """A coverage report to ``path``: JSON for ``.json``, else markdown."""
    text = json.dumps(report.to_json(), indent=2) + "\n" if path.endswith(".json") else report.markdown()
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise CliError(f"cannot write the coverage report to {path}: {exc.strerror}") from None


def coverage_table(report: coverage.Report) -> Table:
    table = Table("function", "branch", "hits", "defined at", title=f"coverage points of {report.kernel}")
    for p in report.points:
        if p.name in report.why_not:
            continue
        n = report.hits.get(p.name, 0)
        branch = p.name.split(": ", 1)[1] if ": " in p.name else p.name
        table.add_row(p.function, branch, Text(str(n)) if n else Text("never", style="bold red"), f"{p.path}:{p.line}")
    return table


def cmd_coverage(args: argparse.Namespace) -> int:
    kernel = resolve(_kernel(args.kernel) or args.kernel)
    if args.budget is not None:
        if args.budget <= 0:
            raise CliError(f"--budget must be positive, got {args.budget}")
        try:
            strat = strategy.load(args.strategy)
        except StrategyError as exc:
            raise CliError(str(exc)) from None
        config = Config(kernel=kernel.name, strategy=strat, seed=_seed(args.seed), budget=args.budget,
                        corpus_dir=None, database=None, keep_going=True,
                        until_covered=args.until_covered)  # fmt: skip
        result = campaign.run(config)
        report = result.coverage()
    else:
        report = coverage.report(kernel, {})
    if args.output:
        write_coverage(args.output, report)
    if args.json:
        data = report.to_json()
        if args.budget is not None:
            data["seed"], data["seconds"] = config.seed, round(result.seconds, 3)
            data["covered_at"] = result.stats["covered_at"]
            data["finds"] = [f.signature for f in result.finds]
        _emit_json(data)
        return 0
    console = _console()
    if args.budget is None:
        table = Table("point", "defined at", "reachable", title=f"coverage points of {report.kernel}")
        for p in report.points:
            why = report.why_not.get(p.name)
            table.add_row(p.name, f"{p.path}:{p.line} {p.owner}", Text("yes") if why is None else Text(f"no: {why}"))
        console.print(table)
        return 0
    console.print(coverage_table(report))
    reachable = len(report.points) - len(report.beyond)
    console.print(
        f"{len(report.reached)} of {reachable} reachable points reached in {result.seconds:.0f} s "
        f"(seed {config.seed}; {len(result.finds)} finds, each bug's fix applied after it)"
    )
    for p, why in report.beyond:
        console.print(Text(f"beyond the op language: {p.name}: {why}", style="dim"))
    return 0


def add_coverage_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "coverage",
        help="the kernel-path coverage points of a model, and what a campaign reaches",
        description="Without --budget: every coverage point the kernel model's code can reach from its "
        "system calls, where it is defined, and whether the op language can drive it there. With --budget: "
        "run a campaign (keep-going, no corpus, no database) for that long and report how often each point "
        "was reached and which never were.",
    )
    p.add_argument("--kernel", default="current", help="kernel model (default: current)")
    p.add_argument("--budget", type=seconds, default=None, help="seconds of campaign to measure coverage with")
    p.add_argument("--strategy", default="default", help="strategy for the campaign (default: default)")
    p.add_argument("--seed", default=None, help="campaign seed (default: random, printed)")
    p.add_argument("--until-covered", action="store_true", help="stop once every reachable point was reached")
    p.add_argument("--output", "-o", default=None, metavar="FILE", help="also write the report (.json or .md)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_coverage)


# ---- schema ----


def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(json.dumps(schema.SCHEMAS[args.which](), indent=2, ensure_ascii=False) + "\n")
    return 0


def add_schema_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "schema",
        help="print the JSON Schema (draft 2020-12) of a reproducer file, a strategy file or one step",
        description="The schemas the loaders validate against (rmapfuzz/schema.py): 'reproducer' (the default) "
        "is a whole reproducer file (docs/reproducer-format.md), 'strategy' a strategy file's TOML table, "
        "'step' one step of the op language (rmapfuzz/ops.py).",
    )
    p.add_argument(
        "which", nargs="?", default="reproducer", choices=sorted(schema.SCHEMAS), help="(default: reproducer)"
    )
    p.set_defaults(func=cmd_schema)


# ---- minimize ----


def cmd_minimize(args: argparse.Namespace) -> int:
    from rmapfuzz import minimize

    if args.budget <= 0:
        raise CliError(f"--budget must be positive, got {args.budget}")
    if args.max_steps is not None and args.max_steps < 0:
        raise CliError(f"--max-steps must be at least 0, got {args.max_steps}")
    kernel = _kernel(args.kernel)  # an overlay file: loaded first, so files saved under its name load
    reps = Batch(args.files, args.json)
    console = _console()
    for rep in reps:
        if kernel is not None and resolve(kernel).name != rep.kernel:
            if args.write:
                reps.report(f"{rep.name}: --write records the file's own kernel ({rep.kernel}), not {kernel}")
                continue
            rep = attrs.evolve(rep, kernel=resolve(kernel).name)
        try:
            out = minimize.minimize_reproducer(
                rep, exhaustive_search=args.exhaustive, budget=args.budget, max_steps=args.max_steps
            )
        except ValueError as exc:
            reps.report(str(exc))
            continue
        if args.write:
            minimize.write_reproducer(out.rep)
        record = out.rep.minimal or {}
        if args.json:
            _emit_json(
                {
                    "file": str(rep.path),
                    "steps_before": out.before,
                    "steps_greedy": out.greedy,
                    "steps_after": len(out.rep.steps),
                    "minimal": record,
                    "steps": [ops.to_json(op) for op in out.rep.steps],
                    "written": bool(args.write),
                }
            )
            continue
        head = Text.assemble((str(rep.path), "bold"), f": {out.before} -> {len(out.rep.steps)} steps, ")
        head.append(str(record.get("status")), style="bold green" if record.get("status") == "proved" else "yellow")
        head.append(f" ({record.get('method')})")
        if args.write:
            head.append(" [written]", style="dim")
        console.print(head)
        bound = record.get("bound") or {}
        if record.get("method") == "exhaustive":
            stats = bound.get("stats", {})
            console.print(
                Text(
                    f"  bound: length <= {bound.get('length')}, window {bound.get('window')}, "
                    f"{bound.get('processes')} process(es), language {bound.get('language_size')} ops "
                    f"(pruned alphabet <= {stats.get('alphabet_max')}), {stats.get('sequences')} sequences, "
                    f"{stats.get('states')} states, {bound.get('seconds')} s"
                )
            )
        if record.get("reason"):
            console.print(Text(f"  {record['reason']}"))
        for op in out.rep.steps:
            console.print(Text(f"  {ops.describe(op)}"))
    return reps.status(0)


def add_minimize_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "minimize",
        help="shrink reproducers further, and prove them minimal with a bounded exhaustive search",
        description="Greedy replay-based reduction (same invariant, same failing-step shape); with "
        "--exhaustive, a breadth-first search over every shorter sequence (same window, same number of "
        "processes) proves the reproducer minimal or finds a shorter one. See docs/minimality.md.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="reproducer files")
    p.add_argument("--kernel", help="minimise on this model (a name or an overlay file) instead of each file's own")
    p.add_argument("--exhaustive", action="store_true", help="prove minimality by a bounded exhaustive search")
    p.add_argument("--max-steps", type=int, default=None, metavar="N", help="search sequences of at most N steps")
    p.add_argument("--budget", type=seconds, default=300.0, metavar="SECONDS", help="search time per file (300)")
    p.add_argument("--write", action="store_true", help="record the result in the file (atomically)")
    p.add_argument("--json", action="store_true", help="one JSON object per file per line")
    p.set_defaults(func=cmd_minimize)


# ---- oracle ----


USER_TOP = 0x7FFF_FFFF_F000  # x86-64's TASK_SIZE with 4-level paging (MAP_FIXED above it is ENOMEM)
MAX_LIVE_PAGES = 1 << 20  # 4 GiB of address space: far past any window a reproducer names (at most 128 pages)


def _oracle_window(args: argparse.Namespace) -> Any:
    from rmapfuzz.oracle.executor import DEFAULT_BASE, Window

    try:
        base = DEFAULT_BASE if args.base is None else int(args.base, 0)
    except ValueError:
        raise CliError(f"--base must be an address (e.g. 0x200000000000), got {args.base!r}") from None
    if base % 4096 or base <= 0:
        raise CliError(f"--base must be a positive page-aligned address, got {args.base!r}")
    if not 0 <= args.offset <= MAX_LIVE_PAGES or not 2 <= args.window_pages <= MAX_LIVE_PAGES:
        raise CliError(f"--offset must be from 0 and --window-pages from 2, both up to {MAX_LIVE_PAGES:,} pages")
    window = Window(base=base, offset=args.offset, pages=args.window_pages)
    top = window.start + (window.pages + 1) * 4096  # the window and the guard page above it
    if top > USER_TOP:
        raise CliError(
            f"the window {window.start:#x} (+{window.pages} pages and a guard page) ends at {top:#x}, above the "
            f"top of the user address space ({USER_TOP:#x}): choose a lower --base or --offset"
        )
    return window


FDS_PER_WORKER = 4  # the oracle's executor: a command and a reply pipe per worker, both ends, and a pidfd
FDS_SPARE = 64  # the controller's own: stdio, BPF maps and programs, /proc files being read


def oracle_limits(processes: int) -> None:
    """The live oracle forks up to ``processes`` workers, with pipes for each: the soft limits on open
    files and on processes are raised to what that needs when the hard limits allow; otherwise one
    clear line (exit 3) before anything is forked, never an EMFILE or EAGAIN in the middle of a run."""
    import resource

    def enough(limit: int, need: int, name: str, hint: str) -> None:
        soft, hard = resource.getrlimit(limit)
        if soft == resource.RLIM_INFINITY or soft >= need:
            return
        if hard == resource.RLIM_INFINITY or hard >= need:
            resource.setrlimit(limit, (need, hard))
            return
        raise Infrastructure(f"the live oracle needs {need} {name} for {processes} processes, the limit is {hard} "
                             f"({hint})")  # fmt: skip

    enough(resource.RLIMIT_NOFILE, FDS_PER_WORKER * processes + FDS_SPARE, "open files", "raise it: ulimit -n")
    if os.geteuid() != 0:  # root is not held to RLIMIT_NPROC
        enough(resource.RLIMIT_NPROC, processes + 16, "processes", "raise it: ulimit -u")


def cmd_oracle(args: argparse.Namespace) -> int:
    from rmapfuzz.oracle import oracle as orc
    from rmapfuzz.oracle.executor import ExecutorError

    try:
        levels = orc.parse_levels(args.levels)
    except orc.OracleError as exc:
        raise CliError(str(exc)) from None
    if args.fuzz and args.files:
        raise CliError("give reproducer files or --fuzz, not both")
    if not args.fuzz and not args.files:
        raise CliError("give reproducer files, or --fuzz for a differential campaign")
    window = _oracle_window(args)
    batch = Batch([] if args.fuzz else args.files, args.json)  # a bad file is reported, the others run
    reps = list(batch)
    if not args.fuzz and not reps:
        return batch.status(0)
    strat = None
    if args.fuzz:
        try:
            strat = strategy.load(args.strategy)
        except StrategyError as exc:
            raise CliError(str(exc)) from None
        if args.budget <= 0:
            raise CliError(f"--budget must be positive, got {args.budget}")
        if args.sequences is not None and args.sequences < 1:
            raise CliError(f"--sequences must be at least 1, got {args.sequences}")
        if args.corpus:
            writable_directory("--corpus", Path(args.corpus))
    processes = (
        strat.max_processes
        if strat is not None
        else max(sum(isinstance(op, ops.Fork) for op in r.steps) + 1 for r in reps)
    )
    if args.vm:  # the same command inside a lab guest booting a real kernel (docs/lab.md)
        from rmapfuzz.lab.command import oracle_in_guest

        return oracle_in_guest(args)
    oracle_limits(processes)
    try:
        oracle = orc.Oracle(levels, window, kernel=resolve(args.kernel or "current").name, strict=args.strict)
    except orc.LevelUnavailable as exc:  # --strict: the machine cannot observe what was asked
        _error(f"infrastructure failure: {exc}")
        return 3
    except (orc.OracleError, ExecutorError) as exc:
        raise CliError(str(exc)) from None
    console = _console()
    if oracle.left_out and not args.json:  # never a silent drop to fewer levels
        for name, why in oracle.left_out.items():
            console.print(Text(f"warning: level {name} left out: {why} (--strict makes this an error)", style="yellow"))
    try:
        with oracle:
            if oracle.partial and not args.json:
                for name, why in oracle.partial.items():
                    console.print(Text(f"warning: level {name} observed in part: {why} (--strict makes this an error)",
                                       style="yellow"))  # fmt: skip
            if strat is not None:
                return _oracle_fuzz(args, oracle, strat, console)
            return batch.status(_oracle_files(args, oracle, reps, console))
    except orc.LevelUnavailable as exc:  # --strict: no swap, so L4 could not be fully observed
        _error(f"infrastructure failure: {exc}")
        return 3
    except (orc.OracleError, ExecutorError) as exc:
        raise CliError(str(exc)) from None


def _swap_words(report: dict[str, Any]) -> str:
    """Whether the run could swap pages out (what L4 compares after a MADV_PAGEOUT), in words."""
    swap = report["swap"]
    return f"swap {'on' if swap['active'] else 'off'}: {swap['how']}"


def _oracle_files(args: argparse.Namespace, oracle: Any, reps: list[corpus.Reproducer], console: Console) -> int:
    diverged = False
    report = oracle.report()
    if not args.json:
        console.print(Text(f"kernel {report['uname']} vs model {report['model']}; levels {','.join(oracle.used)}; "
                           f"{_swap_words(report)}"))  # fmt: skip
    for rep in reps:
        outcome = oracle.run(rep.steps, rep.window)
        diverged = diverged or outcome.status == "diverge"
        if args.json:
            _emit_json({"file": str(rep.path), **report, **outcome.to_json()})
            continue
        if outcome.status == "agree":
            console.print(Text.assemble(("agree    ", "green"), f"{rep.path}  ({outcome.steps} steps)"))
        elif outcome.status == "skipped":
            console.print(Text.assemble(("skipped  ", "dim"), f"{rep.path}  {outcome.reason}"))
        else:
            div = outcome.divergence
            console.print(Text.assemble(("DIVERGE  ", "bold red"), f"{rep.path}  step {div.step} {div.level}: "
                                        f"{div.message}"))  # fmt: skip
            console.print(Text(f"  step:   {ops.describe(rep.steps[div.step])}"))
            console.print(Text(f"  kernel: {div.kernel}"))
            console.print(Text(f"  model:  {div.model}"))
    return 1 if diverged else 0


def _oracle_fuzz(args: argparse.Namespace, oracle: Any, strat: strategy.Strategy, console: Console) -> int:
    from rmapfuzz.oracle import oracle as orc

    seed = _seed(args.seed)
    corpus_dir = Path(args.corpus) if args.corpus else None
    result = orc.fuzz(oracle, strat, budget=args.budget, seed=seed, corpus_dir=corpus_dir, sequences=args.sequences)
    div = result.divergence
    if args.json:
        _emit_json(
            {
                **oracle.report(),
                "strategy": strat.name,
                "seed": seed,
                "seconds": round(result.seconds, 3),
                "sequences": result.sequences,
                "steps": result.steps,
                "divergence": None if div is None else div.to_json(),
                "reproducer": [ops.to_json(op) for op in result.steps_list],
                "path": result.path,
                "status": result.status,
                "unconfirmed": [
                    {"divergence": u.divergence.to_json(), "steps": [ops.to_json(op) for op in u.steps]}
                    for u in result.unconfirmed
                ],
            }
        )
        return 1 if div else 0
    rate = result.sequences / result.seconds if result.seconds else 0.0
    console.print(Text(f"oracle fuzz: {oracle.uname} vs {oracle.kernel}, levels {','.join(oracle.used)}, strategy "
                       f"{strat.name}, seed {seed}, {_swap_words(oracle.report())}: {result.sequences} sequences, "
                       f"{result.steps} steps in {result.seconds:.1f} s ({rate:.1f} sequences/s)"))  # fmt: skip
    for u in result.unconfirmed:  # seen once, never again on replay: the kernel's timing, not the model
        what = f"step {u.divergence.step} {u.divergence.level}: {u.divergence.message}"
        line = f"warning: unconfirmed divergence (no replay of its {len(u.steps)} steps showed it again): {what}"
        console.print(Text(line, style="yellow"))
    if div is None:
        console.print(Text("no divergence", style="bold green"))
        return 0
    console.print(Text(f"DIVERGENCE at step {div.step} {div.level}: {div.message}", style="bold red"))
    for i, op in enumerate(result.steps_list):
        console.print(Text(f"  {i:3} {ops.describe(op)}"))
    console.print(Text(f"  kernel: {div.kernel}"))
    console.print(Text(f"  model:  {div.model}"))
    if result.path:
        console.print(Text(f"saved ({result.status}): {result.path}"))
    return 1


def add_oracle_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "oracle",
        help="run reproducers (or a differential campaign) on the running kernel and the current model",
        description="Replay each reproducer on the live kernel (a tree of forked worker processes in a private "
        "window) and on the `current` model, comparing every step's result and the VMA layout (L0), page "
        "identity (L2) and, at the end, VmFlags/Anonymous (L1). Prints the first divergence or 'agree'. "
        "Exit 1 on a divergence, 0 if all agree, 2 on bad input. See docs/live-oracle.md.",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="reproducer files")
    p.add_argument(
        "--levels",
        default="L0,L1,L2,L3,L4",
        help="observation levels (default L0,L1,L2,L3,L4; a level this machine cannot observe is dropped and reported)",
    )
    p.add_argument(
        "--kernel",
        default=None,
        help="the model to compare with (default current = 6.18.8; with --vm, the lab kernel's generation)",
    )
    p.add_argument("--strict", action="store_true", help="a level asked for but not observable is an error (exit 3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--fuzz", action="store_true", help="run a differential campaign instead of files")
    p.add_argument("--budget", type=seconds, default=60.0, help="--fuzz: seconds to run (default 60)")
    p.add_argument("--sequences", type=int, default=None, help="--fuzz: stop after this many sequences")
    p.add_argument("--strategy", default="default", help="--fuzz: a strategy name or .toml (fail_alloc is left out)")
    p.add_argument("--seed", default=None, help="--fuzz: seed (default: random)")
    p.add_argument("--corpus", default="divergences", help="--fuzz: where to save a divergence (default ./divergences)")
    p.add_argument("--base", default=None, help="live window base address (default 0x200000000000)")
    p.add_argument("--offset", type=int, default=0, help="live window offset from the base, in pages")
    p.add_argument("--window-pages", type=int, default=64, help="live window size in pages (default 64)")
    p.add_argument(
        "--vm", default=None, metavar="NAME", help="run inside a lab guest booting NAME (rmapfuzz lab kernels)"
    )
    p.add_argument("--vm-timeout", type=float, default=900.0, metavar="S", help="--vm: give the guest S seconds (900)")
    p.set_defaults(func=cmd_oracle)


# ---- export ----


def cmd_export(args: argparse.Namespace) -> int:
    from rmapfuzz import export
    from rmapfuzz.oracle.oracle import load_reproducer

    rep = load_reproducer(args.file)
    try:
        text = export.to_c(rep, args.file) if args.c else export.to_pytest(rep, args.file)
    except export.ExportError as exc:
        raise CliError(f"{args.file}: {exc}") from None
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{args.output}: cannot write: {exc.strerror}") from None
    _console().print(Text(f"wrote {args.output}"))
    return 0


def add_export_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a reproducer as a standalone C program or a pytest regression test",
        description="--c: a libc-only C program that performs the steps on a real kernel and checks the final "
        "VMA layouts against the current model (PASS/FAIL), then makes the kernel walk the rmap of every page it "
        "mapped (page_idle, MADV_PAGEOUT), so a dangling anon_vma crashes a kernel with the bug; fail_alloc steps "
        "become fail-nth fault injection (docs/lab.md). --pytest: a test module replaying the steps with "
        "rmapfuzz.replay and expecting the recorded violation on the reproducer's kernel.",
    )
    p.add_argument("file", metavar="FILE", help="a reproducer file")
    form = p.add_mutually_exclusive_group(required=True)
    form.add_argument("--c", action="store_true", help="a standalone C program")
    form.add_argument("--pytest", action="store_true", help="a pytest regression test")
    p.add_argument("-o", "--output", default=None, metavar="OUT", help="write here (default: stdout)")
    p.set_defaults(func=cmd_export)


# ---- lab: real kernels under QEMU (rmapfuzz/lab/command.py) ----


def add_lab_command(subparsers: Subparsers) -> None:
    from rmapfuzz.lab.command import add_lab_command as add

    add(subparsers)


# ---- main ----


# ---- diff: model against model ----


def diff_config(args: argparse.Namespace) -> DiffConfig:
    kernel = _kernel(args.kernel) or args.kernel
    against = _kernel(args.against) or args.against
    try:
        levels = levels_without(n.strip() for n in args.ignore.split(",") if n.strip()) if args.ignore else LEVELS
    except PairError as exc:
        raise CliError(f"--ignore: {exc}") from None
    if not levels:
        raise CliError("--ignore: every level is ignored, nothing is left to compare")
    budget = _budget_and_shrink(args)
    names = _invariants(args.invariants)
    without = tuple(op.strip() for op in (args.without or "").split(",") if op.strip())
    bad = [op for op in without if op not in strategy.RULE_OPS or op == "mmap"]
    if bad:
        raise CliError(
            f"--without: {bad[0]!r} is not an op that can be left out (ops: {', '.join(strategy.RULE_OPS[1:])})"
        )
    corpus_dir = None if args.no_corpus else Path(args.corpus)
    if corpus_dir is not None:
        writable_directory("--corpus", corpus_dir)
    try:
        strat = strategy.load(args.strategy)
    except StrategyError as exc:
        raise CliError(str(exc)) from None
    return DiffConfig(
        kernel=kernel,
        against=against,
        strategy=strat,
        seed=_seed(args.seed),
        budget=budget,
        examples=args.examples,
        levels=levels,
        invariants=tuple(names) if names else None,
        keep_going=args.keep_going,
        corpus_dir=corpus_dir,
        shrink_seconds=args.shrink_seconds,
        without=without,
    )


def diff_find_json(find: differential.DiffFind) -> dict[str, Any]:
    return {
        "signature": find.signature,
        "level": find.level,
        "levels": list(find.levels),
        "message": find.message,
        "steps": [ops.to_json(op) for op in find.steps],
        "steps_found": find.found_steps,
        "seconds": round(find.seconds, 3),
        "examples_before": find.examples_before,
        "path": None if find.path is None else str(find.path),
        "status": find.status,
    }


def cmd_diff(args: argparse.Namespace) -> int:
    config = diff_config(args)
    console = _console()
    if not args.json:
        console.print(
            Text(f"rmapfuzz diff: {config.kernel} against {config.against}, seed {config.seed}", style="bold")
        )
    result = differential.run(config)
    a, b = result.names
    if args.report is not None:
        try:
            Path(args.report).write_text(differential.report_text(result))
        except OSError as exc:
            raise CliError(f"cannot write the report to {args.report}: {exc.strerror}") from None
    if args.json:
        _emit_json(
            {
                "kernel": a,
                "against": b,
                "seed": config.seed,
                "levels": list(config.levels),
                "without": list(config.without),
                "seconds": round(result.seconds, 3),
                "interrupted": result.interrupted,
                "examples": result.examples,
                "steps": result.steps,
                "ended_broken": dict(result.ended_broken),
                "finds": [diff_find_json(f) for f in result.finds],
            }
        )
        return result.exit_code
    console.print(
        Text(
            f"{result.examples:,} test cases, {result.steps:,} steps in {result.seconds:.1f} s, "
            f"levels {', '.join(config.levels)}"
        )
    )
    if result.ended_broken:
        broken = ", ".join(f"{name} x{n}" for name, n in result.ended_broken.most_common())
        console.print(Text(f"test cases that ended on a broken invariant with no difference: {broken}", style="dim"))
    if not result.finds:
        console.print(Text(f"no difference between {a} and {b}", style="bold green"))
    for find in result.finds:
        head = f"{find.signature}: {find.status or 'not saved'} {find.path or ''}"
        console.print(Text(head, style="bold red"))
        rep = corpus.load(find.path) if find.path else corpus.Reproducer(
            a, config.strategy.window, list(find.steps), kind="difference", against=b
        )  # fmt: skip
        render.print_difference_steps(console, rep, against=b, levels=config.levels, states=False)
    if result.interrupted:
        _error("interrupted")
    return result.exit_code


def add_diff_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "diff",
        help="search for steps after which two kernel models differ (is this patch a no-op here?)",
        description="Run the same generated steps on two models side by side and compare, after every step, "
        "the result, the VMA layout, the flags, the pages, the anon_vma graph, each page's anon_vma and the "
        "invariants broken. Each new difference is reduced and saved as a 'difference' reproducer. "
        "Exit 1 if the models differ, 0 if they agreed for the whole budget.",
    )
    p.add_argument("--kernel", required=True, help="kernel A: a model name or an overlay file (path.py[:Class])")
    p.add_argument("--against", required=True, help="kernel B, compared with A")
    p.add_argument(
        "--ignore", default=None, metavar="LEVELS", help=f"comma-separated levels not to compare ({', '.join(LEVELS)})"
    )
    p.add_argument("--without", default=None, metavar="OPS", help="comma-separated ops left out (e.g. fail_alloc)")
    p.add_argument("--strategy", default="default", help="a strategy name or a .toml file (default: default)")
    p.add_argument("--seed", default=None, help="campaign seed (default: random, printed)")
    p.add_argument("--budget", type=seconds, default=None, help="seconds to run (default 60)")
    p.add_argument("--examples", type=int, default=None, help="test cases to run instead of a time budget")
    p.add_argument("--invariants", default=None, help="comma-separated invariants to judge (default: all)")
    p.add_argument("--keep-going", action="store_true", help="after a difference, look for other signatures")
    p.add_argument("--shrink-seconds", type=seconds, default=10.0, help="the most time one reduction takes (10)")
    p.add_argument("--corpus", default="corpus", help="where differences are saved (default ./corpus)")
    p.add_argument("--no-corpus", action="store_true", help="save nothing")
    p.add_argument("--report", metavar="FILE", help="also write the differences as plain text for a review mail")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_diff)


COMMANDS: list[Callable[[Subparsers], None]] = [
    add_kernels_command,
    add_invariants_command,
    add_replay_command,
    add_show_command,
    add_check_command,
    add_fuzz_command,
    add_diff_command,
    add_coverage_command,
    add_schema_command,
    add_minimize_command,
    add_oracle_command,
    add_export_command,
    add_lab_command,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="A stateful property-based fuzzer for dangling anon_vma bugs in models of Linux's rmap.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


class _ReaderMayGo:
    """stdout, for a reader that may stop reading (``rmapfuzz show X | head -1``): once the pipe is
    closed, output is discarded and the command runs to its end, so the exit code is still its own
    (1 for a violation shown, ...), with no traceback and no complaint at exit."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                written = self._stream.write(text)
            except BrokenPipeError:
                self._went()
            else:
                return len(text) if written is None else int(written)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._went()

    def _went(self) -> None:
        self.gone = True
        try:  # what is still buffered goes nowhere, so the interpreter's last flush succeeds
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    stdout = sys.stdout
    sys.stdout = _ReaderMayGo(stdout)
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    finally:
        sys.stdout = stdout


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (argparse prints it)
        return exc.code if isinstance(exc.code, int) else 2
    func: Callable[[argparse.Namespace], int] = args.func
    as_json = getattr(args, "json", False) or getattr(args, "format", None) == "json"

    def fail(message: str, code: int) -> int:
        """One line on stderr; under --json also an object on stdout, so a reader of it sees why."""
        _error(message)
        if as_json:
            _emit_json({"error": message, "exit_code": code})
        return code

    try:
        return func(args)
    except (corpus.CorpusError, CliError, ops.OpError, UnknownKernel, OverlayError) as exc:
        return fail(str(exc), 2)
    except Infrastructure as exc:
        return fail(f"infrastructure failure: {exc}", 3)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except Exception as exc:  # an infrastructure failure (I/O, a database) or a bug in rmapfuzz
        if os.environ.get("RMAPFUZZ_DEBUG"):
            raise
        kind = "infrastructure failure" if isinstance(exc, OSError | ConnectionError) else "internal error"
        return fail(f"{kind}: {type(exc).__name__}: {exc} (RMAPFUZZ_DEBUG=1 shows the traceback)", 3)


if __name__ == "__main__":
    sys.exit(main())
