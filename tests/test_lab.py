"""The real-kernel lab (rmapfuzz/lab, docs/lab.md) and the C export's lab side.

The pure logic (initramfs archive, console parsing, fail-nth mapping, the kernel list) runs
everywhere; compiling and running exported C needs a C compiler; booting needs qemu and a lab
kernel in the cache (lab/build-kernel, rmapfuzz lab fetch), and is skipped with the command that
would make it run otherwise.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from rmapfuzz import corpus, export, ops
from rmapfuzz.cli import main
from rmapfuzz.lab import images, initramfs, report

ROOT = Path(__file__).resolve().parent.parent
CVE = ROOT / "corpus" / "3.19--same-chain--fork.json"
COUNTERS = ROOT / "corpus" / "3.19--counters--mmap.json"
needs_cc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler (gcc)")


# ---- initramfs ----


def parse_newc(data: bytes) -> list[tuple[str, int, bytes, tuple[int, int]]]:
    """(name, mode, data, (rdevmajor, rdevminor)) of each member, the trailer included."""
    out, at = [], 0
    while True:
        assert data[at : at + 6] == b"070701"
        fields = [int(data[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_at = at + 110
        name = data[name_at : name_at + namesize - 1].decode()
        body_at = name_at + namesize + (-(110 + namesize) % 4)
        out.append((name, fields[1], data[body_at : body_at + filesize], (fields[9], fields[10])))
        at = body_at + filesize + (-filesize % 4)
        if name == initramfs.TRAILER:
            return out


def test_initramfs_members():
    image = initramfs.initramfs(b"\x7fELF-init", {"repro": b"\x7fELF-repro-bytes"})
    members = {name: (mode, data, rdev) for name, mode, data, rdev in parse_newc(gzip.decompress(image))}
    assert list(members)[-1] == initramfs.TRAILER
    mode, data, _ = members["init"]
    assert stat.S_ISREG(mode) and mode & 0o111 and data == b"\x7fELF-init"
    assert members["repro"][1] == b"\x7fELF-repro-bytes"
    mode, _, rdev = members["dev/console"]
    assert stat.S_ISCHR(mode) and rdev == (5, 1)
    assert stat.S_ISDIR(members["dev"][0])
    assert initramfs.initramfs(b"x") == initramfs.initramfs(b"x")  # same inputs, same bytes


@pytest.mark.skipif(shutil.which("cpio") is None, reason="no cpio(1) to cross-check the archive")
def test_initramfs_reads_with_cpio():
    image = gzip.decompress(initramfs.initramfs(b"init", {"repro": b"abc"}))
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=image, capture_output=True, check=True)
    assert listing.stdout.decode().split() == ["dev", "dev/console", "proc", "sys", "init", "repro"]


# ---- console ----

KASAN_LOG = """\
[    0.000000] Linux version 6.1.192 (rmapfuzz@lab)
rmapfuzz-lab: start
# step 13: exit(P4)
[    3.101010] ==================================================================
[    3.101234] BUG: KASAN: use-after-free in down_read_trylock+0x1a/0x60
[    3.101300] Read of size 8 at addr ffff888003a1c0c8 by task repro/59
[    3.101400]
[    3.101500] CPU: 0 PID: 59 Comm: repro Not tainted 6.1.192 #1
[    3.101600] Call Trace:
[    3.101700]  <TASK>
[    3.101800]  folio_lock_anon_vma_read+0x5b/0x1f0
# rmap walk: page_idle walked 3 pages, MADV_PAGEOUT took 1
PASS
rmapfuzz-lab: exit 0
[    3.500000] reboot: Restarting system
"""

FAULT_INJECTION_LOG = """\
rmapfuzz-lab: start
[    2.000000] FAULT_INJECTION: forcing a failure.
[    2.000001] name failslab, interval 1, probability 0, space 0, times -1
[    2.000002] CPU: 0 PID: 60 Comm: repro Not tainted 6.1.192 #1
[    2.000003] Call Trace:
[    2.000004]  should_fail_ex+0x1/0x2
# step 3: mmap(P0, [0,1), rw) [fail-nth 1: its allocation #1 fails] = -12
PASS
rmapfuzz-lab: exit 0
"""


def test_console_kasan_report_is_a_crash():
    c = report.read_console(KASAN_LOG)
    assert c.verdict == "crashed" and c.started and c.status == "exit 0"
    assert c.title == "BUG: KASAN: use-after-free in down_read_trylock+0x1a/0x60"
    assert c.report[1] == "Read of size 8 at addr ffff888003a1c0c8 by task repro/59"
    assert "folio_lock_anon_vma_read+0x5b/0x1f0" in "\n".join(c.report)
    assert c.output[-1] == "PASS"


def test_console_fault_injection_is_not_a_crash():
    c = report.read_console(FAULT_INJECTION_LOG)
    assert c.verdict == "clean" and c.report == () and c.status == "exit 0"
    assert any("[fail-nth 1" in line for line in c.output)


@pytest.mark.parametrize(
    ("line", "title"),
    [
        ("[ 1.0] general protection fault, probably for non-canonical address 0xdead: 0000 [#1]", "general protection"),
        ("[ 1.0] kernel BUG at mm/rmap.c:421!", "kernel BUG at mm/rmap.c:421!"),
        ("[ 1.0] WARNING: CPU: 0 PID: 7 at mm/rmap.c:445 unlink_anon_vmas+0x1/0x2", "WARNING: CPU: 0 PID: 7"),
        ("[ 1.0] BUG: unable to handle page fault for address: ffff8880", "BUG: unable to handle page fault"),
        ("[ 1.0] BUG: Bad rss-counter state mm:00000000 type:MM_ANONPAGES val:1", "BUG: Bad rss-counter"),
    ],
)
def test_console_other_crashes(line, title):
    c = report.read_console(f"rmapfuzz-lab: start\n{line}\nrmapfuzz-lab: signal 9\n")
    assert c.verdict == "crashed" and c.title.startswith(title) and c.status == "signal 9"


def test_console_boot_failure_is_unknown():
    log = "[ 0.9] Kernel panic - not syncing: No working init found.  Try passing init= option\n"
    c = report.read_console(log)
    assert c.verdict == "unknown" and not c.started and c.report == ()
    assert report.read_console("rmapfuzz-lab: start\n# step 0: mmap\n").verdict == "unknown"  # never ended


# ---- fail-nth mapping ----


def test_fail_points_counters_entry():
    rep = corpus.load(COUNTERS)  # fail_alloc nth=1, then mmap splits a faulted VMA: the clone's avc fails
    points = export.fail_points(rep.kernel, rep.steps, rep.window)
    assert (points.at, points.in_clone, points.unfired) == ({3: 1}, frozenset({3}), ())


def test_fail_points_countdown_across_steps():
    steps: list[ops.Op] = [
        ops.FailAlloc(3),
        ops.Mmap(0, 0, 2, "rw"),  # no allocation
        ops.Write(0, 0),  # anon_vma_prepare: an anon_vma_chain and an anon_vma (2 of 3)
        ops.Fork(0),  # the third: the first allocation of the fork
    ]
    points = export.fail_points("6.0", steps, 4)
    assert (points.at, points.in_clone, points.unfired) == ({3: 1}, frozenset({3}), ())  # fork clones first
    points = export.fail_points("6.0", [*steps[:2], ops.FailAlloc(2), ops.Write(0, 0)], 4)
    assert (points.at, points.in_clone) == ({3: 2}, frozenset())  # anon_vma_prepare's anon_vma: one try
    points = export.fail_points("6.0", [ops.FailAlloc(9), ops.Mmap(0, 0, 1, "rw")], 4)
    assert (points.at, points.unfired) == ({}, (0,))


def test_fail_alloc_exports_as_fail_nth():
    rep = corpus.load(COUNTERS)
    text = export.to_c(rep, "counters.json")
    assert "/proc/thread-self/fail-nth" in text
    assert "{ 3, 0, RUN, -ENOMEM, 1, 1, " in text  # step 3 runs with fail-nth 1 (both tries) and fails
    assert "fail_alloc(nth=1): injected at step 3 as fail-nth 1" in text or "injected at step 3" in text


# ---- running exported C on this machine ----


def _compile(tmp_path: Path, source: str) -> Path:
    c_file = tmp_path / "repro.c"
    c_file.write_text(source)
    binary = tmp_path / "repro"
    subprocess.run(["gcc", "-Wall", "-Werror", "-O0", "-o", str(binary), str(c_file)], check=True)
    return binary


@needs_cc
def test_cve_chain_runs_and_walks_the_rmap(tmp_path):
    binary = _compile(tmp_path, export.to_c(corpus.load(CVE), "cve.json"))
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout
    assert "# rmap walk: " in run.stdout and "MADV_PAGEOUT took" in run.stdout
    assert run.stdout.strip().endswith("PASS")


@needs_cc
def test_fail_alloc_program_runs(tmp_path):
    binary = _compile(tmp_path, export.to_c(corpus.load(COUNTERS), "counters.json"))
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert run.returncode in (0, 1), run.stdout
    injectable = Path("/proc/thread-self/fail-nth").exists()
    assert ("the injected failure did not fire" in run.stdout) != injectable or injectable


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        kids = {p for p, pp in parents.items() if pp == pid}
        todo += list(kids - found)
        found |= kids
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@needs_cc
def test_killing_the_controller_leaves_no_worker(tmp_path):
    """The controller blocks on a full one-page stdout pipe in the middle of the steps, with its six
    workers (a fork tree, two of them orphans it adopted) waiting for commands; it is killed; every
    worker must be gone within seconds."""
    steps: list[ops.Op] = [ops.Mmap(0, 0, 2, "rw"), ops.Write(0, 0), ops.Fork(0), ops.Fork(1), ops.Fork(1), ops.Fork(3)]
    steps += [ops.Fork(2), ops.Exit(1), ops.Fork(4)]
    steps += [ops.Mprotect(k % 6, 0, 1, "r" if k % 2 else "rw") for k in range(200)]
    binary = _compile(tmp_path, export.to_c(corpus.Reproducer("current", 4, steps), "kill test"))
    proc = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
        deadline = time.monotonic() + 30
        workers: set[int] = set()
        while time.monotonic() < deadline and len(workers) < 6:
            time.sleep(0.2)
            workers = _descendants(proc.pid)
        assert len(workers) >= 6, "the program never had its workers running"
        assert proc.poll() is None, "the controller finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.1)
        assert not [p for p in workers if _alive(p)], "workers outlived their controller"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


# ---- the kernel list, the CLI ----


def test_newest_package():
    names = ["linux-image-6.1.0-9-cloud-amd64-unsigned", "linux-image-6.1.0-57-cloud-amd64-unsigned",
             "linux-image-6.12.113+deb12-cloud-amd64-unsigned", "linux-image-6.1.0-57-cloud-amd64"]  # fmt: skip
    assert images.newest_package(images.KERNELS["debian-6.1"].package, names) == names[1]
    assert images.newest_package(images.KERNELS["debian-6.12"].package, names) == names[2]


def test_lab_kernels_lists_cached_and_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RMAPFUZZ_LAB_CACHE", str(tmp_path))
    (tmp_path / "kernels" / "debian-6.1").mkdir(parents=True)
    (tmp_path / "kernels" / "debian-6.1" / "vmlinuz").write_bytes(b"image")
    (tmp_path / "kernels" / "debian-6.1" / "package").write_text("linux-image-6.1.0-57-cloud-amd64-unsigned\n")
    (tmp_path / "kernels" / "debian-6.1" / "modules").mkdir()
    (tmp_path / "kernels" / "debian-6.1" / "modules" / "order").write_text("zsmalloc.ko\nzram.ko\n")
    (tmp_path / "kernels" / "debian-6.12").mkdir(parents=True)  # fetched before the lab kept zram's modules
    (tmp_path / "kernels" / "debian-6.12" / "vmlinuz").write_bytes(b"image")
    assert main(["lab", "kernels", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"kasan-6.1", "kasan-6.1-g", "kasan-6.1-e", "debian-6.1", "debian-6.12"}
    assert rows["debian-6.1"]["cached"] and rows["debian-6.1"]["provenance"].startswith("linux-image-6.1.0-57")
    assert not rows["debian-6.12"]["cached"]  # lab/ci-oracle fetch fetches it again
    assert main(["lab", "kernels"]) == 0
    assert "cached without the zram modules the guest's swap needs: rmapfuzz lab fetch debian-6.12" in (
        capsys.readouterr().out
    )
    assert not rows["kasan-6.1-g"]["cached"] and rows["kasan-6.1-g"]["get"] == "lab/build-kernel kasan-6.1-g"
    assert rows["debian-6.1"]["model"] == "6.1.192" and rows["kasan-6.1-g"]["model"] == "3.19"


def _module_tree(root: Path, files: dict[str, list[str]], aliases: str = "") -> Path:
    """A lib/modules/VERSION tree: each module file (xz-compressed if so named, its name as its
    bytes) and modules.dep listing ``files``' dependencies."""
    import lzma

    tree = root / "lib" / "modules" / "6.x"
    for name in files:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        data = f"module {name}".encode()
        (tree / name).write_bytes(lzma.compress(data) if name.endswith(".xz") else data)
    (tree / "modules.dep").write_text("".join(f"{f}: {' '.join(d)}\n" for f, d in files.items()))
    (tree / "modules.alias").write_text(aliases)
    return tree


