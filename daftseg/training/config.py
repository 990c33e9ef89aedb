"""The resolved settings of one training run (written to ``<work_dir>/config.json``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

STAGES = ("distill", "finetune", "finetune3d")
PLATEAU_ON = ("train", "val")  # the loss ReduceLROnPlateau follows


class InvalidSetting(ValueError):
    """A setting out of its range; the message names it."""


@dataclass
class TrainConfig:
    stage: str
    # data (spec §3, §4)
    data_root: str = "train_npz"
    datacsv: str = "fulldataset.csv"
    data_subset: str = ""
    valcsv: str = ""
    cache_dir: str = ""
    skip_missing_files: bool = False
    bbox_shift: int = 5
    norm_before_pad: bool = False
    sanity_check: bool = False
    # weights
    pretrained_checkpoint: str = ""
    teacher_checkpoint: str = ""
    nopretrain: bool = False
    from_scratch: bool = False
    resume: str = ""
    work_dir: str = "./workdir"
    overwrite: bool = False  # replace a run already in work_dir
    trust_checkpoint: bool = False  # unpickle weight files in full (can run code in them)
    # optimisation (spec §5.1, §5.3)
    num_epochs: int = 10
    batch_size: int = 4
    grad_accum: int = 1
    global_batch_size: int = 0  # 0: not fixed; else batch_size x world size x grad_accum must equal it
    lr: float = 5e-5
    weight_decay: float = 0.01
    iou_loss_weight: float = 1.0
    seg_loss_weight: float = 1.0
    ce_loss_weight: float = 1.0
    patience: int = 7
    plateau_on: str = "train"  # 93f1e55 and 916bd4e: the mean training loss
    max_steps: int = 0
    seed: int = 2024
    # execution
    num_workers: int = 16
    device: str = "cuda:0"
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False  # SyncBatchNorm under DDP (GPU)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise InvalidSetting(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.amp not in ("none", "bf16"):
            raise InvalidSetting(f"amp must be 'none' or 'bf16', got {self.amp!r}")
        for name in ("batch_size", "grad_accum", "num_epochs"):
            if getattr(self, name) < 1:
                raise InvalidSetting(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.plateau_on not in PLATEAU_ON:
            raise InvalidSetting(f"plateau_on must be one of {PLATEAU_ON}, got {self.plateau_on!r}")
        if self.plateau_on == "val" and not self.valcsv:
            raise InvalidSetting("-plateau_on val needs a validation list (-valcsv)")
        if self.bbox_shift < 0 or self.num_workers < 0 or self.max_steps < 0 or self.global_batch_size < 0:
            raise InvalidSetting("bbox_shift, num_workers, max_steps and global_batch_size must not be negative")

    @property
    def every_slice(self) -> bool:
        """The 3D DAFT script visits every slice; the others draw one random slice per file."""
        return self.stage == "finetune3d"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
