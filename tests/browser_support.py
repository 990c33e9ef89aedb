"""Driving daftseg-app in a real headless Chromium (Debian's package, through Playwright): the app
served on the tests' scans in a thread, a page that opened the printed link, and the helpers the
browser tests share (image point -> page point, a drag, a canvas pixel, opening a scan)."""

from __future__ import annotations

import json
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from app_support import write_data
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

if not Path(CHROMIUM).is_file():
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the app extra (uvicorn) is not installed")

from daftseg import segment
from daftseg.app.cli import link
from daftseg.app.core import AppConfig
from daftseg.app.handlers import create_app


@contextmanager
def serving(config: AppConfig):
    """The app of ``config`` on a free port of 127.0.0.1, in a thread; yields the link to open."""
    app = create_app(config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        assert time.monotonic() - t0 < 20, "the app did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield link("127.0.0.1", port, app.state.token)
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def browser_page(url: str):
    """A headless Chromium page that opened ``url``; page errors fail the test."""
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1200, "height": 760})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(url)
        yield pg
        browser.close()
        assert not errors, errors


@pytest.fixture
def served(tmp_path, toy_models_dir):  # noqa: F811
    """The app on the tests' scans and toy models; yields (url, data folder)."""
    data = write_data(tmp_path / "data")
    with serving(AppConfig(data, toy_models_dir, cache_dir="")) as url:  # a random token, as a user's launch
        yield url, data


@pytest.fixture
def page(served):
    with browser_page(served[0]) as pg:
        yield pg


def screen(page, x: float, y: float) -> tuple[float, float]:
    """Page coordinates of image point (x, y) (voxel centres are at +0.5)."""
    sx, sy = page.evaluate("([x, y]) => daftApp.toScreen(x, y)", [x, y])
    box = page.locator("#canvas").bounding_box()
    return box["x"] + sx, box["y"] + sy


def drag(page, x0: int, y0: int, x1: int, y1: int) -> None:
    page.mouse.move(*screen(page, x0 + 0.5, y0 + 0.5))
    page.mouse.down()
    page.mouse.move(*screen(page, x1 + 0.5, y1 + 0.5), steps=8)
    page.mouse.up()


def pixel(page, x: int, y: int) -> list[int]:
    sx, sy = page.evaluate("([x, y]) => daftApp.toScreen(x, y)", [x + 0.5, y + 0.5])
    return page.evaluate("([x, y]) => Array.from(document.getElementById('canvas').getContext('2d')"
                         ".getImageData(Math.floor(x), Math.floor(y), 1, 1).data)", [sx, sy])


def open_scan(page, path: str, modality: str = "") -> None:
    page.wait_for_function("document.querySelectorAll('#file-select option').length > 0")
    page.select_option("#file-select", path)
    page.select_option("#modality", modality)
    page.click("#open-btn")
    page.wait_for_function("daftApp.scan && daftApp.overlay", timeout=20000)


def reference(data: Path, tmp: Path, scan: str, boxes: list[dict], modality: str, models: Path, out: str) -> Path:
    (tmp / "boxes.json").write_text(json.dumps(boxes))
    ref = tmp / out
    assert segment.main(["--image", str(data / scan), "--boxes", str(tmp / "boxes.json"), "--modality", modality,
                         "-m", str(models), "-o", str(ref), "--precision", "f32", "--cache_dir", ""]) == 0
    return ref
