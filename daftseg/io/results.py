"""Results written back next to the scan: the label map, its sidecar JSON and its boxes JSON.

Formats (by the output name): ``.nii.gz``/``.nii``/``.nrrd``/``.mha`` with the scan's spacing, origin
and direction (the label map overlays the scan voxel for voxel in a viewer), ``.png`` for 2D,
``.npz`` (``segs``, uint16 as DAFT), and ``.dcm`` for a scan read from a DICOM series: a DICOM
Segmentation that references the series' instances (``daftseg.io.dicom_seg``; other scans have no
instances to reference, so ``.dcm`` is refused for them).

A result is three files named after the WHOLE output name (``result_paths``), so that two label
maps in one folder (``seg.nii.gz`` and ``seg.png``) never share a sidecar:

    seg.nii.gz             the label map
    seg.nii.gz.json        the sidecar: scan, modality, model, boxes with label values, names and
                           voxel counts, the grid, the version
    seg.nii.gz.boxes.json  the boxes as ``daftseg-segment --boxes`` reads them (voxel space), so
                           that ``daftseg-segment --boxes seg.nii.gz.boxes.json`` repeats the run

``write_result`` writes the three together (all or none, ``daftseg.atomic``); ``write_labels``
writes a label map alone.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.atomic import atomic_paths
from daftseg.io.dicom_series import DicomSeries, series_on_grid
from daftseg.io.grid import Geometry
from daftseg.io.medical import LABEL_WRITERS, write_label_image
from daftseg.io.pictures import write_png_labels
from daftseg.io.scan import ScanError, scan_stem

LABEL_SUFFIXES = (*LABEL_WRITERS, ".png", ".npz", ".dcm")
MAX_LABEL = 65535  # label values fit uint16, the dtype of DAFT's segs
SIDECAR_SUFFIX = ".json"
BOXES_SUFFIX = ".boxes.json"


class OutputExists(ScanError):
    """Some of a result's files exist and replacing them was not asked for; ``paths`` lists them."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        names = ", ".join(str(p) for p in self.paths)
        one = len(self.paths) == 1
        super().__init__(f"{names} already exist{'s' if one else ''} "
                         f"(pass --overwrite to replace {'it' if one else 'them'})")


@dataclass(frozen=True)
class ResultPaths:
    """The three files of one result; iterates as (labels, sidecar, boxes)."""

    labels: Path
    sidecar: Path
    boxes: Path

    def __iter__(self) -> Iterator[Path]:
        return iter((self.labels, self.sidecar, self.boxes))


@dataclass(frozen=True)
class ResultBox:
    """One box as a result records it: voxel indices (challenge layout), its label value, its name,
    and, when it was given in millimetres, the world box as given."""

    box: tuple[int, ...]
    label: int
    name: str | None = None
    world_mm: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ResultInfo:
    """How the labels were made: the scan as the user named it, its modality, the model that ran,
    the space the boxes were given in (``voxel``/``world``), where they came from (``boxes`` or
    ``boxes_from``, a label map) and whether each 3D box's z_max slice was segmented."""

    image: str
    modality: str | None
    model: str
    box_space: str = "voxel"
    box_source: str = "boxes"
    zmax_inclusive: bool = False


def result_paths(output: str | Path) -> ResultPaths:
    """``seg.nii.gz`` -> (``seg.nii.gz``, ``seg.nii.gz.json``, ``seg.nii.gz.boxes.json``)."""
    output = Path(output)
    return ResultPaths(output, output.with_name(output.name + SIDECAR_SUFFIX),
                       output.with_name(output.name + BOXES_SUFFIX))


def default_output(path: Path, geometry: Geometry) -> Path:
    """``<stem>_seg`` + the scan's own format (NIfTI for DICOM and other formats, PNG for pictures)."""
    ext = {"nifti": ".nii.gz", "nrrd": ".nrrd", "mha": ".mha", "image": ".png", "npz": ".npz"}
    suffix = ext.get(geometry.source_format, ".nii.gz")
    if Path(path).name.lower().endswith(".nii"):
        suffix = ".nii"
    return Path(f"{scan_stem(path)}_seg{suffix}")


