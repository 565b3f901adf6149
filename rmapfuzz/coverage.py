"""Kernel-path coverage of the model: the coverage points a generation can reach, and reports.

A coverage point is a ``self.trace.cover("function: branch")`` in a kernel function
(:mod:`rmapfuzz.model.trace`).  The set a generation can reach is read from the source, the way a
compiler knows a function's branches: starting from the system-call layer (``apply``), follow every
``self.f(...)`` and ``super().f(...)`` call through the generation's method resolution order, and
collect the string literals of the ``cover`` calls of every function reached (a conditional
expression choosing between literals gives each of them).  An overlay that overrides a function
replaces its points; one that adds a branch adds a point.  So the set is per generation, and a
user's overlay gets its own with no list to keep.

Some reachable points are beyond the op language on a generation (:func:`beyond_the_language`
says which and why); the rest should all be reached by a campaign, and :func:`report` shows which
were, how often, and which were not.
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from rmapfuzz.model.core import KernelCore

ENTRY = "apply"


@attrs.frozen
class Point:
    """One coverage point: its name, and the kernel function (file, class, line) that defines it."""

    name: str
    function: str  # the kernel function the point is in (the name's part before ": ")
    owner: str  # the model class that defines that function
    path: str  # its file, relative to the package
    line: int


@attrs.frozen
class _Function:
    owner: type
    node: ast.FunctionDef
    path: str
    first_line: int


def _source(fn: Callable[..., Any]) -> tuple[ast.FunctionDef, str, int] | None:
    """The parsed definition of a plain function, its file and first line; None for builtins and
    the like (no source: they cover nothing)."""
    try:
        lines, first = inspect.getsourcelines(fn)
        path = inspect.getsourcefile(fn)
    except (OSError, TypeError):
        return None
    tree = ast.parse(textwrap.dedent("".join(lines)))
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef):
        return None
    return node, path or "?", first


def _lookup(cls: type, name: str, after: type | None = None) -> _Function | None:
    """``name`` as ``cls`` resolves it (or, for ``super()`` in a method of ``after``, as the next
    class after ``after`` in ``cls``'s method resolution order does)."""
    mro = cls.__mro__
    if after is not None:
        mro = mro[mro.index(after) + 1 :]
    for owner in mro:
        attr = owner.__dict__.get(name)
        if attr is None:
            continue
        if isinstance(attr, staticmethod | classmethod):
            attr = attr.__func__
        if not callable(attr):
            return None
        parsed = _source(attr)
        if parsed is None:
            return None
        node, path, first = parsed
        return _Function(owner, node, path, first)
    return None


def _calls(node: ast.FunctionDef) -> Iterator[tuple[str, bool]]:
    """(name, via super()) for every ``self.name(...)`` and ``super().name(...)`` in the function."""
    for call in ast.walk(node):
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
            continue
        target = call.func.value
        if isinstance(target, ast.Name) and target.id == "self":
            yield call.func.attr, False
        elif (
            isinstance(target, ast.Call)
            and isinstance(target.func, ast.Name)
            and target.func.id == "super"
            and not target.args
        ):
            yield call.func.attr, True


def _cover_calls(node: ast.FunctionDef) -> Iterator[tuple[str, int]]:
    """(point, line within the function) for every string literal in a ``self.trace.cover(...)``."""
    for call in ast.walk(node):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "cover"
            and ast.unparse(call.func.value) == "self.trace"
        ):
            for arg in call.args:
                for const in ast.walk(arg):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        yield const.value, const.lineno


def _package_relative(path: str) -> str:
    p = Path(path)
    parts = p.parts
    return str(Path(*parts[parts.index("rmapfuzz") :])) if "rmapfuzz" in parts else str(p)


# One reading at a time (and one per kernel class): a campaign's progress thread reports coverage
# while the search runs, and CPython 3.11 keeps the AST converter's recursion depth in interpreter
# state shared by its threads, so two threads in ast.parse at once can fail with "SystemError: AST
# constructor recursion depth mismatch" (seen in the test suite on 3.11.7; python/cpython
# gh-106905 is about the same check).  _source(), this module's only ast.parse, runs under it.
_READING = threading.Lock()


def points(kernel: type[KernelCore]) -> tuple[Point, ...]:
    """Every coverage point ``kernel`` can reach from its system-call layer, by function then line."""
    with _READING:
        return _points(kernel)


