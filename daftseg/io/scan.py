"""``read_scan``: a scan as stored and as the model takes it, with its grid; ``read_label_map``.

Formats read: NIfTI (``.nii``, ``.nii.gz``), a DICOM series folder (or one ``.dcm`` file), NRRD, MHA
and whatever else SimpleITK reads; PNG/JPG/TIFF/BMP pictures (OpenCV); challenge npz (``imgs``).
Runtime layout: 3D (D, H, W) uint8 = (z, y, x); 2D (H, W, 3) uint8 RGB. Results are written back
by ``daftseg.io.results``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.io.grid import Geometry
from daftseg.io.medical import Volume, medical_format, read_volume
from daftseg.io.modality import guess_modality, scan_modality
from daftseg.io.normalise import Intensity, normalise_volume
from daftseg.io.pictures import is_picture, read_image_2d, read_mask_2d


class ScanError(ValueError):
    """A scan, label map or output path cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)  # arrays: a scan is compared by identity, not element by element
class Scan:
    """A scan read by ``read_scan``.

    image: the model input, (D, H, W) uint8 or (H, W, 3) uint8 RGB; raw: the values as stored
    (Hounsfield units for CT), (D, H, W) or (H, W) for medical formats, and for pictures and npz the
    same array as ``image`` (no copy); geometry: its voxel grid; modality: the one given, else the
    DICOM tag's, else (``modality_from_name``) the file name's, else None; rgb: a colour picture
    (``raw`` is (H, W, 3)).
    """

    image: np.ndarray
    raw: np.ndarray
    geometry: Geometry
    modality: str | None
    rgb: bool


def scan_format(path: Path) -> str:
    """``dicom`` (a folder or ``.dcm``), ``image``, ``npz``, ``nifti``, ``nrrd``, ``mha``, or ``other``
    (left to SimpleITK). Raises FileNotFoundError when nothing is at ``path``."""
    path = Path(path)
    if path.is_dir():
        return "dicom"
    if not path.is_file():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if is_picture(path):
        return "image"
    if path.name.lower().endswith(".npz"):
        return "npz"
    return medical_format(path) or "other"


def read_scan(path: str | Path, series_id: str | None = None, modality: str | None = None,
              intensity: Intensity | None = None, modality_from_name: bool = False) -> Scan:
    """Read a scan: its stored values, the model input (uint8, the runtime's layout) and its grid.

    Args:
        series_id: the DICOM SeriesInstanceUID when a folder holds several series.
        modality: CT (windowing) or anything else (percentile clipping) for medical formats; a DICOM
            series defaults to its Modality tag. Needed for medical formats under ``intensity`` auto,
            unless ``modality_from_name`` finds one.
        intensity: ``Intensity`` (mode and CT window); default auto, abdomen window.
        modality_from_name: without a modality given or tagged, take ``guess_modality`` of the file
            name (the app; a 3D scan then defaults to CT). ``daftseg-segment`` does not guess.
    """
    path = Path(path)
    intensity = intensity or Intensity()
    fmt = scan_format(path)
    if fmt in ("image", "npz"):
        image, geometry = (_read_picture(path, intensity) if fmt == "image" else _read_npz(path))
        found = _resolve(geometry, modality, path, modality_from_name)
        return Scan(image, image, geometry, found, image.ndim == 3 and geometry.ndim == 2)
    volume = read_volume(path, series_id, dims=(2, 3))
    geometry = volume.geometry(fmt if fmt != "other" else _suffix(path))
    found = _resolve(geometry, modality, path, modality_from_name)
    if found is None and intensity.mode == "auto":
        if modality_from_name:
            raise ScanError(f"{path.name}: choose a modality (CT is windowed, MR/PET percentile-clipped)")
        raise ScanError(f"{path}: give --modality (CT is windowed, MR/PET percentile-clipped to uint8)")
    image = normalise_volume(volume.array, found, intensity.mode, intensity.window)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return Scan(image, volume.array, geometry, found, False)


