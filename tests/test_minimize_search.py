"""The exhaustive minimality search against a naive reference, and the pieces its speed rests on:
state copies, the fingerprint's coverage, the invariant classes, the same-shape preference and the
window reduction (docs/minimality.md)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import attrs
import pytest

from rmapfuzz import corpus, ops
from rmapfuzz import invariants as inv
from rmapfuzz.corpus import step_shape
from rmapfuzz.kernels import KERNELS, boot
from rmapfuzz.minimize import (
    alphabet,
    clone,
    exhaustive,
    fingerprint,
    minimize_reproducer,
    pages_used,
    span_search,
)
from rmapfuzz.minimize.proof import _invariant_classes
from rmapfuzz.minimize.snapshot import Role, field_plan
from rmapfuzz.model.objects import Page, Vma
from rmapfuzz.model.syscalls import SyscallMixin
from rmapfuzz.replay import Runner, replay


def _run(kernel: str | SyscallMixin, window: int, path: list[ops.Op]) -> SyscallMixin:
    """The kernel after a clean prefix, replayed on a judge (from boot, or from ``kernel``)."""
    runner = Runner(kernel, window)
    for op in path:
        runner.run(op)
    return runner.kernel


RC3 = "2.6.34-rc3"
# bug A with an mprotect step, in two pages (the shortest there is: 4 steps)
A_MPROTECT: list[ops.Op] = [
    ops.Mmap(0, 0, 1, ""),
    ops.Mmap(0, 1, 1, "rw"),
    ops.Write(0, 1),
    ops.Mprotect(0, 0, 1, "rw"),
]
# bug A with an mmap step: filling the hole between a faulted and an unfaulted VMA
A_MMAP: list[ops.Op] = [ops.Mmap(0, 0, 1, "rw"), ops.Mmap(0, 2, 1, "rw"), ops.Write(0, 2), ops.Mmap(0, 1, 1, "rw")]


# ---- a naive reference: the whole op language, exact-state dedup, replay from boot ----


def language(window: int, pids: int) -> Iterator[ops.Op]:
    """Every step of the op language over the window and pids 0..pids-1 (no fail_alloc)."""
    flag_sets = [(), ("dontunmap",), ("fixed",), ("fixed", "dontunmap"), ("maymove", "fixed")]
    flag_sets.append(("maymove", "fixed", "dontunmap"))
    for pid in range(pids):
        yield ops.Fork(pid)
        yield ops.Exit(pid)
        for addr in range(window):
            yield ops.Read(pid, addr)
            yield ops.Write(pid, addr)
        for start in range(window):
            for pages in range(1, window - start + 1):
                yield ops.Munmap(pid, start, pages)
                for prot in ops.PROTS:
                    yield ops.Mmap(pid, start, pages, prot)
                    yield ops.Mprotect(pid, start, pages, prot)
                for advice in ops.ADVICES:
                    yield ops.Madvise(pid, start, pages, advice)
            for pages in range(window - start + 1):
                for flags in flag_sets:
                    if "fixed" not in flags:
                        for new in range(1, window - start + 1):
                            yield ops.Mremap(pid, start, pages, start, new, flags)
                        continue
                    for new_start in range(window):
                        for new in range(1, window - new_start + 1):
                            yield ops.Mremap(pid, start, pages, new_start, new, flags)


_FIELD_NAMES: dict[type, list[str]] = {}


def exact_state(k: SyscallMixin) -> str:
    """Every reachable object and every live anon_vma and page, numbered by first appearance,
    all fields but ``ident`` (no prot renaming): equal strings mean isomorphic states."""
    ids: dict[int, int] = {}
    queue: list[object] = []

    def ref(value: object) -> object:
        if value is None or type(value) in (int, bool, str):
            return value
        if isinstance(value, (list, tuple)):
            return [ref(v) for v in value]
        if isinstance(value, dict):
            return [(key, ref(v)) for key, v in value.items()]
        assert attrs.has(type(value)), value
        if id(value) not in ids:
            ids[id(value)] = len(ids)
            queue.append(value)
        return ("@", ids[id(value)])

    head: list[object] = [k.next_pid, k.fail_nth, [(pid, ref(mm)) for pid, mm in sorted(k.mms.items())]]
    head.append([ref(av) for av in k.anon_vmas if not av.freed])
    head.append([ref(page) for page in k.pages if not page.freed])
    rows: list[list[object]] = []
    while len(rows) < len(queue):
        obj = queue[len(rows)]
        fields = attrs.fields(type(obj))  # type: ignore[arg-type]
        names = _FIELD_NAMES.setdefault(type(obj), [f.name for f in fields if f.name != "ident"])
        rows.append([type(obj).__name__] + [ref(getattr(obj, name)) for name in names])
    return repr((head, rows))


def reference(
    kernel: str, window: int, pids: int, invariant: str, max_len: int, want: str | None = None
) -> tuple[int, set[str]] | None:
    """(the shortest length at which a sequence first breaks ``invariant``, the shapes of the
    failing steps at that length, or only ``want`` as soon as one has that shape), or None up to
    ``max_len``."""
    letters = list(language(window, pids))
    frontier: list[list[ops.Op]] = [[]]
    seen = {exact_state(boot(kernel, window))}
    for length in range(1, max_len + 1):
        shapes: set[str] = set()
        nxt: list[list[ops.Op]] = []
        for path in frontier:
            for op in letters:
                runner = Runner(kernel, window)
                for done in path:  # a clean prefix: only the last step needs judging
                    runner.run(done)
                found = [v.invariant for v in runner.step(op)[1]]
                k = runner.kernel
                if found:
                    if invariant in found:
                        shapes.add(step_shape(op))
                        if step_shape(op) == want:
                            return length, {want}
                    continue
                key = exact_state(k)
                if key not in seen:
                    seen.add(key)
                    nxt.append([*path, op])
        if shapes:
            return length, shapes
        frontier = nxt
    return None


@pytest.mark.parametrize(
    ("kernel", "invariant", "steps"),
    [
        (RC3, "merge-superset", A_MPROTECT),
        ("3.19-rc4", "counters", A_MPROTECT),
    ],
)
def test_the_search_agrees_with_the_naive_reference(kernel: str, invariant: str, steps: list[ops.Op]) -> None:
    found = reference(kernel, 2, 1, invariant, len(steps), want=step_shape(steps[-1]))
    assert found is not None
    length, shapes = found
    padded = [ops.Read(0, 0), *steps]  # one step longer: the search must come back with the shortest
    result = exhaustive(kernel, 2, padded, invariant, budget=120)
    assert result.status == "shorter"
    assert result.witness is not None
    assert len(result.witness) == length
    assert step_shape(result.witness[-1]) in shapes
    assert result.same_shape == (step_shape(steps[-1]) in shapes)
    proof = exhaustive(kernel, 2, result.witness, invariant, budget=120)
    assert proof.status == "proved"


def test_two_processes_agree_with_the_naive_reference() -> None:
    assert reference(RC3, 1, 2, "same-chain", 4) is None
    steps: list[ops.Op] = [ops.Mmap(0, 0, 1, "rw"), ops.Fork(0), ops.Read(1, 0), ops.Write(1, 0), ops.Write(0, 0)]
    result = exhaustive(RC3, 1, steps, "same-chain", budget=120)
    assert result.status == "proved"
    assert result.bound["processes"] == 2
    assert result.bound["stats"]["completed_length"] == 4


# ---- the pieces ----


def test_the_search_takes_the_invariant_classes_from_the_catalogue() -> None:
    transition, state = _invariant_classes()
    assert [i.name for i in transition] == ["merge-superset", "reuse-safe", "syscall-effect", "fail-injection"]
    assert set(transition) | set(state) == set(inv.CATALOGUE) and not set(transition) & set(state)


def random_paths(seed: int, count: int) -> Iterator[tuple[str, list[ops.Op], ops.Op]]:
    """(kernel, a clean prefix, one more op) over every generation, from the pruned alphabet."""
    rng = random.Random(seed)
    names = sorted(KERNELS)
    for i in range(count):
        kernel = names[i % len(names)]
        k = boot(kernel, 4)
        path: list[ops.Op] = []
        for _ in range(rng.randrange(1, 6)):
            op = rng.choice(alphabet(k, fingerprint(k)[1], 3, [1, 2]))
            if replay([*path, op], kernel, 4).violations:
                break
            k = _run(kernel, 4, [*path, op])
            path.append(op)
        yield kernel, path, rng.choice(alphabet(k, fingerprint(k)[1], 3, [1, 2]))


def outcome(k: SyscallMixin, op: ops.Op) -> tuple[object, ...]:
    runner = Runner(k, k.window)
    result, found = runner.step(op)
    if result == "UAF":
        return ("UAF", found[0].message)
    return result, [(v.invariant, v.message) for v in found], fingerprint(k)[0]


def test_a_copy_behaves_like_a_replay() -> None:
    for kernel, path, op in random_paths(6, 120):
        base = _run(kernel, 4, path)
        copied = clone(base)
        assert fingerprint(copied) == fingerprint(base)
        assert outcome(copied, op) == outcome(_run(kernel, 4, path), op), (kernel, path, op)
        assert fingerprint(base) == fingerprint(_run(kernel, 4, path))  # the copy shares nothing


def test_every_field_of_the_model_has_a_role() -> None:
    """The copy and the fingerprint come from one plan per class: no field falls through to the
    generic encoder, and only names and the tracer stay out of the fingerprint."""
    from rmapfuzz.model import objects

    classes = [objects.AnonVma, objects.AnonVmaChain, objects.Vma, objects.SwapSlot, objects.Page, objects.Pte]
    for cls in [*classes, objects.Mm, *{type(boot(name)) for name in KERNELS}]:
        roles = dict(field_plan(cls))
        assert Role.OTHER not in roles.values(), (cls, roles)
    assert {n for n, r in field_plan(type(boot(RC3))) if r in (Role.IDENTITY, Role.OBSERVER)} == {
        "trace",
        "next_vma_ident",
        "next_page_ident",
        "next_swap_ident",
    }


@attrs.define(eq=False, repr=False)
class TaggedVma(Vma):
    """A VMA with one more field, as a future commit might add."""

    tag: int = 0


def test_a_new_field_on_a_model_object_is_copied_and_fingerprinted() -> None:
    """A field added to a model object changes the fingerprint and survives a copy, with no list to
    update: two states that differ only in it are told apart."""
    k = _run(RC3, 4, [ops.Mmap(0, 0, 2, "rw"), ops.Write(0, 0)])
    old = k.mms[0].vmas[0]
    new = TaggedVma(**{f.name: getattr(old, f.name) for f in attrs.fields(Vma)})
    for avc in new.anon_vma_chain:
        avc.vma = new
    k.mms[0].vmas[0] = new
    before = fingerprint(k)[0]
    new.tag = 7
    assert fingerprint(k)[0] != before
    copied = clone(k)
    copied_vma = copied.mms[0].vmas[0]
    assert isinstance(copied_vma, TaggedVma) and copied_vma.tag == 7
    assert fingerprint(copied) == fingerprint(k)
    assert copied_vma.anon_vma_chain[0].vma is copied_vma  # sharing kept


def test_the_fingerprint_sees_unreachable_live_pages() -> None:
    k = _run(RC3, 4, [ops.Mmap(0, 0, 1, "rw"), ops.Write(0, 0)])
    before = fingerprint(k)[0]
    k.pages.append(Page(ident=99, mapping=None, index=0, mapcount=1))  # a leak: counted by mapcount
    assert fingerprint(k)[0] != before
    k.pages[-1].freed = True
    assert fingerprint(k)[0] == before


def test_degenerate_mremaps_come_last() -> None:
    k = _run("6.16", 3, [ops.Mmap(0, 0, 1, "rw")])
    letters = alphabet(k, fingerprint(k)[1], 1, [])
    zero = [i for i, op in enumerate(letters) if isinstance(op, ops.Mremap) and op.pages == 0]
    assert zero and zero == list(range(len(letters) - len(zero), len(letters)))


# ---- the same-shape preference ----


def test_the_search_prefers_a_witness_of_the_original_shape() -> None:
    padded = [*A_MMAP[:1], ops.Read(0, 0), *A_MMAP[1:]]
    result = exhaustive(RC3, 4, padded, "merge-superset", budget=120)
    assert result.status == "shorter"
    assert result.witness is not None and len(result.witness) == 4
    assert result.same_shape
    assert step_shape(result.witness[-1]) == "mmap"


def test_a_shorter_witness_of_another_shape_only() -> None:
    # bug B needs five steps with a write; four steps break same-chain with an mprotect (bug A)
    steps = corpus.load("corpus/2.6.34-rc3--same-chain--write.json").steps
    result = exhaustive(RC3, 4, steps, "same-chain", budget=120)
    assert result.status == "shorter"
    assert result.witness is not None and len(result.witness) == 4
    assert not result.same_shape
    assert result.shape_complete
    rep = corpus.load("corpus/2.6.34-rc3--same-chain--write.json")
    out = minimize_reproducer(rep, exhaustive_search=True, budget=120)
    assert out.rep.steps == rep.steps
    assert out.rep.window == 4
    assert out.rep.minimal is not None and out.rep.minimal["status"] == "not proved"
    assert "no 4-step sequence breaks it with a write step" in out.rep.minimal["reason"]


# ---- the window ----


def test_pages_used() -> None:
    assert pages_used([]) == 0
    assert pages_used([ops.Write(0, 3)]) == 4
    assert pages_used([ops.Mmap(0, 1, 2, "r")]) == 3
    assert pages_used([ops.Mremap(0, 5, 0, 1, 1, ("maymove", "fixed"))]) == 6
    assert pages_used([ops.Mremap(0, 0, 1, 6, 1, ("maymove", "fixed")), ops.Fork(0), ops.FailAlloc(1)]) == 7


def test_the_window_shrinks_to_the_pages_the_steps_name() -> None:
    rep = corpus.Reproducer(kernel=RC3, window=8, steps=A_MPROTECT, violation=replay(A_MPROTECT, RC3, 8).violation)
    out = minimize_reproducer(rep, exhaustive_search=True, budget=120)
    assert out.rep.window == 2
    assert out.rep.steps == A_MPROTECT
    assert out.rep.violation == rep.violation
    assert out.rep.minimal is not None
    assert out.rep.minimal["status"] == "proved"
    assert out.rep.minimal["bound"]["window"] == 2
    assert out.rep.minimal["bound"]["window_from"] == 8
    greedy = minimize_reproducer(rep)
    assert greedy.rep.window == 2
    assert greedy.rep.minimal is not None and greedy.rep.minimal["bound"]["window_from"] == 8
    kept = minimize_reproducer(rep, window=8)
    assert kept.rep.window == 8
    assert kept.rep.minimal is not None and "window_from" not in kept.rep.minimal["bound"]
    with pytest.raises(ValueError, match="too small"):
        minimize_reproducer(rep, window=1)


# ---- the fallback over narrower page ranges ----

BUG_A: list[ops.Op] = [
    ops.Mmap(0, 0, 3, "rw"),
    ops.Mprotect(0, 1, 1, "rwx"),
    ops.Write(0, 2),
    ops.Mprotect(0, 2, 1, "rwx"),
]


def test_span_search_covers_every_position_of_the_steps_width() -> None:
    span = span_search(RC3, 4, BUG_A, "merge-superset", 120, "mprotect")
    assert span is not None
    assert span["status"] == "proved", span["reason"]
    assert span["pages"] == 3
    assert span["positions"] == 2
    assert span["length"] == 3
    assert span_search(RC3, 3, BUG_A, "merge-superset", 120, "mprotect") is None  # nothing narrower


def test_span_search_reports_a_shorter_sequence() -> None:
    span = span_search(RC3, 4, [ops.Read(0, 0), *BUG_A], "merge-superset", 120, "mprotect")
    assert span is not None
    assert span["status"] == "not proved"
    assert "4-step sequence over pages 0..2" in span["reason"]


def test_the_fallback_runs_when_the_search_is_out_of_reach() -> None:
    shifted: list[ops.Op] = [
        ops.Mmap(0, 2, 1, ""),
        ops.Mmap(0, 3, 1, "rw"),
        ops.Write(0, 3),
        ops.Mprotect(0, 2, 1, "rw"),
    ]
    rep = corpus.Reproducer(kernel=RC3, window=8, steps=shifted, violation=replay(shifted, RC3, 8).violation)
    out = minimize_reproducer(rep, exhaustive_search=True, budget=0.001)
    assert out.rep.window == 4
    assert out.rep.minimal is not None
    assert out.rep.minimal["status"] == "not proved"
    assert "budget" in out.rep.minimal["reason"]
    span = out.rep.minimal["span"]
    assert span["pages"] == 2
    assert span["positions"] == 3
    assert span["status"] == "not proved"
    assert span["reason"].startswith("pages 0..1: budget")
    unbounded = minimize_reproducer(rep, exhaustive_search=True, budget=120)
    assert unbounded.rep.minimal is not None
    assert unbounded.rep.minimal["status"] == "proved"
    assert "span" not in unbounded.rep.minimal
