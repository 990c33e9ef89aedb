"""The source instances of a DICOM series, in the order of the volume's slices (pydicom, headers only).

SimpleITK reads the voxels (``medical.read_dicom_series``) but not which file became which slice; a
DICOM Segmentation must reference each source instance and place each frame on its slice, so the
headers are read here and matched to the grid by ImagePositionPatient:

    series = source_series(folder, series_id)     # before the voxels are read: refuses gaps early
    series = series_on_grid(series, geometry)     # datasets[k] is slice k of the (D, H, W) array

A series a SEG can reference: single-frame images of one SeriesInstanceUID, one orientation, one
size, a FrameOfReferenceUID, and slice positions evenly spaced along the slice normal (a missing
slice or uneven spacing would put frames on the wrong slices). pydicom (the ``[data]`` extra) is
imported inside the functions: the inference path never needs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.io.grid import Geometry
from daftseg.io.scan import ScanError

# DS values carry at most 16 characters, so positions differ from SimpleITK's grid by ~1e-5 mm;
# these tolerances are far above that and far below a voxel
GAP_RTOL = 1e-3  # slice gaps may differ by this fraction of the median gap
GAP_ATOL_MM = 1e-3
POSITION_VOXEL_FRACTION = 0.05  # a slice lies on the grid within this fraction of a voxel
ORIENTATION_ATOL = 1e-3
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"  # Segmentation Storage: a SEG beside the series is not a source


@dataclass(frozen=True, eq=False)
class DicomSeries:
    """One series' headers: ``datasets`` (pydicom, no pixel data) and their ``files``, in slice order."""

    folder: Path
    series_uid: str
    datasets: list
    files: list[Path]


def pydicom_module():
    """pydicom, or an ImportError that says how to get it."""
    try:
        import pydicom
    except ImportError:
        raise ImportError("DICOM SEG needs pydicom and highdicom: pip install 'daftseg[data]'") from None
    return pydicom


def source_series(path: str | Path, series_id: str | None = None) -> DicomSeries:
    """The headers of the series in folder ``path``, checked and sorted along the slice normal.

    Args:
        series_id: the SeriesInstanceUID to take; needed only when the folder holds several.
    Raises:
        ScanError: ``path`` is a single file or a multi-frame image, the folder holds no or several
            series, or the series cannot be referenced (see the module docstring).
    """
    path = Path(path)
    if path.is_file():
        ds = _header(path)
        if ds is not None and int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise ScanError(_multiframe(path, ds))
        raise ScanError(f"{path}: DICOM SEG output needs the series folder as the scan "
                        "(a single file is one slice)")
    found: dict[str, list[tuple[Path, object]]] = {}
    for file in sorted(p for p in path.iterdir() if p.is_file()):
        ds = _header(file)
        is_image = ds is not None and "Rows" in ds and ds.get("SOPClassUID") != SEG_SOP_CLASS
        if is_image and "SeriesInstanceUID" in ds:
            found.setdefault(str(ds.SeriesInstanceUID), []).append((file, ds))
    if series_id is None:
        if len(found) != 1:
            listing = ", ".join(f"{uid} ({len(files)} files)" for uid, files in found.items())
            raise ScanError(f"{path} holds {len(found)} DICOM image series; choose one with --series_id"
                            + (f": {listing}" if listing else ""))
        series_id = next(iter(found))
    if series_id not in found:
        raise ScanError(f"series {series_id} not in {path}")
    items = found[series_id]
    for file, ds in items:
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            raise ScanError(_multiframe(file, ds))
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "FrameOfReferenceUID",
                        "PixelSpacing"):
            if not ds.get(keyword):
                raise ScanError(f"{file}: no {keyword}; a DICOM SEG places its frames by it")
    first = items[0][1]
    for file, ds in items[1:]:
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise ScanError(f"{file}: {ds.Rows}x{ds.Columns} pixels, {items[0][0].name} "
                            f"{first.Rows}x{first.Columns}")
        if not np.allclose(_floats(ds.ImageOrientationPatient), _floats(first.ImageOrientationPatient),
                           rtol=0, atol=ORIENTATION_ATOL):
            raise ScanError(f"{file}: another ImageOrientationPatient than {items[0][0].name}; "
                            "the series is not one stack of parallel slices")
        if str(ds.FrameOfReferenceUID) != str(first.FrameOfReferenceUID):
            raise ScanError(f"{file}: another FrameOfReferenceUID than {items[0][0].name}")
    normal = np.cross(*_floats(first.ImageOrientationPatient).reshape(2, 3))
    along = np.array([normal @ _floats(ds.ImagePositionPatient) for _, ds in items])
    order = np.argsort(along, kind="stable")
    _check_gaps(path, along[order])
    return DicomSeries(path, series_id, [items[i][1] for i in order], [items[i][0] for i in order])


