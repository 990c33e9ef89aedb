"""Training checkpoints: what they hold, how they are written, and how a run resumes from them.

A checkpoint (``medsam_lite_latest.pth`` every epoch, ``medsam_lite_best.pth`` on improvement,
the original's names) is a dict with

- ``model``: the trained module's state dict under official key names (no ``module.`` prefix):
  the student image encoder (``backbone.*``, ``neck.*``, ``norm.*``) for distillation, the whole
  EfficientViT-SAM (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``) for fine-tuning;
- ``optimizer``, ``scheduler``, ``epoch`` (completed epochs), ``global_step``, ``loss`` (mean
  training loss of that epoch), ``val_loss``, ``best_loss``, ``epochs_since_improvement``;
- ``rng`` (Python, NumPy, torch, CUDA generator states), ``config``, ``model_name``, ``model_part``.

All values are tensors or plain Python data, so ``torch.load(weights_only=True)`` reads them.
The original's checkpoints (``module.`` keys, no scheduler or RNG states) and 916bd4e's
(``rng_state``, ``np_rng_state``, ...; its NumPy RNG state is allow-listed in
``daftseg.checkpoints``) resume too, weights-only as well.
"""

from __future__ import annotations

import math
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from daftseg.atomic import atomic_path
from daftseg.checkpoints import CheckpointError, atomic_save, clean_state_dict, load_weights, read_checkpoint

LATEST = "medsam_lite_latest.pth"
BEST = "medsam_lite_best.pth"
FORMAT_VERSION = 1
# settings that change which samples or updates follow; a resume with other values is not exact
EXACT_RESUME_KEYS = ("seed", "batch_size", "grad_accum", "datacsv", "data_subset", "bbox_shift",
                     "norm_before_pad", "amp", "stage", "plateau_on", "sync_bn")


def rng_state() -> dict[str, Any]:
    """Every global generator's state, as plain data."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Progress:
    """Where a run stands between epochs."""

    epoch: int = 0
    global_step: int = 0
    best_loss: float = math.inf
    epochs_since_improvement: int = 0


def make_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, progress: Progress,
                    loss: float, val_loss: float | None, config: dict[str, Any], model_name: str,
                    model_part: str) -> dict[str, Any]:
    return {
        "model": clean_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": progress.epoch,
        "global_step": progress.global_step,
        "loss": loss,
        "val_loss": val_loss,
        "best_loss": progress.best_loss,
        "epochs_since_improvement": progress.epochs_since_improvement,
        "rng": rng_state(),
        "config": config,
        "model_name": model_name,
        "model_part": model_part,
        "format_version": FORMAT_VERSION,
    }


def save_checkpoint(checkpoint: dict[str, Any], work_dir: str | os.PathLike, is_best: bool) -> None:
    """Write ``medsam_lite_latest.pth`` atomically; on improvement make ``medsam_lite_best.pth`` the same file."""
    latest = atomic_save(checkpoint, Path(work_dir) / LATEST)
    if is_best:
        _atomic_link_or_copy(latest, Path(work_dir) / BEST)


def _atomic_link_or_copy(src: Path, dst: Path) -> None:
    # A hard link costs no I/O; the next atomic_save replaces LATEST by a new inode, so BEST keeps this one.
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def resume(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer,
           scheduler: Any, config: dict[str, Any] | None = None,
           trust: bool = False) -> tuple[Progress, list[str]]:
    """Load ``path`` into model, optimizer, scheduler and the global RNGs.

    The file is read weights-only (``read_checkpoint``); ``trust`` unpickles it in full.

    Returns the progress to continue from and notes on anything that could not be restored
    (an original checkpoint has no scheduler or RNG state) or that differs from ``config``.
    """
    ckpt = read_checkpoint(path, trust)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a training checkpoint (no 'model' entry); to start from "
                              f"weights use -pretrained_checkpoint")
    load_weights(model, ckpt, prefix="", name=str(path))
    notes: list[str] = []
    if "optimizer" in ckpt and not _load_optimizer(optimizer, ckpt["optimizer"]):
        notes.append("optimizer state does not match the parameters; starting with a fresh optimizer")
    if "scheduler" in ckpt:
        scheduler.load_state_dict(ckpt["scheduler"])
    else:
        notes.append("no scheduler state (original checkpoint); the LR scheduler starts afresh")
    if "rng" in ckpt:
        set_rng_state(ckpt["rng"])
    elif "rng_state" in ckpt:  # 916bd4e
        set_rng_state({"python": ckpt["rng_state"], "numpy": list(ckpt["np_rng_state"]),
                       "torch": ckpt["torch_rng_state"]})
    else:
        notes.append("no RNG states (original checkpoint)")
    saved_config = ckpt.get("config") or {}
    changed = [k for k in EXACT_RESUME_KEYS if k in saved_config and k in (config or {})
               and saved_config[k] != config[k]]
    if changed:
        notes.append("settings differ from the checkpoint's, so the run will not continue exactly as "
                      "an uninterrupted one: " + ", ".join(f"{k} {saved_config[k]!r} -> {config[k]!r}"
                                                           for k in changed))
    best = ckpt.get("best_loss", math.inf)
    progress = Progress(epoch=int(ckpt.get("epoch", 0)), global_step=int(ckpt.get("global_step", 0)),
                        best_loss=float(best) if best is not None else math.inf,
                        epochs_since_improvement=int(ckpt.get("epochs_since_improvement", 0)))
    return progress, notes


def _load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> bool:
    """Load only if the saved state fits the parameters one by one (count and shapes)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    saved_ids = [i for group in state.get("param_groups", []) for i in group["params"]]
    if len(saved_ids) != len(params) or len(state.get("param_groups", [])) != len(optimizer.param_groups):
        return False
    for pid, p in zip(saved_ids, params):
        saved = state["state"].get(pid, {})
        if "exp_avg" in saved and saved["exp_avg"].shape != p.shape:
            return False
    optimizer.load_state_dict(state)
    return True
