"""Faithfulness: the runtime's outputs equal, byte for byte, an independent transcription of DAFT's script.

The reference is ``tests/reference/daft_plain.py`` (spec §7.4/§7.5 step by step; numpy, OpenCV and
OpenVINO only, its own ``ov.Core``, graphs compiled as stored, no cache). Each faithful test runs in
every precision mode of the runtime against the reference at the same OpenVINO precision:

- ``default`` (no precision argument) against an f32 hint;
- ``auto`` against no hint (DAFT's script as it ran: bf16 on CPUs with native bf16);
- ``bf16`` against a bf16 hint, skipped where the CPU has no native bf16 (forcing bf16 there
  means nothing to compare).

The models are toy IR with DAFT's tensor names (tests/ov_toy_models.py); test_end_to_end.py
repeats the comparison on real-sized exported IR. The runtime's opt-in options are compared with
the reference's separate variants, and its memory bounds with the faithful reference.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from ov_toy_models import toy_models_dir, write_toy_models  # noqa: F401 - pytest fixture
from reference import daft_plain as daft

from daftseg.inference import InferenceOptions, Segmenter
from daftseg.inference.boxes import plan_3d
from daftseg.inference.case3d import schedule
from daftseg.inference.runner import main as runner_main
from daftseg.inference.sessions import SessionConfig, Sessions
from daftseg.inference.slice_cache import SliceEmbeddings, SpillFile

# mode -> (Segmenter keyword arguments, the reference's precision)
MODES = {"default": ({}, "f32"), "auto": ({"precision": "auto"}, "auto"), "bf16": ({"precision": "bf16"}, "bf16")}
NO_BF16 = ("this CPU has no native bf16 (OpenVINO's OPTIMIZATION_CAPABILITIES lacks BF16): "
           "a bf16 hint has nothing to change here; the precision decision is tested with a fake core")

_references: dict[tuple[str, str, str], daft.DaftModels] = {}


def reference(models_dir: Path, name: str, precision: str = "f32") -> daft.DaftModels:
    """The reference's compiled models (cached across tests: compiling is the slow part)."""
    key = (str(models_dir), name, precision)
    if key not in _references:
        _references[key] = daft.DaftModels(models_dir, name, precision)
    return _references[key]


