"""Hardening: mutated reproducers and bad strategy files are one-line errors, never a traceback or a hang.

Every mutation of the project's corpus files (other JSON types anywhere, huge integers, bad
windows, deep nesting, strings and lists where they do not belong, duplicated and removed keys,
truncation, non-UTF-8 bytes, too many steps or forks, unknown ops) must either load or raise
:class:`corpus.CorpusError`, quickly; a sample covering every kind goes through the commands that
read reproducers, which must exit 0, 1 or 2 (one stderr line for 2), never 3.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rmapfuzz import corpus, strategy
from rmapfuzz.cli import main
from tests.helpers import STRATEGY_FIELDS

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted((ROOT / "corpus").glob("*.json"))
HUGE = "1" + "0" * 5000  # past Python's 4,300-digit int-string limit

# ---- mutations: (rng, original text, parsed object) -> the mutated file's bytes ----

Mutation = Callable[[random.Random, str, dict[str, Any]], bytes]
Path_ = tuple[str | int, ...]
SENTINEL = "\x00SENTINEL\x00"
OTHER_VALUES: list[Any] = [None, True, False, 0, -1, 1.5, -0.0, "", "x", "rw", [], [1], ["x"], {}, {"a": 1},
                           {"op": "mmap"}, 2**64, -(2**63)]  # fmt: skip


def _paths(obj: Any, prefix: Path_ = ()) -> Iterator[tuple[Path_, Any]]:
    yield prefix, obj
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, (*prefix, i))


def _set(obj: Any, path: Path_, value: Any) -> Any:
    if not path:
        return value
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return obj


def _pick(rng: random.Random, obj: dict[str, Any], want: Callable[[Any], bool] = lambda v: True) -> Path_:
    paths = [p for p, v in _paths(obj) if p and want(v)]
    return rng.choice(paths) if paths else ("window",)


def _dump(obj: Any, raw: str | None = None) -> bytes:
    text = json.dumps(obj, ensure_ascii=False)
    if raw is not None:
        text = text.replace(json.dumps(SENTINEL), raw)
    return text.encode("utf-8")


def type_swap(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    path = _pick(rng, obj)
    value = rng.choice(OTHER_VALUES)
    return _dump(_set(obj, path, json.loads(json.dumps(value))))


def huge_int(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    want: Callable[[Any], bool] = rng.choice([lambda v: isinstance(v, int), lambda v: True])
    raw = rng.choice([HUGE, "-" + HUGE, "1e5000", "-1e5000", "1" * 400 + "." + "5" * 5000, "NaN", "Infinity",
                      "-Infinity", "123456789" * 50])  # fmt: skip
    return _dump(_set(obj, _pick(rng, obj, want), SENTINEL), raw)


def window(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    value = rng.choice(["-1", "0", "1", "1000000", "1000000000000000000", str(2**63), HUGE, "8.0", "1e6", '"8"',
                        "true", "null", "[8]", "4096", "65", "257"])  # fmt: skip
    return _dump(_set(obj, ("window",), SENTINEL), value)


def deep(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    depth = rng.choice([100, 999, 1000, 5000, 50_000])
    raw = rng.choice([
        "[" * depth,
        "[" * depth + "]" * depth,
        '{"a": ' * depth + "1" + "}" * depth,
        "[{" * depth,
    ])  # fmt: skip
    if rng.random() < 0.2:
        return raw.encode()
    return _dump(_set(obj, _pick(rng, obj), SENTINEL), raw)


def str_for_obj(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    path = _pick(rng, obj, lambda v: isinstance(v, dict))
    return _dump(_set(obj, path, rng.choice(["", "mmap", "{}", "merge-superset", "x" * 1000])))


def list_for_str(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    if rng.random() < 0.3 and isinstance(obj.get("violation"), dict):
        path: Path_ = ("violation", "invariant")
    else:
        path = _pick(rng, obj, lambda v: isinstance(v, str))
    value = rng.choice([[], ["x"], ["merge-superset"], [["a"]], [None], [1, 2]])
    return _dump(_set(obj, path, value))


def dup_key(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    value = json.dumps(rng.choice(OTHER_VALUES))
    if rng.random() < 0.5:
        key = rng.choice([*obj, "kernel", "window", "steps", "violation"])
        return text.replace("{", "{" + f"{json.dumps(key)}: {value}, ", 1).encode()
    key = rng.choice(["op", "pid", "start", "pages", "prot", "addr"])
    out = text.replace('{"op": ', '{' + f'"{key}": {value}, "op": ', rng.randrange(1, 4))  # fmt: skip
    return out.encode()


def remove_key(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    dicts = [v for _, v in _paths(obj) if isinstance(v, dict) and v]
    target = rng.choice(dicts)
    del target[rng.choice(list(target))]
    return _dump(obj)


def truncate(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    data = text.encode()
    return data[: rng.randrange(len(data))]


def non_utf8(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    data = text.encode()
    junk = rng.choice([b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xf4\x90\x80\x80"])
    where = rng.randrange(len(data))
    if rng.random() < 0.2:
        return rng.choice([text.encode("utf-16"), b"\xef\xbb\xbf" + data, data.replace(b'"', b'"\xe9', 1)])
    return data[:where] + junk + data[where:]


def many_steps(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    count = rng.choice([100_000, 10_001, 20_000])
    step = json.dumps(rng.choice(obj["steps"]))
    body = ", ".join([step] * count)
    head = {k: v for k, v in obj.items() if k != "steps"}
    return (json.dumps(head)[:-1] + ', "steps": [' + body + "]}").encode()


def many_forks(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    count = rng.choice([10_000, 1_000, 200])
    pid = rng.choice(["0", "i"])
    forks = [f'{{"op": "fork", "pid": {i if pid == "i" else 0}}}' for i in range(count)]
    head = {k: v for k, v in obj.items() if k not in ("steps", "violation")}
    steps = ", ".join([json.dumps(s) for s in obj["steps"]] + forks)
    return (json.dumps(head)[:-1] + ', "steps": [' + steps + "]}").encode()


def unknown_op(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    i = rng.randrange(len(obj["steps"]))
    step = obj["steps"][i]
    choice = rng.randrange(4)
    if choice == 0:
        step["op"] = rng.choice(["teleport", "MMAP", "", "fork ", "__class__", "mmap\n"])
    elif choice == 1:
        step[rng.choice(["bogus", "flags", "nth", "op2"])] = 1
    elif choice == 2:
        step["op"] = rng.choice(["mremap", "madvise", "fail_alloc", "read", "exit"])
    else:
        obj["steps"].insert(i, rng.choice([{}, {"op": None}, {"op": ["mmap"]}, {"op": {"op": "mmap"}}]))
    return _dump(obj)


def big_values(rng: random.Random, text: str, obj: dict[str, Any]) -> bytes:
    """Large but short numbers in every numeric place, and long strings."""
    path = _pick(rng, obj, lambda v: isinstance(v, int | str) and not isinstance(v, bool))
    value = rng.choice([10**18, -(10**18), 2**63, 10**300, "x" * 200_000, "\u202e" * 10, "a\nb"])
    return _dump(_set(obj, path, value))


MUTATIONS: dict[str, tuple[Mutation, int]] = {  # kind -> (mutation, cases per source file)
    "type-swap": (type_swap, 60),
    "huge-int": (huge_int, 40),
    "window": (window, 32),
    "deep": (deep, 8),
    "str-for-obj": (str_for_obj, 20),
    "list-for-str": (list_for_str, 30),
    "dup-key": (dup_key, 30),
    "remove-key": (remove_key, 30),
    "truncate": (truncate, 40),
    "non-utf8": (non_utf8, 20),
    "many-steps": (many_steps, 2),
    "many-forks": (many_forks, 3),
    "unknown-op": (unknown_op, 30),
    "big-values": (big_values, 10),
}


def mutants(kind: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every mutant of one kind, from fixed seeds."""
    mutate, per_source = MUTATIONS[kind]
    for source in SOURCES:
        text = source.read_text(encoding="utf-8")
        for i in range(per_source):
            rng = random.Random(f"{kind}:{source.name}:{i}")
            yield f"{kind}-{source.stem}-{i}", mutate(rng, text, json.loads(text))


