"""Image and box geometry shared by training, export and inference.

One copy of the 256-space conventions (spec §4, §7.4, §13): the longest side is resized to
256 with ``int(x + 0.5)`` rounding and ``cv2.INTER_AREA``, the image is zero-padded at the
bottom and right, and min-max normalised to [0, 1]. Only numpy and OpenCV are imported, so
the torch-free inference path can use this module.
"""

from __future__ import annotations

import cv2
import numpy as np

IMAGE_SIZE = 256
# Margin added around the bounding box of the previous slice's mask in 3D propagation.
PROPAGATION_BOX_MARGIN = 3


def resized_shape(h: int, w: int, target: int = IMAGE_SIZE) -> tuple[int, int]:
    """(new_h, new_w) after resizing the longest side of an (h, w) image to ``target``."""
    scale = target * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_longest_side(image: np.ndarray, target: int = IMAGE_SIZE,
                        interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """Resize (H, W) or (H, W, C) so that max(H, W) == target, keeping the aspect ratio."""
    new_h, new_w = resized_shape(image.shape[0], image.shape[1], target)
    return cv2.resize(image, (new_w, new_h), interpolation=interpolation)


def pad_bottom_right(image: np.ndarray, target: int = IMAGE_SIZE) -> np.ndarray:
    """Zero-pad (h, w[, C]) to (target, target[, C]) at the bottom and right."""
    pad_h, pad_w = target - image.shape[0], target - image.shape[1]
    pad = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, pad)


def minmax_normalise(x: np.ndarray) -> np.ndarray:
    """(x - min) / max(max - min, 1e-8), computed in float64 (training; uint8 images)."""
    x = np.asarray(x, dtype=np.float64)
    lo = x.min()
    return (x - lo) / np.clip(x.max() - lo, 1e-8, None)


def normalise_like_daft(x: np.ndarray) -> np.ndarray:
    """DAFT's inference normalisation, in the arithmetic numpy gives the stored dtype (spec §7.4).

    ``(x - x.min()) / np.clip(x.max() - x.min(), 1e-8, None)`` as written: integer images are
    divided in float64 (equal to ``minmax_normalise``), float32 images in float32, and a
    subtraction that overflows the stored integer type wraps as it did for DAFT. numpy 1.26
    (DAFT's) and numpy 2 give the same types here.
    """
    return (x - x.min()) / np.clip(x.max() - x.min(), a_min=1e-8, a_max=None)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) grey -> (H, W, 3); (H, W, 3) unchanged; (H, W, 4) drops alpha; (H, W, 1) repeated."""
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=-1)
    if image.ndim == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=-1)
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected an (H,W), (H,W,1), (H,W,3) or (H,W,4) image, got shape {image.shape}")


def preprocess_image(image: np.ndarray, norm_before_pad: bool = True,
                     target: int = IMAGE_SIZE) -> tuple[np.ndarray, tuple[int, int]]:
    """Model input for one 2D image.

    Args:
        image: (H, W) or (H, W, 3) image in a dtype ``cv2.resize`` takes (uint8, uint16, int16,
            float32, float64); it is resized in that dtype, as DAFT's script does.
        norm_before_pad: True as at inference (normalise the resized, unpadded image, with
            DAFT's arithmetic); False as DAFT's training (normalise after zero padding).
    Returns:
        (1, 3, target, target) float32 in [0, 1], and (new_h, new_w) of the unpadded part.
    """
    rgb = to_rgb(image)
    resized = resize_longest_side(rgb, target)
    new_hw = (resized.shape[0], resized.shape[1])
    if norm_before_pad:
        x = pad_bottom_right(normalise_like_daft(resized), target)
    else:
        x = minmax_normalise(pad_bottom_right(resized, target))
    return x.astype(np.float32).transpose(2, 0, 1)[None], new_hw


def scale_box_to_256(box: np.ndarray, h: int, w: int, target: int = IMAGE_SIZE) -> np.ndarray:
    """Original-pixel box(es) [..., 4] -> 256-space, truncated towards zero like ``int()``.

    DAFT's ``new_box[i] = int(box[i] * (256 / max(H, W)))`` into ``np.zeros_like(box)``: the ratio
    first, the product in float64 (numpy 1.26, DAFT's, also for float32 boxes), truncated, and
    stored in the boxes' dtype; a value an integer dtype cannot hold wraps around as numpy 1.26
    stored it (only boxes far outside the image with small integer dtypes, e.g. uint8).
    """
    ratio = target / max(h, w)
    box = np.asarray(box)
    scaled = np.trunc(box.astype(np.float64) * ratio)
    if box.dtype.kind in "iu":
        return scaled.astype(np.int64).astype(box.dtype)
    return scaled


def bbox_from_mask(mask: np.ndarray, margin: int = PROPAGATION_BOX_MARGIN,
                   limit: int = IMAGE_SIZE) -> np.ndarray | None:
    """[x_min, y_min, x_max, y_max] of ``mask > 0`` grown by ``margin``, clamped to [0, limit].

    The upper clamp is ``limit`` (256), not 255, as the original's ``get_bbox256``.
    Returns None for an empty mask.
    """
    ys, xs = np.nonzero(mask > 0)
    if ys.size == 0:
        return None
    return np.array([max(0, xs.min() - margin), max(0, ys.min() - margin),
                     min(limit, xs.max() + margin), min(limit, ys.max() + margin)])


def postprocess_logits(low_res_logits: np.ndarray, new_hw: tuple[int, int],
                       original_hw: tuple[int, int]) -> np.ndarray:
    """(256, 256) low-res logits -> boolean (H, W) mask.

    Crop to the unpadded size, ``squeeze()``, resize the logits with INTER_LINEAR, threshold at 0
    (spec §7.4). The squeeze is DAFT's quirk: when the resized height is 1 (an image about 100 or
    more times wider than high), the (1, new_w) crop becomes a 1-D array, which OpenCV reads as a
    column (new_w, 1); the mask is then that column resized to (H, W): every row constant, rows
    following the logits along x. A resized width of 1 gives a column too, which is correct there.
    """
    cropped = np.ascontiguousarray(np.squeeze(low_res_logits[: new_hw[0], : new_hw[1]]))
    full = cv2.resize(cropped, (original_hw[1], original_hw[0]), interpolation=cv2.INTER_LINEAR)
    return full > 0


def bbox_from_mask_fullres(mask: np.ndarray, margin: int = PROPAGATION_BOX_MARGIN,
                           target: int = IMAGE_SIZE) -> np.ndarray | None:
    """916bd4e's propagation box (spec §11.4): the bounding box of an original-resolution mask.

    [x_min, y_min, x_max, y_max] of ``mask > 0`` in (H, W) pixels, scaled to 256-space as
    ``256 * v / max(H, W)`` in float32 without flooring (as the C++ code), grown by ``margin``
    and clamped to [0, target]. Avoids resizing the mask to 256 for every slice. None if empty.
    """
    ys, xs = np.nonzero(mask > 0)
    if ys.size == 0:
        return None
    longest = np.float32(max(mask.shape[0], mask.shape[1]))
    box = np.float32(target) * np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32) / longest
    lo, hi = np.float32(0), np.float32(target)
    return np.array([max(box[0] - margin, lo), max(box[1] - margin, lo),
                     min(box[2] + margin, hi), min(box[3] + margin, hi)], np.float32)
