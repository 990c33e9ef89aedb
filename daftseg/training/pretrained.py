"""Loading the weights each stage starts from, with errors that say what the file should have been.

- distillation student: EfficientViT-SAM l0 weights (``l0.pt``: its ``image_encoder.*`` part);
- distillation teacher: LiteMedSAM (``lite_medsam.pth``: its ``image_encoder.*`` part, TinyViT);
- fine-tuning: a whole EfficientViT-SAM state dict (``modelmerge.py`` / ``extract_evit.py`` output).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from daftseg.checkpoints import CheckpointError, extract_state_dict, load_weights, read_checkpoint

ENCODER_PREFIX = "image_encoder."


def checkpoint_kind(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A readable guess of what a state dict holds, for error messages."""
    keys = list(state_dict)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has("image_encoder.backbone."):
        return "a whole EfficientViT-SAM model"
    if has("image_encoder.patch_embed.") or has("image_encoder.layers."):
        return "a whole LiteMedSAM (TinyViT) model"
    if has("backbone.") and has("neck."):
        return "an EfficientViT-SAM image encoder (a distillation checkpoint)"
    if has("patch_embed.") or has("layers."):
        return "a TinyViT image encoder"
    return "an unrecognised model"


def _load(module: nn.Module, path: str | os.PathLike, expected: str, encoder_only: bool, trust: bool) -> None:
    state_dict = extract_state_dict(read_checkpoint(path, trust), str(path))
    # an encoder-only state dict (e.g. a distillation checkpoint) is accepted as well
    prefix = ENCODER_PREFIX if encoder_only and any(k.startswith(ENCODER_PREFIX) for k in state_dict) else ""
    try:
        load_weights(module, state_dict, prefix=prefix, name=str(path))
    except CheckpointError as e:
        raise CheckpointError(f"{e}\n{path} holds {checkpoint_kind(state_dict)}; expected {expected}") from None


def load_student(student: nn.Module, path: str, nopretrain: bool, trust: bool = False) -> str:
    """Initialise the distillation student; returns a line for the log. ``trust``: see ``read_checkpoint``."""
    if nopretrain:
        return "Student: random initialisation (--nopretrain)"
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"-pretrained_checkpoint {path}: no such file. For distillation it is the EfficientViT-SAM "
            f"l0 checkpoint that initialises the student (the official l0.pt); pass --nopretrain to "
            f"start the student from random weights")
    _load(student, path, "EfficientViT-SAM l0 weights", encoder_only=True, trust=trust)
    return f"Student: EfficientViT-SAM l0 image encoder from {path}"


def load_teacher(teacher: nn.Module, path: str, trust: bool = False) -> str:
    if not Path(path).is_file():
        raise FileNotFoundError(f"-teacher_checkpoint {path}: no such file (the LiteMedSAM checkpoint "
                                f"lite_medsam.pth)")
    _load(teacher, path, "a LiteMedSAM checkpoint (lite_medsam.pth)", encoder_only=True, trust=trust)
    return f"Teacher: LiteMedSAM TinyViT image encoder from {path} (frozen)"


def load_finetune_start(model: nn.Module, path: str, from_scratch: bool, trust: bool = False) -> str:
    """Initialise the model to fine-tune; returns a line for the log."""
    if from_scratch:
        return "Fine-tuning from random weights (--from_scratch)"
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"-pretrained_checkpoint {path}: no such file. Fine-tuning starts from an EfficientViT-SAM "
            f"state dict (modelmerge.py output for general fine-tuning, extract_evit.py output for "
            f"DAFT); pass --from_scratch to train from random weights")
    _load(model, path, "an EfficientViT-SAM state dict (modelmerge.py or extract_evit.py output)",
          encoder_only=False, trust=trust)
    return f"Finetuning with pretrained weights {path}"