def test_enough_mutants() -> None:
    assert len(SOURCES) >= 10
    assert sum(n for _, n in MUTATIONS.values()) * len(SOURCES) >= 5000


def _load_one(name: str, data: bytes) -> str | None:
    """None when the mutant loads or is refused properly; else what went wrong."""
    started = time.perf_counter()
    try:
        corpus.loads(data, name)
    except corpus.CorpusError as exc:
        message = str(exc)
        if "\n" in message or not message.startswith(name) or len(message) > 2000:
            return f"{name}: not one short line naming the file: {message[:200]!r}"
    except BaseException as exc:  # what the test is looking for
        return f"{name}: {type(exc).__name__}: {str(exc)[:120]}"
    seconds = time.perf_counter() - started
    if seconds > 5.0:  # generous for a loaded CI machine: about 0.1 s here for the largest (20k steps)
        return f"{name}: took {seconds:.1f} s"
    return None


@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_mutants_load_or_raise_corpus_error(kind: str) -> None:
    problems = [p for name, data in mutants(kind) if (p := _load_one(name, data)) is not None]
    assert not problems, f"{len(problems)} problems, e.g.:\n" + "\n".join(problems[:10])


def test_text_and_bytes_load_alike(tmp_path: Path) -> None:
    for name, data in list(mutants("non-utf8"))[:40] + list(mutants("truncate"))[:40]:
        path = tmp_path / f"{name}.json"
        path.write_bytes(data)
        try:
            from_file: object = corpus.load(path).steps
        except corpus.CorpusError as exc:
            from_file = str(exc).removeprefix(str(path))
        try:
            from_bytes: object = corpus.loads(data, path).steps
        except corpus.CorpusError as exc:
            from_bytes = str(exc).removeprefix(str(path))
        assert from_file == from_bytes


