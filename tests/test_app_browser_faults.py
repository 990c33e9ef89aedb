"""What a user met in the app in a real browser (issue 23, section 1), each as that user does it:
the modality chosen before an upload, the controls after a failed upload, the status line with a
long side bar, a box drawn inside another box."""

from __future__ import annotations

import shutil

from browser_support import drag, open_scan, page, screen, served  # noqa: F401 - fixtures
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture

MESSAGE = "document.getElementById('message')"


def _value(pg, selector: str) -> str:
    return pg.eval_on_selector(selector, "e => e.value")


def _shown_option(pg, selector: str) -> str:
    return pg.eval_on_selector(selector, "e => e.options[e.selectedIndex].text")


def test_the_modality_chosen_before_an_upload_is_the_one_used(page, served, tmp_path):  # noqa: F811
    page.wait_for_function("document.querySelectorAll('#modality option').length > 1")
    page.select_option("#modality", "MR")
    upload = tmp_path / "scan.nii.gz"
    shutil.copyfile(served[1] / "ct.nii.gz", upload)
    page.set_input_files("#upload", str(upload))
    page.wait_for_function(f"{MESSAGE}.textContent === 'opened uploads/scan.nii.gz'", timeout=20000)
    assert "modality MR" in page.inner_text("#scan-info")
    assert page.evaluate("daftApp.scan.modality") == "MR" and _value(page, "#modality") == "MR"
    assert _value(page, "#window") == "range"  # MR is not windowed like CT
    assert page.evaluate("daftApp.scan.route.name") == "3DBox_MR"


def test_after_a_failed_upload_the_controls_describe_the_scan_shown(page, served, tmp_path):  # noqa: F811
    open_scan(page, "ct.nii.gz")
    assert _value(page, "#window") == "abdomen" and _value(page, "#modality") == "CT"
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a NIfTI file at all")
    page.set_input_files("#upload", str(broken))
    page.wait_for_function(f"{MESSAGE}.className === 'error'", timeout=20000)
    assert "broken.nii.gz" in page.inner_text("#message")
    # the CT is still on screen, and every control says so
    assert page.evaluate("daftApp.scan.path") == "ct.nii.gz"
    assert _value(page, "#file-select") == "ct.nii.gz"
    assert _value(page, "#modality") == "CT" and _shown_option(page, "#modality") == "CT"
    assert _value(page, "#window") == "abdomen" and _shown_option(page, "#window").startswith("abdomen")
    # the failed file is listed (it was uploaded) but not selected
    assert page.evaluate("[...document.querySelectorAll('#file-select option')].some(o => "
                         "o.value === 'uploads/broken.nii.gz')")


def _fully_visible(pg, selector: str) -> dict:
    return pg.eval_on_selector(selector, """e => { const r = e.getBoundingClientRect();
        return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, h: innerHeight, w: innerWidth,
                clipped_x: e.scrollWidth > e.clientWidth + 1, clipped_y: e.scrollHeight > e.clientHeight + 1,
                hidden: getComputedStyle(e).visibility === 'hidden' || r.height === 0}; }""")


def _assert_in_sight(pg) -> None:
    box = _fully_visible(pg, "#message")
    assert not box["hidden"] and 0 <= box["top"] and box["bottom"] <= box["h"], box
    assert 0 <= box["left"] and box["right"] <= box["w"] and not box["clipped_x"] and not box["clipped_y"], box


def test_the_status_line_is_in_sight_with_a_long_side_bar_and_a_long_path(page, served):  # noqa: F811
    page.set_viewport_size({"width": 1400, "height": 900})
    open_scan(page, "ct.nii.gz")
    page.click("#fit")
    drag(page, 6, 7, 25, 22)
    page.wait_for_function("daftApp.boxes.length === 1")
    drag(page, 30, 20, 44, 34)
    page.wait_for_function("daftApp.boxes.length === 2")
    for k in (0, 1):
        page.locator(".box .propagate").nth(k).click()
        page.wait_for_function(f"{MESSAGE}.textContent.startsWith('propagated')", timeout=30000)
        _assert_in_sight(page)
    assert page.eval_on_selector("#controls", "e => e.scrollHeight > e.clientHeight")  # longer than the window
    folder = "a_folder_with_a_long_name_that_is_not_there_" * 3
    page.fill("#output", f"{folder}/ct_seg.nii.gz")
    page.click("#save-btn")
    page.wait_for_function(f"{MESSAGE}.className === 'error'", timeout=20000)
    assert folder in page.inner_text("#message")
    _assert_in_sight(page)
    # the message hides no control: scrolled to the end, the Save button lies above it
    page.eval_on_selector("#controls", "e => { e.scrollTop = e.scrollHeight; }")
    save = page.locator("#save-btn").bounding_box()
    assert save["y"] + save["height"] <= page.locator("#message").bounding_box()["y"] + 0.5


def test_shift_drag_draws_a_box_inside_another_box(page, served):  # noqa: F811
    assert "Shift" in page.inner_text("#hint")
    open_scan(page, "photo.png", "Dermoscopy")
    drag(page, 10, 10, 60, 50)
    page.wait_for_function("daftApp.boxes.length === 1")
    page.keyboard.down("Shift")
    drag(page, 20, 15, 40, 30)  # starts inside box 1
    page.keyboard.up("Shift")
    page.wait_for_function("daftApp.boxes.length === 2")
    assert page.evaluate("daftApp.boxes.map(b => b.coords)") == [[10, 10, 60, 50], [20, 15, 40, 30]]
    drag(page, 45, 40, 47, 42)  # without Shift, a drag inside a box still moves it (box 1: box 2 is not there)
    page.wait_for_function("daftApp.boxes[0].coords[0] === 12")
    assert page.evaluate("daftApp.boxes.map(b => b.coords)") == [[12, 12, 62, 52], [20, 15, 40, 30]]
    # panning moved to the right button: the view moves, no box is made
    before = page.evaluate("[daftApp.view.ox, daftApp.view.oy]")
    page.mouse.move(*screen(page, 30, 55))
    page.mouse.down(button="right")
    page.mouse.move(*screen(page, 50, 58), steps=4)
    page.mouse.up(button="right")
    assert page.evaluate("[daftApp.view.ox, daftApp.view.oy]") != before
    assert page.evaluate("daftApp.boxes.length") == 2


def test_two_saves_in_one_folder_share_no_sidecar(page, served):  # noqa: F811
    data = served[1]
    asked: list[str] = []
    page.on("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    open_scan(page, "ct.nii.gz")
    drag(page, 6, 7, 25, 22)
    page.wait_for_function("daftApp.boxes.length === 1")
    page.fill("#output", "seg.nii.gz")
    page.click("#save-btn")
    page.wait_for_function(f"{MESSAGE}.textContent.startsWith('saved')", timeout=30000)
    open_scan(page, "photo.png", "Dermoscopy")
    drag(page, 15, 10, 45, 40)
    page.wait_for_function("daftApp.boxes.length === 1 && daftApp.scan.path === 'photo.png'")
    page.fill("#output", "seg.png")
    page.click("#save-btn")
    page.wait_for_function(f"{MESSAGE}.textContent.startsWith('saved seg.png')", timeout=30000)
    assert not asked  # nothing of the 3D save was offered for replacing
    assert page.inner_text("#message") == "saved seg.png, seg.png.json, seg.png.boxes.json"
    names = {p.name for p in data.iterdir()}
    assert {"seg.nii.gz", "seg.nii.gz.json", "seg.nii.gz.boxes.json", "seg.png", "seg.png.json",
            "seg.png.boxes.json"} <= names
