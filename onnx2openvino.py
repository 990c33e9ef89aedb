#!/usr/bin/env python3
"""onnxmodels/*.onnx -> openvinomodels/*.xml/.bin (FP16 weights unless --fp32), *.npy copied,
each IR checked against ONNX Runtime. See --help."""

import sys

from daftseg.export.openvino_convert import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
