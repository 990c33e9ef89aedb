"""Small synthetic scans written by the tests: NIfTI/NRRD/MHA volumes and DICOM series (SimpleITK)."""

from __future__ import annotations

import locale
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SPACING_XYZ = (0.7, 0.8, 2.5)  # anisotropic, so a swapped order shows
ORIGIN_XYZ = (10.0, -20.0, 30.0)


def rotation(z_deg: float = 30.0, x_deg: float = 20.0) -> tuple[float, ...]:
    """A proper rotation (det +1) about z then x, row-major: a non-identity direction."""
    tz, tx = np.deg2rad(z_deg), np.deg2rad(x_deg)
    rz = np.array([[np.cos(tz), -np.sin(tz), 0], [np.sin(tz), np.cos(tz), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(tx), -np.sin(tx)], [0, np.sin(tx), np.cos(tx)]])
    return tuple((rz @ rx).ravel().tolist())


ROTATED = rotation()  # the non-identity direction the I/O, segment and app tests write scans with


def sitk_image(array: np.ndarray, spacing=SPACING_XYZ, origin=ORIGIN_XYZ, direction=None):
    """(z, y, x) array -> SimpleITK image with the given geometry."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def write_volume(path: Path, array: np.ndarray, **geometry) -> Path:
    sitk.WriteImage(sitk_image(array, **geometry), str(path))
    return Path(path)


def write_dicom_series(folder: Path, array: np.ndarray, modality: str = "CT", direction=None,
                       uid: str = "1.2.826.0.1.3680043.2.1125.1.424242") -> Path:
    """One DICOM file per slice with the tags GDCM needs to sort and group them.

    The volume's geometry is ``SPACING_XYZ``, ``ORIGIN_XYZ`` and ``direction`` (default identity):
    each slice carries ImagePositionPatient and ImageOrientationPatient (the direction's first two
    columns), from which the reader rebuilds the 3D grid, and the FrameOfReferenceUID that a DICOM
    SEG referencing the series must repeat. GDCM's writer leaves the process locale at
    "C" (Python's text I/O then defaults to ASCII for every later test), so the locale is restored.
    """
    saved = locale.setlocale(locale.LC_ALL)
    try:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)  # a second call adds a second series
        volume = sitk_image(array, direction=direction)
        d = np.asarray(volume.GetDirection()).reshape(3, 3)
        orientation = [d[0, 0], d[1, 0], d[2, 0], d[0, 1], d[1, 1], d[2, 1]]
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for z in range(array.shape[0]):
            s = sitk.GetImageFromArray(array[z])
            s.SetSpacing(SPACING_XYZ[:2])
            tags = {"0008|0060": modality, "0020|000e": uid, "0020|000d": uid + ".1",
                    "0020|0032": "\\".join(str(v) for v in volume.TransformIndexToPhysicalPoint((0, 0, z))),
                    "0020|0037": "\\".join(str(v) for v in orientation), "0020|0013": str(z + 1),
                    "0018|0050": str(SPACING_XYZ[2]), "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
                    "0008|0018": f"{uid}.2.{z + 1}", "0020|0052": f"{uid}.3"}
            for key, value in tags.items():
                s.SetMetaData(key, value)
            writer.SetFileName(str(folder / f"{uid.rsplit('.', 1)[-1]}_{z:03d}.dcm"))
            writer.Execute(s)
        return folder
    finally:
        locale.setlocale(locale.LC_ALL, saved)
