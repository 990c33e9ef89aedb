"""Box prompts derived from label maps, in the challenge's layout (spec §3.2).

Box ``i - 1`` belongs to label ``i``: the inference code writes the mask of box ``k`` with label
``k + 1``, so labels must be the consecutive integers 1..N (``relabel_consecutive``).

Layouts (inclusive pixel indices, original image coordinates):
    2D: (N, 4) ``[x_min, y_min, x_max, y_max]``
    3D: (N, 6) ``[x_min, y_min, z_min, x_max, y_max, z_max]`` for a (D, H, W) = (z, y, x) volume.

Only numpy and OpenCV are needed; SciPy is used for 3D connected components when it is importable.
"""

from __future__ import annotations

import cv2
import numpy as np


def relabel_consecutive(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map the label ids present in ``labels`` (> 0) to 1..N, keeping their order.

    Returns:
        (relabelled array with the smallest unsigned dtype that holds N, original ids (N,)).
    """
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut_dtype = np.uint8 if ids.size < 256 else np.uint16 if ids.size < 65536 else np.uint32
    out = np.zeros(labels.shape, dtype=lut_dtype)
    for new, old in enumerate(ids, start=1):
        out[labels == old] = new
    return out, ids


def boxes_from_labels(labels: np.ndarray) -> np.ndarray:
    """Tight box of every label 1..labels.max(), as (N, 4) for 2D or (N, 6) for 3D, int64.

    Labels must be consecutive (each of 1..max present); a missing label would leave its box
    undefined and shift every later box against its label, so it is an error.
    """
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be (H, W) or (D, H, W), got shape {labels.shape}")
    n = int(labels.max()) if labels.size else 0
    boxes = np.zeros((n, 2 * labels.ndim), dtype=np.int64)
    if n == 0:
        return boxes
    # One pass over the foreground: per-label min/max of each axis.
    idx = np.nonzero(labels)
    lab = labels[idx].astype(np.int64) - 1
    present = np.bincount(lab, minlength=n) > 0
    if not present.all():
        missing = (np.flatnonzero(~present) + 1).tolist()
        raise ValueError(f"labels are not consecutive: ids {missing[:10]} missing in 1..{n}; "
                         "relabel them first (relabel_consecutive)")
    # idx axes are (y, x) in 2D and (z, y, x) in 3D; boxes list x, y[, z] first.
    order = [1, 0] if labels.ndim == 2 else [2, 1, 0]
    for col, axis in enumerate(order):
        lo = np.full(n, np.iinfo(np.int64).max)
        hi = np.full(n, -1, dtype=np.int64)
        np.minimum.at(lo, lab, idx[axis])
        np.maximum.at(hi, lab, idx[axis])
        boxes[:, col] = lo
        boxes[:, col + labels.ndim] = hi
    return boxes


def instance_labels(labels: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """One consecutive label per connected component of every label id (``--instances``).

    2D uses ``cv2.connectedComponents`` (``connectivity`` 4 or 8). 3D uses
    ``scipy.ndimage.label`` with full (26-) connectivity when SciPy is importable; without
    SciPy, 3D components are found per slice (a component spanning slices is split), which is
    said in the returned array only through more labels, so install SciPy for 3D instances.
    Components are numbered by label id, then by position, so the result is deterministic.
    """
    out = np.zeros(labels.shape, dtype=np.int64)
    count = 0
    for lid in np.unique(labels):
        if lid == 0:
            continue
        mask = labels == lid
        comp, n = _components(mask, connectivity)
        out[comp > 0] = comp[comp > 0] + count
        count += n
    dtype = np.uint8 if count < 256 else np.uint16 if count < 65536 else np.uint32
    return out.astype(dtype)


def _components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """Connected components of a boolean 2D or 3D mask: (labels 0..n, n)."""
    if mask.ndim == 2:
        n, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=connectivity)
        return comp, n - 1
    try:
        from scipy import ndimage
    except ImportError:  # per-slice fallback keeps the converters usable without SciPy
        comp = np.zeros(mask.shape, dtype=np.int64)
        total = 0
        for z in range(mask.shape[0]):
            c, n = _components(mask[z], connectivity)
            comp[z][c > 0] = c[c > 0] + total
            total += n
        return comp, total
    comp, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    return comp, int(n)


def jitter_boxes(boxes: np.ndarray, shape: tuple[int, ...], max_shift: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Move every box edge outwards or inwards by up to ``max_shift`` pixels, clipped to the image.

    Only the in-plane (x, y) edges move; the z range of 3D boxes stays the object's extent.
    A box never inverts: each max edge stays >= its min edge.

    Args:
        boxes: (N, 4) or (N, 6) as from ``boxes_from_labels``.
        shape: (H, W) or (D, H, W) of the image the boxes index.
    """
    if max_shift <= 0 or len(boxes) == 0:
        return boxes.copy()
    out = boxes.copy()
    half = boxes.shape[1] // 2
    h, w = shape[-2], shape[-1]
    for col, limit in ((0, w), (1, h)):
        lo = out[:, col] + rng.integers(-max_shift, max_shift + 1, len(out))
        hi = out[:, col + half] + rng.integers(-max_shift, max_shift + 1, len(out))
        lo = np.clip(lo, 0, limit - 1)
        hi = np.clip(hi, 0, limit - 1)
        out[:, col] = np.minimum(lo, hi)
        out[:, col + half] = np.maximum(lo, hi)
    return out
