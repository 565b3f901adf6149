"""Mutation score: how many small faults injected into the model a campaign notices.

    python -m bench.mutants [--kernel current] [--budget 60] [--count 30] [--jobs 1] [--seed N] [--tests]

Mutants are generated, not hand-picked: the script parses the model modules (rmapfuzz/model/*.py)
and the kernel overlays the generation is built from (the rmapfuzz/kernels/*.py modules of its
class's MRO: 6.x's merge code, 3.19's anon_vma reuse, ...), collects every site of a few mutation
kinds inside the kernel functions, and draws ``--count`` of them at random (seeded).  Kinds:

* ``drop-call``: delete a statement that is a bare call (``self.unlink_anon_vmas(vma)``,
  ``self.anon_vma_clone(...)``, ``self.page_dup_rmap(page)`` ...), replaced by ``pass``;
* ``swap-args``: swap the first two arguments of a call with at least two (importer/exporter,
  dst/src);
* ``off-by-one``: ``a + b`` becomes ``a + b + 1`` (pgoff and address arithmetic);
* ``negate-if``: an ``if`` condition is negated;
* ``drop-augassign``: a counter update (``x += 1``, ``x -= 1``) is deleted.

Each mutant is written into a copy of the package in a temporary directory and a fresh campaign
(``rmapfuzz fuzz``, empty corpus, no database) runs against it in a subprocess.  A mutant is
*killed* if the campaign reports a violation (exit 1) or the model crashes; it *survives* if the
budget runs out clean.  The kernel should be one that carries no catalogued bug.

With ``--tests``, every mutant is also run against the model's own tests (:data:`MODEL_TESTS`:
every vma_merge() case drawn, the kernel's VMA tests and selftests restated, split, mremap, fork,
COW and swap; about 600 tests, a second or two).  They state what the kernel does, layouts and
answers included, where the judge only states what is safe: a mutant that merges less than the
kernel does is invisible to any safety rule but fails a test that draws the merge.  The second
score says which survivors only the judge misses, and the tests' own score what they miss.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from bench import fresh_seed
from rmapfuzz import strategy
from rmapfuzz.machine import generated_sequences

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rmapfuzz"
MODEL = PACKAGE / "model"
KERNELS = PACKAGE / "kernels"
KINDS = ("drop-call", "swap-args", "off-by-one", "negate-if", "drop-augassign")
# The model's own tests: what the kernel does, stated without the judge (tests/*.py).
MODEL_TESTS = (
    "test_vma_merge.py", "test_kernel_vma_tests.py", "test_kernel_merge_selftests.py", "test_kernel_cow_selftests.py",
    "test_split.py", "test_mremap.py", "test_fork.py", "test_cow.py", "test_swap_exclusive.py",
    "test_swap_readahead.py", "test_stable_dontunmap.py", "test_bugs_2010.py", "test_gen_6_1.py", "test_gen_7_0.py",
)  # fmt: skip


@attrs.frozen
class Site:
    file: str  # relative to the package: model/mmap.py, kernels/v6_12.py
    kind: str
    lineno: int
    index: int  # which node of that kind in the file (ast.walk order)
    function: str

    @property
    def label(self) -> str:
        return f"{self.file}:{self.lineno} {self.function} {self.kind}"


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            yield node


MATCHES: dict[str, Callable[[ast.AST], bool]] = {
    "drop-call": lambda n: isinstance(n, ast.Expr) and isinstance(n.value, ast.Call),
    "swap-args": lambda n: isinstance(n, ast.Call) and len(n.args) >= 2,
    "off-by-one": lambda n: isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add),
    "negate-if": lambda n: isinstance(n, ast.If),
    "drop-augassign": lambda n: isinstance(n, ast.AugAssign),
}


def _nodes(kind: str, tree: ast.AST) -> list[ast.AST]:
    return [node for node in ast.walk(tree) if MATCHES[kind](node)]


SYMMETRIC = frozenset({"max", "min"})  # builtins whose first two arguments commute


def _observer_call(node: ast.AST, observers: frozenset[str]) -> bool:
    """A call of a tracepoint (``self.trace.cover(...)`` and the other calls of
    rmapfuzz.model.trace) or of a method that only calls tracepoints (:func:`observers`)."""
    call = node.value if isinstance(node, ast.Expr) else node
    if not isinstance(call, ast.Call):
        return False
    func = ast.unparse(call.func)
    return func.startswith("self.trace.") or (func.startswith("self.") and func[len("self.") :] in observers)


def _calls(node: ast.AST | None) -> bool:
    return node is not None and any(isinstance(n, ast.Call) for n in ast.walk(node))


def _branch_observes_only(branch: ast.If, observers: frozenset[str]) -> bool:
    return not _calls(branch.test) and all(_observes_only(b, observers) for b in (branch.body, branch.orelse))


def _observes_only(body: list[ast.stmt], observers: frozenset[str]) -> bool:
    """Statements that change nothing of the model: tracepoint calls, branches on call-free tests
    around them, call-free bindings of local names, a bare return (and docstrings)."""
    for stmt in body:
        if isinstance(stmt, ast.Expr):
            if not (isinstance(stmt.value, ast.Constant) or _observer_call(stmt, observers)):
                return False
        elif isinstance(stmt, ast.If):
            if not _branch_observes_only(stmt, observers):
                return False
        elif isinstance(stmt, ast.Assign):
            if _calls(stmt.value) or not all(isinstance(t, ast.Name) for t in stmt.targets):
                return False
        elif not (isinstance(stmt, ast.Return) and stmt.value is None):
            return False
    return True


def observers(trees: list[ast.Module]) -> frozenset[str]:
    """The methods that only observe (coverage helpers such as 6.12's ``cover_new_range``): every
    definition of the name, in every module, observes only."""
    defs: dict[str, list[ast.FunctionDef]] = {}
    for tree in trees:
        for _, fn in _methods(tree):
            defs.setdefault(fn.name, []).append(fn)
    found: frozenset[str] = frozenset()
    while True:  # until no new name joins (one observer may call another)
        more = frozenset(name for name, fns in defs.items() if all(_observes_only(fn.body, found) for fn in fns))
        if more == found:
            return found
        found = more


def _equivalent(node: ast.AST, observers: frozenset[str]) -> bool:
    """Sites whose mutant is not a model fault: a tracepoint call or a branch around tracepoints
    only, which change what an observer sees, never the model; and swapping the arguments of a call
    whose arguments commute (``max(a, b)``) or are the same expression (``f(near, near, vma)``)."""
    if _observer_call(node, observers):
        return True
    if isinstance(node, ast.If):
        return _branch_observes_only(node, observers)
    if not isinstance(node, ast.Call):
        return False
    if ast.dump(node.args[0]) == ast.dump(node.args[1]):
        return True
    return isinstance(node.func, ast.Name) and node.func.id in SYMMETRIC


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def source_files(kernel: str | None = None) -> list[Path]:
    """The model modules, and the overlay modules ``kernel`` is built from (None: every overlay)."""
    model = sorted(MODEL.glob("*.py"))
    overlays = sorted(p for p in KERNELS.glob("*.py") if p.stem not in ("__init__", "user"))
    if kernel is not None:
        from rmapfuzz.kernels import resolve

        used = {cls.__module__ for cls in resolve(kernel).__mro__}
        overlays = [p for p in overlays if _module(p) in used]
    return model + overlays


def _runs_on(kernel: str | None, path: Path, cls_name: str, fn_name: str) -> bool:
    """Whether ``kernel`` runs this file's ``cls_name.fn_name``: a mutant of a method that the
    generation overrides can never be killed on it (an equivalent mutant, not a weak campaign)."""
    if kernel is None:
        return True
    from rmapfuzz.kernels import resolve

    module = _module(path)
    for owner in resolve(kernel).__mro__:
        if fn_name in owner.__dict__:
            return owner.__module__ == module and owner.__name__ == cls_name
    return True  # not a method of the kernel (a module-level helper): it may run


def _methods(tree: ast.Module) -> Iterator[tuple[str, ast.FunctionDef]]:
    """(class name, function) for every top-level function and method; nested functions are
    part of the function they are defined in."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            yield "", node
        elif isinstance(node, ast.ClassDef):
            yield from ((node.name, fn) for fn in node.body if isinstance(fn, ast.FunctionDef))


def covered_lines(kernel: str, count: int = 300) -> set[tuple[str, int]]:
    """(file, line) pairs of the model and the overlays that ``count`` test cases of the default
    strategy run on ``kernel``: mutants elsewhere (code the generation never runs, such as the
    pre-6.x merge path on a 6.x kernel) could not be killed by any campaign on it."""
    seen: set[tuple[str, int]] = set()
    dirs = (str(MODEL), str(KERNELS))

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        if not frame.f_code.co_filename.startswith(dirs):
            return None
        file = Path(frame.f_code.co_filename).relative_to(PACKAGE).as_posix()

        def lines(frame: Any, event: str, arg: Any) -> Any:
            if event == "line":
                seen.add((file, frame.f_lineno))
            return lines

        return lines

    sys.settrace(tracer)
    try:
        generated_sequences(kernel, strategy.load("default"), count, seed=3)
    finally:
        sys.settrace(None)
    return seen


def sites(kernel: str | None = None, covered: set[tuple[str, int]] | None = None) -> list[Site]:
    """Every mutation site inside a function of a model module or an overlay (docstrings excluded);
    with ``kernel``, only in the modules and functions that generation runs (not overridden by a
    newer overlay); with ``covered``, only on lines the generation's workload runs."""
    out = []
    trees = {path: ast.parse(path.read_text()) for path in source_files()}
    watching = observers(list(trees.values()))
    for path in source_files(kernel):
        file = path.relative_to(PACKAGE).as_posix()
        tree = trees[path]
        for cls_name, fn in _methods(tree):
            if cls_name and not _runs_on(kernel, path, cls_name, fn.name):
                continue
            if fn.name in watching:
                continue  # it only observes: every mutant of it is equivalent
            for kind in KINDS:
                all_nodes = _nodes(kind, tree)
                for node in _nodes(kind, fn):
                    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                        continue
                    if _equivalent(node, watching):
                        continue
                    if covered is not None and (file, getattr(node, "lineno", 0)) not in covered:
                        continue
                    out.append(Site(file, kind, getattr(node, "lineno", 0), all_nodes.index(node), fn.name))
    return sorted(set(out), key=lambda s: (s.file, s.lineno, s.kind, s.index))


class _Mutate(ast.NodeTransformer):
    def __init__(self, site: Site, tree: ast.AST) -> None:
        self.target = _nodes(site.kind, tree)[site.index]
        self.kind = site.kind

    def generic_visit(self, node: ast.AST) -> ast.AST:
        node = super().generic_visit(node)
        if node is not self.target:
            return node
        if self.kind in ("drop-call", "drop-augassign"):
            return ast.Pass()
        if self.kind == "swap-args":
            assert isinstance(node, ast.Call)
            node.args[0], node.args[1] = node.args[1], node.args[0]
        elif self.kind == "off-by-one":
            return ast.BinOp(left=node, op=ast.Add(), right=ast.Constant(1))  # type: ignore[arg-type]
        elif self.kind == "negate-if":
            assert isinstance(node, ast.If)
            node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
        return node


def mutate(site: Site) -> str:
    tree = ast.parse((PACKAGE / site.file).read_text())
    new = _Mutate(site, tree).visit(tree)
    ast.fix_missing_locations(new)
    return ast.unparse(new)


@contextlib.contextmanager
def _mutant_tree(site: Site | None, tests: bool = False) -> Iterator[Path]:
    """A temporary directory holding a copy of the package (and of the tests) with ``site`` mutated."""
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "rmapfuzz"
        shutil.copytree(ROOT / "rmapfuzz", pkg, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "strategies", Path(tmp) / "strategies")
        if tests:
            shutil.copytree(ROOT / "tests", Path(tmp) / "tests", ignore=shutil.ignore_patterns("__pycache__"))
            shutil.copy(ROOT / "pyproject.toml", Path(tmp) / "pyproject.toml")
        if site is not None:
            (pkg / site.file).write_text(mutate(site))
        yield Path(tmp)


def _run(cmd: Sequence[str], tmp: Path, timeout: float) -> int | None:
    """The exit code of ``cmd`` run in ``tmp`` with the mutated package first on the path (None:
    timed out)."""
    try:
        proc = subprocess.run(cmd, cwd=tmp, env={"PYTHONPATH": str(tmp), "PATH": "/usr/bin:/bin"},
                              capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    return proc.returncode


def run_mutant(site: Site | None, kernel: str, budget: float, seed: int, strat: str = "default") -> str:
    """'killed', 'crashed' or 'hung' (both also kills), or 'survived'; ``site`` None runs the
    unmutated model."""
    with _mutant_tree(site) as tmp:
        code = _run([
            sys.executable, "-m", "rmapfuzz", "fuzz", "--kernel", kernel, "--budget", str(budget),
            "--seed", str(seed), "--corpus", str(tmp / "corpus"), "--no-database", "--json", "--strategy", strat,
        ], tmp, budget + 60)  # fmt: skip
    if code is None:
        return "hung"  # the mutant made the model loop forever: counted as killed
    return {1: "killed", 0: "survived"}.get(code, "crashed")


TESTS_TIMEOUT = 300.0  # seconds: the model's tests take a second or two on a quiet machine


def run_tests(site: Site | None, names: Sequence[str] = MODEL_TESTS) -> str:
    """'killed' if the model's own tests (``names`` in tests/) fail on the mutant (or hang), 'survived'
    if they pass, 'error' if pytest could not run them; ``site`` None runs them on the unmutated model."""
    with _mutant_tree(site, tests=True) as tmp:
        code = _run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                     *(f"tests/{name}" for name in names)], tmp, TESTS_TIMEOUT)  # fmt: skip
    if code is None or code in (1, 2):  # failed, or could not even be collected (an import broke)
        return "killed"
    return "survived" if code == 0 else "error"


