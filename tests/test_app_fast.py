"""daftseg-app's Fast switch (API, toy IR models at f32): offered only where the scan's model has an
INT8 image encoder, off by default, masks from fast mode's models (equal to ``daftseg-segment --fast``),
the encoder that answered named in every reply, fast masks marked, exact masks back when it is off.

The "INT8" encoder is a stand-in whose channel 0 is the negated intensity, so fast masks visibly
differ from exact ones; precision is pinned to f32 so that only the encoder differs.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from app_support import CT_SHAPE, wait_job, write_data
from ov_toy_models import add_stand_in_int8, toy_models_dir  # noqa: F401 - pytest fixture

pytest.importorskip("starlette", reason="the app extra (starlette) is not installed")
from starlette.testclient import TestClient

from daftseg import segment
from daftseg.app.core import AppConfig
from daftseg.app.handlers import create_app

TOKEN = "test-token-fast-0123456"
BASE = "http://127.0.0.1:8765"
BOX = {"coords": [6, 7, 2, 25, 22, 7], "label": 4, "name": "liver", "slice": 4}


@pytest.fixture
def models(toy_models_dir, tmp_path):  # noqa: F811
    """The toy models, CT with an "INT8" encoder (3D scans route to CT), lite_medsam without one."""
    # with a decoder whose mask border moves by up to 10 px (at 256) with the intensity: the encoders show
    return add_stand_in_int8(shutil.copytree(toy_models_dir, tmp_path / "models"), "CT")


def make_client(data, models, **config) -> TestClient:
    app = create_app(AppConfig(data, models, precision="f32", cache_dir="", token=TOKEN, **config))
    return TestClient(app, base_url=BASE, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture
def data(tmp_path):
    return write_data(tmp_path / "data")


def _ok(r):
    assert r.status_code == 200, r.text
    return r.json()


def overlay(client, sid, z=4) -> np.ndarray:
    return np.frombuffer(client.get(f"/api/scans/{sid}/overlay?z={z}").content, "<u2").reshape(CT_SHAPE[1:])


def test_the_switch_gives_fast_masks_marked_as_such_and_equal_to_segment_fast(data, models, tmp_path):
    client = make_client(data, models)
    scan = _ok(client.post("/api/open", json={"path": "ct.nii.gz"}))
    sid = scan["id"]
    assert scan["model"] == "CT" and scan["fast_available"] and scan["fast"] is False  # offered, off
    added = _ok(client.post(f"/api/scans/{sid}/boxes", json={"box": BOX}))
    assert added["encoder"] == "CT_image_encoder.xml" and added["fast_masks"] == []
    exact = overlay(client, sid)

    on = _ok(client.post(f"/api/scans/{sid}/settings", json={"fast": True}))
    assert on["fast"] and on["encoder"] == "CT_image_encoder_int8.xml" and on["fast_masks"] == [1]
    fast = overlay(client, sid)
    assert fast.any() and not np.array_equal(fast, exact)  # the INT8 graph answered, not a cached embedding
    _ok(client.post(f"/api/scans/{sid}/propagate", json={"box_id": 1}))
    job = wait_job(client, sid)
    assert job["state"] == "done" and job["encoder"] == "CT_image_encoder_int8.xml"
    assert _ok(client.post(f"/api/scans/{sid}/save", json={"output": "ct_fast.nii.gz"}))["written"][0] == "ct_fast.nii.gz"
    ref = tmp_path / "ref_fast.nii.gz"
    assert segment.main(["--image", str(data / "ct.nii.gz"), "--boxes", str(data / "ct_fast.nii.gz.boxes.json"),
                         "--modality", "CT", "-m", str(models), "-o", str(ref), "--fast", "--precision", "f32",
                         "--cache_dir", ""]) == 0
    saved, expected = (sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (data / "ct_fast.nii.gz", ref))
    assert saved.any() and np.array_equal(saved, expected)

    off = _ok(client.post(f"/api/scans/{sid}/settings", json={"fast": False}))
    assert off["fast"] is False and off["fast_masks"] == [] and off["encoder"] == "CT_image_encoder.xml"
    assert np.array_equal(overlay(client, sid), exact)  # the exact mask again
    assert off["propagated"] == []  # the fast propagation is not the exact one


def test_no_switch_without_an_int8_encoder_and_bad_values_are_refused(data, models):
    client = make_client(data, models)
    photo = _ok(client.post("/api/open", json={"path": "photo.png", "modality": "Dermoscopy"}))
    assert photo["model"] == "lite_medsam" and photo["fast_available"] is False
    r = client.post(f"/api/scans/{photo['id']}/settings", json={"fast": True})
    assert r.status_code == 400 and "lite_medsam has no INT8 image encoder" in r.json()["error"]
    r = client.post(f"/api/scans/{photo['id']}/settings", json={"fast": "yes"})
    assert r.status_code == 400 and "fast must be true or false" in r.json()["error"]
    # another model chosen: the switch follows the model, and goes off with a model that has none
    ct = _ok(client.post(f"/api/scans/{photo['id']}/settings", json={"model": "CT", "fast": True}))
    assert ct["fast_available"] and ct["fast"]
    back = _ok(client.post(f"/api/scans/{photo['id']}/settings", json={"model": "lite_medsam"}))
    assert back["fast_available"] is False and back["fast"] is False


def test_fast_flag_sets_the_switch_where_it_is_offered(data, models):
    client = make_client(data, models, fast=True)
    assert _ok(client.get("/api/info"))["fast"] is True
    assert _ok(client.post("/api/open", json={"path": "ct.nii.gz"}))["fast"] is True
    assert _ok(client.post("/api/open", json={"path": "photo.png", "modality": "Dermoscopy"}))["fast"] is False
    # a reopen keeps the page's choice
    assert _ok(client.post("/api/open", json={"path": "ct.nii.gz", "fast": False}))["fast"] is False
