"""The one training loop of all three stages: one process or DDP, AMP, accumulation, checkpoints.

Per epoch (as the original, spec §5.1, §11.2): train over the loader, optionally validate, step
``ReduceLROnPlateau`` on the mean training loss (``-plateau_on val``: on the validation loss),
append to ``train_log.csv``, write ``medsam_lite_latest.pth`` and, when the monitored loss
improved (validation loss with ``-valcsv``, else training loss), ``medsam_lite_best.pth``, then
redraw ``train_loss.png``. Only rank 0 writes or prints; every
write is atomic, so a run killed at any moment resumes from its latest checkpoint.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, default_collate

from daftseg.training import history
from daftseg.training.batch import BatchPlan
from daftseg.training.batchnorm import prepare_batchnorm
from daftseg.training.config import TrainConfig
from daftseg.training.distributed import DistEnv, all_reduce_sum, print_main
from daftseg.training.sampling import EpochSampler, ShardSampler
from daftseg.training.state import Progress, make_checkpoint, resume, save_checkpoint
from daftseg.training.tasks import Batch, TrainTask

# the original's optimiser and scheduler (spec §5.1)
ADAMW_BETAS = (0.9, 0.999)
ADAMW_EPS = 1e-8
PLATEAU_FACTOR = 0.9
PLATEAU_PATIENCE = 5
DEVICE_KEYS = ("image", "gt2D", "bboxes")


@dataclass
class TrainResult:
    model: nn.Module
    progress: Progress
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


class Trainer:
    """Trains ``task.model`` on ``train_set`` (validating on ``val_set`` if given) as ``config`` says."""

    def __init__(self, config: TrainConfig, env: DistEnv, task: TrainTask, train_set: Dataset,
                 val_set: Dataset | None = None) -> None:
        self.cfg, self.env, self.task = config, env, task
        self.batch_plan = BatchPlan(env.world_size, config.batch_size, config.grad_accum)
        self.device = env.device
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # input sizes never change (256x256)
        self.model, bn_note = prepare_batchnorm(task.model.to(self.device), env, config.sync_bn, self.batch_plan)
        task.model = self.model
        if bn_note:
            print_main(env, bn_note)
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # every parameter, frozen ones included, as the original: its optimizer state then loads by index
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, betas=ADAMW_BETAS,
                                           eps=ADAMW_EPS, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE, cooldown=0)
        self.progress = Progress()
        self.resumed_from = ""
        if config.resume and Path(config.resume).is_file():
            self.progress, notes = resume(config.resume, self.model, self.optimizer, self.scheduler,
                                          config.to_dict(), trust=config.trust_checkpoint)
            self.resumed_from = config.resume
            print_main(env, f"Resumed from {config.resume} after epoch {self.progress.epoch}")
            for note in notes:
                print_main(env, f"  note: {note}")
            if self.progress.epoch >= config.num_epochs:
                print_main(env, f"  nothing to train: the checkpoint has {self.progress.epoch} epochs, "
                                f"-num_epochs is {config.num_epochs}")
        elif config.resume:
            print_main(env, f"No checkpoint at {config.resume}; starting a new run")
        task.prepare(self.device, config.channels_last, config.compile)
        self.ddp = (DistributedDataParallel(self.model, device_ids=[self.device.index]
                                            if self.device.type == "cuda" else None)
                    if env.distributed else None)
        train_net = self.ddp if self.ddp is not None else self.model
        self.net = torch.compile(train_net) if config.compile else train_net
        if self.ddp is None:
            self.eval_net = self.net
        else:
            # validation runs on the bare module: ranks hold different numbers of batches, and
            # DDP's forward would wait for the other ranks
            self.eval_net = torch.compile(self.model) if config.compile else self.model
        self.train_sampler = EpochSampler(len(train_set), env.world_size, env.rank, config.seed)
        self.train_set = train_set
        self.train_loader = self._loader(train_set, self.train_sampler)
        self.val_loader = (self._loader(val_set, ShardSampler(len(val_set), env.world_size, env.rank))
                           if val_set is not None else None)

    def _loader(self, dataset: Dataset, sampler: Any) -> DataLoader:
        workers = self.cfg.num_workers
        # forkserver, not fork: a forked worker inherits the parent's thread pools (OpenMP, oneTBB)
        # mid-state and can deadlock when the parent already ran other threaded libraries
        return DataLoader(dataset, batch_size=self.cfg.batch_size, sampler=sampler, num_workers=workers,
                          multiprocessing_context="forkserver" if workers > 0 else None,
                          pin_memory=self.device.type == "cuda", persistent_workers=workers > 0,
                          prefetch_factor=4 if workers > 0 else None, drop_last=False,
                          worker_init_fn=_single_threaded_worker if workers > 0 else None)

    # ---- one step ------------------------------------------------------------------------------

    def to_device(self, batch: Batch) -> Batch:
        out = dict(batch)
        for key in DEVICE_KEYS:
            if key in batch:
                out[key] = batch[key].to(self.device, non_blocking=True)
        if self.cfg.channels_last:
            out["image"] = out["image"].contiguous(memory_format=torch.channels_last)
        return out

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp == "bf16")

    def train_step(self, batch: Batch, boundary: bool = True, group_size: int | None = None) -> torch.Tensor:
        """Forward and backward of one device batch; an optimizer step when ``boundary``.

        ``group_size``: micro-batches in this accumulation group (default ``-grad_accum``); the
        loss is divided by it, so the step uses the group's mean gradient even when the epoch's
        last group is short. Returns the detached float32 loss. Between boundaries DDP does not
        all-reduce gradients.
        """
        sync = self.ddp.no_sync() if self.ddp is not None and not boundary else nullcontext()
        with sync:
            with self.autocast():
                outputs = self.task.forward(self.net, batch)
            loss, _ = self.task.loss(outputs, batch)
            (loss / (group_size or self.cfg.grad_accum)).backward()
        if boundary:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.progress.global_step += 1
        return loss.detach()

    # ---- epochs --------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> tuple[float, float, int]:
        """Mean training loss over all ranks, seconds, and samples seen (all ranks)."""
        self.train_sampler.set_epoch(epoch)
        self.net.train()
        n = len(self.train_loader)
        total = torch.zeros((), device=self.device, dtype=torch.float64)
        batches = samples = 0
        bar = _progress_bar(n, f"Epoch {epoch}", self.env.is_main)
        start = time.perf_counter()
        accum = self.cfg.grad_accum
        for i, batch in enumerate(self.train_loader):
            boundary = (i + 1) % accum == 0 or i + 1 == n
            # the last group of an epoch may hold fewer than -grad_accum micro-batches
            group_size = min(accum, n - (i // accum) * accum)
            loss = self.train_step(self.to_device(batch), boundary, group_size)
            total += loss
            batches += 1
            samples += batch["image"].shape[0]
            bar.update()
            if i % 10 == 0 or i + 1 == n:
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
            if boundary and self.cfg.max_steps and self.progress.global_step >= self.cfg.max_steps:
                break
        bar.close()
        seconds = time.perf_counter() - start
        self._sync_buffers()
        mean_loss, all_samples = all_reduce_sum([total.item() / max(batches, 1), float(samples)], self.env)
        return mean_loss / self.env.world_size, seconds, int(all_samples)

    @torch.no_grad()
    def validate(self) -> float:
        """Mean per-sample validation loss over the whole validation set (all ranks)."""
        assert self.val_loader is not None
        self.model.eval()
        total, count = 0.0, 0
        for batch in self.val_loader:
            batch = self.to_device(batch)
            with self.autocast():
                outputs = self.task.forward(self.eval_net, batch)
            loss, _ = self.task.loss(outputs, batch)
            b = batch["image"].shape[0]
            total += loss.item() * b
            count += b
        self.model.train()
        total, count = all_reduce_sum([total, float(count)], self.env)
        return total / max(count, 1.0)

    def fit(self) -> TrainResult:
        cfg, env = self.cfg, self.env
        work_dir = Path(cfg.work_dir)
        rows: list[dict[str, Any]] = []
        if env.is_main:
            work_dir.mkdir(parents=True, exist_ok=True)
            self._write_config(work_dir)
            if cfg.sanity_check:
                print(f"Sanity check: {self._sanity_check(work_dir)}")
        stopped_early = False
        for epoch in range(self.progress.epoch + 1, cfg.num_epochs + 1):
            if self.val_loader is not None and self.progress.epochs_since_improvement > cfg.patience:
                print_main(env, f"Early stop: no validation improvement for "
                                f"{self.progress.epochs_since_improvement} epochs (patience {cfg.patience})")
                stopped_early = True
                break
            if cfg.max_steps and self.progress.global_step >= cfg.max_steps:
                break
            train_loss, seconds, samples = self.train_epoch(epoch)
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"epoch {epoch}: training loss is {train_loss}; the last "
                                         f"good checkpoint is {work_dir / 'medsam_lite_latest.pth'}")
            val_loss = self.validate() if self.val_loader is not None else None
            # 916bd4e validates only to pick the best checkpoint and to stop early: its scheduler
            # kept following the training loss
            self.scheduler.step(val_loss if cfg.plateau_on == "val" else train_loss)
            monitored = val_loss if val_loss is not None else train_loss
            improved = monitored < self.progress.best_loss
            if improved:
                print_main(env, f"New best loss in epoch {epoch}: {self.progress.best_loss:.5f} -> {monitored:.5f}")
                self.progress.best_loss = monitored
                self.progress.epochs_since_improvement = 0
            else:
                self.progress.epochs_since_improvement += 1
            self.progress.epoch = epoch
            row = {"epoch": epoch, "global_step": self.progress.global_step, "train_loss": train_loss,
                   "val_loss": val_loss, "best_loss": self.progress.best_loss,
                   "lr": self.optimizer.param_groups[0]["lr"], "epoch_seconds": round(seconds, 3),
                   "samples_per_second": round(samples / max(seconds, 1e-9), 2),
                   "time": datetime.now().isoformat(timespec="seconds")}
            if env.is_main:
                ckpt = make_checkpoint(self.model, self.optimizer, self.scheduler, self.progress, train_loss,
                                       val_loss, cfg.to_dict(), self.task.model_name, self.task.model_part)
                # the log row first: a run killed in between resumes from the previous checkpoint,
                # redoes this epoch and rewrites the row, so the log never misses an epoch
                logged = history.append_log(work_dir, row)  # includes the epochs before a resume
                save_checkpoint(ckpt, work_dir, improved)
                history.plot_losses(work_dir, logged, cfg.stage)
                val_text = f", val {val_loss:.5f}" if val_loss is not None else ""
                print(f"Epoch {epoch}: train {train_loss:.5f}{val_text}, {row['samples_per_second']} samples/s",
                      flush=True)
            rows.append(row)
        return TrainResult(self.model, self.progress, rows, stopped_early)

    # ---- helpers -------------------------------------------------------------------------------

    def _sync_buffers(self) -> None:
        # BatchNorm running stats drift apart per rank between DDP's broadcasts; rank 0's are the
        # ones saved, so every rank validates and continues with them
        if self.ddp is not None:
            for b in self.model.buffers():
                dist.broadcast(b, src=0)

    def _write_config(self, work_dir: Path) -> None:
        info = {**self.cfg.to_dict(), **self.batch_plan.to_dict(), "torch": torch.__version__,
                "resumed_from": self.resumed_from, "train_items": len(self.train_set),
                "model_name": self.task.model_name, "model_part": self.task.model_part}
        history.write_config(work_dir, info)

    def _sanity_check(self, work_dir: Path) -> Path:
        self.train_sampler.set_epoch(self.progress.epoch + 1)
        keys = [(self.progress.epoch + 1, i) for i in self.train_sampler.indices()[:4]]
        return history.save_sanity_check(work_dir, default_collate([self.train_set[k] for k in keys]))


def _single_threaded_worker(worker_id: int) -> None:
    # many loader workers each running OpenCV's own thread pool oversubscribe the CPU
    import cv2

    cv2.setNumThreads(1)


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, dynamic_ncols=True)
