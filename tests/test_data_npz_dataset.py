"""Training dataset: same samples as the original pipeline, box jitter, slices, resampling."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
import torch
from training_support import make_data, write_2d, write_3d

from daftseg.data.npz_dataset import MAX_RESAMPLES, NpzDataset, make_sample, npz_shape, sample_rng
from daftseg.geometry import preprocess_image


def original_sample(path, rng: random.Random, slice_index=None, bbox_shift=5):
    """The 93f1e55 ``NpzDataset.__getitem__`` steps (spec §4), with ``rng`` in place of ``random``."""
    npz = np.load(path)
    gts, imgs = npz["gts"], npz["imgs"]

    def resize(image):
        h, w = image.shape[:2]
        scale = 256 * 1.0 / max(h, w)
        return cv2.resize(image, (int(w * scale + 0.5), int(h * scale + 0.5)), interpolation=cv2.INTER_AREA)

    def pad(image):
        pad_hw = ((0, 256 - image.shape[0]), (0, 256 - image.shape[1]))
        return np.pad(image, pad_hw + (((0, 0),) if image.ndim == 3 else ()))

    if len(gts.shape) > 2:
        i = slice_index if slice_index is not None else rng.randint(0, gts.shape[0] - 1)
        img_i = resize(imgs[i])
        gt_i = cv2.resize(gts[i], (img_i.shape[1], img_i.shape[0]), interpolation=cv2.INTER_NEAREST)
        img_3c = np.repeat(pad(img_i)[:, :, None], 3, axis=-1)
        gts = pad(gt_i)
    else:
        img_3c = np.repeat(imgs[:, :, None], 3, axis=-1) if len(imgs.shape) < 3 else imgs
        img_3c = resize(img_3c)
        gts = cv2.resize(gts, (img_3c.shape[1], img_3c.shape[0]), interpolation=cv2.INTER_NEAREST)
        img_3c, gts = pad(img_3c), pad(gts)
    gts = np.uint16(gts)
    img = (img_3c - img_3c.min()) / np.clip(img_3c.max() - img_3c.min(), a_min=1e-8, a_max=None)
    img = np.transpose(img, (2, 0, 1))
    label_ids = np.unique(gts)[1:]
    if len(label_ids) == 0:
        return None
    gt2D = np.uint8(gts == rng.choice(label_ids.tolist()))
    if rng.random() > 0.5:
        img, gt2D = np.ascontiguousarray(np.flip(img, axis=-1)), np.ascontiguousarray(np.flip(gt2D, axis=-1))
    if rng.random() > 0.5:
        img, gt2D = np.ascontiguousarray(np.flip(img, axis=-2)), np.ascontiguousarray(np.flip(gt2D, axis=-2))
    ys, xs = np.where(gt2D > 0)
    H, W = gt2D.shape
    x_min = max(0, np.min(xs) - rng.randint(0, bbox_shift))
    x_max = min(W - 1, np.max(xs) + rng.randint(0, bbox_shift))
    y_min = max(0, np.min(ys) - rng.randint(0, bbox_shift))
    y_max = min(H - 1, np.max(ys) + rng.randint(0, bbox_shift))
    return torch.tensor(img).float(), gt2D, np.array([x_min, y_min, x_max, y_max], dtype=np.float32)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("npz")
    return [str(write_2d(root / "A_rgb.npz", 1)), str(write_2d(root / "B_grey.npz", 2, rgb=False)),
            str(write_2d(root / "C_tall.npz", 3, hw=(90, 40))), str(write_3d(root / "D_vol.npz", 4)),
            str(write_3d(root / "E_vol.npz", 5, dhw=(3, 70, 50)))]


@pytest.mark.parametrize("every_slice", [False, True])
def test_samples_equal_the_original_pipeline(files, every_slice):
    ds = NpzDataset(files, every_slice=every_slice, seed=7)
    for epoch in (1, 2):
        for index in range(len(ds)):
            s = ds[(epoch, index)]
            fixed = int(ds.slice_index[index]) if every_slice else None
            ref = original_sample(ds.files[ds._locate(index)[0]], sample_rng(7, epoch, index), fixed)
            assert ref is not None  # the fixture has no empty slices
            assert torch.equal(s["image"], ref[0])
            assert np.array_equal(s["gt2D"][0].numpy(), ref[1])
            assert s["bboxes"].reshape(4).tolist() == ref[2].tolist()


def test_sample_format(files):
    s = NpzDataset(files)[0]
    assert s["image"].shape == (3, 256, 256) and s["image"].dtype == torch.float32
    assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
    assert s["gt2D"].shape == (1, 256, 256) and s["gt2D"].dtype == torch.uint8
    assert set(s["gt2D"].unique().tolist()) == {0, 1}
    assert s["bboxes"].shape == (1, 1, 4) and s["bboxes"].dtype == torch.float32


def test_norm_before_pad_matches_inference_preprocessing(files):
    ds = NpzDataset(files, data_aug=False, norm_before_pad=True)
    for path in files[:3]:  # 2D cases: inference preprocessing of the same image
        s = ds[files.index(path)]
        expected, _ = preprocess_image(np.load(path)["imgs"], norm_before_pad=True)
        assert torch.equal(s["image"], torch.from_numpy(expected[0]))
    after = NpzDataset(files, data_aug=False)[0]["image"]
    assert not torch.equal(after, ds[0]["image"])  # image 0 has min > 0 and is not square: they differ


def _labels_with_box(y0, y1, x0, x1, h=256, w=256):
    labels = np.zeros((h, w), np.uint8)
    labels[y0: y1 + 1, x0: x1 + 1] = 1
    return labels


@pytest.mark.parametrize("shift", [0, 5, 20])
def test_box_jitter_within_shift_and_image(shift):
    labels = _labels_with_box(100, 150, 50, 120)
    image = np.full((256, 256), 9, np.uint8)
    seen = [set(), set(), set(), set()]
    for seed in range(300):
        s = make_sample(image, labels, random.Random(seed), bbox_shift=shift, data_aug=False)
        x0, y0, x1, y1 = s["bboxes"].reshape(4).int().tolist()
        for k, (got, exact, sign) in enumerate(zip((x0, y0, x1, y1), (50, 100, 120, 150), (-1, -1, 1, 1))):
            assert 0 <= sign * (got - exact) <= shift
            seen[k].add(sign * (got - exact))
    assert all(s == set(range(shift + 1)) for s in seen)  # randint(0, shift): both ends inclusive


def test_box_jitter_clamped_at_the_border():
    labels = _labels_with_box(0, 255, 0, 255, h=256, w=256)
    labels[0, 0] = 2  # two labels, so label 1 survives the original's "drop the smallest id"
    for seed in range(50):
        s = make_sample(np.zeros((256, 256), np.uint8), labels, random.Random(seed), bbox_shift=10)
        box = s["bboxes"].reshape(4)
        assert box.min() >= 0 and box.max() <= 255


def test_flipped_box_follows_the_flipped_mask(files):
    ds = NpzDataset(files, bbox_shift=0)
    for i in range(len(ds)):
        s = ds[(3, i)]
        ys, xs = np.nonzero(s["gt2D"][0].numpy())
        assert s["bboxes"].reshape(4).tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]


def test_every_slice_visits_every_slice_once(files):
    ds = NpzDataset(files, every_slice=True)
    assert len(ds) == 3 + 4 + 3  # three 2D files count once each; the last slice is included
    pairs = [(ds.files[f], s) for f, s in zip(ds.slice_file, ds.slice_index)]
    assert pairs[-1] == (files[4], 2)
    assert len(set(pairs)) == len(pairs)
    assert [s for f, s in pairs if f == files[3]] == [0, 1, 2, 3]
    assert npz_shape(files[3], "gts") == (4, 48, 64)


def test_random_slice_mode_draws_different_slices(files):
    ds = NpzDataset(files)
    assert len(ds) == len(files)
    slices = {ds[(epoch, 3)]["slice"] for epoch in range(1, 40)}
    assert slices == {0, 1, 2, 3}
    assert ds[(5, 3)]["slice"] == ds[(5, 3)]["slice"]  # a draw depends on (seed, epoch, index) only


def test_empty_slice_is_resampled(tmp_path):
    path = str(write_3d(tmp_path / "vol.npz", 9, dhw=(3, 40, 40), empty_slices=(1,)))
    ds = NpzDataset([path], every_slice=True)
    for epoch in range(1, 6):
        s = ds[(epoch, 1)]
        assert s["gt2D"].sum() > 0 and s["slice"] in (0, 2)


def test_all_empty_fails_after_bounded_retries(tmp_path):
    path = str(write_3d(tmp_path / "empty.npz", 9, dhw=(2, 40, 40), empty_slices=(0, 1)))
    with pytest.raises(RuntimeError, match=str(MAX_RESAMPLES + 1)):
        NpzDataset([path])[0]


def test_dataset_from_csv(tmp_path):
    data, csv_path = make_data(tmp_path, n2d=2, n3d=1)
    from daftseg.data.file_lists import load_file_list

    ds = NpzDataset(load_file_list(csv_path, data), every_slice=True)
    assert len(ds) == 2 + 4
