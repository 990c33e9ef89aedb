"""Running a stage: process group, seeds, datasets, the task's models, then the loop."""

from __future__ import annotations

import random
import sys
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import numpy as np
import torch

from daftseg.checkpoints import CheckpointError
from daftseg.data.file_lists import load_file_list
from daftseg.data.npz_dataset import NpzDataset
from daftseg.training.batch import BatchPlan
from daftseg.training.cli import parse_config
from daftseg.training.config import InvalidSetting, TrainConfig
from daftseg.training.distributed import barrier, init_distributed, print_main, shutdown
from daftseg.training.loop import Trainer, TrainResult
from daftseg.training.tasks import TrainTask
from daftseg.training.workdir import WorkDirError, check_work_dir, remove_stale

# make_task(config, resuming, log) -> task; ``resuming``: the weights will come from -resume
TaskFactory = Callable[[TrainConfig, bool, Callable[[str], None]], TrainTask]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_datasets(config: TrainConfig) -> tuple[NpzDataset, NpzDataset | None]:
    """Training set and, with ``-valcsv``, validation set (augmented and jittered as 916bd4e, but
    with a fixed RNG stream, so every epoch validates on the same samples)."""
    def dataset(csv_path: str) -> NpzDataset:
        files = load_file_list(csv_path, config.data_root, config.data_subset,
                               skip_missing=config.skip_missing_files)
        return NpzDataset(files, every_slice=config.every_slice, bbox_shift=config.bbox_shift, data_aug=True,
                          norm_before_pad=config.norm_before_pad, cache_dir=config.cache_dir or None,
                          seed=config.seed)

    return dataset(config.datacsv), (dataset(config.valcsv) if config.valcsv else None)


def describe(name: str, ds: NpzDataset) -> str:
    unit = "slices" if ds.every_slice else "files"
    cached = f", {ds.num_cached}/{len(ds.files)} files cached" if ds.num_cached else ""
    return f"{name}: {len(ds.files)} files, {len(ds)} {unit} per epoch{cached}"


def run_stage(config: TrainConfig, make_task: TaskFactory) -> TrainResult:
    """Train one stage as ``config`` says; works alone or under torchrun.

    Raises ``WorkDirError`` before anything is loaded or written if the run would overwrite
    another one (``daftseg.training.workdir``).
    """
    # every process checks before the process group forms: none has written anything yet
    plan = check_work_dir(config)
    env = init_distributed(config.device)
    log = partial(print_main, env)
    try:
        batch = BatchPlan(env.world_size, config.batch_size, config.grad_accum)
        if config.global_batch_size and batch.global_batch != config.global_batch_size:
            raise InvalidSetting(f"{batch.describe()}, but -global_batch_size is {config.global_batch_size} "
                                 f"(the config was resolved for another number of processes)")
        log(f"Batch: {batch.describe()}")
        seed_everything(config.seed)
        quiet = nullcontext() if env.is_main else warnings.catch_warnings()
        with quiet:
            if not env.is_main:
                warnings.simplefilter("ignore")
            train_set, val_set = build_datasets(config)
        log(describe("Training", train_set))
        if val_set is not None:
            log(describe("Validation", val_set))
        task = make_task(config, plan.resuming, log)
        trainable = sum(p.numel() for p in task.model.parameters() if p.requires_grad)
        log(f"{config.stage} on {env.world_size} process(es), device {env.device}: "
            f"{trainable:,} trainable parameters")
        trainer = Trainer(config, env, task, train_set, val_set)
        if env.is_main:  # only now: a run that fails to start leaves the old one in place
            for path in remove_stale(plan):
                log(f"replacing the earlier run: deleted {path}")
        result = trainer.fit()
        # rank 0 still writes checkpoints and plots; tearing gloo down on one rank while another
        # is busy could abort the process ("terminate called without an active exception")
        barrier(env)
        return result
    finally:
        shutdown(env)


def run_main(stage: str, argv: list[str] | None, prog: str, make_task: TaskFactory) -> int:
    """A training script's ``main``: 0 when the run finished; 1, with one line on stderr naming the
    file or folder and what is wrong, for an invalid setting, a refused work folder, or a missing,
    refused or unfitting weights file."""
    try:
        config = parse_config(stage, argv, prog=prog)
        run_stage(config, make_task)
    except (WorkDirError, CheckpointError, FileNotFoundError, InvalidSetting) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    return 0
