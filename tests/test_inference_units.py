"""Routing table, npz I/O, 3D planning and the torch-free import of ``daftseg.inference``."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from daftseg.inference.boxes import plan_3d
from daftseg.inference.case3d import schedule
from daftseg.inference.npz_io import CaseError, make_case, read_case, segs_dtype, write_segs
from daftseg.inference.routing import RoutingTable

REPO = Path(__file__).resolve().parents[1]


def daft_filename_to_modelname(f: str) -> str | None:
    """Spec §7.3, rule by rule (None where DAFT printed "no match found")."""
    starts = [(("3DBox_PET",), "3D"), (("3DBox_MR",), "3D"), (("3DBox_CT",), "CT"),
              (("2DBox_X-Ray", "2DBox_XRay", "2DBox_CXR", "2DBox_XR"), "XRay"),
              (("2DBox_US", "2DBox_Ultra"), "lite_medsam"), (("2DBox_Fundus",), "Fundus"),
              (("2DBox_Endoscopy", "2DBox_Endoscope"), "Endoscopy"),
              (("2DBox_Dermoscope", "2DBox_Dermoscopy"), "Dermoscopy"),
              (("2DBox_Microscope", "2DBox_Microscopy"), "Microscopy"), (("2DBox_CT",), "CT"),
              (("2DBox_MR", "2DBox_PET"), "3D"), (("2DBox_Mamm",), "Mammography"), (("2DBox_OCT",), "OCT")]
    for prefixes, model in starts:
        if f.startswith(prefixes):
            return model
    for subs, model in [(("Microscope", "Microscopy"), "Microscopy"), (("Dermoscopy",), "Dermoscopy"),
                        (("Endoscopy",), "Endoscopy"), (("Fundus",), "Fundus"), (("X-Ray", "XRay"), "XRay"),
                        (("PET",), "3D"), (("OCT",), "OCT"), (("MR",), "3D"), (("Mamm",), "Mammography"),
                        (("US",), "lite_medsam"), (("CT",), "CT")]:
        if any(s in f for s in subs):
            return model
    return None


def test_routing_table_is_daft_93f1e55() -> None:
    table = RoutingTable.load()
    assert table.fallback == "lite_medsam" and len(table.rules) == 24
    named = {"3DBox_CT_0566.npz": "CT", "3DBox_MR_0621.npz": "3D", "3DBox_PET_0001.npz": "3D",
             "2DBox_US_0525.npz": "lite_medsam", "2DBox_X-Ray_0053.npz": "XRay",
             "2DBox_Dermoscopy_0003.npz": "Dermoscopy", "2DBox_Endoscopy_0086.npz": "Endoscopy",
             "2DBox_Fundus_0003.npz": "Fundus", "2DBox_Microscope_0016.npz": "Microscopy",
             "2DBox_OCT_0001.npz": "OCT", "2DBox_Mammo_0001.npz": "Mammography", "2DBox_CT_0001.npz": "CT",
             "2DBox_MR_0001.npz": "3D", "3DBox_OCT_0001.npz": "OCT", "case_MRI.npz": "3D",
             "2dbox_us_0001.npz": None, "anything.npz": None}
    for name, model in named.items():
        assert table.match(name)[0] == model, name
    # every combination of prefixes and modality words routes as DAFT's function does
    heads = ["2DBox_", "3DBox_", "", "x"]
    words = ["US", "Ultra", "CT", "MR", "PET", "OCT", "XRay", "X-Ray", "CXR", "XR", "Fundus", "Endoscopy",
             "Endoscope", "Dermoscope", "Dermoscopy", "Microscope", "Microscopy", "Mamm", "Mammography", "us"]
    for head, a, b in itertools.product(heads, words, words):
        name = f"{head}{a}_{b}_0001.npz"
        assert table.match(name)[0] == daft_filename_to_modelname(name), name


def test_routing_fallback_when_files_absent() -> None:
    table = RoutingTable.load()
    route = table.route("2DBox_Fundus_0001.npz", available=lambda m: m == "lite_medsam")
    assert route.model == "lite_medsam" and route.routed == "Fundus" and route.fell_back
    assert table.route("2DBox_Fundus_0001.npz", available=lambda m: True).model == "Fundus"
    assert table.route("nothing.npz").model == "lite_medsam"
    with pytest.raises(ValueError):
        RoutingTable.from_dict({"route": [{"model": "x", "startswith": ["a"]}]})  # no fallback
    with pytest.raises(ValueError):
        RoutingTable.from_dict({"fallback": "f", "route": [{"model": "x", "startswith": "a", "contains": "b"}]})


def test_segs_dtype_and_atomic_write(tmp_path: Path) -> None:
    assert segs_dtype(65535) == np.uint16 and segs_dtype(65536) == np.uint32
    for dtype in (np.uint16, np.uint32):
        segs = np.arange(24, dtype=dtype).reshape(2, 3, 4) * 3000
        write_segs(tmp_path / "a.npz", segs)
        with np.load(tmp_path / "a.npz") as z:
            assert z.files == ["segs"] and z["segs"].dtype == dtype
            np.testing.assert_array_equal(z["segs"], segs)
    labels = np.arange(5 * 300 * 400, dtype=np.uint32).reshape(5, 300, 400) % 256  # several write chunks
    write_segs(tmp_path / "a.npz", labels.astype(np.uint8))  # built as uint8, written as uint16 (DAFT)
    with np.load(tmp_path / "a.npz") as z:
        assert z["segs"].dtype == np.uint16 and z["segs"].shape == labels.shape
        np.testing.assert_array_equal(z["segs"], labels)
    with pytest.raises(ValueError):  # a failing write leaves neither the file nor a temporary
        write_segs(tmp_path / "b.npz", np.array([object()]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_read_case_and_image_handling(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 256, (10, 12, 3)).astype(np.uint8)
    np.savez(tmp_path / "3DBox_MR_1.npz", imgs=img, boxes=np.array([[0, 0, 0, 5, 5, 3]]), spacing=[1, 1, 2])
    case = read_case(tmp_path / "3DBox_MR_1.npz")
    assert case.is_3d and case.imgs.shape == (10, 12, 3) and case.spacing.tolist() == [1, 1, 2]
    grey = make_case("2DBox_US_1.npz", img[:, :, 0], np.array([[1, 1, 5, 5]]))
    assert grey.imgs.shape == (10, 12, 3) and not grey.is_3d
    scaled = make_case("2DBox_US_1.npz", img.astype(np.float32) * 4.0 - 100, np.array([[1, 1, 5, 5]]))
    assert scaled.imgs.dtype == np.uint8 and scaled.imgs.min() == 0 and scaled.imgs.max() == 255 and scaled.notes
    with pytest.raises(CaseError, match="boxes must be"):
        make_case("2DBox_US_1.npz", img, np.array([1, 2, 3, 4]))
    with pytest.raises(CaseError, match="numeric"):
        make_case("2DBox_US_1.npz", img.astype(bool), np.zeros((0, 4)))


def test_3d_plan_follows_daft() -> None:
    boxes = np.array([[0, 0, 2, 9, 9, 7], [0, 0, -3, 9, 9, 2], [0, 0, 8, 9, 9, 30]])
    p1, p2, p3 = plan_3d(boxes, (20, 10, 10))
    assert (p1.lo, p1.mid, p1.hi) == (2, 4, 7)  # int((7-2)/2 + 2) = 4; z_max exclusive
    assert (p2.lo, p2.mid, p2.hi) == (0, 0, 2)  # int(-0.5) = 0: DAFT truncates towards zero
    assert (p3.lo, p3.mid, p3.hi) == (8, 19, 20)  # unclipped middle, range clipped to the volume
    assert list(p1.up) == [4, 5, 6] and list(p1.down) == [3, 2]
    q1 = plan_3d(boxes[:1], (20, 10, 10), zmax_inclusive=True)[0]
    assert (q1.mid, q1.hi) == (4, 8)
    steps = schedule([p1, p2])
    assert [(z, up) for z, up, _ in steps] == [(0, True), (1, True), (4, True), (5, True), (6, True),
                                              (3, False), (2, False)]
    with pytest.raises(CaseError, match="lies outside the volume"):
        plan_3d(np.array([[0, 0, -10, 9, 9, 3]]), (20, 10, 10))  # middle slice -4 (DAFT: KeyError)


def _run_python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=env, timeout=120).stdout


def test_inference_imports_no_torch() -> None:
    """No torch, and nothing of daftseg beyond what the challenge container copies (Dockerfile)."""
    out = _run_python(
        "import sys, daftseg.inference\n"
        "print('light', sorted(m for m in ('cv2', 'openvino', 'torch') if m in sys.modules))\n"
        "from daftseg.inference import Segmenter, InferenceOptions\n"
        "import daftseg.inference.runner, daftseg.inference.case2d, daftseg.inference.case3d\n"
        "import daftseg.inference.overlay, daftseg.inference.sessions as s\n"
        "ov = s.import_openvino(); ov.Core()\n"
        "other = [m for m in sys.modules if m.startswith('daftseg.')\n"
        "         and not m.startswith(('daftseg.inference', 'daftseg.geometry', 'daftseg.atomic'))]\n"
        "print('others', other)\n"
        "print('torch' in sys.modules, 'openvino.tools.ovc' in sys.modules, callable(ov.convert_model))\n")
    assert "light []" in out
    assert "others []" in out  # the container ships only daftseg/inference, geometry.py and atomic.py
    assert out.strip().endswith("False False True")


def _mapping_rss_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (from /proc/self/smaps)."""
    total, current = 0, None
    with open("/proc/self/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and ":" in parts[3]:  # a mapping header
                current = parts[5] if len(parts) > 5 else None
            elif parts[0] == "Rss:" and current == str(path):
                total += int(parts[1])
    return total


def test_release_mapped_pages_drops_resident_pages_not_data(tmp_path: Path) -> None:
    import mmap

    from daftseg.inference.mapped_files import release_mapped_pages

    data = np.random.default_rng(0).integers(0, 255, 8 << 20, dtype=np.uint8)
    blob, other = tmp_path / "model.blob", tmp_path / "notes.txt"
    blob.write_bytes(data.tobytes())
    other.write_bytes(data.tobytes())
    with open(blob, "rb") as fb, open(other, "rb") as fo, \
            mmap.mmap(fb.fileno(), 0, prot=mmap.PROT_READ) as mb, mmap.mmap(fo.fileno(), 0, prot=mmap.PROT_READ) as mo:
        view, view_other = np.frombuffer(mb, np.uint8), np.frombuffer(mo, np.uint8)
        assert int(view.sum(dtype=np.int64)) == int(view_other.sum(dtype=np.int64))  # touch every page
        assert _mapping_rss_kb(blob) > 6000 and _mapping_rss_kb(other) > 6000
        assert release_mapped_pages([tmp_path]) >= 8 << 20
        assert _mapping_rss_kb(blob) < 1000  # given back ...
        assert _mapping_rss_kb(other) > 6000  # ... only for the suffixes asked for
        np.testing.assert_array_equal(view, data)  # and read back intact from the file
        del view, view_other
