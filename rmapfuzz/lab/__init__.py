"""The real-kernel lab: real kernels under QEMU (TCG), a static /init in an initramfs, exported C
reproducers run there, and the console read for a KASAN report or an oops (docs/lab.md).

* :mod:`rmapfuzz.lab.initramfs` -- a newc cpio archive (the kernel's initramfs format) from files
* :mod:`rmapfuzz.lab.report` -- what the console says: the guest's markers, a kernel crash report
* :mod:`rmapfuzz.lab.images` -- the kernels the lab boots, where they come from, where they are cached
* :mod:`rmapfuzz.lab.qemu` -- boot one, collect its console
* :mod:`rmapfuzz.lab.repro` -- compile a reproducer, boot it, say crashed or clean
"""
