"""What a folder holds, to show that a refused or failed operation changed nothing in it."""

from __future__ import annotations

from pathlib import Path


def tree_snapshot(folder: Path) -> dict[str, bytes]:
    """Every entry under ``folder``, hidden ones included: relative path -> bytes (b"<dir>" for a folder).

    A leftover temporary file or folder, a changed byte or a missing file all make it differ.
    """
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(folder.rglob("*"))}
