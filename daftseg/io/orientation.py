"""How the app shows a stored slice so that it looks as in 3D Slicer and ITK-SNAP: the radiological
convention (the patient's right on the screen's left; axial: anterior up; coronal and sagittal:
superior up; sagittal: anterior on the left).

Only axis swaps and mirrors are used (a signed permutation of the voxel axes, up to
``TOLERANCE`` in the direction cosines), never resampling, and always within the stored slice:
the slices the model sees, the boxes, the cursor read-out and the saved label map stay in the
file's own voxel indices. An oblique grid is shown as stored, and says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TOLERANCE = 0.01  # cosines within 0.01 of a signed permutation (about half a degree of obliquity)
MEDICAL_FORMATS_SKIP = ("image", "npz")  # pictures and challenge arrays carry no patient orientation
# LPS world axes: +x patient left, +y posterior, +z superior
LETTERS = {(0, 1): "L", (0, -1): "R", (1, 1): "P", (1, -1): "A", (2, 1): "S", (2, -1): "I"}
# slice normal (world axis) -> plane, (screen-right world direction), (screen-down world direction)
PLANES = {2: ("axial", (0, 1), (1, 1)), 1: ("coronal", (0, 1), (2, -1)), 0: ("sagittal", (1, 1), (2, -1))}


@dataclass(frozen=True)
class SliceView:
    """The stored (H, W) slice -> the screen: transpose first (rows become columns), then mirror.

    edges: the orientation letters at the screen's left, right, top and bottom (None: unknown).
    """

    transpose: bool
    flip_x: bool
    flip_y: bool
    plane: str  # axial, coronal, sagittal, "as stored (oblique)" or "as stored"
    edges: dict[str, str] | None

    def to_dict(self) -> dict:
        return asdict(self)


AS_STORED = SliceView(False, False, False, "as stored", None)


def signed_permutation(matrix: np.ndarray, tolerance: float = TOLERANCE) -> list[tuple[int, int]] | None:
    """For each voxel axis (column), its world axis and sign; None when the grid is oblique."""
    axes = []
    for column in np.asarray(matrix, dtype=np.float64).T:
        world = int(np.argmax(np.abs(column)))
        others = np.delete(np.abs(column), world)
        if abs(abs(column[world]) - 1) > tolerance or (others > tolerance).any():
            return None
        axes.append((world, 1 if column[world] > 0 else -1))
    if len({a for a, _ in axes}) != len(axes):
        return None
    return axes


def slice_view(geometry) -> SliceView:
    """How to show the (H, W) slices of a scan whose voxel grid is ``geometry`` (``io.Geometry``)."""
    if geometry.ndim != 3 or geometry.source_format in MEDICAL_FORMATS_SKIP:
        return AS_STORED
    axes = signed_permutation(geometry.matrix)
    if axes is None:
        return SliceView(False, False, False, "as stored (oblique)", None)
    col, row, normal = axes  # voxel axes i (columns), j (rows), k (slices)
    plane, right, down = PLANES[normal[0]]
    transpose = col[0] != right[0]  # the stored columns run up-down on the screen
    across, along = (row, col) if transpose else (col, row)
    flip_x = across[1] != right[1]
    flip_y = along[1] != down[1]
    left, up = (right[0], -right[1]), (down[0], -down[1])
    edges = {"left": LETTERS[left], "right": LETTERS[right], "top": LETTERS[up], "bottom": LETTERS[down]}
    return SliceView(transpose, flip_x, flip_y, plane, edges)
