"""Routing table, npz I/O, 3D planning and the torch-free import of ``daftseg.inference``."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture
from reference import daft_plain

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


# -- boxes DAFT segments (issue 12, item 3) -------------------------------------------------------------


class RecordingModel:
    """Stands in for ``ModelSessions``: records encoder inputs and 256-space prompts, returns fixed logits."""

    def __init__(self, logits: np.ndarray | None = None) -> None:
        self.images: list[np.ndarray] = []
        self.prompts: list[list[float]] = []
        self.logits = np.full((256, 256), 1.0, np.float32) if logits is None else logits

    def encode(self, image: np.ndarray) -> np.ndarray:
        self.images.append(image.copy())
        return np.zeros((1, 256, 64, 64), np.float32)

    def decode(self, embedding: np.ndarray, boxes256: np.ndarray, batch: int = 1) -> np.ndarray:
        boxes = np.asarray(boxes256, np.float32).reshape(-1, 4)
        self.prompts += boxes.tolist()
        return np.repeat(self.logits[None], len(boxes), 0)


def test_2d_inverted_and_outside_boxes_go_to_the_prompt_encoder_as_daft_scales_them() -> None:
    from daftseg.inference.case2d import segment_2d

    img = np.zeros((100, 200, 3), np.uint8)  # 256 / max(H, W) = 1.28
    boxes = np.array([[250, 10, 300, 50],    # right of the image
                      [150, 80, 20, 10],     # inverted in x and y
                      [-30, -5, -1, -2],     # above and left of it: int() truncates towards zero
                      [10, 20, 30, 40]])
    model = RecordingModel()
    segs = segment_2d(model, img, boxes)
    assert model.prompts == [[320, 12, 384, 64], [192, 102, 25, 12], [-38, -6, -1, -2], [12, 25, 38, 51]]
    assert segs.shape == (100, 200) and (segs == 4).all()  # every box segmented; the last one wins


def test_box_warnings_name_each_odd_box() -> None:
    from daftseg.inference.boxes import box_notes, box_warnings

    notes = box_warnings(np.array([[250, 10, 300, 50], [150, 80, 20, 10], [10, 20, 30, 40],
                                   [-5, 10, 60, 55], [-30, -5, -1, -2]]), 100, 200)
    assert len(notes) == 3  # a box sticking out (box 4) is fine, as DAFT
    assert notes[0].startswith("box 1 [250, 10, 300, 50] lies wholly outside the 200x100 (WxH) image")
    assert notes[1].startswith("box 2 [150, 80, 20, 10] is inverted (x_min > x_max or y_min > y_max);")
    assert notes[2].startswith("box 5 [-30, -5, -1, -2] lies wholly outside")
    assert all("segmented as DAFT does" in n for n in notes)
    three_d = box_notes(np.array([[5, 5, 0, 1, 9, 4], [0, 0, 12, 9, 9, 13]]), (10, 20, 20), True)
    assert three_d == [("box 1 [5, 5, 1, 9] is inverted (x_min > x_max or y_min > y_max); segmented as DAFT does "
                       "(its coordinates go to the prompt encoder as given)"),
                       ("box 2: no slice of its z range lies inside the volume of 10 slices; nothing is "
                       "segmented for it (as DAFT)")]
    assert box_notes(np.zeros((0, 4)), (10, 10), False) == []


def test_uint8_boxes_wrap_in_256_space_as_numpy_1_26_stored_them() -> None:
    from daftseg.geometry import scale_box_to_256

    # DAFT's zeros_like(box) keeps uint8: 640 -> 128 and 652 -> 140 (numpy 1.26 wrapped the int)
    got = scale_box_to_256(np.array([250, 10, 255, 50], np.uint8), 100, 100)
    assert got.dtype == np.uint8 and got.tolist() == [128, 25, 140, 128]
    assert scale_box_to_256(np.array([-3, 99], np.int16), 100, 100).tolist() == [-7, 253]
    assert scale_box_to_256(np.array([10.99, -0.5]), 256, 100).tolist() == [10.0, -0.0]


@pytest.mark.parametrize(("box", "depth", "plan"), [
    ([0, 0, 6, 9, 9, 7], 6, None),          # one slice thick, above the last slice: nothing, no error
    ([0, 0, -3, 9, 9, -2], 6, None),        # below slice 0: middle int(-2.5) = -2, nothing to visit
    ([0, 0, -2, 9, 9, -1], 6, None),        # middle int(-1.5) = -1 = z_max: nothing to visit
    ([0, 0, 4, 9, 9, 7], 6, (4, 5, 6)),     # sticks out: middle 5, up to the last slice
    ([0, 0, 0, 9, 9, 6], 6, (0, 3, 6)),     # z_min at 0, z_max at D
])
def test_3d_boxes_daft_segments(box, depth, plan) -> None:
    from daftseg.inference.boxes import box_notes

    other = [0, 0, 0, 9, 9, 2]  # DAFT needs one box with a slice in the volume (else IndexError)
    p = plan_3d(np.array([box, other]), (depth, 10, 10))[0]
    if plan is None:
        assert not len(p.up) and not len(p.down)
        assert "nothing is segmented for it" in box_notes(np.array([box, other]), (depth, 10, 10), True)[0]
    else:
        assert (p.lo, p.mid, p.hi) == plan


@pytest.mark.parametrize(("box", "message"), [
    ([0, 0, 4, 9, 9, 4], "box 1: z_min 4 >= z_max 4 (DAFT's script stops here: AssertionError)"),
    ([0, 0, 5, 9, 9, 2], "box 1: z_min 5 >= z_max 2"),
    ([0, 0, -10, 9, 9, 3], ("box 1: z range [-10, 3] has its middle slice -3 below the volume of 6 slices "
                           "(DAFT's script stops here: KeyError)")),
    ([0, 0, 4, 9, 9, 8], ("box 1: z range [4, 8] has its middle slice 6 beyond the last of the volume's 6 slices "
                         "(DAFT's script stops here: IndexError)")),
    ([0, 0, 5, 9, 9, 11], ("middle slice 8 beyond the last of the volume's 6 slices (DAFT's script stops here: "
                          "KeyError)")),
])
def test_3d_boxes_daft_cannot_segment_are_errors(box, message) -> None:
    other = [0, 0, 0, 9, 9, 2]  # a box with slices in the volume, so that DAFT gets to the boxes
    with pytest.raises(CaseError) as e:
        plan_3d(np.array([box, other]), (6, 10, 10))
    assert message in str(e.value)


def test_3d_case_without_a_slice_in_the_volume_is_an_error_as_daft() -> None:
    with pytest.raises(CaseError, match=r"no box has a slice inside the volume of 6 slices \(DAFT's script stops "
                                        r"here: IndexError\)"):
        plan_3d(np.array([[0, 0, 6, 9, 9, 7], [0, 0, 9, 9, 9, 10]]), (6, 10, 10))


def test_3d_float_z_middle_slice_from_the_raw_values() -> None:
    # DAFT: int((12.0 - -0.5) / 2 + -0.5) = int(5.75) = 5; truncating z first would give 6
    p = plan_3d(np.array([[0.0, 0.0, -0.5, 9.0, 9.0, 12.0]]), (10, 10, 10))[0]
    assert (p.lo, p.mid, p.hi) == (0, 5, 10)
    # the loops as DAFT's: upward while z < z_max, downward while z > z_min - 1
    q = plan_3d(np.array([[0.0, 0.0, 2.5, 9.0, 9.0, 7.5]]), (10, 10, 10))[0]
    assert (q.lo, q.mid, q.hi) == (2, 5, 8) and list(q.up) == [5, 6, 7] and list(q.down) == [4, 3, 2]
    r = plan_3d(np.array([[0, 0, 2.2, 9, 9, 2.7]], np.float32), (10, 10, 10))[0]  # z_min < z_max: one slice
    assert (r.lo, r.mid, r.hi) == (2, 2, 3)


def test_3d_propagation_prompts_as_daft(tmp_path: Path) -> None:
    """Literal prompts of a 3-slice box: the middle box, then boxes of the INTER_AREA-resized mask, +-3."""
    from daftseg.inference.case3d import segment_3d

    logits = np.full((256, 256), -1.0, np.float32)
    logits[40:100, 30:90] = 1.0  # the mask every slice gets, in 256-space (the volume is 256x256)
    model = RecordingModel(logits)
    vol = np.zeros((5, 256, 256), np.uint8)
    res = segment_3d(model, vol, np.array([[10, 20, 1, 200, 210, 4]]))
    # middle int((4-1)/2+1) = 2: [10,20,200,210]; 3 and 1 from the mask: x 30..89, y 40..99, grown by 3
    assert model.prompts == [[10, 20, 200, 210], [27, 37, 92, 102], [27, 37, 92, 102]]
    assert [bool(res.segs[z].any()) for z in range(5)] == [False, True, True, True, False]


# -- image dtypes as DAFT (issue 12, item 4) ------------------------------------------------------------


def daft_encoder_input(img_3c: np.ndarray) -> np.ndarray:
    """DAFT's preprocessing (spec §7.4), from the independent reference: INTER_AREA in the stored dtype, then min-max."""
    return daft_plain.encoder_input(img_3c)[0]


