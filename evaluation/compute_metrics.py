#!/usr/bin/env python3
"""Score segs/*.npz against gts/*.npz with the challenge's DSC and NSD; per-target summary. See --help."""

import sys
from pathlib import Path

# Run as `python evaluation/compute_metrics.py` from a checkout: the repo root is not on
# sys.path then (only this script's folder is), so put it there for `import daftseg`.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from daftseg.metrics.evaluate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
