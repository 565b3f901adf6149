"""L3 of the live-kernel oracle: the anon_vma graph through a BPF task_vma iterator.

The first part runs everywhere: the BTF reader on a small synthetic blob, the instruction
encoders, the iterator program run by a tiny BPF interpreter against fake kernel memory, the
decoder, and the canonical renaming and comparison.  The second part needs the running kernel
(root, CAP_BPF + CAP_PERFMON, BTF, a free window) and is skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import struct
import sys

import pytest

from rmapfuzz import ops
from rmapfuzz.oracle import bpf, btf
from rmapfuzz.oracle import compare as cmp
from rmapfuzz.oracle.bpf import (
    BPF_ADD,
    BPF_ALU64_IMM,
    BPF_CALL_HELPER,
    BPF_DW,
    BPF_EXIT_INSN,
    BPF_JEQ,
    BPF_JMP_A,
    BPF_LD_IMM64,
    BPF_LDX_MEM,
    BPF_MOV64_IMM,
    BPF_MOV64_REG,
    BPF_ST_MEM,
    BPF_STX_MEM,
    R0,
    R1,
    R2,
    R6,
    R7,
    R10,
)
from rmapfuzz.replay import Runner
from tests.helpers import fork, mm, mp, wr

# ---- a synthetic BTF blob ----


class BtfBlob:
    """Writes BTF: types are numbered from 1 in the order they are added."""

    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.records: list[bytes] = []

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, kind: int, name: str, size_type: int = 0, vlen: int = 0, kflag: int = 0, tail: bytes = b"") -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.records.append(struct.pack("<III", self.s(name), info, size_type) + tail)
        return len(self.records)

    def int_(self, name: str, size: int) -> int:
        return self.add(btf.INT, name, size, tail=struct.pack("<I", size * 8))

    def ptr(self, target: int) -> int:
        return self.add(btf.PTR, "", target)

    def struct_(self, name: str, size: int, members, union: bool = False, kflag: int = 0) -> int:
        """``members``: (name, type, bit offset[, bitfield size])."""
        tail = b""
        for m in members:
            name_, type_, bits = m[:3]
            off = bits | (m[3] << 24 if len(m) > 3 else 0)
            tail += struct.pack("<III", self.s(name_), type_, off)
        return self.add(btf.UNION if union else btf.STRUCT, name, size, len(members), kflag, tail)

    def enum(self, name: str, values: dict[str, int]) -> int:
        tail = b"".join(struct.pack("<Ii", self.s(k), v) for k, v in values.items())
        return self.add(btf.ENUM, name, 4, len(values), tail=tail)

    def blob(self) -> bytes:
        types = b"".join(self.records)
        header = struct.pack("<HBBIIIII", btf.BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(self.strings))
        return header + types + bytes(self.strings)


def synthetic_kernel(with_num_children: bool = True) -> bytes:
    """The structs the L3 program needs, with 6.18's offsets and some of its nesting."""
    b = BtfBlob()
    long_ = b.int_("long unsigned int", 8)
    int_ = b.int_("int", 4)
    b.struct_("anon_vma", 0, [])  # an empty declaration first: the complete one must win
    list_head = len(b.records) + 1
    lh_ptr = list_head + 1  # the pointer type comes right after the struct that refers to it
    assert b.struct_("list_head", 16, [("next", lh_ptr, 0), ("prev", lh_ptr, 64)]) == list_head
    assert b.ptr(list_head) == lh_ptr
    flags_t = b.add(btf.TYPEDEF, "vm_flags_t", long_)
    const_flags = b.add(btf.CONST, "", flags_t)
    start_end = b.struct_("", 16, [("vm_start", long_, 0), ("vm_end", long_, 64)])
    first = b.struct_("", 16, [("", start_end, 0), ("vm_freeptr", long_, 0)], union=True)
    flags_u = b.struct_("", 8, [("vm_flags", const_flags, 0), ("__vm_flags", flags_t, 0)], union=True)
    void_ptr = b.ptr(0)
    vma = b.struct_(
        "vm_area_struct",
        192,
        [
            ("", first, 0),
            ("vm_mm", void_ptr, 128),
            ("", flags_u, 256),
            ("vm_lock_seq", int_, 320, 4),
            ("anon_vma_chain", list_head, 384),
            ("anon_vma", void_ptr, 512),
            ("vm_pgoff", long_, 640),
        ],
        kflag=1,
    )
    atomic = b.struct_("", 4, [("counter", int_, 0)])
    atomic_t = b.add(btf.TYPEDEF, "atomic_t", atomic)
    av_members = [("root", void_ptr, 0), ("refcount", atomic_t, 384)]
    if with_num_children:
        av_members += [("num_children", long_, 448), ("num_active_vmas", long_, 512)]
    av_members += [("parent", void_ptr, 576)]
    b.struct_("anon_vma", 96, av_members)
    b.struct_("anon_vma_chain", 64, [("vma", void_ptr, 0), ("anon_vma", void_ptr, 64), ("same_vma", list_head, 128)])
    pid_t = b.add(btf.TYPEDEF, "pid_t", int_)
    b.struct_("task_struct", 4096, [("pid", pid_t, 1264 * 8), ("tgid", pid_t, 1268 * 8)])
    arr = b.add(btf.ARRAY, "", 0, tail=struct.pack("<III", long_, int_, 4))
    b.struct_("with_array", 40, [("a", arr, 0), ("tail", int_, 256)])
    proto = b.add(btf.FUNC_PROTO, "", int_, 3, tail=struct.pack("<II", 0, vma) * 3)
    b.add(btf.FUNC, "bpf_iter_task_vma", proto, 1)
    b.enum("bpf_func_id", {"BPF_FUNC_unspec": 0, "BPF_FUNC_probe_read_kernel": 113, "BPF_FUNC_seq_write": 127})
    b.enum("bpf_prog_type", {"BPF_PROG_TYPE_TRACING": 26})
    tail64 = struct.pack("<III", b.s("BIG"), 0x89ABCDEF, 0x1)
    b.add(btf.ENUM64, "wide", 8, 1, tail=tail64)
    assert vma
    return b.blob()