# OpenCV resizes this 4x4 image to 7x7 differently in uint8 (fixed point) and uint16 (floats)
SMALL = np.array([[21, 7, 221, 192], [214, 137, 209, 84], [115, 201, 31, 77], [31, 116, 250, 34]])


def test_uint16_volume_is_resized_as_stored_not_as_uint8() -> None:
    import cv2

    from daftseg.inference.case3d import segment_3d

    u8, u16 = (cv2.resize(SMALL.astype(t), (7, 7), interpolation=cv2.INTER_AREA) for t in (np.uint8, np.uint16))
    assert u8[3, 0] == 165 and u16[3, 0] == 164  # OpenCV's arithmetic differs between the two dtypes
    vol = np.random.default_rng(0).integers(0, 256, (3, 20, 23)).astype(np.uint16)  # values < 256
    case = make_case("3DBox_MR_0001.npz", vol, np.array([[1, 1, 0, 6, 6, 3]]))
    assert case.imgs.dtype == np.uint16 and not case.notes
    model = RecordingModel()
    segment_3d(model, case.imgs, case.boxes)
    assert len(model.images) == 3  # slices 1 (the middle), 2, then 0
    for image, z in zip(model.images, (1, 2, 0)):
        rgb = np.repeat(vol[z][:, :, None], 3, -1)
        assert np.array_equal(image, daft_encoder_input(rgb))
        assert not np.array_equal(image, daft_encoder_input(rgb.astype(np.uint8)))


