"""The benchmarks (``python -m bench.run`` runs them all; each module also runs alone)."""

from __future__ import annotations

import random
import sys


def fresh_seed(given: int | None) -> int:
    """``given``, or a seed drawn fresh (``random.SystemRandom``) and printed to stderr, so that no
    run is tuned to one seed and any run can be repeated with ``--seed``."""
    if given is not None:
        return given
    seed = random.SystemRandom().randrange(2**32)
    print(f"seed {seed} (drawn fresh; --seed {seed} repeats it)", file=sys.stderr)
    return seed
