"""Raw scan intensities -> the runtime's uint8, as MedSAM's ``pre_CT_MR.py`` (the one copy).

CT is windowed (presets in ``daftseg.io.intensity.CT_WINDOWS``, default abdomen WL 40 / WW 400);
MR, PET and other modalities are clipped to the 0.5-99.5 percentiles of the positive voxels; both
rescale to 0..255. Pictures (PNG/JPG/TIFF/BMP) keep uint8 data and percentile-clip wider types.
The converters and ``daftseg-segment`` both call ``normalise_volume``, so one scan gives one input.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from daftseg.io.intensity import CT_WINDOWS, percentile_clip, to_uint8_range, window_ct

INTENSITY_MODES = ("auto", "window", "percentile", "none")
# integer volumes at least this large with at most this many distinct values are windowed by table
TABLE_MIN_VOXELS = 1 << 16
TABLE_MAX_VALUES = 1 << 20


@dataclass(frozen=True)
class Intensity:
    """How raw values become uint8: ``mode`` (one of INTENSITY_MODES) and the CT ``window`` (level, width)."""

    mode: str = "auto"
    window: tuple[float, float] = CT_WINDOWS["abdomen"]


def normalise_volume(array: np.ndarray, modality: str | None, intensity: str = "auto",
                     window: tuple[float, float] = CT_WINDOWS["abdomen"]) -> np.ndarray:
    """Raw image (any shape) -> uint8, as ``pre_CT_MR.py``.

    Args:
        intensity: ``auto`` (CT: window, anything else: percentile), ``window``, ``percentile``, or
            ``none`` (data already in 0..255; cast only).
        window: (level, width) in HU for ``window``.
    """
    if intensity == "auto":
        intensity = "window" if modality == "CT" else "percentile"
    if intensity == "window":
        return _window_by_table(array, window)
    if intensity == "percentile":
        return percentile_clip(array)
    if intensity == "none":
        if array.min() < 0 or array.max() > 255:
            raise ValueError(f"--intensity none needs values in 0..255, got {array.min()}..{array.max()}")
        return array.astype(np.uint8)
    raise ValueError(f"unknown intensity mode {intensity!r}")


def _window_by_table(array: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``window_ct`` of an integer volume through a table of its distinct values: the same bytes.

    ``window_ct`` works in float64 over every voxel (several passes over 8 bytes a voxel: seconds
    for a 120x512x512 CT). Its result for a voxel depends only on the voxel's value and on the
    clipped data's min and max, which are the clipped min and max of the data's value range; so
    ``window_ct`` of that range, indexed by value, gives exactly its output.
    """
    if array.dtype.kind not in "iu" or array.size <= TABLE_MIN_VOXELS:
        return window_ct(array, *window)
    lo, hi = int(array.min()), int(array.max())
    if hi - lo >= TABLE_MAX_VALUES:
        return window_ct(array, *window)
    values = np.arange(lo, hi + 1, dtype=np.int64)
    table = window_ct(values, *window)
    if array.dtype.itemsize <= 2:  # 8/16-bit: index a full table by the raw bits (no index array)
        bits = np.dtype(f"u{array.dtype.itemsize}")
        full = np.zeros(1 << (8 * array.dtype.itemsize), np.uint8)
        full[values.astype(bits)] = table  # int16 -1 -> 65535: the same bits as the view below
        return full[array.view(bits)]
    return table[np.subtract(array, lo, dtype=np.int64)]


def normalise_picture(image: np.ndarray, intensity: Intensity) -> np.ndarray:
    """A picture's pixels -> uint8: ``auto`` keeps uint8 and percentile-clips wider types (the converters'
    rule for 2D images); another mode applies as for volumes."""
    if intensity.mode == "auto":
        return to_uint8_range(image)
    return normalise_volume(image, None, intensity.mode, intensity.window)


def add_intensity_arguments(parser: argparse.ArgumentParser) -> None:
    """The intensity flags shared by the converters and ``daftseg-segment``."""
    parser.add_argument("--intensity", choices=INTENSITY_MODES, default="auto",
                        help="auto: CT windowing, MR/PET percentile clipping (as MedSAM pre_CT_MR.py)")
    parser.add_argument("--window", choices=sorted(CT_WINDOWS), default="abdomen",
                        help="CT window preset (default abdomen: WL 40, WW 400)")
    parser.add_argument("--window_level", type=float, default=None, help="overrides the preset's level")
    parser.add_argument("--window_width", type=float, default=None, help="overrides the preset's width")


def intensity_from_args(args: argparse.Namespace) -> Intensity:
    """``Intensity`` from the flags of ``add_intensity_arguments``."""
    level, width = CT_WINDOWS[args.window]
    window = (args.window_level if args.window_level is not None else level,
              args.window_width if args.window_width is not None else width)
    return Intensity(args.intensity, window)
