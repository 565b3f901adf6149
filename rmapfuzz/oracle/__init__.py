"""The live-kernel oracle: run op-language sequences on the running Linux kernel and on the
``current`` model, and report the first place they disagree.

(This package is ``rmapfuzz.oracle`` rather than ``rmapfuzz.live``: ``rmapfuzz/live.py`` already
holds the fuzz campaign's rich view, and a package of the same name would shadow it.)

* :mod:`.syscalls` -- ctypes bindings (mmap, mprotect, munmap, mremap, madvise, prctl, ioctl);
* :mod:`.executor` -- the controller and its per-sequence tree of forked worker processes;
* :mod:`.observe` -- what the kernel shows: maps / PROCMAP_QUERY (L0), smaps (L1), pagemap (L2),
  the anon_vma graph (L3, through :mod:`.bpf`);
* :mod:`.btf` -- struct layouts of the running kernel from ``/sys/kernel/btf/vmlinux``;
* :mod:`.bpf` -- a small eBPF assembler and the ``task_vma`` iterator that dumps VMAs, their
  anon_vma chains and each anon_vma's root, parent and counters;
* :mod:`.compare` -- the model's predictions at the same levels, and the comparison;
* :mod:`.oracle` -- replaying reproducers on both, and the differential fuzz campaign.

See ``docs/live-oracle.md``.
"""
