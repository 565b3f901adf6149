"""Boot a lab kernel under QEMU with an initramfs and collect its serial console.

TCG only: this machine's /dev/kvm exists but nested KVM does not work.  The guest's /init restarts
the machine when it is done, and ``-no-reboot`` turns that restart (or a ``panic=-1`` reboot) into
QEMU exiting.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import attrs

from rmapfuzz.lab.images import LabKernel, LabUnavailable, require_image

QEMU = "qemu-system-x86_64"


@attrs.frozen
class Boot:
    console: str
    seconds: float
    timed_out: bool


def qemu_binary() -> str:
    found = shutil.which(QEMU)
    if found is None:
        raise LabUnavailable(f"{QEMU} is not installed: run `apt-get install qemu-system-x86`")
    return found


def command(kernel: LabKernel, image: Path, initrd: Path, memory_mb: int | None = None) -> list[str]:
    return [
        qemu_binary(), "-accel", "tcg", "-m", str(memory_mb or kernel.memory_mb), "-smp", "1",
        "-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio",
        "-kernel", str(image), "-initrd", str(initrd), "-append", kernel.append,
    ]  # fmt: skip


def boot(kernel: LabKernel, initramfs: bytes, timeout: float = 300.0, memory_mb: int | None = None) -> Boot:
    """Boot ``kernel`` with ``initramfs`` until QEMU exits or ``timeout`` seconds pass."""
    image = require_image(kernel)
    with tempfile.TemporaryDirectory(prefix="rmapfuzz-lab-") as tmp:
        initrd = Path(tmp) / "initrd.gz"
        initrd.write_bytes(initramfs)
        started = time.monotonic()
        with subprocess.Popen(
            command(kernel, image, initrd, memory_mb), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ) as proc:  # fmt: skip
            try:
                out, _ = proc.communicate(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                timed_out = True
    return Boot(out.decode("utf-8", "replace"), time.monotonic() - started, timed_out)
