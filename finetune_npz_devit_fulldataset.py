"""Stages 2 and 3: fine-tune EfficientViT-SAM on all data (general) or on a -data_subset (DAFT).

Example: torchrun --nproc_per_node 4 finetune_npz_devit_fulldataset.py -pretrained_checkpoint distilled.pth \
    -work_dir work_dir_evit/base -resume work_dir_evit/base/medsam_lite_latest.pth -num_epochs 24 -global_batch_size 96 -device cuda
(-global_batch_size 96: 24 per process on 4 GPUs, the original's global batch; -batch_size is per process)

Run with --help for every flag; the code is in daftseg/training/finetune.py.
"""

import sys

from daftseg.training.finetune import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
