"""2.6.34-rc3: Rik van Riel's anon_vma_chain as it stood when Borislav's crashes were chased.

The model modules as written are this generation; this class only names it.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.model.syscalls import SyscallMixin


class Linux2634rc3(SyscallMixin):
    name = "2.6.34-rc3"
    summary = "anon_vma_chain as merged for 2.6.34-rc1, with both April 2010 merge bugs"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        ("5beb49305251", "mm: change anon_vma linking to fix multi-process server scalability issue"),
        ("c44b674323f4", "rmap: move exclusively owned pages to own anon_vma in do_wp_page()"),
    )
    bugs: ClassVar[tuple[str, ...]] = ("A", "B", "S", "C", "M", "L")
