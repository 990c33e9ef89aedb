"""``daftseg-segment``: one scan and its boxes -> a label map on the scan's own grid.

    daftseg-segment --image ct.nii.gz --boxes boxes.json --modality CT -o ct_seg.nii.gz
    daftseg-segment --image dicom_dir/ --box 100,120,30,180,200,60 -o seg.nii.gz
    daftseg-segment --image dicom_dir/ --boxes boxes.json -o seg.dcm      # DICOM SEG of the series
    daftseg-segment --image photo.png --box 10,20,200,180 --modality Dermoscopy -o photo_seg.png
    python -m daftseg.segment --help

The scan is read by ``daftseg.io`` (intensities exactly as the converters make them), segmented by
``Segmenter`` with the model the batch script would route it to, and the label map is written with
the scan's spacing, origin and direction, next to a JSON sidecar that records the boxes, their
label values and names, the model and the geometry, and the boxes file that repeats the run
(``daftseg.io.results``). The result equals converting the scan to a challenge npz, running
``PerfectMetaOpenVINO.py`` and putting ``segs`` back on the grid.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.inference.options import add_precision_arguments
from daftseg.inference.routing import is_plain_model_name, scan_case_name
from daftseg.io.modality import MODALITIES_3D
from daftseg.io.normalise import add_intensity_arguments, intensity_from_args
from daftseg.manifest import add_manifest_arguments

BOX_CONVENTION = """\
boxes:
  2D: x_min,y_min,x_max,y_max        3D: x_min,y_min,z_min,x_max,y_max,z_max
  voxel space (default): 0-based voxel indices of the scan as stored in its file, the index that
    3D Slicer shows as IJK and SimpleITK as (i, j, k): x = column, y = row, z = slice. In the
    runtime's (D, H, W) array voxel (x, y, z) is array[z, y, x]. x and y ranges are inclusive; in z,
    DAFT segments slices z_min..z_max-1 (--zmax_inclusive adds z_max), so a 3D box needs
    z_max > z_min. Values must be whole numbers inside the scan.
  world space (--box_space world): millimetres in LPS patient coordinates (DICOM/ITK; 3D Slicer
    shows RAS: negate its x and y). Each corner goes to the nearest voxel, through the scan's
    spacing, origin and direction; on a rotated grid the box becomes the voxel box around its corners.
  --boxes FILE: JSON, a list of boxes or {"boxes": [...]}, each a list of numbers or
    {"box": [...], "label": 3, "name": "liver"}; or CSV, rows of numbers or a header row
    x_min,y_min[,z_min],x_max,y_max[,z_max][,label][,name].
  Box k (1-based) paints its mask with its label value (default k); a later box overwrites an
  earlier one where they overlap, as in the batch script. Labels and names go into a JSON
  sidecar next to the label map (seg.nii.gz -> seg.nii.gz.json), and the voxel boxes into
  seg.nii.gz.boxes.json, which --boxes reads to repeat the run.
