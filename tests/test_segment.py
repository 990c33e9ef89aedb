"""daftseg-segment: the same labels as the batch path, on the scan's own grid; bad input fails cleanly.

The batch path is what a user did before: the converters write a challenge npz, the batch runner
(``PerfectMetaOpenVINO.py``'s ``main``) writes ``segs``, and the test puts ``segs`` back on the grid
itself. Models are the toy IR of ``ov_toy_models`` (DAFT's tensor names, masks that follow the box
and the image), compiled at f32 so that results do not depend on the host CPU.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture
from scan_writers import ROTATED, write_dicom_series, write_volume

from daftseg import segment
from daftseg.data import converters
from daftseg.inference import runner

SHAPE = (8, 36, 44)  # (z, y, x)


def _ct() -> np.ndarray:
    yy, xx = np.mgrid[:SHAPE[1], :SHAPE[2]]
    ct = np.full(SHAPE, -1000, np.int16)
    for z in range(SHAPE[0]):
        organ = (yy - 14) ** 2 / 60 + (xx - 15) ** 2 / 80 < 1 + 0.1 * z
        ct[z][organ] = 60
        ct[z][(yy - 25) ** 2 + (xx - 32) ** 2 < 30] = 200
    ct[0, 0, 0] = 1000
    return ct


def _labels() -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[1:6, 7:22, 6:25] = 4
    lab[2:8, 19:31, 26:39] = 9  # overlaps label 4's box in x and y: the later box wins there
    return lab


BOX_4 = (6, 7, 1, 24, 21, 5)  # lab[1:6, 7:22, 6:25]
BOX_9 = (26, 19, 2, 38, 30, 7)  # lab[2:8, 19:31, 26:39]


def _segment(*args: str) -> int:
    return segment.main([*map(str, args), "--precision", "f32", "--cache_dir", ""])


def test_nifti_matches_the_batch_path_voxel_for_voxel(tmp_path, toy_models_dir, capsys):  # noqa: F811
    image = write_volume(tmp_path / "ct.nii.gz", _ct(), direction=ROTATED)
    label = write_volume(tmp_path / "lab.nii.gz", _labels(), direction=ROTATED)
    # the batch path routes "3DBox_CT..." names; give the converter that name
    out = tmp_path / "batch"
    assert converters.main(["nifti", str(image), str(label), "-o", str(out), "--modality", "CT",
                            "--name", "3DBox_CT_ct"]) == 0
    assert runner.main(["-i", str(out / "imgs"), "-o", str(out / "segs"), "-m", str(toy_models_dir),
                        "--precision", "f32", "--cache_dir", ""]) == 0
    with np.load(out / "segs" / "3DBox_CT_ct.npz") as s, np.load(out / "imgs" / "3DBox_CT_ct.npz") as c:
        segs, boxes = s["segs"], c["boxes"]
    # the boxes of _labels(), read off by hand: [x_min, y_min, z_min, x_max, y_max, z_max] of labels 4 and 9
    assert segs.max() == 2 and boxes.tolist() == [list(BOX_4), list(BOX_9)]
    by_hand = np.array([0, 4, 9])[segs]  # box k <-> converter label k <-> source ids 4, 9 in order

    # 1) boxes derived from the label file, as the converters do
    assert _segment("--image", image, "--boxes_from", label, "--modality", "CT", "-m", toy_models_dir,
                    "-o", tmp_path / "a.nii.gz") == 0
    a = sitk.ReadImage(str(tmp_path / "a.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(a), by_hand)
    _assert_follows_the_reference(sitk.GetArrayFromImage(a))
    assert a.GetSize() == sitk.ReadImage(str(image)).GetSize()
    assert np.allclose(a.GetDirection(), ROTATED, atol=1e-5) and np.allclose(a.GetSpacing(), (0.7, 0.8, 2.5))
    assert "model CT" in capsys.readouterr().out

    # 2) the same boxes from a JSON file, with label values and names -> sidecar
    entries = [{"box": b.tolist(), "label": v, "name": n} for b, v, n in zip(boxes, (4, 9), ("liver", "kidney"),
                                                                             strict=True)]
    (tmp_path / "boxes.json").write_text(json.dumps(entries))
    assert _segment("--image", image, "--boxes", tmp_path / "boxes.json", "--modality", "CT", "-m", toy_models_dir,
                    "-o", tmp_path / "b.nii.gz") == 0
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b.nii.gz"))), by_hand)
    side = json.loads((tmp_path / "b.nii.gz.json").read_text())
    assert [(e["label"], e["name"], e["box_voxel"]) for e in side["boxes"]] == [
        (4, "liver", boxes[0].tolist()), (9, "kidney", boxes[1].tolist())]
    assert side["model"] == "CT" and side["labels_file"] == "b.nii.gz"
    assert [e["voxels"] for e in side["boxes"]] == [int((segs == 1).sum()), int((segs == 2).sum())]
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b.nii.gz")))
    assert [e["voxels"] for e in side["boxes"]] == [int((written == 4).sum()), int((written == 9).sum())]
    assert side["boxes_file"] == "b.nii.gz.boxes.json"

    # 3) the same boxes in world millimetres (corner voxels' physical points) give the same voxel boxes;
    # on an axis-aligned copy (on a rotated grid a world box covers the voxel box around its corners)
    plain = np.array([0, 1, 2])[segs]  # --box: labels 1, 2 in order
    aligned = write_volume(tmp_path / "aligned.nii.gz", _ct())
    ascan = sitk.ReadImage(str(aligned))
    world = []
    for b in boxes:
        pa = ascan.TransformIndexToPhysicalPoint([int(v) for v in b[:3]])
        pb = ascan.TransformIndexToPhysicalPoint([int(v) for v in b[3:]])
        world += ["--box", ",".join(f"{v:.6f}" for v in (*pa, *pb))]
    assert _segment("--image", aligned, *world, "--box_space", "world", "--modality", "CT", "-m", toy_models_dir,
                    "-o", tmp_path / "w.nii.gz") == 0
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "w.nii.gz"))), plain)
    assert json.loads((tmp_path / "w.nii.gz.json").read_text())["boxes"][0]["box_voxel"] == boxes[0].tolist()

    # 4) the boxes file that run 1 wrote repeats it
    assert json.loads((tmp_path / "a.nii.gz.boxes.json").read_text()) == {"boxes": [
        {"box": list(BOX_4), "label": 4, "name": None}, {"box": list(BOX_9), "label": 9, "name": None}]}
    assert _segment("--image", image, "--boxes", tmp_path / "a.nii.gz.boxes.json", "--modality", "CT",
                    "-m", toy_models_dir, "-o", tmp_path / "again.nii.gz") == 0
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "again.nii.gz"))), by_hand)


def _assert_follows_the_reference(got: np.ndarray) -> None:
    """Expectations from the spec and the reference labels, not from daftseg: DAFT segments slices
    z_min..z_max-1 of a box (label 4: 1..4, label 9: 2..6), the toy model's masks follow the box (within
    one voxel of it in x and y) and cover most of the reference object on those slices."""
    reference = _labels()
    for value, (x0, y0, z0, x1, y1, z1) in ((4, BOX_4), (9, BOX_9)):
        zs, ys, xs = np.nonzero(got == value)
        assert sorted(set(zs.tolist())) == list(range(z0, z1)), value
        assert x0 - 1 <= xs.min() and xs.max() <= x1 + 1 and y0 - 1 <= ys.min() and ys.max() <= y1 + 1, value
        ref = reference[z0:z1] == value
        assert ((got[z0:z1] == value) & ref).sum() >= 0.8 * ref.sum(), value


def test_dicom_series_matches_the_batch_path(tmp_path, toy_models_dir, capsys):  # noqa: F811
    folder = write_dicom_series(tmp_path / "series", _ct(), direction=ROTATED)
    label = write_volume(tmp_path / "lab.nii.gz", _labels(), direction=ROTATED)
    out = tmp_path / "batch"
    assert converters.main(["dicom", str(folder), str(label), "-o", str(out)]) == 0  # modality from the tag
    assert runner.main(["-i", str(out / "imgs"), "-o", str(out / "segs"), "-m", str(toy_models_dir),
                        "--precision", "f32", "--cache_dir", ""]) == 0
    with np.load(out / "segs" / "3DBox_CT_series.npz") as s:
        by_hand = np.array([0, 4, 9])[s["segs"]]
    capsys.readouterr()
    assert _segment("--image", folder, "--boxes_from", label, "-m", toy_models_dir, "-o", tmp_path / "d.nii.gz") == 0
    assert "dicom CT 8x36x44" in capsys.readouterr().out
    result = sitk.ReadImage(str(tmp_path / "d.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(result), by_hand)
    assert np.allclose(result.GetDirection(), ROTATED, atol=1e-5)
    _assert_follows_the_reference(sitk.GetArrayFromImage(result))
    side = json.loads((tmp_path / "d.nii.gz.json").read_text())
    assert side["geometry"]["series_uid"].endswith("424242") and side["modality"] == "CT"


def test_png_matches_the_batch_path(tmp_path, toy_models_dir):  # noqa: F811
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 60, (70, 90, 3), dtype=np.uint8)
    rgb[10:40, 15:50] += 150
    cv2.imwrite(str(tmp_path / "photo.png"), rgb[:, :, ::-1])
    mask = np.zeros((70, 90), np.uint8)
    mask[10:40, 15:50] = 1
    mask[45:65, 55:85] = 2
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    out = tmp_path / "batch"
    assert converters.main(["image", str(tmp_path / "photo.png"), str(tmp_path / "mask.png"), "-o", str(out),
                            "--modality", "Dermoscopy"]) == 0
    assert runner.main(["-i", str(out / "imgs"), "-o", str(out / "segs"), "-m", str(toy_models_dir),
                        "--precision", "f32", "--cache_dir", ""]) == 0
    with np.load(out / "segs" / "2DBox_Dermoscopy_photo.npz") as s, \
            np.load(out / "imgs" / "2DBox_Dermoscopy_photo.npz") as c:
        segs, boxes = s["segs"], c["boxes"]
    box_args = [a for b in boxes for a in ("--box", ",".join(map(str, b)))]
    assert _segment("--image", tmp_path / "photo.png", *box_args, "--modality", "Dermoscopy", "-m", toy_models_dir,
                    "-o", tmp_path / "seg.png") == 0
    got = cv2.imread(str(tmp_path / "seg.png"), cv2.IMREAD_UNCHANGED)
    assert got.shape == (70, 90) and segs.max() == 2 and np.array_equal(got, segs)
    # by hand from the mask: the boxes, and masks that stay in their box and cover most of the object
    assert boxes.tolist() == [[15, 10, 49, 39], [55, 45, 84, 64]]
    for value, (x0, y0, x1, y1) in ((1, (15, 10, 49, 39)), (2, (55, 45, 84, 64))):
        ys, xs = np.nonzero(got == value)
        assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1
        assert ((got == value) & (mask == value)).sum() >= 0.8 * (mask == value).sum()


def test_a_3d_and_a_2d_label_map_in_one_folder_keep_their_own_files(tmp_path, toy_models_dir):  # noqa: F811
    """seg.nii.gz and then seg.png, no --overwrite: the second is not refused over the first's sidecar."""
    ct = write_volume(tmp_path / "ct.nii.gz", _ct())
    cv2.imwrite(str(tmp_path / "p.png"), np.full((20, 30, 3), 90, np.uint8))
    out = tmp_path / "out"
    assert _segment("--image", ct, "--box", "1,1,1,5,5,4", "--modality", "CT", "-m", toy_models_dir,
                    "-o", out / "seg.nii.gz") == 0
    assert _segment("--image", tmp_path / "p.png", "--box", "2,2,9,9", "--modality", "Dermoscopy",
                    "-m", toy_models_dir, "-o", out / "seg.png") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"seg.{ext}{end}" for ext in ("nii.gz", "png") for end in ("", ".json", ".boxes.json"))
    for ext in ("nii.gz", "png"):
        side = json.loads((out / f"seg.{ext}.json").read_text())
        assert side["labels_file"] == f"seg.{ext}" and side["boxes_file"] == f"seg.{ext}.boxes.json"


