"""2D pictures through OpenCV: PNG, JPG, TIFF, BMP images and mask images, and PNG label maps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from daftseg.geometry import to_rgb
from daftseg.io.labels import integer_labels
from daftseg.io.normalise import Intensity, normalise_picture

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def is_picture(path: Path) -> bool:
    return Path(path).name.lower().endswith(PICTURE_SUFFIXES)


def _imread(path: Path, what: str) -> np.ndarray:
    path = Path(path)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"OpenCV cannot read {what} {path}")
    return image


def read_image_2d(path: Path, intensity: Intensity | None = None) -> np.ndarray:
    """PNG/JPG/TIFF/BMP -> (H, W, 3) uint8 RGB; grey is repeated, alpha dropped, wide types percentile-clipped."""
    image = _imread(path, "image")
    if image.ndim == 3 and image.shape[2] >= 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return to_rgb(normalise_picture(image, intensity or Intensity()))


def read_mask_2d(path: Path) -> np.ndarray:
    """Mask image -> (H, W) integer labels.

    Grey masks keep their values (0/255 masks become one object after relabelling); colour
    masks with unequal channels get one label per distinct colour (black is background),
    numbered in sorted colour order.
    """
    mask = _imread(path, "mask")
    if mask.ndim == 3:
        mask = mask[:, :, :3]
        if (mask == mask[:, :, :1]).all():
            mask = mask[:, :, 0]
        else:
            colours, inverse = np.unique(mask.reshape(-1, 3), axis=0, return_inverse=True)
            # Sorted colours start with black when there is any: black -> 0, the rest -> 1..
            offset = 0 if not colours[0].any() else 1
            mask = (inverse.ravel() + offset).reshape(mask.shape[:2])
    return integer_labels(mask, str(path))


def write_png_labels(labels: np.ndarray, path: Path) -> None:
    """(H, W) labels -> a grey PNG at ``path`` (8-bit when every value fits, else 16-bit)."""
    dtype = np.uint8 if labels.max(initial=0) <= 255 else np.uint16
    ok, data = cv2.imencode(".png", np.ascontiguousarray(labels.astype(dtype)))
    if not ok:
        raise OSError(f"OpenCV cannot encode {path.name} as PNG")
    Path(path).write_bytes(data.tobytes())
