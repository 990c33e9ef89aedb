"""Dice similarity coefficient (DSC), with the challenge's edge case.

The challenge's ``compute_dice_coefficient`` returns NaN when both masks are empty (0/0);
the case mean then becomes NaN. Both functions here keep that convention.
"""

from __future__ import annotations

import numpy as np


def dice_from_counts(n_gt: int, n_pred: int, n_intersection: int) -> float:
    """2|A n B| / (|A| + |B|) from voxel counts; NaN when both masks are empty."""
    total = int(n_gt) + int(n_pred)
    if total == 0:
        return float("nan")
    return 2.0 * int(n_intersection) / total


def dice_coefficient(mask_gt: np.ndarray, mask_pred: np.ndarray) -> float:
    """Dice of two boolean masks of the same shape (any number of dimensions).

    Returns NaN when both masks are empty, as the challenge code does.
    """
    if mask_gt.shape != mask_pred.shape:
        raise ValueError(f"shape mismatch: gt {mask_gt.shape} vs pred {mask_pred.shape}")
    gt = np.asarray(mask_gt, dtype=bool)
    pred = np.asarray(mask_pred, dtype=bool)
    return dice_from_counts(np.count_nonzero(gt), np.count_nonzero(pred), np.count_nonzero(gt & pred))
