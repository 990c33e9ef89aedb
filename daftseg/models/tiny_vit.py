"""TinyViT image encoder of LiteMedSAM (bowang-lab/MedSAM, branch LiteMedSAM, ``tiny_vit_sam.py``).

Same module tree, state-dict keys and numerics as the original (as copied by DAFT), with the
options LiteMedSAM never uses removed (classification head, stochastic depth, dropout,
checkpointing, layer-wise lr decay: none of them own parameters, so the key layout is unchanged).

LiteMedSAM's changes w.r.t. MobileSAM's TinyViT, all kept here:
- the patch embedding is two 1x1 convolutions with stride 1, so stage 0 runs at full input
  resolution (256x256, 64 channels);
- the last PatchMerging (into 320 channels) has stride 1, so the stages run at
  256 -> 128 -> 64 -> 64 and the embedding is (B, 256, 64, 64) for a 256x256 input.

The batch size is never turned into a Python int (``-1`` in every reshape), so an ONNX graph
traced with one batch size runs with any other (DAFT's one-line fix, ``x.shape[0]`` instead of
``len(x)``, serves the same purpose).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Conv2dBN(nn.Sequential):
    """Bias-free Conv2d followed by BatchNorm2d; submodules ``c`` and ``bn`` as in the original keys."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, pad: int = 0,
                 groups: int = 1) -> None:
        super().__init__()
        self.add_module("c", nn.Conv2d(in_ch, out_ch, kernel, stride, pad, groups=groups, bias=False))
        self.add_module("bn", nn.BatchNorm2d(out_ch))


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of (B, C, H, W), eps 1e-6 (SAM's neck norm)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class PatchEmbed(nn.Module):
    """(B, in_chans, H, W) -> (B, embed_dim, H, W): 1x1 conv-BN, GELU, 1x1 conv-BN (no downsampling)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block on (B, C, H, W): 1x1 expand, 3x3 depthwise, 1x1 project, + input, GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, dim)
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        y = self.conv3(y)
        return self.act3(y + x)


class PatchMerging(nn.Module):
    """(B, C, H, W) or tokens (B, H*W, C) -> tokens (B, H'*W', out_dim).

    1x1 conv, GELU, 3x3 depthwise conv (stride 2; stride 1 into 320/448/576 channels, the
    LiteMedSAM change that keeps the last stage at 64x64), GELU, 1x1 conv.
    """

    def __init__(self, input_resolution: tuple[int, int], dim: int, out_dim: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        stride = 1 if out_dim in (320, 448, 576) else 2
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            h, w = self.input_resolution
            x = x.view(-1, h, w, x.shape[-1]).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    """Pre-norm MLP on tokens (..., C): LayerNorm, Linear, GELU, Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class Attention(nn.Module):
    """Pre-norm multi-head self-attention in one window, with a learned relative-position bias.

    Input/output (B', N, dim), N = window_size**2. ``attention_biases`` (heads, window_size**2)
    holds one value per absolute offset (|dy|, |dx|) at index |dy|*window_size + |dx| (the
    original's first-appearance order of offsets, which is exactly this); the non-persistent
    buffer ``attention_bias_idxs`` (N, N) maps each query/key pair to its offset.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.n_tokens = window_size * window_size
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, self.n_tokens))
        ys, xs = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        idxs = (ys[:, None] - ys[None, :]).abs() * window_size + (xs[:, None] - xs[None, :]).abs()
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        # (B', N, heads, 3*head_dim) -> q, k, v each (B', heads, N, head_dim)
        qkv = self.qkv(x).view(-1, self.n_tokens, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=3)
        # The bias is gathered from the table on every call. The original caches it as
        # ``self.ab`` when switched to eval mode, so weights loaded after ``.eval()`` would be
        # silently ignored; the gather is tiny, so there is no cache to go stale.
        bias = self.attention_biases[:, self.attention_bias_idxs]
        attn = (q @ k.transpose(-2, -1)) * self.scale + bias
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).flatten(2)
        return self.proj(x)


class TinyViTBlock(nn.Module):
    """Tokens (B, H*W, dim) -> same: window attention (+res), 3x3 depthwise conv-BN, MLP (+res).

    Windows that do not tile H, W are zero-padded at the bottom/right, as in the original.
    """

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int,
                 window_size: int, mlp_ratio: float, local_conv_size: int) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.window_size = window_size
        self.attn = Attention(dim, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(dim, dim, local_conv_size, 1, local_conv_size // 2, groups=dim)

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H*W, C) -> (B, H*W, C), attention within each ws x ws window."""
        h, w = self.input_resolution
        ws = self.window_size
        c = x.shape[-1]
        pad_b, pad_r = (ws - h % ws) % ws, (ws - w % ws) % ws
        ph, pw = h + pad_b, w + pad_r
        nh, nw = ph // ws, pw // ws
        x = x.view(-1, h, w, c)
        if pad_b or pad_r:
            x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
        # partition: (B, pH, pW, C) -> (B*nH*nW, ws*ws, C)
        x = x.view(-1, nh, ws, nw, ws, c).transpose(2, 3).reshape(-1, ws * ws, c)
        x = self.attn(x)
        # reverse: (B*nH*nW, ws*ws, C) -> (B, pH, pW, C)
        x = x.view(-1, nh, nw, ws, ws, c).transpose(2, 3).reshape(-1, ph, pw, c)
        if pad_b or pad_r:
            x = x[:, :h, :w]
        return x.reshape(-1, h * w, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.input_resolution
        c = x.shape[-1]
        x = x + self._window_attention(x)
        x = self.local_conv(x.transpose(1, 2).reshape(-1, c, h, w))
        x = x.flatten(2).transpose(1, 2)
        return x + self.mlp(x)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks on (B, C, H, W), then PatchMerging to tokens (B, H/2*W/2, out_dim)."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, out_dim: int,
                 expand_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([MBConv(dim, expand_ratio) for _ in range(depth)])
        self.downsample = PatchMerging(input_resolution, dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks on tokens (B, H*W, dim), then PatchMerging unless last."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int,
                 window_size: int, mlp_ratio: float, local_conv_size: int,
                 out_dim: int | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([
            TinyViTBlock(dim, input_resolution, num_heads, window_size, mlp_ratio, local_conv_size)
            for _ in range(depth)
        ])
        # None keeps a ``downsample`` attribute without state-dict entries, as in the original.
        self.downsample = PatchMerging(input_resolution, dim, out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """LiteMedSAM image encoder: (B, in_chans, img_size, img_size) -> (B, 256, img_size/4, img_size/4).

    For img_size 256: patch embed (B,64,256,256) -> stage 0 (MBConv) -> (B,128*128,128) ->
    stage 1 -> (B,64*64,160) -> stage 2 -> (B,64*64,320) (stride-1 merge) -> stage 3 ->
    (B,64,64,320) -> neck -> (B,256,64,64).
    """

    def __init__(
        self,
        img_size: int = 256,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
    ) -> None:
        super().__init__()
        if len(embed_dims) != 4 or embed_dims[-1] not in (320, 448, 576):
            # Only this layout (last merge with stride 1) gives the 1/4-resolution embedding.
            raise ValueError(f"unsupported embed_dims {tuple(embed_dims)}")
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        # Stage i runs at img_size / 2**i, except stage 3 which stays at stage 2's resolution.
        self.layers = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(embed_dims, depths)):
            side = img_size // 2 ** min(i, 2)
            res = (side, side)
            out_dim = embed_dims[i + 1] if i + 1 < len(embed_dims) else None
            if i == 0:
                assert out_dim is not None
                self.layers.append(ConvLayer(dim, res, depth, out_dim, mbconv_expand_ratio))
            else:
                self.layers.append(BasicLayer(dim, res, depth, num_heads[i], window_sizes[i],
                                              mlp_ratio, local_conv_size, out_dim))
        self.embed_side = img_size // 4
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], 256, kernel_size=1, bias=False),
            LayerNorm2d(256),
            nn.Conv2d(256, 256, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(256),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, img_size, img_size) float -> (B, 256, img_size/4, img_size/4)."""
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        s = self.embed_side
        x = x.view(-1, s, s, x.shape[-1]).permute(0, 3, 1, 2)
        return self.neck(x)
