"""The fixtures' deterministic fill rule (tests/fixtures/README.md), shared by the tests."""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).parent / "fixtures"

# model name in the registry -> fixture file stem
FIXTURE_STEMS = {"litemedsam": "litemedsam", "efficientvit_sam_l0": "efficientvit_sam_l0"}


def fill_value(key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The value the fixtures' generator wrote for ``key`` (floating entries only)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    r = torch.rand(shape, generator=g, dtype=torch.float64)
    if key.endswith("running_var"):
        v = 0.5 + r
    elif key.endswith("running_mean"):
        v = 0.1 * (2 * r - 1)
    elif len(shape) >= 2:
        numel = math.prod(shape)
        v = (2 * r - 1) * math.sqrt(3 / (numel // shape[0]))
    elif key.endswith("weight"):
        v = 1 + 0.1 * (2 * r - 1)
    else:
        v = 0.1 * (2 * r - 1)
    return v.to(dtype)


def filled_state_dict(state_dict: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Copy of ``state_dict`` with every floating entry replaced by the fill rule.

    ``prefix`` is prepended to each key before seeding, so an image encoder's own state dict
    can be filled as the whole model's ``image_encoder.*`` entries were.
    """
    out = {}
    for k, v in state_dict.items():
        out[k] = fill_value(prefix + k, tuple(v.shape), v.dtype) if v.is_floating_point() else v.clone()
    return out


def fixture_keys(stem: str) -> dict[str, list]:
    """key -> [shape, dtype] as stored in ``<stem>_state_dict.json``."""
    return json.loads((FIXTURES / f"{stem}_state_dict.json").read_text())


def fixture_reference(stem: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{stem}_reference.npz") as z:
        return {k: z[k] for k in z.files}
