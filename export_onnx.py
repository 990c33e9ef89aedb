#!/usr/bin/env python3
"""models/<Name>.pth -> onnxmodels/<Name>_{image_encoder,prompt_encoder,mask_decoder}.onnx
+ positional_encoding.npy, each graph checked against PyTorch with ONNX Runtime. See --help."""

import sys

from daftseg.export.onnx_export import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
