"""Convert NIfTI / DICOM volumes and 2D images with their label masks to the challenge format.

Outputs (spec §3.2), the same file name in both folders:
    ``<out>/imgs/<name>.npz``: ``imgs`` (D, H, W) uint8 or (H, W, 3) uint8, ``boxes`` (N, 6) or (N, 4)
        int64, and for 3D ``spacing`` (3,) float64
    ``<out>/gts/<name>.npz``: ``gts`` (same spatial shape, labels 1..N, box i-1 <-> label i), and
        for 3D ``spacing``
    or, with ``--training``, one training-format file ``<out>/<name>.npz`` (``imgs``, ``gts``[, ``spacing``]).

Spacing convention: arrays are stored (z, y, x) (SimpleITK's ``GetArrayFromImage`` order), and by
default ``spacing`` is stored in the SAME axis order, (z, y, x) in mm, i.e. SimpleITK's
``GetSpacing()`` reversed. ``evaluation/compute_metrics.py`` passes ``spacing`` unchanged together
with the (D, H, W) arrays to the surface-distance code, which needs one spacing per array axis,
so this order makes NSD's 2 mm tolerance physically right for anisotropic volumes. MedSAM's
``pre_CT_MR.py`` stored ``GetSpacing()`` as is, i.e. (x, y, z); ``--spacing_order xyz`` writes
that order for compatibility with files made by it (NSD is then computed with z and x swapped).

Readers and intensities are ``daftseg.io``'s (the same as ``daftseg-segment``): CT is windowed (default abdomen, WL 40 / WW 400), MR and
PET are clipped to the 0.5-99.5 percentiles of the positive voxels, both rescaled to 0..255 uint8
as ``pre_CT_MR.py`` does; 2D uint8 images are kept, wider ones percentile-clipped.

Writes: the ``imgs``/``gts`` pair appears together or not at all (written into a private temporary
folder, then renamed); a case name that already exists in the output folder is an error and
nothing is overwritten; ``--name`` must be a plain file name (``../x`` is refused).

Boxes come from the labels: one per label id (relabelled to 1..N in increasing id order), or with
``--instances`` one per connected component. 3D boxes span the object's x, y and z extent.
``--jitter PX`` moves in-plane box edges by up to PX pixels (seeded).

CLI:
    python -m daftseg.data.converters nifti ct.nii.gz ct_label.nii.gz -o out --modality CT --window abdomen
    python -m daftseg.data.converters dicom dicom_dir/ label.nii.gz -o out      # modality from the DICOM tag
    python -m daftseg.data.converters image photo.png mask.png -o out --modality Dermoscopy --instances
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from daftseg.atomic import atomic_paths
from daftseg.io.intensity import CT_WINDOWS
from daftseg.io.label_boxes import boxes_from_labels, jitter_boxes
from daftseg.io.labels import integer_labels, labels_to_objects
from daftseg.io.medical import GeometryError, Volume, check_same_geometry, read_volume
from daftseg.io.modality import DICOM_MODALITY, MODALITIES_2D, MODALITIES_3D
from daftseg.io.normalise import add_intensity_arguments, intensity_from_args, normalise_volume
from daftseg.io.pictures import read_image_2d, read_mask_2d
from daftseg.io.scan import scan_stem

__all__ = ["Converted", "GeometryError", "Volume", "check_same_geometry", "convert_image", "convert_volume",
           "integer_labels", "labels_to_objects", "main", "normalise_volume", "read_image_2d", "read_mask_2d",
           "read_volume", "write_converted"]

# 2D case-name modalities the image converter suggests: the pictures' and 2D slices of CT and MR
MODALITIES_2D_CASES = (*MODALITIES_2D, "CT", "MR")
DEFAULT_SEED = 2024


@dataclass
class Converted:
    """One converted case.

    imgs: (D, H, W) or (H, W, 3) uint8; gts: same spatial shape, labels 1..N; boxes: (N, 6) or
    (N, 4) int64, box i-1 <-> label i; spacing: (3,) float64 in ``spacing_order`` (3D) or None;
    source_ids: (N,) the input label id each object came from.
    """

    imgs: np.ndarray
    gts: np.ndarray
    boxes: np.ndarray
    spacing: np.ndarray | None
    source_ids: np.ndarray
    spacing_order: str = "zyx"


def convert_volume(image: Volume, label: Volume, modality: str, *, intensity: str = "auto",
                   window: tuple[float, float] = CT_WINDOWS["abdomen"], instances: bool = False,
                   min_size: int = 0, jitter: int = 0, seed: int = DEFAULT_SEED,
                   spacing_order: str = "zyx", check_geometry: bool = True) -> Converted:
    """A 3D image and its label volume -> challenge arrays (see the module docstring).

    Args:
        check_geometry: False checks only the array size (spacing, origin and direction may differ).
    """
    if spacing_order not in ("zyx", "xyz"):
        raise ValueError(f"spacing_order must be 'zyx' or 'xyz', got {spacing_order!r}")
    if check_geometry:
        check_same_geometry(image, label)
    elif image.array.shape != label.array.shape:
        raise GeometryError(f"image {image.source} has (z, y, x) size {image.array.shape} but label "
                            f"{label.source} has {label.array.shape}")
    gts, source_ids = labels_to_objects(integer_labels(label.array, label.source), instances, min_size)
    imgs = normalise_volume(image.array, modality, intensity, window)
    boxes = jitter_boxes(boxes_from_labels(gts), gts.shape, jitter, np.random.default_rng(seed))
    spacing_xyz = np.asarray(image.spacing_xyz, dtype=np.float64)
    spacing = spacing_xyz[::-1].copy() if spacing_order == "zyx" else spacing_xyz
    return Converted(imgs, gts, boxes, spacing, source_ids, spacing_order)


def convert_image(image_path: Path, mask_path: Path, *, instances: bool = False, min_size: int = 0,
                  jitter: int = 0, seed: int = DEFAULT_SEED) -> Converted:
    """A 2D image and its mask image -> challenge arrays ((H, W, 3) uint8, (N, 4) boxes, no spacing)."""
    imgs = read_image_2d(Path(image_path))
    labels = read_mask_2d(Path(mask_path))
    if labels.shape != imgs.shape[:2]:
        raise GeometryError(f"image {image_path} is {imgs.shape[0]}x{imgs.shape[1]} (HxW) but mask "
                            f"{mask_path} is {labels.shape[0]}x{labels.shape[1]}")
    gts, source_ids = labels_to_objects(labels, instances, min_size)
    boxes = jitter_boxes(boxes_from_labels(gts), gts.shape, jitter, np.random.default_rng(seed))
    return Converted(imgs, gts, boxes, None, source_ids)


class CaseNameError(ValueError):
    """A case name that is not a plain file name, or one whose files already exist."""


def check_case_name(name: str) -> str:
    """``name`` + ``.npz`` if it is a plain file name, else a ValueError (no folders, no hidden names).

    A name with a path separator (``../x``, ``a/b``) would write outside the output folder; a name
    starting with "." is hidden and could be taken for a temporary file of ``daftseg.atomic``.
    """
    bad = (not name or name in (".", "..") or name.startswith(".") or "\0" in name
           or any(sep in name for sep in ("/", "\\")) or Path(name).name != name)
    if bad:
        raise CaseNameError(f"case name {name!r} is not a plain file name (no folders, not hidden); "
                            "pass a name such as --name 3DBox_CT_0001")
    return name if name.endswith(".npz") else name + ".npz"


def output_paths(out_dir: Path, name: str, training: bool = False) -> list[Path]:
    """Where ``write_converted`` puts case ``name``: ``imgs/`` + ``gts/``, or one training file."""
    name = check_case_name(name)
    out_dir = Path(out_dir)
    return [out_dir / name] if training else [out_dir / "imgs" / name, out_dir / "gts" / name]


def check_free(paths: list[Path]) -> None:
    """Refuse to overwrite: a ValueError naming every path that already exists."""
    taken = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if taken:
        raise CaseNameError(f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''}; nothing was "
                            "written (choose another --name or output folder, or remove the old case)")


def write_converted(case: Converted, out_dir: Path, name: str, training: bool = False) -> list[Path]:
    """Write the challenge pair (``imgs/`` + ``gts/``) or one training-format file; returns the paths.

    Both files of a pair appear together or not at all (``daftseg.atomic.atomic_paths``); an existing
    file of either name is an error and nothing is written.
    """
    paths = output_paths(out_dir, name, training)
    check_free(paths)
    extra = {} if case.spacing is None else {"spacing": case.spacing}
    with atomic_paths(paths) as temps:
        if training:
            np.savez_compressed(temps[0], imgs=case.imgs, gts=case.gts, **extra)
        else:
            np.savez_compressed(temps[0], imgs=case.imgs, boxes=case.boxes, **extra)
            np.savez_compressed(temps[1], gts=case.gts, **extra)
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m daftseg.data.converters",
                                     description="Convert NIfTI/DICOM volumes or 2D images with label masks "
                                                 "to challenge npz files (<out>/imgs, <out>/gts).")
    sub = parser.add_subparsers(dest="kind", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-o", "--out_dir", type=Path, required=True)
    common.add_argument("--name", default=None,
                        help="case name, a plain file name (default <2D|3D>Box_<modality>_<input stem>); '.npz' is "
                             "added. An existing case of that name is an error: nothing is overwritten")
    common.add_argument("--instances", action="store_true",
                        help="one box per connected component instead of one per label id")
    common.add_argument("--min_size", type=int, default=0, help="drop objects with fewer pixels/voxels")
    common.add_argument("--jitter", type=int, default=0, help="move box edges by up to PX pixels (default 0)")
    common.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the jitter")
    common.add_argument("--training", action="store_true",
                        help="write one training-format npz (imgs, gts) into OUT_DIR instead")
    volume = argparse.ArgumentParser(add_help=False)
    add_intensity_arguments(volume)
    volume.add_argument("--spacing_order", choices=("zyx", "xyz"), default="zyx",
                        help="zyx (default): same axis order as the arrays; xyz: SimpleITK GetSpacing() "
                             "order, as MedSAM's pre_CT_MR.py stored it")
    volume.add_argument("--no_geometry_check", action="store_true",
                        help="only require equal sizes (not spacing, origin, direction)")

    p = sub.add_parser("nifti", parents=[common, volume], help="NIfTI (or NRRD/MHA) image + label volume")
    p.add_argument("image", type=Path)
    p.add_argument("label", type=Path)
    p.add_argument("--modality", choices=MODALITIES_3D, required=True)

    p = sub.add_parser("dicom", parents=[common, volume], help="DICOM series folder + label volume")
    p.add_argument("image", type=Path, help="folder holding the DICOM series")
    p.add_argument("label", type=Path, help="label volume file (NIfTI, NRRD...) or a DICOM folder")
    p.add_argument("--modality", choices=MODALITIES_3D, default=None,
                   help="default: from the DICOM Modality tag (CT, MR, PT)")
    p.add_argument("--series_id", default=None, help="SeriesInstanceUID when the folder holds several")

    p = sub.add_parser("image", parents=[common], help="2D image (PNG/JPG/TIFF) + mask image")
    p.add_argument("image", type=Path)
    p.add_argument("label", type=Path, help="mask image (label values, or 0/255, or colours)")
    p.add_argument("--modality", required=True,
                   help=f"case-name modality, one of {', '.join(MODALITIES_2D_CASES)} (others route to lite_medsam)")
    return parser


def convert_from_args(args: argparse.Namespace) -> tuple[Converted, str]:
    """Run the converter the parsed CLI arguments ask for; returns (case, case name)."""
    if args.kind == "image":
        case = convert_image(args.image, args.label, instances=args.instances, min_size=args.min_size,
                             jitter=args.jitter, seed=args.seed)
        return case, args.name or f"2DBox_{args.modality}_{scan_stem(args.image)}"
    image = read_volume(args.image, getattr(args, "series_id", None))
    label = read_volume(args.label)
    modality = args.modality
    if modality is None:
        modality = DICOM_MODALITY.get(image.modality or "")
        if modality is None:
            raise ValueError(f"DICOM Modality tag is {image.modality!r}; pass --modality {{CT,MR,PET}}")
    intensity = intensity_from_args(args)
    case = convert_volume(image, label, modality, intensity=intensity.mode, window=intensity.window,
                          instances=args.instances, min_size=args.min_size, jitter=args.jitter,
                          seed=args.seed, spacing_order=args.spacing_order,
                          check_geometry=not args.no_geometry_check)
    return case, args.name or f"3DBox_{modality}_{scan_stem(args.image)}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.name is not None:  # before the slow part: a bad name or a taken one fails at once
            check_free(output_paths(args.out_dir, args.name, args.training))
        case, name = convert_from_args(args)
        paths = write_converted(case, args.out_dir, name, args.training)
    except (ValueError, FileNotFoundError) as err:  # GeometryError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 1
    shape = "x".join(str(s) for s in case.imgs.shape)
    print(f"{name}: imgs {shape} uint8, {len(case.boxes)} boxes "
          f"(from label ids {', '.join(str(i) for i in _compact(case.source_ids))})"
          + ("" if case.spacing is None else f", spacing ({case.spacing_order}) "
             + ", ".join(f"{s:g}" for s in case.spacing) + " mm"))
    for path in paths:
        print(f"  wrote {path}")
    return 0


def _compact(ids: np.ndarray, limit: int = 12) -> list:
    """At most ``limit`` ids for printing, with an ellipsis."""
    ids = ids.tolist()
    return ids if len(ids) <= limit else ids[:limit] + ["..."]


if __name__ == "__main__":
    raise SystemExit(main())
