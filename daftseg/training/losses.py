"""Losses of DAFT's training stages (spec §5.1, §5.3), written out so no MONAI is needed.

Fine-tuning: ``seg_weight * dice + ce_weight * bce + iou_weight * iou_mse``.
Distillation: mean squared error between student and teacher embeddings.
All inputs are cast to float32, so the values do not depend on the autocast dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# MONAI DiceLoss defaults (smooth_nr = smooth_dr = 1e-5)
SMOOTH = 1e-5


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MONAI ``DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")`` with its defaults.

    Per sample and channel: ``1 - (2 sum(p g) + 1e-5) / (sum(g^2) + sum(p^2) + 1e-5)`` with
    ``p = sigmoid(logits)``, summed over the spatial axes (``batch=False``), then averaged.

    Args:
        logits: (B, 1, H, W) mask logits.
        target: (B, 1, H, W) binary mask (any dtype).
    """
    p = torch.sigmoid(logits.float())
    g = target.float()
    dims = tuple(range(2, p.ndim))
    intersection = (g * p).sum(dims)
    denominator = (g * g).sum(dims) + (p * p).sum(dims)
    return (1.0 - (2.0 * intersection + SMOOTH) / (denominator + SMOOTH)).mean()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``BCEWithLogitsLoss(reduction="mean")`` against the float mask."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, 1) IoU of ``sigmoid(logits) > 0.5`` against the mask, as the original's ``cal_iou``.

    ``count_nonzero(and) / count_nonzero(or)`` per sample, in float32. When both the prediction
    and the mask are empty this is 0/0 = NaN, as in the original (torch gives NaN for it); the
    datasets never yield an empty mask, so training never meets that case.
    """
    pred = torch.sigmoid(logits.float()) > 0.5
    ref = target.bool()
    dims = list(range(1, pred.ndim))
    intersection = torch.count_nonzero(torch.logical_and(pred, ref), dim=dims)
    union = torch.count_nonzero(torch.logical_or(pred, ref), dim=dims)
    return (intersection.float() / union.float()).unsqueeze(1)


@dataclass(frozen=True)
class LossWeights:
    seg: float = 1.0
    ce: float = 1.0
    iou: float = 1.0


def segmentation_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor,
                      weights: LossWeights | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Fine-tuning loss and its (detached) parts.

    Args:
        logits: (B, 1, 256, 256) mask logits; iou_pred: (B, 1) predicted IoU; target: (B, 1, 256, 256) mask.
    """
    weights = weights or LossWeights()
    l_seg = dice_loss(logits, target)
    l_ce = bce_loss(logits, target)
    with torch.no_grad():
        iou_target = mask_iou(logits, target)  # a target: no gradient flows through it
    l_iou = F.mse_loss(iou_pred.float(), iou_target)
    loss = weights.seg * l_seg + weights.ce * l_ce + weights.iou * l_iou
    return loss, {"dice": l_seg.detach(), "bce": l_ce.detach(), "iou_mse": l_iou.detach()}


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``MSELoss(mean)`` between (B, 256, 64, 64) student and teacher embeddings."""
    loss = F.mse_loss(student.float(), teacher.float())
    return loss, {"mse": loss.detach()}
