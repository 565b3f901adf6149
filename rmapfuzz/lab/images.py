"""The real kernels the lab boots: where each comes from, where it is cached, which model
generation it is compared with.

Everything lives under the lab cache (``$RMAPFUZZ_LAB_CACHE``, default ``~/.cache/rmapfuzz/lab``),
outside the repository: ``kernels/NAME/`` holds a ``bzImage`` (built by ``lab/build-kernel``) or a
``vmlinuz`` (extracted from a Debian package by :func:`fetch_debian`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import attrs

COMMON_APPEND = "console=ttyS0 panic=-1 loglevel=6"
# failslab: SLAB_FAILSLAB on the two rmap caches only (fail-nth then counts just their allocations);
# slab_nomerge keeps them from merging into another cache of the same size
FAILSLAB_APPEND = "slub_debug=A,anon_vma,anon_vma_chain slab_nomerge"


class LabUnavailable(RuntimeError):
    """The lab cannot run this (no qemu, no kernel image, ...): one line saying what fixes it."""


@attrs.frozen
class LabKernel:
    name: str
    describe: str
    model: str  # the model generation it is compared with
    model_note: str  # why that one
    source: str  # "build" (lab/build-kernel NAME) or "debian" (a package name pattern)
    package: str = ""  # for "debian": a regular expression over package names
    append: str = COMMON_APPEND
    memory_mb: int = 512

    def image(self, cache: Path | None = None) -> Path:
        """Where the kernel image is (or would be)."""
        folder = (cache or lab_cache()) / "kernels" / self.name
        return folder / ("bzImage" if self.source == "build" else "vmlinuz")

    def how_to_get(self) -> str:
        if self.source == "build":
            return f"lab/build-kernel {self.name}"
        return f"rmapfuzz lab fetch {self.name}"


_KASAN_NOTE = (
    "6.1 (mmap_region() and mremap growth as 6.1's) with the 2026 stable fixes of MREMAP_DONTUNMAP that 6.1.192 "
    "carries (docs/lab.md)"
)
KERNELS: dict[str, LabKernel] = {
    k.name: k
    for k in (
        LabKernel(
            "kasan-6.1",
            "Debian's linux-source-6.1 as shipped (with 2555283eb40d), KASAN + failslab, built here",
            "6.1.192",
            _KASAN_NOTE,
            "build",
            append=f"{COMMON_APPEND} {FAILSLAB_APPEND}",
        ),
        LabKernel(
            "kasan-6.1-g",
            "the same with 2555283eb40d's reuse rule reverted (bug G, CVE-2022-42703), built here",
            "3.19",
            "the reverted rule is 3.19's degree rule (bug G); 6.0 is the same kernel with the fix",
            "build",
            append=f"{COMMON_APPEND} {FAILSLAB_APPEND}",
        ),
        LabKernel(
            "kasan-6.1-e",
            "the same with bug E's fix 3fe89b3e2a7b reverted (anon_vma_clone's ENOMEM path), built here",
            "3.19-rc4",
            "bug E is 3.19-rc4's (its degree underflow is num_active_vmas' on 6.1); needs fail_alloc",
            "build",
            append=f"{COMMON_APPEND} {FAILSLAB_APPEND}",
        ),
        LabKernel(
            "debian-6.1",
            "Debian 12's 6.1 cloud kernel, as packaged",
            "6.1.192",
            _KASAN_NOTE,
            "debian",
            package=r"^linux-image-6\.1\.0-(\d+)-cloud-amd64-unsigned$",
        ),
        LabKernel(
            "debian-6.12",
            "Debian 12's backported 6.12 cloud kernel, as packaged",
            "6.12.118",
            "6.12's mm/vma.c merge code (before 6.16's three-way merge rule, 879bca0a2c4f) with the 2026 stable "
            "fixes of MREMAP_DONTUNMAP that 6.12.118 carries (docs/lab.md)",
            "debian",
            package=r"^linux-image-6\.12\.(\d+)\+deb12-cloud-amd64-unsigned$",
        ),
    )
}


def lab_cache() -> Path:
    return Path(os.environ.get("RMAPFUZZ_LAB_CACHE") or Path.home() / ".cache" / "rmapfuzz" / "lab")


def get(name: str) -> LabKernel:
    try:
        return KERNELS[name]
    except KeyError:
        raise LabUnavailable(f"no lab kernel {name!r} (rmapfuzz lab kernels lists {', '.join(KERNELS)})") from None


def require_image(kernel: LabKernel) -> Path:
    image = kernel.image()
    if not image.is_file():
        raise LabUnavailable(f"{kernel.name} is not in the lab cache ({image}): run `{kernel.how_to_get()}`")
    return image


def newest_package(pattern: str, names: list[str]) -> str | None:
    """The package among ``names`` matching ``pattern`` with the highest number in its group 1."""
    found = [(int(m.group(1)), n) for n in names if (m := re.match(pattern, n))]
    return max(found)[1] if found else None


def fetch_debian(kernel: LabKernel) -> Path:
    """apt-get download the newest package for ``kernel`` and extract its vmlinuz into the cache."""
    if shutil.which("apt-cache") is None or shutil.which("dpkg-deb") is None:
        raise LabUnavailable("fetching a Debian kernel needs apt-cache, apt-get and dpkg-deb (a Debian system)")
    search = ["apt-cache", "search", "--names-only", "^linux-image-.*-cloud-amd64-unsigned$"]
    listing = subprocess.run(search, capture_output=True, text=True, check=False)
    names = [line.split(" ", 1)[0] for line in listing.stdout.splitlines()]
    package = newest_package(kernel.package, names)
    if package is None:
        raise LabUnavailable(f"apt-cache lists no package like {kernel.package}: run `apt-get update`")
    image = kernel.image()
    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run(["apt-get", "download", package], cwd=tmp, capture_output=True, text=True, check=False)
        debs = list(Path(tmp).glob("*.deb"))
        if got.returncode != 0 or not debs:
            raise LabUnavailable(f"apt-get download {package} failed: {got.stderr.strip()[-200:]}")
        root = Path(tmp) / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(root)], check=True)
        found = sorted((root / "boot").glob("vmlinuz-*"))
        if not found:
            raise LabUnavailable(f"{package} has no /boot/vmlinuz-*")
        image.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[0], image)
        configs = sorted((root / "boot").glob("config-*"))
        if configs:
            shutil.copyfile(configs[0], image.parent / ".config")
    (image.parent / "package").write_text(package + "\n")
    return image


def kernel_config(kernel: LabKernel) -> dict[str, str]:
    """The cached image's kernel configuration (CONFIG_X -> value), {} if unknown."""
    path = kernel.image().parent / ".config"
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.startswith("CONFIG_"))
    return {k: v for k, v in pairs}


def provenance(kernel: LabKernel) -> str:
    """What the cached image is: the Debian package, or the build's inputs and time."""
    folder = kernel.image().parent
    if (folder / "package").is_file():
        return (folder / "package").read_text().strip()
    if (folder / "build-seconds").is_file():
        return f"built in {(folder / 'build-seconds').read_text().strip()} s"
    return ""
