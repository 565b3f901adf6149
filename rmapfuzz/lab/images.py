"""The real kernels the lab boots: where each comes from, where it is cached, which model
generation it is compared with.

Everything lives under the lab cache (``$RMAPFUZZ_LAB_CACHE``, default ``~/.cache/rmapfuzz/lab``),
outside the repository: ``kernels/NAME/`` holds a ``bzImage`` (built by ``lab/build-kernel``) or a
``vmlinuz`` (extracted from a Debian package by :func:`fetch_debian`) with, for a Debian kernel,
``modules/``: the modules its zram swap needs, decompressed, and ``modules/order``, the order the
guest's /init loads them in (:func:`zram_modules`; Debian builds zram as a module).
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

COMMON_APPEND = "console=ttyS0 panic=-1 loglevel=6"
# failslab: SLAB_FAILSLAB on the two rmap caches only (fail-nth then counts just their allocations);
# slab_nomerge keeps them from merging into another cache of the same size
FAILSLAB_APPEND = "slub_debug=A,anon_vma,anon_vma_chain slab_nomerge"


MODULE_ORDER = "order"  # in modules/: one file name a line, in load order


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

    def modules(self, cache: Path | None = None) -> Path:
        """The folder of the modules the guest loads (``order`` lists them), for a Debian kernel."""
        return self.image(cache).parent / "modules"

    def cached(self) -> bool:
        """Everything the lab needs is in the cache: the image and, for a Debian kernel, the zram
        modules (a cache fetched before they were kept lacks them: ``lab fetch`` again)."""
        if not self.image().is_file():
            return False
        return self.source != "debian" or (self.modules() / MODULE_ORDER).is_file()

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
        trees = sorted((root / "lib" / "modules").glob("*/"))
        if not trees:
            raise LabUnavailable(f"{package} has no /lib/modules/*")
        keep_modules(zram_modules(trees[0], read_config(image.parent / ".config")), kernel.modules())
    (image.parent / "package").write_text(package + "\n")
    return image


# ---- the modules zram needs (Debian: CONFIG_ZRAM=m, CONFIG_ZSMALLOC=m, a compressor) ----


def module_name(path: str) -> str:
    """A module's name from its file (``kernel/lib/lzo/lzo-rle.ko.xz`` -> ``lzo_rle``)."""
    return Path(path).name.split(".ko")[0].replace("-", "_")


def modules_dep(tree: Path) -> dict[str, list[str]]:
    """``modules.dep`` of a module tree (``lib/modules/VERSION``) as file -> its dependencies'
    files; a package ships none (depmod writes it on install), so depmod writes it here."""
    dep = tree / "modules.dep"
    if not dep.is_file():
        if shutil.which("depmod") is None:
            raise LabUnavailable("fetching a Debian kernel's modules needs depmod (apt-get install kmod)")
        base = tree.parent.parent.parent  # root/lib/modules/VERSION -> root
        done = subprocess.run(["depmod", "-b", str(base), tree.name], capture_output=True, text=True, check=False)
        if done.returncode != 0 or not dep.is_file():
            raise LabUnavailable(f"depmod -b {base} {tree.name} failed: {done.stderr.strip()[-200:]}")
    out: dict[str, list[str]] = {}
    for line in dep.read_text().splitlines():
        name, _, deps = line.partition(":")
        if name:
            out[name.strip()] = deps.split()
    return out


def aliases(tree: Path) -> dict[str, str]:
    """``modules.alias``: alias -> module name (the first that claims it)."""
    out: dict[str, str] = {}
    path = tree / "modules.alias"
    for line in path.read_text().splitlines() if path.is_file() else ():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "alias":
            out.setdefault(parts[1], parts[2].replace("-", "_"))
    return out


def read_config(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.startswith("CONFIG_"))
    return {k: v.strip('"') for k, v in pairs}


def zram_modules(tree: Path, config: Mapping[str, str]) -> list[Path]:
    """The module files zram needs, in load order (each after its dependencies): zram and what
    modules.dep says it needs, and the compressor it uses by default (``CONFIG_ZRAM_DEF_COMP``).
    Up to 6.11 zram compresses through the crypto API, which asks for ``crypto-<alg>``
    (modules.alias) by request_module, and the guest has no modprobe to answer; from 6.12 zram's
    own backends are part of zram.ko and its dependencies.  Empty if zram is built in."""
    deps = modules_dep(tree)
    by_name = {module_name(f): f for f in deps}
    wanted = ["zram"] if "zram" in by_name else []
    own_backends = any(k.startswith("CONFIG_ZRAM_BACKEND_") for k in config)  # 6.12 on
    if wanted and not own_backends:
        crypto = aliases(tree).get(f"crypto-{config.get('CONFIG_ZRAM_DEF_COMP', 'lzo-rle')}")
        if crypto is not None and crypto in by_name:  # absent: built in, or zram's own backend
            wanted.insert(0, crypto)
    order: list[str] = []

    def visit(file: str) -> None:
        if file in order:
            return
        for need in reversed(deps.get(file, [])):  # modprobe loads the last listed first
            visit(need)
        order.append(file)

    for name in wanted:
        visit(by_name[name])
    return [tree / f for f in order]


def keep_modules(files: Sequence[Path], folder: Path) -> None:
    """Copy ``files`` into ``folder`` decompressed (the guest's finit_module gets no flag to
    decompress, and a kernel may lack the decompressor), then write the load order (last, so that
    a fetch cut short leaves no order)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    names = []
    for f in files:
        name = f"{module_name(f.name)}.ko"
        data = f.read_bytes()
        if f.name.endswith(".ko.xz"):
            data = lzma.decompress(data)
        elif not f.name.endswith(".ko"):
            raise LabUnavailable(f"{f.name}: a module compressed in a way the lab does not read (.ko or .ko.xz)")
        (folder / name).write_bytes(data)
        names.append(name)
    (folder / MODULE_ORDER).write_text("".join(f"{n}\n" for n in names))


def guest_modules(kernel: LabKernel) -> list[Path]:
    """The cached module files for the guest, in load order ([] when the cache has none)."""
    order = kernel.modules() / MODULE_ORDER
    if not order.is_file():
        return []
    return [kernel.modules() / n for n in order.read_text().split()]


def kernel_config(kernel: LabKernel) -> dict[str, str]:
    """The cached image's kernel configuration (CONFIG_X -> value, unquoted), {} if unknown."""
    return read_config(kernel.image().parent / ".config")


def provenance(kernel: LabKernel) -> str:
    """What the cached image is: the Debian package, or the build's inputs and time."""
    folder = kernel.image().parent
    if (folder / "package").is_file():
        return (folder / "package").read_text().strip()
    if (folder / "build-seconds").is_file():
        return f"built in {(folder / 'build-seconds').read_text().strip()} s"
    return ""
