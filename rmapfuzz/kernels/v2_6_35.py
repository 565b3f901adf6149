"""2.6.35: Rik van Riel's anon_vma root series (docs/model.md, "Generations").

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
* anon_vma_fork()'s error path unlinks the cloned chain (:mod:`.fix_fork_unlink`, bug C).

Non-exclusive pages still go to the oldest anon_vma of the chain (2.6.34's rule).
"""

from __future__ import annotations

from typing import ClassVar

from rmapfuzz.kernels.fix_fork_unlink import FORK_UNLINK, Linux2634rc3WithForkUnlink
from rmapfuzz.kernels.v2_6_34 import Linux2634
from rmapfuzz.model.core import FeatureChanges
from rmapfuzz.model.objects import AnonVma, AnonVmaChain, Vma


class Linux2635(Linux2634rc3WithForkUnlink, Linux2634):
    name = "2.6.35"
    base = "2.6.34"
    summary = "anon_vma->root; children pin the root (refcount); the fork error path unlinks"
    commits: ClassVar[tuple[tuple[str, str], ...]] = (
        ("5c341ee1dfc8", "mm: track the root (oldest) anon_vma"),
        ("012f18004da3", "mm: always lock the root (oldest) anon_vma"),
        ("76545066c852", "mm: extend KSM refcounts to the anon_vma root"),
        FORK_UNLINK,
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

    # 5c341ee1dfc8 + 76545066c852 in anon_vma_fork()

    def anon_vma_fork_adopt(self, av: AnonVma, pvma: Vma) -> None:
        """anon_vma_fork() (2.6.35): the new anon_vma takes the parent's root and pins it."""
        assert pvma.anon_vma is not None
        av.root = pvma.anon_vma.root
        assert av.root is not None
        self.get_anon_vma(av.root)
