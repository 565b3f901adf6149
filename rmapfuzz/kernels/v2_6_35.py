"""2.6.35 and 2.6.36: Rik van Riel's anon_vma root series, then Andrea Arcangeli's root rule for pages.

2.6.35 (kernel-rmap.md §3.6, §1.1):

* 5c341ee1dfc8 "keep track of the root anon_vma": every anon_vma knows the oldest ancestor of its
  fork tree (``root``); a new anon_vma from anon_vma_prepare() is its own root, the one
  anon_vma_fork() makes for a child takes the parent's root.
* 012f18004da3 "always lock the root (oldest) anon_vma": locking only; nothing for this model.
* 76545066c852 "extend KSM refcounts to the anon_vma root": each child anon_vma holds a reference
  on the root, so the root (which owns the lock) is freed after every descendant.  2.6.35 counted
  these in ``external_refcount`` and freed an anon_vma once its list was empty *and* that count
  was zero; the model folds the two into one ``refcount`` the way the later put_anon_vma() does
  (1 while the list is non-empty, plus one per descendant for a root): the list emptying drops
  one reference, and freeing a child drops one on the root.  The result is the same object
  lifetime.
* The anon_vma_fork() error path unlinks the cloned chain (bug C) [commit id unverified; the
  2.6.35 code has it].

Non-exclusive pages still go to the oldest anon_vma of the chain (2.6.34's rule).

2.6.36:

* 288468c334e9 "rmap: always use anon_vma root pointer" (Andrea Arcangeli): a page that is not
  exclusively owned goes to ``vma->anon_vma->root``.
* do_swap_page() tells rmap that a write fault whose reuse_swap_page() succeeded maps the page
  exclusively (do_page_add_anon_rmap() with ``exclusive``), so it goes to the faulting VMA's own
  anon_vma.  Believed to be Rik's "rmap: add exclusive page to private anon_vma on swapin"
  [exact commit and release unverified].  The later ``PageAnon`` early return in
  __page_set_anon_rmap() is not modelled.
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.v2_6_34 import Linux2634
from rmapfuzz.model.core import ENOMEM, Err, FeatureChanges
from rmapfuzz.model.objects import AnonVma, AnonVmaChain, Page, Vma
from rmapfuzz.model.rmap import linear_page_index


class Linux2635(Linux2634):
    name = "2.6.35"
    base = "2.6.34"
    summary = "anon_vma->root; children pin the root (refcount); the fork error path unlinks"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        ("5c341ee1dfc8", "mm: track the root (oldest) anon_vma"),
        ("012f18004da3", "mm: always lock the root (oldest) anon_vma"),
        ("76545066c852", "mm: extend KSM refcounts to the anon_vma root"),
        ("(unverified)", "anon_vma_fork() error path unlinks the cloned chain"),
    )
    bugs: ClassVar[tuple[str, ...]] = ("M", "L")

    feature_changes = FeatureChanges(refcount=True)

    # 76545066c852: the root outlives its descendants

    @staticmethod
    def get_anon_vma(av: AnonVma) -> None:
        """get_anon_vma(): take a reference (children on their root; KSM and migration pins)."""
        av.refcount += 1

    def pin_anon_vma(self, av: AnonVma) -> None:
        """A reference from outside the VMA structure (KSM's stable node, migration, an rmap walker
        that had to sleep): get_anon_vma(), counted in ``pins`` as well so the ``counters``
        invariant can tell it from a lost reference.  No op of the language takes one."""
        av.pins += 1
        self.get_anon_vma(av)

    def unpin_anon_vma(self, av: AnonVma) -> None:
        av.pins -= 1
        self.put_anon_vma(av)

    def put_anon_vma(self, av: AnonVma) -> None:
        """put_anon_vma(): drop a reference; at zero the anon_vma is freed, and a freed non-root
        drops the reference it held on its root."""
        av.refcount -= 1
        if av.refcount > 0 or av.freed:
            return
        root = av.root
        self.anon_vma_free(av)
        if root is not None and root is not av:
            self.trace.cover("put_anon_vma: a freed child drops its root's reference")
            self.put_anon_vma(root)

    def anon_vma_unlink(self, avc: AnonVmaChain) -> None:
        """anon_vma_unlink() (2.6.35): an emptied list drops the list's reference (the root may live on)."""
        av = avc.anon_vma
        av.head.remove(avc)
        if not av.head and not av.freed:
            self.trace.cover("anon_vma_unlink: last link gone, the list's reference dropped")
            self.put_anon_vma(av)

    # 5c341ee1dfc8 + 76545066c852 in anon_vma_fork(), and the unlinking error path

    def anon_vma_fork_adopt(self, av: AnonVma, pvma: Vma) -> None:
        """anon_vma_fork() (2.6.35): the new anon_vma takes the parent's root and pins it."""
        assert pvma.anon_vma is not None
        av.root = pvma.anon_vma.root
        assert av.root is not None
        self.get_anon_vma(av.root)

    def anon_vma_fork_failed(self, vma: Vma) -> Err:
        """The out_error label of anon_vma_fork() (2.6.35): unlink_anon_vmas() on the child VMA."""
        self.trace.cover("anon_vma_fork: the error path unlinks the cloned chain")
        self.unlink_anon_vmas(vma)
        return ENOMEM


class Linux2636(Linux2635):
    name = "2.6.36"
    base = "2.6.35"
    summary = "non-exclusive pages go to the root anon_vma; an exclusive swap-in goes to the VMA's own"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        ("288468c334e9", "rmap: always use anon_vma root pointer"),
        ("(unverified)", "rmap: add exclusive page to private anon_vma on swapin"),
    )
    bugs: ClassVar[tuple[str, ...]] = ("M", "L")

    def page_set_anon_rmap(self, page: Page, vma: Vma, addr: int, exclusive: bool) -> None:
        """__page_set_anon_rmap() (288468c334e9): not exclusive -> vma->anon_vma->root."""
        av = vma.anon_vma
        if not exclusive and av is not None:
            av = av.root
        page.mapping = av
        page.index = linear_page_index(vma, addr)

    def page_add_anon_rmap(self, page: Page, vma: Vma, addr: int, exclusive: bool = False) -> None:
        """do_page_add_anon_rmap(): do_swap_page() passes ``exclusive`` for a write fault it could reuse."""
        page.mapcount += 1
        if page.mapcount == 1:
            self.page_set_anon_rmap(page, vma, addr, exclusive)
