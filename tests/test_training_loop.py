"""The training loop with tiny models: learning, resume equivalence, checkpoints, early stopping.

Tiny models keep these tests to seconds; tests/test_training_scripts.py runs the real models.
"""

from __future__ import annotations

import csv
import json

import pytest
import torch
from training_support import (
    TinyEncoder,
    TinySam,
    cpu_args,
    few_threads,  # noqa: F401 - autouse fixture
    make_data,
)

from daftseg.training.cli import parse_config
from daftseg.training.runner import run_stage
from daftseg.training.state import BEST, LATEST
from daftseg.training.tasks import DistillationTask, SegmentationTask


def seg_task(batchnorm: bool = True):
    return lambda config, resuming, log: SegmentationTask(TinySam(batchnorm=batchnorm))


def distill_task(config, resuming, log):
    torch.manual_seed(123)  # a fixed random teacher, different from the student
    teacher = TinyEncoder(hidden=6, act=torch.nn.Tanh)
    torch.manual_seed(config.seed)
    return DistillationTask(TinyEncoder(), teacher)


def run(work_dir, data, csv_path, *args, factory=None, stage="finetune"):
    config = parse_config(stage, cpu_args(work_dir, data, csv_path, "-resume", "", *args))
    return run_stage(config, factory or seg_task())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data_root, train_csv = make_data(root, n2d=14, n3d=2)
    _, val_csv = make_data(root, n2d=3, name="val.csv", prefix="CT_Val")
    return data_root, train_csv, val_csv


def test_finetuning_loss_falls(tmp_path, data):
    data_root, train_csv, _ = data
    result = run(tmp_path, data_root, train_csv, "-num_epochs", "3", "-lr", "1e-2")
    losses = [row["train_loss"] for row in result.history]
    assert losses[2] < 0.6 * losses[0], losses
    assert result.progress.global_step == 3 * 8
    assert result.model.prompt_encoder.scale.item() == 1.0  # frozen: never stepped, not even decayed


def test_distillation_lowers_student_teacher_mse(tmp_path, data):
    data_root, train_csv, _ = data
    result = run(tmp_path, data_root, train_csv, "-num_epochs", "3", "-lr", "1e-2",
                 factory=distill_task, stage="distill")
    losses = [row["train_loss"] for row in result.history]
    assert losses[2] < 0.5 * losses[0], losses
    assert list(torch.load(tmp_path / LATEST, weights_only=True)["model"]) == ["net.0.weight", "net.0.bias",
                                                                              "net.2.weight", "net.2.bias"]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k, value in a.items():
        assert torch.equal(value, b[k]), k


def test_resume_equals_an_uninterrupted_run(tmp_path, data):
    data_root, train_csv, val_csv = data
    common = ("-valcsv", str(val_csv), "-lr", "1e-3")
    straight = run(tmp_path / "a", data_root, train_csv, "-num_epochs", "2", *common)
    # first half with worker processes: samples must not depend on who loads them
    run(tmp_path / "c", data_root, train_csv, "-num_epochs", "1", "-num_workers", "2", *common)
    config = parse_config("finetune", cpu_args(tmp_path / "c", data_root, train_csv, "-num_epochs", "2",
                                               "-resume", str(tmp_path / "c" / LATEST), *common))
    resumed = run_stage(config, seg_task())
    assert [r["epoch"] for r in resumed.history] == [2]
    _assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    assert resumed.history[0]["train_loss"] == straight.history[1]["train_loss"]
    assert resumed.history[0]["val_loss"] == straight.history[1]["val_loss"]
    a = torch.load(tmp_path / "a" / LATEST, weights_only=True)
    c = torch.load(tmp_path / "c" / LATEST, weights_only=True)
    assert a["scheduler"] == c["scheduler"] and a["global_step"] == c["global_step"] == 16
    for pid, state in a["optimizer"]["state"].items():
        _assert_same_state(state, c["optimizer"]["state"][pid])
    with open(tmp_path / "c" / "train_log.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2"]


