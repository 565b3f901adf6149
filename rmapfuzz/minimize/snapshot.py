"""Copies and canonical fingerprints of model states, both generated from one walk over the model's
attrs fields (docs/minimality.md, "copies" and "state dedup").

Every model object is an attrs class, and so is the kernel itself; :func:`field_plan` classifies
each field once, by its resolved type and its metadata, and both :func:`clone` and
:func:`fingerprint` are generated from that one plan:

* a *scalar* (``int``, ``bool``, ``str``, ``None``) is copied and serialised as it is;
* a *reference* to a model object, a *list* of them or an int-keyed *dict* of them is copied
  object by object (sharing kept) and serialised as the objects' numbers in a canonical traversal;
* an *identity* (``metadata={IDENTITY: True}``: ``ident`` fields, the kernel's name counters) is
  copied but not serialised: two states that differ only in names are the same state;
* the *observer* (the kernel's tracer) is neither: a copy has no tracer until one is attached;
* a *registry* (the kernel's lists of every anon_vma and page ever allocated) is copied whole, but
  serialised last and only by its live members that nothing else reaches (freed objects nobody
  points at are garbage);
* ``vm_flags`` (``metadata={VM_FLAGS: True}``) are serialised with their protection bits renamed
  by first appearance within their class (docs/minimality.md, "prot renaming");
* anything else goes through a generic encoder (and ``copy.deepcopy``).

A field added to any model object or to the kernel is therefore copied and fingerprinted by its
type with no list to update (tests/test_minimize_search.py adds one).
"""

from __future__ import annotations

import copy
import enum
import hashlib
import marshal
import types
import typing
from collections.abc import Callable
from typing import Any

import attrs

from rmapfuzz import ops
from rmapfuzz.model.core import KernelCore
from rmapfuzz.model.objects import IDENTITY, OBSERVER, REGISTRY, VM_FLAGS, VM_PROT_MASK, flags_to_prot
from rmapfuzz.model.trace import NO_TRACER

# Prot values by class: a bijection of PROTS that keeps the class of every value leaves the model's
# behaviour unchanged (docs/minimality.md, "prot renaming").  The first value of a class is the one
# a fresh value is renamed to.
PROT_CLASSES: tuple[tuple[str, ...], ...] = (("",), ("r", "x", "rx"), ("rw", "w", "wx", "rwx"))
_PROT_CLASS: dict[str, int] = {p: c for c, values in enumerate(PROT_CLASSES) for p in values}
_PROT_OF_BITS: tuple[tuple[str, int], ...] = tuple(
    (flags_to_prot(bits), _PROT_CLASS[flags_to_prot(bits)]) for bits in range(VM_PROT_MASK + 1)
)
assert set(_PROT_CLASS) == set(ops.PROTS)


class Role(enum.Enum):
    SCALAR = "scalar"
    FLAGS = "vm_flags"
    REF = "reference"
    REF_LIST = "list of references"
    REF_DICT = "int-keyed dict of references"
    IDENTITY = "identity"
    OBSERVER = "observer"
    REGISTRY = "registry"
    OTHER = "other"


_SCALAR_TYPES = (int, bool, str, type(None))


def _is_model(t: object) -> bool:
    return isinstance(t, type) and attrs.has(t)


def _role(field: attrs.Attribute[Any]) -> Role:
    """A field's role, from its metadata and its resolved type."""
    if field.metadata.get(OBSERVER):
        return Role.OBSERVER
    if field.metadata.get(IDENTITY):
        return Role.IDENTITY
    if field.metadata.get(REGISTRY):
        return Role.REGISTRY
    if field.metadata.get(VM_FLAGS):
        return Role.FLAGS
    t = field.type
    args = typing.get_args(t)
    origin = typing.get_origin(t)
    if t in _SCALAR_TYPES or (origin in (typing.Union, types.UnionType) and all(a in _SCALAR_TYPES for a in args)):
        return Role.SCALAR
    if _is_model(t):
        return Role.REF
    if origin in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        other = args[0] if args[1] is type(None) else args[1]
        if _is_model(other):
            return Role.REF
    if origin is list and len(args) == 1 and _is_model(args[0]):
        return Role.REF_LIST
    if origin is dict and len(args) == 2 and args[0] is int and _is_model(args[1]):
        return Role.REF_DICT
    return Role.OTHER


_PLANS: dict[type, tuple[tuple[str, Role], ...]] = {}


def field_plan(cls: type) -> tuple[tuple[str, Role], ...]:
    """(field name, role) for every attrs field of ``cls``, in declaration order."""
    plan = _PLANS.get(cls)
    if plan is None:
        attrs.resolve_types(cls)
        plan = _PLANS[cls] = tuple((f.name, _role(f)) for f in attrs.fields(cls))
    return plan


# ---- copies ----

_Copier = Callable[[Any, dict[int, Any]], Any]
_COPY = {
    Role.SCALAR: "x.{f}",
    Role.FLAGS: "x.{f}",
    Role.IDENTITY: "x.{f}",
    Role.OBSERVER: "NO_TRACER",
    Role.REF: "(None if x.{f} is None else (memo.get(id(x.{f})) or CP[type(x.{f})](x.{f}, memo)))",
    Role.REF_LIST: "[memo.get(id(y)) or CP[type(y)](y, memo) for y in x.{f}]",
    Role.REGISTRY: "[memo.get(id(y)) or CP[type(y)](y, memo) for y in x.{f}]",
    Role.REF_DICT: "{{a: memo.get(id(y)) or CP[type(y)](y, memo) for a, y in x.{f}.items()}}",
    Role.OTHER: "deepcopy(x.{f}, memo)",
}