def test_oversized_file_is_refused_before_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (corpus.MAX_FILE_BYTES + 1))
    with pytest.raises(corpus.CorpusError, match=r"larger than"):
        corpus.load(path)


def _file(window: str = "8", steps: list[str] | None = None, found: str = "{}") -> str:
    body = ", ".join(steps or [])
    return f'{{"kernel": "2.6.34", "window": {window}, "steps": [{body}], "found": {found}}}'


@pytest.mark.parametrize(
    ("field", "text", "needle"),
    [
        ("window", _file(window=str(corpus.MAX_WINDOW + 1)), "'window'"),
        ("steps", _file(steps=['{"op": "read", "pid": 0, "addr": 0}'] * (corpus.MAX_STEPS + 1)), "'steps'"),
        ("forks", _file(steps=['{"op": "fork", "pid": 0}'] * (corpus.MAX_FORKS + 1)), "fork"),
        ("int", _file(window=HUGE), "digits"),
        ("depth", _file(found="[" * 5000 + "]" * 5000), "nested"),
        ("nan", _file(window="NaN"), "NaN"),
    ],
)
def test_bounds_are_one_line_errors_naming_the_field(field: str, text: str, needle: str) -> None:
    with pytest.raises(corpus.CorpusError) as info:
        corpus.loads(text, f"{field}.json")
    message = str(info.value)
    assert message.startswith(f"{field}.json: ") and "\n" not in message and len(message) < 2000
    assert needle in message


def test_the_bounds_admit_the_largest_strategies() -> None:
    assert corpus.MAX_WINDOW >= 64  # strategy.parse allows windows up to 64 pages
    assert corpus.MAX_STEPS >= strategy.MAX_STEPS


# ---- through the command line ----


