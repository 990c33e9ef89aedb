"""Weight-file tools: ``modelmerge.py`` (spec §5.2) and ``extract_evit.py`` (spec §5.5).

Both write ``models/<Name>.pth``-style files: plain state dicts under the official
EfficientViT-SAM keys (``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``), so the
original's own tools load them too. Nothing is written into the current directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from daftseg.checkpoints import (
    CheckpointError,
    atomic_save,
    extract_state_dict,
    load_weights,
    read_checkpoint,
    select_prefix,
)
from daftseg.models import build_model
from daftseg.trust import add_trust_argument

DEFAULT_TEACHER = "work_dir/LiteMedSAM/lite_medsam.pth"
STUDENT = "efficientvit_sam_l0"


def merge(distill_checkpoint: str | Path, lite_medsam: str | Path = DEFAULT_TEACHER,
          trust: bool = False) -> dict[str, torch.Tensor]:
    """Distilled EfficientViT image encoder + LiteMedSAM prompt encoder and mask decoder.

    ``distill_checkpoint`` holds the student encoder (keys ``backbone.*``, ``neck.*``, ``norm.*``,
    optionally ``module.``-prefixed or under ``model``), or a whole SAM state dict whose
    ``image_encoder.*`` part is taken. Both files are read weights-only unless ``trust``
    (``daftseg.checkpoints.read_checkpoint``).
    """
    lite = load_weights(build_model("litemedsam"), lite_medsam, trust=trust)
    encoder_sd = extract_state_dict(read_checkpoint(distill_checkpoint, trust), str(distill_checkpoint))
    if any(k.startswith("image_encoder.") for k in encoder_sd):
        encoder_sd = select_prefix(encoder_sd, "image_encoder.")
    model = build_model(STUDENT)
    load_weights(model.image_encoder, encoder_sd, name=str(distill_checkpoint))
    # Same classes and hyper-parameters in both models, including the random-Fourier buffer,
    # so every DAFT model shares LiteMedSAM's positional encoding.
    model.prompt_encoder.load_state_dict(lite.prompt_encoder.state_dict(), strict=True)
    model.mask_decoder.load_state_dict(lite.mask_decoder.state_dict(), strict=True)
    return model.state_dict()


def extract(checkpoint: str | Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """A fine-tuning checkpoint (``model`` with or without ``module.``) -> plain SAM state dict."""
    return load_weights(build_model(STUDENT), checkpoint, trust=trust).state_dict()


def merge_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="modelmerge.py",
        description="Merge a distilled EfficientViT-SAM l0 image encoder with LiteMedSAM's prompt "
                    "encoder and mask decoder into one EfficientViT-SAM weights file (plain state dict).",
    )
    parser.add_argument("checkpoint", help="distillation checkpoint (e.g. workdir/medsam_lite_latest.pth)")
    parser.add_argument("weights", help="output weights file (e.g. distilled.pth)")
    parser.add_argument("--lite_medsam", "-teacher_checkpoint", dest="lite_medsam", default=DEFAULT_TEACHER,
                        help=f"LiteMedSAM checkpoint giving the prompt encoder and mask decoder "
                             f"(default: {DEFAULT_TEACHER})")
    add_trust_argument(parser, "the input checkpoints")
    args = parser.parse_args(argv)
    return _run(lambda: merge(args.checkpoint, args.lite_medsam, args.trust_checkpoint), args.weights)


def extract_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="extract_evit.py",
        description="Extract the EfficientViT-SAM weights from a fine-tuning checkpoint (DataParallel "
                    "'module.' prefixes stripped) into a plain state dict, e.g. models/<Name>.pth.",
    )
    parser.add_argument("checkpoint", help="fine-tuning checkpoint (e.g. work_dir_evit/base/medsam_lite_best.pth)")
    parser.add_argument("weights", help="output weights file (e.g. models/CT.pth)")
    add_trust_argument(parser, "the input checkpoints")
    args = parser.parse_args(argv)
    return _run(lambda: extract(args.checkpoint, args.trust_checkpoint), args.weights)




def _run(make_state_dict, out: str) -> int:
    try:
        state_dict = make_state_dict()
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1
    atomic_save(state_dict, out)
    print(f"wrote {out} ({len(state_dict)} tensors)")
    return 0
