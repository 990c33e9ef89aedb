"""Training file lists: CSV reading and ``-data_subset`` prefix selection (spec §3.3, §11.1).

Two CSV layouts are accepted:

- column ``filename`` (93f1e55's train.csv/val.csv): basenames, joined to ``-data_root``;
- column ``file`` (916bd4e's ``split_dataset.py``): absolute paths, used as they are
  (a relative path is joined to ``-data_root``).
"""

from __future__ import annotations

import csv
import os
import warnings
from collections import Counter
from pathlib import Path

COLUMNS = ("filename", "file")


def read_file_list(csv_path: str | os.PathLike, data_root: str | os.PathLike = "") -> list[str]:
    """Paths listed in ``csv_path``, in file order, duplicates kept (the original kept them)."""
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        column = next((c for c in COLUMNS if c in fields), None)
        if column is None:
            raise ValueError(f"{csv_path}: needs a column 'filename' (basenames) or 'file' (paths); "
                             f"found {fields}")
        entries = [row[column].strip() for row in reader if row[column] and row[column].strip()]
    # os.path.join keeps an absolute entry as it is, so both layouts resolve the same way.
    return [os.path.join(data_root, e) if data_root else e for e in entries]


def select_subset(paths: list[str], data_subset: str = "") -> list[str]:
    """Keep the files whose basename starts with one of the ``|``-separated prefixes.

    As the original: a prefix match (not a glob), the per-prefix lists are concatenated
    (a file matching two prefixes appears twice) and the result is sorted; ``""`` keeps all.
    """
    selected: list[str] = []
    for prefix in data_subset.split("|"):
        selected.extend(p for p in paths if os.path.basename(p).startswith(prefix))
    return sorted(selected)


def subset_counts(paths: list[str], data_subset: str = "") -> dict[str, int]:
    """Files matched by each prefix, for the start-up report."""
    return {prefix: sum(os.path.basename(p).startswith(prefix) for p in paths)
            for prefix in data_subset.split("|")}


def load_file_list(csv_path: str | os.PathLike, data_root: str | os.PathLike = "",
                   data_subset: str = "", check_exists: bool = True) -> list[str]:
    """``read_file_list`` + ``select_subset``; warns about duplicate rows, fails on missing files."""
    paths = select_subset(read_file_list(csv_path, data_root), data_subset)
    if not paths:
        raise ValueError(f"{csv_path}: no files match data_subset {data_subset!r}")
    duplicates = sum(n - 1 for n in Counter(paths).values() if n > 1)
    if duplicates:
        warnings.warn(f"{csv_path}: {duplicates} duplicate entries after subset selection "
                      f"({len(set(paths))} distinct files); they are sampled more often", stacklevel=2)
    if check_exists:
        missing = sorted({p for p in paths if not Path(p).is_file()})
        if missing:
            shown = "\n  ".join(missing[:10])
            more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise FileNotFoundError(f"{csv_path}: {len(missing)} listed files do not exist "
                                    f"(data_root {str(data_root)!r}):\n  {shown}{more}")
    return paths
