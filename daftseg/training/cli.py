"""Command lines of the three training scripts: the original flags and defaults, plus the new ones.

Flags keep the original's single-dash spelling (``-data_root``, ``-num_epochs``, ...).
"""

from __future__ import annotations

import argparse
import os

from daftseg.training.batch import plan_batch
from daftseg.training.config import PLATEAU_ON, TrainConfig
from daftseg.trust import add_trust_argument

TEACHER_DEFAULT = "work_dir/LiteMedSAM/lite_medsam.pth"

_DESCRIPTIONS = {
    "distill": "Stage 1, knowledge distillation: the EfficientViT-SAM l0 image encoder (student) learns "
               "to reproduce the frozen LiteMedSAM TinyViT encoder's (B,256,64,64) embeddings (MSE).",
    "finetune": "Stages 2 and 3, fine-tuning EfficientViT-SAM (image encoder and mask decoder; the "
                "prompt encoder is frozen) with Dice + BCE + IoU-MSE. One sample per file per epoch; "
                "a 3D file contributes one random slice.",
    "finetune3d": "Stage 3 for 3D subsets (3D DAFT): as finetune_npz_devit_fulldataset.py, but an epoch "
                  "visits every slice of every file (2D files count as one slice).",
}


def build_parser(stage: str, prog: str | None = None) -> argparse.ArgumentParser:
    """The parser of one stage: ``distill``, ``finetune`` or ``finetune3d``."""
    finetuning = stage != "distill"
    p = argparse.ArgumentParser(prog=prog, description=_DESCRIPTIONS[stage],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("-data_root", default="train_npz", help="folder the CSV's 'filename' entries are joined to")
    d.add_argument("-datacsv", default="fulldataset.csv",
                   help="training file list: column 'filename' (basenames) or 'file' (paths)")
    d.add_argument("-data_subset", default="",
                   help="'|'-separated file-name prefixes (prefix match, e.g. 'CT|MR|PET'); '' = all files")
    d.add_argument("-valcsv", default="",
                   help="validation file list: selects the best checkpoint and stops early (-patience), as "
                        "916bd4e; the LR scheduler still follows the training loss unless -plateau_on val. "
                        "The same -data_root and -data_subset apply")
    d.add_argument("--skip_missing_files", action="store_true",
                   help="leave out listed files that do not exist under -data_root, with a count per "
                        "modality prefix (default: a missing file is an error)")
    d.add_argument("-cache_dir", default="",
                   help="preprocessing cache (python -m daftseg.data.preprocess_cache); files missing "
                        "from it are read from their npz")
    d.add_argument("-bbox_shift", type=int, default=5, help="maximum box jitter per coordinate, 256-px space")
    d.add_argument("--norm_before_pad", action="store_true",
                   help="min-max normalise before zero padding, as inference does (the original "
                        "normalised after padding)")
    d.add_argument("--sanity_check", action="store_true",
                   help="save sanity_check.png (a few training samples with masks and boxes) to -work_dir")

    w = p.add_argument_group("weights")
    if finetuning:
        w.add_argument("-pretrained_checkpoint", default="lite_medsam.pth",
                       help="EfficientViT-SAM state dict to start from: modelmerge.py output (general "
                            "fine-tuning) or extract_evit.py output (DAFT). NOT a LiteMedSAM checkpoint. "
                            "A missing file is an error; pass --from_scratch to start from random weights")
        w.add_argument("--from_scratch", action="store_true",
                       help="start from random weights instead of -pretrained_checkpoint")
    else:
        w.add_argument("-pretrained_checkpoint", default="l0.pt",
                       help="EfficientViT-SAM l0 weights for the STUDENT (e.g. the official l0.pt; its "
                            "image_encoder.* part is used). A missing file is an error unless --nopretrain")
        w.add_argument("--nopretrain", action="store_true", help="student starts from random weights")
        w.add_argument("-teacher_checkpoint", default=TEACHER_DEFAULT,
                       help="LiteMedSAM checkpoint; its image_encoder.* (TinyViT) is the frozen teacher")
    w.add_argument("-resume", default="work_dir_evit/base/medsam_lite_latest.pth" if finetuning else "",
                   help="checkpoint to continue from (model, optimizer, scheduler, epoch, RNG states); "
                        "-num_epochs is the total to reach. If the file does not exist a new run starts, "
                        "but only in an empty or absent -work_dir (otherwise: an error naming the path); "
                        "'' = none")
    w.add_argument("-work_dir", default="work_dir_evit/base" if finetuning else "./workdir",
                   help="run folder: checkpoints, config.json, train_log.csv, train_loss.png. A folder "
                        "that already holds a run is only continued (-resume with its checkpoint) or "
                        "replaced (--overwrite)")
    w.add_argument("--overwrite", action="store_true",
                   help="start in a -work_dir that already holds a run (checkpoints, train_log.csv or "
                        "config.json): that run's checkpoints, log, plots and config are deleted first")
    add_trust_argument(w, "each weights file (-pretrained_checkpoint, -resume"
                          + (", -teacher_checkpoint" if not finetuning else "") + ")")

    o = p.add_argument_group("optimisation")
    o.add_argument("-num_epochs", type=int, default=10, help="total number of epochs")
    # SUPPRESS: absent unless given, so -global_batch_size knows which of the two to derive
    o.add_argument("-batch_size", type=int, default=argparse.SUPPRESS,
                   help="batch PER PROCESS (DDP convention); global batch = batch_size x processes x "
                        "grad_accum. The original trained on one GPU: global batch 7 (distillation) and "
                        "96 (fine-tuning) (default: 4, or derived from -global_batch_size)")
    o.add_argument("-grad_accum", type=int, default=argparse.SUPPRESS,
                   help="micro-batches per optimizer step (default: 1, or derived from -global_batch_size)")
    o.add_argument("-global_batch_size", type=int, default=0,
                   help="samples per optimizer step over all processes; derives the per-process batch "
                        "(global / processes), or the accumulation when -batch_size is given too. It must "
                        "be a multiple of the number of processes; an impossible combination is an error. "
                        "0: not fixed")
    o.add_argument("-lr", type=float, default=5e-5, help="AdamW learning rate")
    o.add_argument("-weight_decay", type=float, default=0.01, help="AdamW weight decay")
    loss_note = "" if finetuning else " (unused: distillation has one loss; kept for old command lines)"
    o.add_argument("-iou_loss_weight", type=float, default=1.0, help="weight of the IoU-MSE loss" + loss_note)
    o.add_argument("-seg_loss_weight", type=float, default=1.0, help="weight of the Dice loss" + loss_note)
    o.add_argument("-ce_loss_weight", type=float, default=1.0, help="weight of the BCE loss" + loss_note)
    o.add_argument("-patience", type=int, default=7,
                   help="with -valcsv: stop once the validation loss has not improved for more than "
                        "this many epochs")
    o.add_argument("-plateau_on", choices=PLATEAU_ON, default="train",
                   help="loss ReduceLROnPlateau steps on once per epoch: 'train' (the mean training loss, as "
                        "93f1e55 and 916bd4e, also with -valcsv) or 'val' (needs -valcsv)")
    o.add_argument("-max_steps", type=int, default=0, help="stop after this many optimizer steps (0: no limit)")
    o.add_argument("-seed", type=int, default=2024, help="seed of model init, sampling and augmentation")

    e = p.add_argument_group("execution")
    e.add_argument("-num_workers", type=int, default=16, help="DataLoader worker processes per training process")
    e.add_argument("-device", default="cuda:0",
                   help="cuda, cuda:N or cpu; under torchrun each process uses cuda:LOCAL_RANK")
    e.add_argument("-sync_bn", action="store_true",
                   help="under torchrun, synchronise BatchNorm over all processes (SyncBatchNorm): statistics "
                        "over the global batch, as the original's single GPU; GPU only (torch has no CPU "
                        "SyncBatchNorm). Without it each process normalises over its own share of the batch")
    e.add_argument("--amp", choices=("none", "bf16"), default="none", help="autocast dtype")
    e.add_argument("--channels_last", action="store_true", help="channels-last memory format")
    e.add_argument("--compile", action="store_true", help="torch.compile the networks")
    return p


def parse_config(stage: str, argv: list[str] | None = None, prog: str | None = None,
                 world_size: int | None = None) -> TrainConfig:
    """Parse a stage's command line into a ``TrainConfig`` with the batch layout resolved.

    ``world_size``: the number of processes; by default torchrun's ``WORLD_SIZE`` (1 without it).
    Raises ``InvalidSetting`` when ``-global_batch_size`` cannot be met.
    """
    args = vars(build_parser(stage, prog).parse_args(argv))
    world = world_size if world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    plan = plan_batch(world, args.pop("batch_size", None), args.pop("grad_accum", None),
                      args["global_batch_size"])
    return TrainConfig(stage=stage, batch_size=plan.per_process, grad_accum=plan.grad_accum, **args)