def test_btf_offsets_through_anonymous_members():
    t = btf.Btf(synthetic_kernel())
    assert t.field("vm_area_struct", "vm_start") == btf.Field(0, 8)
    assert t.field("vm_area_struct", "vm_end") == btf.Field(8, 8)
    assert t.field("vm_area_struct", "vm_flags") == btf.Field(32, 8)  # const typedef in a union
    assert t.field("vm_area_struct", "anon_vma_chain") == btf.Field(48, 16)
    assert t.field("vm_area_struct", "anon_vma_chain.next") == btf.Field(48, 8)
    assert t.field("anon_vma", "refcount") == btf.Field(48, 4)  # atomic_t, a typedef of a struct
    assert t.field("anon_vma", "parent") == btf.Field(72, 8)
    assert t.field("task_struct", "tgid") == btf.Field(1268, 4)
    assert t.struct_size("anon_vma") == 96  # the complete definition, not the empty one
    assert t.size(t.find("with_array", btf.STRUCT)) == 40
    assert t.field("with_array", "a").size == 32


def test_btf_errors_and_enums():
    t = btf.Btf(synthetic_kernel())
    with pytest.raises(btf.BtfError, match="bitfield"):
        t.field("vm_area_struct", "vm_lock_seq")
    with pytest.raises(btf.BtfError, match="no member 'vm_nothing'"):
        t.field("vm_area_struct", "vm_nothing")
    with pytest.raises(btf.BtfError, match="no struct/union named 'mm_struct'"):
        t.field("mm_struct", "mmap")
    assert t.enum_value("bpf_func_id", "BPF_FUNC_seq_write") == 127
    assert t.enum_value("wide", "BIG") == 0x1_89ABCDEF
    assert t.kind(t.find("bpf_iter_task_vma", btf.FUNC)) == btf.FUNC
    with pytest.raises(btf.BtfError, match="bad magic"):
        btf.Btf(b"\0" * 32)
    with pytest.raises(btf.BtfError, match="header"):
        btf.Btf(b"\x9f\xeb")


def test_layout_from_synthetic_btf():
    t = btf.Btf(synthetic_kernel())
    lay = btf.layout_from(t)
    assert (lay.vm_pgoff.offset, lay.vma_anon_vma.offset, lay.vma_chain.offset) == (80, 64, 48)
    assert (lay.av_num_children.offset, lay.av_num_active_vmas.offset) == (56, 64)
    assert (lay.avc_anon_vma.offset, lay.avc_same_vma.offset, lay.list_next.offset) == (8, 16, 0)
    assert lay.iter_func_id == t.find("bpf_iter_task_vma", btf.FUNC)
    assert (lay.helper_probe_read_kernel, lay.helper_seq_write, lay.prog_type_tracing) == (113, 127, 26)
    assert lay.attach_trace_iter == 28  # not in the blob: the UAPI value
    with pytest.raises(btf.BtfError, match="num_children"):
        btf.layout_from(btf.Btf(synthetic_kernel(with_num_children=False)))


