"""The three training scripts with the real models, a step each, chained as in docs/training.md:
distill -> modelmerge -> general fine-tuning -> extract_evit -> 3D DAFT -> extract_evit.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch
from training_support import make_data

from daftseg.models import build_model
from daftseg.training import distill, finetune, finetune3d
from daftseg.training.state import BEST, LATEST

REPO = Path(__file__).resolve().parents[1]
QUICK = ["-device", "cpu", "-num_workers", "0", "-batch_size", "1", "-num_epochs", "1", "-max_steps", "1",
         "-resume", ""]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("scripts")
    data_root, csv_path = make_data(root, n2d=2, n3d=1)
    l0 = build_model("efficientvit_sam_l0").state_dict()  # stands in for the official l0.pt
    torch.save({"state_dict": l0}, root / "l0.pt")
    lite = root / "work_dir" / "LiteMedSAM" / "lite_medsam.pth"
    lite.parent.mkdir(parents=True)
    torch.save(build_model("litemedsam").state_dict(), lite)
    return root, ["-data_root", str(data_root), "-datacsv", str(csv_path)], lite


def test_stage_chain_runs_end_to_end(setup):
    root, data_args, lite = setup
    from daftseg.merge import extract_main, merge_main

    distill_dir = root / "distill"
    assert distill.main([*data_args, *QUICK, "-work_dir", str(distill_dir), "-pretrained_checkpoint",
                         str(root / "l0.pt"), "-teacher_checkpoint", str(lite)]) == 0
    ckpt = torch.load(distill_dir / LATEST, weights_only=True)
    assert (distill_dir / BEST).is_file() and ckpt["epoch"] == 1 and ckpt["model_part"] == "image_encoder"
    assert {k.split(".")[0] for k in ckpt["model"]} == {"backbone", "neck", "norm"}

    assert merge_main([str(distill_dir / LATEST), str(root / "distilled.pth"), "--lite_medsam", str(lite)]) == 0

    general_dir = root / "general"
    assert finetune.main([*data_args, *QUICK, "-work_dir", str(general_dir), "-pretrained_checkpoint",
                          str(root / "distilled.pth"), "--sanity_check"]) == 0
    ckpt = torch.load(general_dir / BEST, weights_only=True)
    assert {k.split(".")[0] for k in ckpt["model"]} == {"image_encoder", "prompt_encoder", "mask_decoder"}
    merged = torch.load(root / "distilled.pth", weights_only=True)
    frozen = [k for k in merged if k.startswith("prompt_encoder.")]
    assert all(torch.equal(ckpt["model"][k], merged[k]) for k in frozen)  # the prompt encoder stays frozen
    assert extract_main([str(general_dir / BEST), str(root / "general.pth")]) == 0

    dir3d = root / "dir3d"
    assert finetune3d.main([*data_args, *QUICK, "-work_dir", str(dir3d), "-pretrained_checkpoint",
                            str(root / "general.pth"), "-data_subset", "CT_Synth_3d"]) == 0
    assert extract_main([str(dir3d / LATEST), str(root / "models" / "3D.pth")]) == 0
    final = torch.load(root / "models" / "3D.pth", weights_only=True)
    build_model("efficientvit_sam_l0").load_state_dict(final, strict=True)


def test_finetuning_start_weights_must_exist_and_fit(setup, tmp_path, capsys):
    _, data_args, lite = setup
    args = [*data_args, *QUICK, "-work_dir", str(tmp_path)]
    # one line naming the file and what to do, exit status 1, no traceback
    missing = tmp_path / "missing.pth"
    assert finetune.main([*args, "-pretrained_checkpoint", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: -pretrained_checkpoint {missing}: no such file")
    assert "--from_scratch" in err
    assert finetune.main([*args, "-pretrained_checkpoint", str(lite)]) == 1
    err = capsys.readouterr().err
    assert f"{lite} does not fit" in err and "LiteMedSAM" in err
    assert distill.main([*args, "-pretrained_checkpoint", str(tmp_path / "l0.pt"), "-teacher_checkpoint",
                         str(lite)]) == 1
    assert "--nopretrain" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written: no checkpoint, no config.json


@pytest.mark.parametrize("script", ["distill_fulldataset.py", "finetune_npz_devit_fulldataset.py",
                                    "finetune_npz_devit_fulldataset3D.py"])
def test_root_scripts_show_help(script, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / script), run_name="__main__")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "-bbox_shift" in text and "--norm_before_pad" in text and "-valcsv" in text
    assert "--overwrite" in text and "--trust_checkpoint" in text
    assert ("EfficientViT-SAM l0" in text) if script.startswith("distill") else ("--from_scratch" in text)
