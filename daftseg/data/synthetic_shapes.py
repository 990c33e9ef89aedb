"""Drawing primitives for synthetic cases: smooth noise, blob masks, canvases, blur and noise.

Everything is float32 numpy (plus OpenCV for resizing and blurring) and driven by an explicit
``np.random.Generator``, so a case is a pure function of its seed.

Axis order: 2D arrays are (H, W) = (y, x); volumes are (D, H, W) = (z, y, x).
"""

from __future__ import annotations

import cv2
import numpy as np


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: int = 6) -> np.ndarray:
    """Low-frequency noise of ``shape`` (2D or 3D), roughly N(0, 1), float32.

    A coarse grid of about ``cells`` values per axis is upsampled with bicubic interpolation
    in-plane and linearly along z, which gives blobs of about shape/cells pixels.
    """
    if len(shape) == 2:
        h, w = shape
        coarse = rng.standard_normal((_cells(h, cells), _cells(w, cells))).astype(np.float32)
        return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    d, h, w = shape
    cd = _cells(d, cells)
    coarse = rng.standard_normal((_cells(h, cells), _cells(w, cells), cd)).astype(np.float32)
    # Along z first, on the coarse grid (cheap): linear weights (cd, D).
    pos = np.linspace(0, cd - 1, d, dtype=np.float32)
    i0 = np.minimum(pos.astype(np.int64), cd - 2)
    weights = np.zeros((cd, d), dtype=np.float32)
    weights[i0, np.arange(d)] = 1 - (pos - i0)
    weights[i0 + 1, np.arange(d)] = pos - i0
    coarse = np.ascontiguousarray((coarse @ weights).transpose(2, 0, 1))  # (D, ch, cw)
    out = np.empty((d, h, w), dtype=np.float32)
    for z in range(d):  # slice by slice: no full-volume transposes
        out[z] = cv2.resize(coarse[z], (w, h), interpolation=cv2.INTER_CUBIC)
    return out


def _cells(n: int, cells: int) -> int:
    """At least 2 coarse cells, never more than the axis has pixels."""
    return int(max(2, min(cells, n)))


def blob_mask(shape: tuple[int, ...], center: np.ndarray, radii: np.ndarray, angle: float,
              rng: np.random.Generator, wobble: float = 0.25) -> tuple[tuple[slice, ...], np.ndarray]:
    """Boolean blob: an ellipse (2D) or ellipsoid (3D) whose border is bent by smooth noise.

    Args:
        shape: (H, W) or (D, H, W) of the image.
        center, radii: per axis in array order ((y, x) or (z, y, x)), in pixels.
        angle: in-plane rotation in radians (about the z axis in 3D).
        wobble: amplitude of the border perturbation relative to the radius.
    Returns:
        (slices into the image, boolean mask of that crop). Only the box around the blob is
        computed, so placing many small blobs in a large volume stays cheap. The crop may be
        empty when the centre lies outside the image.
    """
    ndim = len(shape)
    reach = [int(np.ceil(radii[-2:].max() * (1 + wobble) + 1))] * ndim
    if ndim == 3:  # the in-plane rotation does not mix z in, so z reaches only its own radius
        reach[0] = int(np.ceil(radii[0] * (1 + wobble) + 1))
    lo = [max(0, int(c) - r) for c, r in zip(center, reach)]
    hi = [min(s, int(c) + r + 1) for c, r, s in zip(center, reach, shape)]
    slices = tuple(slice(a, max(a, b)) for a, b in zip(lo, hi))
    if any(b <= a for a, b in zip(lo, hi)):
        return slices, np.zeros([max(0, b - a) for a, b in zip(lo, hi)], dtype=bool)
    grids = np.meshgrid(*[np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)], indexing="ij")
    dy, dx = grids[-2] - center[-2], grids[-1] - center[-1]
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy  # rotated in-plane coordinates
    dist2 = (v / radii[-2]) ** 2 + (u / radii[-1]) ** 2
    if ndim == 3:
        dist2 = dist2 + ((grids[0] - center[0]) / radii[0]) ** 2
    crop = tuple(b - a for a, b in zip(lo, hi))
    bend = wobble * smooth_noise(rng, crop, cells=4)
    return slices, np.sqrt(dist2) + bend < 1.0