@pytest.mark.parametrize(("dtype", "scale", "offset", "is_3d"), [
    (np.uint16, 1, 0, False), (np.int16, 1, -100, False), (np.float32, 1 / 255, 0, False),
    (np.float64, 1 / 255, 0.25, False), (np.uint16, 16, 0, True), (np.int16, 8, -1024, True),
    (np.float32, 7.5, -3, True)])
def test_images_daft_processes_keep_their_dtype_and_give_daft_input(dtype, scale, offset, is_3d) -> None:
    from daftseg.geometry import preprocess_image

    img = (np.random.default_rng(1).integers(0, 256, (3, 30, 40)) * scale + offset).astype(dtype)
    name = "3DBox_CT_1.npz" if is_3d else "2DBox_US_1.npz"
    boxes = np.array([[1, 1, 0, 5, 5, 2]] if is_3d else [[1, 1, 5, 5]])
    case = make_case(name, img if is_3d else img.transpose(1, 2, 0), boxes)
    assert case.imgs.dtype == dtype and not case.notes  # no conversion, no warning
    rgb = np.repeat(case.imgs[0][:, :, None], 3, -1) if is_3d else case.imgs
    got, new_hw = preprocess_image(rgb)
    assert new_hw == (192, 256) and np.array_equal(got, daft_encoder_input(rgb))


def test_float32_image_is_normalised_in_float32_as_daft() -> None:
    from daftseg.geometry import normalise_like_daft

    x = np.float32([0.1, 0.2, 1.1, 0.7])
    got = normalise_like_daft(x)
    assert got.dtype == np.float32
    f = np.float32
    assert got.tolist() == [0.0, (f(0.2) - f(0.1)) / f(1.0), 1.0, (f(0.7) - f(0.1)) / f(1.0)]
    assert got[3] == f(0.5999999642372131) and got[3] != f(0.6)  # 0.7 - 0.1 in float32, not float64
    assert normalise_like_daft(np.uint8([3, 5, 7])).dtype == np.float64


