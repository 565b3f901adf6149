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

from rmapfuzz import ops, schema
from rmapfuzz.ops import short

# The bounds are stated in the strategy file's schema (rmapfuzz.schema, `rmapfuzz schema strategy`).
RULE_OPS = schema.RULE_OPS
MAX_STEPS = schema.STRATEGY_MAX_STEPS
MAX_WINDOW = schema.STRATEGY_MAX_WINDOW  # pages (reproducer files allow a little more: corpus.MAX_WINDOW)
MAX_PROCESSES = schema.MAX_PROCESSES
MAX_BURST = schema.MAX_BURST
MAX_WEIGHT = schema.MAX_WEIGHT
MAX_DESCRIPTION = schema.MAX_DESCRIPTION
MAX_FILE_BYTES = schema.STRATEGY_MAX_FILE_BYTES
START_OPS = schema.START_OPS
ZERO_OLD_LEN = "mremap_zero_old_len"  # one mremap in N has an old length of 0 (default 0: none)


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
    mmap_flags: tuple[tuple[str, ...], ...] = ((),)  # flag sets mmap draws from
    plain_mmaps_only: bool = False  # no MAP_NORESERVE in any mix, the portfolio's too (set by tools)

    def portfolio_strategies(self) -> list[Strategy]:
        """The portfolio's strategies (a portfolio strategy's own portfolio is not followed), each
        without this strategy's ``without`` ops, and with plain mmaps only if this one has."""
        found = [attrs.evolve(load(name), portfolio=(), without=self.without) for name in self.portfolio]
        return [s.plain_mmaps() for s in found] if self.plain_mmaps_only else found

    def longest_run(self) -> int:
        """The most ops a test case of this strategy runs: its own run length or a portfolio
        strategy's, whose mix keeps its own."""
        return max(t.steps for t in (self, *self.portfolio_strategies()))

    def plain_mmaps(self) -> Strategy:
        """This strategy with no mix drawing MAP_NORESERVE, its portfolio's included (for a kernel
        that ignores the flag, or a revision whose language lacks it)."""
        return attrs.evolve(self, mmap_flags=((),), plain_mmaps_only=True)

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


def parse(data: dict[str, Any], name: str, where: str) -> Strategy:
    """Validate a strategy table against its schema (and its portfolio against the named strategies);
    every error is one line naming the field."""
    problem = schema.first_error("strategy", data)
    if problem is not None:
        raise StrategyError(f"{where}: {problem}")
    return Strategy(
        name=name,
        description=data.get("description", ""),
        window=data["window"],
        max_processes=data["max_processes"],
        steps=data["steps"],
        weights=dict(data["weights"]),
        prots=tuple(data["prots"]),
        advices=tuple(data["advices"]),
        mremap_flags=tuple(tuple(f for f in ops.MREMAP_FLAGS if f in flags) for flags in data["mremap_flags"]),
        burst=data.get("burst", 4),
        swarm=float(data.get("swarm", 0.25)),
        portfolio=_portfolio(data, name, where),
        mremap_zero_old_len=data.get(ZERO_OLD_LEN, 0),
        mmap_flags=tuple(tuple(f for f in ops.MMAP_FLAGS if f in flags) for flags in data.get("mmap_flags", [[]])),
    )


def _portfolio(data: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    if "portfolio" not in data:
        return ()
    values = data["portfolio"]
    known = available()
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
