"""DICOM in, DICOM SEG out (issue 26): ``daftseg-segment -o seg.dcm`` on a rotated, anisotropic CT
series writes a Segmentation that highdicom and pydicom read back voxel-equal to the NIfTI output of
the same boxes, with every frame on its slice by ImagePositionPatient, that Debian's ``dciodvfy``
accepts, and that ``--boxes_from seg.dcm`` reads back; bad sources fail cleanly.

References are independent of daftseg's DICOM code: slices are matched by SimpleITK's physical
points of the NIfTI output and the source files' own ImagePositionPatient, and codes are literals
from SNOMED CT / DICOM part 16.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture
from scan_writers import ROTATED, write_dicom_series, write_volume

pydicom = pytest.importorskip("pydicom", reason="the data extra (pydicom) is not installed")
hd = pytest.importorskip("highdicom", reason="the data extra (highdicom) is not installed")

from daftseg import __version__, segment

SHAPE = (8, 36, 44)  # (z, y, x)
UID = "1.2.826.0.1.3680043.2.1125.1.424242"  # write_dicom_series' default series
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
BOXES = [{"box": [6, 7, 1, 24, 21, 6], "label": 4, "name": "Liver"},
         {"box": [26, 19, 2, 38, 30, 7], "label": 9, "name": "left kidney"}]


def _ct() -> np.ndarray:
    yy, xx = np.mgrid[:SHAPE[1], :SHAPE[2]]
    ct = np.full(SHAPE, -1000, np.int16)
    for z in range(SHAPE[0]):
        ct[z][(yy - 14) ** 2 / 60 + (xx - 15) ** 2 / 80 < 1 + 0.1 * z] = 60
        ct[z][(yy - 25) ** 2 + (xx - 32) ** 2 < 30] = 200
    return ct


def _segment(*args) -> int:
    return segment.main([*map(str, args), "--precision", "f32", "--cache_dir", ""])


def _source_positions(folder) -> dict[str, np.ndarray]:
    """SOPInstanceUID -> ImagePositionPatient of each source file."""
    out = {}
    for path in folder.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = np.array([float(v) for v in ds.ImagePositionPatient])
    return out


def _slice_of(position, nifti) -> int:
    """The slice k of ``nifti`` whose voxel (0, 0, k) is at ``position`` (within 1e-3 mm)."""
    points = np.array([nifti.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(nifti.GetSize()[2])])
    dist = np.linalg.norm(points - np.asarray(position, np.float64), axis=1)
    assert dist.min() < 1e-3, (position, dist.min())
    return int(np.argmin(dist))


@pytest.fixture
def written(tmp_path, toy_models_dir):  # noqa: F811
    """One series segmented twice with the same boxes: seg.nii.gz and seg.dcm."""
    folder = write_dicom_series(tmp_path / "series", _ct(), direction=ROTATED)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(BOXES))
    for out in ("seg.nii.gz", "seg.dcm"):
        assert _segment("--image", folder, "--boxes", boxes, "-m", toy_models_dir, "-o", tmp_path / out) == 0
    return tmp_path, folder


def test_seg_frames_equal_the_nifti_output_on_their_slices(written):
    tmp_path, folder = written
    nifti = sitk.ReadImage(str(tmp_path / "seg.nii.gz"))
    expected = sitk.GetArrayFromImage(nifti)
    assert set(np.unique(expected)) == {0, 4, 9}
    sources = _source_positions(folder)
    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    source = pydicom.dcmread(next(folder.iterdir()), stop_before_pixels=True)

    # what it is and what it references
    assert ds.SOPClassUID == SEG_CLASS and ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.SeriesDescription == "daftseg CT"
    assert ds.SeriesInstanceUID != UID and ds.SOPInstanceUID not in sources
    assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.FrameOfReferenceUID == f"{UID}.3"
    [ref] = ds.ReferencedSeriesSequence
    assert ref.SeriesInstanceUID == UID
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} == set(sources)

    # segments: numbered 1, 2 for label values 4, 9; names, property codes, the algorithm
    segments = {int(s.SegmentNumber): s for s in ds.SegmentSequence}
    assert sorted(segments) == [1, 2]
    assert [segments[n].SegmentLabel for n in (1, 2)] == ["Liver", "left kidney"]
    for n, kind in ((1, "10200004"), (2, "64033007")):  # SNOMED CT liver, kidney
        s = segments[n]
        category, prop = s.SegmentedPropertyCategoryCodeSequence[0], s.SegmentedPropertyTypeCodeSequence[0]
        assert (category.CodeValue, category.CodingSchemeDesignator) == ("91723000", "SCT")  # anatomical structure
        assert (prop.CodeValue, prop.CodingSchemeDesignator) == (kind, "SCT")
        assert s.SegmentAlgorithmType == "SEMIAUTOMATIC" and s.SegmentAlgorithmName == "daftseg CT"
        algorithm = s.SegmentationAlgorithmIdentificationSequence[0]
        assert algorithm.AlgorithmName == "daftseg CT" and algorithm.AlgorithmVersion == __version__

    # pydicom: every frame on the slice its ImagePositionPatient names, equal to the NIfTI there
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), *SHAPE[1:])
    value = {1: 4, 2: 9}
    seen = set()
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        position = [float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient]
        k = _slice_of(position, nifti)
        [derived] = group.DerivationImageSequence[0].SourceImageSequence
        assert np.allclose(sources[derived.ReferencedSOPInstanceUID], position, atol=1e-4)  # its own instance
        assert np.array_equal(frame.astype(bool), expected[k] == value[number]), (number, k)
        seen.add((number, k))
    # frames for the slices that hold a segment, and no others
    holds = {(n, k) for n, v in value.items() for k in range(SHAPE[0]) if (expected[k] == v).any()}
    assert seen == holds and len(frames) == len(holds)

    # highdicom: the segments by source instance, in the NIfTI's slice order
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    order = sorted(sources, key=lambda uid: _slice_of(sources[uid], nifti))
    pixels = seg.get_pixels_by_source_instance(order, combine_segments=True, relabel=False)
    assert np.array_equal(np.array([0, 4, 9])[pixels], expected)

    # the sidecars of a .dcm output
    side = json.loads((tmp_path / "seg.dcm.json").read_text())
    assert side["labels_file"] == "seg.dcm" and [b["label"] for b in side["boxes"]] == [4, 9]
    assert json.loads((tmp_path / "seg.dcm.boxes.json").read_text())["boxes"][1]["name"] == "left kidney"


def test_dciodvfy_finds_no_error(written):
    tmp_path, _ = written
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian's dicom3tools) is not installed; .ci/run installs it")
    res = subprocess.run(["dciodvfy", str(tmp_path / "seg.dcm")], capture_output=True, text=True, timeout=60,
                         check=False)  # the lines say what is wrong; the exit code is checked below
    lines = (res.stdout + res.stderr).splitlines()
    print("\n".join(lines[-5:]))
    assert "Segmentation" in lines, lines  # the IOD it checked against
    assert not [line for line in lines if line.startswith("Error")], lines
    assert res.returncode == 0, lines


def test_boxes_from_a_seg_repeat_the_segments(written, toy_models_dir):  # noqa: F811
    tmp_path, folder = written
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "seg.nii.gz")))
    assert _segment("--image", folder, "--boxes_from", tmp_path / "seg.dcm", "-m", toy_models_dir,
                    "-o", tmp_path / "again.dcm") == 0
    side = json.loads((tmp_path / "again.dcm.json").read_text())
    assert side["box_source"] == "boxes_from"
    got = [(b["label"], b["name"], b["box_voxel"]) for b in side["boxes"]]
    want = []
    for number, (value, name) in enumerate(((4, "Liver"), (9, "left kidney")), start=1):
        zs, ys, xs = np.nonzero(expected == value)
        want.append((number, name, [int(xs.min()), int(ys.min()), int(zs.min()),
                                    int(xs.max()), int(ys.max()), int(zs.max())]))
    assert got == want


def test_boxes_from_a_seg_of_another_writer(tmp_path):
    """A FRACTIONAL SEG whose frames follow the source files in reverse order, with two overlapping
    segments (written with highdicom directly, as another tool would): boxes by frame position."""
    from daftseg.io import read_scan
    from daftseg.io.dicom_seg import seg_boxes

    folder = write_dicom_series(tmp_path / "series", _ct(), direction=ROTATED)
    geometry = read_scan(folder).geometry
    files = sorted(folder.iterdir())[::-1]  # write_dicom_series names slice z "424242_{z:03d}.dcm"
    sources = [pydicom.dcmread(f) for f in files]
    masks = np.zeros((SHAPE[0], *SHAPE[1:], 2), np.float32)  # (frames in files' order, y, x, segment)
    masks[SHAPE[0] - 1 - 2, 5:9, 10:20, 0] = 1.0  # slice 2
    masks[SHAPE[0] - 1 - 5, 7:8, 12:13, 0] = 0.9  # slice 5
    masks[SHAPE[0] - 1 - 3, 6:30, 3:40, 1] = 0.6  # slice 3, overlapping segment 1's box
    masks[SHAPE[0] - 1 - 4, 0:36, 0:44, 1] = 0.2  # below half: not segmented
    code = hd.sr.CodedConcept("85756007", "SCT", "Tissue")
    segments = [hd.seg.SegmentDescription(n, name, code, code, "MANUAL") for n, name in ((1, "a"), (2, "b"))]
    seg = hd.seg.Segmentation(sources, masks, "FRACTIONAL", segments, hd.UID(), 7, hd.UID(), 1, "other", "tool",
                              "1", "1", max_fractional_value=100)
    seg.save_as(tmp_path / "other.dcm")
    boxes, values, names = seg_boxes(tmp_path / "other.dcm", geometry)
    assert boxes.tolist() == [[10, 5, 2, 19, 8, 5], [3, 6, 3, 39, 29, 3]]
    assert values.tolist() == [1, 2] and names == ["a", "b"]


def test_an_empty_result_is_no_seg(tmp_path):
    """A SEG holds frames of segmented slices only: with none, the writer refuses and writes nothing."""
    from daftseg.io import ResultBox, ResultInfo, read_scan, write_result
    from daftseg.io.dicom_series import source_series

    folder = write_dicom_series(tmp_path / "series", _ct(), direction=ROTATED)
    geometry = read_scan(folder).geometry
    with pytest.raises(ValueError, match="nothing was segmented"):
        write_result(np.zeros(SHAPE, np.uint8), geometry, tmp_path / "seg.dcm", [ResultBox((1, 1, 1, 5, 5, 4), 1)],
                     ResultInfo("series", "CT", "CT"), dicom_source=source_series(folder))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def test_segment_properties_from_names():
    from daftseg.io.dicom_seg import segment_property

    cases = {"liver": "10200004", "Right Kidney": "64033007", "spleen": "78961009", "left lung": "39607008",
             "liver tumour": "108369006", "Tumor": "108369006", "bladder": "85756007", None: "85756007"}
    for name, kind in cases.items():
        category, prop = segment_property(name)
        assert prop[:2] == (kind, "SCT"), name
        assert category[0] == {"108369006": "49755003", "85756007": "85756007"}.get(kind, "91723000"), name


def test_the_inference_path_imports_no_dicom_library():
    code = ("import sys, daftseg.segment, daftseg.io.results, daftseg.io.dicom_series, daftseg.io.dicom_seg, "
            "daftseg.app.core; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydicom', 'highdicom')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


# -- bad input: one line, exit code 1, nothing written ----------------------------------------------------


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _shifted(folder, name: str, mm: float) -> None:
    """Move one file's slice ``mm`` along the z axis of the patient (an uneven gap)."""
    ds = pydicom.dcmread(folder / name)
    ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + [float(ds.ImagePositionPatient[2]) + mm]
    ds.save_as(folder / name)


