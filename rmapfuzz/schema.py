"""The file formats as JSON Schemas (draft 2020-12): the one statement of what a reproducer file
and a strategy file may hold, which ``rmapfuzz schema`` prints and the loaders validate against.

Validation is done by ``jsonschema`` (a well-kept, complete implementation of the standard, so the
schema a user reads is the one enforced, and other tools can validate with it too).  The loaders
then check only what a schema cannot say: a kernel name resolves, the violating step is an index
into ``steps``, each step's pages lie inside the file's window (:func:`rmapfuzz.ops.parse_steps`),
a portfolio names strategies that exist.  Before any of that, :mod:`rmapfuzz.corpus` bounds the
file's size, nesting and number length, so that parsing itself costs little.

Two departures from plain JSON, both stricter: an ``integer`` is written without a fraction
(``8``, not ``8.0``) and a ``number`` is finite (no NaN, no infinity).
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any, cast

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

from rmapfuzz import invariants as inv
from rmapfuzz import ops
from rmapfuzz.ops import short
from rmapfuzz.pair import LEVELS

DRAFT = "https://json-schema.org/draft/2020-12/schema"

# ---- reproducer files (docs/reproducer-format.md, "Limits") ----
FORMAT = "rmapfuzz-reproducer"
FORMAT_VERSION = 2  # 2: kind "difference" and its field "against"
KINDS = ("violation", "divergence", "difference")
MAX_FILE_BYTES = 4 * 1024 * 1024  # the largest file read; a 10,000-step file is about 0.6 MB
MAX_DEPTH = 32  # JSON nesting; a written file nests 6 deep (minimal.bound.stats.states_by_length)
MAX_NUMBER_CHARS = 64  # characters in one JSON number (far below Python's 4,300-digit int limit)
MAX_WINDOW = 128  # pages; strategies allow up to 64, the live oracle maps 64 by default
MAX_STEPS = 10_000  # steps in one reproducer; campaigns shrink theirs to tens
MAX_FORKS = 64  # fork steps in one reproducer: at most 65 processes, as strategies allow max_processes <= 64
MAX_KERNEL_NAME = 200  # characters: a generation and a few fixes ('3.19+3fe89b3e')

# ---- strategy files (README, "How a campaign searches") ----
STRATEGY_MAX_FILE_BYTES = 64 * 1024  # a strategy file is a few lines; the shipped ones are under 2 KB
STRATEGY_MAX_STEPS = 600  # Hypothesis silently truncates stateful_step_count much above this
STRATEGY_MAX_WINDOW = 64  # pages
MAX_PROCESSES = 64
MAX_BURST = 64
MAX_WEIGHT = 1000  # a weight is relative: 1000 against 1 is already a 0.1 % share
MAX_DESCRIPTION = 500  # characters
RULE_OPS = ("mmap", "munmap", "mprotect", "mremap", "madvise", "fork", "exit", "read", "write", "fail_alloc")
START_OPS = ("mmap",)  # what can start a sequence: the first process has no mappings until one of these


def _int(low: int, high: int | None = None, description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", "minimum": low}
    if high is not None:
        out["maximum"] = high
    if description:
        out["description"] = description
    return out


def _step_variants() -> dict[str, dict[str, Any]]:
    """Each op's step schema, from :data:`rmapfuzz.ops.STEP_SCHEMA` (the op language's own statement)."""
    variants: list[dict[str, Any]] = ops.STEP_SCHEMA["oneOf"]  # type: ignore[assignment]
    return {v["properties"]["op"]["const"]: v for v in variants}


def step_schema() -> dict[str, Any]:
    """One step, its op's variant chosen by ``op`` (an if/then per op rather than a oneOf, so that
    an error names the field of the op the step says it is); the variants are in ``$defs``."""
    names = list(_step_variants())
    return {
        "type": "object",
        "description": "one step of the op language (rmapfuzz/ops.py); pages lie inside the file's window",
        "required": ["op"],
        "properties": {"op": {"enum": names}},
        "allOf": [
            {"if": {"properties": {"op": {"const": name}}, "required": ["op"]}, "then": {"$ref": f"#/$defs/{name}"}}
            for name in names
        ],
    }


def _violation_for(kind: str) -> dict[str, Any]:
    """``violation`` as a ``kind`` entry records it."""
    if kind == "violation":
        invariant: dict[str, Any] = {
            "enum": [i.name for i in inv.CATALOGUE],
            "description": "an unknown invariant: rmapfuzz invariants lists them",
        }
    else:
        invariant = {"const": kind, "description": f"a {kind} entry records {kind!r} as its invariant"}
    props: dict[str, Any] = {"invariant": invariant}
    required = ["invariant", "step"]
    if kind == "difference":
        props["level"] = {"enum": list(LEVELS), "description": "the first level at which the two kernels differ"}
        required.append("level")
    return {"properties": {"violation": {"anyOf": [{"type": "null"}, {"properties": props, "required": required}]}}}


def reproducer_schema() -> dict[str, Any]:
    """A whole reproducer file (docs/reproducer-format.md)."""
    free_form = {"type": ["object", "null"], "description": "free-form: how it was found"}
    return {
        "$schema": DRAFT,
        "$id": "urn:rmapfuzz:reproducer",
        "title": "rmapfuzz reproducer",
        "description": "A step sequence, the model kernel it runs on and what it broke there. A hand-written "
        "file needs only kernel, window and steps. Checked beyond the schema: kernel names resolve, "
        "violation.step indexes steps, every step's pages lie inside the window.",
        "type": "object",
        "$defs": {"step": step_schema(), **_step_variants()},
        "required": ["kernel", "window", "steps"],
        "additionalProperties": False,
        "properties": {
            "format": {"const": FORMAT},
            "version": _int(1, FORMAT_VERSION, "the format version; 2 added kind 'difference' and 'against'"),
            "kernel": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_KERNEL_NAME,
                "description": "a model kernel name (rmapfuzz kernels), never a file",
            },
            "against": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_KERNEL_NAME,
                "description": "kind 'difference': the kernel the steps are compared with",
            },
            "window": _int(1, MAX_WINDOW, f"the window in pages, 1 to {MAX_WINDOW}"),
            "kind": {"enum": list(KINDS)},
            "signature": {"type": "string", "description": "recomputed on load"},
            "violation": {
                "type": ["object", "null"],
                "properties": {
                    "invariant": {"type": "string"},
                    "step": _int(0, MAX_STEPS - 1, "the 0-based index of the violating step"),
                    "message": {"type": "string"},
                    "level": {"type": "string"},
                },
                "required": ["invariant", "step"],
            },
            "found": {
                **free_form,
                "properties": {
                    "bugs": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "the catalogued bugs the entry shows (letters)",
                    }
                },
            },
            "minimal": {"type": ["object", "null"], "description": "what the minimizer established"},
            "steps": {
                "type": "array",
                "maxItems": MAX_STEPS,
                "items": {"$ref": "#/$defs/step"},
                "contains": {"properties": {"op": {"const": "fork"}}, "required": ["op"]},
                "minContains": 0,
                "maxContains": MAX_FORKS,
                "description": f"at most {MAX_STEPS:,} steps, of which at most {MAX_FORKS} fork steps",
            },
        },
        "allOf": [
            {
                "if": {"properties": {"kind": {"const": "difference"}}, "required": ["kind"]},
                "then": {
                    "required": ["against"],
                    "description": "a difference entry names the kernel it compares with (against), no other does",
                    **_violation_for("difference"),
                },
                "else": {
                    "not": {"required": ["against"]},
                    "description": "a difference entry names the kernel it compares with (against), no other does",
                },
            },
            {
                "if": {"properties": {"kind": {"const": "divergence"}}, "required": ["kind"]},
                "then": _violation_for("divergence"),
            },
            {"if": {"properties": {"kind": {"const": "violation"}}}, "then": _violation_for("violation")},
        ],
    }


def strategy_schema() -> dict[str, Any]:
    """A strategy file's table (TOML; README, "How a campaign searches")."""
    flag_set = {
        "type": "array",
        "items": {"enum": list(ops.MREMAP_FLAGS)},
        "uniqueItems": True,
        "if": {"contains": {"const": "maymove"}},
        "then": {
            "contains": {"const": "fixed"},
            "description": "'fixed' wherever 'maymove' is (maymove alone "
            "lets the kernel choose an address outside the window)",
        },
    }
    weight = _int(0, MAX_WEIGHT, f"a relative weight, 0 (off) to {MAX_WEIGHT}")
    return {
        "$schema": DRAFT,
        "$id": "urn:rmapfuzz:strategy",
        "title": "rmapfuzz strategy",
        "description": f"What a campaign generates (UTF-8 TOML, at most {STRATEGY_MAX_FILE_BYTES // 1024} KiB). "
        "Checked beyond the schema: portfolio names other named strategies.",
        "type": "object",
        "required": ["window", "max_processes", "steps", "weights", "prots", "advices", "mremap_flags"],
        "additionalProperties": False,
        "properties": {
            "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
            "window": _int(2, STRATEGY_MAX_WINDOW, "pages"),
            "max_processes": _int(1, MAX_PROCESSES),
            "steps": _int(1, STRATEGY_MAX_STEPS, "Hypothesis steps per test case"),
            "burst": _int(1, MAX_BURST, "ops per Hypothesis step (default 4)"),
            "swarm": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "share of test cases that draw their own mix (default 0.25)",
            },
            "weights": {
                "type": "object",
                "description": f"ops: {', '.join(RULE_OPS)}",
                "additionalProperties": False,
                "properties": {
                    **dict.fromkeys(RULE_OPS, weight),
                    "mmap": _int(
                        1,
                        MAX_WEIGHT,
                        "mmap needs a positive weight: no other op can start a sequence "
                        "(the first process has no mappings until one)",
                    ),
                },
                "required": list(START_OPS),
            },
            "prots": {"type": "array", "minItems": 1, "items": {"enum": list(ops.PROTS)}},
            "advices": {"type": "array", "minItems": 1, "items": {"enum": list(ops.ADVICES)}},
            "mremap_flags": {
                "type": "array",
                "minItems": 1,
                "items": flag_set,
                "description": "flag sets mremap draws from; [] is an in-place resize",
            },
            "mmap_flags": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "array", "items": {"enum": list(ops.MMAP_FLAGS)}, "uniqueItems": True},
                "description": "flag sets mmap draws from (default [[]]: plain mmaps only); "
                "['noreserve'] is MAP_NORESERVE",
            },
            "portfolio": {
                "type": "array",
                "items": {"type": "string", "maxLength": 100},
                "description": "other named strategies whose mixes a test case may draw",
            },
            "mremap_zero_old_len": _int(
                0, MAX_WEIGHT, "one mremap in N has an old length of 0 (EINVAL on a private mapping); 0: none"
            ),
        },
    }


