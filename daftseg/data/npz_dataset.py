"""Training datasets over challenge npz files (spec §4, §5.4).

One sample = one labelled object of one 2D slice at 256x256:

1. the slice: a 2D case as it is; a 3D case either one random slice (``every_slice=False``, the
   2D scripts) or the indexed slice (``every_slice=True``, the 3D script: an epoch visits every
   slice of every file, the last one included: the original's ``__len__`` was one short);
2. longest side resized to 256 (INTER_AREA / INTER_NEAREST), zero padded at the bottom and right;
3. min-max normalised after padding (the original) or before it (``norm_before_pad``, as inference);
4. one random label id of the padded map becomes the binary mask; a slice without labels is
   replaced by a random other item (at most ``MAX_RESAMPLES`` times, no recursion);
5. with ``data_aug``: flip left-right, then up-down, each when ``random() > 0.5``;
6. the box is the mask's inclusive bounding box, each coordinate pushed outwards by
   ``randint(0, bbox_shift)`` and clamped to [0, 255].

Randomness comes from a ``random.Random`` seeded per (seed, epoch, index), so a sample does not
depend on worker count, rank or resume point. Use ``EpochSampler`` keys ``(epoch, index)``, or
``set_epoch`` and plain integer indices.
"""

from __future__ import annotations

import os
import random
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import Dataset

from daftseg.data.preprocess_cache import CacheEntry, SliceCache, is_volume, read_npz, resize_slice
from daftseg.geometry import minmax_normalise, pad_bottom_right

MAX_RESAMPLES = 100
# epoch value of the validation stream: train epochs count from 1, so it never collides
VALIDATION_EPOCH = 0


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The Python RNG of one (epoch, index) draw; the same on every worker and rank."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint64)
    return random.Random(int(state[0]) << 64 | int(state[1]))


def npz_shape(path: str | os.PathLike, key: str = "gts") -> tuple[int, ...]:
    """Shape of one array in an npz, read from its header without decompressing the data."""
    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as f:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = reader(f)
    return tuple(shape)


