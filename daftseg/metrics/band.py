"""Which grid points lie within a tolerance of a set of surface points, without a distance map.

The NSD only asks, for every surface point of one mask, whether the nearest surface point of
the other mask is at most ``tolerance`` mm away. SciPy's exact Euclidean distance transform
answers it but costs ~200 ns per voxel of the whole box; dilating the surface points with the
set of grid offsets that lie within the tolerance answers the same question with a handful of
byte-wise ORs per voxel.

The offsets are selected with the very float expression ``distance_transform_edt`` evaluates
for a nearest point at offset ``k``: ``sqrt(((k0*s0)**2 + (k1*s1)**2) + (k2*s2)**2)``. So a
point is "within" here exactly when it is within by the EDT, except in one degenerate case:
several nearest points at the same exact distance whose float distances straddle the
tolerance by one ulp, where the EDT's answer depends on which of them it happens to pick.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Above this many array passes, one EDT of the box is cheaper than the dilation (tiny spacing
# relative to the tolerance, i.e. hundreds of offsets).
MAX_DILATION_PASSES = 400


def offset_distances(radius: Sequence[int], spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """All integer offsets in the box |k_i| <= radius_i and their mm distances.

    Returns:
        offsets: (K, 3) int64.
        distances: (K,) float64, computed exactly as ``scipy.ndimage.distance_transform_edt``
            computes the distance to a feature at that offset.
    """
    axes = [np.arange(-r, r + 1, dtype=np.int64) for r in radius]
    offsets = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    s = np.asarray(spacing, dtype=np.float64)
    scaled = offsets.astype(np.float64) * s  # (K, 3): dt[ii] *= sampling[ii]
    sq = scaled * scaled
    # np.add.reduce over the leading axis of (3, ...) adds the rows in order 0, 1, 2.
    return offsets, np.sqrt((sq[:, 0] + sq[:, 1]) + sq[:, 2])


def tolerance_offsets(spacing: Sequence[float], tolerance: float) -> np.ndarray:
    """(K, 3) int64 offsets whose EDT-style distance is <= ``tolerance`` (includes (0, 0, 0))."""
    s = np.asarray(spacing, dtype=np.float64)
    if s.shape != (3,) or np.any(s <= 0):
        raise ValueError(f"spacing must be 3 positive numbers, got {spacing!r}")
    # One step past tolerance / spacing per axis, so that no offset on the boundary is missed.
    radius = [int(np.floor(tolerance / si)) + 1 for si in s]
    offsets, dist = offset_distances(radius, s)
    return offsets[dist <= tolerance]


def _line_axis(offsets: np.ndarray) -> int:
    """Axis along which the offsets reach furthest: dilate along it with 1D segments."""
    return int(np.argmax(np.abs(offsets).max(axis=0)))


def dilation_passes(offsets: np.ndarray) -> int:
    """Number of whole-array OR passes ``within_tolerance`` needs for these offsets."""
    axis = _line_axis(offsets)
    others = np.delete(offsets, axis, axis=1)
    n_columns = len(np.unique(others, axis=0))
    return n_columns + 2 * int(np.abs(offsets[:, axis]).max())


def _shift_slices(shift: Sequence[int], shape: Sequence[int]) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """(dst, src) slices so that ``dst_array[dst]`` pairs with ``src_array[src]`` moved by ``shift``."""
    dst, src = [], []
    for k, n in zip(shift, shape):
        if abs(k) >= n:
            return None
        if k >= 0:
            dst.append(slice(k, n))
            src.append(slice(0, n - k))
        else:
            dst.append(slice(0, n + k))
            src.append(slice(-k, n))
    return tuple(dst), tuple(src)


def within_tolerance(points: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Dilate a point set by an offset set that is symmetric and convex along every grid line.

    Args:
        points: (D, H, W) bool, e.g. the border points of one mask.
        offsets: (K, 3) int, from ``tolerance_offsets`` (symmetric: k and -k both present;
            along each grid line the kept offsets form one segment around 0).

    Returns:
        (D, H, W) bool: True where some point of ``points`` lies at one of the offsets,
        i.e. where the distance to the nearest point is within the tolerance.
    """
    axis = _line_axis(offsets)
    other_axes = [a for a in range(3) if a != axis]
    # For each column (the two other coordinates) the segment half-length along ``axis``.
    reach: dict[tuple[int, int], int] = {}
    for off in offsets:
        key = (int(off[other_axes[0]]), int(off[other_axes[1]]))
        reach[key] = max(reach.get(key, 0), abs(int(off[axis])))

    # Segments of every half-length up to the largest, built incrementally (2 ORs each).
    segments = {0: points}
    current = points
    for r in range(1, max(reach.values()) + 1):
        current = current.copy()
        for k in (r, -r):
            shift = [0, 0, 0]
            shift[axis] = k
            pair = _shift_slices(shift, points.shape)
            if pair is not None:
                current[pair[0]] |= points[pair[1]]
        segments[r] = current

    out = np.zeros_like(points)
    for (a, b), r in reach.items():
        shift = [0, 0, 0]
        shift[other_axes[0]], shift[other_axes[1]] = a, b
        pair = _shift_slices(shift, points.shape)
        if pair is not None:
            out[pair[0]] |= segments[r][pair[1]]
    return out
