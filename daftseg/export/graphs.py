"""Wrapper modules that trace the three graphs of a ``SamModel`` with the names of ``specs.py``."""

from __future__ import annotations

import torch
from torch import nn

from daftseg.export.specs import GRAPHS, IMAGE_ENCODER, MASK_DECODER, PROMPT_ENCODER, TensorSpec

# GRAPHS is re-exported: callers that trace the graphs find the specs next to the wrappers
__all__ = ["GRAPHS", "ImageEncoderGraph", "MaskDecoderGraph", "PromptEncoderGraph", "dense_pe", "graph_modules"]


class ImageEncoderGraph(nn.Module):
    """image (B, 3, 256, 256) in [0, 1] -> image_embedding (B, 256, 64, 64)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return _as_declared(self.image_encoder(image), IMAGE_ENCODER.outputs[0])


class PromptEncoderGraph(nn.Module):
    """boxes (B, 1, 1, 4) -> sparse_embeddings (B, 2, 256), dense_embeddings (B, 256, 64, 64).

    Boxes only: DAFT's graph binds ``boxes`` alone (points and masks are None), so do we.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder

    def forward(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sparse, dense = self.prompt_encoder(points=None, boxes=boxes, masks=None)
        return _as_declared(sparse, PROMPT_ENCODER.outputs[0]), _as_declared(dense, PROMPT_ENCODER.outputs[1])


class MaskDecoderGraph(nn.Module):
    """Single-mask decoding: -> low_res_masks (N, 1, 256, 256) logits, iou_predictions (N, 1).

    ``multimask_output`` is fixed to False here, so it is not a graph input (DAFT listed it as a
    dangling fifth input name).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.mask_decoder = model.mask_decoder

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masks, iou = self.mask_decoder(
            image_embeddings=image_embeddings, image_pe=image_pe,
            sparse_prompt_embeddings=sparse_prompt_embeddings,
            dense_prompt_embeddings=dense_prompt_embeddings, multimask_output=False,
        )
        return _as_declared(masks, MASK_DECODER.outputs[0]), _as_declared(iou, MASK_DECODER.outputs[1])


def _as_declared(x: torch.Tensor, spec: TensorSpec) -> torch.Tensor:
    """A no-op reshape to the declared shape (-1 at the dynamic axis).

    Inside the models, sizes are computed from runtime shapes (``reshape(b, -1, h, w)``), which
    neither the ONNX exporter nor OpenVINO can resolve (the IR then reports masks of shape
    [?, ..1, 256, 256]); a constant target shape makes the graphs declare DAFT's static sizes.
    """
    return x.reshape(tuple(-1 if isinstance(d, str) else d for d in spec.shape))


def graph_modules(model: nn.Module) -> dict[str, nn.Module]:
    """suffix -> eval-mode wrapper module of a ``SamModel`` (shares its weights)."""
    model.eval()
    return {IMAGE_ENCODER.suffix: ImageEncoderGraph(model).eval(),
            PROMPT_ENCODER.suffix: PromptEncoderGraph(model).eval(),
            MASK_DECODER.suffix: MaskDecoderGraph(model).eval()}


def dense_pe(model: nn.Module) -> torch.Tensor:
    """The image positional encoding (1, 256, 64, 64) float32 that the runtime feeds as ``image_pe``."""
    with torch.no_grad():
        return model.prompt_encoder.get_dense_pe().detach().to(torch.float32).cpu()
