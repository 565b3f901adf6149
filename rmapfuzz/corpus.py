"""Reproducer files: a versioned, diff-friendly JSON record of a step sequence and what it broke.

A reproducer names the model kernel it was found on, the window, the steps (op language, see
:mod:`rmapfuzz.ops`) and the violation it produced there; ``found`` says how (seed, strategy,
versions, ...).  Files are data only (the :mod:`json` module, never pickle or eval) and a
hand-written file holding just ``kernel``, ``window`` and ``steps`` is valid.  The format is
described in ``docs/reproducer-format.md``.

:func:`save` keeps one file per :attr:`Reproducer.signature` (kernel, invariant, shape of the
failing step) and replaces it only by a shorter reproducer, atomically and under a lock, so that
several fuzzing workers can save into one directory at once.  :func:`check_reproducer` is the
regression check shared by ``rmapfuzz check`` and the pytest plugin.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from itertools import accumulate
from pathlib import Path
from typing import Any

import attrs

from rmapfuzz import invariants as inv
from rmapfuzz import ops, schema
from rmapfuzz.kernels import UnknownKernel, resolve
from rmapfuzz.kernels.user import is_file_spec
from rmapfuzz.ops import short
from rmapfuzz.pair import pair_replay
from rmapfuzz.replay import Runner, replay

# Limits, checked before or while parsing so that no file can make a reader crash or hang (each is
# documented in docs/reproducer-format.md, "Limits", and stated in the schema, rmapfuzz.schema).
# A file past one is a one-line CorpusError.
FORMAT = schema.FORMAT
FORMAT_VERSION = schema.FORMAT_VERSION
KINDS = schema.KINDS
MAX_FILE_BYTES = schema.MAX_FILE_BYTES
MAX_DEPTH = schema.MAX_DEPTH
MAX_NUMBER_CHARS = schema.MAX_NUMBER_CHARS
MAX_WINDOW = schema.MAX_WINDOW
MAX_STEPS = schema.MAX_STEPS
MAX_FORKS = schema.MAX_FORKS
_FIELDS = tuple(schema.reproducer_schema()["properties"])  # the order dumps() writes them in


class CorpusError(ValueError):
    """A reproducer file that cannot be used; the message is one line naming the file."""


def _violation_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, inv.Violation):
        value = value.to_json()
    out = {key: value[key] for key in ("invariant", "step", "message") if key in value}
    out.update({key: val for key, val in value.items() if key not in out})
    return out


def step_shape(op: ops.Op) -> str:
    """The failing step's shape for a signature: op name, plus mmap or mremap flags or madvise advice."""
    if isinstance(op, ops.Mmap) and op.flags:
        return "mmap-" + "-".join(op.flags)
    if isinstance(op, ops.Mremap):
        return "mremap-" + ("-".join(op.flags) or "inplace")
    if isinstance(op, ops.Madvise):
        return f"madvise-{op.advice}"
    return op.op


@attrs.define
class Reproducer:
    """One reproducer: the steps, where they run, what they broke there, and how they were found."""

    kernel: str
    window: int
    steps: list[ops.Op]
    violation: dict[str, Any] | None = attrs.field(default=None, converter=_violation_dict)
    found: dict[str, Any] = attrs.field(factory=dict)
    kind: str = "violation"
    minimal: dict[str, Any] | None = None
    path: Path | None = attrs.field(default=None, eq=False)
    against: str | None = None  # kind "difference": the kernel the steps are compared with

    @property
    def invariant(self) -> str | None:
        return None if self.violation is None else str(self.violation.get("invariant"))

    @property
    def failing_step(self) -> int | None:
        """The 0-based index of the violating step, if one is recorded."""
        step = None if self.violation is None else self.violation.get("step")
        return step if isinstance(step, int) and 0 <= step < len(self.steps) else None

    @property
    def signature(self) -> str:
        """``kernel:invariant:shape``, e.g. ``2.6.34-rc3:merge-superset:mprotect``.

        Without a recorded violation the invariant part is the kind (``violation`` for a clean
        hand-written file) and the shape is the last step's.
        """
        what = self.invariant or ("clean" if self.kind == "violation" else self.kind)
        index = self.failing_step
        if index is None:
            index = len(self.steps) - 1
        shape = step_shape(self.steps[index]) if self.steps else "empty"
        if self.kind == "difference":
            level = (self.violation or {}).get("level", "none")
            return f"{self.kernel}-vs-{self.against}:difference-{level}:{shape}"
        return f"{self.kernel}:{what}:{shape}"

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else self.signature


