#!/usr/bin/env python3
"""lite_medsam.pth -> liteonnx/lite_medsam_*.onnx and liteov/lite_medsam_*.xml/.bin
(+ positional_encoding.npy in both), each checked numerically. See --help."""

import sys

from daftseg.export.lite import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
