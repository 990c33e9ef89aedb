"""Scans in and out with their geometry: NIfTI, DICOM series, NRRD/MHA, pictures, challenge npz.

    scan = read_scan("ct.nii.gz", modality="CT")       # scan.image (D, H, W) uint8, scan.raw (HU), scan.geometry
    write_result(segs, scan.geometry, "ct_seg.nii.gz", boxes, info)   # + ct_seg.nii.gz.json, .boxes.json

The scan-side rules live here (intensities, label boxes, modalities, the voxel grid); ``daftseg.data``
builds on them and is never imported from here. Imports no torch. SimpleITK (the ``[data]`` extra)
is imported only when a medical format is read or written; pictures go through OpenCV.
"""

from daftseg.io.grid import Geometry
from daftseg.io.normalise import Intensity
from daftseg.io.results import (
    OutputExists,
    ResultBox,
    ResultInfo,
    ResultPaths,
    result_paths,
    write_labels,
    write_result,
)
from daftseg.io.scan import Scan, ScanError, read_label_map, read_scan

__all__ = ["Geometry", "Intensity", "OutputExists", "ResultBox", "ResultInfo", "ResultPaths", "Scan", "ScanError",
           "read_label_map", "read_scan", "result_paths", "write_labels", "write_result"]
