"""Scans in and out with their geometry: NIfTI, DICOM series, NRRD/MHA, pictures, challenge npz.

    scan = read_scan("ct.nii.gz", modality="CT")   # scan.image (D, H, W) uint8, scan.raw (HU), scan.geometry
    write_labels(segs, geometry, "ct_seg.nii.gz")              # on the scan's own grid

Imports no torch. SimpleITK (the ``[data]`` extra) is imported only when a medical format is read
or written; pictures go through OpenCV.
"""

from daftseg.io.grid import Geometry
from daftseg.io.normalise import Intensity
from daftseg.io.scan import Scan, ScanError, read_label_map, read_scan, write_labels

__all__ = ["Geometry", "Intensity", "Scan", "ScanError", "read_label_map", "read_scan", "write_labels"]
