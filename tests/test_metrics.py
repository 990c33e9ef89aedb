"""Hand-computed DSC / NSD cases and the challenge's per-case conventions (spec §8).

Surface areas below come from the geometry of the marching-cubes surface of a box of voxels,
not from the code under test: with cofactors c0 = s1*s2, c1 = s0*s2, c2 = s0*s1,
  - a box corner (1 voxel in the 2x2x2 block) cuts a triangle of area |(c0, c1, c2)| / 8,
  - a point inside a box edge along axis 0 (2 voxels) carries 1/2 * |(c1, c2)|,
  - a point inside a face normal to axis 2 (4 voxels) carries c2 (and likewise per axis).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from daftseg.metrics import (
    compute_surface_distances,
    dice_coefficient,
    label_ids,
    normalized_surface_dice,
    score_case,
    surface_dice_at_tolerance,
)


def cofactors(s):
    return s[1] * s[2], s[0] * s[2], s[0] * s[1]


def box_area(size, s):
    """Marching-cubes surface area of an (a, b, c)-voxel box with spacing s (see module doc)."""
    a, b, c = size
    c0, c1, c2 = cofactors(s)
    corner = math.sqrt(c0**2 + c1**2 + c2**2)  # 8 corners x 1/8
    edges = (2 * (a - 1) * math.sqrt(c1**2 + c2**2)  # 4 edges x 1/2 per inner point
             + 2 * (b - 1) * math.sqrt(c0**2 + c2**2)
             + 2 * (c - 1) * math.sqrt(c0**2 + c1**2))
    faces = 2 * ((b - 1) * (c - 1) * c0 + (a - 1) * (c - 1) * c1 + (a - 1) * (b - 1) * c2)
    return corner + edges + faces


def single_voxel(shape, at):
    m = np.zeros(shape, bool)
    m[at] = True
    return m


# ----------------------------------------------------------------------------- Dice


def test_dice_hand_values():
    gt = np.zeros((4, 4), bool)
    gt[:2] = True  # 8 voxels
    pred = np.zeros((4, 4), bool)
    pred[1:3] = True  # 8 voxels, 4 shared
    assert dice_coefficient(gt, pred) == pytest.approx(2 * 4 / 16)
    assert dice_coefficient(gt, gt) == 1.0
    assert dice_coefficient(gt, np.zeros_like(gt)) == 0.0
    assert math.isnan(dice_coefficient(np.zeros_like(gt), np.zeros_like(gt)))


# ----------------------------------------------------------------------------- surface areas


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 1.0, 2.0), (3.0, 0.7, 0.7)])
@pytest.mark.parametrize("size", [(1, 1, 1), (2, 2, 2), (3, 1, 2), (4, 5, 3)])
def test_box_surface_area_matches_geometry(size, spacing):
    m = np.zeros((8, 9, 7), bool)
    m[2:2 + size[0], 1:1 + size[1], 3:3 + size[2]] = True
    d = compute_surface_distances(m, m, spacing)
    assert d.surfel_areas_gt.sum() == pytest.approx(box_area(size, spacing), rel=1e-12)
    assert np.all(d.distances_gt_to_pred == 0)


@pytest.mark.parametrize("crop", [True, False])
def test_object_touching_the_border_is_closed(crop):
    """A box filling the whole array gets the same closed surface as one inside it."""
    s = (2.0, 0.5, 1.5)
    full = np.ones((3, 4, 2), bool)
    inner = np.zeros((7, 8, 6), bool)
    inner[2:5, 2:6, 2:4] = True
    a_full = compute_surface_distances(full, full, s, crop=crop).surfel_areas_gt.sum()
    a_inner = compute_surface_distances(inner, inner, s, crop=crop).surfel_areas_gt.sum()
    assert a_full == pytest.approx(box_area((3, 4, 2), s), rel=1e-12)
    assert a_inner == pytest.approx(a_full, rel=1e-12)
    assert normalized_surface_dice(full, full, s, crop=crop) == 1.0
    assert normalized_surface_dice(full, np.zeros_like(full), s, crop=crop) == 0.0
    # A prediction shifted by one voxel along axis 1 (0.5 mm) is fully within 2 mm.
    shifted = np.zeros_like(full)
    shifted[:, 1:] = True
    assert normalized_surface_dice(full, shifted, s, crop=crop) == 1.0


# ----------------------------------------------------------------------------- NSD, single voxels


@pytest.mark.parametrize("method", ["dilate", "edt"])
def test_single_voxels_isotropic(method):
    """Two single voxels d apart along axis 0: the 4 near corners are d-1 away, the far ones d."""
    shape = (12, 5, 5)
    gt = single_voxel(shape, (2, 2, 2))
    nsd = {d: normalized_surface_dice(gt, single_voxel(shape, (2 + d, 2, 2)), (1, 1, 1), 2.0, method=method)
           for d in range(6)}
    assert nsd[0] == 1.0
    assert nsd[1] == 1.0 and nsd[2] == 1.0  # distances 0/1 and 1/2 <= 2
    assert nsd[3] == pytest.approx(0.5)  # distances 2 (in) and 3 (out), equal areas
    assert nsd[4] == 0.0 and nsd[5] == 0.0


@pytest.mark.parametrize("method", ["dilate", "edt"])
def test_single_voxels_anisotropic(method):
    """Spacing 0.5 mm along axis 0: d voxels apart means corner distances 0.5 (d-1) and 0.5 d."""
    shape = (14, 4, 4)
    s = (0.5, 1.0, 3.0)
    gt = single_voxel(shape, (1, 1, 1))
    nsd = {d: normalized_surface_dice(gt, single_voxel(shape, (1 + d, 1, 1)), s, 2.0, method=method)
           for d in (4, 5, 6)}
    assert nsd[4] == 1.0  # 1.5 and 2.0 mm
    assert nsd[5] == pytest.approx(0.5)  # 2.0 and 2.5 mm
    assert nsd[6] == 0.0  # 2.5 and 3.0 mm
    # Along axis 2 (3 mm) even the neighbouring voxel is half out: distances 0 and 3 mm.
    nsd_z = normalized_surface_dice(gt, single_voxel(shape, (1, 1, 2)), s, 2.0, method=method)
    assert nsd_z == pytest.approx(0.5)


@pytest.mark.parametrize("method", ["dilate", "edt"])
@pytest.mark.parametrize("spacing,gap", [((1.0, 1.0, 1.0), 3), ((0.5, 1.0, 2.0), 5)])
def test_two_boxes_layers(spacing, gap, method):
    """2x2x2 boxes `gap` voxels apart along axis 0: each box surface point at layer i (0..2)
    is (gap - i) * s0 from the other surface; with tolerance 2 only the far layer is out."""
    gt = np.zeros((16, 6, 6), bool)
    gt[1:3, 2:4, 2:4] = True
    pred = np.zeros_like(gt)
    pred[1 + gap:3 + gap, 2:4, 2:4] = True
    assert (gap - 0) * spacing[0] > 2.0 >= (gap - 1) * spacing[0]
    c0, c1, c2 = cofactors(spacing)
    # End layer (i = 0 or 2): 4 corners, 2 points on edges along axis 1, 2 on edges along axis 2, 1 face point.
    end = (4 * math.sqrt(c0**2 + c1**2 + c2**2) / 8 + 2 * 0.5 * math.sqrt(c0**2 + c2**2)
           + 2 * 0.5 * math.sqrt(c0**2 + c1**2) + c0)
    # Middle layer (i = 1): 4 points on edges along axis 0, 2 face points normal to axis 2, 2 normal to axis 1.
    middle = 4 * 0.5 * math.sqrt(c1**2 + c2**2) + 2 * c2 + 2 * c1
    assert 2 * end + middle == pytest.approx(box_area((2, 2, 2), spacing))
    expected = (middle + end) / (2 * end + middle)
    assert normalized_surface_dice(gt, pred, spacing, 2.0, method=method) == pytest.approx(expected, rel=1e-12)
    d = compute_surface_distances(gt, pred, spacing)
    assert sorted(set(np.round(d.distances_gt_to_pred, 9))) == pytest.approx(
        [(gap - 2) * spacing[0], (gap - 1) * spacing[0], gap * spacing[0]])


def test_nsd_empty_masks():
    z = np.zeros((5, 5, 5), bool)
    one = single_voxel(z.shape, (2, 2, 2))
    assert math.isnan(normalized_surface_dice(z, z, (1, 1, 1)))
    assert normalized_surface_dice(one, z, (1, 1, 1)) == 0.0  # empty prediction
    assert normalized_surface_dice(z, one, (1, 1, 1)) == 0.0  # empty ground truth
    d = compute_surface_distances(one, z, (1, 1, 1))
    assert np.all(np.isinf(d.distances_gt_to_pred)) and d.distances_pred_to_gt.size == 0
    assert surface_dice_at_tolerance(d) == 0.0


# ----------------------------------------------------------------------------- case conventions


def test_case_3d_two_labels_anisotropic():
    """Label 1 perfect, label 2: the 2x2x2 boxes one gap apart as above, plus its DSC."""
    s = (0.5, 1.0, 2.0)
    gt = np.zeros((16, 6, 12), np.uint16)
    pred = np.zeros_like(gt)
    gt[1:5, 1:4, 1:4] = 1
    pred[1:5, 1:4, 1:4] = 1
    gt[2:4, 2:4, 7:9] = 2
    pred[3:5, 2:4, 7:9] = 2  # shifted by 1 voxel = 0.5 mm along axis 0: all within 2 mm
    score = score_case(gt, pred, s)
    assert score.labels == (1, 2)
    assert score.label_dsc == pytest.approx((1.0, 0.5))  # 4 of 8 voxels shared
    assert score.dsc == pytest.approx(0.75)
    assert score.label_nsd == pytest.approx((1.0, 1.0))
    assert score.nsd == pytest.approx(1.0)


def test_case_nsd_only_when_dsc_above_02():
    gt = np.zeros((10, 10, 10), np.uint8)
    gt[2:7, 2:4, 2:3] = 1  # 10 voxels
    pred = np.zeros_like(gt)
    pred[2, 2, 2] = 1  # dice = 2 / 11 < 0.2
    raw = normalized_surface_dice(gt == 1, pred == 1, (1, 1, 1))
    assert raw > 0.2
    score = score_case(gt, pred, (1, 1, 1))
    assert score.dsc == pytest.approx(2 / 11)
    assert score.nsd == 0.0


def test_case_empty_prediction_and_empty_gt():
    gt = np.zeros((6, 6, 6), np.uint8)
    gt[1:3, 1:3, 1:3] = 1
    empty = np.zeros_like(gt)
    s = score_case(gt, empty, (1, 1, 1))
    assert s.dsc == 0.0 and s.nsd == 0.0
    # Empty gt: no label to score -> NaN DSC (the challenge's mean of nothing) and NSD 0.
    for mode in ("all", "present"):
        e = score_case(empty, gt, (1, 1, 1), labels=mode)
        assert math.isnan(e.dsc) and e.nsd == 0.0 and e.labels == ()


def test_case_missing_label_id():
    """gt uses ids 1 and 3: id 2 is absent from both -> NaN with 'all', skipped with 'present'."""
    gt = np.zeros((8, 8, 8), np.uint8)
    gt[1:3, 1:3, 1:3] = 1
    gt[5:7, 5:7, 5:7] = 3
    pred = gt.copy()
    assert label_ids(gt).tolist() == [1, 2, 3]
    assert label_ids(gt, "present").tolist() == [1, 3]
    a = score_case(gt, pred, (1, 1, 1))
    assert a.labels == (1, 2, 3)
    assert a.label_dsc[0] == 1.0 and math.isnan(a.label_dsc[1]) and a.label_dsc[2] == 1.0
    assert math.isnan(a.dsc)
    assert a.nsd == 0.0  # NaN is not > 0.2: the challenge's NSD for such a case
    p = score_case(gt, pred, (1, 1, 1), labels="present")
    assert p.labels == (1, 3) and p.dsc == 1.0 and p.nsd == 1.0
    # A predicted id 2 that gt lacks counts as a wrong label with 'all' (Dice 0), not with 'present'.
    pred[0, 0, 0] = 2
    assert score_case(gt, pred, (1, 1, 1)).dsc == pytest.approx(2 / 3)
    assert score_case(gt, pred, (1, 1, 1), labels="present").dsc == 1.0


def test_case_predicted_labels_above_max_are_ignored():
    gt = np.zeros((6, 6, 6), np.uint8)
    gt[1:4, 1:4, 1:4] = 1
    pred = gt.copy()
    pred[5, 5, 5] = 7
    s = score_case(gt, pred, (1, 1, 1))
    assert s.labels == (1,) and s.dsc == 1.0 and s.nsd == 1.0


def test_case_2d_is_scored_as_one_slice_volume():
    """2D: pixels (5,5) in both, plus a predicted pixel (8,5). All gt corners are on the pred
    surface; pred's far pixel has 4 corners 2 px away (in) and 4 corners 3 px away (out); every
    corner of an isolated pixel in the (H, W, 1) volume has the same area."""
    gt = np.zeros((12, 10), np.uint8)
    gt[5, 5] = 1
    pred = gt.copy()
    pred[8, 5] = 1
    s = score_case(gt, pred, spacing=(9.0, 9.0, 9.0))  # ignored for 2D
    assert s.dsc == pytest.approx(2 / 3)
    assert s.nsd == pytest.approx((8 + 8 + 4) / 24)
    same = normalized_surface_dice(gt[..., None] == 1, pred[..., None] == 1, (1, 1, 1))
    assert s.nsd == same


def test_case_single_voxel_objects_and_nsd_switch():
    gt = np.zeros((5, 5, 5), np.uint8)
    gt[2, 2, 2] = 1
    s = score_case(gt, gt.copy(), (0.3, 0.3, 5.0))
    assert (s.dsc, s.nsd) == (1.0, 1.0)
    off = score_case(gt, gt.copy(), (0.3, 0.3, 5.0), nsd=False)
    assert off.dsc == 1.0 and math.isnan(off.nsd) and off.label_nsd is None


def test_case_shape_mismatch_and_missing_spacing_raise():
    with pytest.raises(ValueError, match="shape"):
        score_case(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="spacing"):
        score_case(np.ones((3, 3, 3), np.uint8), np.ones((3, 3, 3), np.uint8))
