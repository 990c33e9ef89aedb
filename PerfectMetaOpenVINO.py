#!/usr/bin/env python
"""Segment challenge npz cases with DAFT's per-modality OpenVINO models (spec §7).

    python PerfectMetaOpenVINO.py -i test_demo/imgs -o test_demo/segs [-m openvinomodels]

Flags: ``python PerfectMetaOpenVINO.py --help``. The code is in ``daftseg/inference/``; this file
only sets up the process and calls ``daftseg.inference.runner.main`` (it imports no torch, OpenCV
or OpenVINO itself).
"""

import os
import sys

# numpy's OpenBLAS starts a thread per core at import, and those threads spin waiting for work
# that never comes (inference makes no BLAS call): CPU time taken from OpenVINO on every case.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from daftseg.inference.runner import main  # after the environment is set

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], fast_exit=True))
