"""modelmerge.py + extract_evit.py: merged weights = distilled encoder + LiteMedSAM prompt encoder/decoder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from daftseg.merge import extract_main, merge_main
from daftseg.models import build_model

ROOT = Path(__file__).resolve().parents[1]


def test_merge_then_extract_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written into the current directory
    torch.manual_seed(0)
    lite = build_model("litemedsam").state_dict()
    torch.save(lite, tmp_path / "lite_medsam.pth")
    student = build_model("efficientvit_sam_l0").image_encoder.state_dict()
    # the original distillation checkpoint layout: DataParallel keys under "model"
    torch.save({"model": {f"module.{k}": v for k, v in student.items()}, "epoch": 1,
                "optimizer": {}, "loss": 1.0, "best_loss": 1.0}, tmp_path / "distill.pth")

    out = tmp_path / "models" / "merged.pth"
    assert merge_main([str(tmp_path / "distill.pth"), str(out),
                       "--lite_medsam", str(tmp_path / "lite_medsam.pth")]) == 0
    merged = torch.load(out, weights_only=True)
    assert sorted(merged) == sorted(build_model("efficientvit_sam_l0").state_dict())
    for k, v in student.items():
        assert torch.equal(merged[f"image_encoder.{k}"], v), k
    for k, v in lite.items():
        if not k.startswith("image_encoder."):
            assert torch.equal(merged[k], v), k

    # fine-tuning checkpoint layout ("module." + full model) -> plain models/<Name>.pth
    torch.save({"model": {f"module.{k}": v for k, v in merged.items()}}, tmp_path / "ft.pth")
    assert extract_main([str(tmp_path / "ft.pth"), str(tmp_path / "models" / "CT.pth")]) == 0
    extracted = torch.load(tmp_path / "models" / "CT.pth", weights_only=True)
    assert sorted(extracted) == sorted(merged)
    assert all(torch.equal(extracted[k], merged[k]) for k in merged)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["distill.pth", "ft.pth", "lite_medsam.pth", "models"]


def test_extract_rejects_a_litemedsam_checkpoint(tmp_path, capsys):
    torch.save(build_model("litemedsam").state_dict(), tmp_path / "lite.pth")
    assert extract_main([str(tmp_path / "lite.pth"), str(tmp_path / "out.pth")]) == 1
    assert "lite.pth does not fit" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()


def test_scripts_have_help():
    for script in ("modelmerge.py", "extract_evit.py"):
        res = subprocess.run([sys.executable, str(ROOT / script), "--help"], check=False, capture_output=True, text=True)
        assert res.returncode == 0 and "usage:" in res.stdout and "--trust_checkpoint" in res.stdout
