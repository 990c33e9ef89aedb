"""Preprocessing cache: the same samples as reading the npz files, stale entries ignored."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from training_support import make_data, write_2d, write_3d

from daftseg.data import preprocess_cache
from daftseg.data.npz_dataset import NpzDataset
from daftseg.data.preprocess_cache import SliceCache, build_cache, resize_slice


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("npz")
    return [str(write_2d(root / "A_rgb.npz", 1)), str(write_2d(root / "B_grey.npz", 2, rgb=False)),
            str(write_3d(root / "C_vol.npz", 3, empty_slices=(2,))), str(write_3d(root / "D_vol.npz", 4))]


@pytest.mark.parametrize("every_slice", [False, True])
def test_cached_samples_equal_uncached(files, tmp_path, every_slice):
    assert build_cache(files, tmp_path / "cache", progress=False) == len(files)
    plain = NpzDataset(files, every_slice=every_slice)
    cached = NpzDataset(files, every_slice=every_slice, cache_dir=tmp_path / "cache")
    assert cached.num_cached == len(files) and len(cached) == len(plain)
    for epoch in (1, 2, 3):
        for i in range(len(plain)):
            a, b = plain[(epoch, i)], cached[(epoch, i)]
            for key in ("image", "gt2D", "bboxes"):
                assert torch.equal(a[key], b[key]), (epoch, i, key)
            assert (a["image_name"], a["slice"]) == (b["image_name"], b["slice"])


def test_cache_layout_and_dtypes(files, tmp_path):
    cache = SliceCache(tmp_path)
    entry = cache.add(files[2])
    assert entry.is_3d and entry.slices == 4
    image = np.load(entry.image_path, mmap_mode="r")
    labels = np.load(entry.labels_path, mmap_mode="r")
    assert image.shape == (4, 192, 256) and image.dtype == np.uint8
    assert labels.dtype == np.uint8 and labels.shape == (4, 192, 256)
    rgb = cache.add(files[0])
    assert not rgb.is_3d and np.load(rgb.image_path).shape == (1, 205, 256, 3)


def test_stale_or_missing_entries_fall_back(files, tmp_path):
    src = tmp_path / "A.npz"
    src.write_bytes(Path(files[0]).read_bytes())
    cache = SliceCache(tmp_path / "cache")
    assert cache.lookup(src) is None
    cache.add(src)
    assert cache.lookup(src) is not None
    write_2d(src, seed=99, hw=(30, 30))  # the source changed: different size
    assert cache.lookup(src) is None
    assert NpzDataset([str(src)], cache_dir=tmp_path / "cache").num_cached == 0


def test_same_basename_in_two_folders_does_not_collide(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = write_2d(tmp_path / "a" / "X.npz", 1), write_2d(tmp_path / "b" / "X.npz", 2)
    cache = SliceCache(tmp_path / "cache")
    assert cache.key(a) != cache.key(b)


def test_grey_resize_equals_resizing_the_repeated_rgb():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (97, 131), dtype=np.uint8)
    labels = rng.integers(0, 3, (97, 131), dtype=np.uint8)
    one, _ = resize_slice(grey, labels)
    three, _ = resize_slice(np.repeat(grey[:, :, None], 3, axis=-1), labels)
    assert all(np.array_equal(one, three[:, :, c]) for c in range(3))


def test_cli_builds_the_cache(tmp_path):
    data, csv_path = make_data(tmp_path, n2d=2, n3d=1)
    argv = ["-data_root", str(data), "-datacsv", str(csv_path), "-cache_dir", str(tmp_path / "c"),
            "-num_workers", "1"]
    assert preprocess_cache.main(argv) == 0
    assert len(list((tmp_path / "c").glob("*.json"))) == 3


def _write_plain(path: Path, seed: int) -> None:
    """An uncompressed npz: its size depends only on the shapes and dtypes, not the values."""
    rng = np.random.default_rng(seed)
    gts = rng.integers(0, 3, (40, 50), dtype=np.uint8)
    np.savez(path, imgs=rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), gts=gts)


def test_regenerated_npz_of_the_same_size_is_not_served_from_the_cache(tmp_path):
    src = tmp_path / "A.npz"
    _write_plain(src, 1)
    cache = SliceCache(tmp_path / "cache")
    cache.add(src)
    size, mtime = src.stat().st_size, src.stat().st_mtime_ns
    _write_plain(src, 2)  # new values, same size; the same mtime too, as on a coarse-clock filesystem
    os.utime(src, ns=(mtime, mtime))
    assert src.stat().st_size == size
    assert cache.lookup(src) is None
    assert NpzDataset([str(src)], cache_dir=tmp_path / "cache").num_cached == 0
    entry = cache.add(src)
    with np.load(src) as z:
        fresh = resize_slice(z["imgs"], z["gts"])
    assert np.array_equal(entry.read(0)[0], fresh[0]) and np.array_equal(entry.read(0)[1], fresh[1])
    # the same content rewritten (a copy, a touch) keeps the entry: identity is the content
    src.write_bytes(src.read_bytes())
    assert cache.lookup(src) is not None


def test_failed_rebuild_leaves_no_temporaries_and_serves_nothing_stale(tmp_path, monkeypatch):
    src = tmp_path / "A.npz"
    _write_plain(src, 1)
    cache = SliceCache(tmp_path / "cache")
    cache.add(src)
    _write_plain(src, 2)

    def broken_save(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(preprocess_cache.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cache.add(src, overwrite=True)
    monkeypatch.undo()
    assert cache.lookup(src) is None
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]
