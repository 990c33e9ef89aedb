"""Per-case DSC and NSD with the challenge's conventions (spec §8).

- Labels: ``"all"`` scores 1..max(gt) as the challenge did; a label id absent from both gt
  and prediction has Dice 0/0 = NaN, so the case DSC is NaN (the challenge's behaviour,
  kept on purpose). ``"present"`` scores only the labels that occur in gt.
- The case value is the plain mean over the scored labels (NaN if there are none).
- Predicted labels that are not scored (above max(gt), or absent from gt with "present")
  are ignored.
- NSD (tolerance 2 mm) is computed only when the case DSC > 0.2, otherwise it is 0; a NaN
  DSC is not > 0.2, so it gets NSD 0, as in the challenge.
- 3D cases use the gt file's ``spacing`` as stored, in the array's axis order. 2D cases are
  scored as one-slice volumes: (H, W) -> (H, W, 1) with spacing (1, 1, 1), so the top and
  bottom faces count as surface (this differs from native 2D contours; the challenge did it).

Speed: one ``find_objects`` pass per array gives every label's bounding box; each label's
work (counts for Dice, surfaces for NSD) then runs on the union box of its gt and predicted
voxels only, and the spacing-dependent tables are built once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from daftseg.metrics.dice import dice_from_counts
from daftseg.metrics.surface import DEFAULT_TOLERANCE_MM, as_spacing, box_surface_dice

LabelMode = Literal["all", "present"]
NSD_DSC_THRESHOLD = 0.2
SPACING_2D = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class CaseScore:
    """Scores of one case. ``nsd`` is NaN and ``label_nsd`` None when NSD was not requested."""

    dsc: float
    nsd: float
    labels: tuple[int, ...]
    label_dsc: tuple[float, ...]
    label_nsd: tuple[float, ...] | None


def as_label_map(a: np.ndarray) -> np.ndarray:
    """Integer view of a label array for ``find_objects``: bool -> uint8; float -> int64 with
    non-integral values (which equal no label id) set to 0."""
    a = np.asarray(a)
    if a.dtype == bool:
        return a.view(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        return a
    rounded = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)
    return np.where(rounded == a, rounded, 0)


def _ids_from_boxes(gt_boxes: Sequence[tuple[slice, ...] | None], mode: LabelMode) -> np.ndarray:
    if mode == "all":
        return np.arange(1, len(gt_boxes) + 1, dtype=np.int64)
    if mode == "present":
        return np.array([i + 1 for i, box in enumerate(gt_boxes) if box is not None], dtype=np.int64)
    raise ValueError(f"labels must be 'all' or 'present', got {mode!r}")


def _gt_boxes(gt: np.ndarray) -> list[tuple[slice, ...] | None]:
    """Bounding box of every label 1..max(gt) (None where absent): one pass over gt."""
    top = int(gt.max()) if gt.size else 0
    return ndimage.find_objects(gt, max_label=top) if top > 0 else []


def label_ids(gt: np.ndarray, mode: LabelMode = "all") -> np.ndarray:
    """Labels scored for this gt: 1..max(gt) ("all") or those present in gt ("present")."""
    return _ids_from_boxes(_gt_boxes(as_label_map(gt)), mode)


def _union(a: tuple[slice, ...] | None, b: tuple[slice, ...] | None) -> tuple[slice, ...] | None:
    if a is None or b is None:
        return a if b is None else b
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def _mean(values: Sequence[float]) -> float:
    # np.mean of an empty list warns and gives NaN; a NaN entry propagates, as in the challenge.
    return float(np.mean(values)) if len(values) else float("nan")


def score_case(gt: np.ndarray, pred: np.ndarray, spacing: Sequence[float] | np.ndarray | None = None, *,
               labels: LabelMode = "all", nsd: bool = True, tolerance: float = DEFAULT_TOLERANCE_MM,
               method: str = "auto") -> CaseScore:
    """DSC and NSD of one case, as the challenge's ``compute_metrics`` per case.

    Args:
        gt: (H, W) or (D, H, W) integer label map (0 = background).
        pred: same shape as ``gt``.
        spacing: 3D only: voxel size per array axis in mm, as stored in the gt npz. Ignored
            for 2D, which uses (1, 1, 1) on the (H, W, 1) volume.
        labels: "all" (1..max(gt), challenge) or "present" (labels occurring in gt).
        nsd: compute NSD (else ``nsd`` is NaN).
        tolerance: NSD tolerance in mm.
        method: NSD method, see ``surface.box_surface_dice`` (all give the same values).
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"shape mismatch: gt {gt.shape} vs prediction {pred.shape}")
    if gt.ndim == 2:
        gt, pred, spacing = gt[..., None], pred[..., None], SPACING_2D
    elif gt.ndim != 3:
        raise ValueError(f"expected a 2D or 3D label map, got shape {gt.shape}")
    elif spacing is None:
        raise ValueError("a 3D case needs a spacing")
    gt, pred = as_label_map(gt), as_label_map(pred)

    gt_boxes = _gt_boxes(gt)
    ids = _ids_from_boxes(gt_boxes, labels)
    # Predicted ids above max(gt) are never scored: find_objects skips them.
    pred_boxes = ndimage.find_objects(pred, max_label=len(gt_boxes)) if gt_boxes else []

    # Per label: the union box of its gt and predicted voxels; all its work happens inside.
    boxes = [_union(gt_boxes[i - 1], pred_boxes[i - 1]) for i in ids]
    label_dsc: list[float] = []
    for i, box in zip(ids, boxes):
        if box is None:  # absent from both: 0/0
            label_dsc.append(float("nan"))
            continue
        g, p = gt[box] == i, pred[box] == i
        label_dsc.append(dice_from_counts(np.count_nonzero(g), np.count_nonzero(p), np.count_nonzero(g & p)))
    dsc = _mean(label_dsc)

    ids_t = tuple(int(i) for i in ids)
    if not nsd:
        return CaseScore(dsc, float("nan"), ids_t, tuple(label_dsc), None)
    if not dsc > NSD_DSC_THRESHOLD:  # also catches NaN
        return CaseScore(dsc, 0.0, ids_t, tuple(label_dsc), None)
    s = as_spacing(spacing)
    # The box masks are rebuilt rather than kept from the DSC loop: one compare per box is
    # cheap next to the surface work, and a 15-organ CT case would otherwise hold them all.
    label_nsd = [float("nan") if box is None
                 else box_surface_dice(gt[box] == i, pred[box] == i, s, tolerance, method=method)
                 for i, box in zip(ids, boxes)]
    return CaseScore(dsc, _mean(label_nsd), ids_t, tuple(label_dsc), tuple(label_nsd))