def _cli_sample() -> list[tuple[str, bytes]]:
    """A few hundred mutants, every kind among them, each kind's cases spread over the sources."""
    sample: list[tuple[str, bytes]] = []
    for kind in sorted(MUTATIONS):
        cases = list(mutants(kind))
        step = max(1, len(cases) // 16)
        sample.extend(cases[::step][:16])
    return sample


CLI_SAMPLE = _cli_sample()


def _call(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, float]:
    started = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - started
    _out, err = capsys.readouterr()
    return code, err, seconds


def _judge(argv: list[str], code: int, err: str, seconds: float) -> str | None:
    if code not in (0, 1, 2):
        return f"{argv}: exit {code}: {err.strip()[:200]}"
    if code == 2 and len(err.strip().splitlines()) != 1:
        return f"{argv}: exit 2 with {len(err.strip().splitlines())} stderr lines: {err[:200]!r}"
    if seconds > 5.0:
        return f"{argv}: took {seconds:.1f} s"
    return None


def test_cli_on_mutants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert len(CLI_SAMPLE) >= 200
    kinds = {kind for kind in MUTATIONS if any(name.startswith(kind + "-") for name, _ in CLI_SAMPLE)}
    assert kinds == set(MUTATIONS)
    problems = []
    for i, (name, data) in enumerate(CLI_SAMPLE):
        folder = tmp_path / f"c{i}"
        folder.mkdir()
        path = folder / f"{name}.json"
        path.write_bytes(data)
        out = tmp_path / f"out{i}.py"
        commands = [["replay", str(path)], ["show", str(path)], ["check", str(folder)],
                    ["export", "--pytest", str(path), "-o", str(out)]]  # fmt: skip
        if i % 3 == 0:
            commands.append(["minimize", "--budget", "1", str(path)])
        for argv in commands:
            problem = _judge(argv, *_call(capsys, argv))
            if problem is not None:
                problems.append(problem)
        assert path.read_bytes() == data  # no command modifies a reproducer
    assert not problems, f"{len(problems)} problems, e.g.:\n" + "\n".join(problems[:10])


# ---- batches: one bad file among good ones ----

GOOD = ROOT / "corpus" / "2.6.34-rc3--merge-superset--mprotect.json"
CLEAN = ROOT / "corpus" / "3.19--reuse-safe--fork.json"


@pytest.mark.parametrize("command", [["replay"], ["minimize", "--budget", "1"]])
def test_batch_reports_the_bad_file_and_judges_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"kernel": "2.6.34", "window": 8, "steps": [{"op": "teleport"}]}')
    files = [str(GOOD), str(bad), str(CLEAN)]
    code = main([*command, *files])
    out, err = capsys.readouterr()
    assert code == 2  # bad input wins over a violation
    assert err.count("\n") == 1 and str(bad) in err and "teleport" in err
    assert GOOD.name in out and CLEAN.name in out


