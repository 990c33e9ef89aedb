"""The 93f1e55 recipe trains on the original's own lists, shipped with the package, and checks its
inputs before anything starts: each missing input is named, missing npz files are counted per
modality prefix (a list with none left is an error, one with some left a warning)."""

from __future__ import annotations

import csv
import gzip
import io
import shlex
from collections import Counter
from pathlib import Path

import pytest

from daftseg.recipe import shipped_lists
from daftseg.recipe.cli import main

SPLIT = Path(__file__).resolve().parents[1] / "daftseg" / "configs" / "split_93f1e55"


def rows(name: str) -> list[str]:
    with gzip.open(SPLIT / name, "rt", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == ["filename"]
        return [r[0] for r in reader]


def test_shipped_lists_are_the_originals():
    train, val, full = rows("train.csv.gz"), rows("val.csv.gz"), rows("fulldataset.csv.gz")
    # spec §3.3 and the shared copy's README
    assert (len(train), len(set(train))) == (85_583, 83_704)
    assert (len(val), len(val) - len(set(val))) == (21_410, 122)
    assert len(set(train) & set(val)) == 912
    repeated = {n for n, k in Counter(train).items() if k > 1}
    assert repeated and all(n.startswith("XRay_COVID-QU-Ex-lungMask") for n in repeated)
    assert sum(n.startswith("CT_TotalSeg") for n in train) == 2853
    assert sum(n.startswith("CT_TotalSeg") for n in val) == 715
    # the reconstruction: train then val, in their order, repeats kept
    assert full == train + val
    # written without a time stamp: rebuilding gives the same bytes
    assert shipped_lists.deterministic_gzip(gzip.decompress((SPLIT / "fulldataset.csv.gz").read_bytes())) == \
        (SPLIT / "fulldataset.csv.gz").read_bytes()


def test_lists_are_written_for_commands_typed_by_hand(tmp_path, capsys):
    assert shipped_lists.main([str(tmp_path)]) == 0
    assert "fulldataset.csv: 106,993 rows (written)" in capsys.readouterr().out
    for name in ("train.csv", "val.csv", "fulldataset.csv"):
        assert (tmp_path / name).read_bytes() == gzip.decompress((SPLIT / f"{name}.gz").read_bytes())
    assert shipped_lists.main([str(tmp_path)]) == 0  # the same files again: left as they are
    assert "(unchanged)" in capsys.readouterr().out
    (tmp_path / "val.csv").write_text("filename\nmine.npz\n")
    assert shipped_lists.main([str(tmp_path)]) == 1
    assert "not overwritten" in capsys.readouterr().err
    assert (tmp_path / "val.csv").read_text() == "filename\nmine.npz\n"


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    """An (empty) file for every name the shipped lists hold, and stand-ins for the weights."""
    root = tmp_path_factory.mktemp("complete")
    (root / "npz").mkdir()
    for name in set(rows("fulldataset.csv.gz")):
        (root / "npz" / name).touch()
    for weights in ("l0.pt", "lite_medsam.pth"):
        (root / weights).touch()
    return root


def dry_run(root: Path, data_root: Path, *extra: str) -> list[str]:
    return ["93f1e55", "--data_root", str(data_root), "--out", str(root / "run"), "--l0", str(root / "l0.pt"),
            "--lite_medsam", str(root / "lite_medsam.pth"), "--dry-run", "--gpus", "4", *extra]


def test_empty_data_root_names_every_missing_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    args = ["93f1e55", "--data_root", str(tmp_path / "empty"), "--out", str(tmp_path / "run"), "--dry-run",
            "--gpus", "4", "--l0", str(tmp_path / "l0.pt"), "--lite_medsam", str(tmp_path / "lite.pth")]
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert out == ""  # no plan
    lines = err.splitlines()
    assert lines[0] == "error: recipe 93f1e55 cannot start; missing:"
    assert f"  EfficientViT-SAM l0 weights (--l0): {tmp_path / 'l0.pt'}" in lines
    assert f"  LiteMedSAM weights (--lite_medsam): {tmp_path / 'lite.pth'}" in lines
    empty = f"in {tmp_path / 'empty'}"
    # every list the plan reads, once, with its row count (spec §3.3 counts; subsets of fulldataset)
    expected = {"fulldataset.csv.gz": 106_993, "train.csv.gz": 85_583, "fulldataset.csv.gz, -data_subset CT": 14_622,
                "fulldataset.csv.gz, -data_subset CT|MR|PET": 19_848, "fulldataset.csv.gz, -data_subset Fundus": 1_057,
                "fulldataset.csv.gz, -data_subset Microscopy": 1_000, "fulldataset.csv.gz, -data_subset OCT": 1_436,
                "fulldataset.csv.gz, -data_subset Mamm": 1_233}
    listed = [line for line in lines if "listed files exists" in line]
    assert len(listed) == len(expected) == len(lines) - 3
    for name, n in expected.items():
        assert any(line.startswith(f"  {name}: none of its {n:,} listed files exists {empty}") for line in listed), name
    full = next(line for line in listed if line.startswith("  fulldataset.csv.gz: "))
    assert "CT 14,622 of 14,622" in full and "XRay 33,275 of 33,275" in full and "Mammo 1,233 of 1,233" in full
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_complete_data_plans_on_the_shipped_lists_with_sync_bn(complete, capsys):
    assert main(dry_run(complete, complete / "npz")) == 0
    out, err = capsys.readouterr()
    assert err == ""
    commands = [shlex.split(line) for line in out.splitlines() if line.startswith("python")]
    training = [c for c in commands if "-datacsv" in c]
    assert len(training) == 12  # 3 distillations, 3 general fine-tunings, 6 DAFT runs
    for c in training:
        assert Path(c[c.index("-datacsv") + 1]).parent == SPLIT
        assert Path(c[c.index("-datacsv") + 1]).name == ("train.csv.gz" if "xray" in " ".join(c) else
                                                          "fulldataset.csv.gz")
        # 96 over 4 processes with synchronised BatchNorm; distillation's 7 on one process without it
        assert ("-sync_bn" in c) == ("--nproc_per_node" in c) == (c[c.index("-global_batch_size") + 1] == "96")
        assert "--skip_missing_files" not in c
    assert out.splitlines()[-1].startswith("# python PerfectMetaOpenVINO.py -i IMGS -o SEGS -m ")


def test_some_files_missing_warns_and_skips_them(complete, capsys):
    # without two CT files of train.csv, one of val.csv, and every Fundus file
    ct = sorted(n for n in rows("train.csv.gz") if n.startswith("CT_"))[:2]
    ct += sorted(n for n in rows("val.csv.gz") if n.startswith("CT_"))[-1:]
    gone = {*ct, *(n for n in rows("fulldataset.csv.gz") if n.startswith("Fundus"))}
    aside = complete / "aside"
    aside.mkdir()
    for name in gone:
        (complete / "npz" / name).rename(aside / name)
    try:
        assert main(dry_run(complete, complete / "npz")) == 1
        err = capsys.readouterr().err
        # the Fundus DAFT run would have no file: refused
        assert "fulldataset.csv.gz, -data_subset Fundus: none of its 1,057 listed files exists" in err
        assert main(dry_run(complete, complete / "npz", "--models", "CT", "XRay")) == 0
        out, err = capsys.readouterr()
    finally:
        for name in gone:
            (aside / name).rename(complete / "npz" / name)
        aside.rmdir()
    ct_missing = sum(n in gone for n in rows("fulldataset.csv.gz") if n.startswith("CT"))
    assert ct_missing >= 3
    assert any(w.startswith("warning: fulldataset.csv.gz: ") and f"CT {ct_missing} of 14,622" in w
               and "Fundus 1,057 of 1,057" in w for w in err.splitlines())
    skipping = set()
    for line in out.splitlines():
        if "--skip_missing_files" in line:
            words = shlex.split(line)
            skipping.add(Path(words[words.index("-work_dir") + 1]).name)
    # the general runs read all of fulldataset.csv or train.csv; CT's DAFT run its CT files
    assert skipping == {"distill-d24", "general-g24", "daft-CT", "distill-d20_xray", "general-g46_xray"}


def test_csv_dir_overrides_the_shipped_lists(tmp_path, capsys):
    (tmp_path / "npz").mkdir()
    (tmp_path / "npz" / "CT_A_1.npz").touch()
    (tmp_path / "lite.pth").touch()
    (tmp_path / "fulldataset.csv").write_text("filename\nCT_A_1.npz\n")
    args = ["93f1e55", "--data_root", str(tmp_path / "npz"), "--out", str(tmp_path / "run"), "--csv_dir",
            str(tmp_path), "--lite_medsam", str(tmp_path / "lite.pth"), "--models", "Endoscopy", "--dry-run",
            "--l0", str(tmp_path / "l0.pt")]
    assert main(args) == 1
    assert capsys.readouterr().err.splitlines()[1:] == [f"  EfficientViT-SAM l0 weights (--l0): {tmp_path / 'l0.pt'}"]
    (tmp_path / "l0.pt").touch()
    assert main(args) == 0
    assert f"-datacsv {tmp_path / 'fulldataset.csv'} " in capsys.readouterr().out


def test_gzip_list_is_read_by_the_training_data_code():
    from daftseg.data.file_lists import read_file_list

    got = read_file_list(SPLIT / "val.csv.gz", "/d")
    with io.TextIOWrapper(gzip.open(SPLIT / "val.csv.gz"), newline="") as f:
        assert got == [f"/d/{r['filename']}" for r in csv.DictReader(f)]
