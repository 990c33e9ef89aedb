"""The Fast switch in a real browser (issue 25 §4): hidden for a model without an INT8 encoder, shown
and off for one with it; on, the status line names the INT8 encoder, the box is marked "fast" and the
mask on the canvas changes; off again, the exact mask is back."""

from __future__ import annotations

import shutil

from app_support import write_data
from browser_support import browser_page, drag, open_scan, pixel, serving
from ov_toy_models import add_stand_in_int8, toy_models_dir  # noqa: F401 - pytest fixture

from daftseg.app.core import AppConfig

MESSAGE = "document.getElementById('message').textContent"


def _visible(pg, selector: str) -> bool:
    return pg.eval_on_selector(selector, "e => !e.hidden && e.getBoundingClientRect().height > 0")


def test_the_fast_switch_in_the_page(tmp_path, toy_models_dir):  # noqa: F811
    data = write_data(tmp_path / "data")
    models = add_stand_in_int8(shutil.copytree(toy_models_dir, tmp_path / "models"), "lite_medsam")
    config = AppConfig(data, models, cache_dir="", precision="f32")
    with serving(config) as url, browser_page(url) as page:
        open_scan(page, "ct.nii.gz")  # routed to CT: no INT8 encoder, no switch
        assert not _visible(page, "#fast-row")
        open_scan(page, "photo.png", "Dermoscopy")  # routed to lite_medsam, which has one: shown, off
        assert _visible(page, "#fast-row") and not page.is_checked("#fast")
        page.click("#fit")
        drag(page, 20, 12, 60, 48)
        page.wait_for_function(f"{MESSAGE}.startsWith('box 1: mask in')")
        assert page.evaluate(MESSAGE).endswith("(exact: standard encoder lite_medsam_image_encoder.xml)")
        assert page.locator(".box .fast-tag").count() == 0
        exact = page.evaluate("Array.from(daftApp.overlay.data)")

        page.check("#fast")
        page.wait_for_function(f"{MESSAGE}.startsWith('fast mode on')")
        assert page.evaluate(MESSAGE) == "fast mode on (fast: INT8 encoder lite_medsam_image_encoder_int8.xml)"
        page.wait_for_function("daftApp.overlay && daftApp.boxes.length === 1")
        fast = page.evaluate("Array.from(daftApp.overlay.data)")
        assert any(fast) and fast != exact
        assert page.locator(".box .fast-tag").count() == 1 and page.inner_text(".box .fast-tag") == "fast"
        k = next(i for i, (a, b) in enumerate(zip(exact, fast, strict=True)) if a != b)
        probe = (k % 80, k // 80)  # a pixel the two masks disagree on (the photo is 80 wide)
        page.wait_for_timeout(100)
        shown_fast = pixel(page, *probe)

        page.uncheck("#fast")
        page.wait_for_function(f"{MESSAGE}.startsWith('fast mode off')")
        page.wait_for_function("daftApp.overlay && daftApp.boxes.length === 1")
        assert page.evaluate("Array.from(daftApp.overlay.data)") == exact
        assert page.locator(".box .fast-tag").count() == 0
        page.wait_for_timeout(100)
        assert pixel(page, *probe) != shown_fast  # the canvas showed the other mask
