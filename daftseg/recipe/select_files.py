"""Select the rows of file lists whose basename matches a regex (916bd4e's ``datasplit/modalities3D.py``).

Usage: ``python -m daftseg.recipe.select_files --regex '^(CT|MR|PET)' IN.csv OUT.csv [IN2.csv OUT2.csv ...]``.
The column (``filename`` or ``file``) and row order are kept; ``re.match`` on the part after the
last ``/``, as the original. An output that would have no rows is an error. An input may be
gzip-compressed (``*.csv.gz``); the outputs are plain CSV.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import re
import sys
from pathlib import Path

from daftseg.atomic import atomic_open

COLUMNS = ("filename", "file")


def select_rows(src: Path, dst: Path, pattern: re.Pattern[str]) -> int:
    opener = gzip.open if src.name.endswith(".gz") else open
    with opener(src, "rt", newline="") as f:
        reader = csv.DictReader(f)
        column = next((c for c in COLUMNS if c in (reader.fieldnames or [])), None)
        if column is None:
            raise ValueError(f"{src}: no 'filename' or 'file' column")
        rows = [r[column] for r in reader if pattern.match(r[column].rsplit("/", 1)[-1])]
    if not rows:
        raise ValueError(f"{src}: no file name matches {pattern.pattern!r}")
    with atomic_open(dst, "w") as f:
        writer = csv.writer(f)
        writer.writerow([column])
        writer.writerows([r] for r in rows)
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m daftseg.recipe.select_files", description=__doc__.split("\n")[0])
    p.add_argument("--regex", required=True, help="matched (re.match) against each file's basename")
    p.add_argument("pairs", nargs="+", metavar="IN OUT", help="input CSV and output CSV, one or more pairs")
    args = p.parse_args(argv)
    if len(args.pairs) % 2:
        p.error("give input and output CSVs in pairs")
    pattern = re.compile(args.regex)
    try:
        for src, dst in zip(args.pairs[::2], args.pairs[1::2]):
            print(f"{dst}: {select_rows(Path(src), Path(dst), pattern)} files matching {args.regex!r}")
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
