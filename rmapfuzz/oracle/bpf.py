"""L3: the kernel's own anon_vma graph, read with a hand-assembled BPF ``task_vma`` iterator.

No clang, libbpf or bpftool: a tiny assembler (:class:`Asm`, with encoders named after the
kernel's instruction macros), one program (:func:`iter_program`), and a loader that talks to
the ``bpf()`` system call through ctypes (:class:`VmaIterator`).  Struct offsets, the iterator's
BTF id and the helper numbers come from the running kernel's BTF (:mod:`rmapfuzz.oracle.btf`).

The program is a ``BPF_PROG_TYPE_TRACING`` program of attach type ``BPF_TRACE_ITER`` on the
``task_vma`` target.  For each VMA whose ``vm_start`` lies in the window it writes, with
``bpf_seq_write``, one VMA record and then one record per ``anon_vma_chain`` entry (the
``same_vma`` list walked from the head, at most ``max_chain`` entries, unrolled), each with the
chained anon_vma's ``root``, ``parent``, ``refcount``, ``num_children`` and ``num_active_vmas``,
and an end record saying whether the walk reached the list head again.  Every kernel memory
read goes through ``bpf_probe_read_kernel``; the records are built on the BPF stack.  Loading
needs CAP_BPF and CAP_PERFMON (the records carry kernel pointers).

Records are little-endian u64 words:

* VMA: ``MAGIC_VMA, tgid, vma, vm_start, vm_end, vm_pgoff, vm_flags, anon_vma``
* AVC: ``MAGIC_AVC, avc, anon_vma, root, parent, refcount, num_children, num_active_vmas``
* END: ``MAGIC_END, status`` (``0`` complete, ``1`` truncated at ``max_chain``, ``2`` a NULL link)
* DONE: ``MAGIC_DONE``, once, from the program's last call (no VMA): the reader stops there
  instead of reading again for EOF

:func:`decode` turns the byte stream back into :class:`VmaRecord` objects.

Snapshots must be taken while the observed processes are idle (the oracle's workers are, between
steps): the iterator takes each mm's mmap lock for reading, and a graph read half-way through an
operation would not be one the kernel ever had.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct
from collections.abc import Iterable
from typing import NamedTuple

from rmapfuzz.oracle.btf import KernelLayout

# ---- instruction encoding (include/uapi/linux/bpf.h, bpf_common.h) ----

# classes
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = (
    0x00,
    0x01,
    0x02,
    0x03,
    0x04,
    0x05,
    0x06,
    0x07,
)
# sizes
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
# modes
BPF_IMM, BPF_MEM = 0x00, 0x60
# sources
BPF_K, BPF_X = 0x00, 0x08
# ALU ops
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
BPF_MOV = 0xB0
# jump ops
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JNE, BPF_JLT, BPF_JLE = 0x00, 0x10, 0x20, 0x30, 0x50, 0xA0, 0xB0
BPF_CALL, BPF_EXIT = 0x80, 0x90

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)

_INSN = struct.Struct("<BBhi")
SIZE_CODE = {1: BPF_B, 2: BPF_H, 4: BPF_W, 8: BPF_DW}


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One 8-byte instruction: opcode, dst_reg (low nibble) and src_reg (high nibble), a signed
    16-bit offset and a signed 32-bit immediate."""
    if not (0 <= dst <= 10 and 0 <= src <= 10):
        raise ValueError(f"bad register r{dst} / r{src}")
    if not -(1 << 15) <= off < 1 << 15:
        raise ValueError(f"offset {off} does not fit 16 bits")
    if not -(1 << 31) <= imm < 1 << 31:
        raise ValueError(f"immediate {imm} does not fit 32 bits")
    return _INSN.pack(code, (src << 4) | dst, off, imm)


# Encoders named after the kernel's instruction macros (include/linux/filter.h), written afresh.


def BPF_ALU64_IMM(op: int, dst: int, imm: int) -> bytes:
    return insn(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm)


def BPF_ALU64_REG(op: int, dst: int, src: int) -> bytes:
    return insn(BPF_ALU64 | op | BPF_X, dst, src)


