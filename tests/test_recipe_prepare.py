"""916bd4e's data preparation (spec §11.1): a dry run by default, moves with --apply that never
overwrite or delete, a log that undoes them, and the result laid out for split_dataset.py."""

from __future__ import annotations

from pathlib import Path

from daftseg.data.splits import build_splits
from daftseg.recipe.prepare_916bd4e import main

POST_FILES = ["2D_X-Ray_Teeth_0001.npz", "2D_X-Ray_Teeth_0002.npz", "3D_PET_Lesion_psma_0001.npz",
              "2D_Other_0001.npz"]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(root.rglob("*"))}


def make_data(base: Path) -> Path:
    """The README's unzipped layout: train_npz/{CT,MR,...}, NewTrainingData/totalseg_mr, the post-challenge files."""
    root = base / "CVPR24-MedSAMLaptopData" / "train_npz"
    for rel in ("CT/AMOS/CT_AMOS_1.npz", "MR/BraTS/MR_BraTS_1.npz", "NewTrainingData/totalseg_mr/MR_totalseg_1.npz",
                *(f"CVPR24-PostChallenge-Train/{n}" for n in POST_FILES)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    return root


def test_dry_run_prints_every_move_and_moves_nothing(tmp_path, capsys):
    root = make_data(tmp_path)
    before = tree(tmp_path)
    assert main([str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"# DAFT 916bd4e data preparation in {root} (dry run")
    assert lines[1:-1] == [
        "move  NewTrainingData/totalseg_mr -> MR/totalseg_mr",
        "mkdir CVPR24-PostChallenge-Train/XRay",
        "mkdir CVPR24-PostChallenge-Train/PET",
        "move  CVPR24-PostChallenge-Train/2D_Other_0001.npz -> CVPR24-PostChallenge-Train/Other_0001.npz",
        "move  CVPR24-PostChallenge-Train/2D_X-Ray_Teeth_0001.npz -> CVPR24-PostChallenge-Train/XRay/X-Ray_Teeth_0001.npz",
        "move  CVPR24-PostChallenge-Train/2D_X-Ray_Teeth_0002.npz -> CVPR24-PostChallenge-Train/XRay/X-Ray_Teeth_0002.npz",
        "move  CVPR24-PostChallenge-Train/3D_PET_Lesion_psma_0001.npz -> CVPR24-PostChallenge-Train/PET/PET_Lesion_psma_0001.npz",
    ]
    assert tree(tmp_path) == before


def test_apply_then_undo_restores_the_tree(tmp_path, capsys):
    root = make_data(tmp_path)
    before = tree(tmp_path)
    assert main([str(tmp_path), "--apply"]) == 0
    after = tree(root)
    assert after["MR/totalseg_mr/MR_totalseg_1.npz"] == b"NewTrainingData/totalseg_mr/MR_totalseg_1.npz"
    assert after["CVPR24-PostChallenge-Train/XRay/X-Ray_Teeth_0002.npz"] == \
        b"CVPR24-PostChallenge-Train/2D_X-Ray_Teeth_0002.npz"
    assert "CVPR24-PostChallenge-Train/PET/PET_Lesion_psma_0001.npz" in after
    assert "CVPR24-PostChallenge-Train/Other_0001.npz" in after
    # same contents, only moved: nothing lost, nothing copied (the log aside)
    assert sorted(v for k, v in after.items() if v != b"<dir>" and k != "prepare_916bd4e.log") == \
        sorted(v for v in before.values() if v != b"<dir>")
    # what split_dataset.py now sees: the new MR dataset and the sorted post-challenge files
    train, val = build_splits(root)
    names = sorted(Path(p).name for p in train + val)
    assert names == ["CT_AMOS_1.npz", "MR_BraTS_1.npz", "MR_totalseg_1.npz", "PET_Lesion_psma_0001.npz",
                     "X-Ray_Teeth_0001.npz", "X-Ray_Teeth_0002.npz"]
    # a second preparation would strip 3 more characters: refused
    capsys.readouterr()
    assert main([str(tmp_path), "--apply"]) == 1
    assert "was prepared already" in capsys.readouterr().err
    log = root / "prepare_916bd4e.log"
    assert main(["--undo", str(log)]) == 0  # dry run
    assert "move  MR/totalseg_mr -> NewTrainingData/totalseg_mr" in capsys.readouterr().out
    assert log.is_file() and tree(root) == after
    assert main(["--undo", str(log), "--apply"]) == 0
    restored = tree(tmp_path)
    undone = [k for k in restored if ".log.undone-" in k]
    assert len(undone) == 1  # the log is kept, renamed
    assert {k: v for k, v in restored.items() if k not in undone} == before


def test_conflicts_stop_before_the_first_move(tmp_path, capsys):
    root = make_data(tmp_path)
    post = root / "CVPR24-PostChallenge-Train"
    (post / "XRay").mkdir()
    (post / "XRay" / "X-Ray_Teeth_0001.npz").write_bytes(b"already there")
    (post / "3D_Other_0001.npz").write_bytes(b"same name as 2D_Other_0001 after the rename")
    before = tree(tmp_path)
    assert main([str(tmp_path), "--apply"]) == 1
    err = capsys.readouterr().err
    assert "nothing moved" in err
    assert f"{post / 'XRay' / 'X-Ray_Teeth_0001.npz'} exists: 2D_X-Ray_Teeth_0001.npz would overwrite it" in err
    assert f"2D_Other_0001.npz and 3D_Other_0001.npz would both become {post / 'Other_0001.npz'}" in err
    assert tree(tmp_path) == before and not (root / "prepare_916bd4e.log").exists()


def test_wrong_folder_says_what_it_looked_for(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "holds neither NewTrainingData/totalseg_mr nor CVPR24-PostChallenge-Train/" in capsys.readouterr().err
