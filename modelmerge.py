#!/usr/bin/env python3
"""Distilled EfficientViT encoder + LiteMedSAM prompt encoder/decoder -> one weights file. See --help."""

import sys

from daftseg.merge import merge_main

if __name__ == "__main__":
    sys.exit(merge_main(sys.argv[1:]))
