"""Agreement with DeepMind's ``surface-distance`` package (test-only dependency).

surface-distance 0.1 still uses ``np.Inf`` and ``np.NaN``, which NumPy 2 removed (hit when
one mask is empty); the ``numpy2_shim`` fixture puts them back only while a test runs.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import surface_distance  # the [dev] extra: if it is missing this module errors, it does not skip
from scipy import ndimage
from surface_distance import lookup_tables

from daftseg.metrics import (
    box_surface_dice,
    compute_surface_distances,
    neighbour_codes,
    normalized_surface_dice,
    score_case,
    surfel_area_table,
)

TOL = 2.0
# The package imports correlate / distance_transform_edt from SciPy's deprecated namespaces.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def numpy2_shim(monkeypatch):
    monkeypatch.setattr(np, "Inf", np.inf, raising=False)
    monkeypatch.setattr(np, "NaN", np.nan, raising=False)


def reference_nsd(gt: np.ndarray, pred: np.ndarray, spacing) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 when both masks are empty
        d = surface_distance.compute_surface_distances(gt, pred, spacing_mm=spacing)
        return float(surface_distance.compute_surface_dice_at_tolerance(d, TOL))


def reference_case(gt, pred, spacing, labels):
    """The challenge's compute_metrics per case, on the package (labels given explicitly)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if gt.ndim == 2:
            gt, pred, spacing = gt[..., None], pred[..., None], [1.0, 1.0, 1.0]
        dsc = float(np.mean([surface_distance.compute_dice_coefficient(gt == i, pred == i) for i in labels]))
        if not dsc > 0.2:
            return dsc, 0.0, None
        per = [reference_nsd(gt == i, pred == i, spacing) for i in labels]
        return dsc, float(np.mean(per)), per


def random_mask(rng, shape, smooth):
    """Blobby or speckled random mask; sometimes touching the array border."""
    noise = rng.random(shape)
    if smooth:
        noise = ndimage.uniform_filter(noise, size=3)
    return noise > np.quantile(noise, rng.uniform(0.5, 0.95))


def random_pair(rng):
    shape = tuple(int(n) for n in rng.integers(4, 22, size=3))
    gt = random_mask(rng, shape, smooth=bool(rng.integers(2)))
    kind = rng.integers(4)
    if kind == 0:  # noisy copy
        pred = gt ^ (rng.random(shape) < rng.uniform(0.02, 0.2))
    elif kind == 1:  # shifted copy
        pred = np.roll(gt, tuple(int(k) for k in rng.integers(-3, 4, size=3)), axis=(0, 1, 2))
    elif kind == 2:  # unrelated
        pred = random_mask(rng, shape, smooth=True)
    else:  # eroded
        pred = ndimage.binary_erosion(gt)
    return gt, pred


def random_spacing(rng):
    return tuple(float(x) for x in rng.uniform(0.25, 3.0, size=3))


# ----------------------------------------------------------------------------- building blocks


def test_area_table_matches_package_for_all_codes():
    rng = np.random.default_rng(0)
    spacings = [(1.0, 1.0, 1.0), (0.5, 0.5, 5.0), (2.5, 0.7, 0.7)] + [random_spacing(rng) for _ in range(20)]
    for s in spacings:
        ours = surfel_area_table(s)
        ref = lookup_tables.create_table_neighbour_code_to_surface_area(s)
        np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=0)
    assert surfel_area_table((1, 1, 1))[0] == 0 and surfel_area_table((1, 1, 1))[255] == 0


def test_area_table_spacing_as_float32_array():
    s32 = np.array([0.7, 1.3, 2.9], np.float32)
    ref = lookup_tables.create_table_neighbour_code_to_surface_area(s32)
    np.testing.assert_allclose(surfel_area_table(s32), ref, rtol=1e-13)


def test_neighbour_codes_match_package_correlation():
    rng = np.random.default_rng(1)
    for _ in range(10):
        m = rng.random(tuple(rng.integers(1, 9, size=3))) > 0.5
        padded = np.zeros(np.array(m.shape) + 1, np.uint8)
        padded[:-1, :-1, :-1] = m  # the package's crop layout: one zero at the high end
        ref = ndimage.correlate(padded, lookup_tables.ENCODE_NEIGHBOURHOOD_3D_KERNEL, mode="constant", cval=0)
        np.testing.assert_array_equal(neighbour_codes(m), ref)


def test_surface_distances_match_package():
    rng = np.random.default_rng(2)
    for _ in range(15):
        gt, pred = random_pair(rng)
        s = random_spacing(rng)
        ours = compute_surface_distances(gt, pred, s)
        ref = surface_distance.compute_surface_distances(gt, pred, spacing_mm=s)
        # The package sorts by (distance, area); ours keeps position order.
        for dist, area, rdist, rarea in [
            (ours.distances_gt_to_pred, ours.surfel_areas_gt, ref["distances_gt_to_pred"], ref["surfel_areas_gt"]),
            (ours.distances_pred_to_gt, ours.surfel_areas_pred, ref["distances_pred_to_gt"], ref["surfel_areas_pred"]),
        ]:
            order = np.lexsort((area, dist))
            np.testing.assert_array_equal(dist[order], rdist)
            np.testing.assert_allclose(area[order], rarea, rtol=1e-13)


