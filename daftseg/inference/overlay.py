"""PNG overlays of image, boxes and masks (``--save_overlay``); 3D: each box's middle slice."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

from daftseg.atomic import atomic_write_bytes
from daftseg.inference.npz_io import Case, stretch_to_uint8
from daftseg.inference.segmenter import CaseResult


def label_colours(n: int) -> np.ndarray:
    """(n+1, 3) uint8 BGR colours; 0 is black, labels spread around the hue circle."""
    colours = np.zeros((n + 1, 3), np.uint8)
    for i in range(1, n + 1):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 1.0)
        colours[i] = (int(b * 255), int(g * 255), int(r * 255))
    return colours


def draw(image_rgb: np.ndarray, labels: np.ndarray, boxes_xy: np.ndarray, box_labels: list[int]) -> np.ndarray:
    """BGR uint8 image with labels blended at 50% and each box outlined in its label's colour."""
    import cv2

    colours = label_colours(max([int(labels.max()), *box_labels, 0]))
    out = np.ascontiguousarray(image_rgb[:, :, ::-1])
    fg = labels > 0
    out[fg] = (out[fg].astype(np.uint16) + colours[labels[fg]]) // 2
    for (x0, y0, x1, y1), lab in zip(boxes_xy.tolist(), box_labels):
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1), int(y1)), tuple(int(c) for c in colours[lab]), 1)
    return out


def write_png(path: Path, image: np.ndarray) -> None:
    """Encode ``image`` as PNG and write it atomically; an encoding failure is an error naming ``path``.

    ``cv2.imwrite`` reports failure only by returning False and can leave half a file: encoding in
    memory first makes both impossible to miss.
    """
    import cv2

    try:
        ok, data = cv2.imencode(".png", image)
    except cv2.error as e:
        raise ValueError(f"{path}: PNG encoding failed: {' '.join(str(e).split())[:200]}") from None
    if not ok:
        raise ValueError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, data.tobytes())


def display_uint8(image: np.ndarray) -> np.ndarray:
    """``image`` as uint8 for a PNG: unchanged if uint8, else its [min, max] stretched to [0, 255]."""
    return image if image.dtype == np.uint8 else stretch_to_uint8(image)


def save_overlays(folder: Path, case: Case, result: CaseResult) -> list[Path]:
    """Write the case's overlay PNG(s) into ``folder`` and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(case.name).stem
    written = []
    if not case.is_3d:
        labels = list(range(1, len(case.boxes) + 1))
        path = folder / f"{stem}.png"
        write_png(path, draw(display_uint8(case.imgs), result.segs, case.boxes[:, :4], labels))
        written.append(path)
        return written
    for idx, (box, z) in enumerate(zip(case.boxes, result.mid_slices), start=1):
        if not 0 <= z < case.imgs.shape[0]:  # a box with no slice in the volume (segmented as nothing)
            continue
        grey = display_uint8(case.imgs[z])
        path = folder / f"{stem}_box{idx}_z{z}.png"
        write_png(path, draw(np.repeat(grey[:, :, None], 3, -1), result.segs[z], box[None, [0, 1, 3, 4]], [idx]))
        written.append(path)
    return written