def normalise(x: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] as float32, equal to the original's float64 ``(x - min) / clip(max - min, 1e-8)``.

    For 8- and 16-bit integer images float32 gives exactly the same numbers at a third of the cost:
    ``x - min`` and ``max - min`` are exact, and one correctly rounded float32 division equals the
    float64 quotient rounded to float32 (checked exhaustively for uint8). Other dtypes use float64.
    """
    if x.dtype in (np.uint8, np.uint16, np.int16):
        lo = int(x.min())
        span = int(x.max()) - lo
        if span == 0:
            return np.zeros(x.shape, np.float32)
        return (x.astype(np.float32) - np.float32(lo)) / np.float32(span)
    return minmax_normalise(x).astype(np.float32)


def make_sample(image: np.ndarray, labels: np.ndarray, rng: random.Random, bbox_shift: int = 5,
                data_aug: bool = True, norm_before_pad: bool = False) -> dict[str, torch.Tensor] | None:
    """The training sample of one resized slice, or None if it has no label to choose.

    Args:
        image: (h, w) grey or (h, w, 3) slice, longest side 256 (``resize_slice``).
        labels: (h, w) label map of the same size.
    Returns:
        ``image`` float32 (3, 256, 256) in [0, 1]; ``gt2D`` uint8 (1, 256, 256) in {0, 1};
        ``bboxes`` float32 (1, 1, 4) as [x_min, y_min, x_max, y_max] in 256-space.
    """
    padded_labels = pad_bottom_right(labels)
    # np.unique(...)[1:] as the original: drops the smallest id, which is 0 unless the slice has none
    label_ids = np.flatnonzero(np.bincount(padded_labels.ravel()))[1:]
    if label_ids.size == 0:
        return None
    mask = (padded_labels == rng.choice(label_ids.tolist())).astype(np.uint8)
    if norm_before_pad:
        x = pad_bottom_right(normalise(image))
    else:
        x = normalise(pad_bottom_right(image))
    if data_aug:
        if rng.random() > 0.5:
            x, mask = x[:, ::-1], mask[:, ::-1]
        if rng.random() > 0.5:
            x, mask = x[::-1], mask[::-1]
    cols = np.flatnonzero(mask.any(axis=0))  # the mask's bounding box, cheaper than np.nonzero
    rows = np.flatnonzero(mask.any(axis=1))
    h, w = mask.shape
    x_min = max(0, int(cols[0]) - rng.randint(0, bbox_shift))
    x_max = min(w - 1, int(cols[-1]) + rng.randint(0, bbox_shift))
    y_min = max(0, int(rows[0]) - rng.randint(0, bbox_shift))
    y_max = min(h - 1, int(rows[-1]) + rng.randint(0, bbox_shift))
    # grey is normalised once and repeated: the same numbers as normalising three equal channels
    chw = np.broadcast_to(x, (3, h, w)) if x.ndim == 2 else x.transpose(2, 0, 1)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(chw)),
        "gt2D": torch.from_numpy(np.ascontiguousarray(mask[None])),
        "bboxes": torch.tensor([[[x_min, y_min, x_max, y_max]]], dtype=torch.float32),
    }


class NpzDataset(Dataset):
    """Challenge training npz files as box-prompted single-object samples (see the module docstring).

    Args:
        files: npz paths (``file_lists.load_file_list``).
        every_slice: one item per slice (3D DAFT script) instead of one per file.
        bbox_shift: maximum box jitter in 256-space pixels (the original ignored its flag: always 5).
        data_aug: random flips.
        norm_before_pad: normalise the resized image before zero padding, as inference does.
        cache_dir: a ``preprocess_cache`` folder; cached files are read from it, others from the npz.
        seed: base of the per-sample RNG.
    """

    def __init__(self, files: list[str], *, every_slice: bool = False, bbox_shift: int = 5,
                 data_aug: bool = True, norm_before_pad: bool = False,
                 cache_dir: str | os.PathLike | None = None, seed: int = 2024) -> None:
        self.files = list(files)
        self.every_slice = every_slice
        self.bbox_shift = bbox_shift
        self.data_aug = data_aug
        self.norm_before_pad = norm_before_pad
        self.seed = seed
        self.epoch = 1
        cache = SliceCache(cache_dir) if cache_dir else None
        self.entries: list[CacheEntry | None] = [cache.lookup(f) if cache else None for f in self.files]
        if every_slice:
            counts = np.asarray(self._slice_counts(), dtype=np.int64)
            starts = np.cumsum(counts) - counts
            self.slice_file = np.repeat(np.arange(len(self.files)), counts)
            self.slice_index = np.arange(int(counts.sum())) - np.repeat(starts, counts)

    @property
    def num_cached(self) -> int:
        return sum(e is not None for e in self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain integer indices (``EpochSampler`` passes it with each index)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.slice_file) if self.every_slice else len(self.files)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        rng = sample_rng(self.seed, epoch, int(index))
        for _ in range(MAX_RESAMPLES + 1):
            file_i, fixed_slice = self._locate(index)
            slice_i, (image, labels) = self._read(file_i, fixed_slice, rng)
            sample = make_sample(image, labels, rng, self.bbox_shift, self.data_aug, self.norm_before_pad)
            if sample is not None:
                sample["image_name"] = self.files[file_i]
                sample["slice"] = slice_i
                return sample
            index = rng.randint(0, len(self) - 1)  # the original's fallback: a random other item
        raise RuntimeError(f"no labelled slice found in {MAX_RESAMPLES + 1} draws starting at item "
                           f"{key}; are most masks in the file list empty?")

    def _locate(self, index: int) -> tuple[int, int | None]:
        if self.every_slice:
            return int(self.slice_file[index]), int(self.slice_index[index])
        return int(index), None

    def _read(self, file_i: int, fixed_slice: int | None,
              rng: random.Random) -> tuple[int, tuple[np.ndarray, np.ndarray]]:
        """(slice index or -1 for 2D, resized (image, labels)); a random slice if none is fixed."""
        entry = self.entries[file_i]
        if entry is not None:
            if not entry.is_3d:
                return -1, entry.read(0)
            s = fixed_slice if fixed_slice is not None else rng.randint(0, entry.slices - 1)
            return s, entry.read(s)
        imgs, gts = read_npz(self.files[file_i])
        if not is_volume(gts):
            return -1, resize_slice(imgs, gts)
        s = fixed_slice if fixed_slice is not None else rng.randint(0, gts.shape[0] - 1)
        return s, resize_slice(imgs[s], gts[s])

    def _slice_counts(self) -> list[int]:
        """Slices per file: D for a 3D case, 1 for a 2D one (the original counted H for 2D files)."""
        def count(i: int) -> int:
            entry = self.entries[i]
            if entry is not None:
                return entry.slices
            shape = npz_shape(self.files[i], "gts")
            return shape[0] if is_volume(shape) else 1

        with ThreadPoolExecutor(max_workers=min(16, max(1, len(self.files)))) as pool:
            return list(pool.map(count, range(len(self.files))))

