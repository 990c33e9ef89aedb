"""Faithfulness: the runtime's outputs equal, voxel for voxel, a plain implementation of spec §7.4/§7.5.

The reference below is written straight from the spec, one box and one slice at a time, every
needed slice encoded up front as DAFT does, over the same compiled sessions (toy models with DAFT's
tensor names, tests/ov_toy_models.py). The opt-in flags are reference parameters too, so each is
checked to change exactly what it should.
"""

from __future__ import annotations

import numpy as np
import pytest
from ov_toy_models import toy_models_dir  # noqa: F401 - pytest fixture

from daftseg.geometry import (
    bbox_from_mask,
    bbox_from_mask_fullres,
    postprocess_logits,
    preprocess_image,
    resize_longest_side,
    scale_box_to_256,
)
from daftseg.inference import InferenceOptions, Segmenter
from daftseg.inference.boxes import plan_3d
from daftseg.inference.case3d import schedule
from daftseg.inference.sessions import ModelSessions, SessionConfig, Sessions
from daftseg.inference.slice_cache import SliceEmbeddings, SpillFile

# -- the plain reference (spec §7.4, §7.5) ---------------------------------------------------------


def ref_decode(m: ModelSessions, embedding: np.ndarray, box256: np.ndarray, new_hw, hw) -> np.ndarray:
    """medsam_inference: prompt encoder + decoder on one (1,1,1,4) box, crop, resize, > 0."""
    sparse, dense = m.prompt_encoder({"boxes": np.asarray(box256)[None, None, None].astype(np.float32)})
    (logits,) = m.decoder({"image_embeddings": embedding, "image_pe": m.positional_encoding,
                           "sparse_prompt_embeddings": sparse, "dense_prompt_embeddings": dense})
    return postprocess_logits(logits[0, 0], new_hw, hw)


