"""BatchNorm under DDP (``-sync_bn``). torch implements SyncBatchNorm on GPUs only (its forward
refuses CPU tensors under a process group, pinned below), so on CPU this tests the conversion and
the one line a multi-process run logs; the statistics themselves are torch's."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn
from training_support import TinySam, few_threads  # noqa: F401 - autouse fixture

from daftseg.training.batch import BatchPlan
from daftseg.training.batchnorm import convert_to_sync, prepare_batchnorm
from daftseg.training.cli import parse_config
from daftseg.training.distributed import DistEnv


def _env(world: int, device: str = "cpu") -> DistEnv:
    return DistEnv(rank=0, world_size=world, local_rank=0, device=torch.device(device))


def test_conversion_keeps_parameters_buffers_and_keys():
    model = TinySam()
    with torch.no_grad():
        model.image_encoder[1].running_mean.uniform_()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model.image_encoder[1].weight
    converted = convert_to_sync(model)
    assert isinstance(converted.image_encoder[1], nn.SyncBatchNorm)
    assert not any(type(m) is nn.BatchNorm2d for m in converted.modules())
    assert converted.image_encoder[1].weight is weight  # the optimiser's parameters stay the same objects
    after = converted.state_dict()
    assert list(after) == list(before)  # checkpoints load into plain BatchNorm models
    assert all(torch.equal(after[k], before[k]) for k in before)
    plain = TinySam()
    plain.load_state_dict(after, strict=True)


def test_one_line_per_case():
    plan = BatchPlan(world_size=4, per_process=24, grad_accum=1)
    model = TinySam()
    same, line = prepare_batchnorm(model, _env(4), sync=False, plan=plan)
    assert same is model
    assert line == ("BatchNorm statistics are per process: over 24 images each, not over all 96 as on one "
                    "GPU (the original); -sync_bn synchronises them")
    same, line = prepare_batchnorm(model, _env(4), sync=True, plan=plan)
    assert same is model and not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    assert line.startswith("-sync_bn: torch synchronises BatchNorm on GPUs only") and "own 24 images" in line
    # a CUDA device object needs no GPU to exist: the conversion itself happens on any machine
    converted, line = prepare_batchnorm(TinySam(), _env(4, "cuda"), sync=True, plan=plan)
    assert isinstance(converted.image_encoder[1], nn.SyncBatchNorm)
    assert line.startswith("BatchNorm synchronised over 4 processes (-sync_bn)") and "all 96 images" in line
    # nothing to say for one process or a model without BatchNorm
    assert prepare_batchnorm(model, _env(1), sync=True, plan=BatchPlan(1, 96, 1)) == (model, "")
    no_bn = TinySam(batchnorm=False)
    assert prepare_batchnorm(no_bn, _env(4), sync=False, plan=plan) == (no_bn, "")


def test_flag_is_parsed():
    assert parse_config("finetune", ["-sync_bn"]).sync_bn
    assert not parse_config("finetune", []).sync_bn


def test_torch_refuses_cpu_sync_batchnorm(tmp_path):
    """The fact the CPU tests rest on. Should a torch release accept CPU tensors, this fails: then
    test the statistics directly (two gloo processes vs one process over the 2x batch)."""
    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        layer = nn.SyncBatchNorm(3).train()
        with pytest.raises(ValueError, match="SyncBatchNorm expected input tensor to be on GPU"):
            layer(torch.randn(4, 3, 5, 5))
    finally:
        dist.destroy_process_group()
