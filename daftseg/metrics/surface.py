"""Surface distances and the normalised surface Dice (NSD) of DeepMind's algorithm.

The algorithm (``surface-distance`` package, ``compute_surface_distances`` and
``compute_surface_dice_at_tolerance``), which the challenge scored with:

1. Every corner point of the voxel grid gets a code from its 2x2x2 neighbourhood
   (``neighbour_codes``); the mask is treated as embedded in zeros, so objects touching the
   array border still get a closed surface.
2. Corner points with a code other than 0 and 255 are surface points ("surfels"); each has
   an area (mm^2) looked up from its code and the spacing (``surfel_area_table``).
3. Each surfel's distance to the other mask's surface points, with ``sampling=spacing``.
4. NSD = (area of gt surfels within the tolerance + area of pred surfels within the
   tolerance) / (area of all gt surfels + area of all pred surfels). No surfels at all
   (both masks empty): NaN. One mask empty: 0.

Everything only depends on the surface points, so working on the union bounding box of
the two masks gives the same values as the whole volume (the package crops the same way).
Masks must be 3D; a 2D mask is scored as (H, W, 1) with spacing (1, 1, 1) (see ``case``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from daftseg.metrics._surfel_table import SURFEL_WEIGHTS
from daftseg.metrics.band import MAX_DILATION_PASSES, dilation_passes, tolerance_offsets, within_tolerance

DEFAULT_TOLERANCE_MM = 2.0


class SurfaceDistances(NamedTuple):
    """Surfels of both masks with their distance to the other surface.

    Unlike the package, the arrays are in C order of the surfel positions, not sorted by
    distance (nothing here needs the order; sums may differ from the package's in the last
    bits only).
    """

    distances_gt_to_pred: np.ndarray  # (Ng,) mm; inf when pred has no surface
    distances_pred_to_gt: np.ndarray  # (Np,) mm; inf when gt has no surface
    surfel_areas_gt: np.ndarray  # (Ng,) mm^2
    surfel_areas_pred: np.ndarray  # (Np,) mm^2


def as_spacing(spacing: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """Spacing as a hashable tuple of 3 floats (float32 values are widened exactly)."""
    s = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if s.shape != (3,) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"spacing must be 3 positive finite numbers, got {spacing!r}")
    return (float(s[0]), float(s[1]), float(s[2]))


@functools.lru_cache(maxsize=128)
def _area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    s0, s1, s2 = spacing
    c0, c1, c2 = s1 * s2, s0 * s2, s0 * s1  # area-vector scaling per normal component
    basis = np.array([
        np.sqrt(c0 * c0 + c1 * c1 + c2 * c2) / 8.0,  # corner triangle, per eighth
        np.sqrt(c0 * c0 + c1 * c1) / 4.0,  # edge triangle, axes 0+1
        np.sqrt(c0 * c0 + c2 * c2) / 4.0,  # edge triangle, axes 0+2
        np.sqrt(c1 * c1 + c2 * c2) / 4.0,  # edge triangle, axes 1+2
        c0 / 2.0, c1 / 2.0, c2 / 2.0,  # face triangles
    ])
    weights = np.array([[int(d) for d in w] for w in SURFEL_WEIGHTS], dtype=np.float64)  # (256, 7)
    table = weights @ basis
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=128)
def _offsets(spacing: tuple[float, float, float], tolerance: float) -> np.ndarray:
    offsets = tolerance_offsets(spacing, tolerance)
    offsets.setflags(write=False)
    return offsets


def surfel_area_table(spacing: Sequence[float] | np.ndarray) -> np.ndarray:
    """(256,) float64 surfel area in mm^2 of every neighbour code, for a 3D spacing (read-only)."""
    return _area_table(as_spacing(spacing))


def neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """Neighbour code of every corner point of a 3D mask embedded in zeros.

    Args:
        mask: (D, H, W) bool.

    Returns:
        (D+1, H+1, W+1) uint8. Entry (i, j, k) is the corner shared by voxels
        (i-1..i, j-1..j, k-1..k); the bit of voxel (i-1+a, j-1+b, k-1+c) is
        ``128 >> (4a + 2b + c)``, which equals ``scipy.ndimage.correlate`` with the
        package's kernel [[[128, 64], [32, 16]], [[8, 4], [2, 1]]] on the mask padded with one
        zero at the high end, as the package computes it.
    """
    if mask.ndim != 3:
        raise ValueError(f"expected a 3D mask, got shape {mask.shape}")
    padded = np.pad(np.asarray(mask, dtype=bool), 1).view(np.uint8)
    n0, n1, n2 = (d + 1 for d in mask.shape)
    codes = np.zeros((n0, n1, n2), dtype=np.uint8)
    bit = 7
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                codes |= padded[a:a + n0, b:b + n1, c:c + n2] << np.uint8(bit)
                bit -= 1
    return codes


def _surface(mask: np.ndarray, areas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(border points (D+1, H+1, W+1) bool, their areas (N,) float64 in C order)."""
    codes = neighbour_codes(mask)
    borders = (codes != 0) & (codes != 255)
    return borders, areas[codes[borders]]


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Tight bounding box of the True voxels as slices; None for an empty mask."""
    boxes = ndimage.find_objects(np.asarray(mask, dtype=bool).view(np.uint8))
    return boxes[0] if boxes else None


def _union_box(mask_gt: np.ndarray, mask_pred: np.ndarray, crop: bool) -> tuple[slice, ...] | None:
    if mask_gt.shape != mask_pred.shape or mask_gt.ndim != 3:
        raise ValueError(f"expected two 3D masks of one shape, got {mask_gt.shape} and {mask_pred.shape}")
    if not crop:
        return tuple(slice(0, n) for n in mask_gt.shape)
    return bounding_box(np.asarray(mask_gt, dtype=bool) | np.asarray(mask_pred, dtype=bool))


def compute_surface_distances(mask_gt: np.ndarray, mask_pred: np.ndarray,
                              spacing: Sequence[float] | np.ndarray, *, crop: bool = True) -> SurfaceDistances:
    """Surfel areas and surface-to-surface distances, as the package's function.

    Args:
        mask_gt, mask_pred: (D, H, W) bool masks.
        spacing: 3 voxel sizes in mm, in the arrays' axis order.
        crop: work on the union bounding box (same values; ``False`` uses the whole volume).
    """
    box = _union_box(mask_gt, mask_pred, crop)
    if box is None:
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty)
    return _box_surface_distances(mask_gt[box], mask_pred[box], as_spacing(spacing))


def _box_surface_distances(gt: np.ndarray, pred: np.ndarray,
                           spacing: tuple[float, float, float]) -> SurfaceDistances:
    areas = _area_table(spacing)
    borders_gt, areas_gt = _surface(gt, areas)
    borders_pred, areas_pred = _surface(pred, areas)

    def distances_to(borders: np.ndarray, at: np.ndarray) -> np.ndarray:
        if not borders.any():
            return np.full(int(np.count_nonzero(at)), np.inf)
        return ndimage.distance_transform_edt(~borders, sampling=spacing)[at]

    return SurfaceDistances(distances_to(borders_pred, borders_gt), distances_to(borders_gt, borders_pred),
                            areas_gt, areas_pred)


def surface_dice_at_tolerance(distances: SurfaceDistances, tolerance: float = DEFAULT_TOLERANCE_MM) -> float:
    """NSD from ``compute_surface_distances``; NaN when neither mask has a surface."""
    d = distances
    total = np.sum(d.surfel_areas_gt) + np.sum(d.surfel_areas_pred)
    if total == 0:
        return float("nan")
    overlap_gt = np.sum(d.surfel_areas_gt[d.distances_gt_to_pred <= tolerance])
    overlap_pred = np.sum(d.surfel_areas_pred[d.distances_pred_to_gt <= tolerance])
    return float((overlap_gt + overlap_pred) / total)


def box_surface_dice(gt: np.ndarray, pred: np.ndarray, spacing: Sequence[float] | np.ndarray,
                     tolerance: float = DEFAULT_TOLERANCE_MM, *, method: str = "auto") -> float:
    """NSD of two masks already cropped to (at least) their union bounding box.

    Args:
        gt, pred: (D, H, W) bool. Any crop containing every True voxel of both gives the
            same value; the tight union box is the cheapest.
        spacing: 3 voxel sizes in mm.
        tolerance: mm.
        method: "dilate" (offset dilation, see ``band``), "edt" (distance transforms, as the
            package) or "auto" (dilate unless the tolerance spans hundreds of offsets).
    """
    s = as_spacing(spacing)
    if method not in ("auto", "dilate", "edt"):
        raise ValueError(f"unknown method {method!r}")
    offsets = _offsets(s, float(tolerance)) if method != "edt" else None
    if offsets is None or (method == "auto" and dilation_passes(offsets) > MAX_DILATION_PASSES):
        return surface_dice_at_tolerance(_box_surface_distances(gt, pred, s), tolerance)

    areas = _area_table(s)
    borders_gt, areas_gt = _surface(gt, areas)
    borders_pred, areas_pred = _surface(pred, areas)
    total = np.sum(areas_gt) + np.sum(areas_pred)
    if total == 0:
        return float("nan")
    # Surfels of one mask near the other's surface; an empty surface is near nothing.
    overlap_gt = np.sum(areas_gt[within_tolerance(borders_pred, offsets)[borders_gt]]) if areas_pred.size else 0.0
    overlap_pred = np.sum(areas_pred[within_tolerance(borders_gt, offsets)[borders_pred]]) if areas_gt.size else 0.0
    return float((overlap_gt + overlap_pred) / total)


def normalized_surface_dice(mask_gt: np.ndarray, mask_pred: np.ndarray, spacing: Sequence[float] | np.ndarray,
                            tolerance: float = DEFAULT_TOLERANCE_MM, *, crop: bool = True,
                            method: str = "auto") -> float:
    """NSD of two 3D boolean masks: the package's ``compute_surface_dice_at_tolerance``.

    Args:
        mask_gt, mask_pred: (D, H, W) bool.
        spacing: 3 voxel sizes in mm, in the arrays' axis order.
        tolerance: mm (the challenge used 2.0).
        crop: work on the union bounding box (identical values, faster).
        method: see ``box_surface_dice``.

    Returns:
        NSD in [0, 1]; NaN when both masks are empty; 0 when exactly one is.
    """
    box = _union_box(mask_gt, mask_pred, crop)
    if box is None:
        return float("nan")
    return box_surface_dice(np.asarray(mask_gt[box], dtype=bool), np.asarray(mask_pred[box], dtype=bool),
                            spacing, tolerance, method=method)
