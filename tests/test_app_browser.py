"""daftseg-app end to end in a real headless Chromium (Debian's package, driven by Playwright).

The test serves the app on a synthetic CT NIfTI and an RGB PNG, draws boxes with real mouse
events, types a slice range, propagates, checks the overlay's pixels on the canvas, saves (and
answers the overwrite question), and compares the saved label maps with ``daftseg-segment``'s for
the same boxes, voxel for voxel, and their headers with the scan's. Set DAFTSEG_APP_SCREENSHOT to a
path to keep a screenshot (docs/app.png is made this way).
"""

from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import SimpleITK as sitk
from browser_support import drag, open_scan, page, pixel, reference, screen, served  # noqa: F401 - fixtures
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture


def test_3d_draw_propagate_save_in_a_browser(page, served, tmp_path, toy_models_dir):  # noqa: F811
    data = served[1]
    open_scan(page, "ct.nii.gz")
    assert page.evaluate("daftApp.z") == 5
    page.mouse.move(*screen(page, 40, 5))
    page.mouse.wheel(0, -120)  # one slice down
    page.wait_for_function("daftApp.z === 4 && daftApp.overlayZ === 4")
    page.fill("#new-label", "4")
    page.fill("#new-name", "liver")
    drag(page, 6, 7, 25, 22)
    page.wait_for_function("daftApp.boxes.length === 1 && daftApp.overlay.data.some(v => v > 0)")
    assert page.evaluate("daftApp.boxes[0].coords") == [6, 7, 2, 25, 22, 6]  # drawn slice +-2
    page.fill(".box .zmin", "1")
    page.press(".box .zmin", "Tab")
    page.wait_for_function("daftApp.boxes[0].coords[2] === 1")
    page.fill(".box .zmax", "7")
    page.press(".box .zmax", "Tab")
    page.wait_for_function("daftApp.boxes[0].coords[5] === 7")
    page.click(".box .propagate")
    page.wait_for_function("document.getElementById('message').textContent.startsWith('propagated')", timeout=30000)

    page.fill("#output", "ct_seg.nii.gz")
    page.click("#save-btn")
    page.wait_for_function("document.getElementById('message').textContent.startsWith('saved')", timeout=30000)
    saved_path = data / "ct_seg.nii.gz"
    saved = sitk.ReadImage(str(saved_path))
    labels = sitk.GetArrayFromImage(saved)
    assert set(np.unique(labels)) == {0, 4} and labels[1:7].any(axis=(1, 2)).all() and not labels[7:].any()

    # the overlay on the canvas: tinted red where the mask is, grey elsewhere, on this and another slice
    for z in (4, 2):
        if z != page.evaluate("daftApp.z"):
            page.mouse.move(*screen(page, 40, 5))
            for _ in range(page.evaluate("daftApp.z") - z):  # one wheel step, one slice
                page.mouse.wheel(0, -120)
                page.wait_for_timeout(50)
            page.wait_for_function(f"daftApp.z === {z} && daftApp.overlayZ === {z}")
            page.wait_for_timeout(100)
        ys, xs = np.nonzero(labels[z])
        inside = pixel(page, int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
        outside = pixel(page, 45, 2)
        assert inside[0] - inside[1] > 60 and outside[0] == outside[1] == outside[2], (z, inside, outside)
    shot = tmp_path / "app.png"
    page.screenshot(path=str(shot))
    if os.environ.get("DAFTSEG_APP_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["DAFTSEG_APP_SCREENSHOT"])

    # saving again asks first; the test answers yes
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
    page.click("#save-btn")
    page.wait_for_function("document.getElementById('message').textContent.startsWith('saved')", timeout=30000)
    assert asked and "already exist" in asked[0]

    ref = reference(data, tmp_path, "ct.nii.gz", [{"box": [6, 7, 1, 25, 22, 7], "label": 4, "name": "liver"}],
                     "CT", toy_models_dir, "ref.nii.gz")
    assert np.array_equal(labels, sitk.GetArrayFromImage(sitk.ReadImage(str(ref))))
    scan = sitk.ReadImage(str(data / "ct.nii.gz"))
    assert saved.GetSize() == scan.GetSize() and np.allclose(saved.GetSpacing(), scan.GetSpacing())
    assert np.allclose(saved.GetOrigin(), scan.GetOrigin()) and np.allclose(saved.GetDirection(), scan.GetDirection())
    assert json.loads((data / "ct_seg.nii.gz.boxes.json").read_text())["boxes"] == [
        {"box": [6, 7, 1, 25, 22, 7], "label": 4, "name": "liver"}]


def test_2d_png_draw_and_save_in_a_browser(page, served, tmp_path, toy_models_dir):  # noqa: F811
    data = served[1]
    (data / "broken.png").write_bytes(b"\x89PNG not really")
    page.reload()  # the file list now has broken.png: opening it is a message, and the page goes on
    page.wait_for_function("document.querySelectorAll('#file-select option').length === 3")
    page.select_option("#file-select", "broken.png")
    page.click("#open-btn")
    page.wait_for_function("document.getElementById('message').className === 'error'")
    assert "broken.png" in page.inner_text("#message")
    open_scan(page, "photo.png", "Dermoscopy")
    page.fill("#new-label", "3")
    drag(page, 15, 10, 45, 40)
    page.wait_for_function("daftApp.boxes.length === 1 && daftApp.overlay.data.some(v => v > 0)")
    drag(page, 62, 50, 35, 25)  # dragged up-left: the same box as from (35, 25) to (62, 50)
    page.wait_for_function("daftApp.boxes.length === 2 && daftApp.overlay.data.some(v => v === 2)")

    def coords(k: int, expected: list[int]) -> None:
        want = json.dumps(expected, separators=(",", ":"))
        page.wait_for_function(f"JSON.stringify(daftApp.boxes[{k}].coords) === '{want}'", timeout=10000)

    drag(page, 50, 40, 53, 42)  # move box 2 (on top where the boxes overlap) by (+3, +2)
    coords(1, [38, 27, 65, 52])
    page.keyboard.press("Control+z")
    coords(1, [35, 25, 62, 50])
    page.mouse.move(*screen(page, 63, 51))  # box 2's bottom-right handle: resize
    page.mouse.down()
    page.mouse.move(*screen(page, 66.5, 53.5), steps=5)
    page.mouse.up()
    coords(1, [35, 25, 66, 53])
    page.keyboard.press("Control+z")
    coords(1, [35, 25, 62, 50])
    page.keyboard.press("Delete")  # the selected box
    page.wait_for_function("daftApp.boxes.length === 1")
    page.keyboard.press("Control+z")
    page.wait_for_function("daftApp.boxes.length === 2 && daftApp.overlay.data.some(v => v === 2)")
    coords(1, [35, 25, 62, 50])
    page.click("#save-btn")  # the default output name: photo_seg.png
    page.wait_for_function("document.getElementById('message').textContent.startsWith('saved')", timeout=30000)
    got = cv2.imread(str(data / "photo_seg.png"), cv2.IMREAD_UNCHANGED)
    ref = reference(data, tmp_path, "photo.png", [{"box": [15, 10, 45, 40], "label": 3},
                                                  {"box": [35, 25, 62, 50], "label": 4}],
                     "Dermoscopy", toy_models_dir, "ref.png")
    assert np.array_equal(got, cv2.imread(str(ref), cv2.IMREAD_UNCHANGED)) and set(np.unique(got)) == {0, 3, 4}
    ys, xs = np.nonzero(got == 4)
    tint = pixel(page, int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
    assert tint[1] > 150 and tint[0] < tint[1]  # the second box's green tint (#30c030) over the image

    page.set_input_files("#upload", str(data / "photo.png"))  # upload: stored under uploads/, then opened
    page.wait_for_function("document.getElementById('message').textContent === 'opened uploads/photo.png'")
    assert (data / "uploads" / "photo.png").read_bytes() == (data / "photo.png").read_bytes()