def test_check_reports_the_bad_file_and_judges_the_others(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for source in (GOOD, CLEAN):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    (tmp_path / "bad.json").write_bytes(b'{"kernel": "2.6.34", "window": ' + HUGE.encode() + b', "steps": []}')
    code = main(["check", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and "bad.json" in err
    assert GOOD.name in out and CLEAN.name in out


# ---- strategy files ----

BASE_WEIGHTS = "[weights]\nmmap = 2\nwrite = 1"


def _strategy_text(replace: dict[str, str | None] | None = None, weights: str = BASE_WEIGHTS) -> str:
    lines = dict(STRATEGY_FIELDS)
    for key, value in (replace or {}).items():
        if value is None:
            lines.pop(key, None)
        else:
            lines[key] = value
    return "\n".join([*lines.values(), weights]) + "\n"


BAD_STRATEGIES: dict[str, bytes | str] = {
    "weights-fork-only": _strategy_text(weights="[weights]\nfork = 5"),
    "weights-exit-only": _strategy_text(weights="[weights]\nexit = 5"),
    "weights-fork-exit": _strategy_text(weights="[weights]\nfork = 5\nexit = 1"),
    "weights-no-mmap": _strategy_text(weights="[weights]\nwrite = 5\nread = 1\nmmap = 0"),
    "weights-huge": _strategy_text(weights="[weights]\nmmap = 100000000000000000000"),
    "weights-float": _strategy_text(weights="[weights]\nmmap = 1.5"),
    "weights-string": _strategy_text(weights='[weights]\nmmap = "1"'),
    "weights-bool": _strategy_text(weights="[weights]\nmmap = true"),
    "weights-negative": _strategy_text(weights="[weights]\nmmap = 1\nwrite = -3"),
    "weights-table-in-table": _strategy_text(weights="[weights]\nmmap = 1\n[weights.write]\nx = 1"),
    "weights-not-table": _strategy_text({"weights_line": "weights = 3"}, weights=""),
    "weights-missing": _strategy_text(weights=""),
    "weights-unknown-op": _strategy_text(weights="[weights]\nmmap = 1\nteleport = 1"),
    "description-int": _strategy_text({"description": "description = 5"}),
    "description-table": _strategy_text({"description": "description = {a = 1}"}),
    "window-huge": _strategy_text({"window": "window = 100000000000000000000"}),
    "window-zero": _strategy_text({"window": "window = 0"}),
    "window-float": _strategy_text({"window": "window = 8.0"}),
    "max-processes-zero": _strategy_text({"max_processes": "max_processes = 0"}),
    "max-processes-huge": _strategy_text({"max_processes": "max_processes = 100000"}),
    "steps-negative": _strategy_text({"steps": "steps = -1"}),
    "steps-missing": _strategy_text({"steps": None}),
    "burst-zero": _strategy_text({"burst": "burst = 0"}),
    "burst-string": _strategy_text({"burst": 'burst = "8"'}),
    "swarm-two": _strategy_text({"swarm": "swarm = 2.0"}),
    "swarm-nan": _strategy_text({"swarm": "swarm = nan"}),
    "swarm-inf": _strategy_text({"swarm": "swarm = inf"}),
    "prots-empty": _strategy_text({"prots": "prots = []"}),
    "prots-nested": _strategy_text({"prots": 'prots = [["rw"]]'}),
    "prots-string": _strategy_text({"prots": 'prots = "rw"'}),
    "advices-int": _strategy_text({"advices": "advices = [1]"}),
    "mremap-flags-string": _strategy_text({"mremap_flags": 'mremap_flags = "fixed"'}),
    "mremap-flags-nested": _strategy_text({"mremap_flags": 'mremap_flags = [[["fixed"]]]'}),
    "mremap-flags-empty": _strategy_text({"mremap_flags": "mremap_flags = []"}),
    "portfolio-self": _strategy_text({"portfolio": 'portfolio = ["nosuch"]'}),
    "portfolio-string": _strategy_text({"portfolio": 'portfolio = "classic"'}),
    "unknown-field": _strategy_text({"bogus": "bogus = 1"}),
    "non-utf8": _strategy_text().encode() + b"# \xff\xfe\n",
    "latin1-description": _strategy_text({"description": 'description = "caf\xe9"'}).encode("latin-1"),
    "utf16": _strategy_text().encode("utf-16"),
    "not-toml": "window = = 8\n",
    "truncated": _strategy_text()[:40],
    "deep-array": _strategy_text({"description": "description = " + "[" * 5000 + "]" * 5000}),
    "deep-array-open": "x = " + "[" * 5000,
    "deep-inline-table": "x = " + "{a = " * 2000 + "1" + "}" * 2000,
    "huge-int": _strategy_text({"window": "window = " + HUGE}),
    "empty": "",
    "binary": bytes(range(256)),
    "duplicate-key": _strategy_text() + "window = 6\n",
}


def test_enough_bad_strategies() -> None:
    assert len(BAD_STRATEGIES) >= 30


@pytest.mark.parametrize("name", sorted(BAD_STRATEGIES))
def test_bad_strategy_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = tmp_path / f"{name}.toml"
    data = BAD_STRATEGIES[name]
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    started = time.perf_counter()
    with pytest.raises(strategy.StrategyError) as info:
        strategy.load(str(path))
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message and len(message) < 600
    argv = ["fuzz", "--strategy", str(path), "--examples", "1", "--no-database", "--corpus", str(tmp_path / "c")]
    code = main(argv)
    _out, err = capsys.readouterr()
    assert code == 2, err
    assert err.count("\n") == 1 and str(path) in err
    assert time.perf_counter() - started < 5.0


def test_the_base_strategy_is_good(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(_strategy_text())
    s = strategy.load(str(path))
    assert s.weights == {"mmap": 2, "write": 1}
