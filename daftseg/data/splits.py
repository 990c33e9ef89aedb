"""Train/val split builder (916bd4e's ``split_dataset.py``, spec §11.1).

Walks ``<train_npz>/<modality>/<dataset>/*.npz`` (files lying directly in a modality folder are
skipped), shuffles each dataset folder with ``random.Random(seed)`` and puts the first
``int(0.8 * n)`` files into train, the rest into val; fulldataset = train + val.

Differences from 916bd4e, both for reproducibility: folders and files are sorted before the
shuffle (glob order depends on the file system), and each dataset folder gets its own
``Random(seed)``, so adding a dataset does not reshuffle the others.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import warnings
from collections import defaultdict
from pathlib import Path

from daftseg.atomic import atomic_open

SEED = 2024
TRAIN_FRACTION = 0.8


def resolve_train_npz(datapath: str | os.PathLike) -> Path:
    """``<datapath>/CVPR24-MedSAMLaptopData/train_npz`` when it exists (916bd4e), else ``datapath``."""
    nested = Path(datapath) / "CVPR24-MedSAMLaptopData" / "train_npz"
    return nested if nested.is_dir() else Path(datapath)


def dataset_folders(train_npz: str | os.PathLike) -> list[Path]:
    """Every ``<modality>/<dataset>`` folder, sorted."""
    root = Path(train_npz)
    return sorted(d for m in sorted(root.iterdir()) if m.is_dir() for d in m.iterdir() if d.is_dir())


def split_files(files: list[str], seed: int = SEED,
                train_fraction: float = TRAIN_FRACTION) -> tuple[list[str], list[str]]:
    """Shuffle ``files`` (sorted first) with ``Random(seed)``; the first ``int(fraction * n)`` are train."""
    shuffled = sorted(files)
    random.Random(seed).shuffle(shuffled)
    cut = int(len(shuffled) * train_fraction)
    return shuffled[:cut], shuffled[cut:]


def build_splits(train_npz: str | os.PathLike, seed: int = SEED,
                 train_fraction: float = TRAIN_FRACTION) -> tuple[list[str], list[str]]:
    """(train, val) absolute paths over all dataset folders."""
    train: list[str] = []
    val: list[str] = []
    for folder in dataset_folders(train_npz):
        files = [str(p.absolute()) for p in folder.glob("*.npz")]
        t, v = split_files(files, seed, train_fraction)
        train += t
        val += v
    return train, val


def duplicate_basenames(files: list[str]) -> dict[str, list[str]]:
    """Basenames shared by several paths: they collide when the data are flattened into one folder."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for f in files:
        by_name[os.path.basename(f)].append(f)
    return {name: paths for name, paths in sorted(by_name.items()) if len(paths) > 1}


def write_file_list(path: str | os.PathLike, files: list[str], basenames: bool = False) -> None:
    """CSV with column ``file`` (paths) or, with ``basenames``, column ``filename`` (93f1e55 layout)."""
    with atomic_open(path, "w") as f:  # creates the folder; a failed run leaves the previous list
        writer = csv.writer(f)
        writer.writerow(["filename" if basenames else "file"])
        writer.writerows([os.path.basename(p) if basenames else p] for p in files)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="split_dataset.py",
        description="Per-dataset 80/20 train/val split of the challenge training npz files; writes "
                    "train.csv, val.csv and fulldataset.csv (= train + val).")
    p.add_argument("datapath", help="folder holding CVPR24-MedSAMLaptopData/train_npz, or train_npz itself")
    p.add_argument("-out", default="datasplit", help="output folder (default: datasplit)")
    p.add_argument("-seed", type=int, default=SEED, help="shuffle seed per dataset folder (default: 2024)")
    p.add_argument("-train_fraction", type=float, default=TRAIN_FRACTION, help="default: 0.8")
    p.add_argument("--basenames", action="store_true",
                   help="write column 'filename' with basenames (for a flat -data_root, as 93f1e55) "
                        "instead of column 'file' with absolute paths (916bd4e)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = resolve_train_npz(args.datapath)
    train, val = build_splits(root, args.seed, args.train_fraction)
    if not train and not val:
        raise SystemExit(f"no npz files under {root}/<modality>/<dataset>/")
    duplicates = duplicate_basenames(train + val)
    if duplicates:
        examples = ", ".join(list(duplicates)[:3])
        warnings.warn(f"{len(duplicates)} basenames occur in several folders (e.g. {examples}); "
                      f"flattening the data into one folder would make them one file", stacklevel=2)
    out = Path(args.out)
    write_file_list(out / "train.csv", train, args.basenames)
    write_file_list(out / "val.csv", val, args.basenames)
    write_file_list(out / "fulldataset.csv", train + val, args.basenames)
    print(f"{len(train)} train, {len(val)} val, {len(train) + len(val)} in total -> {out}/")
    return 0
