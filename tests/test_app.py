"""daftseg-app's API (Starlette test client, toy IR models at f32): open, box, segment, propagate,
save (equal to daftseg-segment voxel for voxel), and every refusal: traversal, upload cap, bad
files and bad requests, overwrite, host binding."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
import SimpleITK as sitk
from app_support import CT_SHAPE, ROTATED, wait_job, write_data
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture

pytest.importorskip("starlette", reason="the app extra (starlette) is not installed")
from starlette.testclient import TestClient

import daftseg.app as app_cli
from daftseg import segment
from daftseg.app.core import AppConfig
from daftseg.app.handlers import create_app
from daftseg.app.state import CachedModel, Cancelled, EmbeddingCache

TOKEN = "test-token-0123456789"
BASE = "http://127.0.0.1:8765"
OCTETS = {"Content-Type": "application/octet-stream"}
BOX_A = {"coords": [6, 7, 1, 25, 22, 7], "label": 4, "name": "liver", "slice": 4}
BOX_B = {"coords": [18, 14, 2, 42, 36, 9], "label": 9, "name": "kidney", "slice": 5}  # overlaps A


@pytest.fixture
def data(tmp_path):
    return write_data(tmp_path / "data")


@pytest.fixture
def client(data, toy_models_dir):  # noqa: F811
    app = create_app(AppConfig(data, toy_models_dir, cache_dir="", max_upload_bytes=64 << 10, token=TOKEN))
    return TestClient(app, base_url=BASE, headers={"Authorization": f"Bearer {TOKEN}"})


def _open(client, path, **kw):
    r = client.post("/api/open", json={"path": path, **kw})
    assert r.status_code == 200, r.text
    return r.json()


def _add(client, sid, box):
    r = client.post(f"/api/scans/{sid}/boxes", json={"box": box})
    assert r.status_code == 200, r.text
    return r.json()


def _segment_cli(*args) -> int:
    return segment.main([*map(str, args), "--precision", "f32", "--cache_dir", ""])


def _sessions(client, name):
    return client.app.state.daft.segmenter.sessions.model(name)


def test_lists_and_opens_a_ct_with_its_routed_model(client):
    files = {f["path"] for f in client.get("/api/files").json()["files"]}
    assert files == {"ct.nii.gz", "photo.png"}
    scan = _open(client, "ct.nii.gz")
    assert scan["shape"] == list(CT_SHAPE) and scan["is_3d"] and scan["modality"] == "CT"
    assert scan["model"] == "CT" and scan["route"]["name"] == "3DBox_CT"
    assert np.allclose(scan["spacing"], (0.7, 0.8, 2.5))
    raw = client.get(f"/api/scans/{scan['id']}/slice?z=3")
    values = np.frombuffer(raw.content, "<f4").reshape(CT_SHAPE[1:])
    assert raw.headers["x-shape"] == "40,48" and values.min() == -1000 and values.max() == 200  # HU, not uint8


def test_second_box_on_the_same_image_is_one_decoder_call(client):
    sid = _open(client, "photo.png", modality="Dermoscopy")["id"]
    _add(client, sid, {"coords": [15, 10, 45, 40], "label": 1})
    model = _sessions(client, "lite_medsam")
    enc, dec = model.encoder_calls, model.decoder_calls
    assert enc == 1 and dec == 1
    _add(client, sid, {"coords": [40, 25, 70, 55], "label": 2})
    assert (model.encoder_calls, model.decoder_calls) == (1, 2)
    overlay = np.frombuffer(client.get(f"/api/scans/{sid}/overlay").content, "<u2").reshape(60, 80)
    assert set(np.unique(overlay)) == {0, 1, 2}


def test_3d_slice_preview_then_propagation_shows_on_every_slice(client):
    sid = _open(client, "ct.nii.gz")["id"]
    _add(client, sid, BOX_A)

    def overlay(z):
        return np.frombuffer(client.get(f"/api/scans/{sid}/overlay?z={z}").content, "<u2").reshape(CT_SHAPE[1:])

    assert overlay(4).any() and not overlay(2).any()  # the preview: its own slice only
    job = client.post(f"/api/scans/{sid}/propagate", json={"box_id": 1}).json()
    assert job["total"] == 6  # slices 1..6: DAFT stops at z_max - 1
    assert wait_job(client, sid)["state"] == "done"
    assert all(overlay(z).any() for z in range(1, 7)) and not overlay(7).any() and not overlay(0).any()
    assert client.get(f"/api/scans/{sid}/state").json()["propagated"] == [1]
    # slices 1..6 encoded once each: the drawn slice 4's embedding came from the preview's cache
    assert _sessions(client, "CT").encoder_calls == 6 and _sessions(client, "CT").decoder_calls == 1 + 6


def test_3d_save_equals_daftseg_segment_and_keeps_the_grid(client, data, toy_models_dir, tmp_path):  # noqa: F811
    sid = _open(client, "ct.nii.gz")["id"]
    _add(client, sid, BOX_A)
    _add(client, sid, BOX_B)
    client.post(f"/api/scans/{sid}/propagate", json={"box_id": 2})
    assert wait_job(client, sid)["state"] == "done"  # box 1 is propagated by the save itself
    r = client.post(f"/api/scans/{sid}/save", json={"output": "ct_seg.nii.gz"})
    assert r.status_code == 200, r.text
    assert r.json()["written"] == ["ct_seg.nii.gz", "ct_seg.nii.gz.json", "ct_seg.nii.gz.boxes.json"]

    boxes_file = data / "ct_seg.nii.gz.boxes.json"
    assert json.loads(boxes_file.read_text())["boxes"] == [
        {"box": BOX_A["coords"], "label": 4, "name": "liver"}, {"box": BOX_B["coords"], "label": 9, "name": "kidney"}]
    ref = tmp_path / "ref.nii.gz"
    assert _segment_cli("--image", data / "ct.nii.gz", "--boxes", boxes_file, "--modality", "CT",
                        "-m", toy_models_dir, "-o", ref) == 0
    saved, expected, scan = (sitk.ReadImage(str(p)) for p in (data / "ct_seg.nii.gz", ref, data / "ct.nii.gz"))
    got = sitk.GetArrayFromImage(saved)
    assert np.array_equal(got, sitk.GetArrayFromImage(expected))
    assert set(np.unique(got)) == {0, 4, 9}
    assert saved.GetSize() == scan.GetSize() and np.allclose(saved.GetSpacing(), scan.GetSpacing())
    assert np.allclose(saved.GetOrigin(), scan.GetOrigin()) and np.allclose(saved.GetDirection(), ROTATED, atol=1e-5)
    side = json.loads((data / "ct_seg.nii.gz.json").read_text())
    assert side["model"] == "CT" and side["boxes_file"] == "ct_seg.nii.gz.boxes.json"


def test_2d_save_equals_daftseg_segment(client, data, toy_models_dir, tmp_path):  # noqa: F811
    sid = _open(client, "photo.png", modality="Dermoscopy")["id"]
    _add(client, sid, {"coords": [15, 10, 45, 40], "label": 3})
    _add(client, sid, {"coords": [35, 25, 70, 55], "label": 7, "name": "lesion"})  # overlaps: later wins
    assert client.post(f"/api/scans/{sid}/save", json={"output": "photo_seg.png"}).status_code == 200
    ref = tmp_path / "ref.png"
    assert _segment_cli("--image", data / "photo.png", "--boxes", data / "photo_seg.png.boxes.json",
                        "--modality", "Dermoscopy", "-m", toy_models_dir, "-o", ref) == 0
    import cv2

    got = cv2.imread(str(data / "photo_seg.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(got, cv2.imread(str(ref), cv2.IMREAD_UNCHANGED)) and set(np.unique(got)) == {0, 3, 7}


def test_save_never_overwrites_without_asking_and_never_the_scan(client, data):
    sid = _open(client, "photo.png")["id"]
    _add(client, sid, {"coords": [15, 10, 45, 40]})
    assert client.post(f"/api/scans/{sid}/save", json={"output": "out.png"}).status_code == 200
    before = (data / "out.png").read_bytes()
    client.put(f"/api/scans/{sid}/boxes/1", json={"box": {"coords": [5, 5, 30, 30]}})
    r = client.post(f"/api/scans/{sid}/save", json={"output": "out.png"})
    assert r.status_code == 409 and r.json()["exists"] == ["out.png", "out.png.json", "out.png.boxes.json"]
    assert (data / "out.png").read_bytes() == before
    assert client.post(f"/api/scans/{sid}/save", json={"output": "out.png", "overwrite": True}).status_code == 200
    assert (data / "out.png").read_bytes() != before
    r = client.post(f"/api/scans/{sid}/save", json={"output": "photo.png", "overwrite": True})
    assert r.status_code == 400 and "the scan itself" in r.json()["error"]
    assert not [p.name for p in data.iterdir() if ".tmp" in p.name or p.name.startswith(".")]


@pytest.mark.parametrize("path", ["../ct.nii.gz", "sub/../../ct.nii.gz", "/etc/passwd", "C:/x.png", "", "outlink/x.png",
                                  "linked.nii.gz"])
def test_paths_outside_the_data_folder_are_refused(client, data, tmp_path, path):
    outside = tmp_path / "outside"
    outside.mkdir()
    write_data(outside)
    os.symlink(outside, data / "outlink")
    os.symlink(outside / "ct.nii.gz", data / "linked.nii.gz")
    r = client.post("/api/open", json={"path": path})
    assert r.status_code == 403, r.text
    listed = {f["path"] for f in client.get("/api/files").json()["files"]}
    assert listed == {"ct.nii.gz", "photo.png"}  # the symlinks out are not listed either


def test_save_outside_the_data_folder_is_refused(client, data, tmp_path):
    sid = _open(client, "photo.png")["id"]
    _add(client, sid, {"coords": [15, 10, 45, 40]})
    os.symlink(tmp_path, data / "up")
    for output in ("../x.png", "/tmp/x.png", "up/x.png"):
        r = client.post(f"/api/scans/{sid}/save", json={"output": output})
        assert r.status_code == 403, (output, r.text)
    assert not (tmp_path / "x.png").exists()


def test_upload_cap_names_and_success(client, data):
    r = client.post("/api/upload?name=big.png", content=b"\0" * (65 << 10), headers=OCTETS)
    assert r.status_code == 413 and "too large" in r.json()["error"]

    def chunks():  # no Content-Length: the cap applies while streaming
        for _ in range(70):
            yield b"\0" * 1024

    r = client.post("/api/upload?name=big.png", content=chunks(), headers=OCTETS)
    assert r.status_code == 413
    assert not (data / "uploads").exists() or not list((data / "uploads").iterdir())
    for bad in ("../evil.png", "a/b.png", ".hidden.png", "x.exe", ""):
        assert client.post(f"/api/upload?name={bad}", content=b"x", headers=OCTETS).status_code == 403, bad
    png = (data / "photo.png").read_bytes()
    first = client.post("/api/upload?name=mine.png", content=png, headers=OCTETS).json()
    second = client.post("/api/upload?name=mine.png", content=png, headers=OCTETS).json()
    assert (first["path"], second["path"]) == ("uploads/mine.png", "uploads/mine-1.png")  # never overwritten
    opened = _open(client, "uploads/mine.png")
    assert opened["shape"] == [60, 80] and opened["rgb"]


def test_a_bad_file_is_a_clear_message_and_the_server_goes_on(client, data):
    (data / "broken.nii.gz").write_bytes(b"not a nifti at all")
    (data / "fake.png").write_bytes(b"\x89PNG garbage")
    for name in ("broken.nii.gz", "fake.png"):
        r = client.post("/api/open", json={"path": name})
        assert r.status_code == 400 and name in r.json()["error"], r.text
    assert _open(client, "ct.nii.gz")["shape"] == list(CT_SHAPE)


def test_bad_requests_are_refused_with_a_reason(client):
    sid = _open(client, "ct.nii.gz")["id"]
    bad_boxes = [
        ({"coords": [20, 7, 1, 6, 22, 7]}, "inverted"),
        ({"coords": [6, 7, 1, 48, 22, 7]}, "outside"),
        ({"coords": [6, 7, 3, 25, 22, 3]}, "z_min must be below z_max"),
        ({"coords": [6, 7, 1, 25, 22.5, 7]}, "whole numbers"),
        ({"coords": [6, 7, 25, 22]}, "6 whole numbers"),
        ({"coords": [6, 7, 1, 25, 22, 7], "label": 0}, "label"),
        ({"coords": [6, 7, 1, 25, 22, 7], "label": True}, "label"),
        ({"coords": [6, 7, 1, 25, 22, 7], "colour": "red"}, "colour"),
        ({"coords": [6, 7, 1, 25, 22, 7], "slice": 10}, "slice"),
        ("box", "object"),
    ]
    for box, why in bad_boxes:
        r = client.post(f"/api/scans/{sid}/boxes", json={"box": box})
        assert r.status_code == 400 and why in r.json()["error"], (box, r.text)
    assert client.get(f"/api/scans/{sid}/state").json()["boxes"] == []
    assert client.post(f"/api/scans/{sid}/boxes", content=b"{not json",
                       headers={"Content-Type": "application/json"}).status_code == 400
    assert client.get(f"/api/scans/{sid}/slice?z=10").status_code == 400
    assert client.get(f"/api/scans/{sid}/overlay?z=-1").status_code == 400
    assert client.get("/api/scans/s999/state").status_code == 400
    assert client.post(f"/api/scans/{sid}/undo", json={}).status_code == 400
    assert client.post(f"/api/scans/{sid}/propagate", json={"box_id": 7}).status_code == 400
    assert client.post(f"/api/scans/{sid}/settings", json={"model": "../CT"}).status_code == 400
    assert client.post(f"/api/scans/{sid}/settings", json={"model": "nosuch"}).status_code == 400
    assert client.post(f"/api/scans/{sid}/save", json={"output": "x.png"}).status_code == 400  # no boxes
    _add(client, sid, BOX_A)
    r = client.post(f"/api/scans/{sid}/save", json={"output": "x.png"})
    assert r.status_code == 400 and "PNG holds 2D" in r.json()["error"]
    p2 = _open(client, "photo.png")["id"]
    _add(client, p2, {"coords": [1, 1, 9, 9]})
    assert client.post(f"/api/scans/{p2}/propagate", json={"box_id": 1}).status_code == 400


def test_move_resize_delete_and_undo(client):
    sid = _open(client, "photo.png")["id"]
    _add(client, sid, {"coords": [15, 10, 45, 40], "label": 2})
    _add(client, sid, {"coords": [50, 20, 70, 50], "label": 3})
    client.put(f"/api/scans/{sid}/boxes/1", json={"box": {"coords": [16, 11, 46, 41]}})  # moved
    client.put(f"/api/scans/{sid}/boxes/1", json={"box": {"coords": [16, 11, 30, 30], "name": "a"}})  # resized
    client.delete(f"/api/scans/{sid}/boxes/2")
    coords = lambda: [b["coords"] for b in client.get(f"/api/scans/{sid}/state").json()["boxes"]]
    assert coords() == [[16, 11, 30, 30]]
    for expected in ([[16, 11, 30, 30], [50, 20, 70, 50]], [[16, 11, 46, 41], [50, 20, 70, 50]],
                     [[15, 10, 45, 40], [50, 20, 70, 50]], [[15, 10, 45, 40]], []):
        assert client.post(f"/api/scans/{sid}/undo", json={}).status_code == 200
        assert coords() == expected


def test_model_by_name_is_the_model_that_segments(client, data, toy_models_dir, tmp_path):  # noqa: F811
    import cv2

    sid = _open(client, "photo.png", modality="Dermoscopy")["id"]
    _add(client, sid, {"coords": [10, 5, 70, 55]})
    assert client.post(f"/api/scans/{sid}/settings", json={"model": "XRay"}).json()["model"] == "XRay"
    assert _sessions(client, "XRay").decoder_calls == 1  # the preview was recomputed with XRay
    assert client.post(f"/api/scans/{sid}/save", json={"output": "x_seg.png"}).status_code == 200
    assert _segment_cli("--image", data / "photo.png", "--boxes", data / "x_seg.png.boxes.json", "--model", "XRay",
                        "-m", toy_models_dir, "-o", tmp_path / "ref.png") == 0
    got = cv2.imread(str(data / "x_seg.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(got, cv2.imread(str(tmp_path / "ref.png"), cv2.IMREAD_UNCHANGED)) and got.any()
    assert json.loads((data / "x_seg.png.json").read_text())["model"] == "XRay"
    assert _open(client, "photo.png", modality="X-Ray")["model"] == "XRay"  # routed from the modality


def test_concurrent_requests_keep_one_consistent_state(client):
    sid = _open(client, "photo.png")["id"]
    errors = []

    def add(i):
        r = client.post(f"/api/scans/{sid}/boxes", json={"box": {"coords": [i, i, i + 20, i + 20], "label": i + 1}})
        if r.status_code != 200:
            errors.append(r.text)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    boxes = client.get(f"/api/scans/{sid}/state").json()["boxes"]
    assert not errors and sorted(b["label"] for b in boxes) == list(range(1, 9))
    assert len({b["id"] for b in boxes}) == 8


def test_cancel_stops_a_propagation_and_stores_nothing(client):
    sid = _open(client, "ct.nii.gz")["id"]
    _add(client, sid, BOX_A)
    core = client.app.state.daft
    scan = core.scan(sid)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        scan.propagate(scan.boxes[0], core.model_for(scan, stop))
    assert scan.mask_3d(scan.boxes[0]) is None
    client.post(f"/api/scans/{sid}/propagate", json={"box_id": 1})
    assert client.post(f"/api/scans/{sid}/cancel", json={}).json()["box_id"] == 1
    assert scan.job.cancel.is_set() and wait_job(client, sid)["state"] in ("cancelled", "done")


def test_embedding_cache_is_bounded_and_reused():
    calls = []

    def encode(x):
        calls.append(1)
        return x * 2

    cache = EmbeddingCache(capacity=2)
    images = [np.full((1, 3, 4, 4), v, np.float32) for v in range(3)]
    for x in images + images[2:]:
        cache.get("m", x, encode)
    assert len(cache) == 2 and len(calls) == 3 and cache.hits == 1
    cache.get("m", images[0], encode)  # dropped earlier: encoded again
    assert len(calls) == 4
    assert isinstance(CachedModel, type)


def test_binds_localhost_and_warns_with_host(monkeypatch, data, toy_models_dir, capsys):  # noqa: F811
    seen = {}

    class FakeConfig:  # uvicorn.Config would install logging handlers on pytest's captured stderr
        def __init__(self, app, host, port, **kw):
            self.host, self.port = host, port

    class FakeServer:
        def __init__(self, config):
            seen["host"], seen["port"] = config.host, config.port

        def run(self):
            seen["ran"] = True

    import uvicorn

    monkeypatch.setattr(uvicorn, "Server", FakeServer)
    monkeypatch.setattr(uvicorn, "Config", FakeConfig)
    assert app_cli.main(["--data", str(data), "-m", str(toy_models_dir), "--no_browser"]) == 0
    assert seen == {"host": "127.0.0.1", "port": 8765, "ran": True}
    assert "warning" not in capsys.readouterr().err
    assert app_cli.main(["--data", str(data), "-m", str(toy_models_dir), "--no_browser", "--host", "0.0.0.0",
                         "--port", "9000"]) == 0
    assert seen["host"] == "0.0.0.0" and "anyone who can reach this machine" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        app_cli.main(["--data", str(data / "nope"), "--no_browser"])


def test_the_app_imports_no_torch_and_answers_help_as_a_module():
    import subprocess
    import sys

    code = "import sys, daftseg.app.handlers; assert 'torch' not in sys.modules, 'torch imported'"
    res = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, "-m", "daftseg.app", "--help"], check=False, capture_output=True, text=True)
    assert res.returncode == 0 and "--data" in res.stdout and "--host" in res.stdout and "--no_browser" in res.stdout


def test_model_input_is_read_scans_and_a_dicom_series_keeps_its_modality(client, data):
    from scan_writers import write_dicom_series

    from daftseg.io import read_scan

    mr = (np.arange(np.prod(CT_SHAPE)).reshape(CT_SHAPE) % 700).astype(np.int16)
    write_dicom_series(data / "series", mr, modality="MR")
    assert {"path": "series", "kind": "dicom", "files": CT_SHAPE[0]} in client.get("/api/files").json()["files"]
    opened = _open(client, "series")
    assert opened["modality"] == "MR" and opened["model"] == "3D"  # the tag, and 3DBox_MR's model
    core = client.app.state.daft
    assert np.array_equal(core.scan(opened["id"]).image, read_scan(data / "series").image)
    ct = _open(client, "ct.nii.gz")
    assert np.array_equal(core.scan(ct["id"]).image, read_scan(data / "ct.nii.gz", modality="CT").image)
    assert _open(client, "ct.nii.gz", modality="MR")["model"] == "3D"  # chosen in the page


def test_prefetch_order_is_nearest_to_the_drawn_slice_first():
    from daftseg.app.prefetch import prefetch_order

    assert prefetch_order(1, 7, 4, 32) == [4, 3, 5, 2, 6, 1]
    assert prefetch_order(1, 7, 4, 3) == [4, 3, 5]
    assert prefetch_order(0, 3, 9, 32) == [2, 1, 0]  # a drawn slice outside the range (edited later)
    assert prefetch_order(2, 2, 2, 5) == []


def _wait_prefetch(scan, timeout: float = 30.0) -> None:
    import time

    t0 = time.monotonic()
    while scan.prefetch is not None and scan.prefetch.running:
        assert time.monotonic() - t0 < timeout, "the prefetch did not finish"
        time.sleep(0.02)


def test_a_3d_box_has_its_slices_encoded_before_propagate(client):
    sid = _open(client, "ct.nii.gz")["id"]
    _add(client, sid, BOX_A)  # slices 1..6, drawn on 4
    scan = client.app.state.daft.scan(sid)
    _wait_prefetch(scan)
    assert scan.prefetch.slices == [4, 3, 5, 2, 6, 1] and scan.prefetch.encoded == 6
    model = _sessions(client, "CT")
    assert model.encoder_calls == 6  # the drawn slice once (the preview), the other five in the background
    client.post(f"/api/scans/{sid}/propagate", json={"box_id": 1})
    assert wait_job(client, sid)["state"] == "done"
    assert model.encoder_calls == 6 and model.decoder_calls == 1 + 6  # Propagate encoded nothing


def test_prefetch_is_bounded_by_the_embeddings_and_changes_no_output(data, toy_models_dir):  # noqa: F811
    def saved(prefetch: bool, embeddings: int, name: str) -> bytes:
        app = create_app(AppConfig(data, toy_models_dir, cache_dir="", token=TOKEN, embeddings=embeddings,
                                   prefetch=prefetch))
        c = TestClient(app, base_url=BASE, headers={"Authorization": f"Bearer {TOKEN}"})
        sid = _open(c, "ct.nii.gz")["id"]
        _add(c, sid, BOX_B)  # slices 2..8, drawn on 5
        scan = app.state.daft.scan(sid)
        _wait_prefetch(scan)
        encoded = app.state.daft.segmenter.sessions.model("CT").encoder_calls
        assert encoded == (1 + min(embeddings, 7) - 1 if prefetch else 1), (prefetch, embeddings, encoded)
        assert c.post(f"/api/scans/{sid}/save", json={"output": name}).status_code == 200
        return sitk.GetArrayFromImage(sitk.ReadImage(str(data / name))).tobytes()

    without = saved(False, 32, "a.nii.gz")
    assert saved(True, 3, "b.nii.gz") == without  # three slices: the drawn one and its two neighbours
    assert saved(True, 32, "c.nii.gz") == without


def test_deleting_the_box_stops_its_prefetch(client, monkeypatch):
    import time

    sid = _open(client, "ct.nii.gz")["id"]
    model = _sessions(client, "CT")
    slow = model.encode

    def slow_encode(x):
        time.sleep(0.15)
        return slow(x)

    monkeypatch.setattr(model, "encode", slow_encode)
    _add(client, sid, BOX_A)
    scan = client.app.state.daft.scan(sid)
    running = scan.prefetch
    assert client.delete(f"/api/scans/{sid}/boxes/1").status_code == 200
    assert scan.prefetch is None and running.cancel.is_set()
    running.stop(wait=True)
    assert running.encoded < 5  # stopped after the slice it was encoding, not the whole range


def test_a_propagation_shows_each_slice_as_it_is_computed(client):
    sid = _open(client, "ct.nii.gz")["id"]
    _add(client, sid, {**BOX_A, "slice": 1})  # drawn on slice 1: slice 4 (the middle) has no preview
    core = client.app.state.daft
    scan = core.scan(sid)
    _wait_prefetch(scan)
    seen = []

    def after_each_decode():
        seen.append({z: bool(scan.overlay(z).any()) for z in (3, 4, 5)})

    scan.propagate(scan.boxes[0], core.model_for(scan, None, after_each_decode))
    # decodes run 4 (the middle), 5, 6, then 3, 2, 1: after the second, slice 4 shows, 5 not yet
    assert seen[0] == {3: False, 4: False, 5: False}
    assert seen[1] == {3: False, 4: True, 5: False}
    assert seen[3] == {3: False, 4: True, 5: True}
    assert scan.live is None and all(scan.overlay(z).any() for z in (3, 4, 5))


def test_the_job_estimates_the_time_left_from_the_slices_done():
    import time

    from daftseg.app.state import Job

    job = Job(box_id=1, total=15)
    assert job.to_dict()["eta"] is None  # nothing measured yet
    job.started, job.done = time.perf_counter() - 10.0, 5  # 2 s a slice so far
    assert 19.5 <= job.to_dict()["eta"] <= 20.5
    job.state = "done"
    assert job.to_dict()["eta"] is None


def test_read_scan_with_modality_from_name_reads_what_the_app_opens(client, data):
    """What the app shows and segments (values as stored, model input, modality, colour) is what
    ``read_scan(..., modality_from_name=True)`` gives, for every kind of scan the app opens."""
    from scan_writers import write_dicom_series, write_volume

    from daftseg.io import read_scan

    mr = (np.arange(np.prod(CT_SHAPE)).reshape(CT_SHAPE) % 700).astype(np.int16)
    write_dicom_series(data / "series", mr, modality="MR")
    write_volume(data / "knee_MR.nii.gz", mr)
    np.savez(data / "2DBox_US_1.npz", imgs=mr[0].astype(np.uint8))
    core = client.app.state.daft
    expected = {"series": "MR", "knee_MR.nii.gz": "MR", "ct.nii.gz": "CT", "photo.png": None, "2DBox_US_1.npz": "US"}
    for name, modality in expected.items():
        opened = core.scan(_open(client, name)["id"])
        scan = read_scan(data / name, modality_from_name=True)
        assert scan.modality == opened.modality == modality, name
        assert scan.rgb == opened.rgb and scan.geometry == opened.geometry, name
        assert np.array_equal(scan.image, opened.image) and np.array_equal(scan.raw, opened.display), name
        assert scan.raw.dtype == opened.display.dtype, name


def test_a_3d_and_a_2d_save_in_one_folder_share_no_file(client, data):
    """The bug of the old names: seg.png after seg.nii.gz asked to replace seg.json and seg_boxes.json."""
    ct = _open(client, "ct.nii.gz")["id"]
    _add(client, ct, BOX_A)
    assert client.post(f"/api/scans/{ct}/save", json={"output": "seg.nii.gz"}).status_code == 200
    photo = _open(client, "photo.png", modality="Dermoscopy")["id"]
    _add(client, photo, {"coords": [15, 10, 45, 40], "label": 3})
    r = client.post(f"/api/scans/{photo}/save", json={"output": "seg.png"})
    assert r.status_code == 200, r.text
    assert r.json()["written"] == ["seg.png", "seg.png.json", "seg.png.boxes.json"]
    assert json.loads((data / "seg.nii.gz.json").read_text())["labels_file"] == "seg.nii.gz"
    assert json.loads((data / "seg.png.boxes.json").read_text())["boxes"] == [
        {"box": [15, 10, 45, 40], "label": 3, "name": None}]
