"""What a run writes besides checkpoints: ``config.json``, ``train_log.csv``, ``train_loss.png`` and
``sanity_check.png`` in the work dir. Every file is written atomically (``daftseg.atomic``): a run
killed or failing mid-write leaves the previous version or none, never half a file."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from daftseg.atomic import atomic_open, atomic_path, atomic_write_text

LOG_NAME = "train_log.csv"
PLOT_NAME = "train_loss.png"
SANITY_NAME = "sanity_check.png"
CONFIG_NAME = "config.json"
FIELDS = ("epoch", "global_step", "train_loss", "val_loss", "best_loss", "lr", "epoch_seconds",
          "samples_per_second", "time")
_TITLES = {"distill": "Distillation loss (MSE of embeddings)",
           "finetune": "Dice + Binary Cross Entropy + IoU Loss",
           "finetune3d": "Dice + Binary Cross Entropy + IoU Loss"}


def write_config(work_dir: str | os.PathLike, info: dict[str, Any]) -> Path:
    """``config.json``: the run's resolved settings."""
    path = Path(work_dir) / CONFIG_NAME
    atomic_write_text(path, json.dumps(info, indent=2, sort_keys=True) + "\n")
    return path


def _save_png(fig: Any, path: Path) -> Path:
    # the temporary name ends in .tmp, so the format is given, not guessed from the name
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def read_log(work_dir: str | os.PathLike) -> list[dict[str, str]]:
    path = Path(work_dir) / LOG_NAME
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_log(work_dir: str | os.PathLike, row: dict[str, Any]) -> list[dict[str, str]]:
    """Add one epoch's row, dropping rows of epochs >= it (left over from before a resume)."""
    rows = [r for r in read_log(work_dir) if int(r["epoch"]) < int(row["epoch"])]
    rows.append({k: "" if row.get(k) is None else str(row[k]) for k in FIELDS})
    path = Path(work_dir) / LOG_NAME
    with atomic_open(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def plot_losses(work_dir: str | os.PathLike, rows: list[dict[str, str]], stage: str) -> None:
    """Training (and validation) loss per epoch."""
    import matplotlib  # imported here: only rank 0 of a training run needs it

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [int(r["epoch"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [float(r["train_loss"]) for r in rows], marker="o", label="train")
    val = [(e, float(r["val_loss"])) for e, r in zip(epochs, rows) if r["val_loss"]]
    if val:
        ax.plot(*zip(*val), marker="o", label="validation")
    ax.set_title(_TITLES.get(stage, "Loss"))
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.legend()
    fig.tight_layout()
    try:
        _save_png(fig, Path(work_dir) / PLOT_NAME)
    finally:
        plt.close(fig)


def save_sanity_check(work_dir: str | os.PathLike, batch: dict[str, Any], count: int = 4) -> Path:
    """``sanity_check.png``: the first samples of a batch with their mask (yellow) and box (blue)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    n = min(count, batch["image"].shape[0])
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 4), squeeze=False)
    for ax, i in zip(axes[0], range(n)):
        ax.imshow(batch["image"][i].permute(1, 2, 0).float().numpy())
        ax.imshow(batch["gt2D"][i, 0].numpy(), alpha=0.4 * (batch["gt2D"][i, 0].numpy() > 0), cmap="autumn_r")
        x0, y0, x1, y1 = batch["bboxes"][i].reshape(4).tolist()
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, edgecolor="blue", facecolor="none", lw=2))
        ax.set_title(os.path.basename(str(batch["image_name"][i])), fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    try:
        return _save_png(fig, Path(work_dir) / SANITY_NAME)
    finally:
        plt.close(fig)
