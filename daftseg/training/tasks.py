"""What is trained in each stage: the module, its forward pass on a batch, and its loss.

The loop (``daftseg.training.loop``) is the same for all stages; a task tells it which module to
optimise and checkpoint (``task.model``) and how to turn a batch into a loss.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from daftseg.training.losses import LossWeights, distillation_loss, segmentation_loss

Batch = dict[str, Any]


class TrainTask:
    """Base class: ``model`` is optimised and checkpointed under ``model_name`` / ``model_part``."""

    model: nn.Module
    model_name: str = ""
    model_part: str = ""

    def prepare(self, device: torch.device, channels_last: bool, compile_: bool) -> None:
        """Move, reformat and compile the task's fixed helper modules (the teacher); none by default."""

    def forward(self, net: nn.Module, batch: Batch) -> Any:
        """Outputs of ``net`` (the possibly DDP-wrapped or compiled ``model``) for a device batch."""
        raise NotImplementedError

    def loss(self, outputs: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Scalar float32 loss and its detached parts."""
        raise NotImplementedError


class SegmentationTask(TrainTask):
    """Fine-tuning (spec §5.3): image encoder and mask decoder learn, the prompt encoder is frozen.

    ``model`` is a ``SamModel``: ``model(images (B,3,256,256), boxes (B,1,1,4))`` returns mask
    logits (B,1,256,256) and IoU predictions (B,1).
    """

    def __init__(self, model: nn.Module, weights: LossWeights | None = None,
                 model_name: str = "efficientvit_sam_l0") -> None:
        self.model = model
        self.weights = weights or LossWeights()
        self.model_name = model_name
        self.model_part = ""
        # frozen before the optimizer and DDP see the parameters: DDP skips them, AdamW never steps them
        for p in model.prompt_encoder.parameters():
            p.requires_grad_(False)

    def forward(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        return net(batch["image"], batch["bboxes"])

    def loss(self, outputs: tuple[torch.Tensor, torch.Tensor], batch: Batch):
        logits, iou_pred = outputs
        return segmentation_loss(logits, iou_pred, batch["gt2D"], self.weights)


class DistillationTask(TrainTask):
    """Distillation (spec §5.1): the student encoder learns the frozen teacher's embeddings.

    Both map images (B,3,256,256) to embeddings (B,256,64,64).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module, model_name: str = "efficientvit_sam_l0",
                 model_part: str = "image_encoder") -> None:
        self.model = student
        self.model_name = model_name
        self.model_part = model_part
        self.teacher = teacher.eval().requires_grad_(False)
        self._teacher_net: nn.Module = self.teacher

    def prepare(self, device: torch.device, channels_last: bool, compile_: bool) -> None:
        self.teacher.to(device)
        if channels_last:
            self.teacher.to(memory_format=torch.channels_last)
        self._teacher_net = torch.compile(self.teacher) if compile_ else self.teacher

    def forward(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            target = self._teacher_net(batch["image"])
        return net(batch["image"]), target

    def loss(self, outputs: tuple[torch.Tensor, torch.Tensor], batch: Batch):
        student, teacher = outputs
        return distillation_loss(student, teacher)