def BPF_MOV64_IMM(dst: int, imm: int) -> bytes:
    return BPF_ALU64_IMM(BPF_MOV, dst, imm)


def BPF_MOV64_REG(dst: int, src: int) -> bytes:
    return BPF_ALU64_REG(BPF_MOV, dst, src)


def BPF_LDX_MEM(size: int, dst: int, src: int, off: int) -> bytes:
    """``dst = *(size *)(src + off)``; ``size`` is BPF_B/H/W/DW."""
    return insn(BPF_LDX | size | BPF_MEM, dst, src, off)


def BPF_STX_MEM(size: int, dst: int, src: int, off: int) -> bytes:
    """``*(size *)(dst + off) = src``"""
    return insn(BPF_STX | size | BPF_MEM, dst, src, off)


def BPF_ST_MEM(size: int, dst: int, off: int, imm: int) -> bytes:
    """``*(size *)(dst + off) = imm``"""
    return insn(BPF_ST | size | BPF_MEM, dst, 0, off, imm)


def BPF_LD_IMM64(dst: int, imm: int) -> bytes:
    """``dst = imm`` for a full 64-bit constant: two instruction slots."""
    imm &= (1 << 64) - 1
    lo, hi = (_s32(v) for v in (imm & 0xFFFFFFFF, imm >> 32))
    return insn(BPF_LD | BPF_DW | BPF_IMM, dst, 0, 0, lo) + insn(0, 0, 0, 0, hi)


def _s32(value: int) -> int:
    return value - (1 << 32) if value >> 31 else value


def BPF_JMP_IMM(op: int, dst: int, imm: int, off: int) -> bytes:
    """``if dst <op> imm goto pc + 1 + off``"""
    return insn(BPF_JMP | op | BPF_K, dst, 0, off, imm)


def BPF_JMP_REG(op: int, dst: int, src: int, off: int) -> bytes:
    return insn(BPF_JMP | op | BPF_X, dst, src, off)


def BPF_JMP_A(off: int) -> bytes:
    """``goto pc + 1 + off``"""
    return insn(BPF_JMP | BPF_JA, 0, 0, off)


def BPF_CALL_HELPER(helper: int) -> bytes:
    return insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper)


def BPF_EXIT_INSN() -> bytes:
    return insn(BPF_JMP | BPF_EXIT)


class Asm:
    """A straight-line program with named jump targets, resolved by :meth:`assemble`."""

    def __init__(self) -> None:
        self.slots: list[bytes | tuple[int, int, int, int, str]] = []  # encoded, or a pending jump
        self.labels: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.slots)

    def emit(self, *encoded: bytes) -> None:
        for code in encoded:
            for i in range(0, len(code), 8):
                self.slots.append(code[i : i + 8])

    def label(self, name: str) -> None:
        if name in self.labels:
            raise ValueError(f"label {name!r} defined twice")
        self.labels[name] = len(self.slots)

    def jump(self, op: int, dst: int, target: str, imm: int = 0, src: int | None = None) -> None:
        """A conditional jump to ``target`` (``op`` BPF_JEQ ...; against ``src`` if given, else
        ``imm``), or ``op`` BPF_JA for an unconditional one."""
        code = BPF_JMP | op | (BPF_X if src is not None else BPF_K)
        self.slots.append((code, dst, src or 0, imm, target))

    def assemble(self) -> bytes:
        out = []
        for pc, slot in enumerate(self.slots):
            if isinstance(slot, bytes):
                out.append(slot)
                continue
            code, dst, src, imm, target = slot
            if target not in self.labels:
                raise ValueError(f"jump to undefined label {target!r}")
            out.append(insn(code, dst, src, self.labels[target] - pc - 1, imm))
        return b"".join(out)


# ---- the iterator program ----

MAGIC_VMA = 0x4C335601
MAGIC_AVC = 0x4C335602
MAGIC_END = 0x4C335603
MAGIC_DONE = 0x4C335604  # the iteration is over (the program's last call, with no VMA)
END_COMPLETE, END_TRUNCATED, END_NULL = 0, 1, 2
WORDS = {MAGIC_VMA: 8, MAGIC_AVC: 8, MAGIC_END: 2, MAGIC_DONE: 1}
DONE = struct.pack("<Q", MAGIC_DONE)
DEFAULT_MAX_CHAIN = 32