def test_original_checkpoint_layout_resumes(tmp_path, data):
    data_root, train_csv, _ = data
    straight = run(tmp_path / "a", data_root, train_csv, "-num_epochs", "2")
    run(tmp_path / "b", data_root, train_csv, "-num_epochs", "1")
    ours = torch.load(tmp_path / "b" / LATEST, weights_only=True)
    original = {"model": {f"module.{k}": v for k, v in ours["model"].items()}, "epoch": 1,
                "optimizer": ours["optimizer"], "loss": ours["loss"], "best_loss": ours["best_loss"]}
    # in the run's own folder: a checkpoint from elsewhere may not continue over another run
    torch.save(original, tmp_path / "b" / "original.pth")
    config = parse_config("finetune", cpu_args(tmp_path / "b", data_root, train_csv, "-num_epochs", "2",
                                               "-resume", str(tmp_path / "b" / "original.pth")))
    resumed = run_stage(config, seg_task())
    assert [r["epoch"] for r in resumed.history] == [2]
    # no scheduler or RNG state in it, but neither matters for the next epoch
    _assert_same_state(straight.model.state_dict(), resumed.model.state_dict())


def test_checkpoints_logs_and_config(tmp_path, data):
    data_root, train_csv, val_csv = data
    run(tmp_path, data_root, train_csv, "-num_epochs", "2", "-valcsv", str(val_csv), "-lr", "1e-2")
    ckpt = torch.load(tmp_path / LATEST, weights_only=True)  # plain data only: weights_only reads it
    assert {"model", "optimizer", "scheduler", "epoch", "loss", "val_loss", "best_loss", "rng", "config",
            "model_name", "epochs_since_improvement", "global_step"} <= ckpt.keys()
    assert ckpt["epoch"] == 2 and ckpt["config"]["stage"] == "finetune"
    assert all(k.split(".")[0] in ("image_encoder", "prompt_encoder", "mask_decoder") for k in ckpt["model"])
    best = torch.load(tmp_path / BEST, weights_only=True)
    assert best["best_loss"] == min(best["val_loss"], ckpt["best_loss"])
    assert (tmp_path / "train_loss.png").stat().st_size > 0
    assert json.loads((tmp_path / "config.json").read_text())["valcsv"] == str(val_csv)
    with open(tmp_path / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and all(r["val_loss"] for r in rows)


def test_early_stopping_on_validation_loss(tmp_path, data):
    data_root, train_csv, val_csv = data
    # lr 0 and no BatchNorm: the validation loss never improves after epoch 1
    result = run(tmp_path, data_root, train_csv, "-num_epochs", "5", "-valcsv", str(val_csv), "-lr", "0",
                 "-patience", "0", factory=seg_task(batchnorm=False))
    assert result.stopped_early and [r["epoch"] for r in result.history] == [1, 2]
    assert torch.load(tmp_path / BEST, weights_only=True)["epoch"] == 1


def test_accumulation_bf16_channels_last_and_sanity_check(tmp_path, data):
    data_root, train_csv, _ = data
    result = run(tmp_path, data_root, train_csv, "-batch_size", "3", "-grad_accum", "2", "--amp", "bf16",
                 "--channels_last", "--sanity_check")
    assert result.progress.global_step == 3  # 6 micro-batches of 3 (16 items), stepped in pairs
    assert torch.isfinite(torch.tensor(result.history[0]["train_loss"]))
    assert (tmp_path / "sanity_check.png").stat().st_size > 0


def test_max_steps_stops_early(tmp_path, data):
    data_root, train_csv, _ = data
    result = run(tmp_path, data_root, train_csv, "-num_epochs", "3", "-max_steps", "2")
    assert result.progress.global_step == 2 and len(result.history) == 1
    assert torch.load(tmp_path / LATEST, weights_only=True)["global_step"] == 2
