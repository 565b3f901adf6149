"""The rmap model: one module per kernel area, stacked into a kernel generation.

``core`` (state, allocators) <- ``rmap`` (mm/rmap.c) <- ``memory`` (mm/memory.c, vmscan) <-
``mmap`` (mm/mmap.c) <- ``mprotect`` <- ``madvise`` <- ``mremap`` <- ``fork`` (kernel/fork.c) <-
``syscalls`` (op dispatch).  The stack as written models 2.6.34-rc3; later generations are
overlays in :mod:`rmapfuzz.kernels`.
"""
