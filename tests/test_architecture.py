"""The package's layering: the model knows nothing of the judge, and no module imports itself back.

Every ``import`` of an ``rmapfuzz`` module anywhere in a file (inside functions too) is an edge of
the import graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rmapfuzz"
# What the model may use: itself and the op language it executes.
MODEL_MAY_IMPORT = ("rmapfuzz.model", "rmapfuzz.ops")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The rmapfuzz modules ``path`` imports (a ``from pkg import name`` of a submodule counts as it)."""
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rmapfuzz")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rmapfuzz"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


def test_the_model_imports_nothing_above_it() -> None:
    for module, deps in graph().items():
        if module.startswith("rmapfuzz.model"):
            above = sorted(d for d in deps if not d.startswith(MODEL_MAY_IMPORT))
            assert not above, f"{module} imports {above}"


def test_the_kernels_import_only_the_model() -> None:
    for module, deps in graph().items():
        if module.startswith("rmapfuzz.kernels"):
            above = sorted(d for d in deps if not d.startswith((*MODEL_MAY_IMPORT, "rmapfuzz.kernels")))
            assert not above, f"{module} imports {above}"


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components: every one is a single module.  A package's
    ``__init__`` re-exporting its submodules is the one kind of back edge allowed."""
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g.get(v, ()):
            if w.startswith(v + "."):  # a package importing its own submodules
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert cycles == []
