"""``python -m rmapfuzz`` and the ``rmapfuzz`` script: the command line (:mod:`rmapfuzz.cli`).

Ctrl-C is one line and exit 130 from the first instant: the command line's imports (Hypothesis,
rich, the models) take a noticeable fraction of a second, and an interrupt during them is caught
here, where :func:`rmapfuzz.cli.main` cannot yet catch it.
"""

from __future__ import annotations

import sys


def run() -> None:
    try:
        from rmapfuzz.cli import main

        code = main()
    except KeyboardInterrupt:
        sys.stderr.write("rmapfuzz: error: interrupted\n")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    run()