class Pair:
    """The runtime in one mode and the reference at the same precision, over one models folder."""

    def __init__(self, models_dir: Path, mode: str) -> None:
        kwargs, self.precision = MODES[mode]
        self.mode = mode
        self.models_dir = models_dir
        self.segmenter = Segmenter(models_dir, **kwargs)

    def ours(self, model: str, imgs: np.ndarray, boxes: np.ndarray, is_3d: bool) -> np.ndarray:
        return self.segmenter.segment(imgs, boxes, model=model, is_3d=is_3d)

    def daft_2d(self, model: str, img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        rgb = np.repeat(img[:, :, None], 3, -1) if img.ndim == 2 else img  # DAFT's 2D path needs 3 channels
        return daft.infer_2d(reference(self.models_dir, model, self.precision), rgb, boxes)

    def daft_3d(self, model: str, vol: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return daft.infer_3d(reference(self.models_dir, model, self.precision), vol, boxes)

    def check_2d(self, model: str, img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Assert equality; return DAFT's segs (uint16, as DAFT writes them)."""
        expected = self.daft_2d(model, img, boxes)
        ours = self.ours(model, img, boxes, is_3d=False)
        assert ours.dtype == np.uint16 and ours.shape == expected.shape
        np.testing.assert_array_equal(ours, expected)
        return expected

    def check_3d(self, model: str, vol: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        expected = self.daft_3d(model, vol, boxes)
        ours = self.ours(model, vol, boxes, is_3d=True)
        assert ours.dtype == np.uint16 and ours.shape == expected.shape
        np.testing.assert_array_equal(ours, expected)
        return expected


_pairs: dict[tuple[str, str], Pair] = {}


@pytest.fixture(params=list(MODES))
def pair(request, toy_models_dir) -> Pair:  # noqa: F811
    if request.param == "bf16" and not daft.cpu_has_native_bf16():
        pytest.skip(NO_BF16)
    key = (str(toy_models_dir), request.param)
    if key not in _pairs:
        _pairs[key] = Pair(toy_models_dir, request.param)
    return _pairs[key]


@pytest.fixture(scope="module")
def f32(toy_models_dir) -> Pair:  # noqa: F811
    """The default mode, for the opt-in options (compared with the reference's f32 variants)."""
    return Pair(toy_models_dir, "default")


def test_each_mode_runs_at_its_precision(pair: Pair) -> None:
    # what OpenVINO reports for both sides: the comparisons below are made at the precision they claim
    native = daft.cpu_has_native_bf16()
    expected = {"default": "f32", "auto": "bf16" if native else "f32", "bf16": "bf16"}[pair.mode]
    assert reference(pair.models_dir, "CT", pair.precision).inference_precision() == expected
    ours = pair.segmenter.sessions.model("CT").decoder.compiled.get_property("INFERENCE_PRECISION_HINT")
    assert ours.get_type_name() == expected


# -- inputs ------------------------------------------------------------------------------------------


def textured(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """uint8 image with smooth structure + noise, so masks depend on position and content."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    smooth = sum(np.sin(g * (i + 2)) for i, g in enumerate(grids))
    img = 128 + 50 * smooth + rng.normal(0, 25, shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def random_boxes_2d(n: int, h: int, w: int, seed: int, min_size: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x0 = rng.integers(0, w - min_size, n)
    y0 = rng.integers(0, h - min_size, n)
    x1 = np.minimum(w - 1, x0 + rng.integers(min_size, max(min_size + 1, w // 2), n))
    y1 = np.minimum(h - 1, y0 + rng.integers(min_size, max(min_size + 1, h // 2), n))
    return np.stack([x0, y0, x1, y1], 1)


# boxes touching z = 0 and z = D-1, a box inside another's z range, a one-slice range
BOXES_3D = np.array([
    [4, 6, 0, 30, 28, 9],     # z_min = 0
    [10, 3, 5, 50, 30, 12],   # z_max = D (D = 12)
    [20, 10, 6, 40, 25, 8],   # inside box 2's z range, overlapping it in xy
    [2, 2, 3, 12, 9, 4],      # a single slice (z_max exclusive)
    [30, 5, 9, 55, 33, 14],   # z_max beyond the volume: clipped
])


def labels(segs: np.ndarray) -> set[int]:
    return {int(v) for v in np.unique(segs)} - {0}


# -- 2D ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(90, 130, 3), (301, 77, 3), (64, 64)], ids=["rgb", "tall-rgb", "grey"])
def test_2d_equals_daft(pair: Pair, shape) -> None:
    img = textured(shape, seed=1)
    boxes = random_boxes_2d(12, shape[0], shape[1], seed=2)
    segs = pair.check_2d("XRay", img, boxes)
    assert len(labels(segs)) > 3  # masks overlap and overwrite, not all background


def test_2d_more_than_255_boxes(pair: Pair) -> None:
    img = textured((48, 60, 3), seed=3)
    boxes = random_boxes_2d(300, 48, 60, seed=4, min_size=1)
    assert pair.check_2d("CT", img, boxes).max() > 255


def test_2d_float_boxes(pair: Pair) -> None:
    img = textured((200, 150, 3), seed=5)
    boxes = np.array([[0.0, 0.0, 149.0, 199.0], [10.7, 20.2, 99.9, 150.5], [60.9, 3.5, 120.99, 80.5]])
    assert labels(pair.check_2d("XRay", img, boxes)) == {1, 2, 3}


def test_2d_inverted_and_outside_boxes_segmented_as_daft(pair: Pair, caplog) -> None:
    img = np.full((120, 256, 3), 230, np.uint8)  # bright: toy masks grow past their boxes; 256 wide: ratio 1
    img[-1, -1] = 0
    boxes = np.array([
        [20, 30, 60, 90],      # 1: ordinary
        [90, 40, 89, 80],      # 2: inverted in x by one pixel
        [-10, 20, -1, 60],     # 3: wholly left of the image
        [270, 10, 300, 50],    # 4: wholly right of the image
        [100, 60, 150, 59],    # 5: inverted in y by one pixel
        [200, -30, 300, 20],   # 6: partly outside
    ])
    with caplog.at_level(logging.WARNING, logger="daftseg.inference"):
        segs = pair.check_2d("CT", img, boxes)
    assert {2, 3, 5, 6} <= labels(segs)  # DAFT's masks for the inverted and the outside boxes are not empty
    for k in (2, 3, 4, 5):
        assert f"box {k}" in caplog.text


def test_2d_small_integer_box_dtype_wraps_as_daft(pair: Pair) -> None:
    # uint8 boxes on a 100-pixel image: 255 * 2.56 = 652 is stored in DAFT's uint8 box as 140
    img = textured((80, 100, 3), seed=6)
    boxes = np.array([[10, 5, 60, 40], [50, 20, 255, 70]], np.uint8)
    pair.check_2d("CT", img, boxes)


@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64", "int16"])
def test_2d_image_resized_in_its_stored_dtype(pair: Pair, dtype: str) -> None:
    # 200 x 230 is upscaled: OpenCV's INTER_AREA rounds uint8 differently from other dtypes there
    base = textured((200, 230, 3), seed=7)
    img = base.astype(dtype)
    if dtype.startswith("float"):
        img = img + np.random.default_rng(8).random(img.shape).astype(dtype) * 0.9  # fractions, still < 256
    assert (daft.encoder_input(img)[0] != daft.encoder_input(base)[0]).any()  # the dtype matters
    boxes = random_boxes_2d(10, 200, 230, seed=9, min_size=10)
    pair.check_2d("XRay", img, boxes)


def test_2d_resized_height_1(pair: Pair) -> None:
    img = textured((2, 400, 3), seed=10)  # resized to 1 x 256: DAFT's squeeze turns the logits row into a column
    boxes = np.array([[10, -100, 200, 100], [150, -100, 390, 100]])  # tall: masks reach row 0 of 256-space
    segs = pair.check_2d("XRay", img, boxes)
    assert segs.any()


# -- 3D ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(40, 64), (300, 140)], ids=["upscaled", "downscaled-tall"])
def test_3d_equals_daft(pair: Pair, hw) -> None:
    vol = textured((12, *hw), seed=11)
    scale = np.array([hw[1] / 64, hw[0] / 40, 1, hw[1] / 64, hw[0] / 40, 1])
    boxes = np.floor(BOXES_3D * scale).astype(np.int64)
    segs = pair.check_3d("3D", vol, boxes)
    assert labels(segs) >= {1, 2, 3, 5}
    assert (segs[0] > 0).any() and (segs[-1] > 0).any()  # z_min = 0 and z_max = D are segmented to the ends


@pytest.mark.parametrize("dtype", ["uint16", "float64"])
def test_3d_volume_in_its_stored_dtype(pair: Pair, dtype: str) -> None:
    base = textured((6, 200, 230), seed=12)
    vol = base.astype(dtype)
    if dtype == "float64":
        vol = vol * 3.7 - 100  # no range check in DAFT's 3D path
    boxes = np.array([[20, 30, 0, 150, 160, 6], [60, 10, 2, 220, 120, 5]])
    pair.check_3d("3D", vol, boxes)


def test_3d_more_than_255_boxes(pair: Pair) -> None:
    vol = textured((6, 24, 30), seed=13)
    rng = np.random.default_rng(14)
    xy = random_boxes_2d(300, 24, 30, seed=15, min_size=1)
    z0 = rng.integers(0, 5, 300)
    boxes = np.stack([xy[:, 0], xy[:, 1], z0, xy[:, 2], xy[:, 3], z0 + rng.integers(1, 3, 300)], 1)
    assert pair.check_3d("CT", vol, boxes).max() > 255


def test_3d_float_z_middle_from_raw_values(pair: Pair) -> None:
    # DAFT's script runs float boxes when its min/max return ints: z_min <= 0 and z_max > D. The middle
    # of box 1 is int((12.5 - 0.9) / 2 - 0.9) = 5, where truncating first gives 6.
    vol = textured((12, 40, 64), seed=16)
    boxes = np.array([[4.5, 6.2, -0.9, 30.7, 28.1, 12.5], [10.2, 3.3, 0.0, 50.9, 30.0, 13.0]])
    segs = pair.check_3d("3D", vol, boxes)
    assert labels(segs) == {1, 2}
    truncated = pair.daft_3d("3D", vol, np.trunc(boxes).astype(np.int64))
    assert (segs != truncated).any()  # the raw middle changes the result


def test_3d_resized_height_1(pair: Pair) -> None:
    vol = textured((4, 2, 400), seed=17)
    segs = pair.check_3d("3D", vol, np.array([[10, -100, 0, 200, 100, 4], [150, -100, 1, 390, 100, 3]]))
    assert segs.any()


@pytest.fixture(scope="module")
def gate_models_dir(tmp_path_factory) -> Path:
    """A toy model whose masks follow the image: alpha 40 makes dark regions vanish."""
    return write_toy_models(tmp_path_factory.mktemp("gate_models"), {"gate": {"alpha": 40.0}})


def test_3d_empty_mask_mid_volume_then_recovery(pair: Pair, gate_models_dir: Path) -> None:
    # A grey square on black; slices 2 and 6 have the square black. There the mask vanishes, so the
    # next slice falls back to the box (slices 1 and 7) and the mask comes back.
    vol = np.zeros((9, 64, 64), np.uint8)
    vol[:, 0, 63] = 255  # a bright corner: min-max maps the square's grey to about 0.5
    vol[:, 22:30, 22:30] = 128
    vol[[2, 6], 22:30, 22:30] = 0
    boxes = np.array([[24, 24, 0, 27, 27, 9]])  # z_min 0, z_max = D; middle slice 4
    gate = Pair(gate_models_dir, pair.mode)
    segs = gate.check_3d("gate", vol, boxes)
    assert [bool(s.any()) for s in segs] == [True, True, False, True, True, True, False, True, True]


def test_dot_files_are_skipped(toy_models_dir, tmp_path) -> None:  # noqa: F811
    inp, out = tmp_path / "imgs", tmp_path / "segs"
    inp.mkdir()
    img = textured((50, 60, 3), seed=18)
    boxes = random_boxes_2d(3, 50, 60, seed=19)
    np.savez_compressed(inp / "2DBox_CT_0001.npz", imgs=img, boxes=boxes)
    np.savez_compressed(inp / ".2DBox_CT_0002.npz", imgs=img, boxes=boxes)  # hidden: DAFT's glob skips it
    assert runner_main(["-i", str(inp), "-o", str(out), "-m", str(toy_models_dir), "--cache_dir", ""]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["2DBox_CT_0001.npz"]
    with np.load(out / "2DBox_CT_0001.npz") as z:
        np.testing.assert_array_equal(z["segs"], daft.infer_2d(reference(toy_models_dir, "CT"), img, boxes))


# -- opt-in options: the reference's variants (default precision) ------------------------------------


def segment(p: Pair, model: str, imgs, boxes, is_3d: bool, **options) -> np.ndarray:
    return Segmenter(p.models_dir, options=InferenceOptions(**options)).segment(imgs, boxes, model=model,
                                                                                 is_3d=is_3d)


def test_2d_clip_to_box(f32: Pair) -> None:
    img = np.full((120, 200, 3), 250, np.uint8)  # bright after min-max: toy masks grow past their boxes
    img[-1, -1] = 0
    boxes = np.array([[20, 30, 80, 90], [100, 10, 190, 60], [-5.5, 100, 10.2, 130]])
    clipped = segment(f32, "XRay", img, boxes, False, clip_to_box=True)
    expected = daft.infer_2d_variant(reference(f32.models_dir, "XRay"), img, boxes, clip_to_box=True)
    np.testing.assert_array_equal(clipped, expected)
    assert (f32.ours("XRay", img, boxes, False) != clipped).any()
    for idx, (x0, y0, x1, y1) in enumerate(boxes[:2], start=1):
        rows, cols = np.nonzero(clipped == idx)
        assert rows.min() >= y0 and rows.max() <= y1 and cols.min() >= x0 and cols.max() <= x1


def test_3d_zmax_inclusive(f32: Pair) -> None:
    vol = textured((10, 40, 40), seed=20)
    boxes = np.array([[5, 5, 2, 30, 30, 6], [10, 10, 7, 35, 35, 7]])  # second: one slice, inclusive only
    ours = segment(f32, "3D", vol, boxes, True, zmax_inclusive=True)
    expected = daft.infer_3d_variant(reference(f32.models_dir, "3D"), vol, boxes, zmax_inclusive=True)
    np.testing.assert_array_equal(ours, expected)
    assert (ours[6] == 1).any() and (ours[7] == 2).any()
    assert not (f32.ours("3D", vol, boxes[:1], True)[6] > 0).any()  # DAFT: z_max itself is not segmented


def test_3d_box_from_fullres(f32: Pair) -> None:
    vol = textured((14, 90, 200), seed=21)
    boxes = np.array([[20, 10, 0, 120, 70, 14], [60, 30, 3, 190, 85, 9]])
    ours = segment(f32, "3D", vol, boxes, True, box_from_fullres=True)
    expected = daft.infer_3d_variant(reference(f32.models_dir, "3D"), vol, boxes, box_from_fullres=True)
    np.testing.assert_array_equal(ours, expected)
    assert (ours != f32.ours("3D", vol, boxes, True)).any()


def test_3d_clip_to_box(f32: Pair) -> None:
    vol = np.full((8, 60, 80), 240, np.uint8)
    vol[:, -1, -1] = 0
    boxes = np.array([[10, 10, 1, 40, 30, 7], [45, 20, 0, 70, 50, 5]])
    ours = segment(f32, "3D", vol, boxes, True, clip_to_box=True)
    expected = daft.infer_3d_variant(reference(f32.models_dir, "3D"), vol, boxes, clip_to_box=True)
    np.testing.assert_array_equal(ours, expected)
    _, rows, cols = np.nonzero(ours == 1)
    assert rows.min() >= 10 and rows.max() <= 30 and cols.min() >= 10 and cols.max() <= 40
    assert (ours != f32.ours("3D", vol, boxes, True)).any()


def test_variants_without_options_equal_the_faithful_reference(f32: Pair) -> None:
    # the variant functions share no code path with infer_2d / infer_3d's loops: each checks the other
    models = reference(f32.models_dir, "3D")
    vol = textured((12, 40, 64), seed=22)
    np.testing.assert_array_equal(daft.infer_3d_variant(models, vol, BOXES_3D), daft.infer_3d(models, vol, BOXES_3D))
    img = textured((90, 130, 3), seed=23)
    boxes = random_boxes_2d(8, 90, 130, seed=24)
    np.testing.assert_array_equal(daft.infer_2d_variant(models, img, boxes), daft.infer_2d(models, img, boxes))


@pytest.mark.parametrize(("capacity", "spilled"), [(0, 0), (1, 0), (16, 0), (0, 2), (1, 512)])
def test_3d_cache_bounds_never_change_outputs(f32: Pair, capacity: int, spilled: int, tmp_path) -> None:
    vol = textured((20, 48, 48), seed=25)
    # middles far apart: the down sweep needs many slices the up sweep encoded
    boxes = np.array([[5, 5, 0, 40, 40, 20], [8, 4, 2, 30, 44, 6], [3, 9, 12, 36, 30, 19]])
    ours = segment(f32, "CT", vol, boxes, True, max_cached_slices=capacity, max_spilled_slices=spilled,
                   spill_dir=str(tmp_path))
    np.testing.assert_array_equal(ours, f32.daft_3d("CT", vol, boxes))
    assert list(tmp_path.iterdir()) == []  # the spill file is never visible, not even after the case


def test_decode_batch_keeps_box_order(f32: Pair) -> None:
    # the toy decoder is elementwise, so batching is exact here: any difference is a bookkeeping bug
    img = textured((80, 80, 3), seed=26)
    boxes = random_boxes_2d(23, 80, 80, seed=27)
    vol = textured((12, 40, 64), seed=28)
    expected_2d, expected_3d = f32.daft_2d("CT", img, boxes), f32.daft_3d("CT", vol, BOXES_3D)
    for batch in (2, 7, 64):
        np.testing.assert_array_equal(segment(f32, "CT", img, boxes, False, decode_batch=batch), expected_2d)
        np.testing.assert_array_equal(segment(f32, "CT", vol, BOXES_3D, True, decode_batch=batch), expected_3d)


# -- embedding memory ----------------------------------------------------------------------------------


def _visit_all(emb: SliceEmbeddings, visits: list[int]) -> int:
    """Run the visits; return the most embeddings in memory and on disk together at any point."""
    most = 0
    with emb:
        for z in visits:
            assert (emb.get(z) == z).all()  # what comes back (from memory, disk or encoder) is that slice's
            most = max(most, len(emb._memory) + (len(emb._spill) if emb._spill else 0))
            emb.release(z)
        assert not emb._memory and (emb._spill is None or len(emb._spill) == 0)  # all released
    return most


def test_3d_memory_is_bounded(tmp_path) -> None:
    # 120 slices, 4 overlapping boxes: at most capacity + 1 embeddings in memory at once
    plans = plan_3d(np.array([[0, 0, 0, 9, 9, 120], [0, 0, 10, 9, 9, 100], [0, 0, 50, 9, 9, 119],
                              [0, 0, 30, 9, 9, 60]]), (120, 10, 10))
    visits = [z for z, _, _ in schedule(plans)]
    distinct = len(set(visits))

    def encode(z: int) -> np.ndarray:
        return np.full((2, 3), z, np.float32)

    for capacity in (0, 4, 16):
        emb = SliceEmbeddings(encode, visits, capacity)
        _visit_all(emb, visits)
        assert emb.max_in_memory <= capacity + 1 and emb.max_spilled == 0
        assert emb.encoder_calls > distinct  # too little room: slices encoded again
    big = SliceEmbeddings(encode, visits, 120)
    _visit_all(big, visits)
    assert big.encoder_calls == distinct  # enough room: every slice encoded once
    # a small memory tier and a large spill file: every slice encoded once, few held in memory
    spilling = SliceEmbeddings(encode, visits, 2, 512, str(tmp_path))
    _visit_all(spilling, visits)
    assert spilling.encoder_calls == distinct and spilling.max_in_memory <= 3 and spilling.max_spilled > 20
    # both tiers bounded: the total held never exceeds them, and re-encoding fills the gap
    both = SliceEmbeddings(encode, visits, 2, 8, str(tmp_path))
    assert _visit_all(both, visits) <= 2 + 1 + 8
    assert both.max_spilled == 8 and distinct < both.encoder_calls < spilling.encoder_calls + 100


def test_spill_file_round_trip_and_failures(tmp_path, caplog) -> None:
    rng = np.random.default_rng(0)
    arrays = {k: rng.standard_normal((1, 4, 3, 3)).astype(np.float32) for k in range(5)}
    spill = SpillFile(str(tmp_path), (1, 4, 3, 3))
    for k, a in arrays.items():
        spill.put(k, a)
    spill.discard(1)
    spill.put(7, arrays[1])  # reuses the freed slot
    for k in (0, 2, 3, 4):
        np.testing.assert_array_equal(spill.take(k), arrays[k])  # bit for bit
    np.testing.assert_array_equal(spill.take(7), arrays[1])
    assert len(spill) == 0
    spill.close()
    # an unusable spill folder: a warning, then slices are encoded again; the results do not change
    visits = [0, 1, 2, 1, 0]
    emb = SliceEmbeddings(lambda z: np.full(3, z, np.float32), visits, 0, 8, str(tmp_path / "missing"))
    with caplog.at_level("WARNING", logger="daftseg.inference"):
        _visit_all(emb, visits)
    assert "spill file" in caplog.text and emb.encoder_calls == 5


# -- sessions: graphs fixed at batch 1, compiled-model cache ---------------------------------------


def test_static_batch1_decoder_equals_dynamic(f32: Pair) -> None:
    seg = f32.segmenter
    static = seg.sessions.model("static1")
    dynamic = Segmenter(f32.models_dir, options=InferenceOptions(decode_batch=8))
    assert static.decoder_max_batch == 1 and dynamic.sessions.model("CT").decoder_max_batch is None
    assert seg.sessions.model("CT").decoder_max_batch == 1  # the default (f32): compiled at batch 1
    img = textured((70, 90, 3), seed=29)
    boxes = random_boxes_2d(9, 70, 90, seed=30)
    vol = textured((9, 30, 50), seed=31)
    for opts in ({}, {"decode_batch": 8}):  # batching is capped at the decoder's fixed batch
        np.testing.assert_array_equal(segment(f32, "static1", img, boxes, False, **opts),
                                      f32.ours("CT", img, boxes, False))
        np.testing.assert_array_equal(segment(f32, "static1", vol, BOXES_3D[:3] // 2, True, **opts),
                                      f32.ours("CT", vol, BOXES_3D[:3] // 2, True))
    np.testing.assert_array_equal(f32.ours("static1", img, boxes, False), f32.daft_2d("static1", img, boxes))


def test_compiled_model_cache_gives_same_outputs(toy_models_dir, tmp_path) -> None:  # noqa: F811
    img = textured((60, 70, 3), seed=32)
    boxes = random_boxes_2d(5, 60, 70, seed=33)
    outs = []
    for _ in range(2):  # first run fills the cache, second loads from it
        s = Segmenter(toy_models_dir, cache_dir=str(tmp_path / "cache"), precision="f32", threads=1)
        outs.append(s.segment(img, boxes, model="XRay"))
    assert any((tmp_path / "cache").iterdir())
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], daft.infer_2d(reference(toy_models_dir, "XRay"), img, boxes))


def test_graphs_compiled_at_batch_1_via_static_copies_in_the_cache(toy_models_dir, tmp_path) -> None:  # noqa: F811
    import os

    from daftseg.inference.static_ir import STATIC_IR_FOLDER

    cache = tmp_path / "cache"
    img = textured((60, 70, 3), seed=34)
    boxes = random_boxes_2d(5, 60, 70, seed=35)
    as_stored = Segmenter(toy_models_dir, options=InferenceOptions(decode_batch=2))
    expected = as_stored.segment(img, boxes, model="XRay")
    assert as_stored.sessions.model("XRay").encoder.compiled.input("image").get_partial_shape()[0].is_dynamic

    first = Segmenter(toy_models_dir, cache_dir=str(cache))
    np.testing.assert_array_equal(first.segment(img, boxes, model="XRay"), expected)
    m = first.sessions.model("XRay")
    assert m.encoder.compiled.input("image").get_partial_shape().is_static and m.decoder_max_batch == 1
    copies = sorted(p.name for p in (cache / STATIC_IR_FOLDER).iterdir())
    assert [n.split(".")[0] for n in copies if n.endswith(".xml")] == [
        "XRay_image_encoder", "XRay_mask_decoder", "lite_medsam_prompt_encoder"]
    assert not [n for n in copies if n.startswith(".tmp")]  # no half-written copy left
    stamps = {p.name: p.stat().st_mtime_ns for p in (cache / STATIC_IR_FOLDER).iterdir()}
    # a second process reuses the copies; a decoder stored at batch 1 needs none (a marker says so)
    second = Segmenter(toy_models_dir, cache_dir=str(cache))
    np.testing.assert_array_equal(second.segment(img, boxes, model="XRay"), expected)
    second.segment(img, boxes, model="static1")
    after = {p.name: p.stat().st_mtime_ns for p in (cache / STATIC_IR_FOLDER).iterdir()}
    assert {k: after[k] for k in stamps} == stamps
    assert [n for n in after if n.startswith("static1_mask_decoder") and n.endswith(".same")]
    # a model replaced under the same name gets a new copy, never the stale one
    enc = toy_models_dir / "XRay_image_encoder.xml"
    st = enc.stat()
    try:
        os.utime(enc, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        Sessions(toy_models_dir, SessionConfig(str(cache))).model("XRay")
        assert len([n for n in os.listdir(cache / STATIC_IR_FOLDER) if n.startswith("XRay_image_encoder")
                    and n.endswith(".xml")]) == 2
    finally:
        os.utime(enc, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_compiled_models_are_released_least_recent_first(toy_models_dir) -> None:  # noqa: F811
    s = Sessions(toy_models_dir, SessionConfig(max_loaded_models=2))
    ct = s.model("CT")
    s.model("XRay")
    assert s.model("CT") is ct  # still loaded; now the most recent
    s.model("3D")
    assert s.loaded() == ["3D", "CT"]  # XRay, the least recently used, was released
    assert s.model("XRay") is not None and s.loaded() == ["3D", "XRay"]
    unlimited = Sessions(toy_models_dir, SessionConfig(max_loaded_models=0))
    for name in ("CT", "XRay", "3D", "lite_medsam"):
        unlimited.model(name)
    assert unlimited.loaded() == ["3D", "CT", "XRay", "lite_medsam"]
    # a released model gives the same outputs when it is compiled again
    img = textured((50, 60, 3), seed=36)
    boxes = random_boxes_2d(4, 50, 60, seed=37)
    one = Segmenter(toy_models_dir, max_loaded_models=1)
    first = one.segment(img, boxes, model="CT")
    one.segment(img, boxes, model="XRay")
    assert one.sessions.loaded() == ["XRay"]
    np.testing.assert_array_equal(one.segment(img, boxes, model="CT"), first)


def test_static_copy_that_cannot_be_written_falls_back_to_the_stored_graph(toy_models_dir, tmp_path,  # noqa: F811
                                                                          caplog) -> None:
    from daftseg.inference.static_ir import STATIC_IR_FOLDER

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / STATIC_IR_FOLDER).write_text("a file where the folder should be")
    img = textured((40, 50, 3), seed=38)
    boxes = random_boxes_2d(3, 40, 50, seed=39)
    with caplog.at_level("WARNING", logger="daftseg.inference"):
        seg = Segmenter(toy_models_dir, cache_dir=str(cache))
        out = seg.segment(img, boxes, model="CT")
    assert "compiling CT_image_encoder.xml as stored" in caplog.text
    assert seg.sessions.model("CT").decoder_max_batch is None  # the dynamic graph, as stored
    np.testing.assert_array_equal(out, Segmenter(toy_models_dir).segment(img, boxes, model="CT"))


def test_graph_already_at_batch_1_is_used_as_stored(toy_models_dir, tmp_path, caplog) -> None:  # noqa: F811
    from daftseg.inference.static_ir import STATIC_IR_FOLDER, static_ir

    source = toy_models_dir / "static1_mask_decoder.xml"
    core = Sessions(toy_models_dir, SessionConfig(str(tmp_path))).core
    with caplog.at_level("WARNING", logger="daftseg.inference"):
        assert static_ir(core, source, 1, tmp_path) == source  # a fresh cache: no folder yet
        assert static_ir(core, source, 1, tmp_path) == source  # the marker, without reading the IR
    assert not caplog.text
    assert [p.suffix for p in (tmp_path / STATIC_IR_FOLDER).iterdir()] == [".same"]


def test_sessions_read_inputs_in_place_without_changing_results(toy_models_dir) -> None:  # noqa: F811
    """Inputs are shared with OpenVINO, not copied: results equal a copying call, for any layout."""
    import openvino as ov

    m = Sessions(toy_models_dir, SessionConfig()).model("XRay")
    rng = np.random.default_rng(3)
    image = rng.random((1, 3, 256, 256), dtype=np.float32)
    strided = np.asfortranarray(image)  # not C-contiguous: must still be read correctly
    embedding = m.encode(image)
    assert np.array_equal(m.encode(strided), embedding)
    plain = ov.Core().compile_model(m.encoder.path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    plain.infer({"image": image.copy()})
    assert np.array_equal(plain.get_tensor("image_embedding").data, embedding)
    before = embedding.copy()
    boxes = np.array([[10, 20, 90, 120], [30, 30, 60, 200]], np.float32)
    first = m.decode(embedding, boxes)
    assert np.array_equal(embedding, before)  # a shared input is never written to
    assert np.array_equal(m.decode(embedding.copy(), boxes), first)