output: the ending of -o chooses the format: .nii.gz/.nii/.nrrd/.mha (with the scan's geometry),
  .png (2D), .npz (segs), .dcm (a DICOM Segmentation referencing the scan's DICOM series; a DICOM
  series folder only). A DICOM series defaults to NIfTI. --boxes_from reads a label map on the scan's
  grid or a DICOM SEG of the same series (one box per segment). Existing outputs
  (any of the three files) are kept unless --overwrite; an input is never overwritten. Exit code 0 on success, 1 on any error
  (one line on stderr; nothing is written)."""


class SegmentError(ValueError):
    """A problem with the command's inputs or output; printed as one line."""


@dataclass
class Prepared:
    """Everything checked before a model is loaded."""

    image: np.ndarray
    geometry: object  # daftseg.io.Geometry
    modality: str | None
    boxes: np.ndarray  # (N, 4|6) int64 voxel indices
    labels: np.ndarray  # (N,) label values
    names: list[str | None]
    world_boxes: list[list[float]] | None
    route_name: str
    output: Path
    read_seconds: float
    dicom: object | None = None  # daftseg.io.dicom_series.DicomSeries of a .dcm output


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="daftseg-segment",
        description="Segment one scan (NIfTI, DICOM series folder, NRRD/MHA, PNG/JPG/TIFF/BMP, or a challenge "
                    "npz) with box prompts, and write the label map on the scan's own grid.",
        epilog=BOX_CONVENTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", type=Path,
                   help="the scan: a file, or a folder holding a DICOM series (required unless --manifest)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--boxes", type=Path, metavar="FILE", help="boxes from a JSON or CSV file (see below)")
    src.add_argument("--box", action="append", metavar="X0,Y0[,Z0],X1,Y1[,Z1]",
                     help="one box; repeat for more (label values 1, 2, ... in order). A box starting "
                          "with '-' needs --box=...")
    src.add_argument("--boxes_from", type=Path, metavar="LABELFILE",
                     help="one box per label value of a label map on the scan's grid, as the converters "
                          "derive them; each mask gets that label value back (re-segment a segmentation); "
                          "or one box per segment of a DICOM SEG of the same series (label = segment number)")
    p.add_argument("--box_space", choices=("voxel", "world"), default="voxel",
                   help="voxel indices (default) or world millimetres (LPS) for --boxes/--box")
    p.add_argument("--modality", default=None,
                   help="CT, MR or PET for 3D scans (CT is windowed, MR/PET percentile-clipped; a DICOM "
                        "series defaults to its Modality tag); for 2D images the challenge modality "
                        "(X-Ray, US, Fundus, Endoscopy, Dermoscopy, Microscope, Mammography, OCT...). "
                        "It chooses the model through the routing table, as the batch script's case name does")
    p.add_argument("--model", default=None,
                   help="run this model (<models_dir>/<MODEL>_image_encoder.xml...) instead of the routed one")
    p.add_argument("-m", "--models_dir", default="openvinomodels", help="OpenVINO IR folder (default %(default)s)")
    p.add_argument("--routing", default=None, metavar="FILE|93f1e55|916bd4e",
                   help="routing table: a TOML file or a shipped table's name (default: $DAFTSEG_ROUTING, else 93f1e55's)")
    add_precision_arguments(p)
    p.add_argument("--threads", type=int, default=0, help="OpenVINO inference threads (0: all cores)")
    p.add_argument("--cache_dir", default=None,
                   help="compiled-model cache folder (default: the batch script's, openvinocache; '' disables)")
    p.add_argument("--zmax_inclusive", action="store_true",
                   help="3D: segment each box's z_max slice too (DAFT stops at z_max-1; differs from the batch default)")
    p.add_argument("--series_id", default=None,
                   help="SeriesInstanceUID of the series to read when the DICOM folder holds several")
    add_intensity_arguments(p)
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="label map to write (default <scan name>_seg.<scan's format> in the current folder; "
                        "NIfTI for DICOM); <OUTPUT>.json (sidecar) and <OUTPUT>.boxes.json (boxes) are "
                        "written next to it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (never the input)")
    add_manifest_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command; 0 when the label map is written, 1 on any error (one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.manifest is not None:
        from daftseg.manifest import run_manifest

        return run_manifest(args, parser)
    if args.image is None or (args.boxes, args.box, args.boxes_from) == (None, None, None):
        parser.error("--image and one of --boxes, --box, --boxes_from are required (or --manifest)")
    if args.threads < 0:
        print("error: --threads must be >= 0", file=sys.stderr)
        return 1
    try:
        prepared = prepare(args)
        result, seconds = run_model(args, prepared)
        t0 = time.perf_counter()
        written = save_result(args, prepared, result)
        write_seconds = time.perf_counter() - t0
    except Exception as err:  # noqa: BLE001 - every failure is one line and exit code 1
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1
    g = prepared.geometry
    shape = "x".join(str(s) for s in prepared.image.shape)
    spacing = "" if g.source_format in ("image", "npz") else (
        f", spacing ({'x,y,z' if g.ndim == 3 else 'x,y'}) {', '.join(f'{s:g}' for s in g.spacing)} mm")
    print(f"{args.image}: {g.source_format}{f' {prepared.modality}' if prepared.modality else ''} {shape} "
          f"({'D,H,W' if g.ndim == 3 else 'H,W,3'}){spacing}, read in {prepared.read_seconds:.2f}s")
    print(f"{len(prepared.boxes)} box{'es' if len(prepared.boxes) != 1 else ''} ({args.box_space} space) -> "
          f"model {result.model}, {result.slices} slice{'s' if result.slices != 1 else ''} segmented "
          f"in {seconds:.2f}s")
    values = np.unique(np.asarray(prepared.labels))
    print(f"wrote {written.labels} (labels {', '.join(str(v) for v in values[:12])}"
          f"{', ...' if values.size > 12 else ''} on the scan's grid), {written.sidecar} and {written.boxes} "
          f"in {write_seconds:.2f}s")
    return 0


def prepare(args: argparse.Namespace) -> Prepared:
    """Read the scan and the boxes and check the output, before any model is loaded."""
    from daftseg.io.prompts import label_values, parse_box_text, read_box_file, voxel_boxes
    from daftseg.io.results import default_output, label_suffix
    from daftseg.io.scan import read_scan, scan_format

    fmt = scan_format(args.image)
    intensity = intensity_from_args(args)
    if args.modality is not None and not args.modality.strip():
        raise SegmentError("--modality is empty")
    dicom = None
    if args.output is not None:  # before the read: a refused output costs nothing
        if label_suffix(args.output) == ".dcm" and fmt == "dicom":
            from daftseg.io.dicom_series import source_series

            # the headers first: a gap or a multi-frame file is refused before SimpleITK reads (and warns)
            dicom = source_series(args.image, args.series_id)
        _check_output(args.output, args)
    t0 = time.perf_counter()
    scan = read_scan(args.image, args.series_id, args.modality, intensity)
    read_seconds = time.perf_counter() - t0
    image, geometry, modality = scan.image, scan.geometry, scan.modality
    del scan  # the stored values are not needed here: their memory (a CT's worth) is freed before the model loads
    is_3d = geometry.ndim == 3
    if is_3d and fmt != "npz" and modality not in MODALITIES_3D and intensity.mode == "auto":
        raise SegmentError(f"{args.image}: 3D scans need --modality CT, MR or PET (got {modality!r})")

    output = Path(args.output) if args.output is not None else default_output(args.image, geometry)
    label_suffix(output, geometry)
    if args.output is None:
        _check_output(output, args)
    if dicom is not None:
        from daftseg.io.dicom_series import series_on_grid

        series_on_grid(dicom, geometry)  # before the model runs: the instances must be the slices read

    world = None
    if args.boxes_from is not None:
        boxes, values, names = _boxes_from(args.boxes_from, geometry)
    else:
        if args.boxes is not None:
            given = read_box_file(args.boxes)
        else:
            given = [parse_box_text(text, f"--box {text}") for text in args.box]
        boxes = voxel_boxes(given, geometry, args.box_space, args.zmax_inclusive)
        values, names = label_values(given), [b.name for b in given]
        if args.box_space == "world":
            world = [list(b.coords) for b in given]
    if fmt == "npz":
        route_name = Path(args.image).name  # a challenge case routes by its own name, as in the batch
    else:
        route_name = scan_case_name(is_3d, modality)
    return Prepared(image, geometry, modality, boxes, values, names, world, route_name, output, read_seconds, dicom)


def _boxes_from(path: Path, geometry) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """One box per label value of a label map, or per segment of a DICOM SEG (named by its segment label)."""
    from daftseg.io.labels import object_boxes
    from daftseg.io.scan import read_label_map

    if path.name.lower().endswith(".dcm") and path.is_file():
        from daftseg.io.dicom_seg import is_seg_file, seg_boxes

        if is_seg_file(path):
            return seg_boxes(path, geometry)
    boxes, values = object_boxes(read_label_map(path, geometry), str(path))
    if values.max() > 65535:
        raise SegmentError(f"{path}: label values above 65535")
    return boxes, values, [None] * len(boxes)


def run_model(args: argparse.Namespace, prepared: Prepared, segmenter=None):
    """Segment with the routed (or ``--model``) model; returns (CaseResult, seconds).

    segmenter: one made from ``args`` already (``--manifest`` keeps one per process); default: a new one.
    """
    from daftseg.inference.npz_io import make_case

    if not Path(args.models_dir).is_dir():
        raise SegmentError(f"models folder {args.models_dir} not found (pass -m FOLDER)")
    t0 = time.perf_counter()
    segmenter = segmenter or make_segmenter(args)
    model = args.model
    if model is not None:
        if not is_plain_model_name(model):
            raise SegmentError(f"--model {model!r}: a model name has letters, digits, '_', '-' and '.' only")
        if not segmenter.sessions.available(model):
            raise SegmentError(f"model {model} has no files in {args.models_dir} "
                               f"(expected {model}_image_encoder.xml and {model}_mask_decoder.xml)")
    else:
        route = segmenter.route(prepared.route_name, warn=False)
        model = route.model  # what the batch script runs for this name; our note replaces its warning
        if route.fell_back:
            why = (f"no model files for {route.routed}" if route.routed else
                   f"no routing rule matches modality {prepared.modality!r}")
            print(f"note: {why}; using the fallback model {route.model}", file=sys.stderr)
    case = make_case(prepared.route_name or "scan", prepared.image, prepared.boxes, is_3d=prepared.geometry.ndim == 3)
    result = segmenter.run(case, model=model)
    return result, time.perf_counter() - t0


def make_segmenter(args: argparse.Namespace, announce: bool = True):
    """The ``Segmenter`` of the command's options (``announce``: print fast mode's report line)."""
    from daftseg.inference.options import InferenceOptions
    from daftseg.inference.runner import LOCAL_CACHE_DIR
    from daftseg.inference.segmenter import Segmenter

    cache_dir = args.cache_dir if args.cache_dir is not None else LOCAL_CACHE_DIR
    segmenter = Segmenter(args.models_dir, cache_dir=cache_dir or None, threads=args.threads,
                          precision=args.precision, routing=args.routing,
                          options=InferenceOptions(zmax_inclusive=args.zmax_inclusive), fast=args.fast)
    if args.fast and announce:
        line, warnings = segmenter.fast_mode_report()
        print(line)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return segmenter


def save_result(args: argparse.Namespace, prepared: Prepared, result):
    """Map box numbers to label values and write the label map, its sidecar and its boxes file together."""
    from daftseg.io.results import ResultBox, ResultInfo, value_counts, write_result

    lut = np.concatenate([[0], prepared.labels]).astype(np.uint8 if prepared.labels.max() <= 255 else np.uint16)
    labels = lut[result.segs]
    counts = value_counts(result.segs, len(lut))  # by box: two boxes of one label value keep their own counts
    world = prepared.world_boxes or [None] * len(prepared.boxes)
    boxes = [ResultBox(tuple(int(v) for v in box), int(value), name, None if mm is None else tuple(mm))
             for box, value, name, mm in zip(prepared.boxes, prepared.labels, prepared.names, world, strict=True)]
    info = ResultInfo(str(args.image), prepared.modality, result.model, args.box_space,
                      "boxes_from" if args.boxes_from is not None else "boxes", bool(args.zmax_inclusive))
    return write_result(labels, prepared.geometry, prepared.output, boxes, info, voxels=counts[1:].tolist(),
                        overwrite=args.overwrite, inputs=_inputs(args), dicom_source=prepared.dicom)


def _inputs(args: argparse.Namespace) -> list[Path]:
    return [p for p in (args.image, args.boxes, args.boxes_from) if p is not None]


def _check_output(output: Path, args: argparse.Namespace) -> None:
    """All three files of the result: not an input, not existing (unless --overwrite), in a writable folder."""
    from daftseg.io.results import check_outputs, result_paths

    check_outputs(list(result_paths(output)), _inputs(args), args.overwrite)


def _one_line(err: Exception) -> str:
    text = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    if isinstance(err, (ValueError, OSError, ImportError)) or type(err).__name__ in ("CaseError", "ModelError"):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}"


if __name__ == "__main__":
    sys.exit(main())