def ref_clip(mask: np.ndarray, box) -> np.ndarray:
    """The box mask DAFT meant: rows y_min..y_max, columns x_min..x_max (inclusive)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    keep = np.zeros_like(mask)
    keep[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = True
    return mask & keep


def ref_2d(m: ModelSessions, img: np.ndarray, boxes: np.ndarray, clip: bool = False) -> np.ndarray:
    h, w = img.shape[:2]
    segs = np.zeros((h, w), np.uint16)
    x, new_hw = preprocess_image(img)
    (embedding,) = m.encoder({"image": x})
    for idx, box in enumerate(boxes, start=1):
        mask = ref_decode(m, embedding, scale_box_to_256(box, h, w), new_hw, (h, w))
        if clip:
            mask = ref_clip(mask, box)
        segs[mask] = idx
    return segs


def ref_3d(m: ModelSessions, vol: np.ndarray, boxes: np.ndarray, zmax_inclusive: bool = False,
           fullres: bool = False, clip: bool = False) -> np.ndarray:
    d, h, w = vol.shape
    segs = np.zeros((d, h, w), np.uint16)
    # eager embeddings of the union of the box ranges (DAFT's image_encoder_cache)
    cache, new_hw = {}, None
    for box in boxes:
        top = box[5] + 1 if zmax_inclusive else box[5]
        for z in range(max(0, int(box[2])), min(int(top), d)):
            if z not in cache:
                x, new_hw = preprocess_image(vol[z])
                cache[z] = m.encoder({"image": x})[0]

    def prompt_from(prev: np.ndarray, mid256: np.ndarray) -> np.ndarray:
        if fullres:
            b = bbox_from_mask_fullres(prev)
            return mid256 if b is None else b
        if prev.max() > 0:
            small = resize_longest_side(prev)  # the uint16 label image, value idx
            if small.max() > 0:
                return bbox_from_mask(small)
        return mid256

    for idx, box in enumerate(boxes, start=1):
        temp = np.zeros((d, h, w), np.uint16)
        x_min, y_min, z_min, x_max, y_max, z_max = (int(v) for v in box)
        assert z_min < z_max or (zmax_inclusive and z_min == z_max)
        xy = np.array([x_min, y_min, x_max, y_max])
        mid256 = scale_box_to_256(xy, h, w)
        z_middle = int((z_max - z_min) / 2 + z_min)
        top = min(z_max + 1 if zmax_inclusive else z_max, d)
        for z in range(z_middle, top):
            box256 = mid256 if z == z_middle else prompt_from(temp[z - 1], mid256)
            mask = ref_decode(m, cache[z], box256, new_hw, (h, w))
            temp[z, ref_clip(mask, xy) if clip else mask] = idx
        for z in range(z_middle - 1, max(-1, z_min - 1), -1):
            mask = ref_decode(m, cache[z], prompt_from(temp[z + 1], mid256), new_hw, (h, w))
            temp[z, ref_clip(mask, xy) if clip else mask] = idx
        segs[temp > 0] = idx
    return segs


# -- cases -----------------------------------------------------------------------------------------


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
    [4, 6, 0, 30, 28, 9],     # touches z = 0
    [10, 3, 5, 50, 30, 12],   # reaches the last slice (D = 12): z_max = D
    [20, 10, 6, 40, 25, 8],   # inside box 2's z range, overlapping it in xy
    [2, 2, 3, 12, 9, 4],      # a single slice (z_max exclusive)
    [30, 5, 9, 55, 33, 14],   # z_max beyond the volume (D = 12): clipped
])


@pytest.fixture(scope="module")
def seg(toy_models_dir) -> Segmenter:  # noqa: F811
    return Segmenter(toy_models_dir)


def segment(seg: Segmenter, model: str, imgs, boxes, is_3d: bool, **options) -> np.ndarray:
    if options.get("decode_batch", 1) > 1:  # batched decoding needs graphs compiled as stored (dynamic)
        seg = Segmenter(seg.sessions.models_dir, options=InferenceOptions(**options))
        return seg.segment(imgs, boxes, model=model, is_3d=is_3d)
    seg.options = InferenceOptions(**options)
    try:
        return seg.segment(imgs, boxes, model=model, is_3d=is_3d)
    finally:
        seg.options = InferenceOptions()


# -- 2D ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(90, 130, 3), (301, 77, 3), (64, 64)], ids=["rgb", "tall-rgb", "grey"])
def test_2d_equals_reference(seg: Segmenter, shape) -> None:
    img = textured(shape, seed=1)
    boxes = random_boxes_2d(12, shape[0], shape[1], seed=2)
    ours = segment(seg, "XRay", img, boxes, is_3d=False)
    rgb = np.repeat(img[:, :, None], 3, -1) if img.ndim == 2 else img
    ref = ref_2d(seg.sessions.model("XRay"), rgb, boxes)
    assert ours.dtype == np.uint16 and ours.shape == shape[:2]
    np.testing.assert_array_equal(ours, ref)
    assert len(np.unique(ours)) > 3  # masks overlap and overwrite, not all background


def test_2d_more_than_255_boxes(seg: Segmenter) -> None:
    img = textured((48, 60, 3), seed=3)
    boxes = random_boxes_2d(300, 48, 60, seed=4, min_size=1)
    ours = segment(seg, "CT", img, boxes, is_3d=False)
    ref = ref_2d(seg.sessions.model("CT"), img, boxes)
    np.testing.assert_array_equal(ours, ref)
    assert ours.dtype == np.uint16 and ours.max() > 255


def test_2d_float_boxes_truncate_like_daft(seg: Segmenter) -> None:
    img = textured((200, 150, 3), seed=5)
    boxes = np.array([[10.7, 20.2, 99.9, 150.5], [0.0, 0.0, 149.0, 199.0]])
    np.testing.assert_array_equal(segment(seg, "XRay", img, boxes, is_3d=False),
                                  ref_2d(seg.sessions.model("XRay"), img, boxes))


def test_2d_clip_to_box(seg: Segmenter) -> None:
    img = np.full((120, 200, 3), 250, np.uint8)  # bright after min-max: toy masks grow past their boxes
    img[-1, -1] = 0
    boxes = np.array([[20, 30, 80, 90], [100, 10, 190, 60]])
    default = segment(seg, "XRay", img, boxes, is_3d=False)
    clipped = segment(seg, "XRay", img, boxes, is_3d=False, clip_to_box=True)
    np.testing.assert_array_equal(clipped, ref_2d(seg.sessions.model("XRay"), img, boxes, clip=True))
    assert (default != clipped).any()
    for idx, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        rows, cols = np.nonzero(clipped == idx)
        assert rows.min() >= y0 and rows.max() <= y1 and cols.min() >= x0 and cols.max() <= x1


# -- 3D ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hw", [(40, 64), (300, 140)], ids=["upscaled", "downscaled-tall"])
def test_3d_equals_reference(seg: Segmenter, hw) -> None:
    vol = textured((12, *hw), seed=6)
    scale = np.array([hw[1] / 64, hw[0] / 40, 1, hw[1] / 64, hw[0] / 40, 1])
    boxes = np.floor(BOXES_3D * scale).astype(np.int64)
    ours = segment(seg, "3D", vol, boxes, is_3d=True)
    ref = ref_3d(seg.sessions.model("3D"), vol, boxes)
    assert ours.dtype == np.uint16 and ours.shape == vol.shape
    np.testing.assert_array_equal(ours, ref)
    assert set(np.unique(ours)) >= {1, 2, 3, 5}
    assert (ours[0] > 0).any() and (ours[-1] > 0).any()


@pytest.mark.parametrize(("capacity", "spilled"), [(0, 0), (1, 0), (16, 0), (0, 2), (1, 512)])
def test_3d_cache_bounds_never_change_outputs(seg: Segmenter, capacity: int, spilled: int, tmp_path) -> None:
    vol = textured((20, 48, 48), seed=7)
    # middles far apart: the down sweep needs many slices the up sweep encoded
    boxes = np.array([[5, 5, 0, 40, 40, 20], [8, 4, 2, 30, 44, 6], [3, 9, 12, 36, 30, 19]])
    ours = segment(seg, "CT", vol, boxes, is_3d=True, max_cached_slices=capacity, max_spilled_slices=spilled,
                   spill_dir=str(tmp_path))
    np.testing.assert_array_equal(ours, ref_3d(seg.sessions.model("CT"), vol, boxes))
    assert list(tmp_path.iterdir()) == []  # the spill file is never visible, not even after the case


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


def test_3d_zmax_inclusive(seg: Segmenter) -> None:
    vol = textured((10, 40, 40), seed=8)
    boxes = np.array([[5, 5, 2, 30, 30, 6], [10, 10, 7, 35, 35, 7]])  # second: one slice, inclusive only
    ours = segment(seg, "3D", vol, boxes, is_3d=True, zmax_inclusive=True)
    np.testing.assert_array_equal(ours, ref_3d(seg.sessions.model("3D"), vol, boxes, zmax_inclusive=True))
    assert (ours[6] == 1).any() and (ours[7] == 2).any()
    default = segment(seg, "3D", vol, boxes[:1], is_3d=True)
    assert not (default[6] > 0).any()  # DAFT: z_max itself is not segmented


def test_3d_box_from_fullres(seg: Segmenter) -> None:
    vol = textured((14, 90, 200), seed=9)
    boxes = np.array([[20, 10, 0, 120, 70, 14], [60, 30, 3, 190, 85, 9]])
    ours = segment(seg, "3D", vol, boxes, is_3d=True, box_from_fullres=True)
    np.testing.assert_array_equal(ours, ref_3d(seg.sessions.model("3D"), vol, boxes, fullres=True))
    assert (ours != segment(seg, "3D", vol, boxes, is_3d=True)).any()


def test_3d_clip_to_box(seg: Segmenter) -> None:
    vol = np.full((8, 60, 80), 240, np.uint8)
    vol[:, -1, -1] = 0
    boxes = np.array([[10, 10, 1, 40, 30, 7], [45, 20, 0, 70, 50, 5]])
    ours = segment(seg, "3D", vol, boxes, is_3d=True, clip_to_box=True)
    np.testing.assert_array_equal(ours, ref_3d(seg.sessions.model("3D"), vol, boxes, clip=True))
    _, rows, cols = np.nonzero(ours == 1)
    assert rows.min() >= 10 and rows.max() <= 30 and cols.min() >= 10 and cols.max() <= 40
    assert (ours != segment(seg, "3D", vol, boxes, is_3d=True)).any()


# -- decoders fixed at batch 1, batched decoding ------------------------------------------------------


def test_static_batch1_decoder_equals_dynamic(seg: Segmenter) -> None:
    static = seg.sessions.model("static1")
    dynamic = Segmenter(seg.sessions.models_dir, options=InferenceOptions(decode_batch=8))
    assert static.decoder_max_batch == 1 and dynamic.sessions.model("CT").decoder_max_batch is None
    assert seg.sessions.model("CT").decoder_max_batch == 1  # the default: compiled at batch 1
    img = textured((70, 90, 3), seed=10)
    boxes = random_boxes_2d(9, 70, 90, seed=11)
    vol = textured((9, 30, 50), seed=12)
    for opts in ({}, {"decode_batch": 8}):  # batching is capped at the decoder's fixed batch
        np.testing.assert_array_equal(segment(seg, "static1", img, boxes, False, **opts),
                                      segment(seg, "CT", img, boxes, False))
        np.testing.assert_array_equal(segment(seg, "static1", vol, BOXES_3D[:3] // 2, True, **opts),
                                      segment(seg, "CT", vol, BOXES_3D[:3] // 2, True))
    np.testing.assert_array_equal(segment(seg, "static1", img, boxes, False), ref_2d(static, img, boxes))


def test_decode_batch_keeps_box_order(seg: Segmenter) -> None:
    # the toy decoder is elementwise, so batching is exact here: any difference is a bookkeeping bug
    img = textured((80, 80, 3), seed=13)
    boxes = random_boxes_2d(23, 80, 80, seed=14)
    vol = textured((12, 40, 64), seed=15)
    for batch in (2, 7, 64):
        np.testing.assert_array_equal(segment(seg, "CT", img, boxes, False, decode_batch=batch),
                                      ref_2d(seg.sessions.model("CT"), img, boxes))
        np.testing.assert_array_equal(segment(seg, "CT", vol, BOXES_3D, True, decode_batch=batch),
                                      ref_3d(seg.sessions.model("CT"), vol, BOXES_3D))


def test_compiled_model_cache_gives_same_outputs(toy_models_dir, tmp_path) -> None:  # noqa: F811
    img = textured((60, 70, 3), seed=16)
    boxes = random_boxes_2d(5, 60, 70, seed=17)
    outs = []
    for _ in range(2):  # first run fills the cache, second loads from it
        s = Segmenter(toy_models_dir, cache_dir=str(tmp_path / "cache"), precision="f32", threads=1)
        outs.append(s.segment(img, boxes, model="XRay"))
    assert any((tmp_path / "cache").iterdir())
    np.testing.assert_array_equal(outs[0], outs[1])


def test_graphs_compiled_at_batch_1_via_static_copies_in_the_cache(toy_models_dir, tmp_path) -> None:  # noqa: F811
    import os

    from daftseg.inference.sessions import STATIC_IR_FOLDER

    cache = tmp_path / "cache"
    img = textured((60, 70, 3), seed=18)
    boxes = random_boxes_2d(5, 60, 70, seed=19)
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
    img = textured((50, 60, 3), seed=20)
    boxes = random_boxes_2d(4, 50, 60, seed=21)
    one = Segmenter(toy_models_dir, max_loaded_models=1)
    first = one.segment(img, boxes, model="CT")
    one.segment(img, boxes, model="XRay")
    assert one.sessions.loaded() == ["XRay"]
    np.testing.assert_array_equal(one.segment(img, boxes, model="CT"), first)


def test_static_copy_that_cannot_be_written_falls_back_to_the_stored_graph(toy_models_dir, tmp_path,  # noqa: F811
                                                                          caplog) -> None:
    from daftseg.inference.sessions import STATIC_IR_FOLDER

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / STATIC_IR_FOLDER).write_text("a file where the folder should be")
    img = textured((40, 50, 3), seed=22)
    boxes = random_boxes_2d(3, 40, 50, seed=23)
    with caplog.at_level("WARNING", logger="daftseg.inference"):
        seg = Segmenter(toy_models_dir, cache_dir=str(cache))
        out = seg.segment(img, boxes, model="CT")
    assert "compiling CT_image_encoder.xml as stored" in caplog.text
    assert seg.sessions.model("CT").decoder_max_batch is None  # the dynamic graph, as stored
    np.testing.assert_array_equal(out, Segmenter(toy_models_dir).segment(img, boxes, model="CT"))


def test_graph_already_at_batch_1_is_used_as_stored(toy_models_dir, tmp_path, caplog) -> None:  # noqa: F811
    from daftseg.inference.sessions import STATIC_IR_FOLDER

    source = toy_models_dir / "static1_mask_decoder.xml"
    sessions = Sessions(toy_models_dir, SessionConfig(str(tmp_path)))
    with caplog.at_level("WARNING", logger="daftseg.inference"):
        assert sessions._static_ir(source, 1, tmp_path) == source  # a fresh cache: no folder yet
        assert sessions._static_ir(source, 1, tmp_path) == source  # the marker, without reading the IR
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
    plain = ov.Core().compile_model(m.encoder.path, "CPU").create_infer_request()
    plain.infer({"image": image.copy()})
    assert np.array_equal(plain.get_tensor("image_embedding").data, embedding)
    before = embedding.copy()
    boxes = np.array([[10, 20, 90, 120], [30, 30, 60, 200]], np.float32)
    first = m.decode(embedding, boxes)
    assert np.array_equal(embedding, before)  # a shared input is never written to
    assert np.array_equal(m.decode(embedding.copy(), boxes), first)
