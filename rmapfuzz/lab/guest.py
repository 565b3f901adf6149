"""``rmapfuzz oracle --vm NAME``: the differential oracle run inside a lab guest.

The Debian cloud kernels have no 9p, so the executor goes in by initramfs: this machine's Python
(its binary, libpython and the C libraries they load, at the same paths), the standard-library
modules and third-party packages an oracle run imports (found by running one, tiny, on this
machine: :func:`imported_files`), and the rmapfuzz package.  For the oracle's own swap
(rmapfuzz.oracle.swap) it also carries this machine's mkswap, swapon and swapoff (util-linux, and
their libraries) and the lab kernel's zram modules (``modules/``, kept by ``lab fetch``), which the
/init loads before the command runs.  The guest's /init runs ``python3 -m
rmapfuzz oracle ...`` with the same arguments less ``--vm`` (and ``--kernel`` defaulting to the lab
kernel's model generation); its output is read back off the serial console between the /init's
markers, and its exit code is the command's.  Divergences the guest saves come back as files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from rmapfuzz.lab import initramfs, qemu
from rmapfuzz.lab.images import LabKernel, guest_modules, lab_cache
from rmapfuzz.lab.report import START, clean_line, is_printk
from rmapfuzz.lab.repro import INIT_SOURCE, compile_static

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # .../rmapfuzz
GUEST_OUT = "/out"

_PROBE = r"""
import atexit, json, sys
def dump():
    files = sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})
    with open(sys.argv[1], "w") as f:
        json.dump(files, f)
atexit.register(dump)
from rmapfuzz.cli import main
main(["oracle", "--fuzz", "--sequences", "2", "--levels", "L0,L1,L2", "--seed", "1", "--corpus", sys.argv[2]])
"""


def imported_files() -> list[str]:
    """Every module file a short oracle campaign imports on this machine (it runs one)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "files.json"
        subprocess.run(
            [sys.executable, "-c", _PROBE, str(out), str(Path(tmp) / "div")],
            capture_output=True, check=False, timeout=300,
        )  # fmt: skip
        files: list[str] = json.loads(out.read_text())
    return files


def _site_dirs() -> list[str]:
    """This Python's package directories (a venv's site-packages is not where the binary looks)."""
    return [p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()]


def _ldd(binary: str) -> list[str]:
    done = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
    libs = []
    for line in done.stdout.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            libs.append(path)
    return libs


def payload_files() -> list[Path]:
    """The host files the guest needs, at their host paths."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files: set[Path] = set()
    python = Path(os.path.realpath(sys.executable))
    files.add(python)
    for lib in _ldd(str(python)):
        files.add(Path(lib))
    tops: set[Path] = {stdlib / "encodings"}
    for name in imported_files():
        path = Path(name).resolve()
        if path.suffix == ".so":
            files.add(path)
            files.update(Path(lib) for lib in _ldd(str(path)))
        try:
            rel = path.relative_to(stdlib)
            top = stdlib / rel.parts[0]
        except ValueError:
            site = next((Path(p) for p in sys.path if p and path.is_relative_to(Path(p).resolve())), None)
            if site is None:
                continue
            top = site.resolve() / path.relative_to(site.resolve()).parts[0]
        tops.add(top)
    tops.add(PACKAGE_ROOT)
    tops.add(PACKAGE_ROOT.parent / "strategies")  # a checkout's named strategies (rmapfuzz.strategy)
    for top in tops:
        if top.is_dir():
            files.update(p for p in top.rglob("*") if p.is_file())
        elif top.is_file():
            files.add(top)
    files.add(stdlib / "os.py")  # the landmark by which Python finds its prefix
    return sorted(files)


SWAP_TOOLS = ("mkswap", "swapon", "swapoff")
GUEST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def swap_tool_files() -> list[Path]:
    """This machine's mkswap, swapon and swapoff and the libraries they load (those it lacks
    are left out: the guest's oracle then says which one it has not)."""
    files: set[Path] = set()
    for tool in SWAP_TOOLS:
        found = shutil.which(tool, path=GUEST_PATH)
        if found is not None:
            files.add(Path(found))
            files.update(Path(lib) for lib in _ldd(found))
    return sorted(files)


def module_entries(modules: list[Path]) -> list[initramfs.Entry]:
    """/modules/NAME.ko for each module and /modules/order, the order the /init loads them in."""
    if not modules:
        return []
    order = "".join(f"{m.name}\n" for m in modules).encode()
    files = [initramfs.file(f"modules/{m.name}", m.read_bytes(), 0o644) for m in modules]
    return [initramfs.directory("modules"), *files, initramfs.file("modules/order", order, 0o644)]


def _entries(files: list[Path]) -> list[initramfs.Entry]:
    dirs: set[str] = set()
    entries: list[initramfs.Entry] = []
    for f in files:
        rel = str(f).lstrip("/")
        parts = rel.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                entries.append(initramfs.directory(d))
        mode = 0o755 if os.access(f, os.X_OK) else 0o644
        entries.append(initramfs.file(rel, f.read_bytes(), mode, mtime=int(f.stat().st_mtime)))
    return entries