def _resolve(geometry: Geometry, modality: str | None, path: Path, from_name: bool) -> str | None:
    found = scan_modality(geometry, modality)
    if found is None and from_name:
        found = guess_modality(path.name, geometry.ndim == 3) or None
    return found


def _read_picture(path: Path, intensity: Intensity) -> tuple[np.ndarray, Geometry]:
    rgb = read_image_2d(path, intensity)
    return rgb, Geometry.identity(rgb.shape[1::-1], "image", str(path))


def _read_npz(path: Path) -> tuple[np.ndarray, Geometry]:
    """A challenge npz's ``imgs`` (3D when the file name starts with ``3D``, as DAFT decides).

    Its ``spacing`` is taken in the arrays' (z, y, x) order, the converters' default.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if "imgs" not in z.files:
                raise ScanError(f"{path}: no 'imgs' array (keys: {', '.join(z.files) or 'none'})")
            imgs = z["imgs"]
            spacing = z["spacing"] if "spacing" in z.files else None
    except ScanError:
        raise
    except (ValueError, OSError, EOFError) as err:
        raise ScanError(f"{path}: unreadable npz: {' '.join(str(err).split())}") from None
    if path.name.startswith("3D"):
        if imgs.ndim != 3:
            raise ScanError(f"{path}: a 3D case (name starts with '3D') needs imgs (D, H, W), got {imgs.shape}")
        sp = tuple(float(s) for s in spacing[::-1]) if spacing is not None and np.size(spacing) == 3 else None
        return imgs, Geometry.identity(imgs.shape[::-1], "npz", str(path), sp)
    if imgs.ndim == 2 or (imgs.ndim == 3 and imgs.shape[2] in (1, 3, 4)):
        from daftseg.geometry import to_rgb

        rgb = np.ascontiguousarray(to_rgb(imgs))
        return rgb, Geometry.identity(rgb.shape[1::-1], "npz", str(path))
    raise ScanError(f"{path}: a 2D case needs imgs (H, W) or (H, W, 3), got {imgs.shape} "
                    "(3D case names start with '3D')")


def read_label_map(path: str | Path, geometry: Geometry, series_id: str | None = None) -> np.ndarray:
    """A label map on ``geometry``'s grid, as integers in the runtime's spatial layout ((D, H, W) or (H, W)).

    Medical files must match the scan's size, spacing, origin and direction (as the converters
    check); pictures and npz only its size.
    """
    from daftseg.io.labels import integer_labels
    from daftseg.io.medical import check_same_geometry

    path = Path(path)
    fmt = scan_format(path)
    if fmt == "image":
        labels = read_mask_2d(path)
    elif fmt == "npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                key = next((k for k in ("gts", "segs") if k in z.files), None)
                if key is None:
                    raise ScanError(f"{path}: no 'gts' or 'segs' array (keys: {', '.join(z.files) or 'none'})")
                labels = z[key]
        except ScanError:
            raise
        except (ValueError, OSError, EOFError) as err:
            raise ScanError(f"{path}: unreadable npz: {' '.join(str(err).split())}") from None
    else:
        label = read_volume(path, series_id, dims=(2, 3))
        if label.array.ndim == geometry.ndim and geometry.source_format not in ("image", "npz"):
            check_same_geometry(Volume(np.empty(geometry.array_shape, np.uint8), geometry.spacing,
                                       geometry.origin, geometry.direction, geometry.source), label)
        labels = label.array
    if tuple(labels.shape) != geometry.array_shape:
        raise ScanError(f"label map {path} has shape {tuple(labels.shape)} but the scan {geometry.source} "
                        f"has {geometry.array_shape}")
    return integer_labels(labels, str(path))


def scan_stem(path: Path) -> str:
    """File name without its format ending; a folder's own name."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".npz", ".png", ".jpg", ".jpeg",
                   ".tif", ".tiff", ".bmp"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _suffix(path: Path) -> str:
    return Path(path).suffix.lower().lstrip(".") or "unknown"