def report(
    kernel: str,
    budget: float,
    count: int,
    jobs: int,
    seed: int,
    strategies: tuple[str, ...] = ("default",),
    tests: bool = False,
) -> str:
    """Run the unmutated model and ``count`` drawn mutants, each under every strategy (and, with
    ``tests``, every mutant against the model's own tests too); the markdown report."""
    for strat in strategies:
        baseline = run_mutant(None, kernel, budget, seed, strat)
        if baseline != "survived":
            return f"### Mutation score on {kernel}\n\nThe unmutated model does not run clean on {kernel} " \
                   f"with strategy {strat}: {baseline}."  # fmt: skip
    if tests and (baseline := run_tests(None)) != "survived":
        return f"### Mutation score on {kernel}\n\nThe model's own tests fail on the unmutated model: {baseline}."
    pool = sites(kernel, covered_lines(kernel))
    chosen = random.Random(seed).sample(pool, min(count, len(pool)))
    runs = [(site, strat) for site in chosen for strat in strategies]
    with ThreadPoolExecutor(jobs) as ex:
        results = list(ex.map(lambda run: run_mutant(run[0], kernel, budget, seed, run[1]), runs))
    by = {run: result for run, result in zip(runs, results, strict=True)}
    with ThreadPoolExecutor(jobs) as ex:
        tested = dict(zip(chosen, ex.map(run_tests, chosen), strict=True)) if tests else {}
    scores = []
    for strat in strategies:
        parts = []
        for where, part in (("model", "model/"), ("overlays", "kernels/")):
            mine = [site for site in chosen if site.file.startswith(part)]
            parts.append(f"{where} {sum(by[site, strat] != 'survived' for site in mine)}/{len(mine)}")
        killed = sum(by[site, strat] != "survived" for site in chosen)
        scores.append(f"strategy {strat}: killed {killed}/{len(chosen)} ({100 * killed / len(chosen):.0f} %; "
                      f"{', '.join(parts)})")  # fmt: skip
        if tests:
            either = sum(by[site, strat] != "survived" or tested[site] == "killed" for site in chosen)
            scores[-1] += f", with the model's own tests {either}/{len(chosen)}"
    if tests:
        alone = sum(tested[site] == "killed" for site in chosen)
        scores.append(f"the model's own tests alone: killed {alone}/{len(chosen)}")
    in_overlays = sum(site.file.startswith("kernels/") for site in pool)
    lines = [
        f"### Mutation score on {kernel} ({len(chosen)} of {len(pool)} generated mutants, "
        f"{budget:.0f} s campaign each, seed {seed}, {jobs} at once)",
        "",
        f"Sites: every drop-call, swap-args, off-by-one, negate-if and drop-augassign in the model and "
        f"the overlays ({len(sites())} in all) on a line that {kernel} runs in 300 test cases of the "
        f"default strategy ({len(pool)}, {in_overlays} of them in the overlays {kernel} is built from): "
        f"mutants of code the generation never runs (methods its overlays override, the older merge "
        f"paths) cannot be killed on it.  The unmutated model ran "
        f"the same campaigns clean.  " + "; ".join(scores) + ".",
        "",
        "| mutant | " + " | ".join(strategies) + (" | model's own tests |" if tests else " |"),
        "|---|" + "---|" * (len(strategies) + tests),
        *(_row(site, [by[site, strat] for strat in strategies], tested[site] if tests else None) for site in chosen),
    ]
    if tests:
        lines += [
            "",
            f"The model's own tests: {', '.join(MODEL_TESTS)} (in tests/); they pass on the unmutated model.",
        ]
    return "\n".join(lines)


def _row(site: Site, campaigns: list[str], tests: str | None) -> str:
    cells = [f"`{site.label}`", *campaigns, *([tests] if tests is not None else [])]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel", default="current", help="a kernel that carries no catalogued bug")
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=None, help="default: drawn fresh and printed")
    parser.add_argument("--strategy", action="append", help="strategies to compare (default: default)")
    parser.add_argument("--tests", action="store_true", help="run the model's own tests on every mutant too")
    parser.add_argument("--out", default=str(Path(__file__).with_name("MUTANTS.md")))
    args = parser.parse_args(argv)
    seed = fresh_seed(args.seed)
    strategies = tuple(args.strategy or ["default"])
    text = report(args.kernel, args.budget, args.count, args.jobs, seed, strategies, args.tests)
    print(text)
    Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
