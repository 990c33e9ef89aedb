"""One process or ``torchrun`` (DDP): device choice, process group, reductions, rank-0 printing.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them the run is a single
process. The backend is NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int, world_size: int) -> torch.device:
    """``-device`` as a torch device; under torchrun a CUDA device becomes ``cuda:<LOCAL_RANK>``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"-device {device}: CUDA is not available here; pass -device cpu")
        if world_size > 1:
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return dev


def init_distributed(device: str) -> DistEnv:
    """Join the process group when started by torchrun; returns this process's place and device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank, world_size)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                device_id=dev if dev.type == "cuda" else None)
    return DistEnv(rank, world_size, local_rank, dev)


def all_reduce_sum(values: list[float], env: DistEnv) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (identity for one process)."""
    if not env.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=env.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_mean(values: list[float], env: DistEnv) -> list[float]:
    return [v / env.world_size for v in all_reduce_sum(values, env)]


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def print_main(env: DistEnv, *args: object) -> None:
    """``print`` on rank 0 only."""
    if env.is_main:
        print(*args, flush=True)