def test_zram_modules_as_6_1_has_them(tmp_path):
    """6.1: zram needs zsmalloc (modules.dep) and, through the crypto API, the module that
    provides crypto-lzo-rle (modules.alias), which the guest has no modprobe to load on demand."""
    tree = _module_tree(tmp_path, {
        "kernel/drivers/block/zram/zram.ko": ["kernel/mm/zsmalloc.ko"],
        "kernel/mm/zsmalloc.ko": [], "kernel/crypto/lzo-rle.ko": [], "kernel/crypto/zstd.ko": [],
        "kernel/fs/other.ko": ["kernel/mm/zsmalloc.ko"],
    }, "alias crypto-lzo-rle lzo_rle\nalias crypto-zstd zstd\n")  # fmt: skip
    found = images.zram_modules(tree, {"CONFIG_ZRAM_DEF_COMP": "lzo-rle"})
    assert [str(f.relative_to(tree)) for f in found] == [
        "kernel/crypto/lzo-rle.ko", "kernel/mm/zsmalloc.ko", "kernel/drivers/block/zram/zram.ko"
    ]  # fmt: skip
    zstd = images.zram_modules(tree, {"CONFIG_ZRAM_DEF_COMP": "zstd"})
    assert zstd[0].name == "zstd.ko"


def test_zram_modules_as_6_12_has_them(tmp_path):
    """6.12: zram's own backends (CONFIG_ZRAM_BACKEND_*) are in zram.ko and its dependencies, so no
    crypto module; the closure is in dependency order and comes out decompressed, with its order."""
    tree = _module_tree(tmp_path, {
        "kernel/drivers/block/zram/zram.ko.xz": [
            "kernel/mm/zsmalloc.ko.xz", "kernel/lib/lz4/lz4hc_compress.ko.xz", "kernel/lib/lz4/lz4_compress.ko.xz"
        ],
        "kernel/lib/lz4/lz4hc_compress.ko.xz": ["kernel/lib/lz4/lz4_compress.ko.xz"],
        "kernel/lib/lz4/lz4_compress.ko.xz": [], "kernel/mm/zsmalloc.ko.xz": [],
        "kernel/crypto/lz4.ko.xz": ["kernel/lib/lz4/lz4_compress.ko.xz"],
    }, "alias crypto-lz4 lz4\n")  # fmt: skip
    found = images.zram_modules(tree, {"CONFIG_ZRAM_DEF_COMP": "lz4", "CONFIG_ZRAM_BACKEND_LZ4": "y"})
    names = [images.module_name(f.name) for f in found]
    assert names == ["lz4_compress", "lz4hc_compress", "zsmalloc", "zram"]
    images.keep_modules(found, tmp_path / "kept")
    assert (tmp_path / "kept" / "order").read_text().split() == [f"{n}.ko" for n in names]
    assert (tmp_path / "kept" / "zram.ko").read_bytes() == b"module kernel/drivers/block/zram/zram.ko.xz"
    built_in = _module_tree(tmp_path / "built-in", {"kernel/mm/zsmalloc.ko": []})
    assert images.zram_modules(built_in, {"CONFIG_ZRAM_DEF_COMP": "lz4"}) == []  # CONFIG_ZRAM=y: nothing to load


