"""Stage 1, knowledge distillation: LiteMedSAM's TinyViT encoder (teacher) -> EfficientViT-SAM l0 image encoder (student).

Example (one GPU, global batch 7 as the original): python distill_fulldataset.py -data_root train_npz \
    -datacsv fulldataset.csv -pretrained_checkpoint l0.pt -work_dir work_dir_distill -num_epochs 24 \
    -global_batch_size 7 -device cuda

Run with --help for every flag; the code is in daftseg/training/distill.py.
"""

import sys

from daftseg.training.distill import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
