"""Geometry with literal expected values, worked out by hand from spec §7.4, §7.5 and §13.

No expected value here is computed by the code under test or by a helper it shares: sizes, boxes,
propagation prompts and masks are written out. The 2D/3D algorithms run on a fake model whose
logits are a box (+a inside, -b outside), so every prompt and every mask can be predicted exactly.
These tests need no OpenVINO and run in about a second: they are the mutation run's first line.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from daftseg.geometry import (
    bbox_from_mask,
    bbox_from_mask_fullres,
    minmax_normalise,
    pad_bottom_right,
    postprocess_logits,
    preprocess_image,
    resize_longest_side,
    resized_shape,
    scale_box_to_256,
    to_rgb,
)
from daftseg.inference.boxes import clip_region, plan_3d
from daftseg.inference.case2d import segment_2d
from daftseg.inference.case3d import schedule, segment_3d
from daftseg.inference.npz_io import CaseError
from daftseg.inference.options import InferenceOptions

# -- sizes: longest side 256, int(x + 0.5) ----------------------------------------------------------


@pytest.mark.parametrize(("hw", "expected"), [
    ((300, 420), (183, 256)),  # 182.857 -> 183 (truncation would give 182)
    ((420, 300), (256, 183)),
    ((5, 512), (3, 256)),  # 2.5 -> 3 (int(x + 0.5)); numpy's round-half-even gives 2
    ((512, 5), (256, 3)),
    ((1, 512), (1, 256)),  # 0.5 -> 1
    ((1000, 512), (256, 131)),  # 131.072 -> 131 (ceil would give 132)
    ((256, 256), (256, 256)),
    ((64, 40), (256, 160)),  # upscaling
    ((2, 400), (1, 256)),  # 1.28 -> 1: a resized height of 1
])
def test_resized_shape(hw, expected) -> None:
    assert resized_shape(*hw) == expected


def test_resize_is_inter_area_in_the_stored_dtype() -> None:
    # 768 -> 256 is an exact 3x reduction: INTER_AREA averages each 3x3 block; INTER_LINEAR would
    # sample the block's centre (0 here), INTER_NEAREST its first pixel (90)
    img = np.zeros((768, 6), np.uint8)
    img[::3, ::3] = 90
    out = resize_longest_side(img)
    assert out.dtype == np.uint8 and out.shape == (256, 2)
    assert (out == 10).all()
    wide = np.zeros((768, 6), np.uint16)
    wide[::3, ::3] = 1000  # 1000 / 9 = 111.1: kept as uint16, not clipped to 255
    out16 = resize_longest_side(wide)
    assert out16.dtype == np.uint16 and (out16 == 111).all()


def test_pad_and_rgb() -> None:
    img = np.arange(6, dtype=np.uint8).reshape(2, 3)
    padded = pad_bottom_right(img, 4)
    assert padded.tolist() == [[0, 1, 2, 0], [3, 4, 5, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert to_rgb(img).shape == (2, 3, 3) and (to_rgb(img)[..., 2] == img).all()
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 7
    assert to_rgb(rgba).shape == (2, 2, 3) and not to_rgb(rgba).any()
    assert to_rgb(np.ones((2, 2, 1), np.uint8)).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="image"):
        to_rgb(np.zeros((2, 2, 2), np.uint8))


def test_minmax_normalise_literal() -> None:
    # training's normalisation (after padding): float64 whatever the input dtype
    x = minmax_normalise(np.array([10, 35, 60], np.uint8))
    assert x.tolist() == [0.0, 0.5, 1.0] and x.dtype == np.float64
    assert minmax_normalise(np.array([7, 7], np.uint8)).tolist() == [0.0, 0.0]  # 0 / 1e-8
    assert minmax_normalise(np.array([0.0, 0.25, 0.5])).tolist() == [0.0, 0.5, 1.0]  # a range below 1
    # float32 input, float64 arithmetic: 0x3F0306BE once rounded to float32 (float32 arithmetic: 0x3F0306BF)
    y = minmax_normalise(np.array([0.1, 0.407093, 0.7], np.float32))
    assert y.dtype == np.float64 and np.float32(y[1]).view(np.uint32) == 0x3F0306BE


def test_preprocess_normalises_before_padding_channels_first() -> None:
    # 128 x 256: no resize; values 10..60 map to [0, 1] before the zero padding (rows 128..255)
    img = np.full((128, 256, 3), 10, np.uint8)
    img[5, 7] = (35, 60, 10)
    img[0, 0, 0] = 60
    x, new_hw = preprocess_image(img)
    assert new_hw == (128, 256)
    assert x.shape == (1, 3, 256, 256) and x.dtype == np.float32
    assert (x[0, 0, 5, 7], x[0, 1, 5, 7], x[0, 2, 5, 7]) == (0.5, 1.0, 0.0)  # channels in RGB order
    assert x[0, 0, 0, 0] == 1.0 and x[0, 1, 1, 1] == 0.0
    assert not x[:, :, 128:].any()
    assert x[0, 0, 100, 100] == 0.0  # normalised after padding (min 0), 10 would map to 10/60


def test_preprocess_after_padding_as_training_and_other_sizes() -> None:
    # training normalises after the zero padding: the minimum is then 0, so 10 -> 10/60, 35 -> 35/60
    img = np.full((128, 256, 3), 10, np.uint8)
    img[5, 7] = (35, 60, 10)
    x, new_hw = preprocess_image(img, norm_before_pad=False)
    assert new_hw == (128, 256) and x.shape == (1, 3, 256, 256) and x.dtype == np.float32
    assert x[0, 0, 5, 7] == np.float32(35 / 60) and x[0, 1, 5, 7] == 1.0 and x[0, 2, 100, 100] == np.float32(1 / 6)
    assert not x[:, :, 128:].any()
    # another target size: 300 x 420 -> 91 x 128 (91.43 -> 91), padded to 128 x 128
    for before in (True, False):
        small, hw = preprocess_image(np.zeros((300, 420, 3), np.uint8), norm_before_pad=before, target=128)
        assert small.shape == (1, 3, 128, 128) and hw == (91, 128)
    assert resize_longest_side(np.zeros((300, 420), np.uint8), 128).shape == (91, 128)
    assert resized_shape(300, 420, 128) == (91, 128)


def test_preprocess_constant_image_is_zero() -> None:
    # max - min = 0 is clipped to 1e-8: 0 / 1e-8 = 0, never NaN
    x, _ = preprocess_image(np.full((64, 80, 3), 77, np.uint8))
    assert not np.isnan(x).any() and not x.any()
    f, _ = preprocess_image(np.full((64, 80, 3), 0.5, np.float32))
    assert not np.isnan(f).any() and not f.any()


def test_preprocess_float32_image_in_float32_arithmetic() -> None:
    # DAFT normalises a float32 image in float32: (x - min) / (max - min), each step rounded to float32.
    # For these values float32 gives 0.5118217 (0x3F0306BF); float64 rounded at the end, 0.5118216.
    img = np.full((256, 256, 3), np.float32(0.407093), np.float32)
    img[0, 0] = np.float32(0.1)
    img[0, 1] = np.float32(0.7)
    x, _ = preprocess_image(img)
    assert x[0, 0, 5, 5].view(np.uint32) == 0x3F0306BF


# -- boxes in 256-space: truncation ------------------------------------------------------------------


def test_scale_box_truncates_towards_zero() -> None:
    # 256 / 420: 11 -> 6.705 -> 6, 157 -> 95.695 -> 95 (rounding: 7, 96)
    ints = scale_box_to_256(np.array([11, 20, 157, 150]), 300, 420)
    assert ints.tolist() == [6, 12, 95, 91] and ints.dtype.kind == "i"
    # 256 / 200 = 1.28: 10.7 -> 13.696, 20.2 -> 25.856, 99.9 -> 127.872, 150.5 -> 192.64
    floats = scale_box_to_256(np.array([10.7, 20.2, 99.9, 150.5]), 200, 150)
    assert floats.tolist() == [13.0, 25.0, 127.0, 192.0]
    # negative coordinates (a box partly or wholly outside): int() truncates towards zero
    assert scale_box_to_256(np.array([-11, -1, -2, 3]), 300, 420).tolist() == [-6, 0, -1, 1]
    # (N,4) arrays scale row by row
    assert scale_box_to_256(np.array([[256, 0, 512, 1], [3, 3, 5, 5]]), 512, 512).tolist() == [
        [128, 0, 256, 0], [1, 1, 2, 2]]


# -- propagation boxes: get_bbox256 --------------------------------------------------------------------


def test_bbox_from_mask_margin_and_clamps() -> None:
    mask = np.zeros((256, 256), np.uint16)
    mask[10:21, 0:6] = 1  # rows 10..20, columns 0..5
    assert bbox_from_mask(mask).tolist() == [0, 7, 8, 23]  # x_min clamped at 0
    mask[:] = 0
    mask[250:256, 200:256] = 9  # touches the last row and column: clamped at 256, not 255
    assert bbox_from_mask(mask).tolist() == [197, 247, 256, 256]
    mask[:] = 0
    mask[100, 50] = 1
    assert bbox_from_mask(mask).tolist() == [47, 97, 53, 103]
    assert bbox_from_mask(np.zeros((256, 256), np.uint16)) is None


def test_bbox_from_mask_fullres_literal() -> None:
    mask = np.zeros((100, 200), bool)  # 256 / 200 = 1.28
    mask[10:21, 50:61] = True  # x 50..60, y 10..20
    box = bbox_from_mask_fullres(mask)
    assert box.dtype == np.float32
    np.testing.assert_array_equal(box, np.array([64 - 3, 12.8 - 3, 76.8 + 3, 25.6 + 3], np.float32))
    mask[:] = False
    mask[0, 199] = True
    np.testing.assert_array_equal(bbox_from_mask_fullres(mask), np.array([251.72, 0, 256, 3], np.float32))
    assert bbox_from_mask_fullres(np.zeros((4, 4), bool)) is None
    # a tall mask: the scale is 256 / H; float32 arithmetic throughout (as the C++): 256 * 3 / 200 - 3 is
    # 0.8399999 in float32, where float64 rounded at the end gives 0.84
    tall = np.zeros((200, 100), bool)
    tall[13, 3] = True
    box = bbox_from_mask_fullres(tall)
    assert box.dtype == np.float32 and box[0] != np.float32(0.84)
    np.testing.assert_array_equal(box, np.array([0.8399999, 13.639999, 6.84, 19.64], np.float32))


# -- post-processing of logits: crop, INTER_LINEAR on logits, > 0 --------------------------------------


def test_postprocess_logits_literal() -> None:
    low = np.full((256, 256), 50.0, np.float32)  # the padding: must be cropped away
    low[:2, :3] = [[-1, 4, -1], [-1, 3, -1]]
    mask = postprocess_logits(low, (2, 3), (4, 6))
    # half-pixel bilinear, 2x: rows [-1, .25, 2.75, 2.75, .25, -1] (row 0), [-1, 0, 2, 2, 0, -1] (row 1)
    # and the rows in between weighted .75/.25 and .25/.75; the exact 0 is not > 0
    assert mask.astype(int).tolist() == [
        [0, 1, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 1, 1, 1, 1, 0],
        [0, 0, 1, 1, 0, 0],
    ]


def test_postprocess_logits_downscaled_and_identity() -> None:
    low = np.full((256, 256), -1.0, np.float32)
    low[100:120, 30:40] = 2.0
    same = postprocess_logits(low, (256, 256), (256, 256))
    assert same.sum() == 200 and same[100:120, 30:40].all()
    # 2x reduction: each output pixel is the mean of a 2x2 block: columns 30..39 -> 15..19
    half = postprocess_logits(low, (256, 256), (128, 128))
    rows, cols = np.nonzero(half)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (50, 59, 15, 19)


def test_postprocess_resized_height_1_reads_the_row_as_a_column() -> None:
    # DAFT squeezes the cropped (1, new_w) logits to 1-D, which OpenCV takes as a (new_w, 1) column:
    # resized to (H, W) = (2, 4), value k of the row fills output row k
    low = np.full((256, 256), 9.0, np.float32)
    low[0, :2] = [-1, 4]
    assert postprocess_logits(low, (1, 2), (2, 4)).astype(int).tolist() == [[0, 0, 0, 0], [1, 1, 1, 1]]


# -- fake model: box-shaped logits, so prompts and masks are predictable ------------------------------


class BoxModel:
    """Stands in for ``ModelSessions``: logits ``inside`` in the prompt box (inclusive), ``outside`` elsewhere.

    ``encode`` tags each embedding with the slice it came from: the slice's marker column (the
    brightest pixel of row 0 after preprocessing). ``prompts`` records (slice, prompt) per box.
    """

    def __init__(self, inside: float = 1.0, outside: float = -1.0) -> None:
        self.inside, self.outside = inside, outside
        self.prompts: list[tuple[int, tuple[float, ...]]] = []
        self.encoded: list[int] = []
        self.calls: list[tuple[int, int]] = []  # (boxes, batch) of each decode call
        self.dtypes: set[np.dtype] = set()  # of the prompts handed over (DAFT: float32)

    def encode(self, image: np.ndarray) -> np.ndarray:
        z = int(np.argmax(image[0, 0, 0]))
        self.encoded.append(z)
        emb = np.zeros((1, 256, 64, 64), np.float32)
        emb[0, 0, 0, 0] = z
        return emb

    def decode(self, embedding: np.ndarray, boxes256: np.ndarray, batch: int = 1) -> np.ndarray:
        self.dtypes.add(np.asarray(boxes256).dtype)
        boxes = np.asarray(boxes256, np.float64).reshape(-1, 4)
        self.calls.append((len(boxes), batch))
        out = np.full((len(boxes), 256, 256), self.outside, np.float32)
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            self.prompts.append((int(embedding[0, 0, 0, 0]), (float(x0), float(y0), float(x1), float(y1))))
            rows = slice(max(math.ceil(y0), 0), max(math.floor(y1) + 1, 0))
            cols = slice(max(math.ceil(x0), 0), max(math.floor(x1) + 1, 0))
            out[k, rows, cols] = self.inside
        return out


def marked_volume(d: int, h: int, w: int, block: int = 1) -> np.ndarray:
    """Zeros, with slice z marked at row 0, columns z*block..z*block+block-1 (a block survives resizing)."""
    vol = np.zeros((d, h, w), np.uint8)
    for z in range(d):
        vol[z, :block, z * block:(z + 1) * block] = 255
    return vol


def test_2d_prompts_are_truncated_and_later_boxes_win() -> None:
    model = BoxModel()
    img = np.zeros((300, 420, 3), np.uint8)
    boxes = np.array([[11, 20, 157, 150], [100, 100, 200, 200]])
    segs = segment_2d(model, img, boxes)
    assert [p for _, p in model.prompts] == [(6, 12, 95, 91), (60, 60, 121, 121)]
    assert model.dtypes == {np.dtype(np.float32)}
    assert segs.shape == (300, 420)
    # box 2 (mask ~ rows/columns 98..199) overwrites box 1 where both are set
    assert segs[150, 150] == 2 and segs[30, 20] == 1 and segs[250, 250] == 0
    float_model = BoxModel()
    segment_2d(float_model, np.zeros((200, 150, 3), np.uint8), np.array([[10.7, 20.2, 99.9, 150.5]]))
    assert [p for _, p in float_model.prompts] == [(13, 25, 127, 192)]


def test_decoder_calls_one_box_each_unless_batched() -> None:
    # DAFT decodes box by box; --decode_batch N hands N boxes (of one image or slice) to each call
    img = np.zeros((300, 420, 3), np.uint8)
    boxes = np.array([[11, 20, 157, 150], [100, 100, 200, 200], [5, 5, 50, 50], [0, 0, 9, 9], [1, 1, 30, 3]])
    one, batched = BoxModel(), BoxModel()
    np.testing.assert_array_equal(segment_2d(one, img, boxes),
                                  segment_2d(batched, img, boxes, InferenceOptions(decode_batch=2)))
    assert one.calls == [(1, 1)] * 5 and batched.calls == [(2, 2), (2, 2), (1, 2)]
    assert [p for _, p in one.prompts] == [p for _, p in batched.prompts]
    vol = marked_volume(8, 256, 256)
    boxes3 = np.array([[100, 50, 2, 140, 90, 7], [10, 10, 3, 60, 60, 6], [0, 0, 4, 5, 5, 5]])
    one, batched = BoxModel(), BoxModel()
    np.testing.assert_array_equal(segment_3d(one, vol, boxes3).segs,
                                  segment_3d(batched, vol, boxes3, InferenceOptions(decode_batch=2)).segs)
    assert set(one.calls) == {(1, 1)} and len(one.calls) == 5 + 3 + 1
    # upward: slice 4 holds all three boxes (2 + 1), 5 two, 6 one; downward: 3 two, 2 one
    assert batched.calls == [(2, 2), (1, 2), (2, 2), (1, 2), (2, 2), (1, 2)]
    assert sorted(one.prompts) == sorted(batched.prompts)


def test_3d_box_count_limit_is_uint16() -> None:
    # 65535 boxes (the most uint16 labels hold) are segmented; one more is an error. All but the
    # last have no slice in the volume (one slice thick, above it), so they cost nothing to decode.
    empty = np.tile([0, 0, 9, 5, 5, 10], (65534, 1))
    boxes = np.vstack([empty, [[10, 10, 0, 60, 60, 2]]])
    res = segment_3d(BoxModel(), marked_volume(3, 256, 256), boxes)
    assert res.segs.dtype == np.uint16 and res.segs.max() == 65535
    with pytest.raises(CaseError, match="65536 boxes: 3D cases support at most 65535"):
        segment_3d(BoxModel(), marked_volume(3, 256, 256), np.vstack([boxes, boxes[:1]]))


def test_3d_slice_store_options_change_only_the_bookkeeping(tmp_path, caplog) -> None:
    # box 1 (middle 5) goes down through slices 4 and 3, which box 2 (middle 3) visits upward first: they
    # must be kept between the sweeps. No room in memory, a spill folder that does not exist: a warning,
    # then those slices are encoded again; the masks do not change.
    vol = marked_volume(10, 256, 256)
    boxes = np.array([[100, 50, 0, 140, 90, 10], [10, 10, 2, 60, 60, 5]])
    plain = segment_3d(BoxModel(), vol, boxes)  # room for 4: slices 3 and 4 wait in memory
    # (distinct slices, encoder calls, most in memory, most in the spill file)
    assert (plain.slices, plain.encoder_calls, plain.max_in_memory, plain.max_spilled) == (10, 10, 3, 0)
    spilled = segment_3d(BoxModel(), vol, boxes, InferenceOptions(max_cached_slices=0, max_spilled_slices=4,
                                                                  spill_dir=str(tmp_path)))
    assert (spilled.slices, spilled.encoder_calls, spilled.max_in_memory, spilled.max_spilled) == (10, 10, 1, 2)
    model = BoxModel()
    with caplog.at_level("WARNING", logger="daftseg.inference"):
        res = segment_3d(model, vol, boxes, InferenceOptions(max_cached_slices=0, max_spilled_slices=4,
                                                               spill_dir=str(tmp_path / "missing")))
    assert "spill file" in caplog.text
    assert sorted(model.encoded) == [0, 1, 2, 3, 3, 4, 4, 5, 6, 7, 8, 9]
    assert (res.slices, res.encoder_calls, res.max_in_memory, res.max_spilled) == (10, 12, 1, 0)
    for other in (spilled, res):
        np.testing.assert_array_equal(other.segs, plain.segs)


def test_3d_next_prompt_only_where_a_slice_follows(monkeypatch) -> None:
    # a prompt is derived from a mask only for a following slice: none from the last slice of each pass
    from daftseg.inference import case3d

    made = []
    real = case3d.next_prompt

    def counting(mask, plan, fullres):
        made.append(plan.idx)
        return real(mask, plan, fullres)

    monkeypatch.setattr(case3d, "next_prompt", counting)
    boxes = np.array([[100, 50, 2, 140, 90, 7],  # up 4, 5, 6 and down 3, 2: prompts from 4 (for 5 and 3), 5, 3
                      [10, 10, 6, 60, 60, 7]])  # slice 6 only (middle = z_min): no prompt
    segment_3d(BoxModel(), marked_volume(10, 256, 256), boxes)
    assert sorted(made) == [1, 1, 1]
    # z_max inclusive, middle = z_min: slices 4 and 5 upward, so one prompt (from 4)
    made.clear()
    model = BoxModel()
    segment_3d(model, marked_volume(10, 256, 256), np.array([[100, 50, 4, 140, 90, 5]]),
               InferenceOptions(zmax_inclusive=True))
    assert made == [1] and sorted(model.prompts) == [(4, (100, 50, 140, 90)), (5, (97, 47, 143, 93))]


def test_2d_clip_to_box_keeps_the_box_rows_and_columns() -> None:
    model = BoxModel(inside=1.0, outside=1.0)  # the whole image is foreground
    segs = segment_2d(model, np.zeros((256, 256, 3), np.uint8), np.array([[10, 20, 30, 50]]),
                      InferenceOptions(clip_to_box=True))
    rows, cols = np.nonzero(segs)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 50, 10, 30)
    assert segs.sum() == 31 * 21


def test_box_masks_gives_each_box_its_mask_and_encodes_nothing_without_boxes() -> None:
    from daftseg.inference.case2d import box_masks

    model = BoxModel()
    (mask,) = list(box_masks(model, np.zeros((256, 256, 3), np.uint8), np.array([[10, 20, 30, 50]])))
    rows, cols = np.nonzero(mask)  # 256 x 256: no resizing, the mask is the box: rows 20..50, columns 10..30
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 50, 10, 30) and mask.sum() == 31 * 21
    assert model.encoded == [0] and model.calls == [(1, 1)]
    empty = BoxModel()
    assert list(box_masks(empty, np.zeros((5, 6, 3), np.uint8), np.zeros((0, 4)))) == [] and empty.encoded == []


def test_2d_no_boxes_is_all_zero() -> None:
    segs = segment_2d(BoxModel(), np.zeros((5, 6, 3), np.uint8), np.zeros((0, 4)))
    assert segs.shape == (5, 6) and not segs.any()


def test_3d_propagation_prompts() -> None:
    # 256 x 256: ratio 1 and no resizing, so each mask is exactly its prompt box
    model = BoxModel()
    vol = marked_volume(12, 256, 256)
    boxes = np.array([[100, 50, 2, 140, 90, 7],  # middle int(5/2 + 2) = 4; slices 2..6 (7 excluded)
                      [250, 0, 9, 255, 10, 12]])  # middle 10; touches the corner: clamped at 256 and 0
    res = segment_3d(model, vol, boxes)
    first = [(z, p) for z, p in model.prompts if z <= 6]
    assert sorted(first) == sorted([
        (4, (100, 50, 140, 90)),
        (5, (97, 47, 143, 93)), (6, (94, 44, 146, 96)),  # upward: previous mask grown by 3
        (3, (97, 47, 143, 93)), (2, (94, 44, 146, 96)),  # downward from the middle slice
    ])
    second = [(z, p) for z, p in model.prompts if z >= 9]
    assert sorted(second) == sorted([
        (10, (250, 0, 255, 10)), (11, (247, 0, 256, 13)), (9, (247, 0, 256, 13))])
    assert len(model.prompts) == 8 and model.dtypes == {np.dtype(np.float32)}
    assert sorted(model.encoded) == [2, 3, 4, 5, 6, 9, 10, 11]  # each slice of the ranges, once
    segs = res.segs
    assert not segs[7].any() and not segs[8].any() and not segs[0:2].any()  # z_max excluded
    assert segs[4, 50:91, 100:141].all() and segs[4].sum() == 41 * 41
    assert (segs[6, 44:97, 94:147] == 1).all() and segs[6].sum() == 53 * 53
    assert (segs[11, 0:14, 247:256] == 2).all() and segs[11].sum() == 2 * 14 * 9


def test_3d_empty_mask_falls_back_to_the_middle_box_then_recovers() -> None:
    class Vanishing(BoxModel):
        def decode(self, embedding, boxes256, batch=1):
            out = super().decode(embedding, boxes256, batch)
            if embedding[0, 0, 0, 0] == 5:
                out[:] = -1.0  # nothing on slice 5
            return out

    model = Vanishing()
    segment_3d(model, marked_volume(10, 256, 256), np.array([[100, 50, 2, 140, 90, 9]]))
    # middle 5 (empty) -> 6 and 4 fall back to the middle box, 7 and 3 follow their masks again
    assert sorted(model.prompts) == sorted([
        (5, (100, 50, 140, 90)), (6, (100, 50, 140, 90)), (7, (97, 47, 143, 93)), (8, (94, 44, 146, 96)),
        (4, (100, 50, 140, 90)), (3, (97, 47, 143, 93)), (2, (94, 44, 146, 96))])


def test_3d_prompt_depends_on_the_label_value_through_inter_area() -> None:
    # 1024 -> 256 (4x): the mask is resized as the box's label image (value = its label). Logits +3
    # inside the prompt box [101, 101, 150, 150], -1 outside, upscaled 4x with half-pixel bilinear:
    # the mask covers pixels 403..604, i.e. one pixel (1/4) of the 4-pixel blocks 100 and 151. The
    # resized label there is label/4: 0.25 -> 0 for label 1, 0.75 -> 1 for label 3.
    model = BoxModel(inside=3.0, outside=-1.0)
    vol = marked_volume(12, 1024, 1024, block=4)
    boxes = np.array([[404, 404, 0, 600, 600, 2],  # label 1, middle 1
                      [0, 0, 5, 8, 8, 7],  # label 2
                      [404, 404, 8, 600, 600, 10]])  # label 3, middle 9
    segment_3d(model, vol, boxes)
    got = dict(model.prompts)
    assert got[1] == (101, 101, 150, 150) and got[9] == (101, 101, 150, 150)
    assert got[0] == (98, 98, 153, 153)  # label 1: the quarter-covered blocks vanish
    assert got[8] == (97, 97, 154, 154)  # label 3: they stay


def test_3d_box_from_fullres_prompts() -> None:
    model = BoxModel()
    vol = marked_volume(6, 256, 512, block=2)  # 256 / 512: prompt [50, 25, 70, 45] -> mask columns 100..141
    segment_3d(model, vol, np.array([[100, 50, 1, 140, 90, 4]]), InferenceOptions(box_from_fullres=True))
    got = dict(model.prompts)
    assert got[2] == (50, 25, 70, 45)
    # full-res mask: x 100..141, y 50..91 -> times 0.5 -> [50, 25, 70.5, 45.5], grown by 3
    assert got[3] == (47, 22, 73.5, 48.5) and got[1] == (47, 22, 73.5, 48.5)


def test_3d_zmax_inclusive_and_clip() -> None:
    model = BoxModel(inside=1.0, outside=1.0)  # everything is foreground: only the clip limits it
    res = segment_3d(model, marked_volume(6, 256, 256), np.array([[10, 20, 1, 30, 40, 3]]),
                     InferenceOptions(zmax_inclusive=True, clip_to_box=True))
    assert sorted(model.encoded) == [1, 2, 3]
    for z in (1, 2, 3):
        rows, cols = np.nonzero(res.segs[z])
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 40, 10, 30)
    assert not res.segs[[0, 4, 5]].any()
    # with clipping the next prompt is the clipped mask grown by 3
    assert dict(model.prompts)[3] == (7, 17, 33, 43)


# -- plans and schedule --------------------------------------------------------------------------------


def test_plan_3d_literal() -> None:
    plans = plan_3d(np.array([[1, 2, 2, 5, 6, 7],  # middle int(5/2 + 2) = 4
                              [1, 2, -3, 5, 6, 20],  # unclipped middle int(23/2 - 3) = 8; clipped to 0..11
                              [1, 2, 0, 5, 6, 12]]), (12, 10, 10))  # z_min 0, z_max = D
    assert [(p.idx, p.lo, p.mid, p.hi) for p in plans] == [(1, 2, 4, 7), (2, 0, 8, 12), (3, 0, 6, 12)]
    assert list(plans[0].up) == [4, 5, 6] and list(plans[0].down) == [3, 2]
    assert list(plans[2].down) == [5, 4, 3, 2, 1, 0] and list(plans[2].up) == list(range(6, 12))
    assert plans[0].default256.tolist() == [25.0, 51.0, 128.0, 153.0]  # 256/10 = 25.6: truncated
    assert plans[0].default256.dtype == np.float32
    inclusive = plan_3d(np.array([[1, 2, 3, 5, 6, 3], [1, 2, 2, 5, 6, 12]]), (12, 10, 10), zmax_inclusive=True)
    assert [(p.lo, p.mid, p.hi) for p in inclusive] == [(3, 3, 4), (2, 7, 12)]


def test_plan_3d_middle_beyond_the_volume_with_a_slice_below_is_an_error() -> None:
    # D = 6, z 6..8: middle 7; DAFT's downward pass starts at slice 6 (= z_min), which has no embedding
    other = [0, 0, 0, 9, 9, 2]
    with pytest.raises(CaseError, match="middle slice 7 beyond the last of the volume's 6 slices"):
        plan_3d(np.array([[0, 0, 6, 9, 9, 8], other]), (6, 10, 10))
    # z 7..8: middle 7, nothing to visit downward (z_min 7 > 6): no error, nothing segmented
    (plan, _) = plan_3d(np.array([[0, 0, 7, 9, 9, 8], other]), (6, 10, 10))
    assert not list(plan.up) and not list(plan.down)


def test_plan_3d_float_z_middle_from_raw_values() -> None:
    # DAFT: int((12.5 - -0.9) / 2 + -0.9) = int(5.8) = 5; truncating first would give int(12 / 2) = 6
    (plan,) = plan_3d(np.array([[1.5, 2.0, -0.9, 5.0, 6.0, 12.5]]), (12, 10, 10))
    assert (plan.lo, plan.mid, plan.hi) == (0, 5, 12)


def test_schedule_literal() -> None:
    plans = plan_3d(np.array([[0, 0, 2, 5, 5, 7], [0, 0, 5, 5, 5, 9]]), (10, 8, 8))  # middles 4 and 7
    steps = schedule(plans)
    assert steps == [(4, True, [0]), (5, True, [0]), (6, True, [0]), (7, True, [1]), (8, True, [1]),
                     (6, False, [1]), (5, False, [1]), (3, False, [0]), (2, False, [0])]


def test_box_notes_literal() -> None:
    from daftseg.inference.boxes import box_notes

    tail = "; segmented as DAFT does (its coordinates go to the prompt encoder as given)"
    # one box, below a 100-high, 200-wide image (x within the width)
    assert box_notes(np.array([[5, 150, 10, 160]]), (100, 200), False) == [
        f"box 1 [5, 150, 10, 160] lies wholly outside the 200x100 (WxH) image{tail}"]
    assert box_notes(np.array([[5, 50, 10, 60]]), (100, 200), False) == []
    # 3D, D x H x W = 10 x 20 x 30: the xy box is columns 0, 1, 3, 4 and checked against W and H
    boxes = np.array([[25, 1, 0, 2, 5, 4],     # inverted in x only
                      [1, 25, 0, 5, 28, 4],    # below the image (y >= H = 20, < W)
                      [1, 1, 12, 5, 5, 13],    # no slice in the volume
                      [3, 4, 0, 9, 8, 3]])     # ordinary
    assert box_notes(boxes, (10, 20, 30), True) == [
        f"box 1 [25, 1, 2, 5] is inverted (x_min > x_max or y_min > y_max){tail}",
        f"box 2 [1, 25, 5, 28] lies wholly outside the 30x20 (WxH) image{tail}",
        "box 3: no slice of its z range lies inside the volume of 10 slices; nothing is segmented for it (as DAFT)",
    ]
    # edges: a zero-width or zero-height box is not inverted; touching column 0 or row 0 is inside; starting
    # at column W or row H is outside; inverted and outside together
    edges = np.array([[5, 5, 5, 9], [5, 5, 9, 5], [0, 5, 0, 9], [5, 0, 9, 0], [200, 5, 210, 9], [5, 100, 9, 110],
                      [-1, 5, -9, 9]])
    assert box_notes(edges, (100, 200), False) == [
        f"box 5 [200, 5, 210, 9] lies wholly outside the 200x100 (WxH) image{tail}",
        f"box 6 [5, 100, 9, 110] lies wholly outside the 200x100 (WxH) image{tail}",
        (f"box 7 [-1, 5, -9, 9] is inverted (x_min > x_max or y_min > y_max) and lies wholly outside the "
         f"200x100 (WxH) image{tail}"),
    ]
    # z_min == z_max: DAFT's assert (an error) unless z_max is inclusive
    one_slice = np.array([[1, 1, 4, 5, 5, 4], [3, 4, 0, 9, 8, 3]])
    with pytest.raises(CaseError, match="z_min 4 >= z_max 4"):
        box_notes(one_slice, (10, 20, 30), True)
    assert box_notes(one_slice, (10, 20, 30), True, zmax_inclusive=True) == []


def test_clip_region_literal() -> None:
    assert clip_region(np.array([10, 20, 30, 50]), 100, 100) == (slice(20, 51), slice(10, 31))
    assert clip_region(np.array([-5.5, -1, 30.7, 200]), 100, 100) == (slice(0, 100), slice(0, 31))
    assert clip_region(np.array([-9, -9, -2, -2]), 100, 100) == (slice(0, 0), slice(0, 0))