def filename(signature: str) -> str:
    """The file a signature is saved under: ``2.6.34-rc3--merge-superset--mprotect.json``."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", signature.replace(":", "--")) + ".json"


# ---- writing ----


def dumps(rep: Reproducer) -> str:
    """The reproducer as versioned JSON: fixed key order, one step per line."""
    head = {
        "format": FORMAT,
        "version": FORMAT_VERSION if rep.kind == "difference" else 1,  # older readers keep the rest
        "kernel": rep.kernel,
        **({"against": rep.against} if rep.kind == "difference" else {}),
        "window": rep.window,
        "kind": rep.kind,
        "signature": rep.signature,
        "violation": rep.violation,
        "found": rep.found,
        "minimal": rep.minimal,
    }
    lines = [f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}," for key, value in head.items()]
    steps = [json.dumps(ops.to_json(op), ensure_ascii=False) for op in rep.steps]
    if steps:
        lines.append('  "steps": [')
        lines.extend(f"    {step}," for step in steps[:-1])
        lines.append(f"    {steps[-1]}")
        lines.append("  ]")
    else:
        lines.append('  "steps": []')
    return "{\n" + "\n".join(lines) + "\n}\n"


def umask() -> int:
    """The process's umask, read without changing it (Linux 4.7+), else set and restored at once."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(target: Path, text: str) -> None:
    """Temp file in the same directory, fsync, rename: the old file stays whole until the new one is.
    The file gets the mode any new file would (0666 less the umask), not mkstemp's private 0600."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive flock on the directory itself: no lock file to leave behind in the corpus."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def save(directory: Path | str, rep: Reproducer) -> tuple[Path, str]:
    """Save ``rep`` under its signature's file name in ``directory``; safe across processes.

    Returns the path and ``"new"`` (no file had that signature), ``"shorter"`` (it replaced a
    longer reproducer) or ``"duplicate"`` (the file already holds one at most as long: unchanged).
    A file that does not load is replaced.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / filename(rep.signature)
    text = dumps(rep)
    loads(text, target)  # what is written must load: the loader's checks, before anything is replaced
    with _locked(directory):
        status = "new"
        if target.exists():
            try:
                old = load(target)
            except CorpusError:
                old = None
            if old is not None and len(old.steps) <= len(rep.steps):
                return target, "duplicate"
            status = "shorter"
        write_atomic(target, text)
    rep.path = target
    return target, status


# ---- reading ----


def _fail(path: Path | str, what: str) -> CorpusError:
    return CorpusError(f"{path}: {what}")


class _Refused(Exception):
    """Raised by the JSON hooks: a number past the limits, NaN or Infinity."""


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number of {len(text)} digits (at most {MAX_NUMBER_CHARS})")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number of {len(text)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text} is out of range")
    return value