def _multiframe(folder) -> None:
    """One CT file holding all slices as frames (as an enhanced scanner writes)."""
    folder.mkdir()
    one = write_dicom_series(folder.parent / "one", _ct())
    ds = pydicom.dcmread(min(one.iterdir()))
    ds.NumberOfFrames = SHAPE[0]
    ds.PixelData = _ct().tobytes()
    ds.save_as(folder / "mf.dcm")
    shutil.rmtree(one)


def _bad(tmp_path, case: str, models) -> tuple[list, str]:
    series = write_dicom_series(tmp_path / "series", _ct(), direction=ROTATED)
    out = ["-o", tmp_path / "seg.dcm"]
    box = ["--box", "6,7,1,24,21,6"]
    if case == "nifti scan":
        ct = write_volume(tmp_path / "ct.nii.gz", _ct())
        return ["--image", ct, *box, "--modality", "CT", *out], "not a DICOM series; write .nii.gz"
    if case == "missing slice":
        (series / "424242_004.dcm").unlink()
        return ["--image", series, *box, *out], "missing slices or inconsistent spacing"
    if case == "uneven spacing":
        _shifted(series, "424242_007.dcm", 1.0)
        return ["--image", series, *box, *out], "missing slices or inconsistent spacing"
    if case == "multi-frame source":
        _multiframe(tmp_path / "mf")
        return ["--image", tmp_path / "mf", *box, *out], "multi-frame image (8 frames)"
    if case == "no frame of reference":
        for path in series.iterdir():
            ds = pydicom.dcmread(path)
            del ds.FrameOfReferenceUID
            ds.save_as(path)
        return ["--image", series, *box, *out], "no FrameOfReferenceUID"
    if case == "existing output":
        (tmp_path / "seg.dcm").write_bytes(b"an earlier run")
        return ["--image", series, *box, *out], "seg.dcm already exists (pass --overwrite"
    if case == "seg of another series":
        other = write_dicom_series(tmp_path / "other", _ct(), direction=ROTATED, uid="1.2.3.4.5")
        assert _segment("--image", other, *box, "-m", models, "-o", tmp_path / "other.dcm") == 0
        return ["--image", series, "--boxes_from", tmp_path / "other.dcm", "-o", tmp_path / "x.nii.gz"], \
            "segments series 1.2.3.4.5, not this scan's"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["nifti scan", "missing slice", "uneven spacing", "multi-frame source",
                                  "no frame of reference", "existing output", "seg of another series"])