def guest_initramfs(argv: list[str], inputs: list[Path], modules: list[Path] | None = None) -> bytes:
    """/init, the Python payload, the swap tools, the ``inputs`` (at their absolute paths), the
    ``modules`` to load (in order) and /cmdline running ``argv`` (a python -m rmapfuzz command)."""
    init = compile_static(INIT_SOURCE.read_text(), "init")
    python = os.path.realpath(sys.executable)
    path = ":".join([str(PACKAGE_ROOT.parent), *_site_dirs()])
    env = [
        f"PYTHONPATH={path}", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1", "NO_COLOR=1",
        "TERM=dumb", "HOME=/tmp", f"PATH={GUEST_PATH}", "COLUMNS=200",
    ]  # fmt: skip
    cmdline = "\n".join([*env, "--", python, *argv]) + "\n"
    files = set(payload_files()) | set(swap_tool_files()) | set(inputs)
    entries = initramfs.base_entries(init) + _entries(sorted(files)) + module_entries(modules or [])
    entries.append(initramfs.file("cmdline", cmdline.encode(), 0o644))
    return initramfs.pack(entries)


def oracle_argv(args: argparse.Namespace, kernel: LabKernel) -> list[str]:
    """The guest's ``rmapfuzz oracle`` arguments: the host's, less --vm, with the guest's corpus."""
    argv = ["-m", "rmapfuzz", "oracle", "--levels", args.levels, "--kernel", args.kernel or kernel.model]
    if args.strict:
        argv.append("--strict")
    if args.json:
        argv.append("--json")
    if args.fuzz:
        argv += ["--fuzz", "--budget", str(args.budget), "--strategy", args.strategy, "--corpus", GUEST_OUT]
        if args.sequences is not None:
            argv += ["--sequences", str(args.sequences)]
        if args.seed is not None:
            argv += ["--seed", str(args.seed)]
    if args.base is not None:
        argv += ["--base", str(args.base)]
    argv += ["--offset", str(args.offset), "--window-pages", str(args.window_pages)]
    return argv + [str(Path(f).resolve()) for f in args.files]


def parse_guest(console: str) -> tuple[list[str], int | None, dict[str, str]]:
    """The command's output lines, its exit code (None if it never ended) and the files it left."""
    # the kernel's own messages (a printk such as mremap's "attempted to duplicate a private
    # mapping" warning) interleave with the command's lines: they carry a timestamp, its lines do not
    lines = [clean_line(raw) for raw in console.splitlines() if not is_printk(raw)]
    out: list[str] = []
    files: dict[str, str] = {}
    code: int | None = None
    started = False
    current: str | None = None
    body: list[str] = []
    for line in lines:
        if not started:
            started = START in line
            continue
        if current is not None:
            if line == "rmapfuzz-lab: end file":
                files[current] = "\n".join(body).rstrip("\n") + "\n"
                current = None
            else:
                body.append(line)
            continue
        if line.startswith("rmapfuzz-lab: exit "):
            code = int(line.split()[-1])
        elif line.startswith("rmapfuzz-lab: signal "):
            code = 128 + int(line.split()[-1])
        elif line.startswith("rmapfuzz-lab: file "):
            current, body = line.split(" ", 2)[2], []
        elif code is None and not line.startswith("[") and not _kernel_line(line):
            out.append(line)
    return out, code, files


def _kernel_line(line: str) -> bool:
    """A kernel message without a timestamp (a console printed without one): these begin with a
    subsystem tag; the oracle's own lines never do."""
    return line.startswith(("audit:", "reboot:", "random:", "clocksource:", "tsc:"))


def run_oracle(args: argparse.Namespace, kernel: LabKernel, timeout: float) -> int:
    """Run the oracle in the guest, print its output here; its exit code (3 if it never ended)."""
    argv = oracle_argv(args, kernel)
    modules = guest_modules(kernel)
    if kernel.source == "debian" and not modules:
        print(f"rmapfuzz: warning: the cached {kernel.name} has no zram modules (fetched before the lab kept them): "
              f"the guest has no swap; run `{kernel.how_to_get()}`", file=sys.stderr)  # fmt: skip
    image = guest_initramfs(argv, [Path(f).resolve() for f in args.files], modules)
    booted = qemu.boot(kernel, image, timeout, memory_mb=2048)
    out, code, files = parse_guest(booted.console)
    for line in out:
        print(line)
    if files and args.fuzz and args.corpus:
        target = Path(args.corpus)
        target.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (target / Path(name).name).write_text(text)
            print(f"saved from the guest: {target / Path(name).name}")
    if code is None:
        log = lab_cache() / f"last-oracle-console-{kernel.name}.log"  # one per kernel: CI boots two at once
        log.write_text(booted.console)
        why = "timed out" if booted.timed_out else "ended"
        print(f"rmapfuzz: lab unavailable: the guest {why} after {booted.seconds:.0f} s without the oracle's exit "
              f"(console: {log})", file=sys.stderr)  # fmt: skip
        return 3
    return code
