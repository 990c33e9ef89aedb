"""daftseg: DAFT (Data-Aware Fine-Tuning of EfficientViT-SAM) for MedSAM-on-Laptop.

Importing the package imports nothing heavy: the inference path (``daftseg.inference``) needs
only numpy, OpenCV and OpenVINO; training and export import torch in their own modules.
"""

__version__ = "0.1.0"