# stack frame (offsets from r10)
_CUR = -8  # the next same_vma link to visit
_VMA = -80  # VMA record, 8 words
_AVC = -144  # AVC record, 8 words
_END = -160  # END record, 2 words
# context: struct bpf_iter__task_vma { meta; task; vma; } (one 8-byte slot per iterator argument)
_CTX_META, _CTX_TASK, _CTX_VMA = 0, 8, 16


def _probe_read(a: Asm, helper: int, stack_off: int, size: int, addr_reg: int, field_off: int) -> None:
    """``bpf_probe_read_kernel(r10 + stack_off, size, addr_reg + field_off)``; clobbers r0-r5."""
    if not 0 < size <= 8:
        raise ValueError(f"field of {size} bytes: only 1-8 are read")
    a.emit(BPF_MOV64_REG(R3, addr_reg))
    if field_off:
        a.emit(BPF_ALU64_IMM(BPF_ADD, R3, field_off))
    a.emit(BPF_MOV64_REG(R1, R10), BPF_ALU64_IMM(BPF_ADD, R1, stack_off), BPF_MOV64_IMM(R2, size))
    a.emit(BPF_CALL_HELPER(helper))


def _seq_write(a: Asm, helper: int, stack_off: int, words: int) -> None:
    """``bpf_seq_write(seq = r8, r10 + stack_off, 8 * words)``; clobbers r0-r5."""
    a.emit(BPF_MOV64_REG(R1, R8), BPF_MOV64_REG(R2, R10), BPF_ALU64_IMM(BPF_ADD, R2, stack_off))
    a.emit(BPF_MOV64_IMM(R3, 8 * words), BPF_CALL_HELPER(helper))


