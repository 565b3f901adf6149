"""``rmapfuzz lab``: the real-kernel lab's subcommands (wired into rmapfuzz.cli by
:func:`add_lab_command`).

    rmapfuzz lab kernels                        the kernels, cached or not, and their model generations
    rmapfuzz lab fetch NAME                     fetch a Debian kernel into the lab cache
    rmapfuzz lab repro FILE --vm NAME           crashed (exit 1) / clean (0) / lab unavailable (3)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TypeAlias

from rmapfuzz.lab import images
from rmapfuzz.lab.images import LabUnavailable

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class LabInputError(ValueError):
    """Bad input to a lab command (exit 2, one line)."""


def _unavailable(exc: LabUnavailable, as_json: bool = False) -> int:
    print(f"rmapfuzz: lab unavailable: {exc}", file=sys.stderr)
    if as_json:
        sys.stdout.write(json.dumps({"error": str(exc), "exit_code": 3}) + "\n")
    return 3


def cmd_lab_kernels(args: argparse.Namespace) -> int:
    rows = []
    for k in images.KERNELS.values():
        image = k.image()
        rows.append({
            "name": k.name, "describe": k.describe, "cached": k.cached(), "image": str(image),
            "provenance": images.provenance(k) if image.is_file() else "", "get": k.how_to_get(),
            "model": k.model, "model_note": k.model_note,
        })  # fmt: skip
    if args.json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return 0
    for r in rows:
        if r["cached"]:
            state = f"cached ({r['provenance']})"
        elif Path(str(r["image"])).is_file():  # fetched before the lab kept zram's modules
            state = f"cached without the zram modules the guest's swap needs: {r['get']}"
        else:
            state = f"not cached: {r['get']}"
        print(f"{r['name']:<12} {r['describe']}")
        print(f"{'':<12} {state}")
        print(f"{'':<12} compared with model {r['model']}: {r['model_note']}")
    return 0


def cmd_lab_fetch(args: argparse.Namespace) -> int:
    try:
        kernel = images.get(args.name)
        if kernel.source != "debian":
            raise LabUnavailable(f"{kernel.name} is built, not fetched: run `{kernel.how_to_get()}`")
        image = images.fetch_debian(kernel)
    except LabUnavailable as exc:
        return _unavailable(exc)
    print(f"{kernel.name}: {images.provenance(kernel)} -> {image}")
    return 0


def _source_of(path: str) -> str:
    """The C text of FILE: a .c file as it is, a reproducer exported with `export --c`."""
    from rmapfuzz import export
    from rmapfuzz.oracle.oracle import load_reproducer

    if path.endswith(".c"):
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise LabInputError(f"{path}: cannot read: {exc}") from None
    rep = load_reproducer(path)
    try:
        return export.to_c(rep, path)
    except export.ExportError as exc:
        raise LabInputError(f"{path}: {exc}") from None


def _bad_input(message: str, as_json: bool) -> int:
    print(f"rmapfuzz: error: {message}", file=sys.stderr)
    if as_json:
        sys.stdout.write(json.dumps({"error": message, "exit_code": 2}) + "\n")
    return 2


def cmd_lab_repro(args: argparse.Namespace) -> int:
    from rmapfuzz.lab import repro

    try:
        source = _source_of(args.file)
        kernel = images.get(args.vm)
        images.require_image(kernel)
        result = repro.run(kernel, source, timeout=args.timeout)
    except LabUnavailable as exc:
        return _unavailable(exc, args.json)
    except LabInputError as exc:
        return _bad_input(str(exc), args.json)
    except repro.CompileError as exc:
        return _bad_input(f"{args.file}: {exc}", args.json)
    if args.log:
        Path(args.log).write_text(result.log, encoding="utf-8")
    c = result.console
    if args.json:
        sys.stdout.write(json.dumps({
            "file": args.file, "vm": kernel.name, "verdict": c.verdict, "report": list(c.report),
            "status": c.status, "seconds": round(result.seconds, 1), "exit_code": result.exit_code,
        }) + "\n")  # fmt: skip
        return result.exit_code
    print(f"{args.file}: {result.summary()}")
    for line in c.report[1:]:
        print(f"    {line}")
    return result.exit_code


def oracle_in_guest(args: argparse.Namespace) -> int:
    """``rmapfuzz oracle --vm NAME ...``: the same command inside a lab guest (rmapfuzz.lab.guest)."""
    from rmapfuzz.lab import guest

    try:
        kernel = images.get(args.vm)
        images.require_image(kernel)
        return guest.run_oracle(args, kernel, timeout=args.vm_timeout)
    except LabUnavailable as exc:
        return _unavailable(exc, args.json)


def add_lab_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "lab",
        help="the real-kernel lab: real kernels under QEMU, C reproducers that crash a buggy one",
        description="Real kernels (Debian's cloud images, KASAN builds of 6.1) booted under QEMU (TCG); see "
        "docs/lab.md. Exit codes: 0 clean, 1 crashed, 2 bad usage, 3 the lab is unavailable (no qemu, no image: "
        "the message names the command that fixes it).",
    )
    sub = p.add_subparsers(dest="lab_command", metavar="SUBCOMMAND", required=True)
    k = sub.add_parser("kernels", help="the kernels the lab can boot, cached or not, and their model generations")
    k.add_argument("--json", action="store_true", help="one JSON array")
    k.set_defaults(func=cmd_lab_kernels)
    f = sub.add_parser("fetch", help="fetch a Debian kernel (apt-get download) into the lab cache")
    f.add_argument("name", metavar="NAME", help="debian-6.1 or debian-6.12")
    f.set_defaults(func=cmd_lab_fetch)
    r = sub.add_parser(
        "repro",
        help="boot a lab kernel, run a C reproducer, report crashed (exit 1) or clean (exit 0)",
        description="FILE is a reproducer (exported with `export --c` on the fly) or an exported .c file. It is "
        "compiled with gcc -static, packed into an initramfs with a static /init and run under QEMU; the console "
        "is read for a KASAN report, an oops, a BUG or a WARNING.",
    )
    r.add_argument("file", metavar="FILE", help="a reproducer file or an exported C file")
    r.add_argument("--vm", required=True, metavar="NAME", help="a lab kernel (rmapfuzz lab kernels)")
    r.add_argument("--timeout", type=float, default=300.0, metavar="S", help="give up after S seconds (300)")
    r.add_argument("--log", metavar="FILE", help="write the whole console here")
    r.add_argument("--json", action="store_true", help="one JSON object")
    r.set_defaults(func=cmd_lab_repro)
