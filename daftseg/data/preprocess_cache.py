"""One-time preprocessing cache: every slice resized to longest side 256, read back by memory map.

The original decodes a compressed npz and resizes the full-resolution image for every sample;
for a 3D volume that means decompressing the whole volume to use one slice. The cache stores,
per source npz, exactly what the dataset would compute before padding (``resize_slice``):

    <cache_dir>/<stem>-<hash>.img.npy   (S, h, w) grey / 3D slices, or (1, h, w, 3) RGB; source dtype
    <cache_dir>/<stem>-<hash>.gts.npy   (S, h, w) labels, uint8 if they fit, else uint16
    <cache_dir>/<stem>-<hash>.json      written last: marks the entry complete

``S`` is the number of slices (1 for a 2D case). ``hash`` is taken from the source's real path, so
equal basenames in different folders (XRay_COVID-QU-Ex-lungMask) never collide. An entry is used
only while the source's content fingerprint (``source_fingerprint``: size and the zip directory's
per-array CRC-32s) is the one recorded when it was built, so a regenerated npz, even one of the
same size, is never served from old slices. Samples drawn through the cache are bit-identical to
samples drawn from the npz (tests/test_data_cache.py).

Build it with ``python -m daftseg.data.preprocess_cache -data_root ... -datacsv ... -cache_dir ...``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from daftseg.atomic import atomic_paths, atomic_write_text
from daftseg.geometry import resize_longest_side, to_rgb

# 2: entries are matched by content fingerprint (version 1 compared the file size only)
CACHE_VERSION = 2
# dtypes cv2.resize handles with INTER_AREA; anything else is converted first
_RESIZABLE = (np.uint8, np.uint16, np.int16, np.float32, np.float64)


def resize_slice(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One slice to longest side 256, as the original dataset does before padding.

    Args:
        image: (H, W) grey or (H, W, C) colour slice.
        labels: (H, W) integer label map.
    Returns:
        image (h, w) or (h, w, 3) resized with INTER_AREA (grey stays single-channel: resizing
        the channels of ``repeat(grey, 3)`` one by one gives the same numbers), and labels (h, w)
        resized with INTER_NEAREST to the same size, as uint8 or uint16.
    """
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    elif image.ndim == 3:
        image = to_rgb(image)
    if image.dtype.type not in _RESIZABLE:
        image = image.astype(np.float64)
    if labels.dtype not in (np.uint8, np.uint16):
        # the original casts to uint16 after the nearest-neighbour resize; casting first is the same
        labels = labels.astype(np.uint16)
    image_r = resize_longest_side(image)
    labels_r = cv2.resize(labels, (image_r.shape[1], image_r.shape[0]), interpolation=cv2.INTER_NEAREST)
    return image_r, labels_r


def read_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``imgs`` and ``gts`` of a training npz (spec §3.1)."""
    with np.load(path, allow_pickle=False) as npz:
        return npz["imgs"], npz["gts"]


def source_fingerprint(path: str | os.PathLike) -> str:
    """Content identity of an npz, read without decompressing anything.

    The size plus a hash of the zip central directory: every array's name, CRC-32 of its bytes and
    sizes, which ``np.savez`` records. Rewriting an array with other values changes its CRC even
    when the file size stays the same. A file that is not a zip is hashed whole.
    """
    h = hashlib.sha256(f"{os.stat(path).st_size}\n".encode())
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                h.update(f"{info.filename}\0{info.CRC:08x}\0{info.file_size}\0{info.compress_size}\n".encode())
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def is_volume(labels: np.ndarray | tuple[int, ...]) -> bool:
    """The original's 3D test: ``len(gts.shape) > 2``."""
    shape = labels if isinstance(labels, tuple) else labels.shape
    return len(shape) > 2