def label_suffix(path: str | Path, geometry: Geometry | None = None) -> str:
    """The output format of ``path`` (its suffix), or a ScanError saying why it cannot hold these labels
    (without ``geometry``, only whether the format is one that labels are written in)."""
    name = Path(path).name.lower()
    suffix = next((s for s in LABEL_SUFFIXES if name.endswith(s)), None)
    if suffix is None:
        if name.endswith(".mhd"):
            raise ScanError(f"{path}: .mhd writes two files; use .mha (one file)")
        raise ScanError(f"{path}: unsupported label format; use one of {', '.join(LABEL_SUFFIXES)}")
    if suffix == ".png" and geometry is not None and geometry.ndim != 2:
        raise ScanError(f"{path}: PNG holds 2D label maps only; this scan is 3D (use .nii.gz)")
    if suffix == ".dcm" and geometry is not None:
        if geometry.source_format != "dicom":
            raise ScanError(f"{path}: DICOM SEG output references the scan's DICOM instances, and this scan is "
                            f"{geometry.source_format}, not a DICOM series; write .nii.gz")
        if geometry.ndim != 3:
            raise ScanError(f"{path}: DICOM SEG output is written for 3D DICOM series; this scan is 2D (use .png)")
    return suffix


def check_outputs(paths: Sequence[Path], inputs: Sequence[str | Path] = (), overwrite: bool = False) -> None:
    """Refuse outputs that are (or lie inside) an input, are folders, sit in a folder that cannot be
    written, or exist without ``overwrite`` (``OutputExists``, naming every existing one)."""
    sources = [Path(p) for p in inputs]
    existing = []
    for target in map(Path, paths):
        for source in sources:
            if target.resolve() == source.resolve():
                raise ScanError(f"output {target} is the input {source}; choose another output name")
            if source.is_dir() and source.resolve() in target.resolve().parents:
                raise ScanError(f"output {target} lies inside the input folder {source}; choose another output name")
        if target.is_dir():
            raise ScanError(f"{target} is a folder")
        if target.exists() or target.is_symlink():
            existing.append(target)
        folder = target.resolve().parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir():
            raise ScanError(f"cannot write {target}: {folder} is not a folder")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ScanError(f"cannot write {target}: folder {folder} is not writable")
    if existing and not overwrite:
        raise OutputExists(existing)


def write_labels(labels: np.ndarray, geometry: Geometry, path: str | Path) -> Path:
    """Write a label map alone on ``geometry``'s grid, atomically; returns ``path``.

    Args:
        labels: (D, H, W) or (H, W) non-negative integers up to 65535, in the runtime's layout.
        path: the output; its ending chooses the format (see the module docstring); not ``.dcm``,
            whose segments need the boxes and the model (``write_result``).
    """
    path = Path(path)
    suffix = _checked_labels(labels, geometry, path)
    if suffix == ".dcm":
        raise ScanError(f"{path}: a DICOM SEG is written with its boxes and model (write_result)")
    with atomic_paths([path]) as (temp,):
        _write_label_file(np.asarray(labels), geometry, temp, suffix)
    return path


