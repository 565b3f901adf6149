"""The op language (rmapfuzz.ops): parsing, round trips, errors and the schema."""

from __future__ import annotations

from typing import Any

import pytest

from rmapfuzz import ops

EXAMPLES: list[ops.Op] = [
    ops.Mmap(pid=0, start=0, pages=3, prot="rw"),
    ops.Mmap(pid=1, start=7, pages=1, prot=""),
    ops.Munmap(pid=0, start=2, pages=2),
    ops.Mprotect(pid=2, start=0, pages=8, prot="rwx"),
    ops.Mremap(pid=0, start=0, pages=2, new_start=0, new_pages=4),
    ops.Mremap(pid=0, start=0, pages=2, new_start=4, new_pages=2, flags=("maymove", "fixed")),
    ops.Mremap(pid=0, start=0, pages=2, new_start=4, new_pages=2, flags=("maymove", "fixed", "dontunmap")),
    ops.Mremap(pid=0, start=0, pages=2, new_start=4, new_pages=2, flags=("fixed",)),
    *[ops.Madvise(pid=0, start=1, pages=1, advice=a) for a in ops.ADVICES],
    ops.Fork(pid=0),
    ops.Exit(pid=3),
    ops.Read(pid=0, addr=7),
    ops.Write(pid=1, addr=0),
    ops.FailAlloc(nth=2),
]


def test_examples_cover_every_op() -> None:
    assert {op.op for op in EXAMPLES} == set(ops.OP_CLASSES)


@pytest.mark.parametrize("op", EXAMPLES, ids=ops.describe)
def test_round_trip(op: ops.Op) -> None:
    obj = ops.to_json(op)
    assert next(iter(obj)) == "op"
    assert ops.parse_step(obj, 8) == op
    assert ops.to_json(ops.parse_step(obj, 8)) == obj


def test_parse_steps_round_trip() -> None:
    objs = [ops.to_json(op) for op in EXAMPLES]
    assert ops.parse_steps(objs, 8) == EXAMPLES


def test_mremap_flags_are_normalised_and_optional() -> None:
    op = ops.parse_step(
        {
            "op": "mremap",
            "pid": 0,
            "start": 0,
            "pages": 1,
            "new_start": 3,
            "new_pages": 1,
            "flags": ["fixed", "maymove"],
        },
        8,
    )
    assert isinstance(op, ops.Mremap) and op.flags == ("maymove", "fixed")
    op = ops.parse_step({"op": "mremap", "pid": 0, "start": 0, "pages": 1, "new_start": 0, "new_pages": 2}, 8)
    assert isinstance(op, ops.Mremap) and op.flags == ()


def test_to_json_field_order() -> None:
    assert ops.to_json(ops.Mmap(pid=0, start=1, pages=2, prot="r")) == {
        "op": "mmap",
        "pid": 0,
        "start": 1,
        "pages": 2,
        "prot": "r",
    }
    assert list(ops.to_json(EXAMPLES[5])) == ["op", "pid", "start", "pages", "new_start", "new_pages", "flags"]
    assert ops.to_json(EXAMPLES[5])["flags"] == ["maymove", "fixed"]


def test_describe() -> None:
    assert ops.describe(ops.Mprotect(pid=1, start=0, pages=1, prot="rw")) == "mprotect(P1, [0,1), rw)"
    assert ops.describe(ops.Mmap(pid=0, start=0, pages=1, prot="")) == "mmap(P0, [0,1), none)"
    assert ops.describe(EXAMPLES[4]) == "mremap(P0, [0,2) -> [0,4), in-place)"
    assert ops.describe(EXAMPLES[5]) == "mremap(P0, [0,2) -> [4,6), maymove|fixed)"
    assert ops.describe(ops.Fork(pid=2)) == "fork(P2)"
    assert ops.describe(ops.Read(pid=0, addr=3)) == "read(P0, 3)"
    assert ops.describe(ops.FailAlloc(nth=1)) == "fail_alloc(nth=1)"
    assert ops.describe(ops.Mmap(0, 1, 2, "rw", ("noreserve",))) == "mmap(P0, [1,3), rw, noreserve)"


def test_mmap_flags_are_optional_and_round_trip() -> None:
    """A plain mmap's JSON has no ``flags`` (files written before MAP_NORESERVE read the same);
    a MAP_NORESERVE one has ``["noreserve"]``, and both parse back to the same op."""
    plain = ops.Mmap(0, 0, 1, "r")
    noreserve = ops.Mmap(0, 0, 1, "r", ("noreserve",))
    assert ops.to_json(plain) == MM
    assert ops.to_json(noreserve) == {**MM, "flags": ["noreserve"]}
    for op in (plain, noreserve):
        assert ops.parse_step(ops.to_json(op), 8) == op
    assert ops.parse_step({**MM, "flags": []}, 8) == plain


