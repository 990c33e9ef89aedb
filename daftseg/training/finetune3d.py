"""Stage 3 for 3D subsets, ``finetune_npz_devit_fulldataset3D.py``: fine-tuning over every slice.

The same model, losses and loop as ``finetune``; only the sampling differs: an epoch visits every
slice of every file, the last slice included (the original's ``__len__`` skipped it), and a 2D
file counts as one slice (the original counted its height).
"""

from __future__ import annotations

from daftseg.training.cli import parse_config
from daftseg.training.finetune import make_task
from daftseg.training.runner import run_stage


def main(argv: list[str] | None = None) -> int:
    run_stage(parse_config("finetune3d", argv, prog="finetune_npz_devit_fulldataset3D.py"), make_task)
    return 0
