"""The op language: one language for the model, the corpus, replay and the live kernel.

A sequence of steps runs against a window of ``W`` pages (default 8); every address is a page
number inside the window.  Process 0 exists at the start; a successful ``fork`` creates the next
unused pid (1, 2, ...); pids are never reused.  Each step is a JSON object:

======================================================  =============================================
``{"op": "mmap", "pid", "start", "pages", "prot",      private anonymous mapping, MAP_FIXED;
"flags"}``                                              ``flags`` (optional) ``[]`` or ``["noreserve"]``
``{"op": "munmap", "pid", "start", "pages"}``
``{"op": "mprotect", "pid", "start", "pages", "prot"}``
``{"op": "mremap", "pid", "start", "pages",             ``flags`` from ``maymove``, ``fixed``,
"new_start", "new_pages", "flags"}``                    ``dontunmap``; ``[]`` resizes in place
``{"op": "madvise", "pid", "start", "pages", "advice"}``  ``dontneed``, ``dontfork``, ``dofork``,
                                                        ``wipeonfork``, ``keeponfork``, ``pageout``
``{"op": "fork", "pid"}`` / ``{"op": "exit", "pid"}``
``{"op": "read", "pid", "addr"}`` / ``{"op": "write", "pid", "addr"}``  a one-byte load / store
``{"op": "fail_alloc", "nth": N}``                      the Nth anon_vma/anon_vma_chain allocation
                                                        from now fails with ENOMEM
======================================================  =============================================

``prot`` is a subset of ``"rwx"`` written in that order (``""`` is PROT_NONE).  An in-place
mremap (no ``fixed``) has ``new_start == start``; ``maymove`` without ``fixed`` is not part of the
language (the kernel would choose an address outside the window).  Each step returns what the
kernel would: ``"ok"``, an errno name (``"EINVAL"``, ``"ENOMEM"``, ``"EFAULT"``, ...), ``"SEGV"`` for
a fault without permission (nothing changes), ``"OOM"`` for a fault whose allocation failed, or
``"ESRCH"`` for a pid that does not exist.  :data:`STEP_SCHEMA` is the JSON schema.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any

import attrs

PROTS = ("", "r", "w", "x", "rw", "rx", "wx", "rwx")
ADVICES = ("dontneed", "dontfork", "dofork", "wipeonfork", "keeponfork", "pageout")
MREMAP_FLAGS = ("maymove", "fixed", "dontunmap")
# MAP_NORESERVE: the mapping is not charged to overcommit (VM_NORESERVE instead of VM_ACCOUNT), so
# whether it merges with a neighbour no longer depends on which of the two was ever writable.
MMAP_FLAGS = ("noreserve",)


class OpError(ValueError):
    """A step that is not part of the language (bad JSON shape, unknown op, outside the window)."""


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 2, 3, 3, 60, 40, 60


def short(value: object) -> str:
    """``repr(value)`` cut short, for one-line messages about values read from a file."""
    return _SHORT.repr(value)


@attrs.frozen
class Mmap:
    pid: int
    start: int
    pages: int
    prot: str
    flags: tuple[str, ...] = ()
    op = "mmap"


@attrs.frozen
class Munmap:
    pid: int
    start: int
    pages: int
    op = "munmap"


@attrs.frozen
class Mprotect:
    pid: int
    start: int
    pages: int
    prot: str
    op = "mprotect"


@attrs.frozen
class Mremap:
    pid: int
    start: int
    pages: int
    new_start: int
    new_pages: int
    flags: tuple[str, ...] = ()
    op = "mremap"


@attrs.frozen
class Madvise:
    pid: int
    start: int
    pages: int
    advice: str
    op = "madvise"


@attrs.frozen
class Fork:
    pid: int
    op = "fork"


@attrs.frozen
class Exit:
    pid: int
    op = "exit"


@attrs.frozen
class Read:
    pid: int
    addr: int
    op = "read"


@attrs.frozen
class Write:
    pid: int
    addr: int
    op = "write"


@attrs.frozen
class FailAlloc:
    nth: int
    op = "fail_alloc"


Op = Mmap | Munmap | Mprotect | Mremap | Madvise | Fork | Exit | Read | Write | FailAlloc
OP_CLASSES: dict[str, type] = {
    cls.op: cls for cls in (Mmap, Munmap, Mprotect, Mremap, Madvise, Fork, Exit, Read, Write, FailAlloc)
}


def to_json(op: Op) -> dict[str, Any]:
    """The step as a JSON object, ``op`` first, fields in declaration order."""
    out: dict[str, Any] = {"op": op.op}
    for field in attrs.fields(type(op)):
        value = getattr(op, field.name)
        out[field.name] = list(value) if isinstance(value, tuple) else value
    if isinstance(op, Mmap) and not op.flags:
        del out["flags"]  # optional: a plain mmap reads as it did before MAP_NORESERVE was in the language
    return out


def describe(op: Op) -> str:
    """A compact one-line rendering: ``mprotect(P1, [0,1), rw)``."""
    if isinstance(op, FailAlloc):
        return f"fail_alloc(nth={op.nth})"
    if isinstance(op, (Fork, Exit)):
        return f"{op.op}(P{op.pid})"
    if isinstance(op, (Read, Write)):
        return f"{op.op}(P{op.pid}, {op.addr})"
    if isinstance(op, Mremap):
        flags = "|".join(op.flags) or "in-place"
        return (
            f"mremap(P{op.pid}, [{op.start},{op.start + op.pages}) -> "
            f"[{op.new_start},{op.new_start + op.new_pages}), {flags})"
        )
    rng = f"[{op.start},{op.start + op.pages})"
    extra = f", {op.prot or 'none'}" if isinstance(op, (Mmap, Mprotect)) else ""
    extra += "".join(f", {flag}" for flag in op.flags) if isinstance(op, Mmap) else ""
    extra = f", {op.advice}" if isinstance(op, Madvise) else extra
    return f"{op.op}(P{op.pid}, {rng}{extra})"


def _int(obj: Mapping[str, Any], key: str, op: str, minimum: int = 0) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise OpError(f"{op}: field {key!r} must be an integer, got {short(value)}")
    if value < minimum:
        raise OpError(f"{op}: field {key!r} must be >= {minimum}, got {value}")
    return value


def _range(obj: Mapping[str, Any], op: str, window: int, start_key: str = "start", pages_key: str = "pages") -> None:
    start = _int(obj, start_key, op)
    pages = _int(obj, pages_key, op)
    if start + pages > window or start >= window:
        raise OpError(f"{op}: [{start},{start + pages}) is outside the window of {window} pages")


def parse_step(obj: object, window: int) -> Op:
    """Validate one JSON step and build its op; raises :class:`OpError` naming what is wrong."""
    if not isinstance(obj, Mapping):
        raise OpError(f"a step must be a JSON object, got {type(obj).__name__}")
    raw = obj.get("op")
    cls = OP_CLASSES.get(raw) if isinstance(raw, str) else None
    if cls is None:
        raise OpError(f"unknown op {short(raw)} (known: {', '.join(OP_CLASSES)})")
    name: str = raw  # type: ignore[assignment]
    fields = {f.name for f in attrs.fields(cls)}
    extra = set(obj) - fields - {"op"}
    if extra:
        raise OpError(f"{name}: unknown field {short(sorted(map(str, extra))[0])}")
    missing = fields - set(obj) - ({"flags"} if cls in (Mmap, Mremap) else set())
    if missing:
        raise OpError(f"{name}: missing field {sorted(missing)[0]!r}")
    if cls is FailAlloc:
        return FailAlloc(nth=_int(obj, "nth", name, minimum=1))
    pid = _int(obj, "pid", name)
    if cls in (Fork, Exit):
        return cls(pid=pid)
    if cls in (Read, Write):
        addr = _int(obj, "addr", name)
        if addr >= window:
            raise OpError(f"{name}: addr {addr} is outside the window of {window} pages")
        return cls(pid=pid, addr=addr)
    _range(obj, name, window)
    start, pages = obj["start"], obj["pages"]
    if cls in (Mmap, Mprotect):
        prot = obj.get("prot")
        if prot not in PROTS:
            raise OpError(f"{name}: prot must be a subset of 'rwx' in that order, got {short(prot)}")
        if cls is Mmap:
            return Mmap(pid=pid, start=start, pages=pages, prot=prot, flags=_flags(obj, "mmap", MMAP_FLAGS))
        return Mprotect(pid=pid, start=start, pages=pages, prot=prot)
    if cls is Munmap:
        return Munmap(pid=pid, start=start, pages=pages)
    if cls is Madvise:
        advice = obj.get("advice")
        if advice not in ADVICES:
            raise OpError(f"madvise: advice must be one of {', '.join(ADVICES)}, got {short(advice)}")
        return Madvise(pid=pid, start=start, pages=pages, advice=advice)
    return _parse_mremap(obj, pid, start, pages, window)


def _parse_mremap(obj: Mapping[str, Any], pid: int, start: int, pages: int, window: int) -> Mremap:
    _range(obj, "mremap", window, "new_start", "new_pages")
    flags = _flags(obj, "mremap", MREMAP_FLAGS)
    if "maymove" in flags and "fixed" not in flags:
        raise OpError("mremap: maymove without fixed lets the kernel choose an address outside the window")
    if "fixed" not in flags and obj["new_start"] != start:
        raise OpError("mremap: an in-place resize (no 'fixed') needs new_start == start")
    return Mremap(
        pid=pid, start=start, pages=pages, new_start=obj["new_start"], new_pages=obj["new_pages"], flags=flags
    )


def _flags(obj: Mapping[str, Any], op: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """The optional ``flags`` list of an mmap or mremap step, in the language's order."""
    flags = obj.get("flags", [])
    if (
        not isinstance(flags, list)
        or not all(isinstance(f, str) and f in known for f in flags)
        or len(set(flags)) != len(flags)
    ):
        raise OpError(f"{op}: flags must be a list of distinct names from {', '.join(known)}, got {short(flags)}")
    return tuple(f for f in known if f in flags)


