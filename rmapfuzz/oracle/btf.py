"""A minimal reader of BTF (the kernel's BPF Type Format), for struct layouts at run time.

The running kernel describes its own types in ``/sys/kernel/btf/vmlinux``.  The L3 observer
(:mod:`rmapfuzz.oracle.bpf`) needs a handful of facts from it: where ``vm_start``,
``anon_vma_chain``, ``anon_vma->root`` ... sit in this kernel's structs, the BTF id of the
``task_vma`` iterator's function (the program's ``attach_btf_id``), and a few UAPI enum values
(helper numbers, program and attach types).  :class:`Btf` parses the type section once into
flat arrays and answers those questions by name; :func:`kernel_layout` bundles what the
iterator program needs and is cached per process.

The format (``include/uapi/linux/btf.h``): a header (magic ``0xeb9f``, version, flags, header
length, then offset/length of the type and string sections), a sequence of variable-length type
records numbered from 1 (id 0 is ``void``), and a string table of NUL-terminated names.  Every
record starts with ``name_off``, ``info`` (``vlen`` in bits 0-15, ``kind`` in bits 24-28,
``kind_flag`` in bit 31) and ``size`` or ``type``; what follows depends on the kind.
"""

from __future__ import annotations

import functools
import struct
from array import array

import attrs

BTF_MAGIC = 0xEB9F
VMLINUX = "/sys/kernel/btf/vmlinux"

# kinds
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO, VAR, DATASEC = 9, 10, 11, 12, 13, 14, 15
FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = 16, 17, 18, 19

KIND_NAMES = {
    INT: "int",
    PTR: "ptr",
    ARRAY: "array",
    STRUCT: "struct",
    UNION: "union",
    ENUM: "enum",
    FWD: "fwd",
    TYPEDEF: "typedef",
    VOLATILE: "volatile",
    CONST: "const",
    RESTRICT: "restrict",
    FUNC: "func",
    FUNC_PROTO: "func_proto",
    VAR: "var",
    DATASEC: "datasec",
    FLOAT: "float",
    DECL_TAG: "decl_tag",
    TYPE_TAG: "type_tag",
    ENUM64: "enum64",
}

# bytes of kind-specific data after the 12-byte common record: (fixed, per vlen entry)
_TRAILER = {
    INT: (4, 0),
    ARRAY: (12, 0),
    STRUCT: (0, 12),
    UNION: (0, 12),
    ENUM: (0, 8),
    FUNC_PROTO: (0, 8),
    VAR: (4, 0),
    DATASEC: (0, 12),
    DECL_TAG: (4, 0),
    ENUM64: (0, 12),
}
_MODIFIERS = frozenset({TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG})
_SIZED = frozenset({INT, STRUCT, UNION, ENUM, ENUM64, FLOAT})


class BtfError(ValueError):
    """Malformed BTF, or a type or member that is not there."""


@attrs.frozen
class Member:
    """One struct/union member: ``bit_offset`` from the start of its struct, ``bitfield_size`` 0
    unless it is a bitfield."""

    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int


@attrs.frozen
class Field:
    """Where a (possibly nested) member lies in its outermost struct, in bytes."""

    offset: int
    size: int


