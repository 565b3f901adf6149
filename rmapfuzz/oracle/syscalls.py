"""ctypes bindings for the system calls the executor makes (x86_64 / generic Linux numbers).

Every call returns ``0`` on success or ``-errno``; nothing raises.  ``mremap`` goes through the
raw ``syscall()`` (glibc's wrapper is variadic).  Faults are one-byte loads and stores through
``ctypes.c_ubyte.from_address``: a real user access, so one without permission kills the caller
with SIGSEGV (the executor never issues one that its observation says would fault).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0, 1, 2, 4
MAP_PRIVATE = 0x02
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_NORESERVE = 0x4000
MMAP_BITS = {"noreserve": MAP_NORESERVE}
MAP_FIXED_NOREPLACE = 0x100000
MAP_FAILED = ctypes.c_void_p(-1).value

MREMAP_MAYMOVE, MREMAP_FIXED, MREMAP_DONTUNMAP = 1, 2, 4
MREMAP_BITS = {"maymove": MREMAP_MAYMOVE, "fixed": MREMAP_FIXED, "dontunmap": MREMAP_DONTUNMAP}

MADV = {"dontneed": 4, "dontfork": 10, "dofork": 11, "wipeonfork": 18, "keeponfork": 19, "pageout": 21}

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_PDEATHSIG = 1
PR_SET_THP_DISABLE = 41

# syscall numbers of the one call made through syscall(): mremap
_SYS_MREMAP = {"x86_64": 25, "aarch64": 216, "riscv64": 216, "i686": 163, "i386": 163}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
for _name in ("mprotect", "madvise"):
    getattr(_libc, _name).argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    getattr(_libc, _name).restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.munmap.restype = ctypes.c_int
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.ioctl.restype = ctypes.c_int
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


def prot_bits(prot: str) -> int:
    """Op-language prot (``"rw"``) to PROT_* bits."""
    return (PROT_READ if "r" in prot else 0) | (PROT_WRITE if "w" in prot else 0) | (PROT_EXEC if "x" in prot else 0)


def _ret(value: int) -> int:
    return -ctypes.get_errno() if value == -1 else 0


def mmap_fixed(addr: int, length: int, prot: int, noreplace: bool = False, extra: int = 0) -> int:
    """A private anonymous mapping at exactly ``addr`` (MAP_FIXED, or MAP_FIXED_NOREPLACE), with the
    ``extra`` flags (MAP_NORESERVE)."""
    flags = MAP_PRIVATE | MAP_ANONYMOUS | (MAP_FIXED_NOREPLACE if noreplace else MAP_FIXED) | extra
    got = _libc.mmap(ctypes.c_void_p(addr), length, prot, flags, -1, 0)
    if got is None or got == MAP_FAILED:
        return -ctypes.get_errno()
    if got != addr:  # an old kernel that ignores FIXED_NOREPLACE: never keep a stray mapping
        _libc.munmap(ctypes.c_void_p(got), length)
        return -errno.EEXIST
    return 0


def noreserve_honoured() -> bool:
    """Whether this kernel honours MAP_NORESERVE: unless vm.overcommit_memory is 2 ("never"), the
    mapping gets VM_NORESERVE and is not charged, as the model's kernels do."""
    try:
        return Path("/proc/sys/vm/overcommit_memory").read_text().strip() != "2"
    except OSError:
        return True


def mmap_anywhere(length: int, prot: int) -> int:
    """A private anonymous mapping where the kernel likes (the controller's scratch memory)."""
    got = _libc.mmap(None, length, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if got is None or got == MAP_FAILED:
        raise OSError(ctypes.get_errno(), "mmap failed")
    return int(got)


def munmap(addr: int, length: int) -> int:
    return _ret(_libc.munmap(ctypes.c_void_p(addr), length))


def mprotect(addr: int, length: int, prot: int) -> int:
    return _ret(_libc.mprotect(ctypes.c_void_p(addr), length, prot))


def madvise(addr: int, length: int, advice: int) -> int:
    return _ret(_libc.madvise(ctypes.c_void_p(addr), length, advice))


def mremap(addr: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
    """The raw mremap syscall; returns 0 (whatever address it returned) or -errno."""
    nr = _SYS_MREMAP.get(platform.machine())
    if nr is None:
        return -errno.ENOSYS
    got = _libc.syscall(
        ctypes.c_long(nr),
        ctypes.c_ulong(addr),
        ctypes.c_ulong(old_len),
        ctypes.c_ulong(new_len),
        ctypes.c_ulong(flags),
        ctypes.c_ulong(new_addr),
    )
    return -ctypes.get_errno() if got == -1 else 0


def prctl(option: int, arg2: int = 0) -> int:
    return _ret(_libc.prctl(option, arg2, 0, 0, 0))


def ioctl(fd: int, request: int, arg: ctypes.c_void_p | int) -> int:
    return _ret(_libc.ioctl(fd, request, arg))


def load(addr: int) -> None:
    """A one-byte user load (a read fault if the page is not present)."""
    ctypes.c_ubyte.from_address(addr).value  # noqa: B018 - the access is the point


def store(addr: int) -> None:
    """A one-byte user store (a write fault if the page is not present or not writable yet)."""
    ctypes.c_ubyte.from_address(addr).value = 1


def errno_name(code: int) -> str:
    """``-22`` -> ``"EINVAL"``; 0 -> ``"ok"``."""
    if code == 0:
        return "ok"
    return errno.errorcode.get(-code, f"E{-code}")
