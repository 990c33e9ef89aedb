"""DICOM Segmentation (SEG) out and in: a label map as a SEG that references its source series
(highdicom), and one box per segment of a SEG back (pydicom).

    series = series_on_grid(source_series(folder), geometry)     # daftseg.io.dicom_series
    write_seg(labels, series, boxes, "CT", "seg.dcm")
    boxes, values, names = seg_boxes("seg.dcm", geometry)       # what --boxes_from seg.dcm prompts with

A written SEG is BINARY, one segment per label value of the boxes (segment numbers 1..N in the order
of the values: DICOM numbers segments consecutively, so labels 4 and 9 become segments 1 and 2; the
sidecar keeps the values). Each segment has the label of its first named box, else ``label N``, the
segmented property category and type of ``segment_property``, algorithm type SEMIAUTOMATIC (a person
drew the boxes) and algorithm ``daftseg <model>`` with daftseg's version. Frames are written only for
slices that hold a segment, each placed and referenced by its source instance.

highdicom and pydicom (the ``[data]`` extra) are imported inside the functions: the inference path
never needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from daftseg.io.dicom_series import (
    ORIENTATION_ATOL,
    POSITION_VOXEL_FRACTION,
    SEG_SOP_CLASS,
    DicomSeries,
    pydicom_module,
    slice_indices,
)
from daftseg.io.grid import Geometry
from daftseg.io.scan import ScanError

SERIES_NUMBER = 1000  # a derived series sorts after the scanner's own in a viewer's list
# (code value, coding scheme, meaning), SNOMED CT as DICOM's CID 7150/7151 list them
ANATOMY = ("91723000", "SCT", "Anatomical Structure")
ABNORMAL = ("49755003", "SCT", "Morphologically Abnormal Structure")
TISSUE = ("85756007", "SCT", "Tissue")
# the first entry with a word found in the box's name (lower case) gives its category and type;
# tumour first, so that "liver tumour" is a tumour
SEGMENT_PROPERTIES = (
    (("tumour", "tumor", "neoplasm"), ABNORMAL, ("108369006", "SCT", "Neoplasm")),
    (("liver",), ANATOMY, ("10200004", "SCT", "Liver")),
    (("kidney",), ANATOMY, ("64033007", "SCT", "Kidney")),
    (("spleen",), ANATOMY, ("78961009", "SCT", "Spleen")),
    (("lung",), ANATOMY, ("39607008", "SCT", "Lung")),
)
AI_FAMILY = ("123110", "DCM", "Artificial Intelligence")
LO_MAX = 64  # characters of a DICOM long string (segment label, algorithm name)


def highdicom_module():
    """highdicom, or an ImportError that says how to get it."""
    try:
        import highdicom
    except ImportError:
        raise ImportError("DICOM SEG needs highdicom: pip install 'daftseg[data]'") from None
    return highdicom


def segment_property(name: str | None) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """(category, type) codes for a box name: liver, kidney, spleen, lung, tumour; else tissue."""
    text = (name or "").lower()
    for words, category, kind in SEGMENT_PROPERTIES:
        if any(word in text for word in words):
            return category, kind
    return TISSUE, TISSUE


def segment_names(boxes: Sequence) -> dict[int, str | None]:
    """{label value: the name of its first named box, or None}, in value order: one entry per segment."""
    names: dict[int, str | None] = {}
    for box in boxes:
        name = _long_string(box.name) if box.name else None
        if names.get(box.label) is None:
            names[box.label] = name or None
    return dict(sorted(names.items()))


def write_seg(labels: np.ndarray, series: DicomSeries, boxes: Sequence, model: str, path: str | Path) -> None:
    """Write ``labels`` as a DICOM SEG referencing ``series`` (its datasets in slice order) at ``path``.

    Args:
        labels: (D, H, W) label values on the series' grid; every non-zero value is a box's label.
        boxes: ``ResultBox``es: their label values and names make the segments.
        model: the model's name, in the algorithm name and the series description.
    """
    from daftseg import __version__

    hd = highdicom_module()
    from pydicom.sr.coding import Code

    names = segment_names(boxes)
    values = np.array(list(names), dtype=np.int64)
    labels = np.asarray(labels)
    if labels.shape[0] != len(series.datasets):
        raise ValueError(f"{labels.shape[0]} slices for {len(series.datasets)} source instances")
    lut = np.zeros(max(int(labels.max(initial=0)), int(values.max(initial=0))) + 1, np.uint16)
    lut[values] = np.arange(1, values.size + 1)
    stray = np.setdiff1d(np.unique(labels), np.concatenate([[0], values]))
    if stray.size:
        raise ValueError(f"label values {stray.tolist()[:5]} belong to no box")
    pixels = lut[labels].astype(np.uint8 if values.size < 256 else np.uint16)
    if not pixels.any():
        raise ScanError("nothing was segmented: a DICOM SEG holds only slices with segmented voxels "
                        "(draw or propagate a box first, or write .nii.gz)")
    algorithm = hd.AlgorithmIdentificationSequence(name=_long_string(f"daftseg {model}"),
                                                   family=Code(*AI_FAMILY), version=__version__)
    descriptions = []
    for number, (value, name) in enumerate(names.items(), start=1):
        category, kind = segment_property(name)
        descriptions.append(hd.seg.SegmentDescription(number, name or f"label {value}", Code(*category),
                                                      Code(*kind), "SEMIAUTOMATIC", algorithm))
    seg = hd.seg.Segmentation(
        source_images=series.datasets, pixel_array=pixels, segmentation_type="BINARY",
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="daftseg",
        manufacturer_model_name=_long_string(model), software_versions=__version__, device_serial_number="none",
        omit_empty_frames=True,
        series_description=_long_string(f"daftseg {model}"), content_label="DAFTSEG",
        content_description=_long_string(f"daftseg {model}: box-prompted segmentation"))
    seg.save_as(str(path))


def is_seg_file(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file of the Segmentation Storage class."""
    pydicom = pydicom_module()
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError):
        return False
    return str(ds.get("SOPClassUID", "")) == SEG_SOP_CLASS