# ---- the assembler ----


def test_instruction_encodings():
    assert BPF_MOV64_IMM(R0, 0) + BPF_EXIT_INSN() == bytes.fromhex("b700000000000000 9500000000000000")
    assert BPF_MOV64_REG(R6, R1) == bytes.fromhex("bf16000000000000")
    assert BPF_LDX_MEM(BPF_DW, R7, R6, 16) == bytes.fromhex("7967100000000000")
    assert BPF_STX_MEM(BPF_DW, R10, R7, -8) == bytes.fromhex("7b7af8ff00000000")
    assert BPF_ST_MEM(BPF_DW, R10, -16, 7) == bytes.fromhex("7a0af0ff07000000")
    assert BPF_ALU64_IMM(BPF_ADD, R1, -16) == bytes.fromhex("07010000f0ffffff")
    assert BPF_CALL_HELPER(113) == bytes.fromhex("8500000071000000")
    assert BPF_JMP_A(-1) == bytes.fromhex("0500ffff00000000")
    assert BPF_LD_IMM64(R2, 0x2000_0000_0000) == bytes.fromhex("1802000000000000 0000000000200000")
    assert BPF_LD_IMM64(R1, -1) == bytes.fromhex("18010000ffffffff 00000000ffffffff")
    with pytest.raises(ValueError):
        bpf.insn(0, 11)
    with pytest.raises(ValueError):
        bpf.insn(0, 0, 0, 0, 1 << 31)


def test_labels_resolve_forward_and_backward():
    a = bpf.Asm()
    a.label("top")
    a.jump(BPF_JEQ, R1, "out")  # pc 0 -> 4: off 3
    a.emit(BPF_LD_IMM64(R2, 1 << 40))  # two slots: pc 1, 2
    a.jump(bpf.BPF_JA, 0, "top")  # pc 3 -> 0: off -4
    a.label("out")
    a.emit(BPF_EXIT_INSN())
    code = a.assemble()
    words = [code[i : i + 8] for i in range(0, len(code), 8)]
    assert len(words) == 5
    assert struct.unpack("<h", words[0][2:4])[0] == 3
    assert struct.unpack("<h", words[3][2:4])[0] == -4
    bad = bpf.Asm()
    bad.jump(bpf.BPF_JA, 0, "nowhere")
    with pytest.raises(ValueError, match="nowhere"):
        bad.assemble()


def test_verifier_summary():
    log = (
        "0: R1=ctx() R10=fp0\n0: (bf) r6 = r1\n12: (79) r1 = *(u64 *)(r7 +0)\n"
        "R7 invalid mem access 'scalar'\nprocessed 13 insns (limit 1000000)\n"
    )
    assert bpf.verifier_summary(log) == "R7 invalid mem access 'scalar' (at insn 12)"
    assert bpf.verifier_summary("") == "(no verifier log)"


# ---- the program, run by a tiny interpreter against fake kernel memory ----

MASK = (1 << 64) - 1


