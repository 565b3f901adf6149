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
from rmapfuzz.ops import short

RULE_OPS = ("mmap", "munmap", "mprotect", "mremap", "madvise", "fork", "exit", "read", "write", "fail_alloc")
MAX_STEPS = 600  # Hypothesis silently truncates stateful_step_count much above this
MAX_WINDOW = 64  # pages (reproducer files allow a little more: corpus.MAX_WINDOW)
MAX_PROCESSES = 64
MAX_BURST = 64
MAX_WEIGHT = 1000  # a weight is relative: 1000 against 1 is already a 0.1 % share
MAX_DESCRIPTION = 500  # characters
ZERO_OLD_LEN = "mremap_zero_old_len"  # one mremap in N has an old length of 0 (default 0: none)
MAX_FILE_BYTES = 64 * 1024  # a strategy file is a few lines; the shipped ones are under 2 KB
START_OPS = ("mmap",)  # what can start a sequence: the first process has no mappings until one of these


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
    without: tuple[str, ...] = ()  # ops left out of every mix, the portfolio's too (set by tools, not files)
    mremap_zero_old_len: int = 0  # one mremap in this many has an old length of 0 (0: none)

    def portfolio_strategies(self) -> list[Strategy]:
        """The portfolio's strategies (a portfolio strategy's own portfolio is not followed), each
        without this strategy's ``without`` ops."""
        return [attrs.evolve(load(name), portfolio=(), without=self.without) for name in self.portfolio]

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
        raise StrategyError(f"{where}: field {key!r} must be an integer, got {short(value)}")
    if kind is not int and not isinstance(value, kind):
        names: dict[type, str] = {dict: "table", list: "list", str: "string"}
        what = names.get(kind, kind.__name__)
        raise StrategyError(f"{where}: field {key!r} must be a {what}, got {short(value)}")
    return value


def _positive(data: dict[str, Any], key: str, where: str, low: int, high: int) -> int:
    value: int = _field(data, key, int, where)
    if not low <= value <= high:
        raise StrategyError(f"{where}: field {key!r} must be between {low} and {high}, got {value}")
    return value


def _share(data: dict[str, Any], key: str, where: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise StrategyError(f"{where}: field {key!r} must be a number from 0 to 1, got {short(value)}")
    return float(value)


def _choices(data: dict[str, Any], key: str, allowed: tuple[str, ...], where: str) -> tuple[str, ...]:
    values = _field(data, key, list, where)
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise StrategyError(
            f"{where}: field {key!r} must be a non-empty list from {list(allowed)}, got {short(values)}"
        )
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
        ZERO_OLD_LEN,
    }
    unknown = set(data) - known
    if unknown:
        raise StrategyError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    weights = _field(data, "weights", dict, where)
    for op, w in weights.items():
        if op not in RULE_OPS:
            raise StrategyError(
                f"{where}: field 'weights.{repr(op[:60])[1:-1]}' is not an op (ops: {', '.join(RULE_OPS)})"
            )
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= MAX_WEIGHT:
            raise StrategyError(
                f"{where}: field 'weights.{op}' must be an integer from 0 to {MAX_WEIGHT}, got {short(w)}"
            )
    if not any(weights.values()):
        raise StrategyError(f"{where}: field 'weights' enables no op")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise StrategyError(f"{where}: field 'description' must be a string of at most {MAX_DESCRIPTION} "
                            f"characters, got {short(description)}")  # fmt: skip
    flag_sets = _field(data, "mremap_flags", list, where)
    if not flag_sets:
        raise StrategyError(f"{where}: field 'mremap_flags' must list at least one flag set ([] is an in-place resize)")
    for flags in flag_sets:
        if (
            not isinstance(flags, list)
            or any(f not in ops.MREMAP_FLAGS for f in flags)
            or len(set(flags)) != len(flags)
            or ("maymove" in flags and "fixed" not in flags)
        ):
            raise StrategyError(
                f"{where}: field 'mremap_flags' entry {short(flags)} must be a list of distinct names from "
                f"{list(ops.MREMAP_FLAGS)}, with 'fixed' wherever 'maymove' is"
            )
    strat = Strategy(
        name=name,
        description=description,
        window=_positive(data, "window", where, 2, MAX_WINDOW),
        max_processes=_positive(data, "max_processes", where, 1, MAX_PROCESSES),
        steps=_positive(data, "steps", where, 1, MAX_STEPS),
        weights={op: int(w) for op, w in weights.items()},
        prots=_choices(data, "prots", ops.PROTS, where),
        advices=_choices(data, "advices", ops.ADVICES, where),
        mremap_flags=tuple(tuple(f for f in ops.MREMAP_FLAGS if f in flags) for flags in flag_sets),
        burst=_positive(data, "burst", where, 1, MAX_BURST) if "burst" in data else 4,
        swarm=_share(data, "swarm", where) if "swarm" in data else 0.25,
        portfolio=_portfolio(data, name, where),
        mremap_zero_old_len=_positive(data, ZERO_OLD_LEN, where, 0, 1000) if ZERO_OLD_LEN in data else 0,
    )
    if not any(strat.weights.get(op, 0) > 0 for op in START_OPS):
        raise StrategyError(f"{where}: field 'weights' gives no op that can start a sequence a positive weight "
                            f"({', '.join(START_OPS)}: the first process has no mappings until then)")  # fmt: skip
    return strat


def _portfolio(data: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    if "portfolio" not in data:
        return ()
    values = data["portfolio"]
    known = available()
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise StrategyError(f"{where}: field 'portfolio' must be a list of strategy names, got {short(values)}")
    bad = [v for v in values if v not in known or v == name]
    if bad:
        raise StrategyError(f"{where}: field 'portfolio' names {short(bad[0])}, which is not another named strategy "
                            f"(known: {', '.join(known)})")  # fmt: skip
    return tuple(values)


def load_file(path: Path) -> Strategy:
    """Read and validate a strategy file; every problem is one :class:`StrategyError` line naming it."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise StrategyError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise StrategyError(f"{path}: larger than {MAX_FILE_BYTES:,} bytes, not a strategy file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrategyError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StrategyError(f"{path}: not valid TOML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise StrategyError(f"{path}: not a strategy: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer past Python's int-string limit
        raise StrategyError(f"{path}: not valid TOML ({short(str(exc))})") from None
    return parse(data, path.stem, str(path))


def load(name_or_path: str) -> Strategy:
    """A named strategy, or a ``.toml`` file."""
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return load_file(Path(name_or_path))
    named = available()
    if name_or_path not in named:
        raise StrategyError(f"unknown strategy {name_or_path!r} (known: {', '.join(named) or 'none found'})")
    return load_file(named[name_or_path])