def seg_boxes(path: str | Path, geometry: Geometry) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """One box per segment of the DICOM SEG at ``path`` on the scan's grid, as the label-map path makes them.

    The SEG must segment the scan's series (when it names the series it references); each frame is
    put on the slice its ImagePositionPatient lies on, so SEGs from other tools (OHIF, 3D Slicer) that
    list frames in any order work. FRACTIONAL segments count voxels above half their maximum.

    Returns:
        ((N, 6) int64 boxes [x_min, y_min, z_min, x_max, y_max, z_max], inclusive, of the segments that
        hold voxels; (N,) their segment numbers, the label values they get; (N,) their segment labels).
    """
    pydicom = pydicom_module()
    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError) as err:
        raise ScanError(f"{path}: not a readable DICOM file ({err})") from None
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise ScanError(f"{path}: not a DICOM Segmentation")
    if geometry.source_format != "dicom" or geometry.ndim != 3 or not geometry.series_uid:
        raise ScanError(f"{path}: a DICOM SEG's boxes are read for the DICOM series it segments; "
                        f"this scan is {geometry.source_format}")
    referenced = {str(item.SeriesInstanceUID) for item in ds.get("ReferencedSeriesSequence", [])}
    if referenced and geometry.series_uid not in referenced:
        raise ScanError(f"{path} segments series {', '.join(sorted(referenced))}, "
                        f"not this scan's {geometry.series_uid}")
    if (int(ds.Columns), int(ds.Rows)) != tuple(geometry.size[:2]):
        raise ScanError(f"{path}: frames of {ds.Columns}x{ds.Rows} pixels, the scan's slices are "
                        f"{geometry.size[0]}x{geometry.size[1]}")
    frames = ds.pixel_array.reshape(int(ds.get("NumberOfFrames", 1)), int(ds.Rows), int(ds.Columns))
    slices, numbers = _frame_slices(ds, geometry, path)
    threshold = int(ds.get("MaximumFractionalValue", 2)) / 2 if ds.SegmentationType == "FRACTIONAL" else 0
    found: dict[int, np.ndarray] = {}
    for frame, z, number in zip(frames, slices, numbers, strict=True):
        ys, xs = np.nonzero(frame > threshold)
        if xs.size == 0:
            continue
        box = np.array([xs.min(), ys.min(), z, xs.max(), ys.max(), z], np.int64)
        old = found.get(number, box)
        found[number] = np.concatenate([np.minimum(old[:3], box[:3]), np.maximum(old[3:], box[3:])])
    if not found:
        raise ScanError(f"{path}: no segment holds a voxel")
    labels = {int(s.SegmentNumber): str(s.get("SegmentLabel", "")) or None for s in ds.SegmentSequence}
    order = sorted(found)
    return (np.stack([found[n] for n in order]), np.array(order, np.int64), [labels.get(n) for n in order])


def _frame_slices(ds, geometry: Geometry, path: Path) -> tuple[np.ndarray, list[int]]:
    """(F,) slice index and segment number of each frame, from its plane position and orientation."""
    shared = ds.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in ds else None
    per_frame = ds.PerFrameFunctionalGroupsSequence
    positions, numbers = [], []
    for i, group in enumerate(per_frame):
        orientation = _group(group, shared, "PlaneOrientationSequence", path, i).ImageOrientationPatient
        if not np.allclose(np.asarray(orientation, np.float64).reshape(2, 3), geometry.matrix[:, :2].T,
                           rtol=0, atol=ORIENTATION_ATOL):
            raise ScanError(f"{path}: frame {i + 1} is not oriented as the scan's slices")
        spacing = _group(group, shared, "PixelMeasuresSequence", path, i).PixelSpacing  # (row, column) mm
        if not np.allclose([float(v) for v in spacing], geometry.spacing[1::-1], rtol=1e-3):
            raise ScanError(f"{path}: frame {i + 1} has pixel spacing {list(map(float, spacing))} mm, "
                            f"the scan {list(geometry.spacing[1::-1])}")
        positions.append([float(v) for v in _group(group, shared, "PlanePositionSequence", path, i)
                          .ImagePositionPatient])
        segment = _group(group, shared, "SegmentIdentificationSequence", path, i)
        numbers.append(int(segment.ReferencedSegmentNumber))
    slices, off = slice_indices(np.array(positions), geometry)
    bad = np.flatnonzero((off > POSITION_VOXEL_FRACTION) | (slices < 0) | (slices >= geometry.size[2]))
    if bad.size:
        raise ScanError(f"{path}: frame {int(bad[0]) + 1} at {positions[bad[0]]} mm lies on no slice "
                        "of the scan")
    return slices, numbers


def _group(frame_group, shared, keyword: str, path: Path, index: int):
    """A functional group's first item, per frame or else shared."""
    for group in (frame_group, shared):
        if group is not None and keyword in group and len(group[keyword].value):
            return group[keyword].value[0]
    raise ScanError(f"{path}: frame {index + 1} has no {keyword}")


def _long_string(text: str) -> str:
    """A DICOM LO value: no backslash or control characters, at most 64 characters."""
    clean = "".join(" " if c == "\\" or ord(c) < 32 else c for c in text).strip()
    return clean[:LO_MAX]
