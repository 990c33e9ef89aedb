"""Medical formats through SimpleITK: NIfTI, NRRD, MHA (any file SimpleITK reads) and DICOM series.

Axis orders: SimpleITK reports ``GetSize``/``GetSpacing``/``GetOrigin`` in (x, y, z), while
``GetArrayFromImage`` returns arrays indexed (z, y, x). ``Volume`` keeps the array as (z, y, x)
and the geometry in SimpleITK's (x, y, z) order, named ``*_xyz`` so that the two never mix.

SimpleITK is imported inside the functions: it is an optional dependency (the ``[data]`` extra),
and reading PNG or npz scans must not need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.io.grid import Geometry

# Geometry tolerances: spacing relative, origin in fractions of the smallest voxel side
# (label files written by other tools round the origin), direction cosines absolute.
SPACING_RTOL = 1e-4
ORIGIN_VOXEL_FRACTION = 0.01
DIRECTION_ATOL = 1e-4

# file name endings -> the format name used in messages and in Geometry.source_format
SITK_SUFFIXES = {".nii.gz": "nifti", ".nii": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "mha",
                 ".mhd": "mha", ".dcm": "dicom"}
# formats a label map is written in, and the SimpleITK ImageIO that writes each
LABEL_WRITERS = {".nii.gz": "NiftiImageIO", ".nii": "NiftiImageIO", ".nrrd": "NrrdImageIO", ".mha": "MetaImageIO"}


class GeometryError(ValueError):
    """The image and label volumes do not share one voxel grid."""


@dataclass
class Volume:
    """A scalar image and its physical geometry, as read (no intensity change).

    array: (z, y, x) for 3D, (y, x) for 2D; spacing_xyz, origin_xyz: floats in mm per index axis;
    direction: row-major cosines (SimpleITK's layout); modality: the DICOM Modality tag (e.g. ``CT``,
    ``MR``, ``PT``) when read from DICOM, else None; series_uid: the DICOM SeriesInstanceUID.
    """

    array: np.ndarray
    spacing_xyz: tuple[float, ...]
    origin_xyz: tuple[float, ...]
    direction: tuple[float, ...]
    source: str
    modality: str | None = None
    series_uid: str | None = None

    @property
    def size_xyz(self) -> tuple[int, ...]:
        """Size in SimpleITK's (x, y, z) order."""
        return tuple(int(s) for s in self.array.shape[::-1])

    def geometry(self, source_format: str) -> Geometry:
        """The ``Geometry`` of this volume's grid."""
        ndim = self.array.ndim
        return Geometry(self.size_xyz, tuple(map(float, self.spacing_xyz)), tuple(map(float, self.origin_xyz)),
                        tuple(map(float, self.direction)), "zyx" if ndim == 3 else "yx", source_format,
                        self.series_uid, self.modality, self.source)


def sitk_module():
    """SimpleITK, or an ImportError that says how to get it."""
    try:
        import SimpleITK
    except ImportError:
        raise ImportError("reading and writing NIfTI, NRRD, MHA and DICOM needs SimpleITK: "
                          "pip install 'daftseg[data]' (or SimpleITK)") from None
    return SimpleITK


def medical_format(path: Path) -> str | None:
    """``nifti``/``nrrd``/``mha``/``dicom`` from the file name, or None for other names."""
    name = Path(path).name.lower()
    for suffix, fmt in SITK_SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def _from_sitk(image, source: str, dims: tuple[int, ...], modality: str | None = None,
               series_uid: str | None = None) -> Volume:
    """SimpleITK image -> Volume; only single-component images of a dimension in ``dims``."""
    sitk = sitk_module()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{source}: expected a scalar (single-component) image, "
                         f"got {image.GetNumberOfComponentsPerPixel()} components per voxel")
    if image.GetDimension() not in dims:
        if dims == (3,):
            raise ValueError(f"{source}: expected a 3D volume, got {image.GetDimension()}D; "
                             "use the 'image' converter for 2D images")
        raise ValueError(f"{source}: expected a 2D or 3D image, got {image.GetDimension()}D")
    return Volume(sitk.GetArrayFromImage(image), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                  tuple(image.GetDirection()), source, modality, series_uid)


def read_volume_file(path: Path, dims: tuple[int, ...] = (3,)) -> Volume:
    """Any file SimpleITK reads (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, a single DICOM file...).

    Args:
        dims: the image dimensions accepted (3D only by default, as the converters need).
    """
    sitk = sitk_module()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:  # SimpleITK reports unreadable files as RuntimeError
        raise ValueError(f"SimpleITK cannot read {path}: {_last_line(err)}") from err
    return _from_sitk(image, str(path), dims)


