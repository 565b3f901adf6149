"""What the running kernel shows about a process's window, read from outside the process.

* **L0** VMA boundaries and protections: the ``PROCMAP_QUERY`` ioctl (6.11+) on
  ``/proc/<pid>/maps``, or the maps text as a fallback;
* **L1** smaps ``VmFlags`` and ``Anonymous`` per VMA (slow: the kernel walks every VMA of the
  process, so it is read once, at the end of a sequence);
* **L2** pagemap per page: present, swapped, exclusively mapped (bit 56) and PFN.  PFNs are only
  compared as classes ("these (pid, page) share a physical page"), with the zero page told apart;
* **L3** the anon_vma graph: per VMA ``vm_pgoff``, ``vm_flags``, ``anon_vma`` and its
  ``anon_vma_chain``, each chained anon_vma's root, parent and counters, read by a BPF
  ``task_vma`` iterator (:mod:`rmapfuzz.oracle.bpf`, offsets from :mod:`rmapfuzz.oracle.btf`).

Everything is in window pages: a VMA is ``(start, end, prot)`` with ``start``/``end`` page numbers
relative to the window base and ``prot`` a subset of ``"rwx"`` (the op language's spelling).
The parsers are pure functions over text/bytes, so they are tested without a live kernel.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

import attrs

from rmapfuzz.oracle import bpf, btf
from rmapfuzz.oracle import syscalls as sc

KVma = tuple[int, int, str]

# ---- L0: maps text ----


@attrs.frozen
class MapsLine:
    start: int  # bytes
    end: int
    perms: str  # "rw-p"
    offset: int
    path: str


def parse_maps_line(line: str) -> MapsLine:
    """``200000000000-200000004000 rw-p 00000000 00:00 0   [path]``"""
    parts = line.split(None, 5)
    if len(parts) < 5 or "-" not in parts[0]:
        raise ValueError(f"not a maps line: {line!r}")
    lo, hi = parts[0].split("-", 1)
    return MapsLine(int(lo, 16), int(hi, 16), parts[1], int(parts[2], 16), parts[5].strip() if len(parts) > 5 else "")


def perms_to_prot(perms: str) -> str:
    """``"rw-p"`` -> ``"rw"``; ``"---p"`` -> ``""``."""
    return "".join(c for c in perms[:3] if c != "-")


class StrayMapping(RuntimeError):
    """Something is mapped at the window's edges or partly outside it: the window is not private."""