SCHEMAS = {"step": lambda: dict(ops.STEP_SCHEMA), "reproducer": reproducer_schema, "strategy": strategy_schema}


def _is_integer(_checker: object, value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(_checker: object, value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


_BASE = jsonschema.Draft202012Validator
_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    _BASE, type_checker=_BASE.TYPE_CHECKER.redefine_many({"integer": _is_integer, "number": _is_number})
)


@functools.cache
def _validator(name: str) -> Any:
    schema = SCHEMAS[name]()
    _BASE.check_schema(schema)
    return _Validator(schema)


@functools.cache
def _reproducer_parts() -> tuple[Any, Any, Any, dict[str, Any]]:
    """The reproducer schema cut for speed, meaning the same: the file without its steps' items and
    without the count of fork steps (bounded: O(1) in the steps), that count alone, the one-step
    schema, and each op's variant (a step whose op names a variant is validated against that variant
    alone, as the if/then would; a 10,000-step file validates in a fifth of the time).  The fork
    count visits every step, so it runs only on a file within the step limit: a 100,000-step file
    is refused in a tenth of the time."""
    whole = reproducer_schema()
    shell = copy.deepcopy(whole)
    del shell["properties"]["steps"]["items"]
    counted = {key: shell["properties"]["steps"].pop(key) for key in ("contains", "minContains", "maxContains")}
    about = shell["properties"]["steps"]["description"]
    forks = {"properties": {"steps": {"type": "array", **counted, "description": about}}}
    step = {**whole["$defs"]["step"], "$defs": whole["$defs"]}
    variants = {name: _Validator(whole["$defs"][name]) for name in _step_variants()}
    return _Validator(shell), _Validator(forks), _Validator(step), variants


def _pointer(path: Iterable[object]) -> str:
    """The JSON pointer (RFC 6901) of a path."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _message(error: jsonschema.exceptions.ValidationError) -> str:
    """jsonschema's message, in the words of the rest of rmapfuzz for the common cases and cut short
    when it would repeat a long value."""
    instance, value = error.instance, cast(Any, error.validator_value)
    if error.validator == "required" and isinstance(instance, dict):
        missing = [key for key in value if key not in instance]
        return f"missing field {short(missing[0])}" if missing else error.message
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        extra = sorted(str(key) for key in instance if key not in known)
        return f"unknown field {short(extra[0])}" if extra else error.message
    if error.validator in ("maxItems", "minItems") and isinstance(instance, list):
        return f"{len(instance):,} items ({error.validator} {value:,})"
    if len(error.message) > 200 or "\n" in error.message:
        return f"{short(instance)} fails {error.validator} {short(value)}"
    return error.message


def _explain(error: jsonschema.exceptions.ValidationError) -> str:
    """One short line: the message, then the rule's description from the schema when it has one
    (not the whole file's)."""
    message = _message(error)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    why = schema.get("description") if error.validator != "type" and "$schema" not in schema else None
    if not isinstance(why, str):
        return message
    return why if error.validator == "not" else f"{message} ({why})"


def _line(error: jsonschema.exceptions.ValidationError, prefix: tuple[object, ...] = ()) -> str:
    """``bad step: step 4: ... (at /steps/4/prot)``, ``bad field 'weights.write' at /weights/write: ...``,
    or the message alone for the whole document."""
    path = (*prefix, *error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):  # name the unknown key
        known = error.schema.get("properties", {}) if isinstance(error.schema, Mapping) else {}
        path = (*path, *sorted(str(key) for key in error.instance if key not in known)[:1])
    if len(path) == 1 and error.validator == "additionalProperties":
        return _explain(error)
    if not path:
        return _explain(error)
    if path[0] == "steps" and len(path) > 1:
        return f"bad step: step {path[1]}: {_explain(error)} (at {_pointer(path)})"
    return f"bad field {short('.'.join(map(str, path)))} at {_pointer(path)}: {_explain(error)}"


def _first(errors: Iterable[jsonschema.exceptions.ValidationError], instance: object) -> Any:
    """The error to report: among those in the field written first (the order of the file), the
    most relevant (jsonschema's best_match)."""
    errors = list(errors)
    if not errors:
        return None
    order = {key: i for i, key in enumerate(instance)} if isinstance(instance, dict) else {}
    first_field = min((order.get(e.absolute_path[0], -1) if e.absolute_path else -1) for e in errors)
    chosen = [e for e in errors if (order.get(e.absolute_path[0], -1) if e.absolute_path else -1) == first_field]
    deepest = max(len(e.absolute_path) for e in chosen)  # the most specific: weights.write before weights
    return jsonschema.exceptions.best_match(e for e in chosen if len(e.absolute_path) == deepest)


def first_error(name: str, instance: object) -> str | None:
    """Why ``instance`` is not a valid ``name`` (``reproducer``, ``strategy`` or ``step``): one line
    naming the field and its JSON pointer, or None when it is valid."""
    if name == "reproducer":
        return _first_reproducer_error(instance)
    error = _first(_validator(name).iter_errors(instance), instance)
    return None if error is None else _line(error)


def _first_reproducer_error(instance: object) -> str | None:
    shell, forks, step, variants = _reproducer_parts()
    for part in (shell, forks):
        error = _first(part.iter_errors(instance), instance)
        if error is not None:
            return _line(error)
    assert isinstance(instance, dict)
    for i, obj in enumerate(instance["steps"]):
        op = obj.get("op") if isinstance(obj, dict) else None
        check = variants.get(op, step) if isinstance(op, str) else step
        error = jsonschema.exceptions.best_match(check.iter_errors(obj))
        if error is not None:
            return _line(error, ("steps", i))
    return None