def test_bad_input_is_one_line_exit_1_nothing_written(tmp_path, toy_models_dir, capfd, case):  # noqa: F811
    args, message = _bad(tmp_path, case, toy_models_dir)
    before = _files(tmp_path)
    capfd.readouterr()
    assert _segment(*args, "-m", toy_models_dir) == 1
    captured = capfd.readouterr()  # file descriptors: a warning SimpleITK prints from C++ counts too
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert captured.out == ""
    assert _files(tmp_path) == before


# -- the app's Save -----------------------------------------------------------------------------------------


def test_the_app_saves_a_seg_for_a_dicom_series_only(tmp_path, toy_models_dir):  # noqa: F811
    pytest.importorskip("starlette", reason="the app extra (starlette) is not installed")
    from starlette.testclient import TestClient

    from daftseg.app.core import AppConfig
    from daftseg.app.handlers import create_app

    data = tmp_path / "data"
    folder = write_dicom_series(data / "series", _ct(), direction=ROTATED)
    write_volume(data / "ct.nii.gz", _ct(), direction=ROTATED)
    token = "test-token-0123456789"
    client = TestClient(create_app(AppConfig(data, toy_models_dir, cache_dir="", token=token)),
                        base_url="http://127.0.0.1:8765", headers={"Authorization": f"Bearer {token}"})
    ids = {}
    for path in ("series", "ct.nii.gz"):
        r = client.post("/api/open", json={"path": path, "modality": "CT"})
        assert r.status_code == 200, r.text
        ids[path] = r.json()["id"]
        for box in BOXES:
            added = client.post(f"/api/scans/{ids[path]}/boxes",
                                json={"box": {"coords": box["box"], "label": box["label"], "name": box["name"],
                                              "slice": 3}})
            assert added.status_code == 200, added.text

    r = client.post(f"/api/scans/{ids['series']}/save", json={"output": "series_seg.dcm"})
    assert r.status_code == 200, r.text
    assert r.json()["written"] == ["series_seg.dcm", "series_seg.dcm.json", "series_seg.dcm.boxes.json"]
    # the same boxes through daftseg-segment to NIfTI: the SEG holds those voxels on those slices
    assert _segment("--image", folder, "--boxes", data / "series_seg.dcm.boxes.json", "-m", toy_models_dir,
                    "-o", tmp_path / "ref.nii.gz") == 0
    nifti = sitk.ReadImage(str(tmp_path / "ref.nii.gz"))
    sources = _source_positions(folder)
    order = sorted(sources, key=lambda uid: _slice_of(sources[uid], nifti))
    seg = hd.seg.segread(data / "series_seg.dcm")
    pixels = seg.get_pixels_by_source_instance(order, combine_segments=True, relabel=False)
    assert np.array_equal(np.array([0, 4, 9])[pixels], sitk.GetArrayFromImage(nifti))
    assert seg.SeriesDescription == "daftseg CT"

    r = client.post(f"/api/scans/{ids['series']}/save", json={"output": "series_seg.dcm"})
    assert r.status_code == 409 and r.json()["exists"][0] == "series_seg.dcm"
    r = client.post(f"/api/scans/{ids['ct.nii.gz']}/save", json={"output": "ct_seg.dcm"})
    assert r.status_code == 400 and "not a DICOM series; write .nii.gz" in r.json()["error"]
    assert not list(data.glob("ct_seg*"))
