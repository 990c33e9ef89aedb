"""Load every known checkpoint layout strictly; save clean, self-describing files atomically.

Layouts (spec §2.4): a plain state dict (``lite_medsam.pth``, ``models/<Name>.pth``), a dict
holding ``model`` (DAFT training checkpoints) or ``state_dict`` (EfficientViT ``l0.pt``), with
keys optionally prefixed ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from daftseg.atomic import atomic_path

WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read or does not fit the model."""


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load`` on CPU, weights-only where the file allows it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as weights_only_error:  # noqa: BLE001 - retried below, reported if both fail
        # Old training checkpoints may hold pickled non-tensor objects (e.g. numpy RNG state).
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({e})") from weights_only_error


def extract_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The model state dict inside any known layout, with wrapper prefixes stripped."""
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source}: no state dict found (expected a dict of tensors, "
                              f"or one under 'model' or 'state_dict')")
    return {strip_prefixes(k): v for k, v in obj.items()}


def strip_prefixes(key: str) -> str:
    """Remove leading ``module.`` / ``_orig_mod.`` (repeatedly, prefixes only, never substrings)."""
    changed = True
    while changed:
        changed = False
        for p in WRAPPER_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def select_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries under ``prefix`` (e.g. ``"image_encoder."``) with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def check_compatible(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise a readable CheckpointError listing missing keys, unexpected keys and shape mismatches."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict) if state_dict[k].shape != expected[k].shape
    )
    if missing or unexpected or shapes:
        raise CheckpointError(_report(source, type(module).__name__, missing, unexpected, shapes))


def load_weights(module: nn.Module, source: str | os.PathLike | Mapping, prefix: str = "",
                 name: str | None = None) -> nn.Module:
    """Strictly load a checkpoint (path or already-read object) into ``module``.

    ``prefix`` selects a sub-tree of the checkpoint, e.g. ``"image_encoder."`` to take LiteMedSAM's
    encoder out of ``lite_medsam.pth``. ``name`` names the source in errors (default: the path).
    The module keeps its train/eval mode.
    """
    if name is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else "checkpoint"
    obj = read_checkpoint(source) if isinstance(source, (str, os.PathLike)) else source
    state_dict = extract_state_dict(obj, name)
    if prefix:
        state_dict = select_prefix(state_dict, prefix)
        if not state_dict:
            raise CheckpointError(f"{name}: no keys under {prefix!r}")
    check_compatible(module, state_dict, name)
    module.load_state_dict(state_dict, strict=True)
    return module


def clean_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """State dict of a possibly DDP- or compile-wrapped module, under the official key names."""
    for attr in ("module", "_orig_mod"):
        while hasattr(module, attr) and isinstance(getattr(module, attr), nn.Module):
            module = getattr(module, attr)
    return {strip_prefixes(k): v.detach().cpu() for k, v in module.state_dict().items()}


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the target folder, then rename over ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def _report(source: str, model: str, missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    def block(title: str, items: list[str]) -> str:
        shown = "\n".join(f"    {i}" for i in items[:20])
        more = f"\n    ... and {len(items) - 20} more" if len(items) > 20 else ""
        return f"  {title} ({len(items)}):\n{shown}{more}" if items else ""

    parts = [block("missing keys", missing), block("unexpected keys", unexpected),
             block("shape mismatches", shapes)]
    return f"{source} does not fit {model}:\n" + "\n".join(p for p in parts if p)
