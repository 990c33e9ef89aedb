"""LiteMedSAM: TinyViT image encoder (bowang-lab LiteMedSAM) + SAM prompt encoder and mask decoder."""

from __future__ import annotations

from daftseg.models.registry import register_model
from daftseg.models.sam import SamModel
from daftseg.models.tiny_vit import TinyViT


@register_model("litemedsam")
def build_litemedsam() -> SamModel:
    encoder = TinyViT(
        img_size=256,
        in_chans=3,
        embed_dims=(64, 128, 160, 320),
        depths=(2, 2, 6, 2),
        num_heads=(2, 4, 5, 10),
        window_sizes=(7, 7, 14, 7),
        mlp_ratio=4.0,
        mbconv_expand_ratio=4.0,
        local_conv_size=3,
    )
    return SamModel(encoder, name="litemedsam")