@functools.cache
def _points(kernel: type[KernelCore]) -> tuple[Point, ...]:
    seen: set[tuple[type, str]] = set()
    found: dict[str, Point] = {}
    todo: list[tuple[str, type | None]] = [(ENTRY, None)]
    while todo:
        name, after = todo.pop()
        fn = _lookup(kernel, name, after)
        if fn is None or (fn.owner, name) in seen:
            continue
        seen.add((fn.owner, name))
        for point, line in _cover_calls(fn.node):
            found.setdefault(
                point,
                Point(
                    point,
                    point.split(": ", 1)[0],
                    fn.owner.__name__,
                    _package_relative(fn.path),
                    fn.first_line + line - 1,
                ),
            )
        for callee, via_super in _calls(fn.node):
            todo.append((callee, fn.owner if via_super else None))
    return tuple(sorted(found.values(), key=lambda p: (p.function, p.path, p.line, p.name)))


def beyond_the_language(kernel: type[KernelCore]) -> dict[str, str]:
    """The points ``kernel``'s code has but the op language cannot drive it to, and why: branches
    behind a feature the generation does not have, or callers that never pass what the branch needs."""
    from rmapfuzz.kernels.v6_0 import Linux60
    from rmapfuzz.kernels.v6_1 import Linux61
    from rmapfuzz.kernels.v6_15 import Linux615
    from rmapfuzz.kernels.v6_16 import Linux616
    from rmapfuzz.kernels.v6_18 import Linux6188

    f = kernel.features
    out: dict[str, str] = {}
    if not f.wipeonfork:
        out["dup_mmap: VM_WIPEONFORK copy starts unfaulted"] = (
            "MADV_WIPEONFORK came in 4.14: before, the advice is EINVAL and no VMA has the flag"
        )
    if f.pageout_skips_shared:
        out["try_to_unmap: page shared"] = (
            "MADV_PAGEOUT (5.4+) skips pages mapped more than once, and it is the op language's only reclaim"
        )
    else:
        out["madvise_pageout: a shared page is skipped"] = (
            "before 5.4 the language's reclaim (shrink_page_list() reaching the range) takes shared pages too"
        )
    if "F" not in kernel.bugs:
        out["free_pgtables: the page table goes with ptes no VMA covers"] = (
            "the range's ptes are all zapped before its page table is freed; only a tail unmapped whole after "
            "a split that answered success without splitting (3.12's bug F, ef0855d334e1) leaves one"
        )
    if issubclass(kernel, Linux60):
        out["do_swap_page: read the page back into the swap cache"] = (
            "from 6.0 in the model a swap-cache miss is read in before 2.6.34's do_swap_page() body runs: a sole "
            "entry on a synchronous device into a fresh page (1493a1913e34), any other by swapin_readahead() "
            "(ec560175c0b6), which reads the faulting entry too; that body then always finds the page in the cache"
        )
    if issubclass(kernel, Linux61):
        why = (
            "6.1's mmap_region() lets prev grow over next only if prev accepts next's anon_vma; an "
            "unfaulted prev's chain is empty, so 3.0's rule refuses a faulted next and vma_expand() never imports"
        )
        out["vma_expand: an unfaulted VMA takes next's anon_vma"] = why
        out["vma_expand: ENOMEM from anon_vma_clone"] = why
    if issubclass(kernel, Linux615):
        out["do_wp_page: an exclusive page is reused where it is"] = (
            "from 6.15 in the model mprotect makes an exclusive page's pte writable at once (64fe24a3e05e) and a "
            "read fault maps a swapped-in exclusive page writable (c18160dba5ff): the op language has no other way "
            "to write-protect an exclusive page (KSM, userfaultfd and soft-dirty are outside it)"
        )
    if issubclass(kernel, Linux616):
        out["is_mergeable_anon_vma: an unfaulted side next to a fork child is refused"] = (
            "from 6.16 (879bca0a2c4f) merges use the three-way rule; the old check is left only in "
            "are_anon_vmas_compatible(), which passes no VMA, so no fork child is ever looked at"
        )
    if issubclass(kernel, Linux6188):
        out["do_mremap: no VMA at the old address (EFAULT before anything changes)"] = (
            "from 6.17 the mremap rework's do_mremap() looks the source up itself and answers EFAULT (or "
            "moves several VMAs) before the 5.16 lookup it calls, which then always finds a VMA"
        )
    return {point: why for point, why in out.items() if point in {p.name for p in points(kernel)}}


