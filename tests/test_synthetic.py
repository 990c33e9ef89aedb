"""Synthetic cases: the challenge formats (keys, shapes, dtypes), boxes that match the labels,
contrast that makes a box prompt meaningful, and determinism."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from daftseg.data import synthetic
from daftseg.data.synthetic import PREFIXES, PREFIXES_2D, PREFIXES_3D, STYLES, make_case
from daftseg.io.label_boxes import boxes_from_labels, instance_labels, jitter_boxes, relabel_consecutive

SMALL = 64  # in-plane cap used by the tests: every case renders in milliseconds

# Every modality the routing table knows (spec §7.3), as the challenge spells case names.
ROUTED_PREFIXES = {"2DBox_X-Ray", "2DBox_US", "2DBox_Fundus", "2DBox_Endoscopy", "2DBox_Dermoscopy",
                   "2DBox_Microscope", "2DBox_Mammography", "2DBox_OCT", "2DBox_CT", "2DBox_MR",
                   "3DBox_CT", "3DBox_MR", "3DBox_PET"}


def test_every_routed_modality_has_a_style():
    assert set(PREFIXES) == ROUTED_PREFIXES
    assert all(len(STYLES[p].shape) == 2 for p in PREFIXES_2D)
    assert all(len(STYLES[p].shape) == 3 and STYLES[p].spacing for p in PREFIXES_3D)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_case_format_and_boxes(prefix):
    case = make_case(prefix, seed=7, size=SMALL)
    n = len(case.boxes)
    assert n >= 1 and case.boxes.dtype == np.int64
    assert case.imgs.dtype == np.uint8
    assert np.issubdtype(case.gts.dtype, np.unsignedinteger)
    assert set(np.unique(case.gts)) == set(range(n + 1))  # labels exactly 0..N
    if prefix.startswith("2D"):
        h, w = case.imgs.shape[:2]
        assert case.imgs.shape == (h, w, 3) and case.gts.shape == (h, w)
        assert max(h, w) <= SMALL and case.boxes.shape == (n, 4) and case.spacing is None
        if len(STYLES[prefix].background) == 1:  # grey modalities: three equal channels
            assert (case.imgs[..., 0] == case.imgs[..., 1]).all() and (case.imgs[..., 1] == case.imgs[..., 2]).all()
    else:
        d, h, w = case.imgs.shape
        assert case.gts.shape == (d, h, w) and case.boxes.shape == (n, 6)
        assert case.spacing.shape == (3,) and case.spacing.dtype == np.float64 and (case.spacing > 0).all()
    # Box i-1 is the tight extent of label i; every label pixel lies inside its box.
    assert np.array_equal(case.boxes, boxes_from_labels(case.gts))
    half = case.boxes.shape[1] // 2
    for i, box in enumerate(case.boxes, start=1):
        coords = np.argwhere(case.gts == i)[:, ::-1]  # (x, y[, z])
        assert (coords.min(0) == box[:half]).all() and (coords.max(0) == box[half:]).all()


@pytest.mark.parametrize("prefix", PREFIXES_2D + ("3DBox_CT",))
def test_objects_contrast_with_their_surroundings(prefix):
    """Inside each object vs a ring just outside it: the difference a box prompt relies on."""
    case = make_case(prefix, seed=3, size=128)
    grey = case.imgs.astype(np.float32)
    grey = grey.mean(axis=2) if grey.ndim == 3 and grey.shape[2] == 3 else grey
    kernel = np.ones((5, 5), np.uint8)
    for i in range(1, len(case.boxes) + 1):
        obj = case.gts == i
        if case.gts.ndim == 3:  # the object's middle slice, where 3D inference starts
            z = int(np.argwhere(obj)[:, 0].mean())
            obj, image, others = obj[z], grey[z], case.gts[z] > 0
        else:
            image, others = grey, case.gts > 0
        ring = (cv2.dilate(obj.astype(np.uint8), kernel, iterations=2) > 0) & ~others
        if obj.sum() < 12 or ring.sum() < 12:
            continue
        assert abs(image[obj].mean() - image[ring].mean()) > 15, (prefix, i)


def test_deterministic_and_seed_dependent():
    a = make_case("3DBox_MR", seed=11, size=48)
    b = make_case("3DBox_MR", seed=11, size=48)
    c = make_case("3DBox_MR", seed=12, size=48)
    assert np.array_equal(a.imgs, b.imgs) and np.array_equal(a.gts, b.gts) and np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.imgs, c.imgs)
    # A case does not depend on which other cases were generated before it.
    make_case("2DBox_US", seed=11, size=48)
    assert np.array_equal(make_case("3DBox_MR", seed=11, size=48).imgs, a.imgs)


def test_realistic_size_and_scaling():
    shape, spacing, f = synthetic.scaled_geometry(STYLES["3DBox_CT"], None)
    assert shape == (100, 512, 512) and spacing == (2.5, 0.8, 0.8) and f == 1.0
    shape, spacing, f = synthetic.scaled_geometry(STYLES["3DBox_CT"], 128)
    assert shape == (25, 128, 128) and f == 0.25
    # The physical extent is kept: shape * spacing is unchanged.
    assert np.allclose(np.multiply(shape, spacing), np.multiply((100, 512, 512), (2.5, 0.8, 0.8)))
    # ``size`` is a cap: a case smaller than it keeps its realistic size.
    assert synthetic.scaled_geometry(STYLES["2DBox_MR"], 1024)[0] == (320, 320)


def test_written_files_have_the_challenge_keys(tmp_path):
    paths = synthetic.generate(tmp_path, ("2DBox_Fundus", "3DBox_PET"), per_prefix=2, seed=5, size=SMALL)
    names = sorted(p.name for p in paths)
    assert names == ["2DBox_Fundus_0001.npz", "2DBox_Fundus_0002.npz", "3DBox_PET_0001.npz", "3DBox_PET_0002.npz"]
    assert sorted(p.name for p in (tmp_path / "gts").iterdir()) == names
    with np.load(tmp_path / "imgs" / "2DBox_Fundus_0001.npz") as img, \
            np.load(tmp_path / "gts" / "2DBox_Fundus_0001.npz") as gt:
        assert set(img.files) == {"imgs", "boxes"} and set(gt.files) == {"gts"}
        assert gt["gts"].max() == len(img["boxes"])
    with np.load(tmp_path / "imgs" / "3DBox_PET_0001.npz") as img, \
            np.load(tmp_path / "gts" / "3DBox_PET_0001.npz") as gt:
        assert set(img.files) == {"imgs", "boxes", "spacing"} and set(gt.files) == {"gts", "spacing"}
        assert np.array_equal(img["spacing"], gt["spacing"])
        assert img["imgs"].shape == gt["gts"].shape


def test_cli_writes_every_modality_and_training_files(tmp_path, capsys):
    assert synthetic.main(["-o", str(tmp_path / "demo"), "--size", "48", "--seed", "1"]) == 0
    assert "wrote 13 challenge cases" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "demo" / "imgs").glob("*.npz")) == sorted(
        f"{p}_0001.npz" for p in PREFIXES)
    assert synthetic.main(["-o", str(tmp_path / "train"), "--size", "48", "--training",
                           "--prefixes", "2DBox_X-Ray,3DBox_CT,2DBox_CT,2DBox_Mammography"]) == 0
    files = sorted(p.name for p in (tmp_path / "train").glob("*.npz"))
    assert files == ["CT_Synthetic2D_0001.npz", "CT_Synthetic_0001.npz", "Mammo_Synthetic_0001.npz",
                     "XRay_Synthetic_0001.npz"]
    with np.load(tmp_path / "train" / "CT_Synthetic_0001.npz") as f:
        assert {"imgs", "gts"} <= set(f.files) and f["imgs"].shape == f["gts"].shape
    with pytest.raises(SystemExit):
        synthetic.main(["-o", str(tmp_path), "--prefixes", "2DBox_Nope"])


def test_box_jitter_stays_in_the_image():
    tight = make_case("2DBox_Microscope", seed=2, size=SMALL)
    loose = make_case("2DBox_Microscope", seed=2, size=SMALL, box_jitter=3)
    h, w = tight.gts.shape
    assert not np.array_equal(tight.boxes, loose.boxes)
    assert np.abs(tight.boxes - loose.boxes).max() <= 3
    assert (loose.boxes[:, [0, 2]] < w).all() and (loose.boxes[:, [1, 3]] < h).all() and (loose.boxes >= 0).all()
    assert (loose.boxes[:, 2] >= loose.boxes[:, 0]).all() and (loose.boxes[:, 3] >= loose.boxes[:, 1]).all()


def test_label_box_helpers():
    labels = np.zeros((4, 10, 12), dtype=np.uint8)
    labels[1:3, 2:5, 3:7] = 4
    labels[3, 8:10, 0:2] = 9
    relabelled, ids = relabel_consecutive(labels)
    assert ids.tolist() == [4, 9] and relabelled.max() == 2
    # (x_min, y_min, z_min, x_max, y_max, z_max)
    assert boxes_from_labels(relabelled).tolist() == [[3, 2, 1, 6, 4, 2], [0, 8, 3, 1, 9, 3]]
    with pytest.raises(ValueError, match="not consecutive"):
        boxes_from_labels(labels)
    two = np.zeros((3, 8, 8), dtype=np.uint8)
    two[0, 0:2, 0:2] = 1
    two[2, 5:7, 5:7] = 1  # same id, separate component
    assert instance_labels(two).max() == 2
    rng = np.random.default_rng(0)
    assert np.array_equal(jitter_boxes(boxes_from_labels(relabelled), labels.shape, 0, rng),
                          boxes_from_labels(relabelled))


def test_every_case_name_routes_by_its_own_prefix_rule():
    """Each synthetic name hits a ``startswith`` rule of daftseg/configs/modalities.toml, never the fallback."""
    from daftseg.inference import routing

    table = routing.RoutingTable.load()
    for prefix in PREFIXES:
        model, rule = table.match(synthetic.case_name(prefix, 1))
        assert model is not None and table.rules[rule - 1].kind == "startswith", prefix


def test_max_slices_caps_depth_and_keeps_extent():
    case = make_case("3DBox_CT", size=128, max_slices=12)
    assert case.imgs.shape[0] == 12
    assert case.gts.shape == case.imgs.shape
    # CT: 100 slices of 2.5 mm at the realistic size; the z extent stays 250 mm
    assert case.spacing[0] * 12 == pytest.approx(250.0)
    assert (case.boxes[:, 5] <= 12).all() and (case.boxes[:, 2] >= 0).all()
