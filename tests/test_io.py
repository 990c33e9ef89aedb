"""daftseg.io: scans read into the runtime's layout with their geometry, label maps written back on it.

References are SimpleITK's own index <-> physical point transforms and files the tests write.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import SimpleITK as sitk
from scan_writers import ROTATED, SPACING_XYZ, sitk_image, write_dicom_series, write_volume

from daftseg.data import converters
from daftseg.io import Geometry, Intensity, ScanError, read_label_map, read_scan, write_labels
from daftseg.io.intensity import CT_WINDOWS
from daftseg.io.normalise import intensity_from_args
from daftseg.io.prompts import Box, BoxError, parse_box_text, read_box_file, voxel_boxes

SHAPE = (6, 20, 24)  # (z, y, x)


def _ct() -> np.ndarray:
    ct = np.full(SHAPE, -1000, np.int16)
    ct[:, 2:18, 3:21] = np.arange(18, dtype=np.int16) * 20 - 100
    ct[0, 0, 0] = 1000
    return ct


def _labels() -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    lab[1:4, 3:7, 5:11] = 5
    lab[2:6, 12:16, 14:20] = 2
    return lab


def _geometry_of(image) -> tuple:
    return image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _assert_same_grid(a, b) -> None:
    """Two SimpleITK images on one grid (NIfTI stores the header in float32: 1e-5 mm)."""
    assert a.GetSize() == b.GetSize()
    for x, y in zip(_geometry_of(a), _geometry_of(b), strict=True):
        assert np.allclose(x, y, atol=1e-5), (x, y)


def _assert_labels_on_same_points(scan, labels: np.ndarray, written) -> None:
    """Every labelled voxel of the scan, taken to its physical point, finds the same label in ``written``."""
    out = sitk.GetArrayFromImage(written)
    zs, ys, xs = np.nonzero(labels)
    for z, y, x in list(zip(zs, ys, xs, strict=True))[:: max(1, len(zs) // 60)]:
        point = scan.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
        i, j, k = written.TransformPhysicalPointToIndex(point)
        assert out[k, j, i] == labels[z, y, x]


def test_geometry_transforms_match_simpleitk():
    image = sitk_image(_ct(), direction=ROTATED)
    g = Geometry(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection(), "zyx", "nifti")
    rng = np.random.default_rng(0)
    idx = rng.uniform(-2, 30, (20, 3))
    world = g.index_to_world(idx)
    for i, p in zip(idx, world, strict=True):
        assert np.allclose(p, image.TransformContinuousIndexToPhysicalPoint(i.tolist()), atol=1e-9)
    assert np.allclose(g.world_to_index(world), idx, atol=1e-9)
    assert g.array_shape == SHAPE


@pytest.mark.parametrize("direction", [None, ROTATED])
def test_world_box_goes_to_the_voxel_box_around_its_corners(direction):
    image = sitk_image(_ct(), direction=direction)
    g = Geometry(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection(), "zyx", "nifti")
    a, b = (2, 3, 1), (10, 12, 4)
    pa, pb = np.array(image.TransformIndexToPhysicalPoint(a)), np.array(image.TransformIndexToPhysicalPoint(b))
    lo, hi = np.minimum(pa, pb), np.maximum(pa, pb)
    got = g.world_box_to_index(np.concatenate([lo, hi]))
    corners = [[(hi if (c >> ax) & 1 else lo)[ax] for ax in range(3)] for c in range(8)]
    idx = np.array([image.TransformPhysicalPointToContinuousIndex(p) for p in corners])
    expected = np.concatenate([np.rint(idx).min(0), np.rint(idx).max(0)]).astype(int)
    assert got.tolist() == expected.tolist()
    if direction is None:
        assert got.tolist() == [*a, *b]


@pytest.mark.parametrize("ext", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_volume_round_trip_keeps_geometry_and_labels_on_their_points(tmp_path, ext):
    """Read, write, read: same spacing, origin, direction; each label on the same physical point."""
    path = write_volume(tmp_path / f"ct{ext}", _ct(), direction=ROTATED)
    scan = sitk.ReadImage(str(path))
    got = read_scan(path, modality="CT")
    array, g = got.image, got.geometry
    assert array.shape == SHAPE and array.dtype == np.uint8
    assert got.modality == "CT" and not got.rgb and np.array_equal(got.raw, _ct())  # HU as stored
    assert g.axes == "zyx" and g.size == (24, 20, 6) and g.source_format == ext.strip(".").split(".")[0].replace(
        "nii", "nifti")
    assert np.allclose(g.spacing, SPACING_XYZ, atol=1e-6) and np.allclose(g.direction, ROTATED, atol=1e-5)
    labels = _labels()
    written = write_labels(labels, g, tmp_path / f"seg{ext}")
    assert written == tmp_path / f"seg{ext}"
    out = sitk.ReadImage(str(written))
    _assert_same_grid(scan, out)
    assert np.array_equal(sitk.GetArrayFromImage(out), labels)
    _assert_labels_on_same_points(scan, labels, out)
    again = read_scan(written, intensity=Intensity("none"))
    again, g2 = again.image, again.geometry
    assert again.shape == SHAPE and np.array_equal(again, labels)
    assert np.allclose(g2.origin, g.origin, atol=1e-5) and np.allclose(g2.direction, g.direction, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"ct{ext}", f"seg{ext}"])  # no temporaries


# _ct()'s ramp (columns 3..20: -100, -80, ..., 240 HU) windowed by hand, as MedSAM's pre_CT_MR.py:
# clip to [WL - WW/2, WL + WW/2], rescale the clipped data's own min..max to 0..255, truncate.
# Abdomen 40/400: [-160, 240]; the data (-1000..1000) reach both ends: (v + 160) / 400 * 255.
RAMP_ABDOMEN = [38, 51, 63, 76, 89, 102, 114, 127, 140, 153, 165, 178, 191, 204, 216, 229, 242, 255]
# Lung -600/1500: [-1350, 150]; the clipped data's min is -1000, not -1350: (v + 1000) / 1150 * 255.
RAMP_LUNG = [199, 204, 208, 212, 217, 221, 226, 230, 235, 239, 243, 248, 252, 255, 255, 255, 255, 255]


def test_intensity_by_hand_and_as_the_converters(tmp_path):
    """CT windows and MR percentile clipping give the hand-computed bytes, and the converters write the same."""
    ct_path = write_volume(tmp_path / "ct.nii.gz", _ct())
    for window, ramp in (("abdomen", RAMP_ABDOMEN), ("lung", RAMP_LUNG)):
        ct = read_scan(ct_path, modality="CT", intensity=Intensity("auto", CT_WINDOWS[window])).image
        assert ct[0, 0, 0] == 255 and ct[0, 0, 1] == 0 and ct[5, 19, 23] == 0  # 1000 HU and air
        assert (ct[:, 2:18, 3:21] == np.array(ramp, np.uint8)).all(), ct[0, 2, 3:21].tolist()
    # MR: clip to the 0.5 and 99.5 percentiles of the positive voxels (10, 20, 30, 40, 1000; linear
    # interpolation: 10 + 0.02 * 10 = 10.2 and 40 + 0.98 * 960 = 980.8), rescale, zeros stay 0:
    # (v - 10.2) / 970.6 * 255 -> 0, 2.57, 5.20, 7.83, 255
    mr_path = write_volume(tmp_path / "mr.nii.gz", np.array([[[0, 10, 20, 30, 40, 1000]]], np.float32))
    assert read_scan(mr_path, modality="MR").image.ravel().tolist() == [0, 0, 2, 5, 7, 255]

    lab_path = write_volume(tmp_path / "lab.nii.gz", _labels())
    vol, lab = converters.read_volume(ct_path), converters.read_volume(lab_path)
    for modality, window in (("CT", "abdomen"), ("CT", "lung"), ("MR", "abdomen")):
        args = converters.build_parser().parse_args(["nifti", "x", "y", "-o", "o", "--modality", modality,
                                                     "--window", window])
        intensity = intensity_from_args(args)
        assert intensity.window == CT_WINDOWS[window]
        expected = converters.convert_volume(vol, lab, modality, window=intensity.window).imgs
        assert np.array_equal(read_scan(ct_path, modality=modality, intensity=intensity).image, expected)


def test_windowing_by_table_by_hand():
    """The table path (integer volumes over 65536 voxels) on values worked out by hand (abdomen window)."""
    from daftseg.io.normalise import TABLE_MIN_VOXELS, normalise_volume

    hu = np.tile(np.array([-1000, -160, 40, 240, 1000], np.int16), 20000)
    assert hu.size > TABLE_MIN_VOXELS
    # [-160, 240] over data reaching both: (v + 160) / 400 * 255 = 0, 0, 127.5, 255, 255 (clipped), truncated
    assert np.array_equal(normalise_volume(hu, "CT", "window", (40.0, 400.0)),
                          np.tile(np.array([0, 0, 127, 255, 255], np.uint8), 20000))


@pytest.mark.parametrize("dtype, lo, hi", [(np.int16, -1024, 3000), (np.int16, -100, 200), (np.int16, -32768, 32767),
                                           (np.uint16, 0, 5000), (np.uint8, 3, 250), (np.int32, -2000, 70000)])
@pytest.mark.parametrize("window", [(40.0, 400.0), (-600.0, 1500.0), (40.0, 80.0)])
def test_windowing_by_table_gives_window_cts_bytes(dtype, lo, hi, window):
    """The fast path (a table over the values present) equals the float64 windowing voxel for voxel."""
    from daftseg.io.intensity import window_ct
    from daftseg.io.normalise import TABLE_MIN_VOXELS, normalise_volume

    data = np.random.default_rng(1).integers(lo, hi, (4, 200, 200), endpoint=True).astype(dtype)
    got = normalise_volume(data, "CT", "window", window)
    assert got.dtype == np.uint8 and np.array_equal(got, window_ct(data, *window))
    strided = data[:, ::2, :]  # a non-contiguous view takes the same path
    assert strided.size > TABLE_MIN_VOXELS and not strided.flags.c_contiguous
    assert np.array_equal(normalise_volume(strided, "CT", "window", window), window_ct(strided, *window))


def test_dicom_series_round_trip_with_rotation(tmp_path):
    folder = write_dicom_series(tmp_path / "series", _ct(), direction=ROTATED)
    got = read_scan(folder)  # modality from the tag: CT windowing
    array, g = got.image, got.geometry
    assert g.source_format == "dicom" and g.modality == "CT" and g.series_uid.endswith("424242")
    assert got.modality == "CT" and np.array_equal(array, read_scan(folder, modality="CT").image)
    assert (array[:, 2:18, 3:21] == np.array(RAMP_ABDOMEN, np.uint8)).all() and array[0, 0, 0] == 255
    assert np.allclose(g.spacing, SPACING_XYZ, atol=1e-4) and np.allclose(g.direction, ROTATED, atol=1e-5)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    scan = reader.Execute()
    labels = _labels()
    out_path = write_labels(labels, g, tmp_path / "seg.nii.gz")
    out = sitk.ReadImage(str(out_path))
    _assert_same_grid(scan, out)
    _assert_labels_on_same_points(scan, labels, out)
    # a DICOM SEG needs its boxes and model (write_result, tests/test_dicom_seg.py); a NIfTI scan has no
    # DICOM instances to reference
    with pytest.raises(ScanError, match="written with its boxes and model"):
        write_labels(labels, g, tmp_path / "seg.dcm")
    nifti = read_scan(write_volume(tmp_path / "ct.nii.gz", _ct(), direction=ROTATED), modality="CT").geometry
    with pytest.raises(ScanError, match="this scan is nifti, not a DICOM series; write .nii.gz"):
        write_labels(labels, nifti, tmp_path / "seg.dcm")
    assert not list(tmp_path.glob("seg.dcm*"))


def test_several_dicom_series_need_a_series_id(tmp_path):
    folder = write_dicom_series(tmp_path / "two", _ct(), uid="1.2.3.4.111")
    write_dicom_series(folder, _ct() + 7, uid="1.2.3.4.222")
    with pytest.raises(ValueError, match=r"holds 2 DICOM series; choose one with --series_id: .*1\.2\.3\.4\.111"):
        read_scan(folder)
    raw = read_scan(folder, series_id="1.2.3.4.222", intensity=Intensity("window", (0, 4000)))
    assert raw.geometry.series_uid == "1.2.3.4.222"
    with pytest.raises(ValueError, match="series 9.9 not in"):
        read_scan(folder, series_id="9.9")


def test_png_scan_and_label_png(tmp_path):
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 120, 30
    cv2.imwrite(str(tmp_path / "photo.png"), rgb[:, :, ::-1])
    scan = read_scan(tmp_path / "photo.png")
    array, g = scan.image, scan.geometry
    assert scan.rgb and scan.raw is array and scan.modality is None
    assert array.shape == (30, 40, 3) and array[0, 0].tolist() == [200, 120, 30]
    assert g.axes == "yx" and g.size == (40, 30) and g.source_format == "image"
    labels = np.zeros((30, 40), np.uint16)
    labels[2:5, 3:9] = 1
    labels[10:20, 20:30] = 2
    write_labels(labels, g, tmp_path / "seg.png")
    back = cv2.imread(str(tmp_path / "seg.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint8 and np.array_equal(back, labels)
    labels[0, 0] = 300  # beyond 8 bits: a 16-bit PNG
    write_labels(labels, g, tmp_path / "seg16.png")
    assert np.array_equal(cv2.imread(str(tmp_path / "seg16.png"), cv2.IMREAD_UNCHANGED), labels)
    with pytest.raises(ScanError, match="PNG holds 2D"):
        write_labels(_labels(), Geometry.identity((24, 20, 6), "nifti"), tmp_path / "x.png")


def test_challenge_npz_scan(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 255, SHAPE, dtype=np.uint8)
    np.savez(tmp_path / "3DBox_CT_0001.npz", imgs=imgs, boxes=np.zeros((0, 6)), spacing=np.array([2.5, 0.8, 0.7]))
    scan = read_scan(tmp_path / "3DBox_CT_0001.npz")
    array, g = scan.image, scan.geometry
    assert scan.raw is array and not scan.rgb
    assert np.array_equal(array, imgs) and g.spacing == (0.7, 0.8, 2.5) and g.source_format == "npz"
    write_labels(_labels(), g, tmp_path / "out.npz")
    with np.load(tmp_path / "out.npz") as z:
        assert z.files == ["segs"] and z["segs"].dtype == np.uint16 and np.array_equal(z["segs"], _labels())
    np.savez(tmp_path / "2DBox_US_1.npz", imgs=imgs[0])
    flat = read_scan(tmp_path / "2DBox_US_1.npz")
    assert flat.image.shape == (20, 24, 3) and flat.rgb and flat.raw is flat.image


def test_label_map_must_share_the_scan_grid(tmp_path):
    path = write_volume(tmp_path / "ct.nii.gz", _ct(), direction=ROTATED)
    g = read_scan(path, modality="CT").geometry
    write_volume(tmp_path / "ok.nii.gz", _labels(), direction=ROTATED)
    assert np.array_equal(read_label_map(tmp_path / "ok.nii.gz", g), _labels())
    write_volume(tmp_path / "moved.nii.gz", _labels(), direction=ROTATED, origin=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="not on the same voxel grid"):
        read_label_map(tmp_path / "moved.nii.gz", g)


def test_unreadable_and_missing_scans(tmp_path):
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="SimpleITK cannot read"):
        read_scan(tmp_path / "junk.nii.gz", modality="CT")
    (tmp_path / "junk.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="OpenCV cannot read"):
        read_scan(tmp_path / "junk.png")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_scan(tmp_path / "missing.nii.gz")
    write_volume(tmp_path / "ct.nii.gz", _ct())
    with pytest.raises(ScanError, match="give --modality"):
        read_scan(tmp_path / "ct.nii.gz")


# -- boxes --------------------------------------------------------------------------------------------


def test_box_files_json_and_csv(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(
        {"boxes": [[1, 2, 0, 5, 6, 3], {"box": [2, 2, 1, 4, 4, 2], "label": 7, "name": "liver"}]}))
    boxes = read_box_file(tmp_path / "a.json")
    assert [b.coords for b in boxes] == [(1, 2, 0, 5, 6, 3), (2, 2, 1, 4, 4, 2)]
    assert [(b.label, b.name) for b in boxes] == [(None, None), (7, "liver")]
    (tmp_path / "b.csv").write_text("# organs\nname,label,x_min,y_min,z_min,x_max,y_max,z_max\n"
                                    "kidney,3,1,2,0,5,6,3\n\n")
    (box,) = read_box_file(tmp_path / "b.csv")
    assert box.coords == (1, 2, 0, 5, 6, 3) and box.label == 3 and box.name == "kidney"
    (tmp_path / "c.csv").write_text("1,2,5,6\n3,4,7,8\n")
    assert [b.coords for b in read_box_file(tmp_path / "c.csv")] == [(1, 2, 5, 6), (3, 4, 7, 8)]
    assert parse_box_text("1, 2 ,5,6", "--box").coords == (1, 2, 5, 6)


@pytest.mark.parametrize("text, match", [
    ('[{"box": [1, 2, 3, 4], "lable": 2}]', "may have 'label'"),
    ('[[1, 2, 3]]', "3 numbers"),
    ('[{"box": [1, 2, 3, 4], "label": 0}]', "label 0 must be an integer in 1..65535"),
    ('[{"box": [1, 2, 3, 4], "label": 2.5}]', "must be an integer"),
    ('[]', "no boxes"),
    ('{"rois": []}', "must be"),
])
def test_bad_box_files(tmp_path, text, match):
    (tmp_path / "b.json").write_text(text)
    with pytest.raises(BoxError, match=match):
        read_box_file(tmp_path / "b.json")


def test_voxel_box_checks():
    g3 = Geometry.identity((24, 20, 6), "nifti")
    assert voxel_boxes([Box((0, 0, 0, 23, 19, 5))], g3).tolist() == [[0, 0, 0, 23, 19, 5]]
    bad = [((0, 0, 0, 24, 19, 5), "outside the scan"), ((-1, 0, 0, 3, 3, 3), "outside the scan"),
           ((0, 0, 3, 5, 5, 3), "z_min must be below z_max"), ((5, 0, 0, 4, 3, 3), "inverted"),
           ((0.5, 0, 0, 4, 3, 3), "whole numbers"), ((0, 0, 4, 4), "has 4 numbers but the scan is 3D")]
    for coords, match in bad:
        with pytest.raises(BoxError, match=match):
            voxel_boxes([Box(coords)], g3)
    assert voxel_boxes([Box((0, 0, 3, 5, 5, 3))], g3, zmax_inclusive=True).tolist() == [[0, 0, 3, 5, 5, 3]]
    g2 = Geometry.identity((40, 30), "image")
    with pytest.raises(BoxError, match="has 6 numbers but the scan is 2D: give x_min, y_min, x_max, y_max"):
        voxel_boxes([Box((0, 0, 0, 3, 3, 3))], g2)


def test_io_imports_neither_torch_nor_simpleitk_for_pictures(tmp_path):
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((8, 8), np.uint8))
    code = ("import sys; import daftseg.io, daftseg.segment; from daftseg.io import read_scan; "
            f"read_scan({str(tmp_path / 'p.png')!r}); "
            "print('torch' in sys.modules, 'SimpleITK' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# -- modality -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, is_3d, expected", [
    ("patient_MR_t1.nii.gz", True, "MR"), ("PET-scan.nii", True, "PET"), ("abdomen.nii.gz", True, "CT"),
    ("x-ray_chest.png", False, "X-Ray"), ("CXR_001.png", False, "X-Ray"), ("Dermoscopy_12.jpg", False, "Dermoscopy"),
    ("2DBox_US_3.npz", False, "US"), ("holiday.png", False, ""),
])
def test_guess_modality_from_the_file_name(name, is_3d, expected):
    from daftseg.io.modality import guess_modality

    assert guess_modality(name, is_3d) == expected


def test_modality_from_the_name_only_when_asked(tmp_path):
    """daftseg-segment refuses a NIfTI without a modality; the app's option takes the file name's."""
    mr = write_volume(tmp_path / "knee_MR.nii.gz", np.array([[[0, 10, 20, 30, 40, 1000]]], np.float32))
    with pytest.raises(ScanError, match="give --modality"):
        read_scan(mr)
    got = read_scan(mr, modality_from_name=True)
    assert got.modality == "MR" and got.image.ravel().tolist() == [0, 0, 2, 5, 7, 255]  # percentile, by hand
    assert read_scan(mr, modality="CT", modality_from_name=True).modality == "CT"  # a given one wins
    ct = write_volume(tmp_path / "scan.nii.gz", _ct())
    assert read_scan(ct, modality_from_name=True).modality == "CT"  # a volume without a hint: CT
    flat = write_volume(tmp_path / "slice.nii.gz", _ct()[0])
    with pytest.raises(ScanError, match="slice.nii.gz: choose a modality"):
        read_scan(flat, modality_from_name=True)
    cv2.imwrite(str(tmp_path / "xray_1.png"), np.zeros((8, 8), np.uint8))
    assert read_scan(tmp_path / "xray_1.png").modality is None
    assert read_scan(tmp_path / "xray_1.png", modality_from_name=True).modality == "X-Ray"


# -- layering: io is under data, never the other way round ---------------------------------------------


def _io_modules() -> list[str]:
    import pkgutil

    import daftseg.io

    return ["daftseg.io"] + [f"daftseg.io.{m.name}" for m in pkgutil.iter_modules(daftseg.io.__path__)]


def test_no_io_module_imports_daftseg_data():
    """Each io module imported alone (a fresh interpreter) loads no daftseg.data module, and no io
    source names daftseg.data, not even in an import inside a function (seen only when it runs)."""
    import ast
    import importlib.util

    modules = _io_modules()
    assert {"daftseg.io.intensity", "daftseg.io.label_boxes", "daftseg.io.grid", "daftseg.io.modality"} <= set(modules)
    code = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
            "print(sorted(m for m in sys.modules if m == 'daftseg.data' or m.startswith('daftseg.data.')))")
    for module in modules:
        out = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "[]", (module, out)
    for module in modules:
        tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__"):
                names = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            bad = [n for n in names if n == "daftseg.data" or n.startswith("daftseg.data.")]
            if isinstance(node, ast.ImportFrom) and node.module == "daftseg":
                bad += [a.name for a in node.names if a.name == "data"]
            assert not bad, f"{module} line {node.lineno} imports {bad}"
