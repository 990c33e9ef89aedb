"""Effective batch (world size x per-process batch x accumulation), the partial accumulation group,
and the optimiser / scheduler constants and stepping rule of the original (spec §5.1, §5.3, §5.7)."""

from __future__ import annotations

import json

import pytest
import torch
from training_support import (
    TinySam,
    cpu_args,
    few_threads,  # noqa: F401 - autouse fixture
    make_data,
)

from daftseg.training import finetune
from daftseg.training.batch import BatchPlan, plan_batch
from daftseg.training.cli import parse_config
from daftseg.training.config import InvalidSetting
from daftseg.training.distributed import DistEnv
from daftseg.training.loop import Trainer
from daftseg.training.runner import build_datasets, run_stage
from daftseg.training.tasks import SegmentationTask


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    return make_data(root, n2d=5)


# ---- batch layout --------------------------------------------------------------------------------

@pytest.mark.parametrize("world, batch, accum, global_, expected", [
    (1, None, None, 0, (1, 4, 1)),       # the original's defaults
    (4, 7, None, 0, (4, 7, 1)),          # -batch_size is per process: global 28
    (1, None, None, 7, (1, 7, 1)),       # distillation as the original
    (4, None, None, 96, (4, 24, 1)),     # fine-tuning on 4 GPUs
    (1, 32, None, 96, (1, 32, 3)),       # one GPU that fits 32: accumulate 3
    (2, 16, None, 96, (2, 16, 3)),
    (4, None, 2, 96, (4, 12, 2)),
    (4, 12, 2, 96, (4, 12, 2)),
    (7, None, None, 7, (7, 1, 1)),
])
def test_plan_batch(world, batch, accum, global_, expected):
    plan = plan_batch(world, batch, accum, global_)
    assert (plan.world_size, plan.per_process, plan.grad_accum) == expected
    if global_:
        assert plan.global_batch == global_


@pytest.mark.parametrize("world, batch, accum, global_, message", [
    (4, None, None, 7, "cannot be split evenly over 4 processes"),
    (2, 5, None, 96, "not a multiple of -batch_size 5"),
    (4, None, 5, 96, "not a multiple of -grad_accum 5"),
    (4, 12, 1, 96, "x -grad_accum 1 x 4 processes = 48, not -global_batch_size 96"),
    (1, 0, None, 0, "-batch_size must be at least 1"),
])
def test_impossible_batch_layouts_are_errors(world, batch, accum, global_, message):
    with pytest.raises(InvalidSetting, match=message):
        plan_batch(world, batch, accum, global_)