def write_result(labels: np.ndarray, geometry: Geometry, output: str | Path, boxes: Sequence[ResultBox],
                 info: ResultInfo, *, voxels: Sequence[int] | None = None, overwrite: bool = False,
                 inputs: Sequence[str | Path] = (), dicom_source: DicomSeries | None = None) -> ResultPaths:
    """Write the label map, its sidecar and its boxes JSON in one atomic step (all three or none).

    Args:
        labels: (D, H, W) or (H, W) label values 0..65535 on ``geometry``'s grid.
        output: the label map's path; its ending chooses the format; the other two are named after
            it (``result_paths``).
        boxes: the prompts in order, as painted (a later box overwrites an earlier one).
        voxels: (N,) voxels each box painted that no later box overwrote (``daftseg-segment``
            knows them); default: the voxels of each box's label value in ``labels``.
        overwrite: replace files of an earlier result; without it existing files are refused
            (``OutputExists``) and nothing is written.
        inputs: files and folders read for this result (the scan, a boxes file); never written.
        dicom_source: for a ``.dcm`` output, the scan's series (``dicom_series.source_series``); its
            instances are matched to the grid's slices here.
    """
    paths = result_paths(output)
    suffix = _checked_labels(labels, geometry, paths.labels)
    check_outputs(list(paths), inputs, overwrite)
    if suffix == ".dcm":
        if dicom_source is None:
            raise ValueError("a DICOM SEG output needs the scan's series (dicom_source)")
        dicom_source = series_on_grid(dicom_source, geometry)
    labels = np.asarray(labels)
    if voxels is None:
        counts = value_counts(labels, max((b.label for b in boxes), default=0) + 1)
        voxels = [int(counts[b.label]) for b in boxes]
    elif len(voxels) != len(boxes):
        raise ValueError(f"{len(voxels)} voxel counts for {len(boxes)} boxes")
    sidecar = _sidecar(paths, geometry, boxes, info, voxels)
    box_list = {"boxes": [{"box": [int(v) for v in b.box], "label": int(b.label), "name": b.name} for b in boxes]}
    with atomic_paths(list(paths)) as (label_temp, sidecar_temp, boxes_temp):
        if suffix == ".dcm":
            from daftseg.io.dicom_seg import write_seg

            write_seg(labels, dicom_source, boxes, info.model, label_temp)
        else:
            _write_label_file(labels, geometry, label_temp, suffix)
        sidecar_temp.write_text(_json_text(sidecar), encoding="utf-8")
        boxes_temp.write_text(_json_text(box_list), encoding="utf-8")
    return paths


def value_counts(values: np.ndarray, n: int) -> np.ndarray:
    """(n,) voxels of each value 0..n-1, counted a block at a time: ``np.bincount`` converts its input
    to int64, and for a whole CT that is a 250 MB copy whose page faults took seconds on a busy machine."""
    counts = np.zeros(n, np.int64)
    flat = np.asarray(values).reshape(-1)
    for start in range(0, flat.size, 1 << 20):
        counts += np.bincount(flat[start:start + (1 << 20)], minlength=n)[:n]
    return counts


def _sidecar(paths: ResultPaths, geometry: Geometry, boxes: Sequence[ResultBox], info: ResultInfo,
             voxels: Sequence[int]) -> dict:
    from daftseg import __version__

    entries = []
    for box, count in zip(boxes, voxels, strict=True):
        entry = {"label": int(box.label), "name": box.name, "box_voxel": [int(v) for v in box.box],
                 "voxels": int(count)}
        if box.world_mm is not None:
            entry["box_world_mm"] = [float(v) for v in box.world_mm]
        entries.append(entry)
    return {"labels_file": paths.labels.name, "image": info.image, "modality": info.modality, "model": info.model,
            "box_space": info.box_space, "box_source": info.box_source, "boxes": entries,
            "geometry": geometry.to_dict(), "zmax_inclusive": bool(info.zmax_inclusive),
            "daftseg_version": __version__, "boxes_file": paths.boxes.name}


def _checked_labels(labels: np.ndarray, geometry: Geometry, path: Path) -> str:
    """The output's suffix, after checking that ``labels`` fit the grid and the label range."""
    suffix = label_suffix(path, geometry)
    labels = np.asarray(labels)
    if tuple(labels.shape) != geometry.array_shape:
        raise ScanError(f"label map shape {labels.shape} does not match the scan's {geometry.array_shape}")
    if (labels.size and labels.min() < 0) or int(labels.max(initial=0)) > MAX_LABEL:
        raise ScanError(f"label values must lie in 0..{MAX_LABEL}")
    return suffix


def _write_label_file(labels: np.ndarray, geometry: Geometry, temp: Path, suffix: str) -> None:
    if suffix == ".png":
        write_png_labels(labels, temp)
    elif suffix == ".npz":
        np.savez_compressed(temp, segs=labels.astype(np.uint16))
    else:
        top = int(labels.max(initial=0))
        write_label_image(labels.astype(np.uint8 if top <= 255 else np.uint16), geometry, temp, suffix)


def _json_text(data: dict) -> str:
    """Indented JSON with lists of numbers kept on one line (boxes stay readable)."""
    text = json.dumps(data, indent=2)
    return re.sub(r"\[\s+([-+.,\deE\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text) + "\n"
