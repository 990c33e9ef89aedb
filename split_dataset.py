"""Per-dataset 80/20 train/val split (seed 2024) -> datasplit/{train,val,fulldataset}.csv.

Usage: python split_dataset.py <datapath> [-out datasplit] [--basenames]
"""

import sys

from daftseg.data.splits import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