def series_on_grid(series: DicomSeries, geometry: Geometry) -> DicomSeries:
    """``series`` with ``datasets[k]`` the file of slice k of ``geometry`` (the voxels SimpleITK read).

    Each file's ImagePositionPatient must be voxel (0, 0, k) of the grid, and its rows and columns
    the grid's x and y axes, so that frame k of a SEG overlays slice k.
    """
    if geometry.ndim != 3:
        raise ScanError(f"{series.folder}: DICOM SEG output is written for 3D series; this scan is 2D")
    first = series.datasets[0]
    size = (int(first.Columns), int(first.Rows), len(series.datasets))
    if size != tuple(geometry.size):
        raise ScanError(f"{series.folder}: {len(series.datasets)} files of {first.Columns}x{first.Rows} pixels, "
                        f"but the volume read is {'x'.join(map(str, geometry.size))} (x, y, z)")
    axes = _floats(first.ImageOrientationPatient).reshape(2, 3)
    if not np.allclose(axes, geometry.matrix[:, :2].T, rtol=0, atol=ORIENTATION_ATOL):
        raise ScanError(f"{series.folder}: ImageOrientationPatient {_fmt(axes.ravel())} is not the volume's "
                        f"row and column directions {_fmt(geometry.matrix[:, :2].T.ravel())}")
    positions = np.array([_floats(ds.ImagePositionPatient) for ds in series.datasets])
    slices, off = slice_indices(positions, geometry)
    if off.max() > POSITION_VOXEL_FRACTION or sorted(slices.tolist()) != list(range(geometry.size[2])):
        worst = int(np.argmax(off))
        index = geometry.world_to_index(positions[worst])[0]
        raise ScanError(f"{series.files[worst]}: ImagePositionPatient {_fmt(positions[worst])} is not the first "
                        f"voxel of a slice of the volume read (index {_fmt(index)})")
    order = np.argsort(slices)
    return DicomSeries(series.folder, series.series_uid, [series.datasets[i] for i in order],
                       [series.files[i] for i in order])


def slice_indices(positions: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) world points of frames' first voxels -> ((N,) nearest slice k, (N,) distance in voxels to
    voxel (0, 0, k)): a frame lies on slice k when that distance is below ``POSITION_VOXEL_FRACTION``."""
    index = geometry.world_to_index(positions)
    slices = np.rint(index[:, 2]).astype(np.int64)
    index[:, 2] -= slices
    return slices, np.abs(index).max(axis=1)


def _header(path: Path):
    """The file's header without pixel data, or None when it is not a DICOM file."""
    pydicom = pydicom_module()
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError):
        return None


def _check_gaps(folder: Path, along: np.ndarray) -> None:
    """Slice positions along the normal, sorted: equal gaps, no two slices at one position."""
    if along.size < 2:
        return
    gaps = np.diff(along)
    median = float(np.median(gaps))
    if gaps.min() <= GAP_ATOL_MM:
        raise ScanError(f"{folder}: two slices at one position ({along[int(np.argmin(gaps))]:.3f} mm along the "
                        "normal); a DICOM SEG needs one file per slice")
    if np.abs(gaps - median).max() > max(GAP_ATOL_MM, GAP_RTOL * median):
        raise ScanError(f"{folder}: slice gaps from {gaps.min():.4g} to {gaps.max():.4g} mm (missing slices or "
                        "inconsistent spacing); a DICOM SEG needs evenly spaced slices")


def _multiframe(path: Path, ds) -> str:
    return (f"{path}: a multi-frame image ({int(ds.NumberOfFrames)} frames); DICOM SEG output is written for "
            "series of single-frame images (write .nii.gz)")


def _floats(values) -> np.ndarray:
    return np.asarray([float(v) for v in values], dtype=np.float64)


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"
