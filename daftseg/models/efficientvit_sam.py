"""EfficientViT-SAM l0 at DAFT's 256x256 input: EfficientViT-L backbone + SAM neck + SAM heads."""

from __future__ import annotations

from torch import nn

from daftseg.models.efficientvit import EfficientViTSamImageEncoder
from daftseg.models.registry import register_model
from daftseg.models.sam import SamModel


@register_model("efficientvit_sam_l0")
def build_efficientvit_sam_l0() -> SamModel:
    model = SamModel(EfficientViTSamImageEncoder.l0(), name="efficientvit_sam_l0")
    set_norm_eps(model, NORM_EPS)
    return model


# The official builder (create_sam_model) sets this on every BatchNorm/LayerNorm/GroupNorm of the
# whole model, the mask decoder's transformer LayerNorms included (1e-5 in LiteMedSAM).
NORM_EPS = 1e-6


def set_norm_eps(model: nn.Module, eps: float) -> None:
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            m.eps = eps