def parse_steps(objs: object, window: int) -> list[Op]:
    """Parse a list of steps; the error names the 0-based step index."""
    if not isinstance(objs, list):
        raise OpError(f"steps must be a JSON list, got {type(objs).__name__}")
    parsed = []
    for i, obj in enumerate(objs):
        try:
            parsed.append(parse_step(obj, window))
        except OpError as exc:
            raise OpError(f"step {i}: {exc}") from None
    return parsed


_PAGE = {"type": "integer", "minimum": 0}
_PID = {"type": "integer", "minimum": 0}
_PROT = {"enum": list(PROTS)}


def _obj(op: str, **props: object) -> dict[str, object]:
    return {
        "type": "object",
        "properties": {"op": {"const": op}, **props},
        "required": ["op", *[p for p in props if p != "flags"]],
        "additionalProperties": False,
    }


STEP_SCHEMA: dict[str, object] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "rmapfuzz step",
    "description": "One step of the op language; page numbers are relative to the window (0 <= page < W).",
    "oneOf": [
        _obj(
            "mmap",
            pid=_PID,
            start=_PAGE,
            pages=_PAGE,
            prot=_PROT,
            flags={"type": "array", "items": {"enum": list(MMAP_FLAGS)}, "uniqueItems": True},
        ),
        _obj("munmap", pid=_PID, start=_PAGE, pages=_PAGE),
        _obj("mprotect", pid=_PID, start=_PAGE, pages=_PAGE, prot=_PROT),
        _obj(
            "mremap",
            pid=_PID,
            start=_PAGE,
            pages=_PAGE,
            new_start=_PAGE,
            new_pages=_PAGE,
            flags={"type": "array", "items": {"enum": list(MREMAP_FLAGS)}, "uniqueItems": True},
        ),
        _obj("madvise", pid=_PID, start=_PAGE, pages=_PAGE, advice={"enum": list(ADVICES)}),
        _obj("fork", pid=_PID),
        _obj("exit", pid=_PID),
        _obj("read", pid=_PID, addr=_PAGE),
        _obj("write", pid=_PID, addr=_PAGE),
        _obj("fail_alloc", nth={"type": "integer", "minimum": 1}),
    ],
}