def test_the_guest_carries_the_modules_and_the_swap_tools(tmp_path):
    from rmapfuzz.lab import guest

    (tmp_path / "zram.ko").write_bytes(b"zram")
    (tmp_path / "zsmalloc.ko").write_bytes(b"zsmalloc")
    entries = guest.module_entries([tmp_path / "zsmalloc.ko", tmp_path / "zram.ko"])
    by_name = {e.name: e.data for e in entries}
    assert by_name["modules/order"] == b"zsmalloc.ko\nzram.ko\n" and by_name["modules/zram.ko"] == b"zram"
    assert guest.module_entries([]) == []
    tools = {p.name for p in guest.swap_tool_files()}
    for tool in guest.SWAP_TOOLS:
        if shutil.which(tool, path=guest.GUEST_PATH):
            assert tool in tools and "libc.so.6" in tools


def test_lab_repro_unavailable_says_what_fixes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RMAPFUZZ_LAB_CACHE", str(tmp_path))
    assert main(["lab", "repro", str(CVE), "--vm", "kasan-6.1-g"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run `lab/build-kernel kasan-6.1-g`" in err
    assert main(["lab", "repro", str(CVE), "--vm", "nosuch"]) == 3
    assert "rmapfuzz lab kernels lists" in capsys.readouterr().err
    assert main(["lab", "repro", str(tmp_path / "missing.json"), "--vm", "debian-6.1"]) == 2


# ---- booting (needs qemu and the kernel in the lab cache) ----


def _lab_kernel(name: str) -> images.LabKernel:
    kernel = images.KERNELS[name]
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("no qemu-system-x86_64: apt-get install qemu-system-x86")
    if not kernel.image().is_file():
        pytest.skip(f"{name} is not in the lab cache: {kernel.how_to_get()}")
    if shutil.which("gcc") is None:
        pytest.skip("no gcc")
    return kernel


LAB_VERDICTS = [("kasan-6.1-g", "crashed"), ("kasan-6.1", "clean"), ("debian-6.1", "clean")]


@pytest.mark.parametrize(("vm", "verdict"), LAB_VERDICTS)
def test_cve_2022_42703_on_lab_kernels(vm, verdict, capsys):
    _lab_kernel(vm)
    code = main(["lab", "repro", str(CVE), "--vm", vm, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == verdict, result
    assert code == {"crashed": 1, "clean": 0}[verdict]
    if verdict == "crashed":
        assert result["report"][0].startswith("BUG: KASAN: use-after-free")


# ---- oracle --vm: what goes in, what comes back ----


def test_guest_console_parsing():
    from rmapfuzz.lab import guest

    console = (
        "[    0.1] Linux version 6.1.0-57-cloud-amd64\n"
        "rmapfuzz-lab: start\n"
        "kernel 6.1.0-57-cloud-amd64 vs model 6.0; levels L0,L2\n"
        "[    3.2] random: crng init done\n"
        "[    3.3] python3.11 (96): attempted to duplicate a private mapping with mremap.  This is not supported.\n"
        "DIVERGE  /x.json  step 6 result: the step returned ok on the kernel, EINVAL in the model\n"
        "rmapfuzz-lab: exit 1\n"
        "rmapfuzz-lab: file 6.0--divergence--mremap.json\n"
        '{"format": "rmapfuzz-reproducer",\n'
        ' "steps": []}\n'
        "rmapfuzz-lab: end file\n"
        "[    4.0] reboot: Restarting system\n"
    )
    out, code, files = guest.parse_guest(console)
    assert code == 1
    assert out == ["kernel 6.1.0-57-cloud-amd64 vs model 6.0; levels L0,L2", out[1]] and out[1].startswith("DIVERGE")
    assert files == {"6.0--divergence--mremap.json": '{"format": "rmapfuzz-reproducer",\n "steps": []}\n'}
    assert guest.parse_guest("rmapfuzz-lab: start\nhalf\n")[1] is None  # it never ended: exit 3


def test_guest_oracle_arguments():
    from rmapfuzz.cli import build_parser
    from rmapfuzz.lab import guest

    args = build_parser().parse_args(
        ["oracle", "--vm", "debian-6.1", "--levels", "L0,L2", "--fuzz", "--sequences", "5", "--seed", "3"]
    )
    argv = guest.oracle_argv(args, images.KERNELS["debian-6.1"])
    assert argv[:3] == ["-m", "rmapfuzz", "oracle"] and "--vm" not in argv
    assert argv[argv.index("--kernel") + 1] == "6.1.192"  # the lab kernel's model generation
    assert argv[argv.index("--corpus") + 1] == guest.GUEST_OUT and argv[argv.index("--seed") + 1] == "3"
    args = build_parser().parse_args(["oracle", "--vm", "debian-6.12", "--kernel", "6.16", str(CVE)])
    argv = guest.oracle_argv(args, images.KERNELS["debian-6.12"])
    assert argv[argv.index("--kernel") + 1] == "6.16" and argv[-1] == str(CVE) and "--fuzz" not in argv


def test_oracle_vm_unavailable(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RMAPFUZZ_LAB_CACHE", str(tmp_path))
    assert main(["oracle", "--vm", "debian-6.12", str(CVE)]) == 3
    assert "run `rmapfuzz lab fetch debian-6.12`" in capsys.readouterr().err
    assert main(["oracle", "--vm", "debian-6.12", str(tmp_path / "nope.json")]) == 2  # bad input first


def test_oracle_in_a_guest(capsys):
    kernel = _lab_kernel("debian-6.1")
    del kernel
    code = main(["oracle", "--vm", "debian-6.1", "--levels", "L0,L2", str(CVE)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "vs model 6.1.192;" in out and "agree" in out


@pytest.mark.parametrize("vm", ["debian-6.1", "debian-6.12"])
def test_the_guest_swaps(vm, tmp_path, capsys):
    """The guest loads zram and swaps on it: a pageout, a fork, a swap-in by the child and a write
    by the parent compared at every level, --strict (without swap, L4 would refuse: exit 3)."""
    kernel = _lab_kernel(vm)
    if not kernel.cached():
        pytest.skip(f"the cached {vm} has no zram modules: {kernel.how_to_get()}")
    steps = [
        {"op": "mmap", "pid": 0, "start": 0, "pages": 2, "prot": "rw"}, {"op": "write", "pid": 0, "addr": 0},
        {"op": "madvise", "pid": 0, "start": 0, "pages": 1, "advice": "pageout"}, {"op": "fork", "pid": 0},
        {"op": "read", "pid": 1, "addr": 0}, {"op": "write", "pid": 0, "addr": 0},
    ]  # fmt: skip
    entry = tmp_path / "pageout.json"
    entry.write_text(json.dumps({"kernel": "current", "window": 8, "steps": steps}))
    code = main(["oracle", "--vm", vm, "--strict", "--json", "--levels", "L0,L1,L2,L3,L4", str(entry)])
    out = capsys.readouterr().out
    assert code == 0, out
    result = json.loads(out.splitlines()[-1])
    assert result["swap"]["active"] and result["swap"]["how"].startswith("/dev/zram0"), result
    assert result["status"] == "agree" and result["levels_used"] == ["L0", "L1", "L2", "L3", "L4"]


def test_a_module_that_does_not_load_leaves_the_guest_without_swap(tmp_path, monkeypatch, capsys):
    """A module the guest kernel refuses is one line of output, and the oracle runs on without
    swap (L4 then observed in part)."""
    from rmapfuzz.lab import guest

    _lab_kernel("debian-6.12")
    (tmp_path / "zram.ko").write_bytes(b"not an ELF module")
    monkeypatch.setattr(guest, "guest_modules", lambda kernel: [tmp_path / "zram.ko"])
    assert main(["oracle", "--vm", "debian-6.12", "--levels", "L0,L4", str(CVE)]) == 0
    out = capsys.readouterr().out
    assert "rmapfuzz-lab: module zram.ko not loaded (" in out and "the guest has no swap" in out, out
    assert "warning: level L4 observed in part: no swap" in out and "agree" in out


CASES = sorted((ROOT / "lab" / "cases").glob("*.json"))
# Beside lab/cases: the corpus entries that diverged from the 6.0 model on debian-6.1 (docs/lab.md)
DIVERGED_FROM_6_0 = [
    ROOT / "corpus" / "6.16--merge-superset--mremap-maymove-fixed-dontunmap.json",
    ROOT / "corpus" / "2.6.34-rc3--merge-superset--mmap.json",
]


@pytest.mark.parametrize(("vm", "model"), [("debian-6.1", "6.1.192"), ("debian-6.12", "6.12.118")])
def test_the_stable_generations_agree_with_the_debian_kernels(vm, model, capsys):
    """Every lab case (MREMAP_DONTUNMAP as 5.7, 5.12 and the 2026 stable fixes have it; 6.1's
    mmap_region()) agrees with the lab kernel's own generation at L0-L4 (docs/lab.md)."""
    _lab_kernel(vm)
    files = [*CASES, *DIVERGED_FROM_6_0]
    code = main(["oracle", "--vm", vm, "--levels", "L0,L1,L2,L3,L4", *map(str, files)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"vs model {model};" in out and out.count("agree ") == len(files)


def test_mainline_6_12_diverges_from_debian_6_12_at_the_stable_fixes(capsys):
    """Without the stable fixes the same kernel diverges: the self-merge at L0 (two VMAs on the
    kernel, one in the model), the pgoff reset at L3 (pgoff +4 on the kernel, +0 in the model)."""
    _lab_kernel("debian-6.12")
    files = [ROOT / "lab" / "cases" / name for name in ("dontunmap-self-merge.json", "dontunmap-pgoff-reset.json")]
    code = main(["oracle", "--vm", "debian-6.12", "--kernel", "6.12", "--levels", "L0,L1,L2,L3", *map(str, files)])
    out = capsys.readouterr().out
    assert code == 1, out
    lines = [ln for ln in out.splitlines() if ln.startswith("DIVERGE")]
    assert len(lines) == 2 and "step 1 L0" in lines[0] and "step 3 L3" in lines[1], out


@pytest.mark.parametrize(("vm", "verdict"), [("kasan-6.1-e", "crashed"), ("kasan-6.1", "clean")])
def test_fail_alloc_bug_e_on_lab_kernels(vm, verdict, capsys):
    """fail_alloc through fail-nth (both tries of anon_vma_clone's allocation): with 3fe89b3e2a7b
    reverted the split's failed clone takes one from num_active_vmas, and freeing the anon_vma at
    exit warns (DEBUG_VM); as shipped, the same injection is clean."""
    _lab_kernel(vm)
    code = main(["lab", "repro", str(COUNTERS), "--vm", vm, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == verdict, result
    assert code == {"crashed": 1, "clean": 0}[verdict]
    if verdict == "crashed":
        assert result["report"][0].startswith("WARNING: CPU: 0") and "mm/rmap.c" in result["report"][0]


def test_lab_repro_c_file_that_does_not_compile(tmp_path, capsys):
    _lab_kernel("debian-6.1")
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return undeclared; }\n")
    assert main(["lab", "repro", str(bad), "--vm", "debian-6.1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not compile" in err


# ---- lab/ci-oracle ----

# A stand-in for `python -m rmapfuzz oracle --vm NAME ...`: each guest says it started, waits for the
# other to start (so guests run one after the other never meet: the first times out), then answers
# with the exit code the test gives its kernel.
FAKE_ORACLE = """#!/usr/bin/env bash
while [ $# -gt 0 ] && [ "$1" != --vm ]; do shift; done
k=$2 other=debian-6.12
[ "$k" = debian-6.1 ] || other=debian-6.1
touch "$LAB_TEST_DIR/started-$k"
for _ in $(seq 200); do [ -e "$LAB_TEST_DIR/started-$other" ] && break; sleep 0.05; done
[ -e "$LAB_TEST_DIR/started-$other" ] || { echo "$k: ran alone"; exit 9; }
echo "guest $k done"
exit "$(cat "$LAB_TEST_DIR/code-$k")"
"""


@pytest.mark.parametrize(("codes", "expected"), [((0, 0), 0), ((0, 1), 1), ((3, 1), 3)])
def test_ci_oracle_runs_the_guests_at_once_and_fails_with_the_first_failure(tmp_path, codes, expected):
    """Both guests run side by side (each waits to see the other start); their output comes whole,
    in the kernels' order; the run's exit code is the first kernel's failure, or 0."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_ORACLE)
    fake.chmod(0o755)
    for kernel, code in zip(("debian-6.1", "debian-6.12"), codes, strict=True):
        (tmp_path / f"code-{kernel}").write_text(str(code))
    env = {**os.environ, "PYTHON": str(fake), "LAB_TEST_DIR": str(tmp_path),
           "RMAPFUZZ_LAB_CACHE": str(tmp_path / "cache")}  # fmt: skip
    done = subprocess.run([str(ROOT / "lab" / "ci-oracle"), "run"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    out = done.stdout
    assert "ran alone" not in out
    assert out.index("guest debian-6.1 done") < out.index("lab/ci-oracle: debian-6.1 in") < \
        out.index("guest debian-6.12 done") < out.index("lab/ci-oracle: debian-6.12 in")  # fmt: skip
    assert done.returncode == expected
