"""Stages 2 and 3, ``finetune_npz_devit_fulldataset.py``: fine-tune EfficientViT-SAM (prompt encoder frozen)."""

from __future__ import annotations

from collections.abc import Callable

from daftseg.training.config import TrainConfig
from daftseg.training.losses import LossWeights
from daftseg.training.pretrained import load_finetune_start
from daftseg.training.runner import run_main
from daftseg.training.tasks import SegmentationTask

MODEL = "efficientvit_sam_l0"


def make_task(config: TrainConfig, resuming: bool, log: Callable[[str], None] = print) -> SegmentationTask:
    """EfficientViT-SAM from -pretrained_checkpoint (unless resuming) with the configured loss weights."""
    from daftseg.models import build_model  # imported here: the models pull in timm and segment-anything

    model = build_model(MODEL)
    if not resuming:
        log(load_finetune_start(model, config.pretrained_checkpoint, config.from_scratch,
                               config.trust_checkpoint))
    weights = LossWeights(seg=config.seg_loss_weight, ce=config.ce_loss_weight, iou=config.iou_loss_weight)
    return SegmentationTask(model, weights, model_name=MODEL)


def main(argv: list[str] | None = None) -> int:
    return run_main("finetune", argv, "finetune_npz_devit_fulldataset.py", make_task)
