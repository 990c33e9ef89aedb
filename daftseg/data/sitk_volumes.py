"""Reading medical volumes with SimpleITK (NIfTI, NRRD, MHA, DICOM series) and checking that an
image and its label volume share one voxel grid.

Axis orders: SimpleITK reports ``GetSize``/``GetSpacing``/``GetOrigin`` in (x, y, z), while
``GetArrayFromImage`` returns arrays indexed (z, y, x). ``Volume`` keeps the array as (z, y, x)
and the geometry in SimpleITK's (x, y, z) order, named ``*_xyz`` so that the two never mix.

SimpleITK is imported inside the functions: it is an optional dependency (the ``[data]`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Geometry tolerances: spacing relative, origin in fractions of the smallest voxel side
# (label files written by other tools round the origin), direction cosines absolute.
SPACING_RTOL = 1e-4
ORIGIN_VOXEL_FRACTION = 0.01
DIRECTION_ATOL = 1e-4


class GeometryError(ValueError):
    """The image and label volumes do not share one voxel grid."""


@dataclass
class Volume:
    """A scalar volume and its physical geometry.

    array: (z, y, x); spacing_xyz, origin_xyz: 3 floats in mm; direction: 9 floats (row-major
    3x3, SimpleITK's layout); modality: the DICOM Modality tag (e.g. ``CT``, ``MR``, ``PT``) when
    read from DICOM, else None.
    """

    array: np.ndarray
    spacing_xyz: tuple[float, ...]
    origin_xyz: tuple[float, ...]
    direction: tuple[float, ...]
    source: str
    modality: str | None = None

    @property
    def size_xyz(self) -> tuple[int, ...]:
        """Size in SimpleITK's (x, y, z) order."""
        return tuple(int(s) for s in self.array.shape[::-1])


def _from_sitk(image, source: str, modality: str | None = None) -> Volume:
    """SimpleITK image -> Volume; only single-component 3D images are accepted."""
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{source}: expected a scalar (single-component) image, "
                         f"got {image.GetNumberOfComponentsPerPixel()} components per voxel")
    if image.GetDimension() != 3:
        raise ValueError(f"{source}: expected a 3D volume, got {image.GetDimension()}D; "
                         "use the 'image' converter for 2D images")
    return Volume(sitk.GetArrayFromImage(image), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                  tuple(image.GetDirection()), source, modality)


def read_volume_file(path: Path) -> Volume:
    """Any file SimpleITK reads (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``, a single DICOM file...)."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return _from_sitk(sitk.ReadImage(str(path)), str(path))
    except RuntimeError as err:  # SimpleITK reports unreadable files as RuntimeError
        raise ValueError(f"SimpleITK cannot read {path}: {str(err).strip().splitlines()[-1]}") from err


def read_dicom_series(directory: Path, series_id: str | None = None) -> Volume:
    """One DICOM series from a folder, slices sorted by position (SimpleITK/GDCM).

    Args:
        series_id: the SeriesInstanceUID to read; needed only when the folder holds several.
    """
    import SimpleITK as sitk

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no such DICOM folder: {directory}")
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(directory))
    if not ids:
        raise ValueError(f"no DICOM series found in {directory}")
    if series_id is None:
        if len(ids) > 1:
            raise ValueError(f"{directory} holds {len(ids)} DICOM series; choose one with --series_id: "
                             + ", ".join(ids))
        series_id = ids[0]
    elif series_id not in ids:
        raise ValueError(f"series {series_id} not in {directory}; found: {', '.join(ids)}")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(directory), series_id)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    image = reader.Execute()
    modality = None
    if reader.HasMetaDataKey(0, "0008|0060"):
        modality = reader.GetMetaData(0, "0008|0060").strip() or None
    return _from_sitk(image, f"{directory} (series {series_id})", modality)


def read_volume(path: Path, series_id: str | None = None) -> Volume:
    """A DICOM series if ``path`` is a folder, else a single volume file."""
    path = Path(path)
    return read_dicom_series(path, series_id) if path.is_dir() else read_volume_file(path)


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


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"
