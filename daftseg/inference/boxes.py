"""Box checks and the per-box plan of the 3D algorithm (spec §7.5).

Checks (each a ``CaseError`` naming the box, 1-based as its label):
- inverted boxes (x_min > x_max or y_min > y_max); a zero-width box is allowed;
- boxes that do not overlap the image at all; a box that sticks out is used as given, as DAFT;
- 3D: z_min >= z_max (DAFT asserts this; with ``zmax_inclusive`` z_min == z_max is one slice), and
  boxes whose middle slice ``int((z_max - z_min) / 2 + z_min)`` is not a slice of the volume
  (DAFT crashes there). z coordinates are truncated to integers. A z range sticking out of the
  volume is clipped to it, as DAFT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from daftseg.geometry import scale_box_to_256
from daftseg.inference.npz_io import CaseError


def check_xy(boxes_xy: np.ndarray, h: int, w: int) -> None:
    """Raise for inverted boxes or boxes wholly outside the (h, w) image. boxes_xy: (N,4)."""
    for i, (x0, y0, x1, y1) in enumerate(boxes_xy.tolist(), start=1):
        if x0 > x1 or y0 > y1:
            raise CaseError(f"box {i} {_fmt(x0, y0, x1, y1)} is inverted (x_min > x_max or y_min > y_max)")
        if x1 < 0 or y1 < 0 or x0 >= w or y0 >= h:
            raise CaseError(f"box {i} {_fmt(x0, y0, x1, y1)} lies outside the {w}x{h} (WxH) image")


def clip_region(box_xy: np.ndarray, h: int, w: int) -> tuple[slice, slice]:
    """(rows, cols) of an original-pixel box, both ends inclusive, within an (h, w) image."""
    x0, y0, x1, y1 = (float(v) for v in box_xy)
    rows = slice(max(0, math.floor(y0)), max(0, min(h, math.floor(y1) + 1)))
    cols = slice(max(0, math.floor(x0)), max(0, min(w, math.floor(x1) + 1)))
    return rows, cols


@dataclass(frozen=True)
class BoxPlan:
    """One 3D box: label ``idx``; slices ``mid..hi-1`` upward, then ``mid-1`` down to ``lo``."""

    idx: int
    xy: np.ndarray  # (4,) [x_min, y_min, x_max, y_max], original pixels, input dtype
    default256: np.ndarray  # (4,) the xy box in 256-space (float32), the middle slice's prompt
    lo: int
    mid: int
    hi: int

    @property
    def up(self) -> range:
        return range(self.mid, self.hi)

    @property
    def down(self) -> range:
        return range(self.mid - 1, self.lo - 1, -1)


def plan_3d(boxes: np.ndarray, shape: tuple[int, int, int], zmax_inclusive: bool = False) -> list[BoxPlan]:
    """Check (N,6) boxes against a (D,H,W) volume and return their plans, in box order."""
    d, h, w = shape
    xy = boxes[:, [0, 1, 3, 4]]
    check_xy(xy, h, w)
    plans = []
    for i, box in enumerate(boxes, start=1):
        z_min, z_max = int(box[2]), int(box[5])
        if z_min > z_max or (z_min == z_max and not zmax_inclusive):
            raise CaseError(f"box {i}: z_min {z_min} >= z_max {z_max}")
        # DAFT: the middle of the unclipped range; the upper end exclusive (baseline: inclusive)
        mid = int((z_max - z_min) / 2 + z_min)
        hi = min(z_max + 1 if zmax_inclusive else z_max, d)
        lo = max(z_min, 0)
        if not 0 <= mid < hi:
            raise CaseError(f"box {i}: z range [{z_min}, {z_max}] lies outside the volume of {d} slices "
                            f"(middle slice {mid})")
        default256 = scale_box_to_256(xy[i - 1], h, w).astype(np.float32)
        plans.append(BoxPlan(i, xy[i - 1], default256, lo, mid, hi))
    return plans


def _fmt(*v: float) -> str:
    return "[" + ", ".join(f"{x:g}" for x in v) + "]"