MM = {"op": "mmap", "pid": 0, "start": 0, "pages": 1, "prot": "r"}
MR = {"op": "mremap", "pid": 0, "start": 0, "pages": 1, "new_start": 2, "new_pages": 1}

BAD: list[tuple[str, object, str]] = [
    ("not-object", [1], "a step must be a JSON object, got list"),
    ("unknown-op", {"op": "brk", "pid": 0}, "unknown op 'brk' (known: mmap, munmap"),
    ("missing-op", {"pid": 0}, "unknown op None"),
    ("missing-field", {"op": "mmap", "pid": 0, "start": 0, "pages": 1}, "mmap: missing field 'prot'"),
    ("unknown-field", {**MM, "advice": "dontneed"}, "mmap: unknown field 'advice'"),
    ("mmap-unknown-flag", {**MM, "flags": ["shared"]}, "mmap: flags must be a list of distinct names from noreserve"),
    ("mmap-dup-flags", {**MM, "flags": ["noreserve", "noreserve"]}, "mmap: flags must be a list of distinct"),
    ("bool-int", {"op": "read", "pid": True, "addr": 0}, "read: field 'pid' must be an integer, got True"),
    ("str-int", {**MM, "start": "0"}, "mmap: field 'start' must be an integer, got '0'"),
    ("negative", {**MM, "pages": -1}, "mmap: field 'pages' must be >= 0, got -1"),
    ("outside-range", {**MM, "start": 6, "pages": 3}, "mmap: [6,9) is outside the window of 8 pages"),
    ("outside-start", {**MM, "start": 8, "pages": 0}, "mmap: [8,8) is outside the window of 8 pages"),
    ("outside-addr", {"op": "write", "pid": 0, "addr": 8}, "write: addr 8 is outside the window of 8 pages"),
    (
        "outside-new",
        {**MR, "new_start": 7, "new_pages": 2, "flags": ["maymove", "fixed"]},
        "mremap: [7,9) is outside the window",
    ),
    ("bad-prot", {**MM, "prot": "wr"}, "mmap: prot must be a subset of 'rwx' in that order, got 'wr'"),
    ("bad-advice", {"op": "madvise", "pid": 0, "start": 0, "pages": 1, "advice": "free"}, "madvise: advice must be"),
    ("maymove-only", {**MR, "flags": ["maymove"]}, "mremap: maymove without fixed"),
    ("in-place-moved", MR, "mremap: an in-place resize (no 'fixed') needs new_start == start"),
    ("dup-flags", {**MR, "flags": ["fixed", "fixed"]}, "mremap: flags must be a list of distinct names"),
    ("unknown-flag", {**MR, "flags": ["maymove", "fixed", "shared"]}, "mremap: flags must be a list of distinct"),
    ("flags-not-list", {**MR, "flags": "fixed"}, "mremap: flags must be a list"),
    ("nth-zero", {"op": "fail_alloc", "nth": 0}, "fail_alloc: field 'nth' must be >= 1, got 0"),
]


@pytest.mark.parametrize(("obj", "message"), [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
def test_bad_step(obj: object, message: str) -> None:
    with pytest.raises(ops.OpError) as exc:
        ops.parse_step(obj, 8)
    assert str(exc.value).startswith(message), str(exc.value)


def test_op_error_is_value_error() -> None:
    assert issubclass(ops.OpError, ValueError)


def test_window_is_respected() -> None:
    ops.parse_step({**MM, "start": 15}, 16)
    with pytest.raises(ops.OpError, match="outside the window of 4 pages"):
        ops.parse_step({**MM, "start": 4}, 4)


def test_parse_steps_names_the_step() -> None:
    with pytest.raises(ops.OpError, match=r"^step 1: unknown op 'x'"):
        ops.parse_steps([{"op": "fork", "pid": 0}, {"op": "x"}], 8)
    with pytest.raises(ops.OpError, match="steps must be a JSON list, got dict"):
        ops.parse_steps({"op": "fork", "pid": 0}, 8)


def test_schema_lists_every_op() -> None:
    variants: list[dict[str, Any]] = ops.STEP_SCHEMA["oneOf"]  # type: ignore[assignment]
    consts = [v["properties"]["op"]["const"] for v in variants]
    assert sorted(consts) == sorted(ops.OP_CLASSES)
    assert len(consts) == len(set(consts))


@pytest.mark.parametrize("name", sorted(ops.OP_CLASSES))
def test_schema_fields_match_op_class(name: str) -> None:
    import attrs

    variants: list[dict[str, Any]] = ops.STEP_SCHEMA["oneOf"]  # type: ignore[assignment]
    variant = next(v for v in variants if v["properties"]["op"]["const"] == name)
    fields = {f.name for f in attrs.fields(ops.OP_CLASSES[name])}
    assert set(variant["properties"]) == fields | {"op"}
    optional = {"flags"} if name in ("mmap", "mremap") else set()
    assert set(variant["required"]) == (fields - optional) | {"op"}
    assert variant["additionalProperties"] is False
