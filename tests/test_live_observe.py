"""Unit tests of the live oracle's parsers and comparisons (no live kernel needed)."""

import os
import struct

import pytest

from rmapfuzz import ops
from rmapfuzz.kernels import boot
from rmapfuzz.oracle import compare, observe
from rmapfuzz.oracle.oracle import OracleError, load_reproducer, parse_levels, skip_reason

BASE = 0x2000_0000_0000
PG = 4096


def line(start, end, perms="rw-p"):
    return f"{BASE + start * PG:x}-{BASE + end * PG:x} {perms} 00000000 00:00 0 "


# in address order, as the kernel lists them (the parsers stop past the window)
MAPS = "\n".join(
    [
        "1000000000-1000001000 r--p 00000000 fd:00 124   /usr/lib/low.so",
        line(0, 4),
        line(4, 5, "r--p"),
        line(6, 8, "---p"),
        line(8, 9, "rwxp"),
        "55d0c0000000-55d0c0001000 r--p 00000000 fd:00 123   /usr/bin/python3",
        "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0   [stack]",
    ]
)


def test_parse_maps_line():
    m = observe.parse_maps_line("55d0c0000000-55d0c0001000 r--p 00001000 fd:00 123   /usr/bin/python3")
    assert (m.start, m.end, m.perms, m.offset, m.path) == (
        0x55D0C0000000,
        0x55D0C0001000,
        "r--p",
        0x1000,
        "/usr/bin/python3",
    )
    with pytest.raises(ValueError):
        observe.parse_maps_line("garbage")


def test_parse_maps_window_only():
    assert observe.parse_maps(MAPS, BASE, 16) == [(0, 4, "rw"), (4, 5, "r"), (6, 8, ""), (8, 9, "rwx")]
    with pytest.raises(observe.StrayMapping):  # [8,9) is in the guard page of an 8-page window
        observe.parse_maps(MAPS, BASE, 8)


def test_parse_maps_stray_at_the_edge():
    with pytest.raises(observe.StrayMapping):
        observe.parse_maps(line(6, 9), BASE, 8)
    with pytest.raises(observe.StrayMapping):
        observe.parse_maps(line(-1, 0), BASE, 8)


def test_maps_is_read_only_up_to_the_window(tmp_path):
    """read_maps_to() stops at the first complete line past the window; what it returns parses to
    the same window VMAs as the whole file."""
    maps = tmp_path / "maps"
    maps.write_text(MAPS + "\n" + "\n".join(f"7f{i:010x}-7f{i + 1:010x} r--p 00000000 00:00 0" for i in range(400)))
    fd = os.open(maps, os.O_RDONLY)
    try:
        text = observe.read_maps_to(fd, BASE + 17 * PG)
        assert len(text) < len(maps.read_text()) and "/usr/bin/python3" in text
        assert observe.parse_maps(text, BASE, 16) == observe.parse_maps(maps.read_text(), BASE, 16)
        assert observe.read_maps_to(fd, 1 << 62) == maps.read_text()  # nothing past: all of it
    finally:
        os.close(fd)


def test_window_is_free():
    assert observe.window_is_free(BASE + 100 * PG, 8, MAPS) is None
    assert observe.window_is_free(BASE, 2, MAPS) is not None
    assert observe.window_is_free(BASE + 10 * PG, 4, MAPS) is None
    assert observe.window_is_free(BASE + 9 * PG, 4, MAPS) is not None  # guard page


SMAPS = f"""{line(0, 4)}
Size:                 16 kB
Rss:                   4 kB
Anonymous:             4 kB
VmFlags: rd wr mr mw me ac
{line(4, 8, "r--p")}
Size:                 16 kB
Anonymous:             0 kB
VmFlags: rd mr mw me dc wf
55d0c0000000-55d0c0001000 r--p 00000000 fd:00 123   /usr/bin/python3
Anonymous:             0 kB
VmFlags: rd mr mw me
"""


