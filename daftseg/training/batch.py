"""Effective batch: world size x per-process batch x accumulation = global batch.

The original trained on one GPU (its ``nn.DataParallel`` wrapper was bypassed, spec §5.7), so
its global batch was simply ``-batch_size``: 7 for distillation, 96 for fine-tuning. Under
``torchrun`` ``-batch_size`` is per process (the DDP convention); ``-global_batch_size`` states
the original's number directly and the per-process batch (or the accumulation) is derived.
"""

from __future__ import annotations

from dataclasses import dataclass

from daftseg.training.config import InvalidSetting

DEFAULT_BATCH_SIZE = 4
DEFAULT_GRAD_ACCUM = 1


@dataclass(frozen=True)
class BatchPlan:
    world_size: int
    per_process: int
    grad_accum: int

    @property
    def global_batch(self) -> int:
        return self.world_size * self.per_process * self.grad_accum

    def describe(self) -> str:
        return (f"world size {self.world_size} x per-process batch {self.per_process} x accumulation "
                f"{self.grad_accum} = global batch {self.global_batch}")

    def to_dict(self) -> dict[str, int]:
        return {"world_size": self.world_size, "per_process_batch": self.per_process,
                "grad_accum": self.grad_accum, "global_batch": self.global_batch}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def plan_batch(world_size: int, batch_size: int | None = None, grad_accum: int | None = None,
               global_batch_size: int = 0) -> BatchPlan:
    """The batch layout of a run; ``None`` means the flag was not given.

    Without ``global_batch_size`` the per-process batch and accumulation are taken as given
    (defaults 4 and 1). With it, every process must see the same number of samples per
    optimiser step, so ``global_batch_size`` must be a multiple of ``world_size``; then

    - neither given: per-process batch = global / world, accumulation 1;
    - ``batch_size`` given (the largest that fits in memory): accumulation = global / (world x batch);
    - ``grad_accum`` given: per-process batch = global / (world x accumulation);
    - both given: they must multiply to the global batch.

    Anything that cannot reach exactly ``global_batch_size`` raises ``InvalidSetting``.
    """
    if world_size < 1:
        raise InvalidSetting(f"world size must be at least 1, got {world_size}")
    for name, value in (("batch_size", batch_size), ("grad_accum", grad_accum)):
        if value is not None and value < 1:
            raise InvalidSetting(f"-{name} must be at least 1, got {value}")
    if not global_batch_size:
        return BatchPlan(world_size, batch_size or DEFAULT_BATCH_SIZE, grad_accum or DEFAULT_GRAD_ACCUM)
    g = global_batch_size
    if g < 1:
        raise InvalidSetting(f"-global_batch_size must be at least 1, got {g}")
    if g % world_size:
        raise InvalidSetting(
            f"-global_batch_size {g} cannot be split evenly over {world_size} processes (every process "
            f"takes the same batch); run with a number of processes that divides {g} "
            f"({', '.join(map(str, _divisors(g)))}), or choose another global batch")
    per_rank = g // world_size  # samples per process per optimiser step
    if batch_size is not None and grad_accum is not None:
        if batch_size * grad_accum != per_rank:
            raise InvalidSetting(
                f"-batch_size {batch_size} x -grad_accum {grad_accum} x {world_size} processes = "
                f"{batch_size * grad_accum * world_size}, not -global_batch_size {g}; give only one of "
                f"-batch_size and -grad_accum and the other is derived")
        return BatchPlan(world_size, batch_size, grad_accum)
    if batch_size is not None:
        if per_rank % batch_size:
            raise InvalidSetting(
                f"-global_batch_size {g} over {world_size} processes is {per_rank} samples per process, "
                f"not a multiple of -batch_size {batch_size}; choose a -batch_size that divides {per_rank} "
                f"({', '.join(map(str, _divisors(per_rank)))})")
        return BatchPlan(world_size, batch_size, per_rank // batch_size)
    if grad_accum is not None:
        if per_rank % grad_accum:
            raise InvalidSetting(
                f"-global_batch_size {g} over {world_size} processes is {per_rank} samples per process, "
                f"not a multiple of -grad_accum {grad_accum}; choose a -grad_accum that divides {per_rank} "
                f"({', '.join(map(str, _divisors(per_rank)))})")
        return BatchPlan(world_size, per_rank // grad_accum, grad_accum)
    return BatchPlan(world_size, per_rank, 1)