def test_global_batch_size_uses_torchrun_world_size(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "4")
    config = parse_config("finetune", ["-global_batch_size", "96"])
    assert (config.batch_size, config.grad_accum, config.global_batch_size) == (24, 1, 96)
    assert finetune.main(["-global_batch_size", "7"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: -global_batch_size 7 cannot be split evenly over 4 processes") and "1, 7" in err


def test_first_log_line_and_config_state_the_batch(tmp_path, data, capsys):
    data_root, csv_path = data
    config = parse_config("finetune", cpu_args(tmp_path, data_root, csv_path, "-resume", "", "-batch_size", "1",
                                               "-global_batch_size", "3", "-max_steps", "1"))
    run_stage(config, lambda c, r, log: SegmentationTask(TinySam()))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Batch: world size 1 x per-process batch 1 x accumulation 3 = global batch 3"
    info = json.loads((tmp_path / "config.json").read_text())
    assert {k: info[k] for k in ("world_size", "per_process_batch", "grad_accum", "global_batch",
                                 "global_batch_size")} == {"world_size": 1, "per_process_batch": 1, "grad_accum": 3,
                                                           "global_batch": 3, "global_batch_size": 3}


# ---- accumulation ----------------------------------------------------------------------------------

def _step_gradients(data, tmp_path, grad_accum: int) -> list[dict[str, torch.Tensor]]:
    """Gradients handed to each optimiser step in epoch 1 (the step itself is skipped, so every
    micro-batch sees the same weights)."""
    data_root, csv_path = data
    config = parse_config("finetune", cpu_args(tmp_path, data_root, csv_path, "-resume", "", "-grad_accum",
                                               str(grad_accum)))
    torch.manual_seed(0)
    train_set, _ = build_datasets(config)
    trainer = Trainer(config, DistEnv(0, 1, 0, torch.device("cpu")), SegmentationTask(TinySam(batchnorm=False)),
                      train_set)
    seen: list[dict[str, torch.Tensor]] = []
    trainer.optimizer.step = lambda: seen.append({n: p.grad.clone() for n, p in trainer.model.named_parameters()
                                                  if p.grad is not None})
    trainer.train_epoch(1)
    return seen


def test_partial_accumulation_group_is_averaged_over_its_real_size(tmp_path, data):
    # 5 files at batch 2: micro-batches of 2, 2, 1; with -grad_accum 2 the groups are (1, 2) and (3)
    single = _step_gradients(data, tmp_path / "a", 1)
    grouped = _step_gradients(data, tmp_path / "b", 2)
    assert len(single) == 3 and len(grouped) == 2
    for name, g in grouped[0].items():
        torch.testing.assert_close(g, (single[0][name] + single[1][name]) / 2, rtol=1e-5, atol=1e-7)
    for name, g in grouped[1].items():  # the last group holds one micro-batch: divided by 1, not 2
        torch.testing.assert_close(g, single[2][name], rtol=1e-5, atol=1e-7)


# ---- optimiser and scheduler -------------------------------------------------------------------------

def _trainer(data, tmp_path, *extra: str) -> Trainer:
    data_root, csv_path = data
    config = parse_config("finetune", cpu_args(tmp_path, data_root, csv_path, "-resume", "", *extra))
    train_set, _ = build_datasets(config)
    return Trainer(config, DistEnv(0, 1, 0, torch.device("cpu")), SegmentationTask(TinySam()), train_set)


def test_optimiser_and_scheduler_constants(tmp_path, data):
    trainer = _trainer(data, tmp_path)
    opt = trainer.optimizer
    assert type(opt) is torch.optim.AdamW and len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert group["lr"] == 5e-5 and group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8
    assert group["weight_decay"] == 0.01 and group["amsgrad"] is False and group["maximize"] is False
    # every parameter, the frozen prompt encoder's included, as the original (frozen after creation)
    assert [id(p) for p in group["params"]] == [id(p) for p in trainer.model.parameters()]
    sched = trainer.scheduler
    assert type(sched) is torch.optim.lr_scheduler.ReduceLROnPlateau
    assert (sched.mode, sched.factor, sched.patience, sched.cooldown) == ("min", 0.9, 5, 0)
    assert (sched.threshold, sched.threshold_mode, sched.min_lrs, sched.eps) == (1e-4, "rel", [0.0], 1e-8)


def test_scheduler_steps_once_per_epoch_on_the_mean_training_loss(tmp_path, data, monkeypatch):
    calls: list[float] = []
    original_step = torch.optim.lr_scheduler.ReduceLROnPlateau.step

    def record(self, metrics, *args, **kwargs):
        calls.append(float(metrics))
        return original_step(self, metrics, *args, **kwargs)

    monkeypatch.setattr(torch.optim.lr_scheduler.ReduceLROnPlateau, "step", record)
    trainer = _trainer(data, tmp_path, "-num_epochs", "3")
    losses: list[list[float]] = []
    original_train_step = trainer.train_step

    def train_step(batch, boundary=True, group_size=None):
        loss = original_train_step(batch, boundary, group_size)
        losses[-1].append(float(loss))
        return loss

    trainer.train_step = train_step
    original_epoch = trainer.train_epoch

    def train_epoch(epoch):
        losses.append([])
        return original_epoch(epoch)

    trainer.train_epoch = train_epoch
    result = trainer.fit()
    assert calls == [row["train_loss"] for row in result.history]
    assert len(calls) == 3 and all(len(x) == 3 for x in losses)  # one scheduler step per epoch, 3 batches each
    for monitored, batch_losses in zip(calls, losses):
        assert monitored == pytest.approx(sum(batch_losses) / len(batch_losses), rel=1e-6)
    assert trainer.optimizer.param_groups[0]["lr"] == 5e-5  # patience 5: no reduction within 3 epochs


def test_batch_plan_describes_itself():
    assert BatchPlan(4, 24, 1).describe() == "world size 4 x per-process batch 24 x accumulation 1 = global batch 96"
