"""Minimising failing sequences: greedy replay-based reduction (:mod:`.greedy`), the exhaustive
search that proves minimality (:mod:`.proof`) over copied and fingerprinted states
(:mod:`.snapshot`), and reproducer files (:mod:`.files`).  See docs/minimality.md."""

from rmapfuzz.minimize.files import Outcome, minimal_record, minimize_reproducer, span_search, write_reproducer
from rmapfuzz.minimize.greedy import (
    Predicate,
    failure_key,
    first_violations,
    minimize,
    minimize_failure,
    minimize_more,
    reproduces,
    same_failure,
    shows_bugs,
    without,
)
from rmapfuzz.minimize.proof import (
    MREMAP_FLAG_SETS,
    SearchResult,
    alphabet,
    exhaustive,
    language_size,
    pages_spanned,
    pages_used,
    processes_used,
)
from rmapfuzz.minimize.snapshot import PROT_CLASSES, clone, field_plan, fingerprint

__all__ = [
    "MREMAP_FLAG_SETS",
    "PROT_CLASSES",
    "Outcome",
    "Predicate",
    "SearchResult",
    "alphabet",
    "clone",
    "exhaustive",
    "failure_key",
    "field_plan",
    "fingerprint",
    "first_violations",
    "language_size",
    "minimal_record",
    "minimize",
    "minimize_failure",
    "minimize_more",
    "minimize_reproducer",
    "pages_spanned",
    "pages_used",
    "processes_used",
    "reproduces",
    "same_failure",
    "shows_bugs",
    "span_search",
    "without",
    "write_reproducer",
]
