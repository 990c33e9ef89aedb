"""Label maps -> objects and their boxes, as the converters make them (the one copy)."""

from __future__ import annotations

import numpy as np

from daftseg.io.label_boxes import boxes_from_labels, instance_labels


def integer_labels(array: np.ndarray, source: str) -> np.ndarray:
    """Label array as integers; refuse fractional or negative values (an image given as a label)."""
    if not np.issubdtype(array.dtype, np.integer):
        rounded = np.rint(array)
        if not np.array_equal(rounded, array):
            raise ValueError(f"{source}: label values are not integers (is this an image, not a label map?)")
        array = rounded.astype(np.int64)
    if array.size and array.min() < 0:
        raise ValueError(f"{source}: negative label values")
    return array


def labels_to_objects(labels: np.ndarray, instances: bool = False,
                      min_size: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Objects 1..N from a label map: one per label id, or one per connected component.

    Objects smaller than ``min_size`` pixels/voxels are dropped (MedSAM's preprocessing drops
    tiny ones too). Returns (gts with labels 1..N in the smallest unsigned dtype, (N,) source label id).
    """
    objects = instance_labels(labels) if instances else labels
    ids = np.unique(objects)
    ids = ids[ids > 0]
    if min_size > 0:
        counts = np.bincount(objects.ravel().astype(np.int64), minlength=int(ids.max(initial=0)) + 1)
        ids = ids[counts[ids] >= min_size]
    if ids.size == 0:
        raise ValueError("the label map has no foreground object" + (f" of at least {min_size} voxels"
                                                                      if min_size else ""))
    lut = np.zeros(int(objects.max()) + 1, dtype=np.int64)
    lut[ids] = np.arange(1, ids.size + 1)
    gts = lut[objects]
    dtype = np.uint8 if ids.size < 256 else np.uint16 if ids.size < 65536 else np.uint32
    gts = gts.astype(dtype)
    # Source id of each object: the input label value at the object's first voxel.
    nz = np.flatnonzero(gts)
    first = np.unique(gts.ravel()[nz], return_index=True)[1]
    return gts, labels.ravel()[nz[first]].astype(np.int64)


def object_boxes(labels: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """One box per label id of a label map: ((N, 4|6) int64 boxes in the challenge layout, (N,) label ids)."""
    gts, ids = labels_to_objects(integer_labels(labels, source))
    return boxes_from_labels(gts), ids