class FakeKernel:
    """Byte regions at fake addresses; ``probe_read`` of anything else fails (and zero-fills)."""

    def __init__(self) -> None:
        self.regions: dict[int, bytearray] = {}
        self.next = 0xFFFF_8880_0000_0000

    def alloc(self, size: int) -> int:
        addr = self.next
        self.regions[addr] = bytearray(size)
        self.next += (size + 0xFFF) & ~0xFFF
        return addr

    def find(self, addr: int, size: int) -> tuple[bytearray, int] | None:
        for base, buf in self.regions.items():
            if base <= addr and addr + size <= base + len(buf):
                return buf, addr - base
        return None

    def put(self, addr: int, value: int, size: int = 8) -> None:
        found = self.find(addr, size)
        assert found is not None
        buf, off = found
        buf[off : off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def get(self, addr: int, size: int = 8) -> int:
        found = self.find(addr, size)
        assert found is not None, hex(addr)
        buf, off = found
        return int.from_bytes(buf[off : off + size], "little")


def interpret(code: bytes, mem: FakeKernel, ctx: int, out: bytearray, helpers: tuple[int, int]) -> int:
    """Run ``code`` with r1 = ctx: the opcodes the iterator program uses, nothing more."""
    read_helper, write_helper = helpers
    stack = mem.alloc(512)
    regs = [0] * 11
    regs[1], regs[10] = ctx, stack + 512
    pc, steps = 0, 0
    slots = [code[i : i + 8] for i in range(0, len(code), 8)]
    while True:
        steps += 1
        assert steps < 100_000
        op, r, off, imm = struct.unpack("<BBhi", slots[pc])
        dst, src = r & 0xF, r >> 4
        pc += 1
        cls = op & 0x07
        if op == 0x18:  # ld_imm64
            hi = struct.unpack("<i", slots[pc][4:8])[0]
            regs[dst] = ((imm & 0xFFFFFFFF) | (hi & 0xFFFFFFFF) << 32) & MASK
            pc += 1
        elif cls == 0x07:  # alu64
            val = regs[src] if op & 0x08 else imm & MASK
            if op & 0xF0 == 0xB0:
                regs[dst] = val
            elif op & 0xF0 == 0x00:
                regs[dst] = (regs[dst] + val) & MASK
            else:
                raise AssertionError(f"alu op {op:#x}")
        elif op == 0x79:
            regs[dst] = mem.get(regs[src] + off)
        elif op == 0x7B:
            mem.put(regs[dst] + off, regs[src])
        elif op == 0x7A:
            mem.put(regs[dst] + off, imm)
        elif op == 0x85:
            r1, r2, r3 = regs[1], regs[2], regs[3]
            if imm == read_helper:
                found = mem.find(r3, r2)
                mem.put(r1, 0 if found is None else mem.get(r3, r2), r2)
                regs[0] = 0 if found is not None else (-14 & MASK)
            elif imm == write_helper:
                found = mem.find(r2, r3)
                assert found is not None
                out += found[0][found[1] : found[1] + r3]
                regs[0] = 0
            else:
                raise AssertionError(f"helper {imm}")
        elif op == 0x95:
            return regs[0]
        elif cls == 0x05:
            a = regs[dst]
            b = regs[src] if op & 0x08 else imm & MASK
            jop = op & 0xF0
            taken = {0x00: True, 0x10: a == b, 0x50: a != b, 0xA0: a < b, 0x30: a >= b}[jop]
            if taken:
                pc += off
        else:
            raise AssertionError(f"opcode {op:#x}")


@pytest.fixture(scope="module")
def layout() -> btf.KernelLayout:
    return btf.layout_from(btf.Btf(synthetic_kernel()))


WSTART = 0x2000_0000_0000


class FakeGraph:
    """Fake VMAs, anon_vmas and chains in :class:`FakeKernel` memory, laid out as ``lay`` says."""

    def __init__(self, lay: btf.KernelLayout) -> None:
        self.lay = lay
        self.mem = FakeKernel()
        self.task = self.mem.alloc(4096)
        self.mem.put(self.task + lay.task_tgid.offset, 4242, 4)

    def anon_vma(self, root: int | None = None, parent: int | None = None, ch=1, act=1, ref=1) -> int:
        lay = self.lay
        av = self.mem.alloc(lay.av_size)
        self.mem.put(av + lay.av_root.offset, root or av)
        self.mem.put(av + lay.av_parent.offset, parent or av)
        self.mem.put(av + lay.av_refcount.offset, ref, 4)
        self.mem.put(av + lay.av_refcount.offset + 4, 0xDEAD, 4)  # the next field: not read
        self.mem.put(av + lay.av_num_children.offset, ch)
        self.mem.put(av + lay.av_num_active_vmas.offset, act)
        return av

    def vma(self, start: int, end: int, pgoff: int, chain: list[int]) -> int:
        lay = self.lay
        v = self.mem.alloc(lay.vma_size)
        self.mem.put(v + lay.vm_start.offset, WSTART + start * 4096)
        self.mem.put(v + lay.vm_end.offset, WSTART + end * 4096)
        self.mem.put(v + lay.vm_pgoff.offset, (WSTART >> 12) + pgoff)
        self.mem.put(v + lay.vm_flags.offset, 0x100073)
        self.mem.put(v + lay.vma_anon_vma.offset, chain[0] if chain else 0)
        head = v + lay.vma_chain.offset
        prev = head
        for av in chain:  # list_add_tail in walk order
            avc = self.mem.alloc(64)
            self.mem.put(avc + lay.avc_anon_vma.offset, av)
            link = avc + lay.avc_same_vma.offset
            self.mem.put(prev + lay.list_next.offset, link)
            prev = link
        self.mem.put(prev + lay.list_next.offset, head)
        return v

    def run(self, code: bytes, vmas: list[int]) -> bytes:
        out = bytearray()
        ctx = self.mem.alloc(24)
        meta = self.mem.alloc(24)
        self.mem.put(meta, 0x5E0)  # the seq_file pointer, opaque to the program
        self.mem.put(ctx, meta)
        self.mem.put(ctx + 8, self.task)
        helpers = (self.lay.helper_probe_read_kernel, self.lay.helper_seq_write)
        for v in [*vmas, 0]:
            self.mem.put(ctx + 16, v)
            assert interpret(code, self.mem, ctx, out, helpers) == 0
        return bytes(out)


def test_program_walks_chains_and_filters_the_window(layout):
    g = FakeGraph(layout)
    root = g.anon_vma(ch=2, act=1, ref=2)
    child = g.anon_vma(root=root, parent=root, ch=0, act=1, ref=1)
    a = g.vma(0, 4, 0, [root])
    b = g.vma(4, 8, 4, [])
    c = g.vma(0, 4, 0, [child, root])
    outside = g.vma(64, 65, 64, [root])
    code = bpf.iter_program(layout, WSTART, WSTART + 64 * 4096, max_chain=4)
    data = g.run(code, [a, b, outside, c])
    assert data.endswith(bpf.DONE)
    recs = bpf.decode(data)
    assert [(r.vma, r.tgid, r.start - WSTART, r.end - WSTART, r.status) for r in recs] == [
        (a, 4242, 0, 4 * 4096, 0),
        (b, 4242, 4 * 4096, 8 * 4096, 0),
        (c, 4242, 0, 4 * 4096, 0),
    ]
    assert recs[0].chain == (bpf.AvcRecord(recs[0].chain[0].avc, root, root, root, 2, 2, 1),)
    assert recs[1].anon_vma == 0 and recs[1].chain == ()
    assert [x.anon_vma for x in recs[2].chain] == [child, root]
    assert recs[2].chain[0] == bpf.AvcRecord(recs[2].chain[0].avc, child, root, root, 1, 0, 1)
    assert recs[2].pgoff == (WSTART >> 12) and recs[2].flags == 0x100073


def test_program_reports_a_cut_chain(layout):
    g = FakeGraph(layout)
    avs = [g.anon_vma() for _ in range(3)]
    v = g.vma(0, 1, 0, avs)
    code = bpf.iter_program(layout, WSTART, WSTART + 8 * 4096, max_chain=2)
    (rec,) = bpf.decode(g.run(code, [v]))
    assert rec.status == bpf.END_TRUNCATED and rec.truncated
    assert [x.anon_vma for x in rec.chain] == avs[:2]
    exact = bpf.iter_program(layout, WSTART, WSTART + 8 * 4096, max_chain=3)
    (rec,) = bpf.decode(g.run(exact, [v]))
    assert rec.status == bpf.END_COMPLETE and len(rec.chain) == 3


# ---- the decoder ----


def words(*ws: int) -> bytes:
    return b"".join(struct.pack("<Q", w) for w in ws)


def test_decode_records():
    vma = words(bpf.MAGIC_VMA, 7, 0x1000, WSTART, WSTART + 8192, 99, 0x73, 0xA0)
    avc = words(bpf.MAGIC_AVC, 0xC0, 0xA0, 0xA0, 0xA0, 1, 1, 1)
    end = words(bpf.MAGIC_END, bpf.END_COMPLETE)
    recs = bpf.decode(vma + avc + end + vma + end + bpf.DONE)
    assert len(recs) == 2
    assert recs[0] == bpf.VmaRecord(
        7, 0x1000, WSTART, WSTART + 8192, 99, 0x73, 0xA0, (bpf.AvcRecord(0xC0, 0xA0, 0xA0, 0xA0, 1, 1, 1),)
    )
    assert recs[1].chain == () and not recs[1].truncated
    assert bpf.decode(b"") == []
    for bad, why in [
        (b"\0" * 7, "whole number"),
        (words(5), "unknown record"),
        (vma[:-8], "cut short"),
        (avc + end, "outside a VMA"),
        (vma + avc, "no end record"),
        (vma + vma, "before the previous one ended"),
        (bpf.DONE + vma + end, "not last"),
    ]:
        with pytest.raises(bpf.DecodeError, match=why):
            bpf.decode(bad)


# ---- renaming and comparison ----


def graph(avs, rows) -> cmp.Graph:
    """``avs``: key -> (root, parent, ch, act, ref); ``rows``: pid -> [(s, e, pgoff, av, chain)]."""
    return cmp.Graph(
        {pid: [cmp.GraphVma(s, e, pg, 0x100073, av, tuple(ch)) for s, e, pg, av, ch in vs] for pid, vs in rows.items()},
        {k: cmp.AvState(*v) for k, v in avs.items()},
    )


def fork_graph(names: tuple[object, object], **changes) -> cmp.Graph:
    """P0 [0,4) root; P1 [0,4) child of it and [4,8) without an anon_vma."""
    root, child = names
    avs = {root: (root, root, 2, 1, 2), child: (root, root, 0, 1, 1)}
    avs.update(changes.get("avs", {}))
    rows = {0: [(0, 4, 0, root, [root])], 1: [(0, 4, 0, child, [child, root]), (4, 8, 4, None, [])]}
    rows.update(changes.get("rows", {}))
    return graph(avs, rows)


def test_equal_up_to_renaming():
    kernel = fork_graph((0xFFFF0001, 0xFFFF0002))
    model = fork_graph(("X", "Y"))
    assert cmp.compare_graphs(kernel, model) is None
    assert cmp.canonical_graph(kernel) == cmp.canonical_graph(model)
    text = cmp.graph_text(kernel)
    assert text == (
        "P0 [0,4) pgoff +0 rw- ac av0, chain [av0 (root, ch=2 act=1 ref=2)]; "
        "P1 [0,4) pgoff +0 rw- ac av1, chain [av1 (root av0, parent av0, ch=0 act=1 ref=1), av0], "
        "[4,8) pgoff +4 rw- ac none"
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"avs": {"Y": ("X", "X", 0, 2, 1)}}, "P1 [0,4): num_active_vmas of anon_vma_chain[0] (av1) differs"),
        ({"avs": {"X": ("X", "X", 1, 1, 2)}}, "P0 [0,4): num_children of anon_vma_chain[0] (av0) differs"),
        ({"avs": {"X": ("X", "X", 2, 1, 3)}}, "P0 [0,4): refcount of anon_vma_chain[0] (av0) differs"),
        ({"avs": {"Y": ("Y", "X", 0, 1, 1)}}, "P1 [0,4): root of anon_vma_chain[0] (av1) differs"),
        ({"avs": {"Y": ("X", "Y", 0, 1, 1)}}, "P1 [0,4): parent of anon_vma_chain[0] (av1) differs"),
        ({"rows": {1: [(0, 4, 0, "Y", ["Y"]), (4, 8, 4, None, [])]}}, "P1 [0,4): the anon_vma_chain's length"),
        ({"rows": {1: [(0, 4, 0, "Y", ["X", "Y"]), (4, 8, 4, None, [])]}}, "P1 [0,4): anon_vma_chain[0] differs"),
        ({"rows": {1: [(0, 4, 0, "X", ["X"]), (4, 8, 4, None, [])]}}, "P1 [0,4): its anon_vma differs"),
        ({"rows": {1: [(0, 4, 0, "Y", ["Y", "X"]), (4, 8, 4, "X", ["X"])]}}, "P1 [4,8): whether it has an anon_vma"),
        ({"rows": {1: [(0, 4, 0, "Y", ["Y", "X"]), (4, 8, 0, None, [])]}}, "P1 [4,8): vm_pgoff differs"),
        ({"rows": {1: [(0, 4, 0, "Y", ["Y", "X"])]}}, "P1's VMAs differ"),
        ({"rows": {2: []}}, "the live processes differ"),
    ],
)
def test_one_differing_field_is_named(changes, message):
    kernel = fork_graph((0xFFFF0001, 0xFFFF0002))
    model = fork_graph(("X", "Y"), **changes)
    found = cmp.compare_graphs(kernel, model)
    assert found is not None
    ktext, mtext, msg = found
    assert msg.startswith(message), msg
    if "processes" not in msg:
        assert ktext.startswith("P") and mtext.startswith("P") and ktext != mtext


