"""Replace one exact text in a kernel source file, failing unless it occurs exactly once.

Usage: python3 replace.py FILE OLD NEW   (the lab's kernel edits are written with it, so that a
source that moved on fails loudly instead of building a kernel without the edit)."""

import sys
from pathlib import Path

path, old, new = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
text = path.read_text()
count = text.count(old)
if count != 1:
    sys.exit(f"replace.py: {path}: expected the text once, found it {count} times: {old!r}")
path.write_text(text.replace(old, new))
