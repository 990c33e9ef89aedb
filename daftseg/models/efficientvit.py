"""EfficientViT-SAM l0 image encoder (spec §2.2): EfficientViT-L backbone + SAM neck + LayerNorm2d.

The official code is mit-han-lab/efficientvit (commit 94d8157, the one DAFT pins). The backbone's
blocks come from timm's ``EfficientVitLarge``, which computes the same function as the official
``EfficientViTLargeBackbone`` once configured as l0 (see ``EfficientViTLargeBackbone``). The neck
and the final norm are written here. Module attribute names follow the official ones, so
``state_dict()`` returns, and ``load_state_dict()`` accepts, the official keys
(``backbone.stages.N.op_list.M.*``, ``neck.input_ops.*``, ``neck.middle.*``, ``neck.output_ops.*``,
``norm.*``): ``l0.pt`` and DAFT's ``models/<Name>.pth`` load strictly, with no key mapping.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import GELUTanh
from timm.models.efficientvit_mit import EfficientVitLarge, LiteMLA
from torch import nn

# The official builder sets every BatchNorm/LayerNorm/GroupNorm eps to this (create_sam_model);
# building with it directly means the encoder is right even on its own.
NORM_EPS = 1e-6
# Official LiteMLA eps; timm's default (1e-5) would shift the attention normaliser.
ATTENTION_EPS = 1e-15
EMBED_DIM = 256
EMBED_SIZE = (64, 64)

L0_WIDTHS = (32, 64, 128, 256, 512)
L0_DEPTHS = (1, 1, 1, 4, 4)
L0_HEAD_DIM = 32
# The neck reads these backbone outputs (channels 512, 256, 128), in this order.
L0_NECK_INPUTS = ("stage4", "stage3", "stage2")
L0_NECK_DEPTH = 4


class OpSequential(nn.Module):
    """Applies ``op_list`` in order. The attribute name yields the official ``*.op_list.N.*`` keys."""

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        self.op_list = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.op_list:
            x = op(x)
        return x


class EfficientViTLargeBackbone(nn.Module):
    """EfficientViT-L backbone with the official module layout, built from timm's blocks.

    timm's ``EfficientVitLarge`` holds the same blocks as the official backbone, with identical
    parameter names inside each block, but groups them differently (``stem.in_conv``,
    ``stem.res0``, ``stages.i.blocks.j``). Here the blocks are re-parented into the official
    grouping, so no key renaming is needed:

    - timm ``stem.in_conv``, ``stem.res{k}``  -> ``stages.0.op_list.0``, ``stages.0.op_list.{k+1}``
    - timm ``stages.{i}.blocks.{j}``          -> ``stages.{i+1}.op_list.{j}``

    timm's classifier head has no official counterpart and is dropped.

    Numerics: BN eps ``NORM_EPS``, GELU(tanh) everywhere, LiteMLA eps ``ATTENTION_EPS`` as in the
    official code. One difference remains, outside DAFT's use: the official LiteMLA switches to
    quadratic ReLU attention when the last stage has at most ``head_dim`` (32) pixels, i.e. for
    inputs below ~181 px; timm always uses the linear form. DAFT always feeds 256x256 (8x8 = 64
    pixels in the last stage), where both are the linear form.

    Input (B, 3, H, W); output ``{"stage0": (B, w0, H/2, W/2), ..., "stage4": (B, w4, H/32, W/32)}``.
    """

    def __init__(self, widths: Sequence[int], depths: Sequence[int], head_dim: int) -> None:
        super().__init__()
        timm_model = EfficientVitLarge(
            widths=tuple(widths),
            depths=tuple(depths),
            head_dim=head_dim,
            norm_layer=nn.BatchNorm2d,
            act_layer=GELUTanh,
            norm_eps=NORM_EPS,
            num_classes=0,
            # timm cannot build the model without a head (it indexes head_widths); a minimal one
            # is built and then discarded below.
            head_widths=(1, 1),
        )
        for m in timm_model.modules():
            if isinstance(m, LiteMLA):
                m.eps = ATTENTION_EPS
        stage0 = OpSequential(list(timm_model.stem))  # Stem is an nn.Sequential: in_conv, res0, ...
        later = [OpSequential(list(stage.blocks)) for stage in timm_model.stages]
        self.stages = nn.ModuleList([stage0, *later])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) -> {"stage0": ..., "stage4": ...}, stage i at stride 2**(i+1)."""
        feats: dict[str, torch.Tensor] = {}
        for i, stage in enumerate(self.stages):
            x = stage(x)
            feats[f"stage{i}"] = x
        return feats