def _constant(text: str) -> Any:
    raise _Refused(f"{text} is not a JSON number")


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting(text: str) -> int:
    """How deep the JSON ``text`` nests (strings skipped): one linear scan, done in C (the file
    size is bounded before)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub('""', text))
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def _parse_json(path: Path | str, text: str) -> Any:
    if not text.strip():
        raise _fail(path, "empty file (truncated?)")
    if nesting(text) > MAX_DEPTH:
        raise _fail(path, f"not a reproducer: the JSON is nested more than {MAX_DEPTH} deep")
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _Refused as exc:
        raise _fail(path, f"not a reproducer: {exc}") from None
    except RecursionError:  # the pre-scan bounds the depth; this is a second net
        raise _fail(path, "not a reproducer: the JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise _fail(path, f"truncated: the JSON ends early (line {exc.lineno})") from None
        raise _fail(path, f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None


def _decode(path: Path | str, raw: bytes) -> str:
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(path, f"larger than {MAX_FILE_BYTES:,} bytes, not a reproducer")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(path, f"not JSON: not UTF-8 text (byte {exc.start})") from None


def loads(text: str | bytes, path: Path | str = "<string>") -> Reproducer:
    """Parse a reproducer from JSON text (or UTF-8 bytes); raises :class:`CorpusError` naming ``path``.

    The limits (:data:`MAX_FILE_BYTES`, :data:`MAX_DEPTH`, :data:`MAX_NUMBER_CHARS`,
    :data:`MAX_WINDOW`, :data:`MAX_STEPS`, :data:`MAX_FORKS`) are checked before or while parsing.
    """
    if isinstance(text, bytes):
        text = _decode(path, text)
    elif len(text) > MAX_FILE_BYTES:
        raise _fail(path, f"larger than {MAX_FILE_BYTES:,} characters, not a reproducer")
    data = _parse_json(path, text)
    if not isinstance(data, dict):
        raise _fail(path, f"not a reproducer: the top level is a JSON {type(data).__name__}, expected an object")
    fmt, version = data.get("format", FORMAT), data.get("version")
    if fmt == FORMAT and isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise _fail(
            path, f"format version {version} was written by a newer rmapfuzz (this one reads up to {FORMAT_VERSION})"
        )
    problem = schema.first_error("reproducer", data)
    if problem is not None:
        raise _fail(path, problem)
    # what the schema cannot say: names resolve, the violating step is a step, pages lie in the window
    kernel, window, kind, against = data["kernel"], data["window"], data.get("kind", "violation"), data.get("against")
    _check_kernel_name(path, "kernel", kernel)
    if against is not None:
        _check_kernel_name(path, "against", against)
    try:
        steps = ops.parse_steps(data["steps"], window)
    except ops.OpError as exc:
        raise _fail(path, f"bad step: {exc}") from None
    violation = data.get("violation")
    if violation is not None and violation["step"] >= len(steps):
        step = violation["step"]
        raise _fail(path, f"bad field 'violation': step {step} is not a step index (0..{len(steps) - 1})")
    found = data.get("found") or {}
    minimal = data.get("minimal")
    return Reproducer(
        kernel=kernel,
        window=window,
        steps=steps,
        violation=violation,
        found=found,
        kind=kind,
        minimal=minimal,
        path=Path(path) if not isinstance(path, Path) else path,
        against=against,
    )


def _check_kernel_name(path: Path | str, field: str, kernel: object) -> None:
    if not isinstance(kernel, str):
        raise _fail(path, f"bad field {field!r}: {short(kernel)}")
    if is_file_spec(kernel):  # a file only ever runs when the user names it on the command line
        raise _fail(path, f"bad field {field!r}: {short(kernel)} names a file; give the overlay as --kernel FILE")
    try:
        if len(kernel) > 200:
            raise UnknownKernel(kernel)
        resolve(kernel)
    except UnknownKernel as exc:
        hint = " (found on an overlay from a file? give it as --kernel FILE)" if "+" in kernel else ""
        what = str(exc) if len(kernel) <= 80 else f"unknown kernel {short(kernel)}"
        raise _fail(path, f"{what}{hint}") from None


def load(path: Path | str) -> Reproducer:
    """Read one reproducer file; raises :class:`CorpusError` (one line naming the file)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)  # one byte more tells a file past the limit
    except FileNotFoundError:
        raise _fail(path, "no such file") from None
    except IsADirectoryError:
        raise _fail(path, "is a directory, not a reproducer file") from None
    except OSError as exc:
        raise _fail(path, f"cannot read: {exc.strerror}") from None
    return loads(raw, path)


