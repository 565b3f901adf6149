"""``python -m rmapfuzz``: the command line (:mod:`rmapfuzz.cli`)."""

from __future__ import annotations

import sys

from rmapfuzz.cli import main

sys.exit(main())