@pytest.mark.parametrize(("dtype", "values", "is_3d", "expect"), [
    (np.int64, (0, 255), False, "uint8"),     # a dtype OpenCV cannot resize, values of uint8: cast
    (np.int32, (0, 255), True, "uint8"),
    (np.float16, (0, 255), True, "uint8"),
    (np.int64, (-5, 300), True, "rescaled"),  # a dtype OpenCV cannot resize: rescaled, warned
    (np.uint16, (0, 256), False, "rescaled"),  # 2D, max >= 256: DAFT asserts
    (np.float64, (0, 256.0), False, "rescaled"),
])
def test_images_daft_cannot_process_are_converted(dtype, values, is_3d, expect) -> None:
    img = np.linspace(values[0], values[1], 3 * 10 * 12).reshape(3, 10, 12)
    img = np.round(img).astype(dtype)
    name = "3DBox_CT_1.npz" if is_3d else "2DBox_US_1.npz"
    case = make_case(name, img if is_3d else img.transpose(1, 2, 0), np.zeros((0, 6 if is_3d else 4)))
    assert case.imgs.dtype == np.uint8
    if expect == "uint8":
        assert not case.notes and np.array_equal(case.imgs, img if is_3d else img.transpose(1, 2, 0))
    else:
        assert case.imgs.min() == 0 and case.imgs.max() == 255 and "rescaled to uint8 [0, 255]" in case.notes[0]


# -- DAFT quirks (issue 12, item 5) ---------------------------------------------------------------------


def test_resized_height_1_logits_are_read_as_a_column_as_daft() -> None:
    from daftseg.geometry import postprocess_logits, resized_shape

    assert resized_shape(2, 512) == (1, 256)
    low = np.full((256, 256), -50.0, np.float32)
    low[0] = np.arange(256) - 100.5  # the one row the (1, 256) crop keeps
    mask = postprocess_logits(low, (1, 256), (2, 512))
    # squeeze() -> (256,); OpenCV reads it as a 256x1 column and resizes it to 2 rows x 512 columns:
    # row r takes the logit near x = 64 + 128 r: -36.5 -> False, 91.5 -> True, across every column
    assert mask.shape == (2, 512)
    assert not mask[0].any() and mask[1].all()
    # a resized width of 1 is a column already: unchanged by the squeeze
    low = np.full((256, 256), -50.0, np.float32)
    low[:, 0] = np.arange(256) - 100.5
    mask = postprocess_logits(low, (256, 1), (512, 2))
    assert mask.shape == (512, 2) and (mask[:, 0] == mask[:, 1]).all() and mask[:200, 0].sum() == 0


def test_resized_height_1_case_end_to_end_as_daft() -> None:
    from daftseg.inference.case2d import segment_2d

    logits = np.full((256, 256), -1.0, np.float32)
    logits[0, 128:] = 1.0  # positive on the right half of the only row
    segs = segment_2d(RecordingModel(logits), np.zeros((2, 512, 3), np.uint8), np.array([[0, 0, 511, 1]]))
    assert segs.tolist() == [[0] * 512, [1] * 512]  # DAFT's column: the top row off, the bottom row on
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
        "import daftseg.inference.overlay, daftseg.inference.sessions\n"
        "from daftseg.inference.openvino_runtime import import_openvino\n"
        "ov = import_openvino(); ov.Core()\n"
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


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="reads resident sizes from /proc/self/smaps (Linux only)")
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


def test_release_mapped_pages_is_a_no_op_off_linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from daftseg.inference import mapped_files

    (tmp_path / "model.blob").write_bytes(b"x" * 4096)
    monkeypatch.setattr(mapped_files.sys, "platform", "darwin")
    monkeypatch.setattr(mapped_files, "_madvise", lambda: pytest.fail("madvise called off Linux"))
    assert mapped_files.release_mapped_pages([tmp_path]) == 0


# -- precision: f32 by default, batch-1 graphs only at an f32 precision (issue 12, items 1-2) -------------


class ReportingCompiled:
    """A real compiled model that reports ``reports`` as its inference precision."""

    def __init__(self, compiled, reports) -> None:
        self._compiled, self._reports = compiled, reports

    def get_property(self, name: str):
        return self._reports if name == "INFERENCE_PRECISION_HINT" else self._compiled.get_property(name)

    def __getattr__(self, name: str):
        return getattr(self._compiled, name)


