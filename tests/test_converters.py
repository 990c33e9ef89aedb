"""Converters to the challenge format, on small NIfTI / DICOM / PNG files written here."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from scan_writers import ORIGIN_XYZ, SPACING_XYZ, write_dicom_series
from scan_writers import sitk_image as _sitk

from daftseg.data import converters
from daftseg.io.intensity import percentile_clip, window_ct
from daftseg.io.medical import GeometryError, read_dicom_series

SHAPE_ZYX = (6, 20, 24)


def _ct_and_label() -> tuple[np.ndarray, np.ndarray]:
    """(z, y, x) HU volume from air to bone, and labels 2 and 5 (not consecutive on purpose)."""
    ct = np.full(SHAPE_ZYX, -1000, dtype=np.int16)
    ct[:, 2:18, 2:22] = 40  # soft tissue
    ct[:, 0, 0] = 1000  # bone: the volume reaches both window bounds
    label = np.zeros(SHAPE_ZYX, dtype=np.uint8)
    label[1:4, 3:7, 5:11] = 5  # z 1..3, y 3..6, x 5..10
    label[2:6, 12:16, 14:20] = 2  # z 2..5, y 12..15, x 14..19
    return ct, label


def _write_nifti(tmp_path, image_kw=None, label_kw=None, label_array=None):
    ct, label = _ct_and_label()
    sitk.WriteImage(_sitk(ct, **(image_kw or {})), str(tmp_path / "case7.nii.gz"))
    sitk.WriteImage(_sitk(label if label_array is None else label_array, **(label_kw or {})),
                    str(tmp_path / "case7_label.nii.gz"))
    return tmp_path / "case7.nii.gz", tmp_path / "case7_label.nii.gz"


def test_nifti_ct_geometry_spacing_boxes_and_window(tmp_path, capsys):
    image, label = _write_nifti(tmp_path)
    out = tmp_path / "out"
    assert converters.main(["nifti", str(image), str(label), "-o", str(out), "--modality", "CT"]) == 0
    assert "3DBox_CT_case7" in capsys.readouterr().out
    with np.load(out / "imgs" / "3DBox_CT_case7.npz") as f, np.load(out / "gts" / "3DBox_CT_case7.npz") as g:
        assert set(f.files) == {"imgs", "boxes", "spacing"} and set(g.files) == {"gts", "spacing"}
        imgs, boxes, spacing, gts = f["imgs"], f["boxes"], f["spacing"], g["gts"]
        assert np.array_equal(g["spacing"], spacing)
    assert imgs.shape == SHAPE_ZYX and imgs.dtype == np.uint8 and gts.shape == SHAPE_ZYX
    # Spacing in the arrays' (z, y, x) order, i.e. GetSpacing() reversed.
    assert spacing.tolist() == pytest.approx([2.5, 0.8, 0.7])
    # Labels 2 and 5 become 1 and 2 (increasing id order); boxes [x0, y0, z0, x1, y1, z1].
    assert set(np.unique(gts)) == {0, 1, 2}
    assert boxes.tolist() == [[14, 12, 2, 19, 15, 5], [5, 3, 1, 10, 6, 3]]
    # Abdomen window WL 40 / WW 400 over data spanning it: -1000 -> 0, 1000 -> 255, 40 -> 127.
    assert imgs[0, 1, 1] == 0 and imgs[0, 0, 0] == 255 and imgs[0, 5, 5] == 127


def test_spacing_order_xyz_for_medsam_compatibility(tmp_path):
    image, label = _write_nifti(tmp_path)
    assert converters.main(["nifti", str(image), str(label), "-o", str(tmp_path / "o"), "--modality", "CT",
                            "--spacing_order", "xyz", "--name", "legacy"]) == 0
    with np.load(tmp_path / "o" / "gts" / "legacy.npz") as g:
        assert g["spacing"].tolist() == pytest.approx(list(SPACING_XYZ))


def test_windowing_and_percentile_clipping():
    hu = np.array([-1000, -160, 40, 240, 1000], dtype=np.int16)
    assert window_ct(hu, 40, 400).tolist() == [0, 0, 127, 255, 255]
    # Lung window [-1350, 150]: the data never reach -1350, and like MedSAM the rescale uses the
    # clipped data's own min (-1000), not the window bound: (x + 1000) / 1150 * 255, truncated.
    assert window_ct(hu, -600, 1500).tolist() == [0, 186, 230, 255, 255]
    mr = np.zeros(1000, dtype=np.float32)
    mr[1:] = np.linspace(1, 999, 999)
    mr[-1] = 1e6  # an outlier above the 99.5th percentile is clipped, not used as the maximum
    out = percentile_clip(mr)
    # positive voxels 1..998 and 1e6 (999 of them); linear percentiles at 0.005 * 998 = 4.99 and
    # 0.995 * 998 = 993.01: 5 + 0.99 = 5.99 and 994 + 0.01 = 994.01; (v - 5.99) / 988.02 * 255, truncated
    idx = [0, 1, 6, 100, 500, 900, 998, 999]
    assert out[idx].tolist() == [0, 0, 0, 24, 127, 230, 255, 255]
    # five positive values: percentiles 10 + 0.02 * 10 = 10.2 and 40 + 0.98 * 960 = 980.8; the 0 stays 0
    assert percentile_clip(np.array([0, 10, 20, 30, 40, 1000])).tolist() == [0, 0, 2, 5, 7, 255]
    assert percentile_clip(np.zeros((3, 3))).max() == 0


def test_mr_nifti_keeps_zero_background(tmp_path):
    mr = np.zeros(SHAPE_ZYX, dtype=np.float32)
    mr[:, 2:18, 2:22] = np.random.default_rng(0).uniform(100, 900, (SHAPE_ZYX[0], 16, 20))
    _, label = _ct_and_label()
    sitk.WriteImage(_sitk(mr), str(tmp_path / "mr.nii.gz"))
    sitk.WriteImage(_sitk(label), str(tmp_path / "mr_seg.nii.gz"))
    assert converters.main(["nifti", str(tmp_path / "mr.nii.gz"), str(tmp_path / "mr_seg.nii.gz"),
                            "-o", str(tmp_path / "o"), "--modality", "MR"]) == 0
    with np.load(tmp_path / "o" / "imgs" / "3DBox_MR_mr.npz") as f:
        imgs = f["imgs"]
    assert (imgs[mr == 0] == 0).all() and imgs.max() == 255 and imgs[mr > 0].min() == 0


@pytest.mark.parametrize("what, image_kw, label_kw", [
    ("spacing", {}, {"spacing": (0.7, 0.8, 3.0)}),
    ("origin", {}, {"origin": (10.0, -20.0, 35.0)}),
    ("direction", {}, {"direction": (1, 0, 0, 0, -1, 0, 0, 0, 1)}),
])
def test_geometry_mismatch_is_a_clear_error(tmp_path, capsys, what, image_kw, label_kw):
    image, label = _write_nifti(tmp_path, image_kw, label_kw)
    args = ["nifti", str(image), str(label), "-o", str(tmp_path / "o"), "--modality", "CT"]
    assert converters.main(args) == 1
    err = capsys.readouterr().err
    assert f"{what} (x, y, z)" in err or f"{what}:" in err
    assert "not on the same voxel grid" in err and not (tmp_path / "o").exists()
    # Only the size must match when the check is switched off.
    assert converters.main(args + ["--no_geometry_check"]) == 0


def test_size_mismatch_and_non_label_volumes(tmp_path):
    ct, label = _ct_and_label()
    image = converters.read_volume(_write_nifti(tmp_path)[0])
    sitk.WriteImage(_sitk(label[:, :10]), str(tmp_path / "small.nii.gz"))
    with pytest.raises(GeometryError, match=r"size \(x, y, z\): image \(24, 20, 6\) vs label \(24, 10, 6\)"):
        converters.convert_volume(image, converters.read_volume(tmp_path / "small.nii.gz"), "CT")
    sitk.WriteImage(_sitk(ct.astype(np.float32) + 0.5), str(tmp_path / "float.nii.gz"))
    with pytest.raises(ValueError, match="not integers"):
        converters.convert_volume(image, converters.read_volume(tmp_path / "float.nii.gz"), "CT")
    sitk.WriteImage(_sitk(np.zeros(SHAPE_ZYX, np.uint8)), str(tmp_path / "empty.nii.gz"))
    with pytest.raises(ValueError, match="no foreground"):
        converters.convert_volume(image, converters.read_volume(tmp_path / "empty.nii.gz"), "CT")


def test_instances_min_size_and_seeded_jitter(tmp_path):
    _, label = _ct_and_label()
    label[5, 0:2, 0:2] = 5  # a second, separate component of label 5 (4 voxels)
    image, label_path = _write_nifti(tmp_path, label_array=label)
    vol, lab = converters.read_volume(image), converters.read_volume(label_path)
    per_label = converters.convert_volume(vol, lab, "CT")
    assert len(per_label.boxes) == 2 and per_label.boxes[1].tolist() == [0, 0, 1, 10, 6, 5]
    inst = converters.convert_volume(vol, lab, "CT", instances=True)
    assert len(inst.boxes) == 3 and inst.source_ids.tolist() == [2, 5, 5]
    assert converters.convert_volume(vol, lab, "CT", instances=True, min_size=5).source_ids.tolist() == [2, 5]
    a = converters.convert_volume(vol, lab, "CT", jitter=2, seed=1)
    b = converters.convert_volume(vol, lab, "CT", jitter=2, seed=1)
    assert np.array_equal(a.boxes, b.boxes) and np.abs(a.boxes - per_label.boxes).max() <= 2
    assert np.array_equal(a.boxes[:, [2, 5]], per_label.boxes[:, [2, 5]])  # z range untouched


def test_dicom_series_with_modality_from_the_tag(tmp_path, capsys):
    ct, label = _ct_and_label()
    folder = write_dicom_series(tmp_path / "series1", ct)
    vol = read_dicom_series(folder)
    assert vol.modality == "CT" and vol.array.shape == SHAPE_ZYX and np.array_equal(vol.array, ct)
    assert vol.spacing_xyz == pytest.approx(SPACING_XYZ) and vol.origin_xyz == pytest.approx(ORIGIN_XYZ)
    sitk.WriteImage(_sitk(label), str(tmp_path / "seg.nii.gz"))
    out = tmp_path / "o"
    assert converters.main(["dicom", str(folder), str(tmp_path / "seg.nii.gz"), "-o", str(out)]) == 0
    assert "spacing (zyx) 2.5, 0.8, 0.7 mm" in capsys.readouterr().out
    with np.load(out / "imgs" / "3DBox_CT_series1.npz") as f:
        assert f["imgs"].shape == SHAPE_ZYX and f["boxes"].shape == (2, 6)
        # the tag's CT gets the abdomen window (by hand: -1000 -> 0, 40 -> 127, 1000 -> 255)
        assert (f["imgs"][0, 1, 1], f["imgs"][0, 5, 5], f["imgs"][0, 0, 0]) == (0, 127, 255)
        assert f["spacing"].tolist() == pytest.approx([2.5, 0.8, 0.7])
    # A label on another grid (shifted origin) is refused.
    sitk.WriteImage(_sitk(label, origin=(0.0, 0.0, 0.0)), str(tmp_path / "seg_bad.nii.gz"))
    assert converters.main(["dicom", str(folder), str(tmp_path / "seg_bad.nii.gz"), "-o", str(out)]) == 1
    assert "origin (x, y, z)" in capsys.readouterr().err


def test_dicom_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no DICOM series"):
        read_dicom_series(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        read_dicom_series(tmp_path / "missing")


def _rgb_and_mask(tmp_path, h=40, w=50):
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 120, 30
    mask = np.zeros((h, w), np.uint8)
    mask[5:12, 4:15] = 255  # one "object" value, two separate blobs
    mask[25:35, 30:45] = 255
    cv2.imwrite(str(tmp_path / "photo.png"), rgb[:, :, ::-1])  # OpenCV writes BGR
    cv2.imwrite(str(tmp_path / "photo_mask.png"), mask)
    return tmp_path / "photo.png", tmp_path / "photo_mask.png"


def test_png_image_and_mask(tmp_path):
    image, mask = _rgb_and_mask(tmp_path)
    out = tmp_path / "o"
    assert converters.main(["image", str(image), str(mask), "-o", str(out), "--modality", "Dermoscopy"]) == 0
    with np.load(out / "imgs" / "2DBox_Dermoscopy_photo.npz") as f, \
            np.load(out / "gts" / "2DBox_Dermoscopy_photo.npz") as g:
        assert set(f.files) == {"imgs", "boxes"} and set(g.files) == {"gts"}
        assert f["imgs"].shape == (40, 50, 3) and f["imgs"][0, 0].tolist() == [200, 120, 30]  # RGB order
        assert f["boxes"].tolist() == [[4, 5, 44, 34]]  # one label value: one box around both blobs
        assert set(np.unique(g["gts"])) == {0, 1}
    assert converters.main(["image", str(image), str(mask), "-o", str(out), "--modality", "Dermoscopy",
                            "--instances", "--name", "inst"]) == 0
    with np.load(out / "imgs" / "inst.npz") as f:
        assert f["boxes"].tolist() == [[4, 5, 14, 11], [30, 25, 44, 34]]


def test_grey_16bit_image_colour_mask_and_size_mismatch(tmp_path):
    grey16 = (np.arange(30 * 40, dtype=np.uint16).reshape(30, 40) * 50)
    cv2.imwrite(str(tmp_path / "xr.png"), grey16)
    colour = np.zeros((30, 40, 3), np.uint8)
    colour[2:6, 3:9] = (0, 0, 255)  # red in BGR
    colour[10:20, 20:30] = (0, 255, 0)
    cv2.imwrite(str(tmp_path / "xr_mask.png"), colour)
    case = converters.convert_image(tmp_path / "xr.png", tmp_path / "xr_mask.png")
    assert case.imgs.dtype == np.uint8 and case.imgs.shape == (30, 40, 3) and case.imgs.max() == 255
    assert (case.imgs[..., 0] == case.imgs[..., 2]).all()
    assert sorted(case.boxes.tolist()) == [[3, 2, 8, 5], [20, 10, 29, 19]]
    cv2.imwrite(str(tmp_path / "small_mask.png"), np.zeros((30, 39), np.uint8))
    with pytest.raises(GeometryError, match="30x40 .* 30x39"):
        converters.convert_image(tmp_path / "xr.png", tmp_path / "small_mask.png")
    with pytest.raises(ValueError, match="cannot read"):
        converters.convert_image(tmp_path / "missing.png", tmp_path / "xr_mask.png")


def test_training_format_output(tmp_path):
    image, label = _write_nifti(tmp_path)
    assert converters.main(["nifti", str(image), str(label), "-o", str(tmp_path / "train"),
                            "--modality", "CT", "--training", "--name", "CT_Mine_0001"]) == 0
    assert os.listdir(tmp_path / "train") == ["CT_Mine_0001.npz"]
    with np.load(tmp_path / "train" / "CT_Mine_0001.npz") as f:
        assert set(f.files) == {"imgs", "gts", "spacing"} and f["imgs"].shape == f["gts"].shape


def _tree(folder) -> dict:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_name_collision_is_an_error_and_nothing_is_overwritten(tmp_path, capsys):
    image, label = _write_nifti(tmp_path)
    out = tmp_path / "o"
    args = ["nifti", str(image), str(label), "-o", str(out), "--modality", "CT"]
    assert converters.main(args) == 0
    before = _tree(out)
    capsys.readouterr()
    # the same default name (the input stem) again, e.g. two DICOM folders both called "series"
    assert converters.main(args + ["--window", "lung"]) == 1
    err = capsys.readouterr().err
    assert "3DBox_CT_case7.npz already exist" in err and "nothing was written" in err
    assert _tree(out) == before
    # only one of the pair taken: still refused, and the free half is not written either
    (out / "imgs" / "3DBox_CT_case7.npz").unlink()
    assert converters.main(args) == 1
    assert not (out / "imgs" / "3DBox_CT_case7.npz").exists()
    # the training layout refuses a taken name too
    assert converters.main(args + ["--training", "--name", "t1"]) == 0
    assert converters.main(args + ["--training", "--name", "t1"]) == 1


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", ".hidden", "/abs/x", ""])
def test_case_name_must_be_a_plain_file_name(tmp_path, capsys, name):
    image, label = _write_nifti(tmp_path)
    out = tmp_path / "deep" / "o"
    assert converters.main(["nifti", str(image), str(label), "-o", str(out), "--modality", "CT",
                            "--name", name]) == 1
    assert "not a plain file name" in capsys.readouterr().err
    assert not (tmp_path / "deep").exists() and not (tmp_path / "x.npz").exists()


def test_pair_is_written_together_or_not_at_all(tmp_path, monkeypatch):
    image, label = _write_nifti(tmp_path)
    case = converters.convert_volume(converters.read_volume(image), converters.read_volume(label), "CT")
    real = np.savez_compressed
    calls = []

    def fail_on_gts(path, **arrays):  # the imgs file is complete, then writing gts fails
        calls.append(path)
        if "gts" in arrays:
            raise OSError("disk full")
        real(path, **arrays)

    monkeypatch.setattr(converters.np, "savez_compressed", fail_on_gts)
    with pytest.raises(OSError, match="disk full"):
        converters.write_converted(case, tmp_path / "o", "pair")
    assert len(calls) == 2 and _tree(tmp_path / "o") == {}  # no imgs half, no temporary left
    monkeypatch.setattr(converters.np, "savez_compressed", real)
    paths = converters.write_converted(case, tmp_path / "o", "pair")
    assert [p.relative_to(tmp_path / "o").as_posix() for p in paths] == ["imgs/pair.npz", "gts/pair.npz"]
    assert sorted(_tree(tmp_path / "o")) == ["gts/pair.npz", "imgs/pair.npz"]
