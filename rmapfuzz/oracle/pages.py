"""L4: the page side of the rmap, read from the kernel's ``struct folio`` of each present page.

pagemap gives each present page's PFN (L2).  On x86-64 (``CONFIG_SPARSEMEM_VMEMMAP``) the
``struct page`` of PFN ``p`` is at ``vmemmap_base + p * sizeof(struct page)``, and for an order-0
anonymous page that is also its folio, whose ``mapping`` holds the anon_vma the page belongs to
(with ``FOLIO_MAPPING_ANON``, bit 0, set) and whose ``index`` is its linear page index
(``vma->vm_pgoff`` plus the page's offset in the VMA, when the page was mapped there).

Two BPF facts make this readable from user space:

* a ``BPF_PROG_TYPE_SYSCALL`` program runs on demand through ``BPF_PROG_TEST_RUN`` with a
  context buffer that the kernel copies in and, after the run, back out; the program reads kernel
  memory with ``bpf_probe_read_kernel`` (the tracing helpers are open to it, CAP_BPF and
  CAP_PERFMON);
* ``vmemmap_base`` is randomised (``CONFIG_RANDOMIZE_MEMORY``) but PUD-aligned (1 GiB: the KASLR
  code rounds every region's base to ``PUD_SIZE``), and this kernel has no data symbols in
  kallsyms.  It is found from one ``struct page`` pointer the program can reach, the first page
  of the running task's vmalloc'ed stack (``current->stack_vm_area->pages[0]``), rounded down to
  1 GiB -- valid while ``max_pfn * sizeof(struct page)`` is below 1 GiB (16 M pages, 64 GiB of
  memory).  The result is checked on a page whose anon_vma index is known before it is trusted:
  a freshly written anonymous scratch page of the controller must read back as anonymous with
  ``index == address >> PAGE_SHIFT``.

The program (:func:`reader_program`) takes ``n`` struct page addresses in the context (0 = skip)
and writes back, for each, ``mapping`` and ``index``.  The loads are unrolled (a syscall
program's context offsets must be constants).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import mmap
import os
import struct
from collections.abc import Sequence
from typing import NamedTuple

import attrs

from rmapfuzz.oracle import btf
from rmapfuzz.oracle import syscalls as sc
from rmapfuzz.oracle.bpf import (
    BPF_ADD,
    BPF_ALU64_IMM,
    BPF_CALL_HELPER,
    BPF_DW,
    BPF_EXIT_INSN,
    BPF_JEQ,
    BPF_LDX_MEM,
    BPF_MOV64_IMM,
    BPF_MOV64_REG,
    BPF_STX_MEM,
    R0,
    R1,
    R2,
    R3,
    R6,
    R7,
    R10,
    Asm,
    BpfError,
    _sys_bpf,
    load_program,
)

BPF_PROG_TEST_RUN = 10
BPF_F_SLEEPABLE = 1 << 4
PUD_SIZE = 1 << 30
MAPPING_ANON = 0x1  # FOLIO_MAPPING_ANON (PAGE_MAPPING_ANON before 6.16)
MAPPING_FLAGS = 0x3  # the low bits of ->mapping that are flags (anon, KSM / movable)
BATCH = 256  # struct page addresses per program run
_SCRATCH = -8  # one stack word the probe reads land in


class PageLayoutError(RuntimeError):
    """L4 cannot run here: a missing BTF fact, the program refused, or vmemmap_base not found."""


@attrs.frozen
class PageLayout:
    page_size: int  # sizeof(struct page)
    mapping: btf.Field  # folio.mapping
    index: btf.Field  # folio.index
    task_stack_vm_area: btf.Field
    vm_struct_pages: btf.Field
    prog_type_syscall: int
    helper_probe_read_kernel: int
    helper_get_current_task: int


def layout_from(b: btf.Btf) -> PageLayout:
    return PageLayout(
        page_size=b.struct_size("page"),
        mapping=b.field("folio", "mapping"),
        index=b.field("folio", "index"),
        task_stack_vm_area=b.field("task_struct", "stack_vm_area"),
        vm_struct_pages=b.field("vm_struct", "pages"),
        prog_type_syscall=b.enum_value_or("bpf_prog_type", "BPF_PROG_TYPE_SYSCALL", 31),
        helper_probe_read_kernel=b.enum_value_or("bpf_func_id", "BPF_FUNC_probe_read_kernel", 113),
        helper_get_current_task=b.enum_value_or("bpf_func_id", "BPF_FUNC_get_current_task", 35),
    )


@functools.cache
def kernel_page_layout(path: str = btf.VMLINUX) -> PageLayout:
    with open(path, "rb") as fh:
        return layout_from(btf.Btf(fh.read()))


def _read(a: Asm, helper: int, addr_reg: int, off: int) -> None:
    """``r0 = bpf_probe_read_kernel(r10 + _SCRATCH, 8, addr_reg + off)``, the word left in
    ``r1`` (0 if the read failed: the scratch word is cleared first)."""
    a.emit(BPF_MOV64_IMM(R1, 0), BPF_STX_MEM(BPF_DW, R10, R1, _SCRATCH))
    a.emit(BPF_MOV64_REG(R3, addr_reg))
    if off:
        a.emit(BPF_ALU64_IMM(BPF_ADD, R3, off))
    a.emit(BPF_MOV64_REG(R1, R10), BPF_ALU64_IMM(BPF_ADD, R1, _SCRATCH), BPF_MOV64_IMM(R2, 8))
    a.emit(BPF_CALL_HELPER(helper), BPF_LDX_MEM(BPF_DW, R1, R10, _SCRATCH))


def reader_program(lay: PageLayout, n: int = BATCH) -> bytes:
    """The syscall program.  Context: ``n`` words of struct page addresses, then ``2n`` words the
    program fills with each page's ``mapping`` and ``index``, then one word for the first page
    of the current task's stack (written on every run, for finding ``vmemmap_base``).

    Registers: r6 the context, r7 the page being read.
    """
    if lay.mapping.size != 8 or lay.index.size != 8:
        raise PageLayoutError("folio.mapping / folio.index are not 8-byte words")
    rd = lay.helper_probe_read_kernel
    a = Asm()
    a.emit(BPF_MOV64_REG(R6, R1))
    for i in range(n):
        skip = f"skip{i}"
        a.emit(BPF_LDX_MEM(BPF_DW, R7, R6, 8 * i))
        a.jump(BPF_JEQ, R7, skip)
        _read(a, rd, R7, lay.mapping.offset)
        a.emit(BPF_STX_MEM(BPF_DW, R6, R1, 8 * (n + 2 * i)))
        _read(a, rd, R7, lay.index.offset)
        a.emit(BPF_STX_MEM(BPF_DW, R6, R1, 8 * (n + 2 * i + 1)))
        a.label(skip)
    # current->stack_vm_area->pages[0]
    a.emit(BPF_CALL_HELPER(lay.helper_get_current_task), BPF_MOV64_REG(R7, R0))
    _read(a, rd, R7, lay.task_stack_vm_area.offset)
    a.emit(BPF_MOV64_REG(R7, R1))
    a.jump(BPF_JEQ, R7, "out")
    _read(a, rd, R7, lay.vm_struct_pages.offset)
    a.emit(BPF_MOV64_REG(R7, R1))
    a.jump(BPF_JEQ, R7, "out")
    _read(a, rd, R7, 0)
    a.emit(BPF_STX_MEM(BPF_DW, R6, R1, 8 * (3 * n)))
    a.label("out")
    a.emit(BPF_MOV64_IMM(R0, 0), BPF_EXIT_INSN())
    return a.assemble()


def test_run(prog_fd: int, ctx: ctypes.Array[ctypes.c_char]) -> None:
    """BPF_PROG_TEST_RUN with ``ctx`` as context in and out (a syscall program's context is
    copied back after the run)."""
    attr = ctypes.create_string_buffer(80)
    struct.pack_into("<I", attr, 0, prog_fd)
    struct.pack_into("<I", attr, 40, len(ctx))  # ctx_size_in
    struct.pack_into("<Q", attr, 48, ctypes.addressof(ctx))  # ctx_in
    rc = _sys_bpf(BPF_PROG_TEST_RUN, attr)
    if rc < 0:
        raise BpfError(-rc, f"BPF_PROG_TEST_RUN: {os.strerror(-rc)}")


class FolioInfo(NamedTuple):
    """A page's ``mapping`` word split: the anon_vma (0 if none) and whether it is anonymous."""

    anon_vma: int
    anon: bool
    page_index: int


