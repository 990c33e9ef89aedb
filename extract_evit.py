#!/usr/bin/env python3
"""Fine-tuning checkpoint -> plain EfficientViT-SAM weights file (models/<Name>.pth). See --help."""

import sys

from daftseg.merge import extract_main

if __name__ == "__main__":
    sys.exit(extract_main(sys.argv[1:]))
