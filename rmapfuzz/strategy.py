"""Campaign strategies: what a fuzz campaign generates, as data (TOML files under ``strategies/``).

A strategy names the window size, the process bound, the steps per run, the op mix (relative
weights; 0 or absent disables an op), and the value sets for prot, madvise advice and mremap
flags.  ``--strategy NAME`` looks in the checkout's ``strategies/`` and in the installed package;
``--strategy path.toml`` takes a file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import attrs

from rmapfuzz import ops

RULE_OPS = ("mmap", "munmap", "mprotect", "mremap", "madvise", "fork", "exit", "read", "write", "fail_alloc")
MAX_STEPS = 600  # Hypothesis silently truncates stateful_step_count much above this


class StrategyError(ValueError):
    """A strategy that cannot be used; the message names the file and the field."""


@attrs.frozen
class Strategy:
    name: str
    description: str
    window: int
    max_processes: int
    steps: int
    weights: dict[str, int]
    prots: tuple[str, ...]
    advices: tuple[str, ...]
    mremap_flags: tuple[tuple[str, ...], ...]
    burst: int = 4  # ops per Hypothesis step (machine.Bursts)
    swarm: float = 0.25  # share of test cases that draw their own mix (rmapfuzz.generate.Swarm)
    portfolio: tuple[str, ...] = ()  # strategies whose mixes a test case may draw (with swarm)

    def portfolio_strategies(self) -> list[Strategy]:
        """The portfolio's strategies (a portfolio strategy's own portfolio is not followed)."""
        return [attrs.evolve(load(name), portfolio=()) for name in self.portfolio]

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _builtin_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent
    return [here / "strategies", here.parent / "strategies"]


def available() -> dict[str, Path]:
    """Named strategies: the installed package's, then the checkout's."""
    found: dict[str, Path] = {}
    for directory in _builtin_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                found.setdefault(path.stem, path)
    return found


def _field(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise StrategyError(f"{where}: missing field {key!r}")
    value = data[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise StrategyError(f"{where}: field {key!r} must be an integer, got {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise StrategyError(f"{where}: field {key!r} must be a {kind.__name__}, got {value!r}")
    return value


def _positive(data: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    value: int = _field(data, key, int, where)
    if not low <= value <= high:
        raise StrategyError(f"{where}: field {key!r} must be between {low} and {high}, got {value}")
    return value


def _share(data: dict[str, Any], key: str, where: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise StrategyError(f"{where}: field {key!r} must be a number from 0 to 1, got {value!r}")
    return float(value)


def _choices(data: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> tuple[str, ...]:
    values = _field(data, key, list, where)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise StrategyError(f"{where}: field {key!r} must be a non-empty list from {list(allowed)}, got {values!r}")
    return tuple(values)


def parse(data: dict[str, Any], name: str, where: str) -> Strategy:
    """Validate a strategy table; every error names the field."""
    known = {
        "description",
        "window",
        "max_processes",
        "steps",
        "weights",
        "prots",
        "advices",
        "mremap_flags",
        "burst",
        "swarm",
        "portfolio",
    }
    unknown = set(data) - known
    if unknown:
        raise StrategyError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    weights = _field(data, "weights", dict, where)
    for op, w in weights.items():
        if op not in RULE_OPS:
            raise StrategyError(f"{where}: field 'weights.{op}' is not an op (ops: {', '.join(RULE_OPS)})")
        if isinstance(w, bool) or not isinstance(w, int) or w < 0:
            raise StrategyError(f"{where}: field 'weights.{op}' must be a non-negative integer, got {w!r}")
    if not any(weights.values()):
        raise StrategyError(f"{where}: field 'weights' enables no op")
    flag_sets = _field(data, "mremap_flags", list, where)
    for flags in flag_sets:
        if (
            not isinstance(flags, list)
            or any(f not in ops.MREMAP_FLAGS for f in flags)
            or len(set(flags)) != len(flags)
            or ("maymove" in flags and "fixed" not in flags)
        ):
            raise StrategyError(
                f"{where}: field 'mremap_flags' entry {flags!r} must be a list of distinct names from "
                f"{list(ops.MREMAP_FLAGS)}, with 'fixed' wherever 'maymove' is"
            )
    return Strategy(
        name=name,
        description=str(data.get("description", "")),
        window=_positive(data, "window", where, 2, 64),
        max_processes=_positive(data, "max_processes", where, 1, 64),
        steps=_positive(data, "steps", where, 1, MAX_STEPS),
        weights={op: int(w) for op, w in weights.items()},
        prots=_choices(data, "prots", ops.PROTS, where),
        advices=_choices(data, "advices", ops.ADVICES, where),
        mremap_flags=tuple(tuple(f for f in ops.MREMAP_FLAGS if f in flags) for flags in flag_sets),
        burst=_positive(data, "burst", where, 1, 64) if "burst" in data else 4,
        swarm=_share(data, "swarm", where) if "swarm" in data else 0.25,
        portfolio=_portfolio(data, name, where),
    )


def _portfolio(data: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    if "portfolio" not in data:
        return ()
    values = data["portfolio"]
    known = available()
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise StrategyError(f"{where}: field 'portfolio' must be a list of strategy names, got {values!r}")
    bad = [v for v in values if v not in known or v == name]
    if bad:
        raise StrategyError(f"{where}: field 'portfolio' names {bad[0]!r}, which is not another named strategy "
                            f"(known: {', '.join(known)})")  # fmt: skip
    return tuple(values)


def load_file(path: Path) -> Strategy:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise StrategyError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise StrategyError(f"{path}: not valid TOML ({exc})") from None
    return parse(data, path.stem, str(path))


def load(name_or_path: str) -> Strategy:
    """A named strategy, or a ``.toml`` file."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return load_file(Path(name_or_path))
    named = available()
    if name_or_path not in named:
        raise StrategyError(f"unknown strategy {name_or_path!r} (known: {', '.join(named) or 'none found'})")
    return load_file(named[name_or_path])
