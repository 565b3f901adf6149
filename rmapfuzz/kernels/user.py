"""Overlays from a user's file: ``--kernel path/to/patch.py`` or ``--kernel path/to/patch.py:ClassName``.

A user's overlay is written like the package's own (``rmapfuzz/kernels/v3_7.py``): a subclass of a
built-in generation or fix overlay, with ``name``, ``base``, ``summary``, ``commits`` and ``bugs``,
overriding the kernel functions the patch changes (docs/writing-an-overlay.md walks through one).
Loading it runs the file as a module of its own; whatever goes wrong is an :class:`OverlayError`
naming the user's file and line, never a traceback out of rmapfuzz.  Once loaded, the overlay is
also known by its ``name`` for the rest of the process (reproducers and databases record names).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType

from rmapfuzz.model.syscalls import SyscallMixin

Kernel = type[SyscallMixin]


class OverlayError(ValueError):
    """A user's overlay file that cannot be used: one line, naming the file (and line)."""


def is_file_spec(name: str) -> bool:
    return name.endswith(".py") or ".py:" in name


def split_spec(spec: str) -> tuple[Path, str | None]:
    if spec.endswith(".py"):
        return Path(spec), None
    path, _, cls_name = spec.rpartition(".py:")
    return Path(path + ".py"), cls_name or None


def _where(exc: BaseException, path: Path) -> str:
    """``path:line`` of the deepest frame of ``exc`` in the user's file, else ``path``."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno
    return f"{path}:{line}" if line else str(path)


def _module(path: Path) -> ModuleType:
    if not path.is_file():
        raise OverlayError(f"{path}: no such overlay file")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    name = f"rmapfuzz_overlay_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise OverlayError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # inspect (coverage, kernels --where) reads the source through it
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise OverlayError(f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}") from None
    except Exception as exc:
        del sys.modules[name]
        raise OverlayError(f"{_where(exc, path)}: {type(exc).__name__}: {exc}") from None
    return module


def _pick(module: ModuleType, path: Path, cls_name: str | None) -> Kernel:
    if cls_name is not None:
        found = getattr(module, cls_name, None)
        if not (isinstance(found, type) and issubclass(found, SyscallMixin)):
            raise OverlayError(f"{path}: no overlay class {cls_name!r} in it")
        return found
    own = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, SyscallMixin) and v.__module__ == module.__name__
    ]
    if len(own) != 1:
        names = ", ".join(c.__name__ for c in own) or "none"
        raise OverlayError(f"{path}: defines {len(own)} overlay classes ({names}); name one as {path}:ClassName")
    return own[0]


def _check(
    cls: Kernel, path: Path, generations: Iterable[Kernel], known: Mapping[str, Kernel], bugs: Iterable[str]
) -> None:
    where = f"{path}: {cls.__name__}"
    if not any(issubclass(cls, g) for g in generations):
        raise OverlayError(f"{where} must subclass a rmapfuzz generation (e.g. rmapfuzz.kernels.v6_16.Linux616)")
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise OverlayError(f"{where} must set its own name (e.g. name = '6.16+my-patch')")
    if name in known and known[name] is not cls:
        raise OverlayError(f"{where}: name {name!r} is taken by a built-in kernel; choose another")
    if not isinstance(cls.summary, str) or not isinstance(cls.base, str):
        raise OverlayError(f"{where}: summary and base must be strings")
    commits = cls.commits
    if not isinstance(commits, tuple) or not all(
        isinstance(c, tuple) and len(c) == 2 and all(isinstance(x, str) for x in c) for c in commits
    ):
        raise OverlayError(f"{where}: commits must be a tuple of (id, title) string pairs")
    unknown = [b for b in cls.bugs if b not in set(bugs)]
    if not isinstance(cls.bugs, tuple) or unknown:
        raise OverlayError(
            f"{where}: bugs must be a tuple of catalogued bug letters it still carries (unknown: {unknown})"
        )


_LOADED: dict[tuple[Path, str | None], Kernel] = {}
BY_NAME: dict[str, Kernel] = {}  # every overlay loaded from a file in this process, by its name


def load(spec: str, generations: Iterable[Kernel], known: Mapping[str, Kernel], bugs: Iterable[str]) -> Kernel:
    """The overlay ``spec`` names (``path.py`` or ``path.py:ClassName``), loaded once per process."""
    path, cls_name = split_spec(spec)
    path = path.resolve()
    key = (path, cls_name)
    cls = _LOADED.get(key)
    if cls is None:
        cls = _pick(_module(path), path, cls_name)
        _check(cls, path, generations, known, bugs)
        _LOADED[key] = BY_NAME[cls.name] = cls
    return cls