def dicom_series_ids(directory: Path) -> list[str]:
    """SeriesInstanceUIDs of the DICOM series in ``directory`` (GDCM's order)."""
    sitk = sitk_module()
    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(directory)))


def read_dicom_series(directory: Path, series_id: str | None = None, dims: tuple[int, ...] = (3,)) -> Volume:
    """One DICOM series from a folder, slices sorted by position (SimpleITK/GDCM).

    Args:
        series_id: the SeriesInstanceUID to read; needed only when the folder holds several.
    """
    sitk = sitk_module()
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such DICOM folder: {directory}")
    ids = dicom_series_ids(directory)
    if not ids:
        raise ValueError(f"no DICOM series found in {directory}")
    if series_id is None:
        if len(ids) > 1:
            listing = ", ".join(
                f"{uid} ({len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(directory), uid))} files)"
                for uid in ids)
            raise ValueError(f"{directory} holds {len(ids)} DICOM series; choose one with --series_id: {listing}")
        series_id = ids[0]
    elif series_id not in ids:
        raise ValueError(f"series {series_id} not in {directory}; found: {', '.join(ids)}")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(directory), series_id)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise ValueError(f"SimpleITK cannot read DICOM series {series_id} in {directory}: {_last_line(err)}") from err
    modality = None
    if reader.HasMetaDataKey(0, "0008|0060"):
        modality = reader.GetMetaData(0, "0008|0060").strip() or None
    return _from_sitk(image, f"{directory} (series {series_id})", dims, modality, series_id)


def read_volume(path: Path, series_id: str | None = None, dims: tuple[int, ...] = (3,)) -> Volume:
    """A DICOM series if ``path`` is a folder, else a single image file."""
    path = Path(path)
    return read_dicom_series(path, series_id, dims) if path.is_dir() else read_volume_file(path, dims)


def check_same_geometry(image: Volume, label: Volume) -> None:
    """Raise GeometryError naming every mismatch of size, spacing, origin and direction.

    Sizes must be equal; spacing within a relative 1e-4; origins within 1% of the smallest
    voxel side; direction cosines within 1e-4.
    """
    problems = []
    if image.size_xyz != label.size_xyz:
        problems.append(f"size (x, y, z): image {image.size_xyz} vs label {label.size_xyz}")
    if not np.allclose(image.spacing_xyz, label.spacing_xyz, rtol=SPACING_RTOL, atol=0):
        problems.append(f"spacing (x, y, z) mm: image {_fmt(image.spacing_xyz)} vs label {_fmt(label.spacing_xyz)}")
    origin_atol = ORIGIN_VOXEL_FRACTION * min(image.spacing_xyz)
    if not np.allclose(image.origin_xyz, label.origin_xyz, rtol=0, atol=origin_atol):
        problems.append(f"origin (x, y, z) mm: image {_fmt(image.origin_xyz)} vs label {_fmt(label.origin_xyz)}")
    if not np.allclose(image.direction, label.direction, rtol=0, atol=DIRECTION_ATOL):
        problems.append(f"direction: image {_fmt(image.direction)} vs label {_fmt(label.direction)}")
    if problems:
        raise GeometryError(f"image {image.source} and label {label.source} are not on the same voxel grid:\n  "
                            + "\n  ".join(problems)
                            + "\nResample the label onto the image (e.g. SimpleITK Resample with "
                              "nearest-neighbour interpolation) or fix the header.")


def label_image(labels: np.ndarray, geometry: Geometry):
    """A SimpleITK image of ``labels`` ((D, H, W) or (H, W)) on ``geometry``'s grid."""
    sitk = sitk_module()
    if tuple(labels.shape) != geometry.array_shape:
        raise ValueError(f"label map shape {labels.shape} does not match the scan's {geometry.array_shape}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    return image


def write_label_image(labels: np.ndarray, geometry: Geometry, path: Path, suffix: str) -> None:
    """Write ``labels`` with ``geometry`` to ``path`` (a temporary path whose name ends in ``suffix``).

    The ImageIO is chosen from ``suffix`` explicitly, so the written format never depends on a guess.
    """
    sitk = sitk_module()
    writer = sitk.ImageFileWriter()
    writer.SetImageIO(LABEL_WRITERS[suffix])
    writer.SetFileName(str(path))
    writer.SetUseCompression(suffix != ".nii")
    try:
        writer.Execute(label_image(labels, geometry))
    except RuntimeError as err:
        raise OSError(f"SimpleITK cannot write {path.name}: {_last_line(err)}") from err


def _last_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"
