"""The 3D case (spec §7.5) with slice embeddings computed when first needed and freed when done.

DAFT segments box by box: the middle slice with the given box, then upward to z_max-1 and downward
to z_min, each slice prompted by the box of the previous slice's mask; it encodes every slice of
the union of the box ranges up front and keeps them all (4 MiB each). Here the same decoder calls
are made, with the same prompts, in a different order:

1. an upward sweep over z: at each slice, the upward step of every box whose range is there;
2. a downward sweep over z: the downward steps (a box starts from its middle slice's mask).

A box's steps stay in DAFT's order (each needs only its own previous slice), so every mask is
bit-identical; boxes on the same slice meet, so a slice is encoded once and dropped as soon as no
step needs it. Slices needed by both sweeps are kept (``slice_cache``: a few in memory, the rest
in a temporary file), so memory does not grow with depth. DAFT's "later boxes overwrite earlier
ones" is order-free: a voxel gets the largest label whose mask covers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from daftseg.geometry import (
    bbox_from_mask,
    bbox_from_mask_fullres,
    postprocess_logits,
    preprocess_image,
    resize_longest_side,
    resized_shape,
)
from daftseg.inference.boxes import BoxPlan, clip_region, plan_3d
from daftseg.inference.model_sessions import ModelSessions
from daftseg.inference.npz_io import CaseError, label_dtype
from daftseg.inference.options import InferenceOptions
from daftseg.inference.slice_cache import SliceEmbeddings

Step = tuple[int, bool, list[int]]  # (slice z, upward?, indices of the boxes that step there)


@dataclass
class Result3D:
    segs: np.ndarray  # (D,H,W) labels, uint8 up to 255 boxes, else uint16 (written as uint16)
    plans: list[BoxPlan]
    slices: int  # distinct slices segmented
    encoder_calls: int  # > slices when the cache bounds forced re-encoding
    max_in_memory: int  # most embeddings held in memory at once
    max_spilled: int  # most embeddings held in the spill file at once


def schedule(plans: list[BoxPlan]) -> list[Step]:
    """The upward sweep (ascending z), then the downward sweep (descending z)."""
    steps: list[Step] = []
    for z in sorted({z for p in plans for z in p.up}):
        steps.append((z, True, [k for k, p in enumerate(plans) if p.mid <= z < p.hi]))
    for z in sorted({z for p in plans for z in p.down}, reverse=True):
        steps.append((z, False, [k for k, p in enumerate(plans) if p.lo <= z < p.mid]))
    return steps


def next_prompt(mask: np.ndarray, plan: BoxPlan, fullres: bool) -> np.ndarray:
    """The 256-space prompt for the next slice from this slice's (H,W) mask (spec §7.5, §11.4).

    DAFT resizes the box's label image (value = its label, uint16) with INTER_AREA and takes the
    bounding box grown by 3; the label value matters, since it decides which partly covered pixels
    survive the resize. Falls back to the given box if the mask vanishes.
    """
    if fullres:
        box = bbox_from_mask_fullres(mask)
    elif not mask.any():
        box = None
    else:
        label = np.multiply(mask, plan.idx, dtype=np.uint16)
        box = bbox_from_mask(resize_longest_side(label))
    return plan.default256 if box is None else np.asarray(box, np.float32)


def segment_3d(model: ModelSessions, volume: np.ndarray, boxes: np.ndarray,
               options: InferenceOptions | None = None, plans: list[BoxPlan] | None = None,
               on_slice: Callable[[int, np.ndarray], None] | None = None) -> Result3D:
    """Label volume for a (D,H,W) volume and (N,6) boxes ``[x0,y0,z0,x1,y1,z1]`` (N may be 0).

    The volume is in a dtype of ``npz_io.DAFT_DTYPES`` (each slice resized in it, as DAFT); boxes
    DAFT's script cannot segment raise ``CaseError`` (``boxes.plan_3d``). ``plans`` replaces
    ``plan_3d(boxes)``: the app propagates box k of a list alone, with its label ``idx`` k, which
    the next-slice prompt depends on. ``on_slice(z, labels_z)`` is called after each step with the
    slice's labels so far (a view: copy what you keep), so that a caller can show them at once.
    """
    options = options or InferenceOptions()
    d, h, w = volume.shape
    if len(boxes) > np.iinfo(np.uint16).max:
        raise CaseError(f"{len(boxes)} boxes: 3D cases support at most 65535 (uint16 labels, as DAFT)")
    if plans is None:
        plans = plan_3d(boxes, (d, h, w), options.zmax_inclusive) if len(boxes) else []
    segs = np.zeros((d, h, w), label_dtype(max([len(boxes), *(p.idx for p in plans)])))
    steps = schedule(plans)
    new_hw = resized_shape(h, w)
    embeddings = SliceEmbeddings(lambda z: model.encode(preprocess_image(volume[z])[0]), [step[0] for step in steps],
                                 options.max_cached_slices, options.max_spilled_slices, options.spill_dir)
    regions = [clip_region(p.xy, h, w) for p in plans] if options.clip_to_box else None
    prev: dict[int, np.ndarray] = {}  # box -> prompt for its next step
    down_start: dict[int, np.ndarray] = {}  # box -> prompt for slice mid-1 (from the middle mask)
    batch = max(1, options.decode_batch)

    with embeddings:  # removes the spill file, also on errors
        for z, upward, members in steps:
            embedding = embeddings.get(z)
            prompts = []
            for k in members:
                p = plans[k]
                if upward:
                    prompts.append(p.default256 if z == p.mid else prev[k])
                else:
                    prompts.append(down_start.pop(k) if z == p.mid - 1 else prev[k])
            seg_z = segs[z]
            for start in range(0, len(members), batch):
                chunk = members[start:start + batch]
                logits = model.decode(embedding, np.stack(prompts[start:start + batch]), batch=batch)
                for k, low_res in zip(chunk, logits):
                    p = plans[k]
                    mask = postprocess_logits(low_res, new_hw, (h, w))
                    if regions is not None:
                        rows, cols = regions[k]
                        clipped = np.zeros_like(mask)
                        clipped[rows, cols] = mask[rows, cols]
                        mask = clipped
                    goes_on = z < p.hi - 1 if upward else z > p.lo
                    starts_down = upward and z == p.mid and p.lo < p.mid
                    if goes_on or starts_down:
                        nxt = next_prompt(mask, p, options.box_from_fullres)
                        if starts_down:
                            down_start[k] = nxt
                        if goes_on:
                            prev[k] = nxt
                    if not goes_on:
                        prev.pop(k, None)
                    np.copyto(seg_z, seg_z.dtype.type(p.idx), where=mask & (seg_z < p.idx))
            embeddings.release(z)
            if on_slice is not None:
                on_slice(z, seg_z)

    distinct = len({z for z, _, _ in steps})
    return Result3D(segs, plans, distinct, embeddings.encoder_calls, embeddings.max_in_memory,
                    embeddings.max_spilled)
