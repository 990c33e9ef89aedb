"""Stage 3 for 3D subsets (3D DAFT): fine-tuning that visits every slice of every file each epoch.

Example: python finetune_npz_devit_fulldataset3D.py -data_subset 'CT|MR|PET' -pretrained_checkpoint general.pth \
    -work_dir work_dir_evit/3D -resume work_dir_evit/3D/medsam_lite_latest.pth -num_epochs 3 -global_batch_size 96 -device cuda

Run with --help for every flag; the code is in daftseg/training/finetune3d.py.
"""

import sys

from daftseg.training.finetune3d import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