class _Copiers(dict[type, _Copier]):
    """type -> compiled copier, built from :func:`field_plan` on first use (attrs classes only)."""

    def __missing__(self, cls: type) -> _Copier:
        if not attrs.has(cls) or hasattr(cls, "__bool__") or hasattr(cls, "__len__"):
            raise TypeError(f"copy: cannot copy {cls.__name__}")  # the copiers test objects for truth
        lines = ["def cp(x, memo):", "    n = new(cls)", "    memo[id(x)] = n"]
        lines += [f"    n.{name} = {_COPY[role].format(f=name)}" for name, role in field_plan(cls)]
        lines.append("    return n")
        scope: dict[str, Any] = {
            "new": object.__new__,
            "cls": cls,
            "CP": self,
            "deepcopy": copy.deepcopy,
            "NO_TRACER": NO_TRACER,
        }
        exec("\n".join(lines), scope)
        fn: _Copier = scope["cp"]
        self[cls] = fn
        return fn


_CP = _Copiers()

K = typing.TypeVar("K", bound=KernelCore)


def clone(k: K) -> K:
    """A deep copy of a model state between steps: every object reachable from the kernel's fields
    copied once (sharing, list and dict orders and names kept), with no tracer.  Behaves as ``k``
    does in every future step."""
    copied: K = _CP[type(k)](k, {})
    return copied


# ---- fingerprints ----

_Ref = Callable[[object], int | None]
_Flags = Callable[[int], tuple[int, int, int]]
_Encoder = Callable[[object], object]
_Serialiser = Callable[[object, _Ref, _Flags, _Encoder], tuple[object, ...]]
_SERIAL = {
    Role.SCALAR: "o.{f}",
    Role.FLAGS: "fl(o.{f})",
    Role.REF: "ref(o.{f})",
    Role.REF_LIST: "tuple(map(ref, o.{f}))",
    Role.REF_DICT: "tuple([(a, ref(b)) for a, b in o.{f}.items()])",  # insertion order: checks iterate it
    Role.OTHER: "enc(o.{f})",
}
_SERIALISERS: dict[type, _Serialiser] = {}


def _serialiser(cls: type) -> _Serialiser:
    """A compiled function serialising an object of attrs class ``cls``: its class name, then every
    field the plan serialises, in declaration order."""
    fn = _SERIALISERS.get(cls)
    if fn is None:
        if not attrs.has(cls):
            raise TypeError(f"fingerprint: cannot serialise {cls.__name__}")
        parts = [repr(cls.__name__)]
        parts += [_SERIAL[role].format(f=name) for name, role in field_plan(cls) if role in _SERIAL]
        scope: dict[str, Any] = {}
        exec(f"def ser(o, ref, fl, enc):\n    return ({', '.join(parts)},)\n", scope)
        fn = _SERIALISERS[cls] = scope["ser"]
    return fn


def fingerprint(k: KernelCore) -> tuple[bytes, frozenset[str]]:
    """A canonical digest of the model state up to renaming of objects and of prot values, and
    the prot values the state holds.

    Every model object reachable from the kernel's fields (then the live members of its registries
    that nothing reaches) is numbered by first appearance in a fixed traversal (fields in
    declaration order, list and dict orders kept) and serialised as its field plan says; prot bits
    are renamed by first appearance within their class.  Equal digests mean isomorphic states,
    which have the same futures and the same verdict for every state invariant (docs/minimality.md,
    "state dedup").
    """
    ids: dict[int, int] = {}
    queue: list[object] = []
    rank: dict[int, int] = {}
    used = [0] * len(PROT_CLASSES)
    present: set[str] = set()

    def ref(value: object) -> int | None:
        if value is None:
            return None
        i = ids.get(id(value))
        if i is None:
            _serialiser(type(value))
            i = ids[id(value)] = len(queue)
            queue.append(value)
        return i

    def fl(value: int) -> tuple[int, int, int]:
        bits = value & VM_PROT_MASK
        r = rank.get(bits)
        prot, c = _PROT_OF_BITS[bits]
        if r is None:
            present.add(prot)
            r = rank[bits] = used[c]
            used[c] += 1
        return value & ~VM_PROT_MASK, c, r

    def enc(value: object) -> object:
        t = type(value)
        if t in _SCALAR_TYPES:
            return value
        if t is list or t is tuple:
            return ("[", *[enc(v) for v in value])  # type: ignore[attr-defined]
        if t is dict:
            return ("{", *[(key, enc(v)) for key, v in value.items()])  # type: ignore[attr-defined]
        return ("@", ref(value))

    out: list[object] = []
    done = 0

    def drain() -> None:
        nonlocal done
        while done < len(queue):
            obj = queue[done]
            done += 1
            out.append(_SERIALISERS[type(obj)](obj, ref, fl, enc))

    plan = field_plan(type(k))
    out.append(_serialiser(type(k))(k, ref, fl, enc))
    drain()
    for name, role in plan:
        if role is Role.REGISTRY:
            out.append((name, *[ref(obj) for obj in getattr(k, name) if not obj.freed and id(obj) not in ids]))
            drain()
    # marshal version 2 writes no back-references: equal structures give equal bytes
    digest = hashlib.blake2b(marshal.dumps(out, 2), digest_size=20).digest()
    return digest, frozenset(present)