class ReportingCore:
    """A real ``ov.Core`` whose CPU plugin (and compiled models) report the precision a test chooses,
    so that the decision is tested the same way on CPUs with and without native bf16."""

    def __init__(self, reports, compiled_reports=None) -> None:
        import openvino as ov

        self.real = ov.Core()
        self.reports = reports
        self.compiled_reports = reports if compiled_reports is None else compiled_reports
        self.set_calls: list[tuple] = []

    def get_property(self, device: str, name: str):
        return self.reports if name == "INFERENCE_PRECISION_HINT" else self.real.get_property(device, name)

    def set_property(self, *args) -> None:
        self.set_calls.append(args)
        self.real.set_property(*args)

    def read_model(self, *args):
        return self.real.read_model(*args)

    def compile_model(self, *args):
        return ReportingCompiled(self.real.compile_model(*args), self.compiled_reports)


def test_reported_precision_reads_openvino_types() -> None:
    import openvino as ov

    from daftseg.inference.openvino_runtime import reported_precision

    assert reported_precision(ReportingCore(ov.Type.bf16)) == "bf16"
    assert reported_precision(ReportingCore(ov.Type.f32)) == "f32"
    assert reported_precision(ReportingCore("f16")) == "f16"


@pytest.mark.parametrize(("precision", "core_reports", "compiled_reports", "static"), [
    ("auto", "bf16", "bf16", False),  # DAFT's default on a CPU with native bf16: graphs as stored
    ("auto", "f32", "f32", True),     # ... on a CPU without it: batch 1, bit-identical there
    ("bf16", "bf16", "bf16", False),
    ("bf16", "f32", "f32", True),     # bf16 asked where the CPU lacks it: OpenVINO runs f32
    ("f32", "f32", "f32", True),
    ("f32", "f32", "bf16", False),    # the compiled graph reports otherwise: compiled again as stored
])
@pytest.mark.parametrize("cache", [False, True])
def test_graphs_fixed_at_batch_1_only_where_openvino_reports_f32(toy_models_dir, tmp_path, precision,  # noqa: F811
                                                                 core_reports, compiled_reports, static,
                                                                 cache) -> None:
    import openvino as ov

    from daftseg.inference.sessions import SessionConfig, Sessions

    types = {"bf16": ov.Type.bf16, "f32": ov.Type.f32}
    core = ReportingCore(types[core_reports], types[compiled_reports])
    sessions = Sessions(toy_models_dir, SessionConfig(str(tmp_path / "cache") if cache else None,
                                                      precision=precision))
    sessions._set_core(core)
    assert sessions.precision == core_reports
    m = sessions.model("CT")
    for session, name in ((m.encoder, "image"), (m.decoder, "sparse_prompt_embeddings"),
                          (m.prompt_encoder, "boxes")):
        assert session.compiled.input(name).get_partial_shape()[0].is_static == static, name
    assert m.decoder_max_batch == (1 if static else None)
    hints = [args for args in core.set_calls if args[0] == "CPU"]
    assert hints == ([] if precision == "auto" else [("CPU", {"INFERENCE_PRECISION_HINT": precision})])


def test_f32_is_the_default_precision_everywhere(tmp_path) -> None:
    from daftseg.inference import Segmenter
    from daftseg.inference.options import resolve_precision
    from daftseg.inference.runner import build_parser
    from daftseg.inference.sessions import SessionConfig

    assert SessionConfig().precision == "f32"
    assert Segmenter(tmp_path).sessions.config.precision == "f32"
    assert resolve_precision(build_parser().parse_args([]).precision, fast=False) == "f32"
    assert resolve_precision(build_parser().parse_args(["--precision", "auto"]).precision, fast=False) == "auto"
    # fast mode: OpenVINO's best unless a precision is asked for
    assert Segmenter(tmp_path, fast=True).sessions.config.precision == "auto"
    assert Segmenter(tmp_path, precision="f32", fast=True).sessions.config.precision == "f32"


def test_f32_compiles_batch_1_graphs_on_any_cpu(toy_models_dir) -> None:  # noqa: F811
    from daftseg.inference.sessions import SessionConfig, Sessions

    s = Sessions(toy_models_dir, SessionConfig(precision="f32"))
    assert s.precision == "f32" and s.static_batch() == 1
    assert s.model("XRay").decoder_max_batch == 1
    assert s.model("XRay").encoder.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
