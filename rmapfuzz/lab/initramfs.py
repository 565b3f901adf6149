"""An initramfs: a gzip-compressed cpio archive in the "newc" format (the kernel's
Documentation/driver-api/early-userspace/buffer-format.rst).

Written here rather than with cpio(1) so that it needs no root for the /dev/console node, no files
laid out on disk, and the same inputs give the same bytes.
"""

from __future__ import annotations

import gzip
import stat
from collections.abc import Iterable

import attrs

TRAILER = "TRAILER!!!"


@attrs.frozen
class Entry:
    """One member: a directory, a regular file (``data``) or a character device (``rdev``)."""

    name: str
    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)
    mtime: int = 0  # Python checks a .pyc against its source's mtime


def directory(name: str, perm: int = 0o755) -> Entry:
    return Entry(name, stat.S_IFDIR | perm)


def file(name: str, data: bytes, perm: int = 0o755, mtime: int = 0) -> Entry:
    return Entry(name, stat.S_IFREG | perm, data, mtime=mtime)


def char_device(name: str, major: int, minor: int, perm: int = 0o600) -> Entry:
    return Entry(name, stat.S_IFCHR | perm, rdev=(major, minor))


def _pad4(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _member(ino: int, entry: Entry) -> bytes:
    name = entry.name.lstrip("/").encode() + b"\0"
    fields = (
        ino, entry.mode, 0, 0, 1 if not stat.S_ISDIR(entry.mode) else 2, entry.mtime, len(entry.data),
        0, 0, entry.rdev[0], entry.rdev[1], len(name), 0,
    )  # fmt: skip
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out = header + name
    out += _pad4(len(out))
    out += entry.data + _pad4(len(entry.data))
    return out


def cpio_newc(entries: Iterable[Entry]) -> bytes:
    """The archive (uncompressed): each entry, then the trailer; parents must come before children."""
    parts = [_member(ino, e) for ino, e in enumerate(entries, start=1)]
    parts.append(_member(0, Entry(TRAILER, 0)))
    return b"".join(parts)


def base_entries(init: bytes) -> list[Entry]:
    """``/init`` (a static executable), ``/dev/console`` and the mount points it uses."""
    return [directory("dev"), char_device("dev/console", 5, 1), directory("proc"), directory("sys"), file("init", init)]


def pack(entries: Iterable[Entry]) -> bytes:
    """The gzip'd archive (fast compression: the guest unpacks it once)."""
    return gzip.compress(cpio_newc(entries), compresslevel=1, mtime=0)


def initramfs(init: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    """A gzip'd initramfs with :func:`base_entries` and ``extra`` executables at their paths (top
    level only)."""
    entries = base_entries(init)
    entries += [file(name.lstrip("/"), data) for name, data in sorted((extra or {}).items())]
    return pack(entries)
