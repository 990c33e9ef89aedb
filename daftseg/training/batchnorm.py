"""BatchNorm under DDP: per-process statistics, or synchronised over all processes (``-sync_bn``).

The original trained on one GPU (its DataParallel was bypassed, spec §5.7), so every BatchNorm
layer normalised over the whole batch (96 images in fine-tuning) and updated its running
statistics from it. Plain DDP normalises each process's share separately (24 of 96 on 4 GPUs):
the gradients and running statistics differ a little from a single-GPU run. ``SyncBatchNorm``
computes the statistics over all processes, which restores the single-GPU numbers; torch
implements it for GPUs only.
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from daftseg.training.batch import BatchPlan
from daftseg.training.distributed import DistEnv


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in model.modules())


def convert_to_sync(model: nn.Module) -> nn.Module:
    """Every ``BatchNorm*d`` of ``model`` replaced by ``SyncBatchNorm`` holding the same parameters
    and buffers (state-dict keys unchanged, so checkpoints load into plain BatchNorm models)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def sync_supported(env: DistEnv) -> bool:
    """torch's SyncBatchNorm refuses CPU tensors (its forward raises under a process group)."""
    return env.device.type == "cuda"


def prepare_batchnorm(model: nn.Module, env: DistEnv, sync: bool, plan: BatchPlan) -> tuple[nn.Module, str]:
    """``model`` ready for DDP, and the one line to log about its BatchNorm statistics ('' for none).

    One process, or no BatchNorm layer: nothing to say or change. Several processes: with ``sync``
    (and a GPU) the layers become ``SyncBatchNorm``; otherwise the line says how the statistics
    differ from a single-GPU run.
    """
    if not env.distributed or not has_batchnorm(model):
        return model, ""
    world, per, total = env.world_size, plan.per_process, env.world_size * plan.per_process
    if sync and sync_supported(env):
        return convert_to_sync(model), (f"BatchNorm synchronised over {world} processes (-sync_bn): statistics "
                                        f"over all {total} images of a step's forward pass, as on one GPU")
    if sync:
        return model, (f"-sync_bn: torch synchronises BatchNorm on GPUs only; on {env.device.type} each of the "
                       f"{world} processes keeps BatchNorm statistics over its own {per} images (one GPU: {total})")
    return model, (f"BatchNorm statistics are per process: over {per} images each, not over all {total} as on "
                   f"one GPU (the original); -sync_bn synchronises them")