def test_help_states_the_box_convention(capsys):
    with pytest.raises(SystemExit) as exit_:
        segment.main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("x_min,y_min,z_min,x_max,y_max,z_max", "x = column, y = row, z = slice", "array[z, y, x]",
                   "LPS", "--box_space", ".dcm (a DICOM Segmentation referencing the scan's DICOM series",
                   "z_max > z_min",
                   "seg.nii.gz -> seg.nii.gz.json", "seg.nii.gz.boxes.json, which --boxes reads"):
        assert phrase in text, phrase


# -- bad input: one line, exit code 1, nothing written ----------------------------------------------------


def _files(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _bad_cases(tmp_path) -> dict[str, tuple[list, str]]:
    ct = write_volume(tmp_path / "ct.nii.gz", _ct())
    (tmp_path / "junk.nii.gz").write_bytes(b"this is not a NIfTI file")
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((20, 30, 3), np.uint8))
    two = write_dicom_series(tmp_path / "two", _ct(), uid="1.2.3.4.111")
    write_dicom_series(two, _ct(), uid="1.2.3.4.222")
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "old_seg.nii.gz").write_bytes(b"an earlier run")
    (tmp_path / "kept.nii.gz.boxes.json").write_text("boxes of an earlier run")
    box3 = ["--box", "1,1,1,5,5,4"]
    return {
        "missing file": (["--image", tmp_path / "nope.nii.gz", *box3, "--modality", "CT"], "no such file"),
        "unreadable format": (["--image", tmp_path / "junk.nii.gz", *box3, "--modality", "CT"],
                              "SimpleITK cannot read"),
        "box outside the scan": (["--image", ct, "--box", "1,1,1,44,5,4", "--modality", "CT"],
                                 "lies outside the scan (x 0..43, y 0..35, z 0..7"),
        "3D box for a 2D image": (["--image", tmp_path / "p.png", *box3], "has 6 numbers but the scan is 2D"),
        "several DICOM series": (["--image", two, *box3], "holds 2 DICOM series; choose one with --series_id"),
        "unwritable output": (["--image", ct, *box3, "--modality", "CT", "-o", tmp_path / "a_file" / "s.nii.gz"],
                              "is not a folder"),
        "existing output": (["--image", ct, *box3, "--modality", "CT", "-o", tmp_path / "old_seg.nii.gz"],
                            "already exists (pass --overwrite"),
        "existing boxes file of the output": (["--image", ct, *box3, "--modality", "CT", "-o",
                                               tmp_path / "kept.nii.gz"], "kept.nii.gz.boxes.json already exists"),
        "output is the input": (["--image", ct, *box3, "--modality", "CT", "-o", ct, "--overwrite"],
                                "is the input"),
        "no modality for a NIfTI": (["--image", ct, *box3], "give --modality"),
        "model name with a path": (["--image", ct, *box3, "--modality", "CT", "--model", "../x"],
                                   "a model name has letters"),
        "DICOM SEG output": (["--image", ct, *box3, "--modality", "CT", "-o", tmp_path / "seg.dcm"],
                             "this scan is nifti, not a DICOM series; write .nii.gz"),
    }