def test_flags_and_cut_chains():
    k = fork_graph((1, 2))
    m = fork_graph((1, 2))
    m.vmas[0][0] = cmp.GraphVma(0, 4, 0, 0x73, 1, (1,))
    found = cmp.compare_graphs(k, m)
    assert found is not None and found[2] == "P0 [0,4): vm_flags differ"
    assert "rw- ac" in found[0] and "rw- ac" not in found[1]
    cut = fork_graph((1, 2))
    cut.vmas[1][0] = cmp.GraphVma(0, 4, 0, 0x100073, 2, (2,), bpf.END_TRUNCATED)
    found = cmp.compare_graphs(cut, k)
    assert found is not None and "length" in found[2] and "...] (cut)" in found[0]


def test_model_graph_matches_kernel_records():
    """The model's graph after fork + COW + split, and hand-written iterator records of the same
    shape (as on 6.18.44, docs/live-oracle.md#fork-trees-cow-and-page-identity), agree up to renaming."""
    steps = ops.parse_steps(
        [
            {"op": "mmap", "pid": 0, "start": 0, "pages": 4, "prot": "rw"},
            {"op": "write", "pid": 0, "addr": 0},
            {"op": "fork", "pid": 0},
            {"op": "write", "pid": 1, "addr": 0},
            {"op": "mprotect", "pid": 1, "start": 2, "pages": 1, "prot": "r"},
        ],
        8,
    )
    runner = Runner("current", 8, invariants=())
    for op in steps:
        runner.step(op)
    model = cmp.model_graph(runner.kernel, 32)
    av0, av1 = 0xA0, 0xA1
    r0 = bpf.AvcRecord(0xC0, av0, av0, av0, 2, 2, 1)
    r1 = bpf.AvcRecord(0xC1, av1, av0, av0, 1, 0, 3)
    base = WSTART >> 12

    def rec(s, e, flags, chain):
        return bpf.VmaRecord(9, 0, WSTART + s * 4096, WSTART + e * 4096, base + s, flags, chain[0].anon_vma, chain)

    records = {
        0: [rec(0, 4, 0x100073, (r0,))],
        1: [rec(0, 2, 0x100073, (r1, r0)), rec(2, 3, 0x100071, (r1, r0)), rec(3, 4, 0x100073, (r1, r0))],
    }
    kernel = cmp.kernel_graph(records, WSTART, 4096)
    assert cmp.compare_graphs(kernel, model) is None, cmp.graph_text(model)
    assert "act=3" in cmp.graph_text(model)


