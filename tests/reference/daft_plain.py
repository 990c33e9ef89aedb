"""DAFT 93f1e55's ``PerfectMetaOpenVINO.py`` inference, transcribed step by step from spec §7.4/§7.5.

This is the tests' independent reference: it imports numpy, OpenCV and OpenVINO only, never
``daftseg``, so a bug shared by the runtime and a helper it reuses cannot hide. It works as DAFT
does: one box and one slice at a time, every slice of the union of the box z-ranges encoded up
front, one ``ov.Core`` of its own with no cache, every graph compiled as stored (no reshape).

Where running the transcription under numpy 2 would not give DAFT's result, DAFT's arithmetic is
kept explicitly (each place says so):

- DAFT ran numpy 1.26.4, before NEP 50: a float32 box coordinate times a Python float was computed
  in float64, an unsigned coordinate minus 1 gave -1 (not 65535), and a value too large for an
  integer box dtype was stored wrapped (numpy 2 raises). Normalisation needs nothing: both numpy
  versions give the same types there.
- the 2D "box mask" is built and applied as DAFT does (a no-op, spec §7.4 step 5) only for integer
  boxes: slicing with float coordinates would raise, and the project accepts float boxes.

Inputs DAFT's script cannot process fail here too (a grey 2D image, a float z range that its
``range`` rejects); the tests give the reference only what DAFT runs.

The opt-in options of the runtime (``zmax_inclusive``, ``box_from_fullres``, ``clip_to_box``) are
reference parameters of ``infer_2d_variant`` / ``infer_3d_variant`` at the end of this file, kept
apart from the faithful path, which they never touch.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import openvino as ov

PRECISIONS = ("f32", "auto", "bf16")


# -- models (spec §7.1): a plain Core, graphs as stored ------------------------------------------


class DaftModels:
    """Image encoder, shared prompt encoder, mask decoder and PE of one model, compiled as DAFT does.

    ``precision``: ``auto`` sets no hint (DAFT's script); ``f32`` / ``bf16`` set
    ``INFERENCE_PRECISION_HINT``. ``prompt_encoder``: the file DAFT loads, in ``models_dir``.
    """

    def __init__(self, models_dir: str | Path, name: str, precision: str = "f32",
                 prompt_encoder: str = "lite_medsam_prompt_encoder.xml") -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        folder = Path(models_dir)
        self.core = ov.Core()
        config = {} if precision == "auto" else {"INFERENCE_PRECISION_HINT": precision}
        self.image_encoder = self.core.compile_model(str(folder / f"{name}_image_encoder.xml"), "CPU", config)
        self.prompt_encoder = self.core.compile_model(str(folder / prompt_encoder), "CPU", config)
        self.mask_decoder = self.core.compile_model(str(folder / f"{name}_mask_decoder.xml"), "CPU", config)
        self.positional_encoding = np.load(folder / "positional_encoding.npy")

    def inference_precision(self) -> str:
        """The precision the compiled decoder reports (``f32`` or ``bf16``)."""
        return self.mask_decoder.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def cpu_has_native_bf16() -> bool:
    """True when OpenVINO's CPU plugin lists BF16 among its optimisation capabilities."""
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


# -- helpers of the script (spec §7.4 step 2, §7.5, §13) -----------------------------------------


def resize_longest_side(image: np.ndarray, target_length: int = 256) -> np.ndarray:
    """INTER_AREA resize, the longest side to 256, sizes rounded with int(x + 0.5), in the stored dtype."""
    oldh, oldw = image.shape[0], image.shape[1]
    scale = target_length * 1.0 / max(oldh, oldw)
    newh, neww = oldh * scale, oldw * scale
    neww, newh = int(neww + 0.5), int(newh + 0.5)
    return cv2.resize(image, (neww, newh), interpolation=cv2.INTER_AREA)


def pad_image(image: np.ndarray, target_size: int = 256) -> np.ndarray:
    """Zeros at the bottom and on the right up to target_size x target_size."""
    padh = target_size - image.shape[0]
    padw = target_size - image.shape[1]
    if len(image.shape) == 3:
        return np.pad(image, ((0, padh), (0, padw), (0, 0)))
    return np.pad(image, ((0, padh), (0, padw)))


def get_bbox256(mask_256: np.ndarray, bbox_shift: int = 3) -> np.ndarray:
    """Bounding box of mask_256 > 0, grown by 3 and clipped to [0, 256] (W and H, not W-1 and H-1)."""
    y_indices, x_indices = np.where(mask_256 > 0)
    x_min, x_max = np.min(x_indices), np.max(x_indices)
    y_min, y_max = np.min(y_indices), np.max(y_indices)
    H, W = mask_256.shape
    x_min = max(0, x_min - bbox_shift)
    x_max = min(W, x_max + bbox_shift)
    y_min = max(0, y_min - bbox_shift)
    y_max = min(H, y_max + bbox_shift)
    return np.array([x_min, y_min, x_max, y_max])


def resize_box_to_256(box: np.ndarray, original_size) -> np.ndarray:
    """Each coordinate times 256 / max(H, W), truncated by int() into an array of the box's dtype."""
    new_box = np.zeros_like(box)
    ratio = 256 / max(original_size)
    for i in range(len(box)):
        # float(): numpy 1.26 multiplied a float32 coordinate in float64. The int64 detour: numpy 1.26
        # stored an int the box dtype cannot hold (uint8 255 * 2) wrapped around; numpy 2 raises.
        new_box[i] = np.array(int(float(box[i]) * ratio), dtype=np.int64).astype(new_box.dtype)
    return new_box


def as_numpy1_scalar(v) -> int | float:
    """A box coordinate as numpy 1.26 computed with it next to Python numbers: int64 or float64.

    Under numpy 2 an unsigned ``z_min - 1`` would wrap (uint16 0 - 1 = 65535) and float32 would
    stay float32; DAFT's numpy gave -1 and float64.
    """
    return np.asarray(v).item()


def normalise(img_256: np.ndarray) -> np.ndarray:
    """Min-max normalisation of the resized, unpadded image, in the arithmetic numpy gives it."""
    return (img_256 - img_256.min()) / np.clip(img_256.max() - img_256.min(), a_min=1e-8, a_max=None)


def encoder_input(img_3c: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(1,3,256,256) float32 model input and the resized (new_h, new_w) of an (H,W,3) image."""
    img_256 = resize_longest_side(img_3c, 256)
    newh, neww = img_256.shape[:2]
    padded = pad_image(normalise(img_256), 256)
    return padded.astype(np.float32).transpose((2, 0, 1))[None, ...], newh, neww


def medsam_inference(models: DaftModels, img_embed: np.ndarray, box_256: np.ndarray, new_size,
                     original_size) -> np.ndarray:
    """uint8 mask (H,W) of one (1,4) box: prompt encoder, decoder, crop, squeeze, INTER_LINEAR, > 0.

    squeeze() is DAFT's: a resized height of 1 makes the cropped (1, new_w) logits a 1-D array,
    which OpenCV reads as a column.
    """
    out = models.prompt_encoder({"boxes": box_256[None, None, ...].astype(np.float32)})
    sparse_embeddings, dense_embeddings = out["sparse_embeddings"], out["dense_embeddings"]
    out = models.mask_decoder({"image_embeddings": img_embed, "image_pe": models.positional_encoding,
                               "sparse_prompt_embeddings": sparse_embeddings,
                               "dense_prompt_embeddings": dense_embeddings})
    low_res_logits = out["low_res_masks"]
    low_res_logits = low_res_logits[..., :new_size[0], :new_size[1]]
    low_res_logits = low_res_logits.squeeze()
    low_res_logits = cv2.resize(low_res_logits, tuple(original_size[::-1]), interpolation=cv2.INTER_LINEAR)
    return (low_res_logits > 0).astype(np.uint8)


# -- 2D (spec §7.4) ------------------------------------------------------------------------------


def infer_2d(models: DaftModels, img_3c: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``segs`` (H,W) uint16 of an (H,W,3) image and (N,4) boxes; later boxes overwrite earlier ones."""
    assert np.max(img_3c) < 256, "input data should be in range [0, 255]"
    H, W = img_3c.shape[:2]
    segs = np.zeros(img_3c.shape[:2], dtype=np.uint16)
    img_256, newh, neww = encoder_input(img_3c)
    image_embedding = models.image_encoder({"image": img_256})[0]
    for idx, box in enumerate(boxes, start=1):
        box256 = resize_box_to_256(box, original_size=(H, W))[None, ...]
        medsam_mask = medsam_inference(models, image_embedding, box256, (newh, neww), (H, W))
        if np.asarray(box).dtype.kind in "iu":
            x_min, y_min, x_max, y_max = (as_numpy1_scalar(v) for v in box)  # uint8 255 + 1 is 256 there
            box_mask = np.zeros((H, W), dtype=bool)
            box_mask[x_min:x_max + 1, y_min:y_max + 1] = True  # x and y swapped, as DAFT
            segs[medsam_mask > 0 & box_mask] = idx  # precedence: medsam_mask > (0 & box_mask)
        else:
            segs[medsam_mask > 0] = idx
    return segs


# -- 3D (spec §7.5) ------------------------------------------------------------------------------


def slice_embeddings(models: DaftModels, img_3D: np.ndarray, boxes_3D: np.ndarray) -> tuple[dict, int, int]:
    """Every slice of the union of the box z-ranges, encoded eagerly; new_H/new_W from the first."""
    D = img_3D.shape[0]
    lookups_left: dict = {}
    for box3D in boxes_3D:
        _, _, z_min, _, _, z_max = box3D
        z_min = max(0, z_min)
        z_max = min(z_max, D)
        for z in range(z_min, z_max):
            lookups_left[z] = lookups_left.get(z, 0) + 1
    cache, sizes = {}, []
    for z in lookups_left:
        img_3c = np.repeat(img_3D[z, :, :][:, :, None], 3, axis=-1)
        x, new_h, new_w = encoder_input(img_3c)
        cache[z] = models.image_encoder({"image": x})[0]
        sizes.append((new_h, new_w))
    new_H, new_W = sizes[0]  # IndexError without boxes, as DAFT
    return cache, new_H, new_W


def next_box(segs_3d_temp: np.ndarray, z_prev: int, mid_slice_bbox_2d: np.ndarray, H: int, W: int) -> np.ndarray:
    """The prompt from the previous slice's label image, or the rescaled middle box if it is empty."""
    pre_seg = segs_3d_temp[z_prev, :, :]
    if np.max(pre_seg) > 0:
        pre_seg256 = pad_image(resize_longest_side(pre_seg))
        if np.max(pre_seg256) > 0:
            return get_bbox256(pre_seg256)
    return resize_box_to_256(mid_slice_bbox_2d, original_size=(H, W))


def infer_3d(models: DaftModels, img_3D: np.ndarray, boxes_3D: np.ndarray) -> np.ndarray:
    """``segs`` (D,H,W) uint16 of a (D,H,W) volume and (N,6) boxes [x0, y0, z0, x1, y1, z1].

    z bounds go through Python's min/max as in DAFT, so float coordinates run only where those
    return ints (z_min <= 0, z_max > D); elsewhere ``range`` raises TypeError, as DAFT's script.
    """
    D, H, W = img_3D.shape
    segs = np.zeros_like(img_3D, dtype=np.uint16)
    cache, new_H, new_W = slice_embeddings(models, img_3D, boxes_3D)
    for idx, box3D in enumerate(boxes_3D, start=1):
        segs_3d_temp = np.zeros_like(img_3D, dtype=np.uint16)
        x_min, y_min, z_min, x_max, y_max, z_max = box3D
        assert z_min < z_max, f"z_min should be smaller than z_max, got {z_min} and {z_max}"
        mid_slice_bbox_2d = np.array([x_min, y_min, x_max, y_max])
        # numpy 1.26: the difference in the boxes' dtype, halving and adding in float64
        z_middle = int(float(z_max - z_min) / 2 + float(z_min))
        z_min = as_numpy1_scalar(z_min)
        z_max = min(z_max, D)
        for z in range(z_middle, z_max):
            if z == z_middle:
                box_256 = resize_box_to_256(mid_slice_bbox_2d, original_size=(H, W))
            else:
                box_256 = next_box(segs_3d_temp, z - 1, mid_slice_bbox_2d, H, W)
            mask = medsam_inference(models, cache[z], box_256[None, ...], [new_H, new_W], [H, W])
            segs_3d_temp[z, mask > 0] = idx
        z_min = max(-1, z_min - 1)
        for z in range(z_middle - 1, z_min, -1):
            box_256 = next_box(segs_3d_temp, z + 1, mid_slice_bbox_2d, H, W)
            mask = medsam_inference(models, cache[z], box_256[None, ...], [new_H, new_W], [H, W])
            segs_3d_temp[z, mask > 0] = idx
        segs[segs_3d_temp > 0] = idx
    return segs


# == opt-in variants (not DAFT): the runtime's options, written from their documentation ============
# zmax_inclusive: the baseline's upper bound, slice z_max included (spec §10).
# box_from_fullres: 916bd4e's C++ propagation box (spec §11.4): the original-resolution bounding box
#   of mask > 0, times 256 / max(H, W) in float32 without flooring, grown by 3, clamped to [0, 256].
# clip_to_box: keep mask pixels in rows floor(y_min)..floor(y_max) and columns floor(x_min)..floor(x_max)
#   of the original-pixel box (within the image), before the mask prompts the next slice.


def clip_mask(mask: np.ndarray, box_xy) -> np.ndarray:
    """``mask`` outside the (inclusive) original-pixel box set to 0."""
    x0, y0, x1, y1 = (math.floor(float(v)) for v in box_xy)
    inside = np.zeros(mask.shape, dtype=bool)
    inside[max(y0, 0):max(y1 + 1, 0), max(x0, 0):max(x1 + 1, 0)] = True
    return np.where(inside, mask, 0).astype(mask.dtype)


def fullres_box(pre_seg: np.ndarray, default: np.ndarray) -> np.ndarray:
    """916bd4e's box from the previous slice's mask at original resolution (float32)."""
    ys, xs = np.where(pre_seg > 0)
    if len(ys) == 0:
        return default
    longest = np.float32(max(pre_seg.shape))
    corners = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)
    scaled = np.float32(256) * corners / longest
    grown = scaled + np.array([-3, -3, 3, 3], dtype=np.float32)
    return np.clip(grown, np.float32(0), np.float32(256)).astype(np.float32)


def infer_2d_variant(models: DaftModels, img_3c: np.ndarray, boxes: np.ndarray,
                     clip_to_box: bool = False) -> np.ndarray:
    """``infer_2d`` with the opt-in clipping."""
    H, W = img_3c.shape[:2]
    segs = np.zeros((H, W), dtype=np.uint16)
    img_256, newh, neww = encoder_input(img_3c)
    image_embedding = models.image_encoder({"image": img_256})[0]
    for idx, box in enumerate(boxes, start=1):
        mask = medsam_inference(models, image_embedding, resize_box_to_256(box, (H, W))[None, ...],
                                (newh, neww), (H, W))
        if clip_to_box:
            mask = clip_mask(mask, box)
        segs[mask > 0] = idx
    return segs


def infer_3d_variant(models: DaftModels, img_3D: np.ndarray, boxes_3D: np.ndarray, zmax_inclusive: bool = False,
                     box_from_fullres: bool = False, clip_to_box: bool = False) -> np.ndarray:
    """``infer_3d`` (integer boxes) with the opt-in changes; every needed slice encoded once, up front."""
    D, H, W = img_3D.shape
    segs = np.zeros((D, H, W), dtype=np.uint16)
    boxes_3D = np.asarray(boxes_3D).astype(np.int64)
    top = [min(int(b[5]) + (1 if zmax_inclusive else 0), D) for b in boxes_3D]
    needed = sorted({z for b, t in zip(boxes_3D, top) for z in range(max(0, int(b[2])), t)})
    cache = {}
    new_size = None
    for z in needed:
        x, new_h, new_w = encoder_input(np.repeat(img_3D[z][:, :, None], 3, axis=-1))
        cache[z] = models.image_encoder({"image": x})[0]
        new_size = (new_h, new_w)

    for idx, (box, upper) in enumerate(zip(boxes_3D, top), start=1):
        x_min, y_min, z_min, x_max, y_max, z_max = (int(v) for v in box)
        assert z_min < z_max or (zmax_inclusive and z_min == z_max)
        xy = np.array([x_min, y_min, x_max, y_max])
        default = resize_box_to_256(xy, (H, W))
        temp = np.zeros((D, H, W), dtype=np.uint16)
        z_middle = int((z_max - z_min) / 2 + z_min)

        order = list(range(z_middle, upper)) + list(range(z_middle - 1, max(z_min, 0) - 1, -1))
        for z in order:
            z_prev = z - 1 if z > z_middle else z + 1
            if z == z_middle:
                box256 = default
            elif box_from_fullres:
                box256 = fullres_box(temp[z_prev], default)
            else:
                box256 = next_box(temp, z_prev, xy, H, W)
            mask = medsam_inference(models, cache[z], np.asarray(box256)[None, ...], new_size, (H, W))
            if clip_to_box:
                mask = clip_mask(mask, xy)
            temp[z, mask > 0] = idx
        segs[temp > 0] = idx
    return segs