def test_parse_smaps():
    got = observe.parse_smaps(SMAPS, BASE, 8)
    assert [(v.start, v.end, v.prot, v.anonymous_kb) for v in got] == [(0, 4, "rw", 4), (4, 8, "r", 0)]
    assert got[0].flags & observe.COMPARED_FLAGS == {"ac"}
    assert got[1].flags & observe.COMPARED_FLAGS == {"dc", "wf"}


def test_decode_pagemap():
    raw = [0x8100000000129F17, 0x8000000000003B34, 0, (1 << 62) | 0x41]
    entries = observe.decode_pagemap(struct.pack("<4Q", *raw))
    assert entries[0] == observe.PagemapEntry(True, False, True, 0x129F17)
    assert entries[1] == observe.PagemapEntry(True, False, False, 0x3B34)
    assert not entries[2].present
    assert entries[3].swapped
    zero = {0x3B34}
    assert [observe.page_state(e, zero) for e in entries] == [0x129F17, "0", "-", observe.SwapEntry(0x41)]


def test_canonical_classes_rename_by_first_appearance():
    a = observe.canonical_classes({(0, 0): 900, (0, 1): "0", (1, 0): 900, (1, 1): 17, (1, 2): "-"})
    b = observe.canonical_classes({(0, 0): 5, (0, 1): "0", (1, 0): 5, (1, 1): 3, (1, 2): "-"})
    assert a == b == {(0, 0): "p0", (0, 1): "0", (1, 0): "p0", (1, 1): "p1", (1, 2): "-"}
    c = observe.canonical_classes({(0, 0): 5, (0, 1): "0", (1, 0): 6, (1, 1): 3, (1, 2): "-"})
    assert c != a


def test_compare_result_and_layouts():
    assert compare.compare_result("ok", "ok") is None
    assert compare.compare_result("EFAULT", "ok") == (
        "EFAULT",
        "ok",
        "the step returned EFAULT on the kernel, ok in the model",
    )
    same = {0: [(0, 4, "rw")]}
    assert compare.compare_layouts(same, same) is None
    mismatch = compare.compare_layouts({0: [(0, 8, "rw")]}, {0: [(0, 4, "rw"), (4, 8, "rw")]})
    assert mismatch is not None
    k, m, msg = mismatch
    assert (k, m) == ("P0 [0,8) rw", "P0 [0,4) rw, [4,8) rw") and "P0" in msg
    mismatch = compare.compare_layouts({0: []}, {0: [], 1: []})
    assert mismatch is not None and mismatch[2] == "the live processes differ"


def test_compare_flags_with_swap_tolerance():
    kernel = {0: [compare.FlagsView(0, 4, frozenset({"ac"}), 8, 8)]}
    assert compare.compare_flags(kernel, {0: [compare.FlagsView(0, 4, frozenset({"ac"}), 4, 8)]}) is None
    assert compare.compare_flags(kernel, {0: [compare.FlagsView(0, 4, frozenset({"ac"}), 4, 4)]}) is not None
    assert compare.compare_flags(kernel, {0: [compare.FlagsView(0, 4, frozenset(), 8, 8)]}) is not None


def test_swap_entries_are_classes_of_their_own():
    kernel = {(0, 0): observe.SwapEntry(9), (1, 0): observe.SwapEntry(9), (1, 1): 9}
    assert observe.canonical_classes(kernel) == {(0, 0): "s0", (1, 0): "s0", (1, 1): "p0"}
    slot, page = object(), object()
    model = {(0, 0): observe.SwapEntry(slot), (1, 0): observe.SwapEntry(object()), (1, 1): page}
    assert compare.compare_pages(kernel, model, 2, swap_tolerant=False) is not None  # not shared in the model
    model[(1, 0)] = model[(0, 0)]
    assert compare.compare_pages(kernel, model, 2, swap_tolerant=False) is None