class PageReader:
    """The loaded program, and ``vmemmap_base`` once found: :meth:`read` gives each PFN's folio."""

    def __init__(self, lay: PageLayout | None = None, batch: int = BATCH) -> None:
        self.layout = lay or kernel_page_layout()
        self.batch = batch
        self.code = reader_program(self.layout, batch)
        self.prog_fd = -1
        self.prog_fd = self._load()
        self.vmemmap_base = self._find_vmemmap()

    def _load(self) -> int:
        lay = self.layout
        return load_program(self.code, lay.prog_type_syscall, 0, 0, name="rmapfuzz_l4", prog_flags=BPF_F_SLEEPABLE)

    def _run(self, addrs: Sequence[int]) -> tuple[list[int], int]:
        n = self.batch
        ctx = ctypes.create_string_buffer(8 * (3 * n + 1))
        struct.pack_into(f"<{len(addrs)}Q", ctx, 0, *addrs)
        test_run(self.prog_fd, ctx)
        words = list(struct.unpack_from(f"<{3 * n + 1}Q", ctx, 0))
        return words[n : 3 * n], words[3 * n]

    def _find_vmemmap(self) -> int:
        _, stack_page = self._run([])
        if not stack_page:
            raise PageLayoutError("no struct page found behind the task's stack (CONFIG_VMAP_STACK off?)")
        base = stack_page & ~(PUD_SIZE - 1)
        # check it on a page whose folio is known: a written anonymous scratch page
        buf = mmap.mmap(-1, sc.PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            buf[0] = 1
            addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
            with open("/proc/self/pagemap", "rb") as fh:
                (raw,) = struct.unpack("<Q", os.pread(fh.fileno(), 8, (addr // sc.PAGE) * 8))
            pfn = raw & ((1 << 55) - 1)
            if not raw >> 63 or not pfn:
                raise PageLayoutError("pagemap shows no PFN for a written page (needs CAP_SYS_ADMIN)")
            out, _ = self._run([base + pfn * self.layout.page_size])
            info = _split(out[0], out[1])
        finally:
            buf.close()
        if not info.anon or info.page_index != addr // sc.PAGE:
            raise PageLayoutError(
                f"vmemmap_base {base:#x} (from the stack page {stack_page:#x}) does not check out: a written "
                f"anonymous page read back mapping {out[0]:#x} index {out[1]:#x}"
            )
        return base

    def read(self, pfns: Sequence[int]) -> dict[int, FolioInfo]:
        """Each PFN's folio (the pages must stay put meanwhile: the workers are idle)."""
        out: dict[int, FolioInfo] = {}
        unique = sorted(set(pfns))
        size = self.layout.page_size
        for i in range(0, len(unique), self.batch):
            chunk = unique[i : i + self.batch]
            words, _ = self._run([self.vmemmap_base + p * size for p in chunk])
            for j, pfn in enumerate(chunk):
                out[pfn] = _split(words[2 * j], words[2 * j + 1])
        return out

    def close(self) -> None:
        if self.prog_fd >= 0:
            os.close(self.prog_fd)
            self.prog_fd = -1

    def __enter__(self) -> PageReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _split(mapping: int, index: int) -> FolioInfo:
    anon = bool(mapping & MAPPING_ANON)
    return FolioInfo(mapping & ~MAPPING_FLAGS if anon else 0, anon, index)


@functools.cache
def pages_unavailable() -> str | None:
    """Why L4 cannot run here (``None`` if it can); probed once per process."""
    if not os.path.exists(btf.VMLINUX):
        return f"no {btf.VMLINUX} (kernel built without CONFIG_DEBUG_INFO_BTF)"
    try:
        lay = kernel_page_layout()
    except OSError as exc:
        return f"cannot read {btf.VMLINUX}: {exc.strerror}"
    except btf.BtfError as exc:
        return str(exc)
    try:
        with PageReader(lay, batch=1):
            pass
    except BpfError as exc:
        if exc.errno == errno.EINVAL:
            return f"{exc} (BPF_PROG_TYPE_SYSCALL needs 5.14+)"
        return str(exc)
    except (PageLayoutError, OSError) as exc:
        return str(exc)
    return None
