"""The 2D case (spec §7.4): one image embedding, every box decoded on it, later boxes overwrite."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from daftseg.geometry import postprocess_logits, preprocess_image, scale_box_to_256
from daftseg.inference.boxes import clip_region
from daftseg.inference.model_sessions import ModelSessions
from daftseg.inference.npz_io import label_dtype
from daftseg.inference.options import InferenceOptions


def segment_2d(model: ModelSessions, image: np.ndarray, boxes: np.ndarray,
               options: InferenceOptions | None = None) -> np.ndarray:
    """Label map (H,W) with label i+1 where box i's mask is (boxes later in the list win).

    Every box is segmented as DAFT does, also inverted boxes and boxes outside the image (their
    coordinates go to the prompt encoder as given; ``boxes.box_warnings`` names them).

    Args:
        model: compiled sessions of the routed model.
        image: (H,W,3) in a dtype of ``npz_io.DAFT_DTYPES`` (resized in it, as DAFT).
        boxes: (N,4) [x_min, y_min, x_max, y_max] in original pixels; N may be 0.
    Returns:
        (H,W) labels in ``label_dtype(N)`` (uint8 up to 255 boxes; written as uint16).
    """
    segs = np.zeros(image.shape[:2], label_dtype(len(boxes)))
    for i, mask in enumerate(box_masks(model, image, boxes, options)):
        np.copyto(segs, segs.dtype.type(i + 1), where=mask)
    return segs


def box_masks(model: ModelSessions, image: np.ndarray, boxes: np.ndarray,
              options: InferenceOptions | None = None) -> Iterator[np.ndarray]:
    """(H,W) bool mask of each box on ``image``, in order: the one path from a box to its mask.

    One image embedding for all boxes (none computed when there are none); the boxes go to the
    decoder ``options.decode_batch`` at a time; with ``options.clip_to_box`` each mask keeps only
    the pixels inside its box. ``segment_2d`` paints these masks; the app previews one box with it.

    Args:
        model: compiled sessions, or anything with their ``encode`` and ``decode``.
        image: (H,W,3) in a dtype of ``npz_io.DAFT_DTYPES``.
        boxes: (N,4) [x_min, y_min, x_max, y_max] in original pixels.
    """
    options = options or InferenceOptions()
    if len(boxes) == 0:
        return
    h, w = image.shape[:2]
    x, new_hw = preprocess_image(image)  # (1,3,256,256)
    embedding = model.encode(x)
    # DAFT truncates each coordinate: int(v * 256 / max(H, W))
    boxes256 = scale_box_to_256(boxes, h, w).astype(np.float32)
    step = max(1, options.decode_batch)
    for start in range(0, len(boxes), step):
        logits = model.decode(embedding, boxes256[start:start + step], batch=step)  # (n,256,256)
        for j, low_res in enumerate(logits):
            mask = postprocess_logits(low_res, new_hw, (h, w))
            if options.clip_to_box:
                rows, cols = clip_region(boxes[start + j], h, w)
                clipped = np.zeros_like(mask)
                clipped[rows, cols] = mask[rows, cols]
                mask = clipped
            yield mask