def window_vmas(lines: Iterable[MapsLine], base: int, pages: int, page: int = sc.PAGE) -> list[KVma]:
    """The VMAs inside ``[base, base + pages)`` in window pages.  A mapping that overlaps the
    guard pages around the window, or straddles its edge, raises :class:`StrayMapping`."""
    end = base + pages * page
    out: list[KVma] = []
    for m in lines:
        if m.end <= base - page or m.start >= end + page:
            continue
        if m.start < base or m.end > end:
            raise StrayMapping(f"mapping {m.start:#x}-{m.end:#x} {m.perms} {m.path} at the window's edge")
        out.append(((m.start - base) // page, (m.end - base) // page, perms_to_prot(m.perms)))
    return out


def maps_lines_to(text: str, stop: int) -> Iterator[MapsLine]:
    """The maps lines of ``text`` that start below ``stop``: maps lists VMAs by address, so the
    rest is not parsed (the window sits below the program's own ~135 mappings)."""
    for ln in text.splitlines():
        if not ln.strip():
            continue
        m = parse_maps_line(ln)
        if m.start >= stop:
            return
        yield m


def parse_maps(text: str, base: int, pages: int, page: int = sc.PAGE) -> list[KVma]:
    return window_vmas(maps_lines_to(text, base + (pages + 1) * page), base, pages, page)


def read_maps_to(fd: int, stop: int) -> str:
    """The text of an open ``/proc/<pid>/maps`` from its start up to the first complete line
    that starts at or above ``stop`` (or all of it): the kernel formats it a read at a time, so
    what lies past the window is neither formatted nor parsed."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = b""
    while True:
        chunk = os.read(fd, 4096)
        if not chunk:
            return text.decode()
        text += chunk
        complete = text.rfind(b"\n")
        last = text[:complete].rsplit(b"\n", 1)[-1] if complete > 0 else b""
        if last and int(last.split(b"-", 1)[0], 16) >= stop:
            return text.decode()


def window_is_free(base: int, pages: int, maps_text: str | None = None, page: int = sc.PAGE) -> str | None:
    """``None`` if nothing overlaps ``[base - 1 page, end + 1 page)`` in ``maps_text`` (default:
    this process's maps), else what is there."""
    if maps_text is None:
        with open("/proc/self/maps") as fh:
            maps_text = fh.read()
    end = base + pages * page
    for m in maps_lines_to(maps_text, end + page):
        if m.end > base - page:
            return f"{m.start:#x}-{m.end:#x} {m.perms} {m.path}".rstrip()
    return None


# ---- L0: PROCMAP_QUERY ----


class ProcmapQuery(ctypes.Structure):
    """struct procmap_query (include/uapi/linux/fs.h, 6.11+): 104 bytes."""

    _fields_ = [
        ("size", ctypes.c_uint64),
        ("query_flags", ctypes.c_uint64),
        ("query_addr", ctypes.c_uint64),
        ("vma_start", ctypes.c_uint64),
        ("vma_end", ctypes.c_uint64),
        ("vma_flags", ctypes.c_uint64),
        ("vma_page_size", ctypes.c_uint64),
        ("vma_offset", ctypes.c_uint64),
        ("inode", ctypes.c_uint64),
        ("dev_major", ctypes.c_uint32),
        ("dev_minor", ctypes.c_uint32),
        ("vma_name_size", ctypes.c_uint32),
        ("build_id_size", ctypes.c_uint32),
        ("vma_name_addr", ctypes.c_uint64),
        ("build_id_addr", ctypes.c_uint64),
    ]


PROCMAP_QUERY = (3 << 30) | (ctypes.sizeof(ProcmapQuery) << 16) | (ord("f") << 8) | 17
PROCMAP_QUERY_COVERING_OR_NEXT_VMA = 0x10
_Q_READ, _Q_WRITE, _Q_EXEC = 0x1, 0x2, 0x4


def query_flags_to_prot(flags: int) -> str:
    return "".join(c for bit, c in ((_Q_READ, "r"), (_Q_WRITE, "w"), (_Q_EXEC, "x")) if flags & bit)


def procmap_query_vmas(fd: int, base: int, pages: int, page: int = sc.PAGE) -> list[KVma]:
    """Window VMAs through the PROCMAP_QUERY ioctl on an open ``/proc/<pid>/maps``; raises
    OSError if the ioctl fails for another reason than "no more VMAs"."""
    q = ProcmapQuery()
    end = base + pages * page
    addr = base - page
    out: list[KVma] = []
    while addr < end + page:
        ctypes.memset(ctypes.byref(q), 0, ctypes.sizeof(q))
        q.size = ctypes.sizeof(q)
        q.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA
        q.query_addr = addr
        rc = sc.ioctl(fd, PROCMAP_QUERY, ctypes.addressof(q))
        if rc == -errno.ENOENT:
            break
        if rc < 0:
            raise OSError(-rc, f"PROCMAP_QUERY: {os.strerror(-rc)}")
        start, stop = int(q.vma_start), int(q.vma_end)
        if start >= end + page:
            break
        if start < base or stop > end:
            raise StrayMapping(f"mapping {start:#x}-{stop:#x} at the window's edge")
        out.append(((start - base) // page, (stop - base) // page, query_flags_to_prot(int(q.vma_flags))))
        addr = stop
    return out


def procmap_query_works() -> bool:
    """Whether PROCMAP_QUERY answers on this kernel (6.11+)."""
    try:
        fd = os.open("/proc/self/maps", os.O_RDONLY)
    except OSError:
        return False
    try:
        q = ProcmapQuery()
        q.size = ctypes.sizeof(q)
        q.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA
        q.query_addr = 0
        return sc.ioctl(fd, PROCMAP_QUERY, ctypes.addressof(q)) == 0 and q.vma_end > q.vma_start
    finally:
        os.close(fd)


# ---- L1: smaps ----


@attrs.frozen
class SmapsVma:
    start: int  # window pages
    end: int
    prot: str
    flags: frozenset[str]
    anonymous_kb: int


# the VmFlags that decide merging and that the model has (ac, nr, dc, wf) or must not see (hg, nh)
COMPARED_FLAGS = frozenset({"ac", "dc", "wf", "nr", "hg", "nh"})


def parse_smaps(text: str, base: int, pages: int, page: int = sc.PAGE) -> list[SmapsVma]:
    """The window's VMAs from smaps text: bounds, prot, VmFlags and Anonymous (kB)."""
    out: list[SmapsVma] = []
    current: MapsLine | None = None
    flags: frozenset[str] = frozenset()
    anon = 0

    def flush() -> None:
        if current is None:
            return
        for start, end, prot in window_vmas([current], base, pages, page):
            out.append(SmapsVma(start, end, prot, flags, anon))

    for ln in text.splitlines():
        if not ln.strip():
            continue
        head = ln.split(None, 1)[0]
        if "-" in head and not head.endswith(":"):
            flush()
            current, flags, anon = parse_maps_line(ln), frozenset(), 0
        elif head == "VmFlags:":
            flags = frozenset(ln.split()[1:])
        elif head == "Anonymous:":
            anon = int(ln.split()[1])
    flush()
    return out


# ---- L2: pagemap ----

PM_PRESENT = 1 << 63
PM_SWAP = 1 << 62
PM_FILE = 1 << 61
PM_EXCLUSIVE = 1 << 56
PM_PFN_MASK = (1 << 55) - 1
KPF_ZERO_PAGE = 1 << 24


@attrs.frozen
class PagemapEntry:
    present: bool
    swapped: bool
    exclusive: bool
    pfn: int  # 0 without CAP_SYS_ADMIN

    @classmethod
    def decode(cls, raw: int) -> PagemapEntry:
        return cls(bool(raw & PM_PRESENT), bool(raw & PM_SWAP), bool(raw & PM_EXCLUSIVE), raw & PM_PFN_MASK)


def decode_pagemap(data: bytes) -> list[PagemapEntry]:
    """Little-endian 64-bit pagemap entries, one per page."""
    return [PagemapEntry.decode(v) for (v,) in struct.iter_unpack("<Q", data)]


def read_pagemap(fd: int, base: int, pages: int, page: int = sc.PAGE) -> list[PagemapEntry]:
    data = os.pread(fd, 8 * pages, (base // page) * 8)
    return decode_pagemap(data)


class SwapEntry(NamedTuple):
    """A swap pte, by what identifies its slot: the kernel's (type, offset) from pagemap, or the
    model's SwapSlot object."""

    slot: object


def page_state(entry: PagemapEntry, zero_pfns: frozenset[int] | set[int]) -> str | int | SwapEntry:
    """``"-"`` not present, a :class:`SwapEntry` (type and offset), ``"0"`` the zero page, else the PFN."""
    if entry.swapped:
        return SwapEntry(entry.pfn)  # bits 0-4 the swap type, 5-54 the offset
    if not entry.present:
        return "-"
    if entry.pfn in zero_pfns:
        return "0"
    return entry.pfn


Cell = tuple[int, int]  # (pid, page)


def canonical_classes(states: dict[Cell, str | int | object]) -> dict[Cell, str]:
    """Rename page identities to classes by first appearance in (pid, page) order: ``"-"``,
    ``"S"`` and ``"0"`` stay as they are, swap entries become ``"s0"``, ``"s1"``, ... and pages
    ``"p0"``, ``"p1"``, ...  Two systems agree on which cells share a physical page (or a swap
    slot) exactly when their canonical maps are equal."""
    names: dict[object, str] = {}
    counts = {"p": 0, "s": 0}
    out: dict[Cell, str] = {}
    for cell in sorted(states):
        value = states[cell]
        if isinstance(value, str) and value in ("-", "S", "0"):
            out[cell] = value
            continue
        kind = "s" if isinstance(value, SwapEntry) else "p"
        key = (kind, value)
        if key not in names:
            names[key] = f"{kind}{counts[kind]}"
            counts[kind] += 1
        out[cell] = names[key]
    return out


def zero_page_pfn() -> int | None:
    """The zero page's PFN, found by read-faulting a scratch page of this process (outside any
    window) and reading its pagemap entry; None if PFNs are hidden (no CAP_SYS_ADMIN)."""
    try:
        addr = sc.mmap_anywhere(sc.PAGE, sc.PROT_READ)
    except OSError:
        return None
    try:
        sc.load(addr)
        with open("/proc/self/pagemap", "rb") as fh:
            entry = PagemapEntry.decode(struct.unpack("<Q", os.pread(fh.fileno(), 8, (addr // sc.PAGE) * 8))[0])
        return entry.pfn if entry.present and entry.pfn else None
    except OSError:
        return None
    finally:
        sc.munmap(addr, sc.PAGE)


def pfns_visible() -> bool:
    """Whether pagemap shows PFNs here: a written scratch page must have a non-zero PFN."""
    try:
        addr = sc.mmap_anywhere(sc.PAGE, sc.PROT_READ | sc.PROT_WRITE)
    except OSError:
        return False
    try:
        sc.store(addr)
        with open("/proc/self/pagemap", "rb") as fh:
            entry = PagemapEntry.decode(struct.unpack("<Q", os.pread(fh.fileno(), 8, (addr // sc.PAGE) * 8))[0])
        return entry.present and entry.pfn != 0
    except OSError:
        return False
    finally:
        sc.munmap(addr, sc.PAGE)


def is_zero_pfn_by_flags(pfn: int) -> bool | None:
    """/proc/kpageflags' ZERO_PAGE bit for ``pfn``; None if kpageflags cannot be read."""
    try:
        with open("/proc/kpageflags", "rb") as fh:
            data = os.pread(fh.fileno(), 8, pfn * 8)
    except OSError:
        return None
    if len(data) != 8:
        return None
    return bool(struct.unpack("<Q", data)[0] & KPF_ZERO_PAGE)


# ---- one worker's proc files ----


class ProcView:
    """The controller's open handles on one worker's ``/proc/<pid>`` files."""

    def __init__(self, pid: int, use_query: bool) -> None:
        self.pid = pid
        self.use_query = use_query
        self.maps_fd = os.open(f"/proc/{pid}/maps", os.O_RDONLY)
        self.pagemap_fd: int | None = None

    def vmas(self, base: int, pages: int) -> list[KVma]:
        if self.use_query:
            return procmap_query_vmas(self.maps_fd, base, pages)
        return parse_maps(read_maps_to(self.maps_fd, base + (pages + 1) * sc.PAGE), base, pages)

    def pagemap(self, base: int, pages: int) -> list[PagemapEntry]:
        if self.pagemap_fd is None:
            self.pagemap_fd = os.open(f"/proc/{self.pid}/pagemap", os.O_RDONLY)
        return read_pagemap(self.pagemap_fd, base, pages)

    def smaps(self, base: int, pages: int) -> list[SmapsVma]:
        with open(f"/proc/{self.pid}/smaps") as fh:
            return parse_smaps(fh.read(), base, pages)

    def close(self) -> None:
        for fd in (self.maps_fd, self.pagemap_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.pagemap_fd = None


# ---- L3: the anon_vma graph ----


@functools.cache
def graph_unavailable() -> str | None:
    """Why L3 cannot run here (``None`` if it can): the kernel's BTF must describe the structs,
    and a test program must load, attach and run (CAP_BPF + CAP_PERFMON).  Probed once per
    process."""
    if not os.path.exists(btf.VMLINUX):
        return f"no {btf.VMLINUX} (kernel built without CONFIG_DEBUG_INFO_BTF)"
    try:
        layout = btf.kernel_layout()
    except OSError as exc:
        return f"cannot read {btf.VMLINUX}: {exc.strerror}"
    except btf.BtfError as exc:
        return str(exc)
    try:
        with bpf.VmaIterator(layout, 0, sc.PAGE, max_chain=1) as it:  # a window nothing maps
            it.snapshot([os.getpid()])
    except bpf.BpfError as exc:
        return str(exc)
    except bpf.DecodeError as exc:
        return f"the test iterator's output does not decode: {exc}"
    return None


class GraphObserver:
    """The L3 iterator for one window: snapshots of the workers' window VMAs, by op-language pid."""

    def __init__(self, start: int, pages: int, max_chain: int = bpf.DEFAULT_MAX_CHAIN, page: int = sc.PAGE) -> None:
        self.start = start
        self.page = page
        self.max_chain = max_chain
        self.iterator = bpf.VmaIterator(btf.kernel_layout(), start, start + pages * page, max_chain)

    def snapshot(self, pids: Mapping[int, int]) -> dict[int, list[bpf.VmaRecord]]:
        """``pids`` maps op-language pids to OS pids; each process's window VMAs, by address.
        The processes must be idle (between steps)."""
        out: dict[int, list[bpf.VmaRecord]] = {}
        for pid, os_pid in pids.items():
            out[pid] = [r for r in self.iterator.snapshot([os_pid]) if r.tgid == os_pid]
        return out

    def forget(self, os_pids: Iterable[int]) -> None:
        """Drop the per-process links of workers that are gone (their pids may be reused)."""
        for os_pid in os_pids:
            self.iterator.forget(os_pid)

    def close(self) -> None:
        self.iterator.close()
