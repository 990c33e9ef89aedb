"""No code runs from a checkpoint: files are read weights-only, known layouts through an allow-list,
anything else refused with the file and the global named, unless the user passes --trust_checkpoint.

The malicious file's payload would create a marker folder; every test checks that it did not.
"""

from __future__ import annotations

import argparse
import os
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from training_support import TinySam, cpu_args, make_data

from daftseg import weights_fetch
from daftseg.checkpoints import CheckpointError, load_weights, read_checkpoint
from daftseg.export import lite, onnx_export
from daftseg.merge import extract_main, merge_main
from daftseg.models import build_model
from daftseg.training import finetune
from daftseg.training.cli import parse_config
from daftseg.training.runner import run_stage
from daftseg.training.state import resume
from daftseg.training.tasks import SegmentationTask


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: a stand-in for any code a file could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def trojan(path: Path, state_dict: dict, marker: Path, legacy: bool = False) -> Path:
    """A checkpoint in the usual layout, with the payload hidden next to the weights."""
    torch.save({"model": state_dict, "epoch": 3, "extra": Payload(marker)}, path,
               _use_new_zipfile_serialization=not legacy)
    return path


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "payload_ran"
    yield path
    assert not path.exists() or path.is_dir()  # only ever made by the payload


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy_format"])
def test_malicious_file_is_refused_naming_file_and_global(tmp_path, marker, legacy):
    path = trojan(tmp_path / "evil.pth", nn.Linear(2, 2).state_dict(), marker, legacy)
    with pytest.raises(CheckpointError) as err:
        load_weights(nn.Linear(2, 2), path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: refused") and "mkdir" in msg and "--trust_checkpoint" in msg
    assert not marker.exists()


def test_trust_unpickles_in_full_as_documented(tmp_path, marker):
    weights = nn.Linear(2, 2).state_dict()
    path = trojan(tmp_path / "evil.pth", weights, marker)
    module = load_weights(nn.Linear(2, 2), path, trust=True)
    assert marker.is_dir()  # trusting a file runs what it carries: that is what the flag says
    assert all(torch.equal(module.state_dict()[k], v) for k, v in weights.items())


def test_unknown_but_harmless_global_is_refused_then_trusted(tmp_path):
    path = tmp_path / "with_args.pth"
    torch.save({"model": nn.Linear(2, 2).state_dict(), "args": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(CheckpointError, match=r"with_args\.pth: refused.*argparse\.Namespace"):
        read_checkpoint(path)
    assert read_checkpoint(path, trust=True)["args"].lr == 1e-4


def _916bd4e_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """916bd4e's training checkpoint: the original's keys plus the RNG states as the Python,
    NumPy and torch calls return them (NumPy: a tuple holding a uint32 array)."""
    return {"model": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 2,
            "optimizer": optimizer.state_dict(), "loss": np.float64(0.75), "best_loss": np.float64(0.5),
            "epochs_since_improvement": 1, "rng_state": random.getstate(),
            "np_rng_state": np.random.get_state(), "torch_rng_state": torch.get_rng_state()}


def test_original_training_checkpoints_resume_without_trust(tmp_path):
    model = TinySam()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    np.random.seed(7)
    saved = _916bd4e_checkpoint(model, optimizer)
    torch.save(saved, tmp_path / "916bd4e.pth")
    np.random.seed(99)  # resume must bring the saved NumPy state back
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
    progress, _ = resume(tmp_path / "916bd4e.pth", TinySam(), optimizer, scheduler)
    assert progress.epoch == 2 and progress.best_loss == 0.5 and progress.epochs_since_improvement == 1
    np.testing.assert_array_equal(np.random.get_state()[1], saved["np_rng_state"][1])


def _as_numpy1(src: Path, dst: Path) -> Path:
    """The same checkpoint as NumPy 1.x writes it: its array globals live in ``numpy.core``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(info.filename, data)
    return dst


def test_numpy_arrays_and_scalars_from_either_numpy_major(tmp_path):
    model = TinySam()
    ckpt = _916bd4e_checkpoint(model, torch.optim.AdamW(model.parameters()))
    torch.save(ckpt, tmp_path / "np2.pth")
    for path in (tmp_path / "np2.pth", _as_numpy1(tmp_path / "np2.pth", tmp_path / "np1.pth")):
        loaded = read_checkpoint(path)
        assert loaded["loss"] == 0.75 and loaded["np_rng_state"][1].dtype == np.uint32
        np.testing.assert_array_equal(loaded["np_rng_state"][1], ckpt["np_rng_state"][1])


# ---- every script that loads weights refuses the file, and writes nothing ----------------------------


def test_merge_and_extract_refuse_then_trust(tmp_path, marker, capsys):
    evit = build_model("efficientvit_sam_l0").state_dict()
    evil = trojan(tmp_path / "evil.pth", evit, marker)
    lite_path = tmp_path / "lite_medsam.pth"
    torch.save(build_model("litemedsam").state_dict(), lite_path)
    out = tmp_path / "out.pth"
    assert extract_main([str(evil), str(out)]) == 1
    assert merge_main([str(evil), str(out), "--lite_medsam", str(lite_path)]) == 1
    assert merge_main([str(lite_path), str(out), "--lite_medsam", str(evil)]) == 1
    err = capsys.readouterr().err
    assert err.count(f"{evil}: refused") == 3 and "--trust_checkpoint" in err
    assert not out.exists() and not marker.exists()
    assert extract_main([str(evil), str(out), "--trust_checkpoint"]) == 0
    assert marker.is_dir() and out.is_file()
    assert sorted(torch.load(out, weights_only=True)) == sorted(evit)


def test_export_scripts_refuse(tmp_path, marker, capsys):
    models = tmp_path / "models"
    models.mkdir()
    trojan(models / "CT.pth", {"prompt_encoder.x": torch.zeros(1)}, marker)
    assert onnx_export.main(["--models_dir", str(models), "--out_dir", str(tmp_path / "onnx")]) == 1
    assert f"{models / 'CT.pth'}: refused" in capsys.readouterr().err
    assert lite.main(["--checkpoint", str(models / "CT.pth"), "--onnx_dir", str(tmp_path / "lo"),
                      "--ov_dir", str(tmp_path / "lv")]) == 1
    assert f"{models / 'CT.pth'}: refused" in capsys.readouterr().err
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_training_refuses_pretrained_and_resume(tmp_path, marker, capsys):
    data_root, csv_path = make_data(tmp_path, n2d=2)
    evil = trojan(tmp_path / "evil.pth", TinySam().state_dict(), marker)
    work = tmp_path / "run"
    args = cpu_args(work, data_root, csv_path, "-pretrained_checkpoint", str(evil), "-resume", "")
    assert finetune.main(args) == 1
    assert f"error: {evil}: refused" in capsys.readouterr().err
    config = parse_config("finetune", cpu_args(work, data_root, csv_path, "-resume", str(evil)))
    with pytest.raises(CheckpointError, match="evil.pth: refused"):
        run_stage(config, lambda c, resuming, log: SegmentationTask(TinySam()))
    assert not marker.exists() and not work.exists()


def test_unverified_fetch_refuses_unless_trusted(tmp_path, marker, capsys):
    evil = trojan(tmp_path / "evil.pth", {"w": torch.ones(1)}, marker)
    dest = tmp_path / "w" / "lite_medsam.pth"
    assert weights_fetch.main(["--from", str(evil), "-o", str(dest), "--no-verify"]) == 1
    assert f"{evil}: refused" in capsys.readouterr().err
    assert not dest.exists() and [p.name for p in dest.parent.iterdir()] == []
    # trusted: copied as it is; the fetch itself never unpickles it
    assert weights_fetch.main(["--from", str(evil), "-o", str(dest), "--no-verify",
                               "--trust_checkpoint"]) == 0
    assert dest.read_bytes() == evil.read_bytes() and not marker.exists()