def canvas_2d(kind: str, h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Where the anatomy is, and its intensity shading, for one 2D image.

    Kinds: ``full`` (the whole frame), ``body`` (an ellipse, as a CT/MR slice), ``fan``
    (an ultrasound sector from the top centre), ``disc`` (a fundus photo), ``breast``
    (a half-ellipse from the left edge), ``layers`` (a wavy retina band of an OCT B-scan),
    ``vignette`` (the whole frame, darkening to the corners, as an endoscope).
    Returns:
        (mask (H, W) bool, shading (H, W) float32 multiplier around 1 inside the mask).
    """
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    shading = np.ones((h, w), dtype=np.float32)
    if kind in ("full", "vignette"):
        mask = np.ones((h, w), dtype=bool)
        if kind == "vignette":
            r = np.sqrt(((yy - cy) / h) ** 2 + ((xx - cx) / w) ** 2) / 0.7
            shading = np.clip(1.1 - r**2, 0.15, None).astype(np.float32)
    elif kind == "body":
        ry, rx = h * rng.uniform(0.36, 0.44), w * rng.uniform(0.42, 0.47)
        mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    elif kind == "fan":
        half_angle = np.deg2rad(rng.uniform(32, 42))
        radius = h * rng.uniform(0.88, 0.97)
        dy, dx = yy + 0.05 * h, xx - cx
        r, theta = np.sqrt(dy**2 + dx**2), np.arctan2(dx, dy)
        mask = (np.abs(theta) < half_angle) & (r < radius) & (r > 0.12 * h)
        shading = np.clip(1.15 - 0.5 * r / h, 0.4, None).astype(np.float32)  # depth attenuation
    elif kind == "disc":
        rad = min(h, w) * rng.uniform(0.44, 0.48)
        r = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        mask = r < rad
        shading = np.clip(1.15 - 0.45 * (r / rad) ** 2, 0.5, None).astype(np.float32)
    elif kind == "breast":
        ry, rx = h * rng.uniform(0.40, 0.47), w * rng.uniform(0.65, 0.85)
        d = ((yy - cy) / ry) ** 2 + (xx / rx) ** 2
        mask = d < 1
        shading = np.clip(1.2 - 0.5 * d, 0.5, None).astype(np.float32)  # thinner tissue at the edge
    elif kind == "layers":
        top = h * (rng.uniform(0.3, 0.4) + 0.06 * np.sin(2 * np.pi * (xx / w) * rng.uniform(0.5, 1.2)
                                                          + rng.uniform(0, 2 * np.pi)))
        depth = (yy - top) / (0.32 * h)
        mask = (depth > 0) & (depth < 1)
        # Retinal layers: alternating bright and dark bands with depth.
        shading = (1.0 + 0.35 * np.sin(2 * np.pi * 3.5 * depth)).astype(np.float32)
    else:
        raise ValueError(f"unknown canvas kind {kind!r}")
    return mask, shading


def blur(image: np.ndarray, sigma: float, volume: bool = False) -> np.ndarray:
    """Gaussian blur in-plane (``sigma`` pixels); volumes also get a [1, 2, 1]/4 pass along z.

    Args:
        image: (H, W), (H, W, C) or, with ``volume``, (D, H, W) float32.
    """
    if sigma <= 0:
        return image
    if not volume:
        return cv2.GaussianBlur(image, (0, 0), sigma)
    vol = np.empty_like(image)
    for z in range(image.shape[0]):
        vol[z] = cv2.GaussianBlur(image[z], (0, 0), sigma)
    if vol.shape[0] >= 3:
        mid = vol[1:-1] * np.float32(0.5)
        mid += np.float32(0.25) * vol[:-2]
        mid += np.float32(0.25) * vol[2:]
        vol[1:-1] = mid
    return vol


def add_noise(image: np.ndarray, rng: np.random.Generator, sigma: float, speckle: bool = False) -> np.ndarray:
    """Additive Gaussian noise of ``sigma`` grey levels, or multiplicative speckle (US/OCT).

    Speckle is Rayleigh-distributed with mean 1, as fully developed ultrasound speckle.
    """
    if speckle:
        factor = rng.rayleigh(1.0, image.shape).astype(np.float32) / np.float32(np.sqrt(np.pi / 2))
        image = image * factor
    if sigma > 0:
        image = image + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    return image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and clip to [0, 255] uint8."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
