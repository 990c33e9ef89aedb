"""The scan the right way up (issue 23, section 2), in a real browser: the same anatomy written LPS
(as DICOM), RAS (as dcm2niix) and with x and y swapped shows the same picture with the same
orientation letters; a box drawn at the same place on the screen lands on the same anatomy (each
file's own voxel indices, written out by hand below), and each saved label map equals
daftseg-segment's for the boxes the app saved."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk
from app_support import CT_SHAPE, synthetic_ct
from browser_support import open_scan, page, reference, screen, served  # noqa: F401 - fixtures
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture
from scan_writers import ORIGIN_XYZ, SPACING_XYZ, write_volume

D, H, W = CT_SHAPE  # 10, 40, 48
SX, SY, SZ = SPACING_XYZ
RAS_ORIGIN = (ORIGIN_XYZ[0] + (W - 1) * SX, ORIGIN_XYZ[1] + (H - 1) * SY, ORIGIN_XYZ[2])
AXIAL = {"left": "R", "right": "L", "top": "A", "bottom": "P"}
# the box dragged from voxel (6, 7) to (25, 22) of the LPS file, on slice 5 (+-2), in each file's indices
EXPECTED_BOXES = {
    "lps.nii.gz": [6, 7, 3, 25, 22, 7],
    "ras.nii.gz": [W - 1 - 25, H - 1 - 22, 3, W - 1 - 6, H - 1 - 7, 7],  # [22, 17, 3, 41, 32, 7]
    "swapped.nii.gz": [7, 6, 3, 22, 25, 7],
}


def write_three(data) -> None:
    ct = synthetic_ct()
    write_volume(data / "lps.nii.gz", ct)
    write_volume(data / "ras.nii.gz", np.ascontiguousarray(ct[:, ::-1, ::-1]), origin=RAS_ORIGIN,
                 direction=(-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    write_volume(data / "swapped.nii.gz", np.ascontiguousarray(ct.transpose(0, 2, 1)), spacing=(SY, SX, SZ),
                 direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))


def test_the_three_files_hold_the_same_anatomy(tmp_path):
    """The test's own premise, checked with SimpleITK: the same voxel value at the same world point."""
    write_three(tmp_path)
    images = {n: sitk.ReadImage(str(tmp_path / n)) for n in EXPECTED_BOXES}
    lps = images["lps.nii.gz"]
    for x, y, z in ((0, 0, 0), (6, 7, 3), (25, 22, 7), (47, 39, 9), (30, 12, 5)):
        point = lps.TransformIndexToPhysicalPoint((x, y, z))
        for name, image in images.items():
            index = image.TransformPhysicalPointToIndex(point)
            assert image[index] == lps[x, y, z], (name, (x, y, z))
    assert images["ras.nii.gz"].TransformPhysicalPointToIndex(lps.TransformIndexToPhysicalPoint((6, 7, 3))) == (41, 32, 3)
    assert images["swapped.nii.gz"].TransformPhysicalPointToIndex(lps.TransformIndexToPhysicalPoint((6, 7, 3))) == (7, 6, 3)


def _canvas(pg) -> str:
    return pg.evaluate("document.getElementById('canvas').toDataURL()")


def test_lps_ras_and_swapped_look_the_same_and_boxes_land_on_the_same_anatomy(
        page, served, tmp_path, toy_models_dir):  # noqa: F811
    data = served[1]
    write_three(data)
    page.reload()
    page.wait_for_function("document.querySelectorAll('#file-select option').length === 5")
    open_scan(page, "ct.nii.gz")  # the tests' rotated grid: as stored, and the page says so
    assert "shown as stored (oblique)" in page.inner_text("#scan-info")
    assert page.evaluate("daftApp.scan.view.edges") is None

    pictures, start, end = {}, None, None
    for name, box in EXPECTED_BOXES.items():
        open_scan(page, name)
        page.wait_for_function(f"daftApp.scan.path === '{name}' && daftApp.overlayZ === 5")
        assert page.evaluate("daftApp.scan.view.edges") == AXIAL and "axial view" in page.inner_text("#scan-info")
        page.wait_for_timeout(100)
        pictures[name] = _canvas(page)
        if start is None:  # the LPS file: the screen points of voxels (6, 7) and (25, 22)
            start, end = screen(page, 6.5, 7.5), screen(page, 25.5, 22.5)
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=6)
        page.mouse.up()
        page.wait_for_function("daftApp.boxes.length === 1 && daftApp.overlay.data.some(v => v > 0)")
        assert page.evaluate("daftApp.boxes[0].coords") == box, name
        page.fill("#output", name.replace(".nii.gz", "_seg.nii.gz"))
        page.click("#save-btn")
        page.wait_for_function("document.getElementById('message').textContent.startsWith('saved')", timeout=30000)
    assert pictures["ras.nii.gz"] == pictures["lps.nii.gz"] and pictures["swapped.nii.gz"] == pictures["lps.nii.gz"]

    for name, box in EXPECTED_BOXES.items():
        saved = data / name.replace(".nii.gz", "_seg.nii.gz")
        boxes_file = sorted(p for p in data.iterdir() if p.name.startswith(saved.name.split(".")[0])
                            and "boxes" in p.name)
        assert len(boxes_file) == 1, boxes_file
        (saved_box,) = json.loads(boxes_file[0].read_text())["boxes"]
        assert saved_box["box"] == box
        ref = reference(data, tmp_path, name, [saved_box], "CT", toy_models_dir, f"ref_{name}")
        got = sitk.GetArrayFromImage(sitk.ReadImage(str(saved)))
        assert np.array_equal(got, sitk.GetArrayFromImage(sitk.ReadImage(str(ref)))) and got.any(), name
