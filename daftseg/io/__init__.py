"""Scans in and out with their geometry: NIfTI, DICOM series, NRRD/MHA, pictures, challenge npz.

    array, geometry = read_scan("ct.nii.gz", modality="CT")   # (D, H, W) uint8 + Geometry
    write_labels(segs, geometry, "ct_seg.nii.gz")              # on the scan's own grid

Imports no torch. SimpleITK (the ``[data]`` extra) is imported only when a medical format is read
or written; pictures go through OpenCV.
"""

from daftseg.io.grid import Geometry
from daftseg.io.normalise import Intensity
from daftseg.io.scan import ScanError, read_label_map, read_scan, write_labels

__all__ = ["Geometry", "Intensity", "ScanError", "read_label_map", "read_scan", "write_labels"]
