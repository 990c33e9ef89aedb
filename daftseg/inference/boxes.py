"""Box checks and the per-box plan of the 3D algorithm (spec §7.4, §7.5).

Every box DAFT's script segments is segmented, as it does. Boxes that are inverted (x_min > x_max
or y_min > y_max) or lie wholly outside the image are not errors: their coordinates go to the
prompt encoder as DAFT passes them (``int(v * 256 / max(H, W))``), with a warning naming the box
(``box_warnings``). A box that sticks out of the image is used as given, as DAFT.

3D boxes follow DAFT's arithmetic on the raw values (also for float z): the middle slice is
``int((z_max - z_min) / 2 + z_min)``; the upward pass visits z_middle <= z < z_max, the downward
pass z_middle - 1 >= z > z_min - 1, both within the volume. Errors (``CaseError`` naming the box,
1-based as its label) only where DAFT's script stops:

- z_min >= z_max (its ``assert``; with ``zmax_inclusive``, z_min == z_max is one slice);
- a middle slice below 0 that the upward pass would visit (its slice-embedding lookup raises
  KeyError), or one at or beyond slice D while the downward pass has slices to visit (KeyError,
  or IndexError reading the mask of slice D);
- no box of the case has a slice inside the volume (it takes the resized size from the first
  embedding of an empty list: IndexError).

A box that has no slice to visit without any of these (e.g. one slice thick, above the volume)
is segmented as nothing, as DAFT, with a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from daftseg.geometry import scale_box_to_256
from daftseg.inference.npz_io import CaseError


def box_warnings(boxes_xy: np.ndarray, h: int, w: int) -> list[str]:
    """One message per box that is inverted or lies wholly outside the (h, w) image. boxes_xy: (N,4)."""
    notes = []
    for i, (x0, y0, x1, y1) in enumerate(boxes_xy.tolist(), start=1):
        what = []
        if x0 > x1 or y0 > y1:
            what.append("is inverted (x_min > x_max or y_min > y_max)")
        if max(x0, x1) < 0 or max(y0, y1) < 0 or min(x0, x1) >= w or min(y0, y1) >= h:
            what.append(f"lies wholly outside the {w}x{h} (WxH) image")
        if what:
            notes.append(f"box {i} {_fmt(x0, y0, x1, y1)} {' and '.join(what)}; segmented as DAFT does "
                         "(its coordinates go to the prompt encoder as given)")
    return notes


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


def middle_slice(z_min: np.generic, z_max: np.generic) -> int:
    """DAFT's ``int((z_max - z_min) / 2 + z_min)`` on the raw values, as numpy 1.26 computed it.

    The difference is taken in the boxes' dtype; halving and adding happen in float64 (numpy
    1.26, DAFT's, promoted a float32 scalar with a Python number to float64).
    """
    return int(float(z_max - z_min) / 2 + float(z_min))


def plan_3d(boxes: np.ndarray, shape: tuple[int, int, int], zmax_inclusive: bool = False) -> list[BoxPlan]:
    """Check (N,6) boxes against a (D,H,W) volume and return their plans, in box order.

    Errors come in the order DAFT's script meets them: the slice encoding of all boxes first,
    then box by box.
    """
    d, h, w = shape
    xy = boxes[:, [0, 1, 3, 4]]
    default256 = scale_box_to_256(xy, h, w).astype(np.float32)
    # the loops' bounds as Python compares them: z < z_max (baseline: z <= z_max), z > z_min - 1
    his = [min(math.floor(b[5]) + 1 if zmax_inclusive else math.ceil(b[5]), d) for b in boxes]
    los = [max(math.floor(b[2]), 0) for b in boxes]
    # DAFT encodes slices [max(0, z_min), min(z_max, D)) and takes the resized size from the first
    if len(boxes) and not any(lo < hi for lo, hi in zip(los, his)):
        raise CaseError(f"no box has a slice inside the volume of {d} slices "
                        "(DAFT's script stops here: IndexError)")
    plans = []
    for i, (box, lo, hi) in enumerate(zip(boxes, los, his), start=1):
        z_min, z_max = box[2], box[5]
        span = f"z range [{float(z_min):g}, {float(z_max):g}]"
        if z_min > z_max or (z_min == z_max and not zmax_inclusive):
            raise CaseError(f"box {i}: z_min {float(z_min):g} >= z_max {float(z_max):g} "
                            "(DAFT's script stops here: AssertionError)")
        mid = middle_slice(z_min, z_max)
        if mid < 0 and mid < hi:
            raise CaseError(f"box {i}: {span} has its middle slice {mid} below the volume of {d} slices "
                            "(DAFT's script stops here: KeyError)")
        if mid >= d and mid - 1 >= lo:
            error = "KeyError" if mid > d else "IndexError"  # slice mid-1's embedding, else slice mid's mask
            raise CaseError(f"box {i}: {span} has its middle slice {mid} beyond the last of the volume's {d} "
                            f"slices (DAFT's script stops here: {error})")
        plans.append(BoxPlan(i, xy[i - 1], default256[i - 1], lo, mid, hi))
    return plans


def z_warnings(plans: list[BoxPlan], depth: int) -> list[str]:
    """One message per box with no slice to segment (DAFT segments nothing for it either)."""
    return [f"box {p.idx}: no slice of its z range lies inside the volume of {depth} slices; nothing is "
            "segmented for it (as DAFT)" for p in plans if not len(p.up) and not len(p.down)]


def box_notes(boxes: np.ndarray, shape: tuple[int, ...], is_3d: bool, zmax_inclusive: bool = False) -> list[str]:
    """Warnings for the boxes of a case (``CaseError`` for boxes DAFT's script cannot segment)."""
    if len(boxes) == 0:
        return []
    if not is_3d:
        return box_warnings(boxes, shape[0], shape[1])
    plans = plan_3d(boxes, shape, zmax_inclusive)  # type: ignore[arg-type]
    return box_warnings(boxes[:, [0, 1, 3, 4]], shape[1], shape[2]) + z_warnings(plans, shape[0])


def _fmt(*v: float) -> str:
    return "[" + ", ".join(f"{x:g}" for x in v) + "]"
