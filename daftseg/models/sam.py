"""The SAM model shared by LiteMedSAM and EfficientViT-SAM: image encoder + prompt encoder + decoder."""

from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer
from torch import nn

EMBED_DIM = 256
IMAGE_EMBEDDING_SIZE = (64, 64)
# DAFT feeds every model 256x256 inputs, so boxes live in 256-space (spec §2.3). Keeping this in
# the constructor (not patched afterwards) means no consumer can forget it.
INPUT_IMAGE_SIZE = (256, 256)


class BatchedMaskDecoder(MaskDecoder):
    """SAM's mask decoder that accepts both prompt-batch layouts.

    ``segment_anything.MaskDecoder`` repeats the image embedding once per prompt, which is right
    for one image with N boxes but wrong for B images with one box each (segment-anything #277).
    Here the image embeddings are matched to the prompt batch:

    - (1, C, H, W) with N prompts: the embedding is broadcast to N (inference, ONNX export);
    - (B, C, H, W) with B prompts: image i pairs with prompt i (training);
    - (B, C, H, W) with k*B prompts: each image is repeated k times, prompts grouped by image.
    """

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse_prompt_embeddings: torch.Tensor,
                      dense_prompt_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(n, -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)  # (N, 5 + P, C)

        src = self._match_batch(image_embeddings, n) + dense_prompt_embeddings  # (N, C, H, W)
        pos_src = self._match_batch(image_pe, n)
        b, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1: (1 + self.num_mask_tokens), :]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        upscaled = self.output_upscaling(src)  # (N, C/8, 4H, 4W)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # (N, num_mask_tokens, C/8)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h * w)).reshape(b, -1, h, w)
        iou_pred = self.iou_prediction_head(iou_token_out)
        return masks, iou_pred

    @staticmethod
    def _match_batch(x: torch.Tensor, n: int) -> torch.Tensor:
        if x.shape[0] == 1:
            # expand (not repeat): traced as a shape-dependent op, so ONNX keeps N dynamic
            return x.expand(n, -1, -1, -1)
        if x.shape[0] == n:
            return x
        if n % x.shape[0] == 0:
            return torch.repeat_interleave(x, n // x.shape[0], dim=0)
        raise ValueError(f"{n} prompts cannot be matched to {x.shape[0]} image embeddings")


def build_prompt_encoder() -> PromptEncoder:
    return PromptEncoder(
        embed_dim=EMBED_DIM,
        image_embedding_size=IMAGE_EMBEDDING_SIZE,
        input_image_size=INPUT_IMAGE_SIZE,
        mask_in_chans=16,
    )


def build_mask_decoder() -> BatchedMaskDecoder:
    return BatchedMaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=EMBED_DIM, mlp_dim=2048, num_heads=8),
        transformer_dim=EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )


class SamModel(nn.Module):
    """Box-prompted SAM at 256x256 input.

    Attributes ``image_encoder``, ``prompt_encoder`` and ``mask_decoder`` carry the official
    state-dict prefixes, so checkpoints of the original code load as they are.
    """

    def __init__(self, image_encoder: nn.Module, name: str = "") -> None:
        super().__init__()
        self.name = name
        self.image_encoder = image_encoder
        self.prompt_encoder = build_prompt_encoder()
        self.mask_decoder = build_mask_decoder()

    def encode_prompts(self, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """boxes (B, 1, 4) or (B, 1, 1, 4) in 256-space -> sparse (B, 2, 256), dense (B, 256, 64, 64)."""
        return self.prompt_encoder(points=None, boxes=boxes, masks=None)

    def decode(self, image_embeddings: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(1 or B, 256, 64, 64) embeddings + B boxes -> logits (B, 1, 256, 256), IoU (B, 1)."""
        sparse, dense = self.encode_prompts(boxes)
        return self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, 256, 256) in [0, 1], boxes (B, 1, 4) -> logits (B, 1, 256, 256), IoU (B, 1)."""
        return self.decode(self.image_encoder(images), boxes)
