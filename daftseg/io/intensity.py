"""Intensity normalisation to uint8, as MedSAM's ``pre_CT_MR.py`` / ``pre_grey_rgb.py`` do it.

CT: clip to the window [level - width/2, level + width/2], then min-max rescale the clipped
values to 0..255. MR/PET (and wide-range 2D images): clip to the 0.5 and 99.5 percentiles of
the nonzero voxels, rescale the same way, and keep voxels that were exactly 0 at 0.

Like MedSAM, the rescale uses the min and max of the *clipped data*, not the window bounds
(the same thing whenever the data reach both bounds, as CT with air and bone does), and the
cast to uint8 truncates.
"""

from __future__ import annotations

import numpy as np

# Window level / width presets (HU). "abdomen" is MedSAM's default (WL 40, WW 400).
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "soft_tissue": (50.0, 350.0),
    "lung": (-600.0, 1500.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
    "liver": (60.0, 160.0),
}


def _rescale_to_uint8(clipped: np.ndarray) -> np.ndarray:
    """Min-max rescale to 0..255 and truncate to uint8 (a constant image becomes all 0)."""
    lo, hi = float(clipped.min()), float(clipped.max())
    if hi <= lo:
        return np.zeros(clipped.shape, dtype=np.uint8)
    return ((clipped - lo) / (hi - lo) * 255.0).astype(np.uint8)


def window_ct(image: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """CT windowing: clip to [level - width/2, level + width/2], rescale to 0..255 uint8.

    Args:
        image: any shape, Hounsfield units.
    """
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    clipped = np.clip(image.astype(np.float64), level - width / 2, level + width / 2)
    return _rescale_to_uint8(clipped)


def percentile_clip(image: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """MR/PET normalisation: clip to the [lower, upper] percentiles of the positive voxels, rescale
    to 0..255 uint8, and set voxels that were 0 in the input back to 0 (background stays black).

    The percentiles come from the voxels > 0 as in MedSAM; an image without any falls back to
    the nonzero voxels, and an all-zero image comes back all zero.
    """
    data = image.astype(np.float64)
    sample = data[data > 0]
    if sample.size == 0:
        sample = data[data != 0]
    if sample.size == 0:
        return np.zeros(image.shape, dtype=np.uint8)
    lo, hi = np.percentile(sample, lower), np.percentile(sample, upper)
    out = _rescale_to_uint8(np.clip(data, lo, hi))
    out[data == 0] = 0
    return out


def to_uint8_range(image: np.ndarray) -> np.ndarray:
    """2D images: uint8 stays as is; any other dtype is percentile-clipped to uint8."""
    if image.dtype == np.uint8:
        return image
    return percentile_clip(image)
