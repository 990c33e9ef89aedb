"""Models are the official ones: same keys, shapes, dtypes and numbers as the fixtures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixture_weights import FIXTURE_STEMS, filled_state_dict, fixture_keys, fixture_reference

from daftseg.models import build_model, list_models

MODELS = ["litemedsam", "efficientvit_sam_l0"]


def test_registry_lists_both_models():
    assert set(MODELS) <= set(list_models())
    with pytest.raises(KeyError, match="unknown model"):
        build_model("no_such_model")


@pytest.fixture(scope="module", params=MODELS)
def filled_model(request):
    model = build_model(request.param)
    model.load_state_dict(filled_state_dict(model.state_dict()))
    model.eval()
    return request.param, model


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_matches_official_layout(name):
    sd = build_model(name).state_dict()
    expected = fixture_keys(FIXTURE_STEMS[name])
    got = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in sd.items()}
    assert sorted(got) == sorted(expected), (
        f"missing {sorted(set(expected) - set(got))[:10]}, unexpected {sorted(set(got) - set(expected))[:10]}"
    )
    mismatched = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert not mismatched


@pytest.mark.parametrize("name", MODELS)
def test_prompt_encoder_is_configured_for_256_inputs(name):
    model = build_model(name)
    assert tuple(model.prompt_encoder.input_image_size) == (256, 256)
    assert tuple(model.prompt_encoder.image_embedding_size) == (64, 64)


def test_reproduces_fixture_outputs(filled_model):
    name, model = filled_model
    ref = fixture_reference(FIXTURE_STEMS[name])
    with torch.no_grad():
        emb = model.image_encoder(torch.from_numpy(ref["image"]))
        sparse, dense = model.encode_prompts(torch.from_numpy(ref["boxes"]))
        pe = model.prompt_encoder.get_dense_pe()
        # decode the reference embedding, so decoder errors are not mixed with encoder errors
        masks, iou = model.mask_decoder(
            image_embeddings=torch.from_numpy(ref["image_embedding"]), image_pe=pe,
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
        )
    diffs = {
        "image_embedding": np.abs(emb.numpy() - ref["image_embedding"]).max(),
        "sparse_embeddings": np.abs(sparse.numpy() - ref["sparse_embeddings"]).max(),
        "image_pe": np.abs(pe.numpy() - ref["image_pe"]).max(),
        "low_res_masks": np.abs(masks.numpy() - ref["low_res_masks"]).max(),
        "iou_predictions": np.abs(iou.numpy() - ref["iou_predictions"]).max(),
    }
    print(name, {k: f"{v:.2e}" for k, v in diffs.items()})
    assert diffs["image_embedding"] < 1e-4
    assert diffs["sparse_embeddings"] < 1e-4
    assert diffs["image_pe"] < 1e-4
    assert diffs["low_res_masks"] < 1e-3
    assert diffs["iou_predictions"] < 1e-4


def test_decoder_batch_modes_equal_single_calls(filled_model):
    _, model = filled_model
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(3, 256, 64, 64, generator=g)
    boxes = torch.tensor([[[10.0, 20.0, 120.0, 200.0]], [[50.0, 60.0, 70.0, 90.0]], [[0.0, 0.0, 255.0, 255.0]]])
    with torch.no_grad():
        singles = [model.decode(emb[i: i + 1], boxes[i: i + 1]) for i in range(3)]
        # (b) B embeddings with B boxes: image i with box i
        paired_masks, paired_iou = model.decode(emb, boxes)
        # (a) one embedding with N boxes
        fan_masks, fan_iou = model.decode(emb[:1], boxes)
        fan_singles = [model.decode(emb[:1], boxes[i: i + 1]) for i in range(3)]
    for i in range(3):
        torch.testing.assert_close(paired_masks[i], singles[i][0][0], atol=1e-4, rtol=0)
        torch.testing.assert_close(paired_iou[i], singles[i][1][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(fan_masks[i], fan_singles[i][0][0], atol=1e-4, rtol=0)
        torch.testing.assert_close(fan_iou[i], fan_singles[i][1][0], atol=1e-5, rtol=0)
    # the three images differ, so pairing must matter
    assert not torch.allclose(paired_masks[1], fan_masks[1], atol=1e-3)


def test_full_forward_shapes(filled_model):
    _, model = filled_model
    images = torch.rand(2, 3, 256, 256)
    boxes = torch.tensor([[[10.0, 10.0, 100.0, 100.0]], [[30.0, 40.0, 200.0, 220.0]]])
    with torch.no_grad():
        masks, iou = model(images, boxes)
    assert masks.shape == (2, 1, 256, 256)
    assert iou.shape == (2, 1)
    assert torch.isfinite(masks).all()
