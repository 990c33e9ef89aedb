"""Losses against values computed by hand on a fixed batch (spec §5.1, §5.3)."""

from __future__ import annotations

import math

import pytest
import torch

from daftseg.training.losses import (
    LossWeights,
    bce_loss,
    dice_loss,
    distillation_loss,
    mask_iou,
    segmentation_loss,
)

# two samples of 2x2 logits and masks
LOGITS = [[[0.0, 2.0], [-1.0, 3.0]], [[-2.0, -0.5], [1.0, 0.25]]]
MASKS = [[[0, 1], [1, 1]], [[0, 0], [1, 0]]]
IOU_PRED = [0.5, 0.9]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def tensors():
    logits = torch.tensor(LOGITS, dtype=torch.float32)[:, None]
    masks = torch.tensor(MASKS, dtype=torch.uint8)[:, None]
    return logits, masks, torch.tensor(IOU_PRED)[:, None]


def flat(sample):
    return [v for row in sample for v in row]


def hand_dice() -> float:
    losses = []
    for logit, mask in zip(LOGITS, MASKS):
        p = [sigmoid(v) for v in flat(logit)]
        g = flat(mask)
        inter = sum(a * b for a, b in zip(p, g))
        den = sum(b * b for b in g) + sum(a * a for a in p)
        losses.append(1 - (2 * inter + 1e-5) / (den + 1e-5))
    return sum(losses) / len(losses)


def hand_bce() -> float:
    terms = [-(y * math.log(sigmoid(x)) + (1 - y) * math.log(1 - sigmoid(x)))
             for logit, mask in zip(LOGITS, MASKS) for x, y in zip(flat(logit), flat(mask))]
    return sum(terms) / len(terms)


def hand_iou() -> list[float]:
    out = []
    for logit, mask in zip(LOGITS, MASKS):
        pred = [sigmoid(v) > 0.5 for v in flat(logit)]
        ref = [bool(v) for v in flat(mask)]
        out.append(sum(a and b for a, b in zip(pred, ref)) / sum(a or b for a, b in zip(pred, ref)))
    return out


def test_dice_matches_hand_computation():
    logits, masks, _ = tensors()
    assert dice_loss(logits, masks).item() == pytest.approx(hand_dice(), rel=1e-6)


def test_bce_matches_hand_computation():
    logits, masks, _ = tensors()
    assert bce_loss(logits, masks).item() == pytest.approx(hand_bce(), rel=1e-6)


def test_iou_target_counts_pixels():
    logits, masks, _ = tensors()
    # sample 0: predicted pixels 1, 3 (sigmoid(0) = 0.5 is not > 0.5), mask 1, 2, 3 -> 2/3;
    # sample 1: predicted 2, 3, mask 2 -> 1/2
    assert hand_iou() == [2 / 3, 1 / 2]
    assert mask_iou(logits, masks).flatten().tolist() == pytest.approx([2 / 3, 1 / 2])


def test_iou_of_empty_prediction_and_mask_is_nan_as_the_original():
    logits = torch.full((1, 1, 2, 2), -5.0)
    assert torch.isnan(mask_iou(logits, torch.zeros(1, 1, 2, 2))).all()


def test_total_loss_is_the_weighted_sum():
    logits, masks, iou_pred = tensors()
    iou_mse = sum((p - t) ** 2 for p, t in zip(IOU_PRED, hand_iou())) / 2
    loss, parts = segmentation_loss(logits, iou_pred, masks)
    assert loss.item() == pytest.approx(hand_dice() + hand_bce() + iou_mse, rel=1e-6)
    assert parts["iou_mse"].item() == pytest.approx(iou_mse, rel=1e-6)
    weighted, _ = segmentation_loss(logits, iou_pred, masks, LossWeights(seg=2.0, ce=0.5, iou=0.0))
    assert weighted.item() == pytest.approx(2 * hand_dice() + 0.5 * hand_bce(), rel=1e-6)


def test_iou_target_carries_no_gradient():
    logits, masks, iou_pred = tensors()
    logits.requires_grad_(True)
    iou_pred.requires_grad_(True)
    loss, _ = segmentation_loss(logits, iou_pred, masks, LossWeights(seg=0.0, ce=0.0, iou=1.0))
    loss.backward()
    assert logits.grad.abs().sum() == 0 and iou_pred.grad.abs().sum() > 0


def test_bf16_inputs_are_computed_in_float32():
    logits, masks, iou_pred = tensors()
    loss, _ = segmentation_loss(logits.bfloat16(), iou_pred.bfloat16(), masks)
    assert loss.dtype == torch.float32


def test_distillation_loss_is_mse():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[1.5, 2.0], [1.0, 4.0]])
    assert distillation_loss(a, b)[0].item() == pytest.approx((0.25 + 4.0) / 4)


def test_dice_agrees_with_monai():
    import monai  # test-only dependency ([dev] extra): the loss the original trained with

    logits, masks, _ = tensors()
    # MONAI 1.6 needs a float target (1.3, which the original used, also took integer masks)
    ref = monai.losses.DiceLoss(sigmoid=True, squared_pred=True, reduction="mean")(logits, masks.float())
    assert dice_loss(logits, masks).item() == pytest.approx(ref.item(), rel=1e-6)
