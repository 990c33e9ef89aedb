"""File lists: the two CSV layouts and ``-data_subset`` prefix selection (spec §3.3)."""

from __future__ import annotations

import pytest
from training_support import write_csv

from daftseg.data.file_lists import load_file_list, read_file_list, select_subset

NAMES = ["MR_BraTS_1.npz", "CT_AMOS_2.npz", "Mammo_CDD_1.npz", "CT_AMOS_1.npz", "XRay_A_1.npz"]


def test_filename_column_is_joined_to_data_root(tmp_path):
    csv_path = write_csv(tmp_path / "t.csv", NAMES)
    assert read_file_list(csv_path, "/data/all") == [f"/data/all/{n}" for n in NAMES]


def test_file_column_keeps_absolute_paths(tmp_path):
    paths = [f"/abs/{m}/{n}" for m, n in zip("abcde", NAMES)]
    csv_path = write_csv(tmp_path / "t.csv", paths, column="file")
    assert read_file_list(csv_path, "/ignored") == paths


def test_other_columns_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="filename"):
        read_file_list(write_csv(tmp_path / "t.csv", NAMES, column="path"))


def test_subset_is_a_sorted_prefix_match():
    paths = [f"/d/{n}" for n in NAMES]
    assert select_subset(paths, "") == sorted(paths)
    assert select_subset(paths, "CT") == ["/d/CT_AMOS_1.npz", "/d/CT_AMOS_2.npz"]
    assert select_subset(paths, "Mamm") == ["/d/Mammo_CDD_1.npz"]
    assert select_subset(paths, "CT|MR") == ["/d/CT_AMOS_1.npz", "/d/CT_AMOS_2.npz", "/d/MR_BraTS_1.npz"]
    assert select_subset(paths, "C*") == []  # a prefix, not a glob
    assert select_subset(paths, "AMOS") == []  # the start of the name only


def test_overlapping_prefixes_keep_duplicates():
    paths = [f"/d/{n}" for n in NAMES]
    assert select_subset(paths, "CT|CT_AMOS_1") == ["/d/CT_AMOS_1.npz", "/d/CT_AMOS_1.npz", "/d/CT_AMOS_2.npz"]


def test_subset_matches_basenames_of_absolute_paths():
    assert select_subset(["/data/CT/x/CT_A_1.npz", "/data/MR/y/MR_B_1.npz"], "CT") == ["/data/CT/x/CT_A_1.npz"]


def test_load_checks_files_and_warns_about_duplicates(tmp_path):
    for n in NAMES[:2]:
        (tmp_path / n).write_bytes(b"")
    with pytest.warns(UserWarning, match="1 duplicate"):
        got = load_file_list(write_csv(tmp_path / "a.csv", NAMES[:2] + NAMES[:1]), tmp_path)
    assert len(got) == 3
    with pytest.raises(FileNotFoundError, match="3 listed files do not exist"):
        load_file_list(write_csv(tmp_path / "b.csv", NAMES), tmp_path)
    with pytest.raises(ValueError, match="no files match"):
        load_file_list(write_csv(tmp_path / "c.csv", NAMES[:2]), tmp_path, "PET")


def test_gzip_list_reads_as_the_plain_one(tmp_path):
    import gzip

    plain = write_csv(tmp_path / "t.csv", NAMES)
    packed = tmp_path / "t.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_file_list(packed, "/d") == read_file_list(plain, "/d") == [f"/d/{n}" for n in NAMES]


def test_missing_files_are_counted_per_modality_and_skipped_on_request(tmp_path):
    (tmp_path / "CT_AMOS_2.npz").write_bytes(b"")
    csv_path = write_csv(tmp_path / "a.csv", [*NAMES, "CT_AMOS_1.npz"])  # CT_AMOS_1 listed twice
    # missing of listed rows: CT 2 of 3 (the repeat counts), MR 1 of 1, Mammo 1 of 1, XRay 1 of 1
    counts = "CT 2 of 3, MR 1 of 1, Mammo 1 of 1, XRay 1 of 1"  # sorted by code point
    with pytest.raises(FileNotFoundError, match=counts):
        load_file_list(csv_path, tmp_path)
    with pytest.warns(UserWarning, match=f"left out 5 listed rows .*{counts}"):
        assert load_file_list(csv_path, tmp_path, skip_missing=True) == [str(tmp_path / "CT_AMOS_2.npz")]
    with pytest.raises(FileNotFoundError, match="none of the 2 listed files exists"):
        load_file_list(csv_path, tmp_path, "MR|XRay", skip_missing=True)