@pytest.mark.parametrize("case", ["missing file", "unreadable format", "box outside the scan",
                                  "3D box for a 2D image", "several DICOM series", "unwritable output",
                                  "existing output", "existing boxes file of the output", "output is the input", "no modality for a NIfTI",
                                  "model name with a path", "DICOM SEG output"])
def test_bad_input_is_one_line_exit_1_nothing_written(tmp_path, toy_models_dir, capsys, monkeypatch,  # noqa: F811
                                                      case):
    monkeypatch.chdir(tmp_path)  # the default output would land here
    args, message = _bad_cases(tmp_path)[case]
    before = _files(tmp_path)
    old = (tmp_path / "old_seg.nii.gz").read_bytes()
    capsys.readouterr()
    assert _segment(*args, "-m", toy_models_dir) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert captured.out == ""
    assert _files(tmp_path) == before and (tmp_path / "old_seg.nii.gz").read_bytes() == old


def test_failed_write_leaves_nothing(tmp_path, toy_models_dir, monkeypatch, capsys):  # noqa: F811
    ct = write_volume(tmp_path / "ct.nii.gz", _ct())

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("daftseg.io.results.write_label_image", full_disk)
    before = _files(tmp_path)
    assert _segment("--image", ct, "--box", "1,1,1,5,5,4", "--modality", "CT", "-m", toy_models_dir,
                    "-o", tmp_path / "out" / "s.nii.gz") == 1
    assert "No space left on device" in capsys.readouterr().err
    assert _files(tmp_path) - before <= {"out"} and not list((tmp_path).rglob("s.*"))


def test_npz_case_routes_by_its_own_name(tmp_path, toy_models_dir):  # noqa: F811
    imgs = (np.arange(np.prod(SHAPE)).reshape(SHAPE) % 251).astype(np.uint8)
    boxes = np.array([[6, 7, 1, 24, 21, 5]])
    (tmp_path / "imgs").mkdir()
    np.savez(tmp_path / "imgs" / "3DBox_MR_0001.npz", imgs=imgs, boxes=boxes)
    assert runner.main(["-i", str(tmp_path / "imgs"), "-o", str(tmp_path / "segs"), "-m", str(toy_models_dir),
                        "--precision", "f32", "--cache_dir", ""]) == 0
    assert _segment("--image", tmp_path / "imgs" / "3DBox_MR_0001.npz", "--box", "6,7,1,24,21,5", "-m", toy_models_dir,
                    "-o", tmp_path / "mine.npz") == 0
    with np.load(tmp_path / "segs" / "3DBox_MR_0001.npz") as a, np.load(tmp_path / "mine.npz") as b:
        assert np.array_equal(a["segs"], b["segs"]) and a["segs"].any()
    assert json.loads((tmp_path / "mine.npz.json").read_text())["model"] == "3D"