def iter_program(lay: KernelLayout, start: int, end: int, max_chain: int = DEFAULT_MAX_CHAIN) -> bytes:
    """The ``task_vma`` iterator program for VMAs with ``start <= vm_start < end``.

    Registers: r6 the context, r7 the VMA, r8 the seq_file, r9 the chain's list head.
    """
    if max_chain < 1:
        raise ValueError("max_chain must be at least 1")
    rd, wr = lay.helper_probe_read_kernel, lay.helper_seq_write
    a = Asm()
    a.emit(BPF_MOV64_REG(R6, R1), BPF_LDX_MEM(BPF_DW, R1, R6, _CTX_META), BPF_LDX_MEM(BPF_DW, R8, R1, 0))
    a.emit(BPF_LDX_MEM(BPF_DW, R7, R6, _CTX_VMA))  # seq = ctx->meta->seq; the VMA
    a.jump(BPF_JNE, R7, "vma")
    a.emit(BPF_ST_MEM(BPF_DW, R10, _END, MAGIC_DONE))  # no VMA: the call at the end of the iteration
    _seq_write(a, wr, _END, WORDS[MAGIC_DONE])
    a.jump(BPF_JA, 0, "out")
    a.label("vma")
    for off in range(_END, 0, 8):  # every record word starts as 0 (narrow fields fill the low bytes)
        a.emit(BPF_ST_MEM(BPF_DW, R10, off, 0))
    # the window filter on vm_start
    _probe_read(a, rd, _VMA + 24, lay.vm_start.size, R7, lay.vm_start.offset)
    a.emit(BPF_LDX_MEM(BPF_DW, R1, R10, _VMA + 24), BPF_LD_IMM64(R2, start))
    a.jump(BPF_JLT, R1, "out", src=R2)
    a.emit(BPF_LD_IMM64(R2, end))
    a.jump(BPF_JGE, R1, "out", src=R2)
    # the VMA record
    a.emit(BPF_ST_MEM(BPF_DW, R10, _VMA, MAGIC_VMA), BPF_STX_MEM(BPF_DW, R10, R7, _VMA + 16))
    a.emit(BPF_LDX_MEM(BPF_DW, R1, R6, _CTX_TASK))
    a.jump(BPF_JEQ, R1, "no_task")
    a.emit(BPF_MOV64_REG(R9, R1))
    _probe_read(a, rd, _VMA + 8, lay.task_tgid.size, R9, lay.task_tgid.offset)
    a.label("no_task")
    for word, fld in ((4, lay.vm_end), (5, lay.vm_pgoff), (6, lay.vm_flags), (7, lay.vma_anon_vma)):
        _probe_read(a, rd, _VMA + 8 * word, fld.size, R7, fld.offset)
    _seq_write(a, wr, _VMA, WORDS[MAGIC_VMA])
    # the same_vma list, from vma->anon_vma_chain.next until it comes back to the head
    _probe_read(a, rd, _CUR, 8, R7, lay.vma_chain.offset + lay.list_next.offset)
    a.emit(BPF_MOV64_REG(R9, R7), BPF_ALU64_IMM(BPF_ADD, R9, lay.vma_chain.offset))
    a.emit(BPF_ST_MEM(BPF_DW, R10, _AVC, MAGIC_AVC), BPF_ST_MEM(BPF_DW, R10, _END, MAGIC_END))
    link = lay.avc_same_vma.offset
    av_fields = (
        (3, lay.av_root),
        (4, lay.av_parent),
        (5, lay.av_refcount),
        (6, lay.av_num_children),
        (7, lay.av_num_active_vmas),
    )
    for _ in range(max_chain):
        a.emit(BPF_LDX_MEM(BPF_DW, R1, R10, _CUR))
        a.jump(BPF_JEQ, R1, "complete", src=R9)
        a.jump(BPF_JEQ, R1, "null")
        a.emit(BPF_ALU64_IMM(BPF_ADD, R1, -link), BPF_STX_MEM(BPF_DW, R10, R1, _AVC + 8))  # container_of
        _probe_read(a, rd, _AVC + 16, lay.avc_anon_vma.size, R1, lay.avc_anon_vma.offset)
        for word, fld in av_fields:
            a.emit(BPF_LDX_MEM(BPF_DW, R4, R10, _AVC + 16))
            _probe_read(a, rd, _AVC + 8 * word, fld.size, R4, fld.offset)
        a.emit(BPF_LDX_MEM(BPF_DW, R4, R10, _AVC + 8))
        _probe_read(a, rd, _CUR, 8, R4, link + lay.list_next.offset)
        _seq_write(a, wr, _AVC, WORDS[MAGIC_AVC])
    a.emit(BPF_LDX_MEM(BPF_DW, R1, R10, _CUR))
    a.jump(BPF_JEQ, R1, "complete", src=R9)
    a.emit(BPF_ST_MEM(BPF_DW, R10, _END + 8, END_TRUNCATED))
    a.jump(BPF_JA, 0, "end")
    a.label("null")
    a.emit(BPF_ST_MEM(BPF_DW, R10, _END + 8, END_NULL))
    a.jump(BPF_JA, 0, "end")
    a.label("complete")
    a.emit(BPF_ST_MEM(BPF_DW, R10, _END + 8, END_COMPLETE))
    a.label("end")
    _seq_write(a, wr, _END, WORDS[MAGIC_END])
    a.label("out")
    a.emit(BPF_MOV64_IMM(R0, 0), BPF_EXIT_INSN())
    return a.assemble()


# ---- decoding ----


class AvcRecord(NamedTuple):
    """One anon_vma_chain entry and the anon_vma it links (kernel pointers as integers).
    (Records are NamedTuples: a snapshot makes dozens of them after every step.)"""

    avc: int
    anon_vma: int
    root: int
    parent: int
    refcount: int
    num_children: int
    num_active_vmas: int


class VmaRecord(NamedTuple):
    """One VMA as the iterator saw it: raw addresses, ``vm_pgoff`` in pages."""

    tgid: int
    vma: int
    start: int
    end: int
    pgoff: int
    flags: int
    anon_vma: int
    chain: tuple[AvcRecord, ...]
    status: int = END_COMPLETE  # END_TRUNCATED: the chain has more than the program walks

    @property
    def truncated(self) -> bool:
        return self.status != END_COMPLETE