# ----------------------------------------------------------------------------- NSD agreement


def test_nsd_matches_package_on_random_masks():
    rng = np.random.default_rng(3)
    diffs = []
    for _ in range(60):
        gt, pred = random_pair(rng)
        s = random_spacing(rng)
        ref = reference_nsd(gt, pred, s)
        for method in ("dilate", "edt"):
            ours = normalized_surface_dice(gt, pred, s, TOL, method=method)
            assert math.isnan(ours) == math.isnan(ref)
            if not math.isnan(ref):
                diffs.append(abs(ours - ref))
    print(f"\nmax |NSD ours - surface-distance| over {len(diffs)} values: {max(diffs):.3g}")
    assert max(diffs) <= 1e-6


@pytest.mark.parametrize("spacing", [(0.4, 0.4, 0.4), (0.4, 0.4, 2.0), (2 / 3, 2 / 3, 2 / 3), (0.6, 0.6, 0.6)])
def test_nsd_matches_package_on_tie_prone_spacings(spacing):
    """Spacings where several grid offsets lie at exactly 2 mm in real arithmetic (3-4-5
    triangles at 0.4 mm, ...), so the float rounding of each distance decides in or out."""
    rng = np.random.default_rng(int(spacing[2] * 100))
    for _ in range(8):
        shape = tuple(int(n) for n in rng.integers(10, 22, size=3))
        gt = random_mask(rng, shape, smooth=True)
        pred = gt ^ (rng.random(shape) < 0.05) if rng.integers(2) else random_mask(rng, shape, smooth=True)
        ref = reference_nsd(gt, pred, spacing)
        for method in ("dilate", "edt"):
            assert abs(normalized_surface_dice(gt, pred, spacing, TOL, method=method) - ref) <= 1e-6


def test_crop_gives_identical_values_to_uncropped():
    rng = np.random.default_rng(4)
    for _ in range(30):
        shape = (20, 24, 18)
        gt = np.zeros(shape, bool)
        pred = np.zeros(shape, bool)
        # objects somewhere inside, sometimes touching the array border
        lo = rng.integers(0, 8, size=3)
        hi = lo + rng.integers(2, 11, size=3)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        gt[box] = rng.random(gt[box].shape) > 0.3
        pred[box] = gt[box] ^ (rng.random(gt[box].shape) > 0.85)
        s = random_spacing(rng)
        values = {(m, c): normalized_surface_dice(gt, pred, s, TOL, method=m, crop=c)
                  for m in ("dilate", "edt") for c in (True, False)}
        assert len(set(values.values())) == 1, values
        full = compute_surface_distances(gt, pred, s, crop=False)
        cropped = compute_surface_distances(gt, pred, s, crop=True)
        for a, b in zip(full, cropped):
            np.testing.assert_array_equal(a, b)


def test_box_surface_dice_any_enclosing_box():
    """A crop larger than the union box (with or without margin) changes nothing."""
    rng = np.random.default_rng(5)
    gt, pred = random_pair(rng)
    s = (0.8, 1.1, 2.3)
    tight = normalized_surface_dice(gt, pred, s)
    padded = box_surface_dice(np.pad(gt, 3), np.pad(pred, 3), s)
    assert padded == tight


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("labels", ["all", "present"])
def test_multilabel_cases_match_challenge_reference(ndim, labels):
    rng = np.random.default_rng(6 + ndim)
    max_diff = 0.0
    for _ in range(6):
        shape = tuple(int(n) for n in rng.integers(8, 20, size=ndim))
        gt = np.zeros(shape, np.uint16)
        for lab in rng.permutation(np.arange(1, 5))[: rng.integers(1, 5)]:
            gt[random_mask(rng, shape, smooth=True)] = lab
        pred = gt.copy()
        pred[rng.random(shape) < 0.1] = rng.integers(0, 6)  # noise, incl. ids above max(gt)
        if rng.random() < 0.3:
            pred = np.roll(pred, 1, axis=0)
        s = random_spacing(rng) if ndim == 3 else None
        ours = score_case(gt, pred, s, labels=labels)
        ids = list(range(1, int(gt.max()) + 1)) if labels == "all" else sorted(set(np.unique(gt)) - {0})
        dsc, nsd, per = reference_case(gt, pred, s, ids)
        assert list(ours.labels) == ids
        np.testing.assert_allclose(ours.dsc, dsc, rtol=0, atol=1e-12, equal_nan=True)
        np.testing.assert_allclose(ours.nsd, nsd, rtol=0, atol=1e-6, equal_nan=True)
        if per is not None:
            np.testing.assert_allclose(ours.label_nsd, per, rtol=0, atol=1e-6, equal_nan=True)
            max_diff = max(max_diff, float(np.nanmax(np.abs(np.subtract(ours.label_nsd, per)))))
    assert max_diff <= 1e-6