class Btf:
    """The parsed type section of one BTF blob."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BtfError("BTF: shorter than its header")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", data, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"BTF: bad magic {magic:#x} (byte order other than little-endian is not supported)")
        if version != 1:
            raise BtfError(f"BTF: unknown version {version}")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        types_start = hdr_len + type_off
        strings_start = hdr_len + str_off
        if types_start + type_len > len(data) or strings_start + str_len > len(data):
            raise BtfError("BTF: sections run past the end of the data")
        self.data = data
        self.strings = data[strings_start : strings_start + str_len]
        # per type id (index 0 = void): where its record starts, and its common fields
        self.record = array("q", [0])
        self.name_off = array("I", [0])
        self.info = array("I", [0])
        self.size_type = array("I", [0])
        pos, end = types_start, types_start + type_len
        unpack = struct.Struct("<III").unpack_from
        while pos < end:
            if pos + 12 > end:
                raise BtfError(f"BTF: truncated type record at byte {pos}")
            name_off, info, size_type = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            if kind not in KIND_NAMES:
                raise BtfError(f"BTF: unknown kind {kind} at type {len(self.record)}")
            fixed, per = _TRAILER.get(kind, (0, 0))
            self.record.append(pos)
            self.name_off.append(name_off)
            self.info.append(info)
            self.size_type.append(size_type)
            pos += 12 + fixed + per * (info & 0xFFFF)
        if pos != end:
            raise BtfError("BTF: the last type record runs past the type section")
        self._by_name: dict[str, list[int]] | None = None

    # ---- basic accessors ----

    @property
    def count(self) -> int:
        """Number of type ids, void included."""
        return len(self.record)

    def string(self, off: int) -> str:
        end = self.strings.find(b"\0", off)
        if end < 0:
            raise BtfError(f"BTF: string at {off} is not terminated")
        return self.strings[off:end].decode()

    def kind(self, type_id: int) -> int:
        return 0 if type_id == 0 else (self.info[type_id] >> 24) & 0x1F

    def vlen(self, type_id: int) -> int:
        return self.info[type_id] & 0xFFFF

    def name(self, type_id: int) -> str:
        return "" if type_id == 0 else self.string(self.name_off[type_id])

    def ids_named(self, name: str) -> list[int]:
        if self._by_name is None:
            by_off: dict[int, list[int]] = {}
            for tid in range(1, self.count):
                off = self.name_off[tid]
                if off:
                    by_off.setdefault(off, []).append(tid)
            self._by_name = {self.string(off): ids for off, ids in by_off.items()}
        return self._by_name.get(name, [])

    def find(self, name: str, *kinds: int) -> int:
        """The id of the type called ``name`` of one of ``kinds``; for structs and unions a
        complete definition wins over a forward declaration."""
        ids = [t for t in self.ids_named(name) if self.kind(t) in kinds]
        if not ids:
            what = "/".join(KIND_NAMES[k] for k in kinds)
            raise BtfError(f"BTF: no {what} named {name!r}")
        complete = [t for t in ids if self.kind(t) not in (STRUCT, UNION) or self.vlen(t) or self.size_type[t]]
        return (complete or ids)[0]

    def resolve(self, type_id: int) -> int:
        """Skip typedefs and qualifiers."""
        seen = 0
        while self.kind(type_id) in _MODIFIERS:
            type_id = self.size_type[type_id]
            seen += 1
            if seen > 64:
                raise BtfError("BTF: a typedef/qualifier loop")
        return type_id

    def size(self, type_id: int) -> int:
        """sizeof the type."""
        tid = self.resolve(type_id)
        kind = self.kind(tid)
        if kind in _SIZED:
            return self.size_type[tid]
        if kind == PTR:
            return 8
        if kind == ARRAY:
            elem, _index, nelems = struct.unpack_from("<III", self.data, self.record[tid] + 12)
            return self.size(int(elem)) * int(nelems)
        raise BtfError(f"BTF: type {tid} ({KIND_NAMES.get(kind, kind)}) has no size")

    def members(self, type_id: int) -> list[Member]:
        tid = self.resolve(type_id)
        if self.kind(tid) not in (STRUCT, UNION):
            raise BtfError(f"BTF: type {tid} is not a struct or union")
        kind_flag = self.info[tid] >> 31
        out = []
        pos = self.record[tid] + 12
        for _ in range(self.vlen(tid)):
            name_off, mtype, offset = struct.unpack_from("<III", self.data, pos)
            pos += 12
            if kind_flag:
                out.append(Member(self.string(name_off), mtype, offset & 0xFFFFFF, offset >> 24))
            else:
                out.append(Member(self.string(name_off), mtype, offset, 0))
        return out

    def enum_values(self, type_id: int) -> dict[str, int]:
        tid = self.resolve(type_id)
        kind = self.kind(tid)
        pos = self.record[tid] + 12
        out: dict[str, int] = {}
        signed = bool(self.info[tid] >> 31)
        for _ in range(self.vlen(tid)):
            if kind == ENUM:
                name_off, raw = struct.unpack_from("<II", self.data, pos)
                pos += 8
                value = raw - (1 << 32) if signed and raw >> 31 else raw
            elif kind == ENUM64:
                name_off, lo, hi = struct.unpack_from("<III", self.data, pos)
                pos += 12
                value = lo | hi << 32
                value = value - (1 << 64) if signed and value >> 63 else value
            else:
                raise BtfError(f"BTF: type {tid} is not an enum")
            out[self.string(name_off)] = value
        return out

    # ---- by name ----

    def _lookup(self, type_id: int, name: str) -> tuple[int, Member] | None:
        """``name`` among the members of ``type_id``, looking through anonymous structs and unions;
        (bit offset from ``type_id``'s start, the member)."""
        for m in self.members(type_id):
            if m.name == name:
                return m.bit_offset, m
            if not m.name and self.kind(self.resolve(m.type_id)) in (STRUCT, UNION):
                inner = self._lookup(m.type_id, name)
                if inner is not None:
                    return m.bit_offset + inner[0], inner[1]
        return None

    def field(self, struct_name: str, path: str) -> Field:
        """``path`` (``"a"`` or ``"a.b"``) in ``struct struct_name``: byte offset and size.
        Anonymous members are looked through; a bitfield or an unaligned member is an error."""
        tid = self.find(struct_name, STRUCT, UNION)
        bits = 0
        member: Member | None = None
        for part in path.split("."):
            if member is not None:
                tid = member.type_id
            found = self._lookup(tid, part)
            if found is None:
                raise BtfError(f"BTF: struct {struct_name} has no member {path!r}")
            bits += found[0]
            member = found[1]
        assert member is not None
        if member.bitfield_size or bits % 8:
            raise BtfError(f"BTF: {struct_name}.{path} is a bitfield")
        return Field(bits // 8, self.size(member.type_id))

    def struct_size(self, struct_name: str) -> int:
        return self.size(self.find(struct_name, STRUCT, UNION))

    def enum_value(self, enum_name: str, value_name: str) -> int:
        values = self.enum_values(self.find(enum_name, ENUM, ENUM64))
        if value_name not in values:
            raise BtfError(f"BTF: enum {enum_name} has no {value_name}")
        return values[value_name]

    def enum_value_or(self, enum_name: str, value_name: str, default: int) -> int:
        """The enum value, or ``default`` (its value in the uapi headers) where BTF lacks it."""
        try:
            return self.enum_value(enum_name, value_name)
        except BtfError:
            return default


# ---- what the L3 iterator needs ----


@attrs.frozen
class KernelLayout:
    """This kernel's offsets and ids for the ``task_vma`` iterator program (all in bytes)."""

    vma_size: int
    vm_start: Field
    vm_end: Field
    vm_flags: Field
    vm_pgoff: Field
    vma_anon_vma: Field
    vma_chain: Field  # vm_area_struct.anon_vma_chain (a list_head)
    av_size: int
    av_root: Field
    av_parent: Field
    av_refcount: Field
    av_num_children: Field
    av_num_active_vmas: Field
    avc_anon_vma: Field
    avc_same_vma: Field  # anon_vma_chain.same_vma (a list_head)
    list_next: Field  # list_head.next
    task_tgid: Field
    iter_func_id: int  # BTF id of func bpf_iter_task_vma: the program's attach_btf_id
    helper_probe_read_kernel: int
    helper_seq_write: int
    prog_type_tracing: int
    attach_trace_iter: int


def layout_from(btf: Btf) -> KernelLayout:
    """The iterator's facts from ``btf``; :class:`BtfError` names what is missing (e.g.
    ``num_children``, which kernels before 6.2 do not have)."""
    return KernelLayout(
        vma_size=btf.struct_size("vm_area_struct"),
        vm_start=btf.field("vm_area_struct", "vm_start"),
        vm_end=btf.field("vm_area_struct", "vm_end"),
        vm_flags=btf.field("vm_area_struct", "vm_flags"),
        vm_pgoff=btf.field("vm_area_struct", "vm_pgoff"),
        vma_anon_vma=btf.field("vm_area_struct", "anon_vma"),
        vma_chain=btf.field("vm_area_struct", "anon_vma_chain"),
        av_size=btf.struct_size("anon_vma"),
        av_root=btf.field("anon_vma", "root"),
        av_parent=btf.field("anon_vma", "parent"),
        av_refcount=btf.field("anon_vma", "refcount"),
        av_num_children=btf.field("anon_vma", "num_children"),
        av_num_active_vmas=btf.field("anon_vma", "num_active_vmas"),
        avc_anon_vma=btf.field("anon_vma_chain", "anon_vma"),
        avc_same_vma=btf.field("anon_vma_chain", "same_vma"),
        list_next=btf.field("list_head", "next"),
        task_tgid=btf.field("task_struct", "tgid"),
        iter_func_id=btf.find("bpf_iter_task_vma", FUNC),
        helper_probe_read_kernel=btf.enum_value_or("bpf_func_id", "BPF_FUNC_probe_read_kernel", 113),
        helper_seq_write=btf.enum_value_or("bpf_func_id", "BPF_FUNC_seq_write", 127),
        prog_type_tracing=btf.enum_value_or("bpf_prog_type", "BPF_PROG_TYPE_TRACING", 26),
        attach_trace_iter=btf.enum_value_or("bpf_attach_type", "BPF_TRACE_ITER", 28),
    )


@functools.cache
def kernel_layout(path: str = VMLINUX) -> KernelLayout:
    """:func:`layout_from` the running kernel's BTF (parsed once per process).  Raises OSError
    if the file cannot be read, :class:`BtfError` if something is missing."""
    with open(path, "rb") as fh:
        data = fh.read()
    return layout_from(Btf(data))