class DecodeError(ValueError):
    """The iterator's output is not a sequence of well-formed records."""


def decode(data: bytes) -> list[VmaRecord]:
    """The iterator's output as records, in the order it wrote them (per task, by address)."""
    if len(data) % 8:
        raise DecodeError(f"{len(data)} bytes is not a whole number of words")
    words = struct.unpack(f"<{len(data) // 8}Q", data)
    out: list[VmaRecord] = []
    i = 0
    head: tuple[int, ...] | None = None
    chain: list[AvcRecord] = []
    while i < len(words):
        magic = words[i]
        n = WORDS.get(magic)
        if n is None:
            raise DecodeError(f"unknown record {magic:#x} at word {i}")
        if i + n > len(words):
            raise DecodeError(f"record {magic:#x} at word {i} is cut short")
        rec = words[i : i + n]
        i += n
        if magic == MAGIC_DONE:
            if head is not None or i != len(words):
                raise DecodeError(f"the iteration's last record at word {i - n} is not last")
        elif magic == MAGIC_VMA:
            if head is not None:
                raise DecodeError(f"VMA record at word {i - n} before the previous one ended")
            head, chain = rec, []
        elif magic == MAGIC_AVC:
            if head is None:
                raise DecodeError(f"chain record at word {i - n} outside a VMA")
            chain.append(AvcRecord(*rec[1:]))
        else:
            if head is None:
                raise DecodeError(f"end record at word {i - n} outside a VMA")
            _, tgid, vma, start, end, pgoff, flags, anon_vma = head
            out.append(VmaRecord(tgid, vma, start, end, pgoff, flags, anon_vma, tuple(chain), rec[1]))
            head = None
    if head is not None:
        raise DecodeError("the last VMA record has no end record")
    return out


# ---- the bpf() system call ----

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "i686": 357, "i386": 357}
BPF_PROG_LOAD, BPF_LINK_CREATE, BPF_ITER_CREATE = 5, 28, 33
LOG_SIZE = 1 << 20

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """A bpf() call failed; the message is one line (for a load, the verifier's verdict)."""

    def __str__(self) -> str:
        return str(self.strerror)


def _sys_bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise BpfError(errno.ENOSYS, f"bpf(): unknown system call number on {platform.machine()}")
    ret = int(_libc.syscall(ctypes.c_long(nr), ctypes.c_long(cmd), attr, ctypes.c_uint(len(attr))))
    if ret < 0:
        return -ctypes.get_errno()
    return ret


