"""DAFT 93f1e55's training step, transcribed from spec §5.1 (distillation) and §5.3 (fine-tuning).

Independent of the package: it imports torch and MONAI only and is handed the model modules
(their classes are the one thing shared with the code under test). The original's arithmetic,
line by line:

- optimiser ``AdamW(model.parameters(), lr=5e-5, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)``,
  created BEFORE the prompt encoder is frozen (fine-tuning), so it lists every parameter;
- fine-tuning: ``image_encoder`` -> ``prompt_encoder(points=None, boxes, masks=None)`` ->
  ``mask_decoder(..., image_pe=get_dense_pe(), multimask_output=False)``; loss = MONAI
  ``DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")`` + ``BCEWithLogitsLoss`` +
  ``MSELoss(iou_pred, iou of (sigmoid > 0.5) vs gt)``, weights 1. The Dice term is MONAI 1.3.0's
  arithmetic (the original's pin), written out in ``monai_130_dice``: MONAI >= 1.4 computes
  sum(p^2) as a squared vector norm, which rounds differently, and AdamW turns rounding noise in
  gradients that are almost zero into full +-lr steps, so a 1e-6 comparison of weights needs the
  pinned arithmetic. ``monai_dice`` (the installed MONAI) checks the transcription's value;
- distillation: ``MSELoss`` between the student's and the frozen teacher's (eval, no_grad)
  embeddings;
- per step: ``optimizer.zero_grad(); loss.backward(); optimizer.step()``; models in train mode
  (the student's BatchNorm uses batch statistics and updates its running statistics).
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss
from torch import nn

LR = 5e-5
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.01


def _adamw(params) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)


def cal_iou(result: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The original's ``cal_iou``: (B, 1) float IoU of two boolean masks (B, 1, H, W)."""
    intersection = torch.count_nonzero(torch.logical_and(result, reference), dim=[i for i in range(1, result.ndim)])
    union = torch.count_nonzero(torch.logical_or(result, reference), dim=[i for i in range(1, result.ndim)])
    return (intersection.float() / union.float()).unsqueeze(1)


def monai_130_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MONAI 1.3.0 ``DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")``, its defaults
    (``include_background=True``, ``smooth_nr = smooth_dr = 1e-5``, ``batch=False``), step by step."""
    smooth_nr = smooth_dr = 1e-5
    input = torch.sigmoid(logits)
    target = target.float()
    reduce_axis = list(range(2, len(input.shape)))
    intersection = torch.sum(target * input, dim=reduce_axis)
    ground_o = torch.sum(target**2, dim=reduce_axis)
    pred_o = torch.sum(input**2, dim=reduce_axis)
    denominator = ground_o + pred_o
    f = 1.0 - (2.0 * intersection + smooth_nr) / (denominator + smooth_dr)
    return torch.mean(f)


def monai_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The installed MONAI's DiceLoss as the original configured it (a float mask: MONAI >= 1.4
    refuses the original's long one; the 0/1 values are the same)."""
    return DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")(logits, target.float())


def finetune_steps(model: nn.Module, image: torch.Tensor, gt2d: torch.Tensor, boxes: torch.Tensor,
                   steps: int = 2, dice_check: list | None = None) -> list[float]:
    """``steps`` fine-tuning steps on one fixed batch; returns the losses (model updated in place).

    ``dice_check``: if given, receives (transcribed Dice, installed MONAI's Dice) per step.
    """
    ce_loss = nn.BCEWithLogitsLoss(reduction="mean")
    iou_loss = nn.MSELoss(reduction="mean")
    optimizer = _adamw(model.parameters())
    for param in model.prompt_encoder.parameters():
        param.requires_grad = False
    model.train()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        image_embedding = model.image_encoder(image)
        sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
        logits_pred, iou_pred = model.mask_decoder(
            image_embeddings=image_embedding, image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
        l_seg = monai_130_dice(logits_pred, gt2d)
        if dice_check is not None:
            dice_check.append((l_seg.item(), monai_dice(logits_pred.detach(), gt2d).item()))
        l_ce = ce_loss(logits_pred, gt2d.float())
        mask_pred = (torch.sigmoid(logits_pred) > 0.5).float()
        iou_gt = cal_iou(mask_pred.bool(), gt2d.bool())
        l_iou = iou_loss(iou_pred, iou_gt)
        loss = l_seg + l_ce + l_iou
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def distill_steps(student: nn.Module, teacher: nn.Module, image: torch.Tensor, steps: int = 2) -> list[float]:
    """``steps`` distillation steps on one fixed batch; returns the losses (student updated in place)."""
    mse = nn.MSELoss(reduction="mean")
    optimizer = _adamw(student.parameters())
    student.train()
    teacher.eval()
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        with torch.no_grad():
            target = teacher(image)
        loss = mse(student(image), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