@dataclass(frozen=True)
class CacheEntry:
    """One cached case; ``read(s)`` returns slice ``s`` as ``resize_slice`` would."""

    image_path: str
    labels_path: str
    is_3d: bool
    slices: int

    def read(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        # mmap: only the pages of slice s are read from disk
        image = np.load(self.image_path, mmap_mode="r")[s]
        labels = np.load(self.labels_path, mmap_mode="r")[s]
        return np.array(image), np.array(labels)


class SliceCache:
    """The cache folder: look entries up, add new ones."""

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.dir = Path(cache_dir)

    def key(self, source: str | os.PathLike) -> str:
        real = os.path.realpath(source)
        digest = hashlib.sha1(real.encode()).hexdigest()[:12]
        return f"{Path(real).stem}-{digest}"

    def lookup(self, source: str | os.PathLike) -> CacheEntry | None:
        """The entry for ``source``, or None if it is absent, incomplete or stale."""
        base = self.dir / self.key(source)
        try:
            meta = json.loads(base.with_suffix(".json").read_text())
            if meta.get("version") != CACHE_VERSION or meta.get("fingerprint") != source_fingerprint(source):
                return None
        except (OSError, ValueError):
            return None
        return CacheEntry(str(base) + ".img.npy", str(base) + ".gts.npy", bool(meta["is_3d"]),
                          int(meta["slices"]))

    def add(self, source: str | os.PathLike, overwrite: bool = False) -> CacheEntry:
        """Resize every slice of ``source`` and store it (atomically, metadata last)."""
        if not overwrite and (entry := self.lookup(source)) is not None:
            return entry
        # taken before reading: if the source changes meanwhile, the entry is stale, never wrong
        fingerprint, size = source_fingerprint(source), os.stat(source).st_size
        imgs, gts = read_npz(source)
        volume = is_volume(gts)
        pairs = ([resize_slice(imgs[s], gts[s]) for s in range(gts.shape[0])] if volume
                 else [resize_slice(imgs, gts)])
        image = np.stack([p[0] for p in pairs])
        labels = np.stack([p[1] for p in pairs])
        if labels.dtype != np.uint8 and (labels.size == 0 or labels.max() < 256):
            labels = labels.astype(np.uint8)  # halves the cache for the usual few-label maps
        self.dir.mkdir(parents=True, exist_ok=True)
        base = self.dir / self.key(source)
        # the old metadata goes first: arrays and metadata of different builds never pair up
        base.with_suffix(".json").unlink(missing_ok=True)
        with atomic_paths([str(base) + ".img.npy", str(base) + ".gts.npy"]) as (image_tmp, labels_tmp):
            np.save(image_tmp, image)
            np.save(labels_tmp, labels)
        meta = {"version": CACHE_VERSION, "source": os.path.realpath(source), "fingerprint": fingerprint,
                "size": size, "is_3d": volume, "slices": len(pairs),
                "original_shape": list(imgs.shape), "resized_hw": list(labels.shape[1:3])}
        atomic_write_text(base.with_suffix(".json"), json.dumps(meta))
        return CacheEntry(str(base) + ".img.npy", str(base) + ".gts.npy", volume, len(pairs))


def build_cache(files: list[str], cache_dir: str | os.PathLike, num_workers: int = 1,
                overwrite: bool = False, progress: bool = True) -> int:
    """Cache every file in ``files`` (distinct ones, in parallel); returns how many were written."""
    cache = SliceCache(cache_dir)
    todo = sorted({f for f in files if overwrite or cache.lookup(f) is None})
    if not todo:
        return 0
    bar = _progress(len(todo), progress)
    # every file in todo was just found missing or stale: build it without looking it up again
    if num_workers <= 1:
        for f in todo:
            cache.add(f, overwrite=True)
            bar.update()
    else:
        with ProcessPoolExecutor(num_workers) as pool:
            for _ in pool.map(_add_one, [(str(cache_dir), f) for f in todo], chunksize=4):
                bar.update()
    bar.close()
    return len(todo)


def _add_one(job: tuple[str, str]) -> None:
    cache_dir, source = job
    SliceCache(cache_dir).add(source, overwrite=True)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm  # optional at import time: the dataset itself never needs tqdm

    return tqdm(total=total, desc="caching", disable=not enabled)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m daftseg.data.preprocess_cache",
        description="Build the 256-px slice cache that the training scripts read with -cache_dir.")
    p.add_argument("-data_root", default="train_npz", help="folder the CSV's 'filename' entries are joined to")
    p.add_argument("-datacsv", nargs="+", default=["fulldataset.csv"],
                   help="one or more CSV file lists (column 'filename' or 'file')")
    p.add_argument("-data_subset", default="", help="'|'-separated file-name prefixes, as the training scripts")
    p.add_argument("-cache_dir", required=True, help="cache folder (created if missing)")
    p.add_argument("-num_workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    p.add_argument("--overwrite", action="store_true", help="rebuild entries that already exist")
    return p


def main(argv: list[str] | None = None) -> int:
    from daftseg.data.file_lists import load_file_list

    args = build_parser().parse_args(argv)
    files: list[str] = []
    try:
        for csv_path in args.datacsv:
            # the cache is optional: a listed file that is absent is simply not cached (with a count)
            files += load_file_list(csv_path, args.data_root, args.data_subset, skip_missing=True)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    written = build_cache(files, args.cache_dir, args.num_workers, args.overwrite)
    print(f"{len(set(files))} files listed, {written} cached now, cache in {args.cache_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
