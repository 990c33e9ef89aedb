"""Shared helpers of the training and data tests (no tests here): tiny npz data and tiny models.

The real EfficientViT-SAM / TinyViT models take seconds per step on a CPU, so the loop's own
properties (loss falls, resume equivalence, DDP agreement) are tested with tiny modules that
keep the real interfaces: ``TinySam(images (B,3,256,256), boxes (B,1,1,4)) -> logits
(B,1,256,256), iou (B,1)`` with ``image_encoder`` / ``prompt_encoder`` / ``mask_decoder``
attributes, and tiny encoders mapping (B,3,256,256) to (B,256,64,64).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

# ---- synthetic challenge npz files ---------------------------------------------------------------

@pytest.fixture(autouse=True)
def few_threads():
    """Two torch threads (the CI machine's cores): imported by each training test module, autouse there."""
    torch.set_num_threads(2)


def _object_image(rng: np.random.Generator, shape: tuple[int, ...], labels: np.ndarray) -> np.ndarray:
    """uint8 image: dim noise plus brighter objects where ``labels`` > 0."""
    img = rng.integers(10, 60, size=shape, dtype=np.int32)
    lab = labels if len(shape) == labels.ndim else labels[..., None]
    img = img + (lab > 0) * 120 + lab * 10
    return np.clip(img, 0, 255).astype(np.uint8)


def random_labels(rng: np.random.Generator, hw: tuple[int, int], n_objects: int = 2) -> np.ndarray:
    """(H, W) uint8 label map with ``n_objects`` rectangles labelled 1..n."""
    h, w = hw
    gts = np.zeros(hw, np.uint8)
    for k in range(1, n_objects + 1):
        y0, x0 = rng.integers(0, h - h // 3), rng.integers(0, w - w // 3)
        gts[y0: y0 + rng.integers(h // 8, h // 3), x0: x0 + rng.integers(w // 8, w // 3)] = k
    return gts


def write_2d(path: Path, seed: int, hw: tuple[int, int] = (64, 80), rgb: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    gts = random_labels(rng, hw)
    imgs = _object_image(rng, (*hw, 3) if rgb else hw, gts)
    np.savez_compressed(path, imgs=imgs, gts=gts)
    return path


def write_3d(path: Path, seed: int, dhw: tuple[int, int, int] = (4, 48, 64), empty_slices: tuple[int, ...] = ()
             ) -> Path:
    rng = np.random.default_rng(seed)
    gts = np.stack([random_labels(rng, dhw[1:]) for _ in range(dhw[0])])
    for s in empty_slices:
        gts[s] = 0
    imgs = _object_image(rng, dhw, gts)
    np.savez_compressed(path, imgs=imgs, gts=gts, spacing=np.array([1.0, 1.0, 1.0]))
    return path


def write_csv(path: Path, entries: list[str], column: str = "filename") -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([column])
        w.writerows([e] for e in entries)
    return path


def make_data(root: Path, n2d: int = 4, n3d: int = 0, grey: int = 1, name: str = "train.csv",
              prefix: str = "CT_Synth") -> tuple[Path, Path]:
    """``n2d`` 2D files (``grey`` of them grey) and ``n3d`` 3D files under ``root/npz`` + a CSV of basenames."""
    data = root / "npz"
    data.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n2d):
        names.append(write_2d(data / f"{prefix}_2d_{i:03d}.npz", seed=i, rgb=i >= grey).name)
    for i in range(n3d):
        names.append(write_3d(data / f"{prefix}_3d_{i:03d}.npz", seed=100 + i, empty_slices=(1,)).name)
    return data, write_csv(root / name, names)


# ---- tiny models with the real interfaces ----------------------------------------------------------

def box_masks(boxes: torch.Tensor, size: int = 256) -> torch.Tensor:
    """(B, 1, 1, 4) or (B, 1, 4) boxes -> (B, 1, size, size) float masks of their inclusive extent."""
    b = boxes.reshape(-1, 4)
    r = torch.arange(size, device=boxes.device, dtype=b.dtype)
    inside_x = (r[None] >= b[:, 0:1]) & (r[None] <= b[:, 2:3])
    inside_y = (r[None] >= b[:, 1:2]) & (r[None] <= b[:, 3:4])
    return (inside_y[:, :, None] & inside_x[:, None, :]).to(b.dtype)[:, None]


class TinyPromptEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))  # frozen by SegmentationTask; must stay 1

    def forward(self, boxes: torch.Tensor) -> torch.Tensor:
        return box_masks(boxes) * self.scale


class TinyMaskDecoder(nn.Module):
    """Works at 64x64 and upsamples the logits: cheap on a CPU."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(channels + 1, 1, 3, padding=1)
        self.iou = nn.Linear(channels, 1)

    def forward(self, features: torch.Tensor, box_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        box_small = F.avg_pool2d(box_mask.to(features.dtype), 4)
        logits = self.head(torch.cat([features, box_small], dim=1))
        logits = F.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)
        return logits, torch.sigmoid(self.iou(features.mean(dim=(2, 3))))


class TinySam(nn.Module):
    """A few thousand parameters; BatchNorm included so running statistics are exercised."""

    def __init__(self, channels: int = 8, batchnorm: bool = True) -> None:
        super().__init__()
        self.image_encoder = nn.Sequential(nn.Conv2d(3, channels, 4, stride=4),
                                           nn.BatchNorm2d(channels) if batchnorm else nn.Identity(), nn.ReLU())
        self.prompt_encoder = TinyPromptEncoder()
        self.mask_decoder = TinyMaskDecoder(channels)

    def forward(self, images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mask_decoder(self.image_encoder(images), self.prompt_encoder(boxes))


class HeavySam(TinySam):
    """TinySam with ``ballast_mb`` MiB of extra buffer: its checkpoints take long enough to write
    that a kill can land in the middle of one."""

    def __init__(self, ballast_mb: int = 8) -> None:
        super().__init__()
        self.register_buffer("ballast", torch.linspace(0, 1, ballast_mb * 2**18))


class TinyEncoder(nn.Module):
    """(B, 3, 256, 256) -> (B, 256, 64, 64), like both real image encoders."""

    def __init__(self, hidden: int = 8, act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, hidden, 4, stride=4), act(), nn.Conv2d(hidden, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def state_digest(module: nn.Module) -> dict[str, float]:
    """Per-tensor float64 sums, for comparing models across processes."""
    return {k: float(v.double().sum()) for k, v in module.state_dict().items()}


def cpu_args(work_dir: Path, data_root: Path, csv_path: Path, *extra: str) -> list[str]:
    """Common CLI arguments of a quick CPU run."""
    return ["-data_root", str(data_root), "-datacsv", str(csv_path), "-work_dir", str(work_dir),
            "-device", "cpu", "-num_workers", "0", "-batch_size", "2", "-num_epochs", "1", *extra]


