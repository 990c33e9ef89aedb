"""Tiny deterministic OpenVINO models with DAFT's exact tensor names, for the inference tests.

They stand in for the exported EfficientViT-SAM / LiteMedSAM graphs (spec §6, §7.1):

- encoder ``image`` (B,3,256,256) -> ``image_embedding`` (B,256,64,64): 4x4 average pooling and a
  1x1 convolution; channel 0 is the pooled mean intensity, so masks depend on the image;
- prompt encoder ``boxes`` (B,1,1,4) -> ``sparse_embeddings`` (B,2,256) holding the two corners in
  features 0 and 1, and ``dense_embeddings`` (B,256,64,64), a constant;
- mask decoder -> ``low_res_masks`` (N,1,256,256) = min(x - x0, x1 - x, y - y0, y1 - y) + 0.5
  + alpha * (intensity term - 0.5), i.e. a box-shaped blob whose border moves with the image, and
  ``iou_predictions`` (N,1). Built with a dynamic prompt batch (ours) or fixed at batch 1 (DAFT).

``write_toy_models(folder, names)`` writes ``<name>_{image_encoder,mask_decoder}.xml`` for each name,
the shared ``lite_medsam_prompt_encoder.xml`` and ``positional_encoding.npy``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops


def _named(output: ov.Output, name: str) -> ov.Output:
    output.get_tensor().set_names({name})
    return output


def _param(shape: list[int], name: str) -> ov.Node:
    p = ops.parameter(ov.PartialShape(shape), ov.Type.f32, name=name)
    p.output(0).get_tensor().set_names({name})
    return p


def toy_image_encoder(seed: int = 0) -> ov.Model:
    """(B,3,256,256) -> (B,256,64,64); channel 0 = mean of the three input channels, pooled 4x4."""
    image = _param([-1, 3, 256, 256], "image")
    pooled = ops.avg_pool(image, [4, 4], [0, 0], [0, 0], [4, 4], exclude_pad=True)  # (B,3,64,64)
    w = np.random.default_rng(seed).normal(0, 0.5, (256, 3, 1, 1)).astype(np.float32)
    w[0] = 1 / 3
    conv = ops.convolution(pooled, ops.constant(w), [1, 1], [0, 0], [0, 0], [1, 1])
    out = _named(conv.output(0), "image_embedding")
    return ov.Model([out], [image], "toy_image_encoder")


def negated_image_encoder() -> ov.Model:
    """A stand-in "INT8" encoder: channel 0 is minus the pooled mean intensity, so its masks visibly
    differ from ``toy_image_encoder``'s wherever the decoder's ``alpha`` is large."""
    image = _param([-1, 3, 256, 256], "image")
    pooled = ops.avg_pool(image, [4, 4], [0, 0], [0, 0], [4, 4], exclude_pad=True)
    w = np.zeros((256, 3, 1, 1), np.float32)
    w[0] = -1 / 3
    conv = ops.convolution(pooled, ops.constant(w), [1, 1], [0, 0], [0, 0], [1, 1])
    return ov.Model([_named(conv.output(0), "image_embedding")], [image], "stand_in_int8_encoder")


def add_stand_in_int8(folder: Path, name: str, alpha: float = 20.0) -> Path:
    """Give model ``name`` of ``folder`` the stand-in INT8 encoder and a decoder of ``alpha``."""
    ov.save_model(negated_image_encoder(), Path(folder) / f"{name}_image_encoder_int8.xml", compress_to_fp16=False)
    ov.save_model(toy_mask_decoder(alpha=alpha), Path(folder) / f"{name}_mask_decoder.xml", compress_to_fp16=False)
    return Path(folder)


def toy_prompt_encoder() -> ov.Model:
    """(B,1,1,4) boxes -> sparse (B,2,256) with corner (x, y) in features 0, 1; dense (B,256,64,64)."""
    boxes = _param([-1, 1, 1, 4], "boxes")
    corners = ops.reshape(boxes, ops.constant(np.array([-1, 2, 2], np.int64)), False)  # (B,2,2)
    lift = np.zeros((2, 256), np.float32)
    lift[0, 0] = lift[1, 1] = 1.0
    sparse = ops.matmul(corners, ops.constant(lift), False, False)  # (B,2,256)
    batch = ops.gather(ops.shape_of(boxes), ops.constant(np.array([0], np.int64)), ops.constant(0))
    dense_shape = ops.concat([batch, ops.constant(np.array([256, 64, 64], np.int64))], 0)
    dense_const = np.full((1, 256, 64, 64), 0.01, np.float32)
    dense = ops.broadcast(ops.constant(dense_const), dense_shape)
    return ov.Model([_named(sparse.output(0), "sparse_embeddings"), _named(dense.output(0), "dense_embeddings")],
                    [boxes], "toy_prompt_encoder")


def toy_mask_decoder(alpha: float = 2.0, batch: int = -1) -> ov.Model:
    """Box-shaped logits (N,1,256,256) from N prompts and one (1,256,64,64) image embedding.

    ``batch=-1`` gives a dynamic prompt batch; ``batch=1`` the static shapes of DAFT's decoders.
    """
    emb = _param([1, 256, 64, 64], "image_embeddings")
    pe = _param([1, 256, 64, 64], "image_pe")
    sparse = _param([batch, 2, 256], "sparse_prompt_embeddings")
    dense = _param([batch, 256, 64, 64], "dense_prompt_embeddings")

    def coord(corner: int, axis: int) -> ov.Node:  # (N,1,1,1)
        s = ops.slice(sparse, ops.constant(np.array([corner, axis], np.int64)),
                      ops.constant(np.array([corner + 1, axis + 1], np.int64)),
                      ops.constant(np.array([1, 1], np.int64)), ops.constant(np.array([1, 2], np.int64)))
        return ops.reshape(s, ops.constant(np.array([-1, 1, 1, 1], np.int64)), False)

    x0, y0, x1, y1 = coord(0, 0), coord(0, 1), coord(1, 0), coord(1, 1)
    grid = np.arange(256, dtype=np.float32)
    gx = ops.constant(grid.reshape(1, 1, 1, 256))
    gy = ops.constant(grid.reshape(1, 1, 256, 1))
    dist = ops.minimum(ops.minimum(ops.subtract(gx, x0), ops.subtract(x1, gx)),
                       ops.minimum(ops.subtract(gy, y0), ops.subtract(y1, gy)))  # (N,1,256,256)

    # intensity term: embedding channel 0 (pooled mean intensity in [0,1]) upsampled 4x by repetition
    ch0 = ops.slice(emb, ops.constant(np.array([0], np.int64)), ops.constant(np.array([1], np.int64)),
                    ops.constant(np.array([1], np.int64)), ops.constant(np.array([1], np.int64)))
    rep = ops.broadcast(ops.reshape(ch0, ops.constant(np.array([1, 1, 64, 1, 64, 1], np.int64)), False),
                        ops.constant(np.array([1, 1, 64, 4, 64, 4], np.int64)))
    up = ops.reshape(rep, ops.constant(np.array([1, 1, 256, 256], np.int64)), False)
    intensity = ops.multiply(ops.subtract(up, ops.constant(np.float32(0.5))), ops.constant(np.float32(alpha)))
    # dense and PE enter with a tiny weight so that every input is used
    extra = ops.reduce_mean(ops.add(dense, pe), ops.constant(np.array([1, 2, 3], np.int64)), True)  # (N,1,1,1)
    logits = ops.add(ops.add(ops.add(dist, ops.constant(np.float32(0.5))), intensity),
                     ops.multiply(extra, ops.constant(np.float32(1e-3))))
    iou = ops.reduce_mean(sparse, ops.constant(np.array([1, 2], np.int64)), False)  # (N,)
    iou = ops.reshape(iou, ops.constant(np.array([-1, 1], np.int64)), False)
    return ov.Model([_named(logits.output(0), "low_res_masks"), _named(iou.output(0), "iou_predictions")],
                    [emb, pe, sparse, dense], "toy_mask_decoder")


def write_toy_models(folder: Path, names: dict[str, dict] | list[str],
                     prompt_encoder_name: str = "lite_medsam_prompt_encoder") -> Path:
    """Write toy IR for each model name into ``folder`` and return it.

    ``names`` maps a model name to keyword arguments of ``toy_mask_decoder`` (``alpha``, ``batch``),
    or is a plain list of names (defaults).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specs = names if isinstance(names, dict) else {n: {} for n in names}
    for i, (name, kw) in enumerate(specs.items()):
        ov.save_model(toy_image_encoder(seed=i), folder / f"{name}_image_encoder.xml", compress_to_fp16=False)
        ov.save_model(toy_mask_decoder(**kw), folder / f"{name}_mask_decoder.xml", compress_to_fp16=False)
    if prompt_encoder_name:
        ov.save_model(toy_prompt_encoder(), folder / f"{prompt_encoder_name}.xml", compress_to_fp16=False)
    pe = np.random.default_rng(123).normal(0, 1, (1, 256, 64, 64)).astype(np.float32)
    np.save(folder / "positional_encoding.npy", pe)
    return folder


# -- pytest fixtures (import them into a test module to use them) ------------------------------
import pytest

TOY_MODELS = {"CT": {}, "3D": {"alpha": 1.5}, "lite_medsam": {"alpha": 1.0}, "XRay": {}, "static1": {"batch": 1}}


@pytest.fixture(scope="session")
def toy_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with toy CT, 3D, lite_medsam, XRay (dynamic N) and static1 (batch 1) models."""
    return write_toy_models(tmp_path_factory.mktemp("toy_models"), TOY_MODELS)