class ConvNormAct(nn.Module):
    """Conv2d ('same' padding) -> optional BatchNorm -> optional GELU(tanh); official key names."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = False,
                 norm: bool = True, act: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self.norm: nn.Module = nn.BatchNorm2d(out_channels, eps=NORM_EPS) if norm else nn.Identity()
        self.act: nn.Module = nn.GELU(approximate="tanh") if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class FusedMBConv(nn.Module):
    """3x3 conv + BN + GELU(tanh) to ``in * expand`` channels, then 1x1 conv + BN (no activation)."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: float) -> None:
        super().__init__()
        mid = round(in_channels * expand_ratio)
        self.spatial_conv = ConvNormAct(in_channels, mid, 3, act=True)
        self.point_conv = ConvNormAct(mid, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.spatial_conv(x))


class Residual(nn.Module):
    """``main(x) + x``; the attribute name yields the official ``*.main.*`` keys."""

    def __init__(self, main: nn.Module) -> None:
        super().__init__()
        self.main = main

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + x


class UpsampleTo(nn.Module):
    """Bicubic resize (align_corners=False) to a fixed ``size``; identity if already that size.

    The fixed output size (not a scale factor) keeps ONNX export independent of the input size.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under ONNX tracing this is decided once, for the traced spatial size (TracerWarning);
        # that is intended: the spatial size is fixed at export, only the batch is dynamic.
        if tuple(x.shape[-2:]) == self.size:
            return x
        # The official layer resizes in float32 (autocast off, half inputs upcast), and returns it.
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return F.interpolate(x, size=self.size, mode="bicubic", align_corners=False)


class SamNeck(nn.Module):
    """Fuses three backbone maps into the (B, 256, 64, 64) SAM embedding (before the final norm).

    Each input: 1x1 conv (no bias) + BN to ``width``, bicubic upsample to 64x64. Their sum goes
    through ``depth`` residual FusedMBConv blocks (expand ``expand_ratio``) and a 1x1 conv with
    bias. Inputs are given in ``in_channels`` order, e.g. (stage4, stage3, stage2) for l0.
    """

    def __init__(self, in_channels: Sequence[int], width: int = EMBED_DIM, depth: int = L0_NECK_DEPTH,
                 expand_ratio: float = 1.0, out_dim: int = EMBED_DIM,
                 out_size: tuple[int, int] = EMBED_SIZE) -> None:
        super().__init__()
        self.input_ops = nn.ModuleList(
            [OpSequential([ConvNormAct(c, width, 1), UpsampleTo(out_size)]) for c in in_channels]
        )
        self.middle = OpSequential([Residual(FusedMBConv(width, width, expand_ratio)) for _ in range(depth)])
        # a list of one, as the official DAGBlock's outputs dict has one entry ("sam_encoder")
        self.output_ops = nn.ModuleList([OpSequential([ConvNormAct(width, out_dim, 1, bias=True, norm=False)])])

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """feats: one (B, in_channels[i], h_i, w_i) map per input -> (B, out_dim, 64, 64)."""
        maps = [op(f) for op, f in zip(self.input_ops, feats, strict=True)]
        # Sum right to left, m0 + (m1 + m2), in the official order (its list_sum recursion), so
        # float rounding matches too.
        x = maps[-1]
        for m in reversed(maps[:-1]):
            x = m + x
        x = self.middle(x)
        return self.output_ops[0](x)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, H, W), computed as the official ``LayerNorm2d``.

    A subclass of ``nn.LayerNorm`` as in the official code, so eps-setting passes over all
    ``nn.LayerNorm`` instances (``set_norm_eps``) reach it too.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x - torch.mean(x, dim=1, keepdim=True)
        out = out / torch.sqrt(torch.square(out).mean(dim=1, keepdim=True) + self.eps)
        if self.elementwise_affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out


class EfficientViTSamImageEncoder(nn.Module):
    """EfficientViT-SAM image encoder: backbone -> neck -> LayerNorm2d.

    (B, 3, 256, 256) -> (B, 256, 64, 64). State-dict keys are the official ones
    (``backbone.*``, ``neck.*``, ``norm.*``; prefixed ``image_encoder.`` in a whole SAM model).
    """

    def __init__(self, backbone: EfficientViTLargeBackbone, neck: SamNeck,
                 neck_inputs: Sequence[str] = L0_NECK_INPUTS) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.norm = LayerNorm2d(EMBED_DIM, eps=NORM_EPS)
        self.neck_inputs = tuple(neck_inputs)

    @classmethod
    def l0(cls) -> EfficientViTSamImageEncoder:
        """The l0 encoder (official ``efficientvit_sam_l0``), randomly initialised."""
        backbone = EfficientViTLargeBackbone(L0_WIDTHS, L0_DEPTHS, L0_HEAD_DIM)
        widths = {f"stage{i}": w for i, w in enumerate(L0_WIDTHS)}
        neck = SamNeck([widths[k] for k in L0_NECK_INPUTS], depth=L0_NECK_DEPTH, expand_ratio=1.0)
        return cls(backbone, neck, L0_NECK_INPUTS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 3, 256, 256) -> image embedding (B, 256, 64, 64)."""
        feats = self.backbone(x)
        return self.norm(self.neck([feats[k] for k in self.neck_inputs]))