def reachable(kernel: type[KernelCore]) -> tuple[Point, ...]:
    """The points of ``kernel`` that the op language can reach (every point but those it cannot)."""
    beyond = beyond_the_language(kernel)
    return tuple(p for p in points(kernel) if p.name not in beyond)


@attrs.frozen
class Report:
    """Coverage of one generation after a campaign: hits per point, and what was never reached."""

    kernel: str
    points: tuple[Point, ...]
    hits: Mapping[str, int]
    why_not: Mapping[str, str]  # point -> why the op language cannot reach it on this kernel

    @property
    def reached(self) -> list[Point]:
        return [p for p in self.points if self.hits.get(p.name)]

    @property
    def unreached(self) -> list[Point]:
        """Reachable points the campaign never reached."""
        return [p for p in self.points if not self.hits.get(p.name) and p.name not in self.why_not]

    @property
    def beyond(self) -> list[tuple[Point, str]]:
        return [(p, self.why_not[p.name]) for p in self.points if p.name in self.why_not]

    @property
    def foreign(self) -> list[str]:
        """Points that were hit but are not in the static set (a tracepoint the reader missed)."""
        known = {p.name for p in self.points}
        return sorted(name for name in self.hits if name not in known)

    def to_json(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel,
            "points": len(self.points),
            "reachable": len(self.points) - len(self.beyond),
            "reached": len(self.reached),
            "hits": {p.name: self.hits.get(p.name, 0) for p in self.points},
            "unreached": [p.name for p in self.unreached],
            "beyond_the_language": {p.name: why for p, why in self.beyond},
            "where": {p.name: f"{p.path}:{p.line} {p.owner}.{p.function}" for p in self.points},
        }

    def markdown(self) -> str:
        """A per-function table to read next to mm/vma.c and mm/rmap.c."""
        total = len(self.points) - len(self.beyond)
        out = [
            f"# Coverage of the {self.kernel} model",
            "",
            f"{len(self.reached)} of {total} reachable points reached"
            + (f"; {len(self.beyond)} beyond the op language (listed last)" if self.beyond else "")
            + ".",
            "",
            "| function | branch | hits | defined at |",
            "|---|---|---:|---|",
        ]
        for p in self.points:
            if p.name in self.why_not:
                continue
            branch = p.name.split(": ", 1)[1] if ": " in p.name else p.name
            n = self.hits.get(p.name, 0)
            out.append(f"| `{p.function}` | {branch} | {n if n else '**never**'} | `{p.path}:{p.line}` {p.owner} |")
        if self.beyond:
            out += ["", "Beyond the op language:", ""]
            out += [f"* `{p.name}` (`{p.path}:{p.line}`): {why}" for p, why in self.beyond]
        if self.foreign:
            out += ["", "Hit but not found in the source (a bug in rmapfuzz.coverage):", ""]
            out += [f"* `{name}`" for name in self.foreign]
        return "\n".join(out) + "\n"


def report(kernel: type[KernelCore] | Sequence[type[KernelCore]], hits: Mapping[str, int] | Iterable[str]) -> Report:
    """The coverage ``hits`` give of ``kernel``, or of several kernels searched in turn (a campaign
    under keep_going moves on to the kernel with each found bug's fix): their points together, a
    point beyond the language only where it is beyond it on every kernel that has it."""
    kernels = [kernel] if isinstance(kernel, type) else list(kernel)
    if not kernels:
        raise ValueError("coverage.report needs at least one kernel")
    merged: dict[str, Point] = {}
    beyond: dict[str, str] = {}
    reachable_somewhere: set[str] = set()
    for k in kernels:
        why = beyond_the_language(k)
        for p in points(k):
            merged.setdefault(p.name, p)
            if p.name in why:
                beyond.setdefault(p.name, why[p.name])
            else:
                reachable_somewhere.add(p.name)
    for name in reachable_somewhere:
        beyond.pop(name, None)
    ordered = tuple(sorted(merged.values(), key=lambda p: (p.function, p.path, p.line, p.name)))
    counted = hits if isinstance(hits, Mapping) else Counter(hits)
    label = kernels[0].name + (f" then, with found bugs' fixes, up to {kernels[-1].name}" if len(kernels) > 1 else "")
    return Report(label, ordered, dict(counted), beyond)
