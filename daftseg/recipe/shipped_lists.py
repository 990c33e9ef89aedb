"""DAFT 93f1e55's own file lists, shipped with the package (``daftseg/configs/split_93f1e55/``).

``train.csv.gz`` and ``val.csv.gz`` are the original's ``train.csv`` and ``val.csv``, gzip-compressed,
otherwise byte for byte (BSD-3-Clause, AutoML Freiburg; see NOTICE and the folder's README.md).
The original's default list, ``fulldataset.csv``, is not in its repository; ``fulldataset.csv.gz``
is a reconstruction: train.csv followed by val.csv, in their order, repeats kept (the original's
later ``split_dataset.py`` wrote fulldataset = train + val).

The recipe's training commands read the compressed lists directly (``-datacsv`` accepts
``*.csv.gz``). ``python -m daftseg.recipe.shipped_lists DIR`` writes the three as plain CSVs into
DIR, for commands typed by hand (``-datacsv fulldataset.csv``); an existing file that differs is
never overwritten.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
from pathlib import Path

from daftseg.atomic import atomic_write_bytes

SPLIT_DIR = Path(__file__).resolve().parents[1] / "configs" / "split_93f1e55"
NAMES = ("train.csv", "val.csv", "fulldataset.csv")
HEADER = b"filename\n"


def shipped_list(name: str) -> Path:
    """The compressed shipped list ``name`` (``train.csv``, ``val.csv`` or ``fulldataset.csv``)."""
    if name not in NAMES:
        raise ValueError(f"{name}: not a shipped list; shipped: {', '.join(NAMES)}")
    return SPLIT_DIR / f"{name}.gz"


def read_bytes(name: str) -> bytes:
    return gzip.decompress(shipped_list(name).read_bytes())


def concatenate(train: bytes, val: bytes) -> bytes:
    """One CSV: ``train``'s header and rows, then ``val``'s rows (its header dropped), repeats kept."""
    for label, text in (("train", train), ("val", val)):
        if not text.startswith(HEADER) or not text.endswith(b"\n"):
            raise ValueError(f"{label}: expected a 'filename' header and a final newline")
    return train + val[len(HEADER):]


def deterministic_gzip(data: bytes) -> bytes:
    """gzip with no time stamp or file name in the header: the same bytes on every rebuild."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buffer, mtime=0) as f:
        f.write(data)
    return buffer.getvalue()


def rebuild_fulldataset() -> Path:
    """Write ``fulldataset.csv.gz`` from the two shipped lists (how the shipped file was made)."""
    path = shipped_list("fulldataset.csv")
    atomic_write_bytes(path, deterministic_gzip(concatenate(read_bytes("train.csv"), read_bytes("val.csv"))))
    return path


def write_lists(folder: Path) -> list[tuple[Path, str]]:
    """The three lists as plain CSVs in ``folder``: (path, 'written' | 'unchanged') each.

    Raises FileExistsError, before writing anything, if one of them exists with other content.
    """
    folder.mkdir(parents=True, exist_ok=True)
    contents = {folder / name: read_bytes(name) for name in NAMES}
    clash = [str(p) for p, data in contents.items() if p.exists() and p.read_bytes() != data]
    if clash:
        raise FileExistsError(f"{', '.join(clash)} already exist with other content; not overwritten (move them "
                              f"away, or choose another folder)")
    done = []
    for path, data in contents.items():
        if path.exists():
            done.append((path, "unchanged"))
        else:
            atomic_write_bytes(path, data)
            done.append((path, "written"))
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daftseg.recipe.shipped_lists",
                                description="Write DAFT 93f1e55's own file lists (train.csv, val.csv and the "
                                            "reconstructed fulldataset.csv, column 'filename') into FOLDER.")
    p.add_argument("folder", type=Path, help="where to write them, e.g. . for the training commands as documented")
    args = p.parse_args(argv)
    try:
        for path, what in write_lists(args.folder):
            rows = path.read_bytes().count(b"\n") - 1
            print(f"{path}: {rows:,} rows ({what})")
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