def test_page_history_tells_reuse_from_copy():
    page, copy = object(), object()
    h = compare.PageHistory()
    assert h.check({(0, 0): 100}, {(0, 0): page}, 1) is None
    # the kernel kept PFN 100 (reused in place) where the model made a copy
    found = h.check({(0, 0): 100}, {(0, 0): copy}, 1)
    assert found is not None and "reused in place on the kernel" in found[2]
    h = compare.PageHistory()
    h.check({(0, 0): 100}, {(0, 0): page}, 1)
    found = h.check({(0, 0): 101}, {(0, 0): page}, 1)
    assert found is not None and "copied on the kernel" in found[2]
    h = compare.PageHistory()
    h.check({(0, 0): 100}, {(0, 0): page}, 1)
    h.check({(0, 0): "-"}, {(0, 0): "-"}, 1)  # both gone: forgotten, the PFN may come back
    assert h.check({(0, 0): 100}, {(0, 0): copy}, 1) is None


def test_page_side_names_follow_the_graph():
    g = compare.Graph({0: [compare.GraphVma(0, 2, 0, 0, "A", ("A",))]}, {"A": compare.AvState("A", "A", 0, 1, 1)})
    same = {(0, 0): compare.PageSide("A", 0)}
    assert compare.compare_page_side(same, same, g, g) is None
    other = {(0, 0): compare.PageSide("B", 0)}
    found = compare.compare_page_side(other, same, g, g)
    assert found is not None and "anon_vma differs" in found[2]
    moved = {(0, 0): compare.PageSide("A", 1)}
    found = compare.compare_page_side(moved, same, g, g)
    assert found is not None and "index differs" in found[2]


def test_compare_pages_swap_tolerant():
    model = {(0, 0): observe.SwapEntry(object()), (0, 1): ("page", 1), (1, 1): ("page", 1)}
    kernel = {(0, 0): 77, (0, 1): 5, (1, 1): 5}
    assert compare.compare_pages(kernel, model, 2, swap_tolerant=True) is None
    assert compare.compare_pages(kernel, model, 2, swap_tolerant=False) is not None
    unshared = {(0, 0): 77, (0, 1): 5, (1, 1): 6}
    assert compare.compare_pages(unshared, model, 2, swap_tolerant=True) is not None


def test_model_predictions_from_a_model_kernel():
    k = boot("current", 8)
    for op in ops.parse_steps(
        [
            {"op": "mmap", "pid": 0, "start": 0, "pages": 4, "prot": "rw"},
            {"op": "write", "pid": 0, "addr": 0},
            {"op": "read", "pid": 0, "addr": 1},
            {"op": "fork", "pid": 0},
            {"op": "mprotect", "pid": 1, "start": 2, "pages": 2, "prot": "r"},
        ],
        8,
    ):
        k.apply(op)
    assert compare.model_layouts(k) == {0: [(0, 4, "rw")], 1: [(0, 2, "rw"), (2, 4, "r")]}
    classes = observe.canonical_classes(compare.model_page_states(k, 4))
    assert classes[(0, 0)] == classes[(1, 0)] == "p0"
    assert classes[(0, 1)] == "0" and classes[(0, 2)] == "-"
    flags = compare.model_flags(k, swap_tolerant=False)
    assert flags[0][0].flags == {"ac"} and flags[0][0].anon_lo == 4


def test_parse_levels_and_skip_reason():
    assert parse_levels("l2") == ("L0", "L2")
    with pytest.raises(OracleError):
        parse_levels("L7")
    assert skip_reason([ops.FailAlloc(1)]) is not None
    assert skip_reason([ops.Fork(0)]) is None


def test_load_divergence_reproducer(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(
        '{"kernel": "current", "window": 8, "kind": "divergence", '
        '"violation": {"invariant": "divergence", "step": 0, "message": "L0: x"}, '
        '"steps": [{"op": "fork", "pid": 0}]}'
    )
    rep = load_reproducer(path)
    assert rep.kind == "divergence" and rep.violation == {"invariant": "divergence", "step": 0, "message": "L0: x"}
