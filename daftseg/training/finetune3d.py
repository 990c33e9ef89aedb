"""Stage 3 for 3D subsets, ``finetune_npz_devit_fulldataset3D.py``: fine-tuning over every slice.

The same model, losses and loop as ``finetune``; only the sampling differs: an epoch visits every
slice of every file, the last slice included (the original's ``__len__`` skipped it), and a 2D
file counts as one slice (the original counted its height).
"""

from __future__ import annotations

from daftseg.training.finetune import make_task
from daftseg.training.runner import run_main


def main(argv: list[str] | None = None) -> int:
    return run_main("finetune3d", argv, "finetune_npz_devit_fulldataset3D.py", make_task)
