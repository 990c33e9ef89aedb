"""Training file lists: CSV reading and ``-data_subset`` prefix selection (spec §3.3, §11.1).

Two CSV layouts are accepted:

- column ``filename`` (93f1e55's train.csv/val.csv): basenames, joined to ``-data_root``;
- column ``file`` (916bd4e's ``split_dataset.py``): absolute paths, used as they are
  (a relative path is joined to ``-data_root``).

A list may be gzip-compressed (``*.csv.gz``, as the 93f1e55 lists shipped in
``daftseg/configs/split_93f1e55/``).
"""

from __future__ import annotations

import csv
import gzip
import os
import warnings
from collections import Counter
from pathlib import Path

COLUMNS = ("filename", "file")


def read_file_list(csv_path: str | os.PathLike, data_root: str | os.PathLike = "") -> list[str]:
    """Paths listed in ``csv_path``, in file order, duplicates kept (the original kept them)."""
    opener = gzip.open if str(csv_path).endswith(".gz") else open
    with opener(csv_path, "rt", newline="") as f:
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


def modality_prefix(path: str) -> str:
    """The part of the basename before the first ``_`` (``CT_AMOS_1.npz`` -> ``CT``): the modality
    in the challenge's naming (spec §3.1)."""
    return os.path.basename(path).split("_", 1)[0]


def missing_by_prefix(paths: list[str], exists=os.path.isfile) -> dict[str, tuple[int, int]]:
    """Modality prefix -> (listed rows missing, listed rows), for the prefixes with a missing file.

    Rows, not distinct files: a repeated name counts each time it is listed, as it is sampled.
    """
    listed: Counter[str] = Counter()
    missing: Counter[str] = Counter()
    known: dict[str, bool] = {}
    for p in paths:
        prefix = modality_prefix(p)
        listed[prefix] += 1
        if p not in known:
            known[p] = exists(p)
        if not known[p]:
            missing[prefix] += 1
    return {k: (missing[k], listed[k]) for k in sorted(missing)}


def describe_missing(counts: dict[str, tuple[int, int]]) -> str:
    """``CT 3 of 11,695, MR 1 of 3,902`` (missing of listed rows per modality prefix)."""
    return ", ".join(f"{prefix} {m:,} of {n:,}" for prefix, (m, n) in counts.items())


def load_file_list(csv_path: str | os.PathLike, data_root: str | os.PathLike = "",
                   data_subset: str = "", check_exists: bool = True, skip_missing: bool = False) -> list[str]:
    """``read_file_list`` + ``select_subset``; warns about duplicate rows, fails on missing files.

    ``skip_missing``: rows naming a file that does not exist are left out, with a warning counting
    them per modality prefix; an error only if no file is left.
    """
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
            missing_set = set(missing)
            counts = missing_by_prefix(paths, lambda p: p not in missing_set)
            if skip_missing:
                kept = [p for p in paths if p not in missing_set]
                if not kept:
                    raise FileNotFoundError(f"{csv_path}: none of the {len(paths)} listed files exists under "
                                            f"data_root {str(data_root)!r}")
                warnings.warn(f"{csv_path}: left out {len(paths) - len(kept)} listed rows whose file does not "
                              f"exist under {str(data_root)!r} (missing of listed, per modality: "
                              f"{describe_missing(counts)})", stacklevel=2)
                return kept
            shown = "\n  ".join(missing[:10])
            more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise FileNotFoundError(f"{csv_path}: {len(missing)} listed files do not exist "
                                    f"(data_root {str(data_root)!r}; missing of listed, per modality: "
                                    f"{describe_missing(counts)}):\n  {shown}{more}")
    return paths