# ---- the running kernel ----


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "not Linux"
    try:
        from rmapfuzz.oracle import observe
        from rmapfuzz.oracle.executor import DEFAULT_BASE
    except OSError as exc:
        return f"cannot load the bindings: {exc}"
    why = observe.graph_unavailable()
    if why is not None:
        return why
    taken = observe.window_is_free(DEFAULT_BASE, 64)
    if taken is not None:
        return f"the window is not free: {taken}"
    return None


WHY_NOT = _why_not()
live = pytest.mark.skipif(WHY_NOT is not None, reason=f"L3 (BPF anon_vma graph) unavailable: {WHY_NOT}")


# (name, steps, the kernel's final graph on 6.18.44 as recorded in docs/live-oracle.md#scenario-corpus and
# docs/live-oracle.md#fork-trees-cow-and-page-identity)
LIVE = [
    (
        "c2",
        [mm(0, 4, 4), wr(0, 4), mp(0, 4, 4, "r"), mm(0, 0, 4), wr(0, 0), mp(0, 4, 4, "rw")],
        "P0 [0,8) pgoff +0 rw- ac av0, chain [av0 (root, ch=1 act=1 ref=1)]",
    ),
    (
        "c7",
        [mm(0, 4, 4), wr(0, 4), mp(0, 4, 4, "r"), mm(0, 0, 4), mp(0, 4, 2, "rw")],
        "P0 [0,6) pgoff +0 rw- ac av0, chain [av0 (root, ch=1 act=2 ref=1)], [6,8) pgoff +6 r-- ac av0, chain [av0]",
    ),
    (
        "d1",
        [mm(0, 0, 4), wr(0, 0), fork(0), mm(1, 4, 4)],
        "P0 [0,4) pgoff +0 rw- ac av0, chain [av0 (root, ch=2 act=1 ref=2)]; "
        "P1 [0,4) pgoff +0 rw- ac av1, chain [av1 (root av0, parent av0, ch=0 act=1 ref=1), av0], "
        "[4,8) pgoff +4 rw- ac none",
    ),
    (
        "h2",
        [mm(0, 0, 8), wr(0, 0), wr(0, 5), mp(0, 4, 4, "r"), fork(0), mp(1, 4, 4, "rw")],
        "P0 [0,4) pgoff +0 rw- ac av0, chain [av0 (root, ch=3 act=2 ref=3)], [4,8) pgoff +4 r-- ac av0, chain [av0]; "
        "P1 [0,4) pgoff +0 rw- ac av1, chain [av1 (root av0, parent av0, ch=0 act=1 ref=1), av0], "
        "[4,8) pgoff +4 rw- ac av2, chain [av2 (root av0, parent av0, ch=0 act=1 ref=1), av0]",
    ),
    (
        "cow-tree",
        [mm(0, 0, 4), wr(0, 0), wr(0, 1), fork(0), mm(1, 4, 4), wr(1, 0), fork(1), mp(2, 2, 1, "r")],
        "P0 [0,4) pgoff +0 rw- ac av0, chain [av0 (root, ch=2 act=1 ref=3)]; "
        "P1 [0,4) pgoff +0 rw- ac av1, chain [av1 (root av0, parent av0, ch=1 act=1 ref=1), av0], "
        "[4,8) pgoff +4 rw- ac none; "
        "P2 [0,2) pgoff +0 rw- ac av2, chain [av2 (root av0, parent av1, ch=0 act=3 ref=1), av1, av0], "
        "[2,3) pgoff +2 r-- ac av2, chain [av2, av1, av0], [3,4) pgoff +3 rw- ac av2, chain [av2, av1, av0], "
        "[4,8) pgoff +4 rw- ac none",
    ),
]
WINDOW = 16


