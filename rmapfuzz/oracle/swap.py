"""A swap device of the oracle's own, for the length of a run, so that ``MADV_PAGEOUT`` really
swaps anonymous pages out (the kernel's reclaim rmap walk, ``try_to_unmap``) and a fault on a
swap pte really swaps them back in.

With no swap on, the kernel cannot push an anonymous page out and the oracle would have to leave
every cell the model swapped out uncompared.  :func:`own_swap` uses a compressed RAM disk
(``CONFIG_ZRAM``): a free ``/dev/zramN`` (``disksize`` 0, not swapped on) or one it hot-adds
through ``/sys/class/zram-control``, sized :data:`SIZE`, ``mkswap`` and ``swapon``; on the way
out, Ctrl-C and SIGTERM included, ``swapoff``, ``reset`` and (if it added the device)
``hot_remove``, which leaves the machine as it was.  When swap is already on it changes nothing.

zram is a synchronous block device (``SWP_SYNCHRONOUS_IO``): a page written out is freed at once
by the same reclaim pass, and a swap-in of an entry with one user skips the swap cache, so what
the oracle sees after a step does not wait on I/O.

Any other swap-in reads ahead: the entries of the neighbouring swap ptes go into the swap cache,
and a later fault on one of them maps that page as it is (on the root anon_vma unless its swap pte
is exclusive).  The model does this with the kernel's defaults (``vm.page-cluster`` 3, VMA-based
readahead on, ``kernels/v6_0.py``), so :func:`modelled_readahead` sets them for the run when the
machine has others and puts them back afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import attrs

SIZE = 64 << 20  # bytes: far more than a window of pages across a fork tree
# The swap readahead the model implements: (setting, the value it needs).
READAHEAD = ((Path("/proc/sys/vm/page-cluster"), "3"), (Path("/sys/kernel/mm/swap/vma_ra_enabled"), "true"))
SYS_BLOCK = Path("/sys/block")
ZRAM_CONTROL = Path("/sys/class/zram-control")


class SwapError(RuntimeError):
    """The swap device could not be set up (what was changed is undone first)."""


def swap_total_kb() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("SwapTotal:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def active_swaps() -> set[str]:
    try:
        lines = Path("/proc/swaps").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {ln.split()[0] for ln in lines if ln.strip()}


@attrs.frozen
class SwapState:
    """What the run has: ``how`` in words; ``active`` whether pages can be swapped out."""

    active: bool
    how: str


def _free_zram(swaps: set[str]) -> str | None:
    for dev in sorted(SYS_BLOCK.glob("zram*")):
        try:
            size = int((dev / "disksize").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if size == 0 and f"/dev/{dev.name}" not in swaps:
            return dev.name
    return None


def _run(*argv: str) -> None:
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)
    except subprocess.CalledProcessError as exc:
        raise SwapError(f"{' '.join(argv)}: {(exc.stderr or exc.stdout).strip() or f'exit {exc.returncode}'}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SwapError(f"{' '.join(argv)}: {exc}") from None


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "not root"
    if not SYS_BLOCK.exists() or not (any(SYS_BLOCK.glob("zram*")) or ZRAM_CONTROL.exists()):
        return "no zram device (CONFIG_ZRAM; modprobe zram)"
    for tool in ("mkswap", "swapon", "swapoff"):
        if shutil.which(tool) is None:
            return f"no {tool} (util-linux; apt-get install util-linux)"
    return None


class _Terminated(BaseException):
    """SIGTERM, turned into an exception so that the device is torn down on the way out."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated()


@contextlib.contextmanager
def modelled_readahead(settings: tuple[tuple[Path, str], ...] = READAHEAD) -> Iterator[str]:
    """The swap readahead settings the model assumes, for the block's duration: each one that
    differs is set and restored on the way out.  Yields a note on what was changed, or why a
    setting could not be (empty when nothing had to change)."""
    changed: list[tuple[Path, str]] = []
    notes: list[str] = []
    try:
        for path, wanted in settings:
            try:
                old = path.read_text().strip()
            except OSError:
                continue  # no such setting on this kernel: nothing to match
            if old == wanted:
                continue
            try:
                path.write_text(wanted)
            except OSError as exc:
                notes.append(f"{path} is {old}, the model assumes {wanted} ({exc.strerror}): swap-ins may differ")
                continue
            changed.append((path, old))
            notes.append(f"{path} set to {wanted} for the run (was {old})")
        yield "; ".join(notes)
    finally:
        for path, old in reversed(changed):
            with contextlib.suppress(OSError):
                path.write_text(old)


@contextlib.contextmanager
def own_swap(size: int = SIZE) -> Iterator[SwapState]:
    """Swap on for the block's duration (see the module's docstring), with the swap readahead the
    model assumes (:func:`modelled_readahead`).  Yields what there is; when no device can be had,
    ``active`` is False and ``how`` says why."""
    with modelled_readahead() as note, _swap_device(size) as state:
        yield state if not note else attrs.evolve(state, how=f"{state.how}; {note}")


@contextlib.contextmanager
def _swap_device(size: int) -> Iterator[SwapState]:
    if swap_total_kb() > 0:
        yield SwapState(True, f"the machine's own swap ({swap_total_kb()} kB; left as it is)")
        return
    why = _why_not()
    if why is not None:
        yield SwapState(False, f"no swap ({why}): cells the model swapped out are not compared")
        return
    added: str | None = None
    name = _free_zram(active_swaps())
    if name is None:
        try:
            name = f"zram{int((ZRAM_CONTROL / 'hot_add').read_text())}"
        except (OSError, ValueError) as exc:
            yield SwapState(False, f"no free zram device and none could be added ({exc}): swapped cells not compared")
            return
        added = name
    dev = f"/dev/{name}"
    old_handler = None
    with contextlib.suppress(ValueError):  # not the main thread: no handler
        old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    swapped_on = False
    try:
        (SYS_BLOCK / name / "disksize").write_text(str(size))
        _run("mkswap", dev)
        _run("swapon", dev)
        swapped_on = True
        yield SwapState(True, f"{dev} (zram, {size >> 20} MiB), set up for this run and removed afterwards")
    except _Terminated:
        raise SystemExit(128 + signal.SIGTERM) from None
    finally:
        if swapped_on:
            with contextlib.suppress(SwapError):
                _run("swapoff", dev)
        with contextlib.suppress(OSError):
            (SYS_BLOCK / name / "reset").write_text("1")
        if added is not None:
            with contextlib.suppress(OSError, ValueError):
                (ZRAM_CONTROL / "hot_remove").write_text(added.removeprefix("zram"))
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
