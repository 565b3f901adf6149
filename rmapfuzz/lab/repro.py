"""``rmapfuzz lab repro``: run a C reproducer as the /init's child on a lab kernel and say whether
the kernel crashed.

The reproducer (an exported C file, or a reproducer JSON exported on the fly) and the guest's
/init (``init.c`` beside this file) are compiled with ``gcc -static``; the initramfs holds both.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import attrs

from rmapfuzz.lab import initramfs, qemu
from rmapfuzz.lab.images import LabKernel, LabUnavailable, lab_cache
from rmapfuzz.lab.report import Console, read_console

INIT_SOURCE = Path(__file__).with_name("init.c")


class CompileError(ValueError):
    """The reproducer does not compile (bad input)."""


@attrs.frozen
class ReproResult:
    kernel: str
    console: Console
    seconds: float
    timed_out: bool
    log: str  # the whole console

    @property
    def exit_code(self) -> int:
        return {"crashed": 1, "clean": 0}.get(self.console.verdict, 3)

    def summary(self) -> str:
        c = self.console
        if c.verdict == "crashed":
            return f"crashed: {self.kernel}: {c.title} ({self.seconds:.0f} s)"
        if c.verdict == "clean":
            last = c.output[-1] if c.output else ""
            ended = f"the reproducer ended with {c.status} ({last})"
            return f"clean: {self.kernel}: no kernel report; {ended} in {self.seconds:.0f} s"
        why = f"timed out after {self.seconds:.0f} s" if self.timed_out else "QEMU exited"
        where = "after /init started" if c.started else "before /init ran (the kernel did not boot)"
        return f"unknown: {self.kernel}: {why} {where} without the reproducer's exit"


def compile_static(source: str, name: str) -> bytes:
    """``gcc -static`` the C source; the executable's bytes (cached by source hash)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise LabUnavailable("gcc is not installed: run `apt-get install build-essential`")
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    cached = lab_cache() / "bin" / f"{name}-{digest}"
    if cached.is_file():
        return cached.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{name}.c"
        src.write_text(source)
        out = Path(tmp) / name
        done = subprocess.run([gcc, "-O1", "-static", "-o", str(out), str(src)], capture_output=True, text=True)
        if done.returncode != 0:
            first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip()[:200])
            raise CompileError(f"{name}.c does not compile: {first}")
        data = out.read_bytes()
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    return data


def guest_initramfs(repro_source: str) -> bytes:
    init = compile_static(INIT_SOURCE.read_text(), "init")
    repro = compile_static(repro_source, "repro")
    return initramfs.initramfs(init, {"repro": repro})


def run(kernel: LabKernel, repro_source: str, timeout: float = 300.0) -> ReproResult:
    image = guest_initramfs(repro_source)
    booted = qemu.boot(kernel, image, timeout)
    return ReproResult(kernel.name, read_console(booted.console), booted.seconds, booted.timed_out, booted.console)