@pytest.fixture(scope="module")
def oracle():
    from rmapfuzz.oracle.oracle import Oracle

    with Oracle(("L0", "L2", "L3"), strict=True) as o:
        yield o
    o.close()


@live
@pytest.mark.parametrize(("name", "steps", "final"), LIVE, ids=[c[0] for c in LIVE])
def test_known_sequences_agree_at_l3(oracle, name, steps, final):
    parsed = ops.parse_steps(steps, WINDOW)
    with oracle.sequence(WINDOW, len(parsed) + 1) as run:
        for op in parsed:
            div = run.step(op)
            assert div is None, str(div)
        assert cmp.graph_text(run.kernel_graph()) == final
        assert run.notes == []


@live
def test_a_perturbed_model_graph_is_caught(oracle):
    parsed = ops.parse_steps(LIVE[2][1], WINDOW)  # d1
    with oracle.sequence(WINDOW, len(parsed) + 1) as run:
        for op in parsed:
            assert run.step(op) is None
        k = run.runner.kernel
        child = k.mms[1].vmas[0].anon_vma
        assert child is not None
        child.num_active_vmas += 1
        div = run.compare_graph()
        assert div is not None and div.level == "L3" and div.step == len(parsed) - 1
        assert div.message == "P1 [0,4): num_active_vmas of anon_vma_chain[0] (av1) differs"
        assert "act=1" in div.kernel and "act=2" in div.model
        assert run.notes == []  # the second snapshot confirmed it
        child.num_active_vmas -= 1
        # the model's child VMA gets the parent's anon_vma: sharing differs
        k.mms[1].vmas[0].anon_vma = k.mms[0].vmas[0].anon_vma
        div = run.compare_graph()
        assert div is not None and div.message == "P1 [0,4): its anon_vma differs (which VMAs share an anon_vma)"