def iter_corpus(directory: Path | str) -> list[Path]:
    """Every ``*.json`` file in ``directory``, sorted; raises :class:`CorpusError` if it is not a directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CorpusError(f"{directory}: no such corpus directory")
    return sorted(p for p in directory.glob("*.json") if p.is_file())


# ---- the regression check ----


@attrs.frozen
class CheckResult:
    """The outcome of one check of one reproducer.

    ``case`` is ``"own"`` (the recorded verdict on the reproducer's own kernel), ``"bugs"`` (its
    ``found.bugs`` label, when it has one, reported only when it is wrong) or the name of a fixed kernel it must
    replay clean on.  ``status`` is ``ok``, ``stale`` (the recorded violation no longer happens),
    ``changed`` (another verdict), ``relabel`` (``found.bugs`` is not what the steps show),
    ``fail`` (a fixed kernel is not clean),
    ``skipped`` (a divergence entry on a fixed kernel) or ``error`` (the model raised).
    """

    name: str
    case: str
    status: str
    detail: str

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")


def recorded_bugs(rep: Reproducer) -> list[str]:
    return sorted(rep.found.get("bugs") or ())


def classified_bugs(rep: Reproducer) -> list[str]:
    """The catalogued bugs the entry shows on its own kernel, as classification says today."""
    from rmapfuzz.classify import classify

    return sorted(classify(rep.kernel, rep.steps, rep.window))


def _label_verdict(rep: Reproducer) -> CheckResult | None:
    """The ``bugs`` case: ``found.bugs`` names what classification says the steps show (the gate
    skips kernels by it, and a reader trusts it), or the check fails with both lists."""
    recorded, now = recorded_bugs(rep), classified_bugs(rep)
    if recorded == now:
        return None
    detail = (f"found.bugs records [{', '.join(recorded)}] but the steps show [{', '.join(now)}] on {rep.kernel} "
              f"(rmapfuzz check --relabel rewrites it)")  # fmt: skip
    return CheckResult(rep.name, "bugs", "relabel", detail)


def relabel(path: Path) -> tuple[list[str], list[str]] | None:
    """Rewrite the file's ``found.bugs`` to what classification says; (old, new), or None when it
    already agrees (or the entry records no violation).  Nothing else in the entry changes."""
    rep = load(path)
    if rep.kind != "violation" or rep.invariant is None:
        return None
    recorded, now = recorded_bugs(rep), classified_bugs(rep)
    if recorded == now:
        return None
    write_atomic(path, dumps(attrs.evolve(rep, found={**rep.found, "bugs": now})))
    return recorded, now


def _own_verdict(rep: Reproducer) -> tuple[str, str]:
    """Replay on the own kernel; the recorded invariant must be broken (at any step).

    The replay goes on past other violations (the fuzzer may have judged fewer invariants than
    the whole catalogue); if the model fails on the state a violation left, the replay stops there.
    """
    runner = Runner(rep.kernel, rep.window)
    wanted = rep.invariant
    seen: list[inv.Violation] = []
    for op in rep.steps:
        try:
            _result, found = runner.step(op)
        except Exception:
            if not seen:
                raise
            break
        if wanted is None and found:
            first = found[0]
            return "changed", f"recorded clean, now {first.invariant} at step {first.step}: {first.message}"
        for v in found:
            if v.invariant == wanted:
                moved = "" if v.step == rep.failing_step else f" (recorded at step {rep.failing_step})"
                return "ok", f"{wanted} at step {v.step}{moved}"
        seen.extend(found)
    if wanted is None:
        return "ok", "clean"
    if not seen:
        return "stale", f"recorded {wanted} at step {rep.failing_step}, now clean"
    first = seen[0]
    return "changed", f"recorded {wanted}, now {first.invariant} at step {first.step}: {first.message}"


def _difference_verdict(rep: Reproducer) -> tuple[str, str]:
    """The two kernels must still differ at the recorded level and step."""
    assert rep.against is not None
    try:
        found = pair_replay(rep.steps, rep.kernel, rep.against, rep.window)
    except Exception as exc:
        return "error", f"the model raised {type(exc).__name__}: {exc}"
    wanted = (rep.violation or {}).get("level")
    where = f"{rep.kernel} against {rep.against}"
    if found is None:
        return "stale", f"{where}: recorded a {wanted} difference at step {rep.failing_step}, now none"
    if (found.level, found.step) != (wanted, rep.failing_step):
        return "changed", f"{where}: recorded {wanted} at step {rep.failing_step}, now {found}"
    return "ok", f"{where}: {found}"


def check_reproducer(rep: Reproducer, kernels: Iterable[str] = ()) -> list[CheckResult]:
    """Check ``rep``: its recorded verdict on its own kernel, then clean on every fixed kernel.

    A kernel that carries one of the catalogued bugs the entry shows (``found.bugs``, recorded by
    the campaign from :func:`rmapfuzz.kernels.classify`) is skipped for that entry.
    """
    results = []
    if rep.kind == "divergence":
        why = "a divergence is judged against the live kernel: rmapfuzz oracle"
        return [CheckResult(rep.name, case, "skipped", why) for case in ("own", *kernels)]
    if rep.kind == "difference":
        status, detail = _difference_verdict(rep)
        why = "a difference entry compares its two kernels only"
        return [CheckResult(rep.name, "own", status, detail)] + [
            CheckResult(rep.name, k, "skipped", why) for k in kernels
        ]
    try:
        status, detail = _own_verdict(rep)
    except Exception as exc:  # the model itself failed: report it, do not crash the gate
        status, detail = "error", f"the model raised {type(exc).__name__}: {exc}"
    results.append(CheckResult(rep.name, "own", status, f"on {rep.kernel}: {detail}"))
    if status == "ok" and rep.invariant is not None and "bugs" in rep.found:
        relabel = _label_verdict(rep)
        if relabel is not None:
            results.append(relabel)
    shows = set(rep.found.get("bugs") or ())
    for kernel in kernels:
        if rep.kind == "divergence":
            results.append(CheckResult(rep.name, kernel, "skipped", "divergence entries are not replayed clean"))
            continue
        carried = shows & set(resolve(kernel).bugs)
        if carried:
            why = f"{kernel} carries bug {', '.join(sorted(carried))}, which this entry shows"
            results.append(CheckResult(rep.name, kernel, "skipped", why))
            continue
        try:
            verdict = replay(rep.steps, kernel, rep.window)
        except UnknownKernel:
            raise
        except Exception as exc:
            results.append(CheckResult(rep.name, kernel, "error", f"the model raised {type(exc).__name__}: {exc}"))
            continue
        if verdict.violation is None:
            results.append(CheckResult(rep.name, kernel, "ok", f"clean on {kernel}"))
        else:
            results.append(CheckResult(rep.name, kernel, "fail", f"not clean on {kernel}: {verdict.violation}"))
    return results
