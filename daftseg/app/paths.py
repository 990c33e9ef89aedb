"""Paths the app may read and write: only under the ``--data`` folder, never through ``..``,
an absolute path or a symlink that leads out of it."""

from __future__ import annotations

import os
import re
from pathlib import Path

# file names the app lists and accepts as uploads (a DICOM series is a folder of .dcm files)
SCAN_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".dcm", ".npz", ".png", ".jpg", ".jpeg", ".tif", ".tiff",
                ".bmp")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,200}$")
MAX_LISTED = 2000
STATIC = Path(__file__).parent / "static"  # the page, shipped in the package


class PathRefused(ValueError):
    """A path that leaves the data folder or is not acceptable; the message says why."""


def inside(data: Path, relative: str, must_exist: bool = True) -> Path:
    """``data / relative`` resolved, refusing absolute paths, ``..`` and symlinks that leave ``data``.

    With ``must_exist`` False the last component may be missing (an output); its folder must exist.
    """
    root = Path(data).resolve()
    if not isinstance(relative, str) or not relative.strip():
        raise PathRefused("no path given")
    if "\0" in relative or relative.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relative):
        raise PathRefused(f"{relative!r}: absolute paths are refused; give a path inside the data folder")
    parts = Path(relative.replace("\\", "/")).parts
    if any(p == ".." for p in parts):
        raise PathRefused(f"{relative!r}: '..' is refused; give a path inside the data folder")
    target = root.joinpath(*parts)
    resolved = target.resolve()  # follows every symlink on the way
    if resolved != root and root not in resolved.parents:
        raise PathRefused(f"{relative!r} leads outside the data folder (a symlink?)")
    if must_exist and not resolved.exists():
        raise PathRefused(f"{relative!r}: no such file in the data folder")
    if not must_exist and not resolved.parent.is_dir():
        raise PathRefused(f"{relative!r}: folder {Path(relative).parent} does not exist in the data folder")
    return resolved


def is_scan_name(name: str) -> bool:
    return name.lower().endswith(SCAN_ENDINGS)


def upload_name(name: str) -> str:
    """A plain file name with a scan ending, or PathRefused (no folders, no hidden files)."""
    base = str(name or "").replace("\\", "/").rsplit("/", 1)[-1]
    if base != name or not _SAFE_NAME.match(base) or not is_scan_name(base):
        raise PathRefused(f"upload name {name!r}: a plain file name (letters, digits, '._- ') ending in one of "
                          f"{', '.join(SCAN_ENDINGS)}")
    return base


def list_scans(data: Path) -> list[dict]:
    """Scans under ``data``: files with a scan ending and folders holding .dcm files (a DICOM series),
    without following symlinks out of the folder; at most ``MAX_LISTED``."""
    root = Path(data).resolve()
    found: list[dict] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_folder = Path(folder).relative_to(root)
        dcm = [f for f in files if f.lower().endswith(".dcm")]
        if dcm and rel_folder != Path("."):
            found.append({"path": rel_folder.as_posix(), "kind": "dicom", "files": len(dcm)})
        for f in sorted(files):
            if f.startswith(".") or not is_scan_name(f) or f.lower().endswith(".dcm"):
                continue
            full = Path(folder) / f
            try:
                inside(root, (rel_folder / f).as_posix())
            except PathRefused:
                continue
            found.append({"path": (rel_folder / f).as_posix(), "kind": "file", "bytes": full.stat().st_size})
            if len(found) >= MAX_LISTED:
                return found
    return found