@live
def test_l3_in_a_whole_run_and_by_default():
    from rmapfuzz.oracle.oracle import DEFAULT_LEVELS, Oracle, probe_levels

    assert probe_levels()["L3"].available
    assert "L3" in DEFAULT_LEVELS
    with Oracle(graph_every_step=False) as o:
        assert "L3" in o.used and o.report()["levels"]["L3"]["available"]
        outcome = o.run(ops.parse_steps(LIVE[4][1], WINDOW), WINDOW)
        assert outcome.status == "agree", str(outcome.divergence)
    o.close()


@live
def test_links_are_released(oracle):
    parsed = ops.parse_steps(LIVE[4][1], WINDOW)
    assert oracle.run(parsed, WINDOW).status == "agree"
    assert oracle.graph is not None and oracle.graph.iterator.links == {}
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        oracle.run(parsed, WINDOW)
    assert len(os.listdir("/proc/self/fd")) == fds


@live
def test_a_rejected_program_gives_one_line():
    lay = btf.kernel_layout()
    # loads the VMA pointer and dereferences it without the NULL check the verifier demands
    code = BPF_LDX_MEM(BPF_DW, R7, R1, 16) + BPF_LDX_MEM(BPF_DW, R0, R7, 0) + BPF_MOV64_IMM(R0, 0) + BPF_EXIT_INSN()
    with pytest.raises(bpf.BpfError) as info:
        bpf.load_program(code, lay.prog_type_tracing, lay.attach_trace_iter, lay.iter_func_id)
    message = str(info.value)
    assert message.startswith("BPF_PROG_LOAD: ") and "(at insn 1)" in message and "\n" not in message
