"""rmapfuzz: a stateful property-based fuzzer for dangling anon_vma bugs in models of Linux rmap."""

__version__ = "0.1.0"
