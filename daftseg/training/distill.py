"""Stage 1, ``distill_fulldataset.py``: EfficientViT-SAM l0 image encoder learns LiteMedSAM's embeddings."""

from __future__ import annotations

from collections.abc import Callable

from daftseg.training.config import TrainConfig
from daftseg.training.pretrained import load_student, load_teacher
from daftseg.training.runner import run_main
from daftseg.training.tasks import DistillationTask

STUDENT = "efficientvit_sam_l0"
TEACHER = "litemedsam"


def make_task(config: TrainConfig, resuming: bool, log: Callable[[str], None] = print) -> DistillationTask:
    """Student (l0 weights unless resuming or --nopretrain) and frozen teacher encoders."""
    from daftseg.models import build_model  # imported here: the models pull in timm and segment-anything

    student = build_model(STUDENT).image_encoder
    if not resuming:
        log(load_student(student, config.pretrained_checkpoint, config.nopretrain, config.trust_checkpoint))
    teacher = build_model(TEACHER).image_encoder
    log(load_teacher(teacher, config.teacher_checkpoint, config.trust_checkpoint))
    return DistillationTask(student, teacher, model_name=STUDENT, model_part="image_encoder")


def main(argv: list[str] | None = None) -> int:
    return run_main("distill", argv, "distill_fulldataset.py", make_task)
