"""The file schemas (rmapfuzz.schema): every shipped file meets them, the loaders reject what they
reject, the loader's fast path means the same as the whole schema, and errors name a JSON pointer."""

from __future__ import annotations

import functools
import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

from rmapfuzz import corpus, schema, strategy
from rmapfuzz.cli import main
from tests.test_malformed import BAD_STRATEGIES, MUTATIONS, mutants

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "corpus").glob("*.json"))
STRATEGIES = sorted((ROOT / "strategies").glob("*.toml"))

# Loader errors about what a schema cannot state (cross-field or registry facts): the kernel names,
# pages relative to the window, mremap's rules between fields, the violating step's index, a portfolio;
# and the bound on a number's length, checked while parsing (before the schema sees a value).
BEYOND_SCHEMA = (
    *("a number of", "is not a JSON number", "is out of range"),
    *("unknown kernel", "bad field 'kernel'", "bad field 'against'", "outside the window"),
    *("maymove without fixed", "in-place resize", "is not a step index", "field 'portfolio'"),
)


@pytest.mark.parametrize("name", sorted(schema.SCHEMAS))
def test_each_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    printed = schema.SCHEMAS[name]()
    jsonschema.Draft202012Validator.check_schema(printed)
    assert printed["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_corpus_file_meets_the_reproducer_schema() -> None:
    assert CORPUS
    plain = jsonschema.Draft202012Validator(schema.reproducer_schema())  # any standard validator agrees
    for path in CORPUS:
        data = json.loads(path.read_text())
        assert not list(plain.iter_errors(data)), path
        assert schema.first_error("reproducer", data) is None


def test_every_strategy_file_meets_the_strategy_schema() -> None:
    assert len(STRATEGIES) >= 7
    plain = jsonschema.Draft202012Validator(schema.strategy_schema())
    for path in STRATEGIES:
        data = tomllib.loads(path.read_text())
        assert not list(plain.iter_errors(data)), path


def test_the_schemas_carry_the_documented_bounds() -> None:
    rep = schema.reproducer_schema()["properties"]
    assert rep["window"]["maximum"] == corpus.MAX_WINDOW == 128
    assert rep["steps"]["maxItems"] == corpus.MAX_STEPS == 10_000
    assert rep["steps"]["maxContains"] == corpus.MAX_FORKS == 64
    strat = schema.strategy_schema()["properties"]
    assert strat["window"]["maximum"] == strategy.MAX_WINDOW
    assert strat["steps"]["maximum"] == strategy.MAX_STEPS
    assert strat["max_processes"]["maximum"] == strategy.MAX_PROCESSES


@functools.cache
def json_mutants() -> list[tuple[str, object]]:
    """Every fourth mutant of the hardening test that is still JSON (the schema judges those)."""
    out = []
    for kind in sorted(MUTATIONS):
        for name, data in list(mutants(kind))[::4]:
            try:
                text = data.decode("utf-8")
                if corpus.nesting(text) > corpus.MAX_DEPTH:
                    continue
                out.append((name, json.loads(text)))
            except (UnicodeDecodeError, ValueError, RecursionError):
                continue
    return out


def test_the_loader_rejects_nothing_the_schema_accepts_but_what_no_schema_can_state() -> None:
    assert len(json_mutants()) >= 1000
    rejected_by_schema = 0
    for name, data in json_mutants():
        try:
            corpus.loads(json.dumps(data), name)
            loaded = True
        except corpus.CorpusError as exc:
            loaded, why = False, str(exc)
        except ValueError:  # a float past the number limit when dumped again: not the schema's business
            continue
        problem = schema.first_error("reproducer", data)
        if problem is not None:
            rejected_by_schema += 1
            assert not loaded, f"{name}: the schema rejects ({problem}) what the loader took"
        elif not loaded:
            assert any(needle in why for needle in BEYOND_SCHEMA), f"{name}: only the loader rejects: {why}"
    assert rejected_by_schema >= 500


def test_the_fast_path_means_the_whole_schema() -> None:
    whole = schema._validator("reproducer")
    for name, data in json_mutants()[::2]:
        assert (schema.first_error("reproducer", data) is None) == whole.is_valid(data), name


@pytest.mark.parametrize(("forks", "others", "words"), [(65, 0, "fork steps"), (65, 10_000, "maxItems 10,000")])
def test_the_fork_count_is_judged_after_the_step_limit(forks: int, others: int, words: str) -> None:
    """Too many fork steps is refused; a file past the step limit is refused for that first, without
    the fork count's walk over every step (a 100,000-step file was 2 s of the loader's time)."""
    data = json.loads(CORPUS[0].read_text())
    data["steps"] = [{"op": "fork", "pid": 0}] * forks + [{"op": "read", "pid": 0, "addr": 0}] * others
    error = schema.first_error("reproducer", data)
    assert error is not None and words in error
    assert not schema._validator("reproducer").is_valid(data)


def test_the_strategy_schema_rejects_the_bad_strategy_files() -> None:
    judged = 0
    for name, raw in BAD_STRATEGIES.items():
        try:
            data = tomllib.loads(raw if isinstance(raw, str) else raw.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError, ValueError):
            continue  # refused before the schema: not TOML
        if name.startswith("portfolio-self"):
            continue  # a name that is not a strategy: the registry's fact, checked by the loader
        judged += 1
        assert schema.first_error("strategy", data) is not None, name
    assert judged >= 30


@pytest.mark.parametrize(
    ("text", "pointer"),
    [
        ('{"kernel": "2.6.34", "window": 8, "steps": [{"op": "mmap", "pid": 0, "start": 0, "pages": 1, "prot": "q"}]}',
         "/steps/0/prot"),
        ('{"kernel": "2.6.34", "window": 8, "steps": [], "violation": {"invariant": 3, "step": 0}}',
         "/violation/invariant"),
        ('{"kernel": "2.6.34", "window": 8.0, "steps": []}', "/window"),
        ('{"kernel": "2.6.34", "window": 8, "steps": [], "found": {"bugs": [1]}}', "/found/bugs/0"),
    ],
)  # fmt: skip
def test_errors_name_the_json_pointer(text: str, pointer: str) -> None:
    with pytest.raises(corpus.CorpusError) as info:
        corpus.loads(text, "f.json")
    message = str(info.value)
    assert f"(at {pointer})" in message or f"at {pointer}:" in message, message
    assert "\n" not in message


def test_schema_command_prints_each_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "rmapfuzz reproducer"
    for name in schema.SCHEMAS:
        assert main(["schema", name]) == 0
        assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(schema.SCHEMAS[name]()))
    assert main(["schema", "nosuch"]) == 2