def verifier_summary(log: str) -> str:
    """The verifier log in one line: its last statement before the instruction counts, with
    the instruction it was at."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("processed ", "verification time", "stack depth"))]
    if not lines:
        return "(no verifier log)"
    last = lines[-1]
    at = next((ln.split(":", 1)[0] for ln in reversed(lines[:-1]) if ln.split(":", 1)[0].isdigit()), None)
    return f"{last} (at insn {at})" if at is not None else last


def load_program(
    code: bytes, prog_type: int, attach_type: int, attach_btf_id: int, name: str = "rmapfuzz_l3", prog_flags: int = 0
) -> int:
    """BPF_PROG_LOAD; the program fd.  On failure the load is retried with a verifier log and
    :class:`BpfError` carries its summary."""
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(LOG_SIZE)

    def attempt(level: int) -> int:
        attr = ctypes.create_string_buffer(128)
        struct.pack_into("<II", attr, 0, prog_type, len(code) // 8)
        struct.pack_into("<QQ", attr, 8, ctypes.addressof(insns), ctypes.addressof(license_))
        if level:
            struct.pack_into("<IIQ", attr, 24, level, LOG_SIZE, ctypes.addressof(log))
        struct.pack_into("<I", attr, 44, prog_flags)  # BPF_F_SLEEPABLE for a syscall program
        prog_name = name.encode()[:15]
        ctypes.memmove(ctypes.addressof(attr) + 48, prog_name, len(prog_name))
        struct.pack_into("<I", attr, 68, attach_type)  # expected_attach_type
        struct.pack_into("<I", attr, 108, attach_btf_id)
        return _sys_bpf(BPF_PROG_LOAD, attr)

    fd = attempt(0)
    if fd >= 0:
        return fd
    err = -fd
    if err in (errno.EPERM, errno.ENOSYS):
        raise BpfError(err, f"BPF_PROG_LOAD: {os.strerror(err)} (needs CAP_BPF and CAP_PERFMON)")
    fd = attempt(1)
    if fd >= 0:  # loads with a log but not without: take it
        return fd
    text = log.value.decode(errors="replace")
    raise BpfError(err, f"BPF_PROG_LOAD: {os.strerror(err)}: {verifier_summary(text)}")


def link_create(prog_fd: int, attach_type: int, tid: int | None = None) -> int:
    """BPF_LINK_CREATE for an iterator, restricted to one task if ``tid`` is given (6.1+)."""
    info = ctypes.create_string_buffer(16)  # union bpf_iter_link_info: task.tid, task.pid, task.pid_fd
    attr = ctypes.create_string_buffer(64)
    struct.pack_into("<IIII", attr, 0, prog_fd, 0, attach_type, 0)
    if tid is not None:
        struct.pack_into("<I", info, 0, tid)
        struct.pack_into("<QI", attr, 16, ctypes.addressof(info), len(info))
    fd = _sys_bpf(BPF_LINK_CREATE, attr)
    if fd < 0:
        raise BpfError(-fd, f"BPF_LINK_CREATE: {os.strerror(-fd)}")
    return fd


def iter_create(link_fd: int) -> int:
    attr = ctypes.create_string_buffer(8)
    struct.pack_into("<II", attr, 0, link_fd, 0)
    fd = _sys_bpf(BPF_ITER_CREATE, attr)
    if fd < 0:
        raise BpfError(-fd, f"BPF_ITER_CREATE: {os.strerror(-fd)}")
    return fd


def read_iter(link_fd: int) -> bytes:
    """One pass of the iterator: create an iterator fd from the link and read it to EOF, or
    until the program's last record (which saves a read)."""
    fd = iter_create(link_fd)
    try:
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError as exc:
                raise BpfError(exc.errno or errno.EIO, f"reading the iterator: {exc.strerror}") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size % 8 == 0 and chunk.endswith(DONE):
                break
        return b"".join(chunks)
    finally:
        os.close(fd)


class VmaIterator:
    """The loaded program for one window, and a per-task link cache.

    :meth:`snapshot` reads the given tasks (OS pids); links are made on first use and kept until
    :meth:`forget` (a pid can be reused by another process once its worker is gone) or
    :meth:`close`.
    """

    def __init__(self, layout: KernelLayout, start: int, end: int, max_chain: int = DEFAULT_MAX_CHAIN) -> None:
        self.layout = layout
        self.start, self.end = start, end
        self.max_chain = max_chain
        self.code = iter_program(layout, start, end, max_chain)
        self.prog_fd = load_program(self.code, layout.prog_type_tracing, layout.attach_trace_iter, layout.iter_func_id)
        self.links: dict[int, int] = {}

    def _link(self, tid: int) -> int:
        fd = self.links.get(tid)
        if fd is None:
            fd = link_create(self.prog_fd, self.layout.attach_trace_iter, tid)
            self.links[tid] = fd
        return fd

    def snapshot(self, tids: Iterable[int]) -> list[VmaRecord]:
        """The window's VMAs of each task in ``tids``, in that order."""
        out: list[VmaRecord] = []
        for tid in tids:
            out.extend(decode(read_iter(self._link(tid))))
        return out

    def snapshot_all(self) -> list[VmaRecord]:
        """The window's VMAs of every task on the machine (one iterator pass, no filter)."""
        fd = link_create(self.prog_fd, self.layout.attach_trace_iter)
        try:
            return decode(read_iter(fd))
        finally:
            os.close(fd)

    def forget(self, tid: int) -> None:
        fd = self.links.pop(tid, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        for tid in list(self.links):
            self.forget(tid)
        if self.prog_fd >= 0:
            os.close(self.prog_fd)
            self.prog_fd = -1

    def __enter__(self) -> VmaIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
