"""Split builder: per-dataset 80/20 with seed 2024, fulldataset = train + val, duplicate warning."""

from __future__ import annotations

import csv
import random

import pytest

from daftseg.data.file_lists import read_file_list
from daftseg.data.splits import build_splits, main, split_files


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "CVPR24-MedSAMLaptopData" / "train_npz"
    sizes = {("CT", "CT_AMOS"): 10, ("CT", "CT_TotalSeg"): 7, ("XRay", "XRay_Lung"): 5, ("MR", "MR_Dup"): 3}
    for (modality, dataset), n in sizes.items():
        folder = root / modality / dataset
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"{dataset}_{i:03d}.npz").write_bytes(b"")
    (root / "CT" / "stray.npz").write_bytes(b"")  # directly under a modality folder: skipped
    (root / "MR" / "MR_Dup" / "XRay_Lung_000.npz").write_bytes(b"")  # same basename as in XRay_Lung
    return tmp_path, root


def test_split_is_per_dataset_80_20(tree):
    _, root = tree
    train, val = build_splits(root)
    assert len(train) + len(val) == 10 + 7 + 5 + 4
    by_folder = {}
    for f in train + val:
        by_folder.setdefault(f.split("/")[-2], [0, 0])[f in val] += 1
    assert by_folder == {"CT_AMOS": [8, 2], "CT_TotalSeg": [5, 2], "XRay_Lung": [4, 1], "MR_Dup": [3, 1]}
    assert not any(f.endswith("stray.npz") for f in train + val)
    assert all(f.startswith("/") for f in train)


def test_split_uses_seed_2024_shuffle_of_the_sorted_folder():
    files = [f"/x/f{i}.npz" for i in range(10)]
    expected = sorted(files)
    random.Random(2024).shuffle(expected)
    assert split_files(list(reversed(files))) == (expected[:8], expected[8:])


def test_cli_writes_three_csvs_and_warns_on_duplicates(tree):
    tmp_path, _ = tree
    out = tmp_path / "datasplit"
    with pytest.warns(UserWarning, match="1 basenames occur in several folders"):
        assert main([str(tmp_path), "-out", str(out)]) == 0
    train, val, full = (read_file_list(out / f"{n}.csv") for n in ("train", "val", "fulldataset"))
    assert full == train + val and len(full) == 26
    with open(out / "train.csv") as f:
        assert next(csv.reader(f)) == ["file"]
    with pytest.warns(UserWarning):
        main([str(tmp_path), "-out", str(tmp_path / "again")])
    assert read_file_list(tmp_path / "again" / "train.csv") == train  # reproducible


def test_basenames_option_writes_the_93f1e55_layout(tree):
    tmp_path, root = tree
    with pytest.warns(UserWarning):
        main([str(root), "-out", str(tmp_path / "flat"), "--basenames"])
    with open(tmp_path / "flat" / "val.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["filename"] and "/" not in rows[1][0]
